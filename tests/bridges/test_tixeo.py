"""The Tixeo bridge end to end: matrix-nio users on a real homeserver, the bridge process, and the Tixeo
stand-in (``hexagone bridge tixeo standin``): meetings from a command and from a MatrixRTC call member,
link and widget, participants, the end of a meeting, restarts and bad input."""

from __future__ import annotations

import statistics
import time

import pytest

from tests.bridges.nio_user import NioUser
from tests.bridges.test_oodrive import LATENCY_RUNS, as_alice, bot_room, command, notice, standin_token

LINK = "Tixeo meeting: https://meet.tixeo.invalid/j/"
WIDGETS = "im.vector.modular.widgets"


@pytest.fixture(scope="module")
def tixeo(product_world):
    return product_world.standins["tixeo"]


def meeting_of(tixeo, room: str, active: bool = True) -> dict | None:
    status, page = tixeo.control("GET", f"/v1/meetings?external_ref={room}&active={str(active).lower()}",
                                 token=standin_token(tixeo))
    assert status == 200, page
    return page["items"][-1] if page["items"] else None


def joins(tixeo, meeting: dict, name: str, guest: bool = False) -> tuple[int, dict]:
    return tixeo.control("POST", f"/_standin/meetings/{meeting['id']}/participants", {"name": name, "guest": guest})


def widget_of(meeting_id: str):
    return lambda r, e: e.get("type") == WIDGETS and e.get("state_key") == f"tixeo_{meeting_id}"


def test_a_meeting_from_a_command_with_link_widget_participants_and_end(product_world, tixeo):
    bot = f"@tixeobot:{product_world.homeserver.name}"

    async def scenario(alice: NioUser):
        room = await bot_room(alice, bot)
        await command(alice, room, "!tixeo meet", "ready (public)")  # private_chat lets guests join
        await command(alice, room, "!tixeo end", "Ending")
        await alice.wait_for(notice("The Tixeo meeting has ended", room))
        await alice.client.room_put_state(room, "m.room.guest_access", {"guest_access": "forbidden"})
        await command(alice, room, "!tixeo meet", "The Tixeo meeting is ready (restricted)")
        meeting = meeting_of(tixeo, room)
        _, link = await alice.wait_for(lambda r, e: notice(LINK, room)(r, e) and meeting["id"] in e["content"]["body"])
        assert meeting["join_url"] in link["content"]["body"] and "no guest web access" in link["content"]["body"]
        assert meeting["security_profile"] == "restricted" and meeting["guest_web_access"] is False
        assert alice.user_id in meeting["invitees"] and bot not in meeting["invitees"]
        _, widget = await alice.wait_for(widget_of(meeting["id"]))
        assert widget["content"]["url"] == meeting["join_url"] and widget["content"]["type"] == "m.custom"

        # the same meeting while it is on
        await command(alice, room, "!tixeo meet", f"The Tixeo meeting is on: {meeting['join_url']}")

        # participants, a guest refused by the restricted profile, the end
        status, dave = joins(tixeo, meeting, "Dave")
        assert status == 201
        await alice.wait_for(notice("Dave joined the Tixeo meeting", room))
        assert joins(tixeo, meeting, "Outsider", guest=True)[0] == 403
        assert tixeo.control("DELETE", f"/_standin/meetings/{meeting['id']}/participants/{dave['id']}")[0] == 204
        await alice.wait_for(notice("Dave left the Tixeo meeting", room))
        tixeo.control("POST", f"/_standin/meetings/{meeting['id']}/end")
        await alice.wait_for(lambda r, e: widget_of(meeting["id"])(r, e) and e["content"] == {})
        await alice.wait_for(lambda r, e: notice("has ended", room)(r, e) and alice.count(notice("has ended", room)) == 2)
        assert alice.count(notice("Dave joined", room)) == 1 and alice.count(notice("has ended", room)) == 2

    as_alice(product_world, scenario)


def test_the_first_call_member_of_a_linked_room_starts_a_public_meeting(product_world, tixeo):
    bot = f"@tixeobot:{product_world.homeserver.name}"

    async def scenario(alice: NioUser):
        room = await bot_room(alice, bot, preset="public_chat")
        await command(alice, room, "!tixeo meet", "The Tixeo meeting is ready (public)")
        first = meeting_of(tixeo, room)
        assert first["guest_web_access"] is True and joins(tixeo, first, "Guest", guest=True)[0] == 201
        await command(alice, room, "!tixeo end", "Ending the Tixeo meeting")
        await alice.wait_for(notice("The Tixeo meeting has ended", room))

        # a MatrixRTC call member (non-empty) in the linked room: a new meeting, its link posted once
        device = alice.client.device_id  # a call member's key names the sender's own device (MatrixRTC)
        member = {"application": "m.call", "call_id": "", "scope": "m.room", "device_id": device,
                  "focus_active": {"type": "livekit"}, "foci_preferred": []}
        await alice.send(room, member, "org.matrix.msc3401.call.member")  # not a state event: ignored
        resp = await alice.client.room_put_state(room, "org.matrix.msc3401.call.member", member,
                                                 state_key=f"_{alice.user_id}_{device}")
        assert hasattr(resp, "event_id"), resp
        await alice.wait_for(lambda r, e: notice(LINK, room)(r, e) and first["id"] not in e["content"]["body"])
        second = meeting_of(tixeo, room)
        assert second["id"] != first["id"] and second["security_profile"] == "public"
        await alice.wait_for(widget_of(second["id"]))
        await alice.client.room_put_state(room, "org.matrix.msc3401.call.member", member,
                                          state_key=f"_{alice.user_id}_{device}_m.call")
        await command(alice, room, "!tixeo meet", "is on")
        assert alice.count(lambda r, e: notice(LINK, room)(r, e) and second["id"] in e["content"]["body"]) == 1

    as_alice(product_world, scenario)


def test_restarts_and_bad_input(product_world, tixeo):
    bot = f"@tixeobot:{product_world.homeserver.name}"
    bridge = product_world.bridges["tixeo"]

    async def scenario(alice: NioUser):
        room = await bot_room(alice, bot)
        tixeo.control("POST", "/_standin/fault", {"status": 500, "count": 1, "path": "/v1/meetings"})
        await command(alice, room, "!tixeo meet", "Tixeo is unavailable")
        tixeo.control("POST", "/_standin/revoke", {"secret": "rotated"})
        await command(alice, room, "!tixeo meet", "refused the bridge's credentials")
        tixeo.control("POST", "/_standin/revoke", {"secret": tixeo.client_secret})
        await command(alice, room, "!tixeo meet", "ready")
        meeting = meeting_of(tixeo, room)

        bridge.stop()  # what happens meanwhile is relayed after the restart, once
        joins(tixeo, meeting, "Erin")
        bridge.start()
        await alice.wait_for(notice("Erin joined the Tixeo meeting", room))
        tixeo.stop()
        tixeo.start()  # the stand-in kept its meetings
        await command(alice, room, "!tixeo meet", f"is on: {meeting['join_url']}")
        joins(tixeo, meeting, "Frank")
        await alice.wait_for(notice("Frank joined the Tixeo meeting", room))
        bridge.stop()
        bridge.start()
        tixeo.control("POST", f"/_standin/meetings/{meeting['id']}/end")
        await alice.wait_for(notice("The Tixeo meeting has ended", room))
        await alice.sync_once(0)
        for text in ("Erin joined", "Frank joined", "has ended", LINK):
            assert alice.count(notice(text, room)) == 1, text

    as_alice(product_world, scenario)


async def meet_delays(user: NioUser, tixeo, room: str, runs: int) -> list[float]:
    """``runs`` times: ``!tixeo meet``, the seconds until the join link, then the meeting ended."""
    delays, before = [], user.count(notice(LINK, room))
    for i in range(runs):
        start = time.monotonic()
        await user.send(room, {"msgtype": "m.text", "body": "!tixeo meet"})
        await user.wait_for(lambda r, e: notice(LINK, room)(r, e)
                            and user.count(notice(LINK, room)) == before + i + 1)
        delays.append(time.monotonic() - start)
        meeting = meeting_of(tixeo, room)
        tixeo.control("POST", f"/_standin/meetings/{meeting['id']}/end")
        await user.wait_for(lambda r, e: widget_of(meeting["id"])(r, e) and e["content"] == {})
    return delays


def test_latency_from_meet_to_the_join_link(product_world, tixeo):
    bot = f"@tixeobot:{product_world.homeserver.name}"

    async def scenario(alice: NioUser):
        delays = await meet_delays(alice, tixeo, await bot_room(alice, bot), LATENCY_RUNS)
        print(f"\n!tixeo meet -> join link ({product_world.kind}): median {statistics.median(delays) * 1000:.0f} ms "
              f"over {len(delays)} runs")

    as_alice(product_world, scenario)
