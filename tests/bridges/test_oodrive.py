"""The Oodrive bridge end to end: matrix-nio users on a real homeserver, the bridge process, and the
Oodrive stand-in (``hexagone bridge oodrive standin``) driven over its contract and its test controls."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import statistics
import time
import urllib.parse
import urllib.request

import aiohttp
import pytest

from tests.bridges.conftest import BIG_FILE_MB, MATRIX_USER
from tests.bridges.nio_user import NioUser, run
from tests.bridges.transcript import CHROMIUM, chat_page, shoot

LATENCY_RUNS = int(os.environ.get("HEXAGONE_BRIDGE_LATENCY_RUNS", "50"))


def as_alice(world, scenario, store_path=None):
    """Run ``scenario(alice)`` with a fresh login of the Matrix user (with an encryption device kept in
    ``store_path`` if given)."""
    async def logged_in():
        alice = await NioUser.login(world.homeserver, MATRIX_USER, store_path)
        try:
            return await scenario(alice)
        finally:
            await alice.close()

    return run(logged_in())


def needs_media(world) -> None:
    if not world.has_media:
        pytest.skip(f"{world.kind} serves no media in this build (the media repository is on its own branch)")


def standin_token(standin) -> str:
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": standin.client_id,
                                   "client_secret": standin.client_secret}).encode()
    with urllib.request.urlopen(standin.url + "/oauth/token", body, timeout=10) as resp:
        return json.loads(resp.read())["access_token"]


def notice(text: str, room: str | None = None):
    return lambda r, e: (room is None or r == room) and e.get("type") == "m.room.message" \
        and e["content"].get("msgtype") == "m.notice" and text in e["content"].get("body", "")


def file_event(name: str, room: str):
    return lambda r, e: r == room and e.get("type") == "m.room.message" and e["content"].get("body") == name \
        and "url" in e["content"]


async def bot_room(alice: NioUser, bot: str, preset: str = "private_chat") -> str:
    """A room alice creates and invites ``bot`` to, once the bot joined."""
    import nio
    resp = await alice.client.room_create(preset=nio.RoomPreset(preset), invite=[bot],
                                          power_level_override={"users": {bot: 50}})
    assert isinstance(resp, nio.RoomCreateResponse), resp
    await alice.wait_for(lambda r, e: r == resp.room_id and e.get("type") == "m.room.member"
                         and e.get("state_key") == bot and e["content"].get("membership") == "join")
    return resp.room_id


async def command(alice: NioUser, room: str, body: str, answer: str, timeout: float = 60) -> dict:
    event_id = await alice.send(room, {"msgtype": "m.text", "body": body})
    _, event = await alice.wait_for(lambda r, e: notice("", room)(r, e) and (e["content"].get("m.relates_to") or {})
                                    .get("m.in_reply_to", {}).get("event_id") == event_id, timeout)
    assert answer in event["content"]["body"], event["content"]["body"]
    return event


@pytest.fixture(scope="module")
def oodrive(product_world):
    return product_world.standins["oodrive"]


@pytest.fixture(scope="module")
def folder(oodrive):
    status, body = oodrive.control("POST", "/v1/folders", {"name": "Docs"}, token=standin_token(oodrive))
    assert status in (200, 201), body
    return body


@pytest.fixture(scope="module")
def carol(oodrive):
    return oodrive.control("POST", "/_standin/users", {"name": "Carol"})[1]


@pytest.fixture(scope="module")
def linked(product_world, folder):
    bot = f"@oodrivebot:{product_world.homeserver.name}"

    async def scenario(alice: NioUser):
        import nio
        plain = await alice.client.room_create(invite=[bot])
        assert isinstance(plain, nio.RoomCreateResponse)
        await alice.wait_for(lambda r, e: r == plain.room_id and e.get("state_key") == bot
                             and e["content"].get("membership") == "join")
        await command(alice, plain.room_id, "!oodrive link Team/Docs", "the bot needs power to send state")
        room = await bot_room(alice, bot)
        await command(alice, room, "!oodrive link Team/Nope", "No Oodrive folder 'Team/Nope'")
        await command(alice, room, "!oodrive link Team/Docs", "now bridged to Team/Docs")
        return room

    return as_alice(product_world, scenario)


def add_file(oodrive, folder_id: str, user: dict, name: str, data: bytes) -> dict:
    status, body = oodrive.control("POST", f"/_standin/folders/{folder_id}/files?name={name}&user={user['id']}",
                                   data=data, headers={"Content-Type": "application/pdf"})
    assert status == 201, body
    return body


def files_named(oodrive, name: str) -> list[dict]:
    from bridges.standin import StandinState
    doc = StandinState(os.path.join(oodrive.dir, "data"), {}).doc
    return [f for f in doc["files"].values() if f["name"] == name and not f["deleted"]]


def wait_until(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.05)
    return result


async def upload(alice: NioUser, data: bytes, name: str, room: str, mime: str = "application/octet-stream") -> str:
    resp, _ = await alice.client.upload(io.BytesIO(data), mime, name, filesize=len(data))
    return await alice.send(room, {"msgtype": "m.file", "body": name, "filename": name, "url": resp.content_uri,
                                   "info": {"mimetype": mime, "size": len(data)}})


async def sha_of_media(world, alice: NioUser, mxc: str) -> tuple[str, int]:
    """Stream a media download (authenticated media, else the legacy path) and hash it."""
    server, media_id = mxc[len("mxc://"):].split("/")
    headers = {"Authorization": f"Bearer {alice.client.access_token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for path in (f"/_matrix/client/v1/media/download/{server}/{media_id}",
                     f"/_matrix/media/v3/download/{server}/{media_id}"):
            async with session.get(world.homeserver.base_url + path) as resp:
                if resp.status == 404:
                    continue
                assert resp.status == 200, await resp.text()
                digest, size = hashlib.sha256(), 0
                async for chunk in resp.content.iter_chunked(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                return digest.hexdigest(), size
    raise AssertionError("no download path")


def test_files_cross_both_ways_with_versions_renames_deletions_and_shares(product_world, oodrive, folder, carol,
                                                                          linked):
    needs_media(product_world)
    domain = product_world.homeserver.name

    async def scenario(alice: NioUser):
        # Matrix -> Oodrive, byte-exact, from the bridge's own application (not echoed back)
        data = os.urandom(300_000)
        await upload(alice, data, "minutes.bin", linked)
        stored = wait_until(lambda: files_named(oodrive, "minutes.bin"))
        assert stored[0]["sha256"] == hashlib.sha256(data).hexdigest() and stored[0]["folder_id"] == folder["id"]

        # Oodrive -> Matrix, from Carol's ghost, byte-exact
        report = os.urandom(123_456)
        added = add_file(oodrive, folder["id"], carol, "report.pdf", report)
        _, first = await alice.wait_for(file_event("report.pdf", linked))
        assert first["sender"] == f"@oodrive_{carol['id']}:{domain}"
        assert (await alice.client.get_profile(first["sender"])).displayname == "Carol (Oodrive)"
        assert first["content"]["msgtype"] == "m.file" and first["content"]["info"]["mimetype"] == "application/pdf"
        assert await sha_of_media(product_world, alice, first["content"]["url"]) == \
            (hashlib.sha256(report).hexdigest(), len(report))

        # a new version is a reply to the earlier one
        add_file(oodrive, folder["id"], carol, "report.pdf", b"version 2")
        _, second = await alice.wait_for(lambda r, e: file_event("report.pdf", linked)(r, e)
                                         and e["event_id"] != first["event_id"])
        assert second["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == first["event_id"]

        # share links, with an expiry and a generated password; bad input
        answer = await command(alice, linked, "!oodrive share report.pdf --expires 7d --password", "Share link")
        assert "https://share.oodrive.invalid/s/" in answer["content"]["body"] and "password: " in \
            answer["content"]["body"] and "7d" in answer["content"]["body"]
        await command(alice, linked, "!oodrive share nothing.pdf", "No file 'nothing.pdf'")
        await command(alice, linked, "!oodrive share report.pdf --expires soon", "--expires takes a duration")

        # rename and deletion on the Oodrive side: notices
        assert oodrive.control("PATCH", f"/_standin/files/{added['id']}?user={carol['id']}",
                               {"name": "report-final.pdf"})[0] == 200
        await alice.wait_for(notice("Carol renamed report.pdf to report-final.pdf", linked))
        assert oodrive.control("DELETE", f"/_standin/files/{added['id']}?user={carol['id']}")[0] == 204
        await alice.wait_for(notice("Carol deleted report-final.pdf", linked))

        # text stays in Matrix; nothing came back twice
        await alice.send(linked, {"msgtype": "m.text", "body": "just chatting"})
        await alice.sync_once(0)
        assert alice.count(file_event("minutes.bin", linked)) == 1
        assert alice.count(file_event("report.pdf", linked)) == 2

    as_alice(product_world, scenario)


def test_a_big_file_crosses_both_ways_with_bounded_memory(product_world, oodrive, folder, carol, linked, tmp_path):
    needs_media(product_world)
    size = BIG_FILE_MB * 1024 * 1024
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(BIG_FILE_MB):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            f.write(chunk)
    pid = product_world.bridges["oodrive"].process.pid

    async def scenario(alice: NioUser):
        with open(path, "rb") as f:
            resp, _ = await alice.client.upload(f, "application/octet-stream", "big-out.bin", filesize=size)
        await alice.send(linked, {"msgtype": "m.file", "body": "big-out.bin", "url": resp.content_uri,
                                  "info": {"mimetype": "application/octet-stream", "size": size}})
        stored = wait_until(lambda: files_named(oodrive, "big-out.bin"), 300)
        assert stored[0]["sha256"] == digest.hexdigest() and stored[0]["size"] == size
        status, _ = oodrive.control("POST", f"/_standin/folders/{folder['id']}/files?name=big-in.bin"
                                            f"&user={carol['id']}", data=path.read_bytes(),
                                    headers={"Content-Type": "application/octet-stream"})
        assert status == 201
        _, event = await alice.wait_for(file_event("big-in.bin", linked), 300)
        assert await sha_of_media(product_world, alice, event["content"]["url"]) == (digest.hexdigest(), size)

    as_alice(product_world, scenario)
    with open(f"/proc/{pid}/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) * 1024
    print(f"\n{BIG_FILE_MB} MB both ways: the bridge's peak resident memory {peak / 2 ** 20:.0f} MB")
    assert peak < 160 * 1024 * 1024  # bounded: independent of the file's size


def test_bad_input_is_a_clear_notice_and_retries_lose_nothing(product_world, oodrive, folder, linked):
    needs_media(product_world)

    async def scenario(alice: NioUser):
        # over the product's limit
        assert oodrive.control("PUT", "/_standin/limits", {"max_file_size": 1000})[0] == 200
        event_id = await upload(alice, b"x" * 2000, "too-big.bin", linked)
        await alice.wait_for(notice("over Oodrive's size limit", linked))
        assert not files_named(oodrive, "too-big.bin")
        oodrive.control("PUT", "/_standin/limits", {"max_file_size": 2 ** 31})
        _, status = await alice.wait_for(lambda r, e: e.get("type") == "com.beeper.message_send_status"
                                         and e["content"]["m.relates_to"]["event_id"] == event_id)
        assert status["content"]["status"] == "FAIL_PERMANENT"

        # 500s, then a stall longer than the bridge's timeout: retried, stored once
        oodrive.control("POST", "/_standin/fault", {"status": 500, "count": 2, "path": "/v1/folders"})
        await upload(alice, b"after errors", "after-500.bin", linked)
        assert len(wait_until(lambda: files_named(oodrive, "after-500.bin"))) == 1
        oodrive.control("POST", "/_standin/fault", {"delay_s": 3, "count": 1, "path": "/v1/folders"})
        await upload(alice, b"after a stall", "after-stall.bin", linked)
        stored = wait_until(lambda: files_named(oodrive, "after-stall.bin"))
        assert len(stored) == 1 and stored[0]["version"] == 1

        # a media download the homeserver refuses (as it refuses an infected file): a notice
        server = product_world.homeserver.name
        await alice.send(linked, {"msgtype": "m.file", "body": "gone.bin", "url": f"mxc://{server}/nosuchmedia",
                                  "info": {"mimetype": "application/octet-stream", "size": 10}})
        await alice.wait_for(notice("Not delivered to Oodrive: attachment not delivered", linked))

        # revoked tokens are renewed without a word
        oodrive.control("POST", "/_standin/revoke", {})
        await upload(alice, b"renewed", "renewed.bin", linked)
        wait_until(lambda: files_named(oodrive, "renewed.bin"))

        # revoked credentials: a clear notice; restored: what Oodrive got meanwhile arrives
        oodrive.control("POST", "/_standin/revoke", {"secret": "rotated"})
        await upload(alice, b"refused", "refused.bin", linked)
        await alice.wait_for(notice("refused the bridge's credentials", linked))
        oodrive.control("POST", "/_standin/revoke", {"secret": oodrive.client_secret})
        await upload(alice, b"accepted", "accepted.bin", linked)
        wait_until(lambda: files_named(oodrive, "accepted.bin"))

    as_alice(product_world, scenario)


async def upload_encrypted(user: NioUser, data: bytes, name: str, room: str) -> str:
    """An encrypted attachment (spec: "Sending encrypted attachments") in an encrypted message."""
    from nio.crypto.attachments import encrypt_attachment
    ciphertext, keys = encrypt_attachment(data)
    resp, _ = await user.client.upload(io.BytesIO(ciphertext), "application/octet-stream", "",
                                       filesize=len(ciphertext))
    return await user.send(room, {"msgtype": "m.file", "body": name, "filename": name,
                                  "file": {**keys, "url": resp.content_uri},
                                  "info": {"mimetype": "application/pdf", "size": len(data)}})


async def download_decrypted(world, user: NioUser, file_info: dict) -> bytes:
    from nio.crypto.attachments import decrypt_attachment
    server, media_id = file_info["url"][len("mxc://"):].split("/")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {user.client.access_token}"}) as session:
        async with session.get(f"{world.homeserver.base_url}/_matrix/client/v1/media/download/{server}/"
                               f"{media_id}") as resp:
            assert resp.status == 200, await resp.text()
            ciphertext = await resp.read()
    return decrypt_attachment(ciphertext, file_info["key"]["k"], file_info["hashes"]["sha256"], file_info["iv"])


def test_an_encrypted_team_room_stores_files_only_when_its_admins_allowed_it(product_world, oodrive, carol,
                                                                              tmp_path):
    """matrix-nio users with end-to-end encryption in a team room: the bridge bots' devices decrypt
    the commands, the Oodrive bridge refuses encrypted files until an admin allows it, then stores
    them byte-exact; a file from Oodrive comes encrypted and decrypts byte-exact."""
    needs_media(product_world)
    domain = product_world.homeserver.name

    async def scenario(erin: NioUser):
        start = await bot_room(erin, f"@oodrivebot:{domain}")
        await erin.client.room_put_state(start, "m.room.name", {"name": "Project office"})
        answer = await command(erin, start, "!hexagone team Crypt", "Team room 'Crypt' created")
        team = answer["content"]["body"].split("(", 1)[1].split(")", 1)[0]
        # the Oodrive bot's "!tixeo meet", encrypted, is decrypted by the Tixeo bot, which answers encrypted
        _, link = await erin.wait_for(notice("Tixeo meeting: https://meet.tixeo.invalid/j/", team))
        assert link["event_id"] in erin.decrypted

        secret = os.urandom(70_000)
        refused = await upload_encrypted(erin, secret, "secret.pdf", team)
        _, why = await erin.wait_for(notice("its admins have not allowed the bridge to decrypt", team))
        assert why["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == refused
        assert why["event_id"] in erin.decrypted and not files_named(oodrive, "secret.pdf")
        bridge = product_world.bridges["oodrive"]  # the device, its keys and sessions survive a restart
        bridge.stop()
        bridge.start()

        await command(erin, team, "!oodrive decrypt on", "Decryption of stored files is on")
        await upload_encrypted(erin, secret, "allowed.pdf", team)
        stored = wait_until(lambda: files_named(oodrive, "allowed.pdf"))
        assert stored[0]["sha256"] == hashlib.sha256(secret).hexdigest() and stored[0]["size"] == len(secret)
        assert not files_named(oodrive, "secret.pdf")

        folder = oodrive.control("GET", "/v1/folders?path=Team/Crypt", token=standin_token(oodrive))[1]
        plan = os.urandom(54_321)
        add_file(oodrive, folder["id"], carol, "plan.pdf", plan)
        _, event = await erin.wait_for(lambda r, e: r == team and e.get("type") == "m.room.message"
                                       and e["content"].get("body") == "plan.pdf")
        assert event["event_id"] in erin.decrypted and "url" not in event["content"]
        assert event["sender"] == f"@oodrive_{carol['id']}:{domain}"
        assert await download_decrypted(product_world, erin, event["content"]["file"]) == plan
        await command(erin, team, "!oodrive share plan.pdf --expires 7d", "Share link for plan.pdf")
        return start, team

    async def with_device():
        erin = await NioUser.login(product_world.homeserver, "erin", str(tmp_path))
        try:
            return *await scenario(erin), erin.timeline, erin.decrypted
        finally:
            await erin.close()

    start, team, timeline, decrypted = run(with_device())
    screenshots(product_world, tmp_path, {
        "team-room-command.png": chat_page("Project office", "a room with the Oodrive bot",
                                           [e for r, e in timeline if r == start], decrypted),
        "team-room.png": chat_page("Crypt", "the team room: end-to-end encrypted, its folder, its meeting",
                                   [e for r, e in timeline if r == team], decrypted, [e for _, e in timeline])})


def screenshots(world, tmp_path, pages: dict[str, str]) -> None:
    """The flow's pictures (and the console's rooms) under tmp_path, and in HEXAGONE_SCREENSHOTS_DIR when
    set (docs/screenshots, for the README); nothing without Playwright and Debian's chromium."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return
    if not os.path.exists(CHROMIUM) or world.kind != "hexagone":  # the console is Hexagone's
        return
    from tests.integration.harness import register_admin
    password = "console-Pa55word"
    admin = register_admin(world.homeserver, password)
    out = tmp_path / "screenshots"
    out.mkdir()
    console = (f"{world.homeserver.base_url}/_hexagone/console/", admin.user_id, password)
    for path in shoot(pages, console, str(out)):
        if os.environ.get("HEXAGONE_SCREENSHOTS_DIR"):
            shutil.copy(path, os.environ["HEXAGONE_SCREENSHOTS_DIR"])


def test_restarts_of_the_bridge_and_the_standin_lose_nothing_and_post_nothing_twice(product_world, oodrive, folder,
                                                                                   carol, linked):
    needs_media(product_world)
    bridge = product_world.bridges["oodrive"]

    async def scenario(alice: NioUser):
        bridge.stop()
        add_file(oodrive, folder["id"], carol, "while-away.pdf", b"added while the bridge was down")
        await upload(alice, b"posted while the bridge was down", "posted-away.bin", linked)
        bridge.start()
        await alice.wait_for(file_event("while-away.pdf", linked))
        wait_until(lambda: files_named(oodrive, "posted-away.bin"))

        oodrive.stop()
        await upload(alice, b"posted while Oodrive restarts", "during-restart.bin", linked)
        oodrive.start()
        wait_until(lambda: files_named(oodrive, "during-restart.bin"))
        add_file(oodrive, folder["id"], carol, "after-restart.pdf", b"after")
        await alice.wait_for(file_event("after-restart.pdf", linked))
        bridge.stop()
        bridge.start()
        # killed (SIGKILL) while bridging a burst: the restart resumes from the stored cursor, and a file
        # posted but not yet recorded is resent with the same transaction id (deduplicated)
        for i in range(5):
            add_file(oodrive, folder["id"], carol, f"burst-{i}.pdf", b"burst %d" % i)
        await alice.wait_for(file_event("burst-0.pdf", linked))
        bridge.kill()
        bridge.start()
        for i in range(5):
            await alice.wait_for(file_event(f"burst-{i}.pdf", linked))
        add_file(oodrive, folder["id"], carol, "marker.pdf", b"marker")
        await alice.wait_for(file_event("marker.pdf", linked))
        await alice.sync_once(0)
        for name in ("while-away.pdf", "after-restart.pdf", "report.pdf", "big-in.bin",
                     *(f"burst-{i}.pdf" for i in range(5))):
            assert alice.count(file_event(name, linked)) <= (2 if name == "report.pdf" else 1), name
        for name in ("posted-away.bin", "during-restart.bin", "minutes.bin"):
            assert len(files_named(oodrive, name)) <= 1 and \
                all(f["version"] == 1 for f in files_named(oodrive, name)), name

    as_alice(product_world, scenario)


def test_team_room_in_one_command(product_world, tmp_path):
    domain = product_world.homeserver.name

    async def scenario(alice: NioUser):
        room = await bot_room(alice, f"@oodrivebot:{domain}")
        answer = await command(alice, room, "!hexagone team Alpha", "Team room 'Alpha' created")
        assert "Tixeo meeting" in answer["content"]["body"], answer["content"]["body"]
        team = answer["content"]["body"].split("(", 1)[1].split(")", 1)[0]
        await alice.wait_for(notice("Tixeo meeting: https://meet.tixeo.invalid/j/", team))
        assert (await alice.state(team, "m.room.encryption"))["algorithm"] == "m.megolm.v1.aes-sha2"
        folder = product_world.standins["oodrive"].control("GET", "/v1/folders?path=Team/Alpha",
                                                           token=standin_token(product_world.standins["oodrive"]))
        bridge_info = await alice.state(team, "m.bridge", f"net.hexagone.oodrive://oodrive/{folder[1]['id']}")
        assert bridge_info["channel"]["displayname"] == "Team/Alpha"
        meeting = product_world.standins["tixeo"].control("GET", f"/v1/meetings?external_ref={team}",
                                                          token=standin_token(product_world.standins["tixeo"]))
        assert meeting[1]["items"][0]["security_profile"] == "restricted"

    as_alice(product_world, scenario, str(tmp_path))


def test_team_room_with_its_olvid_discussion(product_world, tmp_path):
    """``!hexagone team <name> --olvid <discussion>``: the Olvid bot joins the (encrypted) team room and links
    the group's discussion; messages cross both ways (on Hexagone, encrypted in the room)."""
    daemon = product_world.daemon
    if daemon is None:
        pytest.skip("the olvid extra is not installed")
    domain = product_world.homeserver.name
    bob, _ = daemon.add_contact("Bob")
    _, discussion = daemon.add_group("Crew", [bob])

    async def scenario(erin: NioUser):
        start = await bot_room(erin, f"@oodrivebot:{domain}")
        await command(erin, start, "!hexagone team --olvid", "Usage: !hexagone team <name> [--olvid")
        answer = await command(erin, start, f"!hexagone team Crew --olvid {discussion}",
                               f"and to the Olvid discussion {discussion}")
        team = answer["content"]["body"].split("(", 1)[1].split(")", 1)[0]
        _, linked = await erin.wait_for(notice("now bridged to Crew", team))
        daemon.contact_sends(bob, discussion, "hello from Olvid")
        _, message = await erin.wait_message("hello from Olvid")
        assert message["sender"] == f"@olvid_{bob}:{domain}"
        assert {linked["event_id"], message["event_id"]} <= erin.decrypted
        await erin.send(team, {"msgtype": "m.text", "body": "hello Olvid"})
        daemon.wait(lambda: [m for m in daemon.outbound(discussion) if m.body.endswith("hello Olvid")])

    async def with_device():
        erin = await NioUser.login(product_world.homeserver, "erin", str(tmp_path))
        try:
            await scenario(erin)
        finally:
            await erin.close()

    run(with_device())


async def file_delays(user: NioUser, oodrive, folder_id: str, carol: dict, room: str, runs: int) -> list[float]:
    """``runs`` times: a file added in Oodrive, the seconds until its message is in the room."""
    delays = []
    for i in range(runs):
        start = time.monotonic()
        add_file(oodrive, folder_id, carol, f"latency-{room[1:6]}-{i}.pdf", b"%d" % i)
        await user.wait_for(lambda r, e: r == room and e.get("type") == "m.room.message"
                            and e["content"].get("body") == f"latency-{room[1:6]}-{i}.pdf")
        delays.append(time.monotonic() - start)
    return delays


def test_latency_from_a_file_added_in_oodrive_to_the_room(product_world, oodrive, folder, carol, linked):
    needs_media(product_world)

    async def scenario(alice: NioUser):
        delays = await file_delays(alice, oodrive, folder["id"], carol, linked, LATENCY_RUNS)
        print(f"\nOodrive file -> room ({product_world.kind}): median {statistics.median(delays) * 1000:.0f} ms "
              f"over {len(delays)} runs (webhook; poll every 5 s)")

    as_alice(product_world, scenario)


def test_latency_in_an_encrypted_team_room(product_world, oodrive, carol, tmp_path):
    """The same two figures in an encrypted team room: each message is encrypted by the bridge's device
    (after a sync of its keys and members) and decrypted by the matrix-nio user's."""
    needs_media(product_world)
    from tests.bridges.test_tixeo import meet_delays

    async def scenario(erin: NioUser):
        start = await bot_room(erin, f"@oodrivebot:{product_world.homeserver.name}")
        answer = await command(erin, start, "!hexagone team Bench", "Team room 'Bench' created")
        team = answer["content"]["body"].split("(", 1)[1].split(")", 1)[0]
        await erin.wait_for(notice("Tixeo meeting: https://meet.tixeo.invalid/j/", team))
        folder = oodrive.control("GET", "/v1/folders?path=Team/Bench", token=standin_token(oodrive))[1]
        files = await file_delays(erin, oodrive, folder["id"], carol, team, LATENCY_RUNS)
        meeting = product_world.standins["tixeo"].control(
            "GET", f"/v1/meetings?external_ref={team}", token=standin_token(product_world.standins["tixeo"]))[1]
        product_world.standins["tixeo"].control("POST", f"/_standin/meetings/{meeting['items'][0]['id']}/end")
        await erin.wait_for(notice("ended", team))
        meets = await meet_delays(erin, product_world.standins["tixeo"], team, LATENCY_RUNS)
        assert erin.count(lambda r, e: r == team and e.get("event_id") in erin.decrypted) >= 2 * LATENCY_RUNS
        print(f"\nencrypted team room ({product_world.kind}): Oodrive file -> room median "
              f"{statistics.median(files) * 1000:.0f} ms, !tixeo meet -> join link median "
              f"{statistics.median(meets) * 1000:.0f} ms, over {LATENCY_RUNS} runs each")

    as_alice(product_world, scenario, str(tmp_path))
