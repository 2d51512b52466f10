"""matrix-nio against the media repository: upload, authenticated download, thumbnail, and an encrypted
attachment (nio's ``upload(..., encrypt=True)``) sent in an end-to-end encrypted room and decrypted by the
other user's client."""

from __future__ import annotations

import asyncio
import io

import nio
from nio.crypto.attachments import decrypt_attachment
from PIL import Image

from tests.integration.harness import shared_room
from tests.integration.test_e2ee import NioDevice
from tests.integration.test_nio_chat import close_all, registered_client


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (500, 400), (250, 200, 0)).save(out, "JPEG")
    return out.getvalue()


def test_nio_upload_download_thumbnail(homeserver):
    async def scenario():
        alice = await registered_client(homeserver)
        try:
            image = _jpeg()
            uploaded, keys = await alice.upload(io.BytesIO(image), content_type="image/jpeg",
                                                filename="photo.jpg", filesize=len(image))
            assert isinstance(uploaded, nio.UploadResponse), uploaded
            assert keys is None
            got = await alice.download(uploaded.content_uri)
            assert isinstance(got, nio.MemoryDownloadResponse), got
            assert (got.body, got.content_type, got.filename) == (image, "image/jpeg", "photo.jpg")
            server, media_id = uploaded.content_uri[6:].split("/")
            thumb = await alice.thumbnail(server, media_id, 96, 96, nio.ResizingMethod.crop)
            assert isinstance(thumb, nio.ThumbnailResponse), thumb
            assert thumb.content_type == "image/jpeg"
            assert Image.open(io.BytesIO(thumb.body)).size == (96, 96)
            missing = await alice.download(f"mxc://{server}/nosuchmedia")
            assert isinstance(missing, nio.DownloadError) and missing.status_code == "M_NOT_FOUND"
        finally:
            await close_all(alice)

    asyncio.run(scenario())


def test_nio_encrypted_attachment_in_an_e2e_room(homeserver, tmp_path):
    alice, bob = homeserver.register(), homeserver.register()
    room_id = shared_room(alice, bob, encrypted=True)
    secret = b"quarterly figures, agency eyes only\n" * 500

    async def scenario():
        alice_nio = await NioDevice(homeserver, alice.user_id, tmp_path / "alice").login()
        bob_nio = await NioDevice(homeserver, bob.user_id, tmp_path / "bob").login()
        try:
            await alice_nio.sync_until(lambda r: room_id in alice_nio.client.rooms
                                       and alice_nio.client.rooms[room_id].encrypted)
            await alice_nio.sync_until(lambda r: bob_nio.client.device_id in alice_nio.device_ids_of(bob.user_id))
            uploaded, file_keys = await alice_nio.client.upload(io.BytesIO(secret), content_type="text/plain",
                                                                filename="figures.txt", encrypt=True,
                                                                filesize=len(secret))
            assert isinstance(uploaded, nio.UploadResponse), uploaded
            # The server holds only ciphertext.
            stored = await alice_nio.client.download(uploaded.content_uri)
            assert secret[:40] not in stored.body
            content = {"msgtype": "m.file", "body": "figures.txt",
                       "file": {**file_keys, "url": uploaded.content_uri}}
            sent = await alice_nio.client.room_send(room_id, "m.room.message", content,
                                                    ignore_unverified_devices=True)
            assert isinstance(sent, nio.RoomSendResponse), sent

            undecrypted: list = []  # events whose room key arrives in a later sync

            def attachment(resp):
                room = resp.rooms.join.get(room_id)
                events = room.timeline.events if room else []
                found = [e for e in events if isinstance(e, nio.RoomEncryptedFile)]  # decrypted by nio's sync
                if found:
                    return found[0]
                undecrypted.extend(e for e in events if isinstance(e, nio.MegolmEvent))
                for event in list(undecrypted):
                    try:
                        decrypted = bob_nio.client.decrypt_event(event)
                    except nio.EncryptionError:
                        continue
                    undecrypted.remove(event)
                    if isinstance(decrypted, nio.RoomEncryptedFile):
                        return decrypted
                return None

            event = await bob_nio.sync_until(attachment)
            got = await bob_nio.client.download(event.url)
            assert isinstance(got, nio.MemoryDownloadResponse), got
            plain = decrypt_attachment(got.body, event.key["k"], event.hashes["sha256"], event.iv)
            assert plain == secret
        finally:
            await alice_nio.close()
            await bob_nio.close()

    asyncio.run(scenario())
