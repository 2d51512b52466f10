"""Synapse's media admin API (quarantine, delete, list, purge) and ``media_retention``, against a real server."""

from __future__ import annotations

import os
import time

import pytest

from tests.integration.harness import database_rows, q, unique
from tests.integration.media_client import AUTHED, download, split_mxc, upload

ADMIN = "/_synapse/admin/v1"


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory(media_retention={"local_media_lifetime": "30d", "remote_media_lifetime": "7d"})


@pytest.fixture(scope="module")
def admin(server):
    name = unique("admin")
    assert server.shared_secret_register(name, admin=True)["status"] == 200
    return server.login(f"@{name}:test.local")


def _upload(server, user, data: bytes = b"data") -> tuple[str, str]:
    status, body = upload(server.base_url, user.token, data, filename="f.bin")
    assert status == 200, body
    return split_mxc(body["content_uri"])


def _get(server, user, origin, media_id) -> int:
    return download(server.base_url, f"{AUTHED}/download/{origin}/{media_id}", user.token)[0]


def test_only_admins(server):
    user = server.register()
    status, body = user.request("POST", f"{ADMIN}/purge_media_cache?before_ts=0")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


def test_quarantine_and_release(server, admin):
    user = server.register()
    origin, media_id = _upload(server, user)
    assert admin.ok("POST", f"{ADMIN}/media/quarantine/{origin}/{media_id}", {}) == {}
    assert _get(server, user, origin, media_id) == 404
    assert admin.ok("POST", f"{ADMIN}/media/unquarantine/{origin}/{media_id}", {}) == {}
    assert _get(server, user, origin, media_id) == 200


def test_quarantine_a_room(server, admin):
    user = server.register()
    room_id = user.create_room()
    origin, image = _upload(server, user)
    _, attachment = _upload(server, user)
    user.send(room_id, {"msgtype": "m.image", "body": "i", "url": f"mxc://{origin}/{image}"})
    user.send(room_id, {"msgtype": "m.file", "body": "e2e",
                        "file": {"url": f"mxc://{origin}/{attachment}", "v": "v2"}})
    listed = admin.ok("GET", f"{ADMIN}/room/{q(room_id)}/media")
    assert sorted(listed["local"]) == sorted([f"mxc://{origin}/{image}", f"mxc://{origin}/{attachment}"])
    assert admin.ok("POST", f"{ADMIN}/room/{q(room_id)}/media/quarantine", {}) == {"num_quarantined": 2}
    assert _get(server, user, origin, image) == 404 and _get(server, user, origin, attachment) == 404


def test_delete_by_id_removes_file_and_row(server, admin):
    user = server.register()
    origin, media_id = _upload(server, user)
    assert admin.ok("DELETE", f"{ADMIN}/media/{origin}/{media_id}") == {"deleted_media": [media_id], "total": 1}
    assert _get(server, user, origin, media_id) == 404
    path = os.path.join(server.dir, "media_store", "local_content", media_id[:2], media_id[2:4], media_id[4:])
    assert not os.path.exists(path)
    assert admin.ok("DELETE", f"{ADMIN}/media/{origin}/{media_id}") == {"deleted_media": [], "total": 0}
    status, body = admin.request("DELETE", f"{ADMIN}/media/other.example/{media_id}")
    assert status == 400


def test_delete_older_than(server, admin):
    user = server.register()
    origin, old = _upload(server, user)
    _, new = _upload(server, user)
    database_rows(server, "UPDATE local_media SET last_access_ts = 1000, created_ts = 1000 WHERE media_id = ?",
                  (old,))
    body = admin.ok("POST", f"{ADMIN}/media/delete?before_ts=2000", {})
    assert old in body["deleted_media"] and new not in body["deleted_media"]
    assert _get(server, user, origin, old) == 404 and _get(server, user, origin, new) == 200
    status, body = admin.request("POST", f"{ADMIN}/media/delete", {})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    # A user's avatar is kept unless keep_profiles=false.
    _, avatar = _upload(server, user)
    user.ok("PUT", f"/profile/{q(user.user_id)}/avatar_url", {"avatar_url": f"mxc://{origin}/{avatar}"})
    database_rows(server, "UPDATE local_media SET last_access_ts = 1000 WHERE media_id = ?", (avatar,))
    assert avatar not in admin.ok("POST", f"{ADMIN}/media/delete?before_ts=2000", {})["deleted_media"]
    assert avatar in admin.ok("POST", f"{ADMIN}/media/delete?before_ts=2000&keep_profiles=false", {})["deleted_media"]


def test_list_a_users_media(server, admin):
    user = server.register()
    ids = [_upload(server, user, bytes([i]) * (i + 1))[1] for i in range(3)]
    body = admin.ok("GET", f"{ADMIN}/users/{q(user.user_id)}/media?limit=2&order_by=media_length&dir=b")
    assert body["total"] == 3 and body["next_token"] == 2
    assert [m["media_id"] for m in body["media"]] == [ids[2], ids[1]]
    assert body["media"][0]["media_length"] == 3 and body["media"][0]["upload_name"] == "f.bin"
    rest = admin.ok("GET", f"{ADMIN}/users/{q(user.user_id)}/media?from=2&order_by=media_length&dir=b")
    assert [m["media_id"] for m in rest["media"]] == [ids[0]] and "next_token" not in rest
    assert admin.ok("DELETE", f"{ADMIN}/users/{q(user.user_id)}/media")["total"] == 3


def test_media_usage_per_user(server, admin):
    """Synapse's GET /statistics/users/media (docs/admin_api/statistics.md): uploads and bytes per user."""
    tag = unique("stats")
    big, small = server.register(f"{tag}big"), server.register(f"{tag}small")
    for data in (b"x" * 5000, b"y" * 3000):
        _upload(server, big, data)
    _upload(server, small, b"z" * 10)
    body = admin.ok("GET", f"{ADMIN}/statistics/users/media?search_term={tag}")
    assert body["total"] == 2 and "next_token" not in body
    assert [(u["user_id"], u["media_count"], u["media_length"]) for u in body["users"]] == [
        (big.user_id, 2, 8000), (small.user_id, 1, 10)]
    assert body["users"][0]["displayname"] == f"{tag}big"
    page = admin.ok("GET", f"{ADMIN}/statistics/users/media?search_term={tag}&order_by=media_count&dir=f&limit=1")
    assert [u["user_id"] for u in page["users"]] == [small.user_id] and page["next_token"] == 1
    status, body = admin.request("GET", f"{ADMIN}/statistics/users/media?order_by=size")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


def test_purge_remote_cache(server, admin):
    now = int(time.time() * 1000)
    database_rows(server, "INSERT INTO remote_media (server_name, media_id, media_type, media_length, sha256, "
                          "fetched_ts, last_access_ts, authenticated) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                  ("remote.example", "cachedold", "text/plain", 1, "0" * 64, 1000, 1000))
    database_rows(server, "INSERT INTO remote_media (server_name, media_id, media_type, media_length, sha256, "
                          "fetched_ts, last_access_ts, authenticated) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                  ("remote.example", "cachednew", "text/plain", 1, "0" * 64, now, now))
    assert admin.ok("POST", f"{ADMIN}/purge_media_cache?before_ts={now - 1000}", {}) == {"deleted": 1}
    assert database_rows(server, "SELECT media_id FROM remote_media") == [("cachednew",)]


def test_retention_job_deletes_old_media(server):
    """media_retention: the background job (run at start, then hourly) deletes local media not accessed for
    local_media_lifetime and remote media cached longer than remote_media_lifetime."""
    user = server.register()
    origin, old = _upload(server, user)
    _, kept = _upload(server, user)
    server.stop()
    database_rows(server, "UPDATE local_media SET last_access_ts = 1000 WHERE media_id = ?", (old,))
    database_rows(server, "INSERT INTO remote_media (server_name, media_id, media_type, media_length, sha256, "
                          "fetched_ts, last_access_ts, authenticated) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                  ("remote.example", "stale", "text/plain", 1, "0" * 64, 1000, 1000))
    server.start()
    deadline = time.monotonic() + 15
    while database_rows(server, "SELECT 1 FROM local_media WHERE media_id = ?", (old,)):
        assert time.monotonic() < deadline, "media_retention did not run"
        time.sleep(0.1)
    assert _get(server, user, origin, old) == 404 and _get(server, user, origin, kept) == 200
    assert not database_rows(server, "SELECT 1 FROM remote_media WHERE media_id = 'stale'")
