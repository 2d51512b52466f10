"""Server notices (spec v1.19 client-server "Server Notices"), sent through Synapse's admin API
(element-hq/synapse docs/admin_api/server_notices.md) with Synapse's ``server_notices`` configuration: the
notice arrives in the user's notices room, tagged ``m.server_notice`` (seen by matrix-nio), where the user
cannot post."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import nio
import pytest

from tests.integration.harness import PASSWORD, register_admin

V1 = "/_synapse/admin/v1"
NOTICES = {"system_mxid_localpart": "notices", "system_mxid_display_name": "Avis du serveur",
           "room_name": "Annonces", "room_topic": "Messages des administrateurs", "auto_join": True}


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory(server_notices=NOTICES)


@pytest.fixture(scope="module")
def admin(server):
    return register_admin(server)


def notice(text: str) -> dict:
    return {"msgtype": "m.server_notice", "body": text, "server_notice_type": "m.server_notice.usage_limit_reached",
            "admin_contact": "mailto:admin@test.local", "limit_type": "monthly_active_user"}


def test_matrix_nio_sees_notice_and_tag(server, admin):
    user = server.register()
    sent = admin.ok("POST", f"{V1}/send_server_notice", {"user_id": user.user_id, "content": notice("Maintenance")})

    async def as_user():
        client = nio.AsyncClient(server.base_url, user.user_id)
        try:
            assert isinstance(await client.login(PASSWORD), nio.LoginResponse)
            since, seen = None, {}
            deadline = time.monotonic() + 15
            while not ("notice" in seen and "tag" in seen):
                assert time.monotonic() < deadline, seen
                resp = await client.sync(timeout=3000, since=since, full_state=since is None)
                since = resp.next_batch
                for room_id, info in resp.rooms.join.items():
                    for ev in info.timeline.events:
                        if ev.event_id == sent["event_id"]:
                            seen["notice"] = (room_id, ev.sender, ev.source["content"]["body"])
                    for ev in info.account_data:
                        if isinstance(ev, nio.TagEvent) and "m.server_notice" in ev.tags:
                            seen["tag"] = room_id
            room = client.rooms[seen["tag"]]
            return seen, room.name, room.topic, room.user_name("@notices:test.local")
        finally:
            await client.close()

    seen, name, topic, system_name = asyncio.run(as_user())
    room_id = seen["tag"]
    assert seen["notice"] == (room_id, "@notices:test.local", "Maintenance")
    assert (name, topic, system_name) == ("Annonces", "Messages des administrateurs", "Avis du serveur")

    # The user cannot post there; a second notice goes to the same room; a PUT is idempotent per txn id.
    status, body = user.request("PUT", f"/rooms/{quote(room_id)}/send/m.room.message/t1", {"body": "hi",
                                                                                         "msgtype": "m.text"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    first = admin.ok("PUT", f"{V1}/send_server_notice/abc", {"user_id": user.user_id, "content": notice("Again")})
    assert admin.ok("PUT", f"{V1}/send_server_notice/abc",
                    {"user_id": user.user_id, "content": notice("Again")}) == first
    events = user.messages(room_id, dir="b", limit=10)["chunk"]
    assert [e["content"]["body"] for e in events if e["type"] == "m.room.message"] == ["Again", "Maintenance"]

    # After leaving, the next notice opens a new room.
    user.leave(room_id)
    again = admin.ok("POST", f"{V1}/send_server_notice", {"user_id": user.user_id, "content": notice("New room")})
    tagged = [r for r in user.ok("GET", "/joined_rooms")["joined_rooms"]
              if "m.server_notice" in user.ok("GET", f"/user/{quote(user.user_id)}/rooms/{quote(r)}/tags")["tags"]]
    assert len(tagged) == 1 and tagged[0] != room_id
    assert user.ok("GET", f"/rooms/{quote(tagged[0])}/event/{quote(again['event_id'])}")["content"]["body"] == "New room"
    audit = admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=admin_action&target={quote(user.user_id)}")["events"]
    assert [e["details"]["action"] for e in audit] == ["send_server_notice"] * 4


def test_errors(server, admin):
    user = server.register()
    for body, errcode in (({"user_id": "@nobody:test.local", "content": notice("x")}, "M_NOT_FOUND"),
                          ({"user_id": "@someone:elsewhere.example", "content": notice("x")}, "M_UNKNOWN"),
                          ({"content": notice("x")}, "M_MISSING_PARAM"),
                          ({"user_id": user.user_id, "content": "x"}, "M_BAD_JSON")):
        status, answer = admin.request("POST", f"{V1}/send_server_notice", body)
        assert answer["errcode"] == errcode and status in (400, 404)
    status, answer = user.request("POST", f"{V1}/send_server_notice", {"user_id": user.user_id,
                                                                          "content": notice("x")})
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")


def test_disabled_without_localpart(homeserver_factory):
    plain = homeserver_factory()
    boss = register_admin(plain)
    status, answer = boss.request("POST", f"{V1}/send_server_notice", {"user_id": boss.user_id,
                                                                          "content": notice("x")})
    assert (status, answer["errcode"]) == (400, "M_UNKNOWN")


def test_invited_without_auto_join(homeserver_factory):
    plain = homeserver_factory(server_notices={"system_mxid_localpart": "avis"})
    boss, user = register_admin(plain), plain.register()
    sent = boss.ok("POST", f"{V1}/send_server_notice", {"user_id": user.user_id, "content": notice("Bienvenue")})
    invites = user.sync()["rooms"]["invite"]
    (room_id,) = invites
    inviter = [e for e in invites[room_id]["invite_state"]["events"] if e["type"] == "m.room.member"
               and e["state_key"] == user.user_id]
    assert inviter[0]["sender"] == "@avis:test.local"
    user.join(room_id)
    assert user.ok("GET", f"/user/{quote(user.user_id)}/rooms/{quote(room_id)}/tags")["tags"] == {"m.server_notice": {}}
    assert user.ok("GET", f"/rooms/{quote(room_id)}/state/m.room.name") == {"name": "Server Notices"}
    assert user.ok("GET", f"/rooms/{quote(room_id)}/event/{quote(sent['event_id'])}")["content"]["body"] == "Bienvenue"
