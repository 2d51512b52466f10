"""The Olvid bridge end to end: matrix-nio users on a real homeserver, the bridge process, and the
stand-in Olvid daemon driven by the unmodified OlvidClient inside the bridge."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.bridges.conftest import MATRIX_USER
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
            daemon.contact_reads(read.id)
            await alice.wait_receipt(event_id, ghost)
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
            daemon.rename(discussion, "Team (renamed)")
            await alice.wait_for(lambda r, e: r == room_id and e.get("type") == "m.room.name"
                                 and e["content"].get("name") == "Team (renamed)")
        finally:
            await alice.close()

    run(scenario())
