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
