"""The Oodrive conformance kit: what the bridge relies on, checked against any ``OodriveAPI`` adapter
(it creates a folder named ``conformance-<random>`` and works inside it)."""

from __future__ import annotations

import hashlib
import os
import tempfile

from bridges.conformance import all_events

SIZE = 3 * 1024 * 1024 + 17  # several chunks, not a round number


async def _upload(api, scratch: dict, data: bytes) -> dict:
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return await api.upload(scratch["folder"]["id"], "kit.bin", "application/octet-stream", len(data), f.name)


async def _bytes(api, file_id: str, version: int) -> bytes:
    return b"".join([chunk async for chunk in api.download(file_id, version)])


async def unknown_folder_is_none(api, scratch: dict) -> None:
    assert await api.folder(f"no/such/folder/{scratch['tag']}") is None


async def folders_are_created_once_and_found_by_id_and_path(api, scratch: dict) -> None:
    folder = await api.create_folder(f"conformance-{scratch['tag']}", None)
    assert (await api.create_folder(f"conformance-{scratch['tag']}", None))["id"] == folder["id"]
    assert (await api.folder(folder["id"]))["path"] == folder["path"]
    assert (await api.folder(folder["path"]))["id"] == folder["id"]
    scratch["folder"] = folder


async def uploads_stream_and_download_byte_exact(api, scratch: dict) -> None:
    data = os.urandom(SIZE)
    stored = await _upload(api, scratch, data)
    assert stored["version"] == 1 and stored["size"] == SIZE
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert await _bytes(api, stored["id"], 1) == data
    scratch["file"], scratch["v1"] = stored, data


async def same_name_is_a_new_version(api, scratch: dict) -> None:
    stored = await _upload(api, scratch, b"version two")
    assert stored["id"] == scratch["file"]["id"] and stored["version"] == 2
    assert await _bytes(api, stored["id"], 2) == b"version two"
    assert await _bytes(api, stored["id"], 1) == scratch["v1"]
    listed = [f for f in await api.files(scratch["folder"]["id"]) if f["id"] == stored["id"]]
    assert listed and listed[0]["version"] == 2


async def shares_have_a_link_expiry_and_password(api, scratch: dict) -> None:
    share = await api.share(scratch["file"]["id"], 7 * 86400, "secret", True)
    assert share["url"].startswith("https://") and share["password_protected"] and share["expires_at"]


async def rename_and_delete(api, scratch: dict) -> None:
    assert (await api.rename(scratch["file"]["id"], "kit-renamed.bin"))["name"] == "kit-renamed.bin"
    await api.delete(scratch["file"]["id"])
    assert not [f for f in await api.files(scratch["folder"]["id"]) if f["id"] == scratch["file"]["id"]]


async def the_feed_tells_it_all_in_order_with_the_actor(api, scratch: dict) -> None:
    mine = [e for e in await all_events(api) if e.get("file", {}).get("id") == scratch["file"]["id"]]
    assert [e["type"] for e in mine] == ["file.added", "file.version_added", "file.renamed", "file.deleted"], mine
    assert all(e["actor"]["id"] == api.own_actor and e["folder_id"] == scratch["folder"]["id"] for e in mine)
    assert mine[2]["old_name"] == "kit.bin"


async def limits_are_published(api, scratch: dict) -> None:
    assert isinstance((await api.limits())["max_file_size"], int)


KIT = [(check.__name__, check) for check in (
    unknown_folder_is_none, folders_are_created_once_and_found_by_id_and_path,
    uploads_stream_and_download_byte_exact, same_name_is_a_new_version, shares_have_a_link_expiry_and_password,
    rename_and_delete, the_feed_tells_it_all_in_order_with_the_actor, limits_are_published)]
