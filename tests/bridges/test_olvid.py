"""The Olvid bridge end to end: matrix-nio users on a real homeserver, the bridge process, and the
stand-in Olvid daemon driven by the unmodified OlvidClient inside the bridge."""

from __future__ import annotations

import hashlib
import io
import json
import statistics
import time
import urllib.error
import urllib.request
import os

import pytest

from tests.bridges.conftest import MATRIX_USER, OUTSIDER
from tests.bridges.nio_user import NioUser, run



def is_message(body: str):
    return lambda _r, e: e.get("type") == "m.room.message" and e.get("content", {}).get("body") == body


@pytest.fixture(scope="module")
def bob(olvid_world):
    """An Olvid contact with a one-to-one discussion: (contact_id, discussion_id)."""
    return olvid_world.daemon.add_contact("Bob", photo=b"\x89PNG\r\n\x1a\nnot really a picture")


@pytest.fixture(scope="module")
def portal(olvid_world, bob):
    """Bob's first message creates the portal; the Matrix user is invited and joins: the room id."""
    world = olvid_world
    world.daemon.contact_sends(bob[0], bob[1], "hello from Olvid")

    async def scenario():
        alice = await NioUser.login(world.homeserver, MATRIX_USER)
        try:
            room_id, event = await alice.wait_message("hello from Olvid")
            return room_id, event
        finally:
            await alice.close()

    room_id, event = run(scenario())
    return room_id


def test_olvid_message_appears_from_the_right_ghost(olvid_world, bob, portal):
    domain = olvid_world.homeserver.name

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            _, event = await alice.wait_for(lambda r, e: r == portal and is_message("hello from Olvid")(r, e))
            assert event["sender"] == f"@olvid_{bob[0]}:{domain}"
            profile = await alice.client.get_profile(event["sender"])
            assert profile.displayname == "Bob (Olvid)"
            if olvid_world.has_media:
                assert profile.avatar_url and profile.avatar_url.startswith("mxc://")
            state_key = f"net.hexagone.olvid://olvid/{bob[1]}"
            for event_type in ("m.bridge", "uk.half-shot.bridge"):
                info = await alice.state(portal, event_type, state_key)
                assert info["protocol"]["id"] == "olvid" and info["channel"]["id"] == str(bob[1]), info
                assert info["bridgebot"] == f"@olvidbot:{domain}"
        finally:
            await alice.close()

    run(scenario())


def test_matrix_message_appears_in_the_olvid_discussion(olvid_world, bob, portal):
    daemon = olvid_world.daemon

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            event_id = await alice.send(portal, {"msgtype": "m.text", "body": "hello from Matrix"})
            sent = daemon.wait(lambda: [m for m in daemon.outbound(bob[1]) if m.body == "alice: hello from Matrix"])
            assert len(sent) == 1
            _, status = await alice.wait_for(lambda r, e: e.get("type") == "com.beeper.message_send_status"
                                             and e["content"]["m.relates_to"]["event_id"] == event_id)
            assert status["content"]["status"] == "SUCCESS"
        finally:
            await alice.close()

    run(scenario())


def relation(event: dict) -> dict:
    return event.get("content", {}).get("m.relates_to") or {}


def test_reply_edit_deletion_and_reaction_cross_both_ways(olvid_world, bob, portal):
    daemon = olvid_world.daemon
    ghost = f"@olvid_{bob[0]}:{olvid_world.homeserver.name}"

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            # Matrix -> Olvid: a message, then a reply to Bob's message
            first = daemon.contact_sends(bob[0], bob[1], "question from Bob")
            _, bob_event = await alice.wait_message("question from Bob")
            await alice.send(portal, {"msgtype": "m.text", "body": "answer from alice",
                                      "m.relates_to": {"m.in_reply_to": {"event_id": bob_event["event_id"]}}})
            answer = daemon.wait(lambda: [m for m in daemon.outbound(bob[1]) if m.body == "alice: answer from alice"])[0]
            assert answer.replied_message_id == first.id

            # Olvid -> Matrix: a reply to alice's message
            daemon.contact_sends(bob[0], bob[1], "thanks", reply_to=answer.id)
            _, thanks = await alice.wait_message("thanks")
            _, alice_answer = await alice.wait_for(is_message("answer from alice"))
            assert relation(thanks)["m.in_reply_to"]["event_id"] == alice_answer["event_id"]
            assert thanks["sender"] == ghost

            # edits both ways
            daemon.contact_edits(first, "question from Bob (edited)")
            _, edit = await alice.wait_for(lambda _r, e: relation(e).get("rel_type") == "m.replace"
                                           and relation(e).get("event_id") == bob_event["event_id"])
            assert edit["content"]["m.new_content"]["body"] == "question from Bob (edited)"
            assert edit["sender"] == ghost
            await alice.send(portal, {"msgtype": "m.text", "body": "* answer (edited)",
                                      "m.new_content": {"msgtype": "m.text", "body": "answer (edited)"},
                                      "m.relates_to": {"rel_type": "m.replace", "event_id": alice_answer["event_id"]}})
            daemon.wait(lambda: daemon.state.messages[(answer.id.type, answer.id.id)].body == "alice: answer (edited)")

            # reactions both ways
            daemon.contact_reacts(bob[0], answer.id, "👍")
            _, reaction = await alice.wait_for(lambda _r, e: e.get("type") == "m.reaction")
            assert relation(reaction) == {"rel_type": "m.annotation", "event_id": alice_answer["event_id"], "key": "👍"}
            assert reaction["sender"] == ghost
            await alice.send(portal, {"m.relates_to": {"rel_type": "m.annotation", "event_id": bob_event["event_id"],
                                                       "key": "❤️"}}, "m.reaction")
            daemon.wait(lambda: [r for r in daemon.state.messages[(first.id.type, first.id.id)].reactions
                                 if r.contact_id == 0 and r.reaction == "❤️"])

            # deletions both ways
            daemon.contact_deletes(first)
            await alice.wait_for(lambda _r, e: e.get("type") == "m.room.redaction" and
                                 (e.get("redacts") or e["content"].get("redacts")) == bob_event["event_id"])
            await alice.client.room_redact(portal, alice_answer["event_id"])
            daemon.wait(lambda: (answer.id.type, answer.id.id) not in daemon.state.messages)

            # Olvid's read receipt is the ghost's receipt on alice's event
            event_id = await alice.send(portal, {"msgtype": "m.text", "body": "read me"})
            read = daemon.wait(lambda: [m for m in daemon.outbound(bob[1]) if m.body == "alice: read me"])[0]
            daemon.contact_reads(read.id)  # delivered, then read
            _, delivered = await alice.wait_for(lambda _r, e: e.get("type") == "com.beeper.message_send_status"
                                                and relation(e).get("event_id") == event_id
                                                and e["content"].get("delivered_to_users") == [ghost])
            assert delivered["content"]["status"] == "SUCCESS"
            await alice.wait_receipt(event_id, ghost)
            # nothing the ghosts said went back to Olvid (no echo)
            assert not [m for m in daemon.outbound(bob[1]) if "question from Bob" in m.body or m.body == "thanks"]
        finally:
            await alice.close()

    run(scenario())


def test_group_members_join_and_leave_and_the_title_follows(olvid_world, bob):
    daemon = olvid_world.daemon
    carol, _ = daemon.add_contact("Carol")
    dave, _ = daemon.add_contact("Dave")
    group, discussion = daemon.add_group("Team", [bob[0], carol])
    domain = olvid_world.homeserver.name

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            daemon.contact_sends(carol, discussion, "hello team")
            room_id, event = await alice.wait_message("hello team")
            assert event["sender"] == f"@olvid_{carol}:{domain}"
            members = (await alice.client.joined_members(room_id)).members
            assert {f"@olvid_{bob[0]}:{domain}", f"@olvid_{carol}:{domain}"} <= {m.user_id for m in members}
            daemon.member_joins(group, dave)
            await alice.wait_for(lambda r, e: r == room_id and e.get("type") == "m.room.member"
                                 and e.get("state_key") == f"@olvid_{dave}:{domain}"
                                 and e["content"].get("membership") == "join")
            daemon.member_leaves(group, carol)
            await alice.wait_for(lambda r, e: r == room_id and e.get("type") == "m.room.member"
                                 and e.get("state_key") == f"@olvid_{carol}:{domain}"
                                 and e["content"].get("membership") == "leave")
            daemon.contact_renamed(carol, "Caroline")  # her ghost's name follows (she left: Bob's does)
            daemon.contact_renamed(bob[0], "Robert")
            await alice.wait_for(lambda r, e: r == room_id and e.get("type") == "m.room.member"
                                 and e.get("state_key") == f"@olvid_{bob[0]}:{domain}"
                                 and e["content"].get("displayname") == "Robert (Olvid)")
            daemon.contact_renamed(bob[0], "Bob")
            daemon.rename(discussion, "Team (renamed)")
            await alice.wait_for(lambda r, e: r == room_id and e.get("type") == "m.room.name"
                                 and e["content"].get("name") == "Team (renamed)")
        finally:
            await alice.close()

    run(scenario())


ATTACHMENT_BYTES = 20 * 1024 * 1024


def peak_memory(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


async def download(alice: NioUser, mxc: str) -> bytes:
    resp = await alice.client.download(mxc=mxc)
    assert hasattr(resp, "body"), resp
    return resp.body


async def upload(alice: NioUser, data: bytes, filename: str) -> str:
    resp, _ = await alice.client.upload(io.BytesIO(data), "application/octet-stream", filename, filesize=len(data))
    assert hasattr(resp, "content_uri"), resp
    return resp.content_uri


def test_a_20_mb_attachment_crosses_both_ways_byte_exact(olvid_world, bob, portal):
    if not olvid_world.has_media:
        pytest.skip(f"{olvid_world.kind} has no media repository on this branch (media-core not merged)")
    daemon = olvid_world.daemon

    async def both_ways(size: int, tag: str):
        from_olvid, from_matrix = os.urandom(size), os.urandom(size)
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            daemon.contact_sends(bob[0], bob[1], "", attachments=[(f"{tag}-report.bin", "application/octet-stream",
                                                                   from_olvid)])
            _, event = await alice.wait_for(lambda _r, e: e.get("content", {}).get("body") == f"{tag}-report.bin")
            assert event["content"]["msgtype"] == "m.file" and event["content"]["info"]["size"] == size
            assert hashlib.sha256(await download(alice, event["content"]["url"])).digest() == \
                hashlib.sha256(from_olvid).digest()

            mxc = await upload(alice, from_matrix, f"{tag}-scan.bin")
            await alice.send(portal, {"msgtype": "m.file", "body": f"{tag}-scan.bin", "url": mxc,
                                      "info": {"size": size, "mimetype": "application/octet-stream"}})
            sent = daemon.wait(lambda: [m for m in daemon.outbound(bob[1]) if m.attachments_count
                                        and m.body == f"alice: {tag}-scan.bin"], timeout=120)[-1]
            [(name, data)] = daemon.attachment_data(sent)
            assert name == f"{tag}-scan.bin" and hashlib.sha256(data).digest() == hashlib.sha256(from_matrix).digest()
        finally:
            await alice.close()

    # A small file first, so that what the first attachment loads once (modules, buffers) is not counted.
    run(both_ways(64 * 1024, "warm-up"))
    peak_before = peak_memory(olvid_world.bridge.process.pid)
    run(both_ways(ATTACHMENT_BYTES, "big"))
    # streamed both ways: the bridge never held a whole file in memory
    growth = peak_memory(olvid_world.bridge.process.pid) - peak_before
    print(f"\nbridge peak RSS growth over two {ATTACHMENT_BYTES} byte transfers: {growth / 2**20:.1f} MiB")
    assert growth < ATTACHMENT_BYTES


def test_an_attachment_downloaded_after_its_message_is_bridged_when_it_arrives(olvid_world, bob, portal):
    if not olvid_world.has_media:
        pytest.skip(f"{olvid_world.kind} has no media repository on this branch (media-core not merged)")
    daemon = olvid_world.daemon

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            late = daemon.contact_sends(bob[0], bob[1], "the file follows", downloaded=False,
                                        attachments=[("late.txt", "text/plain", b"late bytes")])
            daemon.contact_sends(bob[0], bob[1], "meanwhile")  # not held back
            await alice.wait_message("meanwhile")
            daemon.attachments_arrive(late)
            _, file_event = await alice.wait_for(lambda _r, e: e.get("content", {}).get("body") == "late.txt")
            assert await download(alice, file_event["content"]["url"]) == b"late bytes"
            await alice.wait_message("the file follows")
            assert alice.count(is_message("the file follows")) == 1
        finally:
            await alice.close()

    run(scenario())


def test_an_attachment_over_the_limit_is_a_notice_both_ways(olvid_world, bob, portal):
    if not olvid_world.has_media:
        pytest.skip(f"{olvid_world.kind} has no media repository on this branch (media-core not merged)")
    daemon = olvid_world.daemon
    too_big = olvid_world.bridge.config["bridge"]["max_attachment_size"] + 1

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            daemon.contact_sends(bob[0], bob[1], "", attachments=[("huge.bin", "application/octet-stream",
                                                                    bytes(too_big))])
            _, notice = await alice.wait_for(lambda _r, e: e.get("content", {}).get("msgtype") == "m.notice"
                                             and "huge.bin" in e["content"].get("body", ""))
            assert "not bridged" in notice["content"]["body"]
            daemon.contact_sends(bob[0], bob[1], "after the huge one")  # nothing held back by it
            await alice.wait_message("after the huge one")

            mxc = await upload(alice, bytes(too_big), "huge-out.bin")
            event_id = await alice.send(portal, {"msgtype": "m.file", "body": "huge-out.bin", "url": mxc,
                                                 "info": {"size": too_big}})
            _, status = await alice.wait_for(lambda _r, e: e.get("type") == "com.beeper.message_send_status"
                                             and relation(e).get("event_id") == event_id)
            assert status["content"]["status"] == "FAIL_PERMANENT"
            assert status["content"]["reason"] == "m_event_too_large"
            _, notice = await alice.wait_for(lambda _r, e: e.get("content", {}).get("msgtype") == "m.notice"
                                             and relation(e).get("m.in_reply_to", {}).get("event_id") == event_id)
            assert "too large" in notice["content"]["body"]
            # the size the client declared is not trusted: a file that is larger than it says stops at the limit
            mxc = await upload(alice, bytes(too_big), "liar.bin")
            event_id = await alice.send(portal, {"msgtype": "m.file", "body": "liar.bin", "url": mxc,
                                                 "info": {"size": 10}})
            _, status = await alice.wait_for(lambda _r, e: e.get("type") == "com.beeper.message_send_status"
                                             and relation(e).get("event_id") == event_id)
            assert status["content"]["status"] == "FAIL_PERMANENT"
            assert not [m for m in daemon.outbound(bob[1]) if m.attachments_count and
                        daemon.attachment_data(m)[0][0] in ("huge-out.bin", "liar.bin")]
        finally:
            await alice.close()

    run(scenario())


def wait_bridge_state(bridge, status: int) -> None:
    """Wait until the bridge's readiness endpoint answers ``status`` (200 connected, 503 not)."""
    deadline = time.monotonic() + 60
    while bridge.status("/_bridge/ready")[0] != status:
        assert time.monotonic() < deadline, f"the bridge never reported {status}:\n{bridge.log()}"
        time.sleep(0.05)


def test_a_daemon_restart_mid_conversation_loses_nothing(olvid_world, bob, portal):
    daemon, bridge = olvid_world.daemon, olvid_world.bridge

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            daemon.contact_sends(bob[0], bob[1], "before the daemon restart")
            await alice.wait_message("before the daemon restart")
            daemon.stop()
            wait_bridge_state(bridge, 503)
            state = json.loads(bridge.status("/_bridge/ready")[1])
            assert state["remote"]["state_event"] == "TRANSIENT_DISCONNECT", state
            # the daemon received these while the bridge could not listen; a Matrix message waits too
            down = [daemon.contact_sends(bob[0], bob[1], f"while down {i}", notify=False) for i in range(3)]
            await alice.send(portal, {"msgtype": "m.text", "body": "sent while the daemon is down"})
            daemon.start()
            after = [daemon.contact_sends(bob[0], bob[1], f"after the restart {i}") for i in range(2)]
            wait_bridge_state(bridge, 200)
            for m in down + after:
                _, event = await alice.wait_message(m.body)
                assert event["origin_server_ts"] == m.timestamp
            daemon.wait(lambda: [m for m in daemon.outbound(bob[1]) if m.body == "alice: sent while the daemon is down"])
            daemon.contact_sends(bob[0], bob[1], "daemon restart marker")
            await alice.wait_message("daemon restart marker")
            for m in down + after:
                assert alice.count(is_message(m.body)) == 1, m.body
            assert len([m for m in daemon.outbound(bob[1]) if m.body == "alice: sent while the daemon is down"]) == 1
        finally:
            await alice.close()

    run(scenario())


def test_a_bridge_restart_replays_the_missed_messages_once(olvid_world, bob, portal):
    daemon, bridge = olvid_world.daemon, olvid_world.bridge

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            bridge.stop()
            missed = [daemon.contact_sends(bob[0], bob[1], f"missed {i}") for i in range(3)]
            await alice.send(portal, {"msgtype": "m.text", "body": "sent while the bridge is down"})
            bridge.start()
            for m in missed:
                _, event = await alice.wait_message(m.body)
                assert event["origin_server_ts"] == m.timestamp  # replayed at its original time
            daemon.wait(lambda: [m for m in daemon.outbound(bob[1]) if m.body == "alice: sent while the bridge is down"])
            bridge.stop()
            bridge.start()
            daemon.contact_sends(bob[0], bob[1], "bridge restart marker")
            await alice.wait_message("bridge restart marker")
            for m in missed:
                assert alice.count(is_message(m.body)) == 1, m.body
            assert len([m for m in daemon.outbound(bob[1]) if m.body == "alice: sent while the bridge is down"]) == 1
        finally:
            await alice.close()

    run(scenario())


def put_transaction(bridge, txn_id: str, body: bytes, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{bridge.base_url}/_matrix/app/v1/transactions/{txn_id}", data=body,
                                     method="PUT", headers={"Content-Type": "application/json"})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bad_input_gets_a_clear_error_and_breaks_nothing(olvid_world, bob, portal):
    bridge, daemon = olvid_world.bridge, olvid_world.daemon
    alice_id = f"@{MATRIX_USER}:{olvid_world.homeserver.name}"
    good = json.dumps({"events": []}).encode()
    assert put_transaction(bridge, "t1", good, None) == (401, {"errcode": "M_UNAUTHORIZED",
                                                              "error": "missing the homeserver token"})
    assert put_transaction(bridge, "t1", good, "not-the-token")[1]["errcode"] == "M_FORBIDDEN"
    assert put_transaction(bridge, "t1", b"{not json", bridge.hs_token)[1]["errcode"] == "M_NOT_JSON"
    assert put_transaction(bridge, "t1", b'{"events": 5}', bridge.hs_token)[1]["errcode"] == "M_BAD_JSON"
    # malformed events are skipped, an event for a room the bridge does not know is ignored
    unknown_room = {"event_id": "$unknown-room", "type": "m.room.message", "room_id": "!nowhere:example.org",
                    "sender": alice_id, "content": {"msgtype": "m.text", "body": "to nowhere"}}
    body = json.dumps({"events": [5, {"type": "m.room.message"}, unknown_room]}).encode()
    assert put_transaction(bridge, "t-bad-events", body, bridge.hs_token) == (200, {})
    # a retried transaction, and the same event in another transaction, are handled once
    event = {"event_id": "$retried", "type": "m.room.message", "room_id": portal, "sender": alice_id,
             "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "retried transaction"}}
    for txn_id in ("t-retry", "t-retry", "t-retry-2"):
        assert put_transaction(bridge, txn_id, json.dumps({"events": [event]}).encode(), bridge.hs_token) == (200, {})

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            await alice.send(portal, {"msgtype": "m.text", "body": "after the bad input"})
            daemon.wait(lambda: [m for m in daemon.outbound(bob[1]) if m.body == "alice: after the bad input"])
        finally:
            await alice.close()

    run(scenario())
    assert len([m for m in daemon.outbound(bob[1]) if m.body == "alice: retried transaction"]) == 1
    assert not [m for m in daemon.outbound(bob[1]) if "to nowhere" in m.body]
    assert bridge.status("/_bridge/live")[0] == 200 and bridge.status("/_bridge/ready")[0] == 200
    assert bridge.process.poll() is None


def notice_to(event_id: str):
    return lambda _r, e: (e.get("content", {}).get("msgtype") == "m.notice"
                          and relation(e).get("m.in_reply_to", {}).get("event_id") == event_id)


def test_bot_commands_link_a_room_and_switch_relay(olvid_world):
    daemon = olvid_world.daemon
    domain = olvid_world.homeserver.name
    bot = f"@olvidbot:{domain}"
    eve, eve_discussion = daemon.add_contact("Eve")

    async def command(alice: NioUser, room_id: str, text: str) -> str:
        event_id = await alice.send(room_id, {"msgtype": "m.text", "body": text})
        _, answer = await alice.wait_for(notice_to(event_id))
        assert answer["sender"] == bot
        return answer["content"]["body"]

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            # the management room: a direct chat with the bot, commands without the prefix
            created = await alice.client.room_create(invite=[bot], is_direct=True)
            dm = created.room_id
            await alice.wait_for(lambda r, e: r == dm and e.get("sender") == bot and "Commands" in
                                 e.get("content", {}).get("body", ""))
            assert (await command(alice, dm, "ping")).startswith("pong: Olvid is CONNECTED")
            assert "portal(s) refreshed" in await command(alice, dm, "sync")
            assert f"{eve_discussion}: Eve (one-to-one)\n" in await command(alice, dm, "list") + "\n"
            # a room of ours, linked to Eve's discussion by command
            room = (await alice.client.room_create(name="linked", invite=[bot])).room_id
            await alice.wait_for(lambda r, e: r == room and e.get("type") == "m.room.member"
                                 and e.get("state_key") == bot and e["content"]["membership"] == "join")
            answer = await command(alice, room, f"!olvid bridge {eve_discussion}")
            assert "cannot be bridged: M_FORBIDDEN" in answer, answer  # the bot may not set state yet
            levels = await alice.state(room, "m.room.power_levels")
            levels["users"][bot] = 50
            await alice.client.room_put_state(room, "m.room.power_levels", levels)
            answer = await command(alice, room, f"!olvid bridge {eve_discussion}")
            assert "now bridged" in answer, answer
            info = await alice.state(room, "m.bridge", f"net.hexagone.olvid://olvid/{eve_discussion}")
            assert info["channel"]["id"] == str(eve_discussion)
            daemon.contact_sends(eve, eve_discussion, "hello linked room")
            linked_room, _ = await alice.wait_message("hello linked room")
            assert linked_room == room
            # relay off: the message is refused with a status and a notice
            assert "off" in await command(alice, room, "!olvid unset-relay")
            refused = await alice.send(room, {"msgtype": "m.text", "body": "not relayed"})
            _, notice = await alice.wait_for(notice_to(refused))
            assert "relay mode is off" in notice["content"]["body"]
            assert "on" in await command(alice, room, "!olvid set-relay")
            await alice.send(room, {"msgtype": "m.text", "body": "relayed again"})
            daemon.wait(lambda: [m for m in daemon.outbound(eve_discussion) if m.body == "alice: relayed again"])
            assert not [m for m in daemon.outbound(eve_discussion) if "not relayed" in m.body]
            assert "no longer bridged" in await command(alice, room, "!olvid unbridge")
            await alice.wait_for(lambda r, e: r == room and e.get("state_key") == f"@olvid_{eve}:{domain}"
                                 and e["content"].get("membership") == "leave")
            assert "Unknown command" in await command(alice, room, "!olvid frobnicate")
        finally:
            await alice.close()

    run(scenario())


def test_a_user_without_the_permission_cannot_command_the_bot(olvid_world):
    bot = f"@olvidbot:{olvid_world.homeserver.name}"

    async def scenario():
        mallory = await NioUser.login(olvid_world.homeserver, OUTSIDER)
        try:
            dm = (await mallory.client.room_create(invite=[bot], is_direct=True)).room_id
            await mallory.wait_for(lambda r, e: r == dm and e.get("type") == "m.room.member"
                                   and e.get("state_key") == bot and e["content"]["membership"] == "leave")
            assert not [e for r, e in mallory.timeline if r == dm and e.get("sender") == bot
                        and e.get("type") == "m.room.message"]
        finally:
            await mallory.close()

    run(scenario())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def test_latency_over_200_messages_each_way(olvid_world, bob, portal):
    """Olvid message -> the Matrix client's /sync, and Matrix /send -> the Olvid discussion."""
    daemon, count = olvid_world.daemon, 200

    async def scenario():
        alice = await NioUser.login(olvid_world.homeserver, MATRIX_USER)
        try:
            to_matrix, to_olvid = [], []
            for i in range(count):
                started = time.monotonic()
                daemon.contact_sends(bob[0], bob[1], f"latency in {i}")
                await alice.wait_message(f"latency in {i}")
                to_matrix.append(time.monotonic() - started)
            for i in range(count):
                started = time.monotonic()
                await alice.send(portal, {"msgtype": "m.text", "body": f"latency out {i}"})
                daemon.wait(lambda: [m for m in daemon.outbound(bob[1])[-3:] if m.body == f"alice: latency out {i}"])
                to_olvid.append(time.monotonic() - started)
            return to_matrix, to_olvid
        finally:
            await alice.close()

    to_matrix, to_olvid = run(scenario())
    figures = {name: {"median_ms": round(statistics.median(v) * 1000, 1), "p99_ms": round(percentile(v, 0.99) * 1000, 1)}
               for name, v in (("olvid_to_matrix_sync", to_matrix), ("matrix_send_to_olvid", to_olvid))}
    print(f"\nOlvid bridge latency over {count} messages each way ({olvid_world.kind}): "
          f"{json.dumps(figures)}")
    assert figures["olvid_to_matrix_sync"]["median_ms"] < 2000 and figures["matrix_send_to_olvid"]["median_ms"] < 2000
