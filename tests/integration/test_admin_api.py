"""Synapse's admin API over real HTTP, called as synapse-admin calls it, with Synapse's response shapes
(element-hq/synapse docs/admin_api: user_admin_api.md, rooms.md, federation.md); non-admins get 403
M_FORBIDDEN everywhere; every change lands in the audit trail."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from tests.integration.harness import bulk_users, database_rows, register_admin, unique, wait_for

V1, V2 = "/_synapse/admin/v1", "/_synapse/admin/v2"
USER_FIELDS = {"name", "is_guest", "admin", "user_type", "deactivated", "erased", "shadow_banned", "displayname",
               "avatar_url", "creation_ts", "locked"}
ROOM_FIELDS = {"room_id", "name", "canonical_alias", "joined_members", "joined_local_members", "version",
               "creator", "encryption", "federatable", "public", "join_rules", "guest_access",
               "history_visibility", "state_events", "room_type"}


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory()


@pytest.fixture(scope="module")
def admin(server):
    return register_admin(server)


def audit_actions(admin, target) -> list[str]:
    events = admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=admin_action&target={quote(target)}")["events"]
    return [e["details"]["action"] for e in reversed(events)]


def test_users_list_query_create_modify(server, admin):
    tag = unique("list")
    users = [server.register(f"{tag}{i}") for i in range(3)]
    body = admin.ok("GET", f"{V2}/users?from=0&limit=2&guests=false&name={tag}")
    assert body["total"] == 3 and body["next_token"] == "2" and USER_FIELDS <= set(body["users"][0])
    assert [u["name"] for u in body["users"]] == [u.user_id for u in users[:2]]
    rest = admin.ok("GET", f"{V2}/users?from=2&limit=2&guests=false&name={tag}")
    assert [u["name"] for u in rest["users"]] == [users[2].user_id] and "next_token" not in rest
    backwards = admin.ok("GET", f"{V2}/users?name={tag}&order_by=creation_ts&dir=b")
    assert [u["name"] for u in backwards["users"]] == [u.user_id for u in reversed(users)]

    new_id = f"@{unique('made')}:test.local"
    status, made = admin.request("PUT", f"{V2}/users/{quote(new_id)}",
                                 {"password": "first pass", "displayname": "Made By Admin", "admin": False})
    assert status == 201 and made["name"] == new_id and made["displayname"] == "Made By Admin"
    server.login(new_id, "first pass")
    status, changed = admin.request("PUT", f"{V2}/users/{quote(new_id)}", {"admin": True, "displayname": "Renamed"})
    assert status == 200 and changed["admin"] is True and changed["displayname"] == "Renamed"
    queried = admin.ok("GET", f"{V2}/users/{quote(new_id)}")
    assert queried["threepids"] == [] and queried["admin"] is True and USER_FIELDS <= set(queried)
    assert audit_actions(admin, new_id) == ["create_user", "modify_user"]
    status, body = admin.request("GET", f"{V2}/users/{quote('@nobody:test.local')}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


def test_devices_rooms_admin_flag_and_username(server, admin):
    user = server.register()
    second = server.login(user.user_id)
    me = quote(user.user_id)
    device = admin.ok("GET", f"{V2}/users/{me}/devices/{second.device_id}")
    assert device["device_id"] == second.device_id and device["user_id"] == user.user_id
    admin.ok("PUT", f"{V2}/users/{me}/devices/{second.device_id}", {"display_name": "named by admin"})
    assert admin.ok("GET", f"{V2}/users/{me}/devices/{second.device_id}")["display_name"] == "named by admin"
    admin.ok("DELETE", f"{V2}/users/{me}/devices/{second.device_id}", {})
    assert second.request("GET", "/account/whoami")[0] == 401
    third = server.login(user.user_id)
    admin.ok("POST", f"{V2}/users/{me}/delete_devices", {"devices": [third.device_id]})
    assert [d["device_id"] for d in admin.ok("GET", f"{V2}/users/{me}/devices")["devices"]] == [user.device_id]

    room_id, left = user.create_room(), user.create_room()
    user.leave(left)
    assert admin.ok("GET", f"{V1}/users/{me}/joined_rooms") == {"joined_rooms": [room_id], "total": 1}
    assert admin.ok("GET", f"{V1}/users/{me}/memberships")["memberships"] == {room_id: "join", left: "leave"}

    assert admin.ok("GET", f"{V1}/users/{me}/admin") == {"admin": False}
    admin.ok("PUT", f"{V1}/users/{me}/admin", {"admin": True})
    assert admin.ok("GET", f"{V1}/users/{me}/admin") == {"admin": True}
    status, body = admin.request("PUT", f"{V1}/users/{quote(admin.user_id)}/admin", {"admin": False})
    assert status == 400
    assert admin.ok("GET", f"{V1}/username_available?username={unique('free')}") == {"available": True}
    status, body = admin.request("GET", f"{V1}/username_available?username={user.user_id[1:].split(':')[0]}")
    assert (status, body["errcode"]) == (400, "M_USER_IN_USE")
    assert audit_actions(admin, user.user_id) == ["delete_devices", "delete_devices", "set_admin"]


def test_deactivate_with_erase_reset_password_devices_whois(server, admin):
    user = server.register(unique("carol"))
    assert admin.ok("GET", f"{V2}/users/{quote(user.user_id)}/devices")["total"] == 1
    whois = admin.ok("GET", f"{V1}/whois/{quote(user.user_id)}")
    assert whois["user_id"] == user.user_id and user.device_id in whois["devices"]
    assert whois["devices"][user.device_id]["sessions"][0]["connections"][0]["ip"] == "127.0.0.1"

    assert user.ok("GET", f"/admin/whois/{quote(user.user_id)}")["devices"] == whois["devices"]  # client API
    assert admin.ok("GET", f"/admin/whois/{quote(user.user_id)}")["user_id"] == user.user_id
    status, body = server.register().request("GET", f"/admin/whois/{quote(user.user_id)}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")

    admin.ok("POST", f"{V1}/reset_password/{quote(user.user_id)}", {"new_password": "reset pass"})
    assert user.request("GET", "/account/whoami")[0] == 401  # logged out everywhere
    again = server.login(user.user_id, "reset pass")
    room_id = again.create_room()

    assert admin.ok("POST", f"{V1}/deactivate/{quote(user.user_id)}", {"erase": True}) == {
        "id_server_unbind_result": "success"}
    status, _ = server.request("POST", "/login", {"type": "m.login.password", "password": "reset pass",
                                                   "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 403
    queried = admin.ok("GET", f"{V2}/users/{quote(user.user_id)}")
    assert queried["deactivated"] and queried["erased"]
    assert admin.ok("GET", f"{V1}/rooms/{quote(room_id)}/members")["members"] == []
    listed = admin.ok("GET", f"{V2}/users?deactivated=true&user_id={quote(user.user_id)}")["users"]
    assert [u["name"] for u in listed] == [user.user_id]
    assert admin.ok("GET", f"{V2}/users?user_id={quote(user.user_id)}")["users"] == []
    assert audit_actions(admin, user.user_id) == ["reset_password", "deactivate"]


def test_login_as_user_shadow_ban_and_ratelimit_override(server, admin):
    user = server.register()
    token = admin.ok("POST", f"{V1}/users/{quote(user.user_id)}/login", {})["access_token"]
    status, whoami = server.request("GET", "/account/whoami", token=token)
    assert status == 200 and whoami["user_id"] == user.user_id
    assert admin.ok("GET", f"{V2}/users/{quote(user.user_id)}/devices")["total"] == 1  # no new device
    status, body = admin.request("POST", f"{V1}/users/{quote(admin.user_id)}/login", {})
    assert status == 400
    status, body = admin.request("POST", f"{V1}/users/{quote(user.user_id)}/login", {"valid_until_ms": 1})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")  # not silently ignored
    assert server.request("POST", "/logout", {}, token=token) == (200, {})
    assert server.request("GET", "/account/whoami", token=token)[0] == 401
    assert user.request("GET", "/account/whoami")[0] == 200  # the user's own session is untouched

    friend = server.register()
    room_id = friend.create_room(preset="public_chat")
    user.join(room_id)
    assert admin.ok("POST", f"{V1}/users/{quote(user.user_id)}/shadow_ban") == {}
    assert admin.ok("GET", f"{V2}/users/{quote(user.user_id)}")["shadow_banned"] is True
    hidden = user.send(room_id, "nobody sees this")  # answered as if sent
    marker = friend.send(room_id, "marker")
    ids = [e["event_id"] for e in friend.messages(room_id, dir="b", limit=3)["chunk"]]
    assert hidden.startswith("$") and hidden not in ids and ids[0] == marker
    assert admin.ok("DELETE", f"{V1}/users/{quote(user.user_id)}/shadow_ban") == {}
    assert admin.ok("GET", f"{V2}/users/{quote(user.user_id)}")["shadow_banned"] is False
    seen = user.send(room_id, "visible again")
    assert friend.messages(room_id, dir="b", limit=1)["chunk"][0]["event_id"] == seen

    path = f"{V1}/users/{quote(user.user_id)}/override_ratelimit"
    assert admin.ok("GET", path) == {}
    assert admin.ok("POST", path, {"messages_per_second": 0, "burst_count": 0}) == {
        "messages_per_second": 0, "burst_count": 0}
    assert admin.ok("GET", path) == {"messages_per_second": 0, "burst_count": 0}
    assert admin.ok("DELETE", path) == {}
    assert admin.ok("GET", path) == {}
    assert audit_actions(admin, user.user_id) == ["login_as_user", "shadow_ban", "unshadow_ban",
                                                  "override_ratelimit", "delete_ratelimit_override"]


def test_ratelimit_override_lifts_rc_message(homeserver_factory):
    throttled = homeserver_factory(throttled=True, rc_message={"per_second": 0.01, "burst_count": 2})
    boss = register_admin(throttled)
    user = throttled.register()
    room_id = user.create_room()
    statuses = [user.request("PUT", f"/rooms/{quote(room_id)}/send/m.room.message/{unique('t')}",
                             {"msgtype": "m.text", "body": "x"})[0] for _ in range(3)]
    assert statuses[-1] == 429
    boss.ok("POST", f"{V1}/users/{quote(user.user_id)}/override_ratelimit", {"messages_per_second": 0})
    for _ in range(5):
        user.send(room_id, "unlimited now")


def test_rooms_list_details_members_state_messages(server, admin):
    owner, guest = server.register(), server.register()
    tag = unique("roomlist")
    room_id = owner.create_room(preset="public_chat", name=f"Room {tag}", room_alias_name=tag)
    guest.join(room_id)
    owner.send(room_id, "first message")
    other = owner.create_room(name=f"Other {tag}")
    listed = admin.ok("GET", f"{V1}/rooms?search_term={tag}&order_by=joined_members")
    assert listed["total_rooms"] == 2 and listed["offset"] == 0
    assert [r["room_id"] for r in listed["rooms"]] == [room_id, other]
    first = listed["rooms"][0]
    assert ROOM_FIELDS <= set(first) and first["joined_members"] == 2 and first["joined_local_members"] == 2
    assert first["canonical_alias"] == f"#{tag}:test.local" and first["join_rules"] == "public"
    paged = admin.ok("GET", f"{V1}/rooms?search_term={tag}&limit=1")
    assert paged["next_batch"] == 1 and len(paged["rooms"]) == 1

    details = admin.ok("GET", f"{V1}/rooms/{quote(room_id)}")
    assert details["name"] == f"Room {tag}" and details["joined_local_devices"] == 2 and "topic" in details
    assert admin.ok("GET", f"{V1}/rooms/{quote(room_id)}/members") == {
        "members": sorted([owner.user_id, guest.user_id]), "total": 2}
    state = admin.ok("GET", f"{V1}/rooms/{quote(room_id)}/state")["state"]
    assert {e["type"] for e in state} >= {"m.room.create", "m.room.power_levels", "m.room.name"}
    assert [e["type"] for e in admin.ok("GET", f"{V1}/rooms/{quote(room_id)}/state?type=m.room.create")["state"]] \
        == ["m.room.create"]
    chunk = admin.ok("GET", f"{V1}/rooms/{quote(room_id)}/messages?dir=b&limit=5")["chunk"]
    assert chunk[0]["content"]["body"] == "first message"  # the admin is not in the room, and still sees it
    extremities = admin.ok("GET", f"{V1}/rooms/{quote(room_id)}/forward_extremities")
    assert extremities["count"] == 1 and extremities["results"][0]["event_id"] == chunk[0]["event_id"]


def test_block_make_room_admin_and_delete_with_purge(server, admin):
    owner, member, outsider = server.register(), server.register(), server.register()
    room_id = owner.create_room(preset="public_chat")
    member.join(room_id)
    assert admin.ok("GET", f"{V1}/rooms/{quote(room_id)}/block") == {"block": False}
    assert admin.ok("PUT", f"{V1}/rooms/{quote(room_id)}/block", {"block": True}) == {"block": True}
    assert admin.ok("GET", f"{V1}/rooms/{quote(room_id)}/block") == {"block": True, "user_id": admin.user_id}
    status, body = outsider.request("POST", f"/join/{quote(room_id)}", {})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    admin.ok("PUT", f"{V1}/rooms/{quote(room_id)}/block", {"block": False})
    outsider.join(room_id)

    admin.ok("POST", f"{V1}/rooms/{quote(room_id)}/make_room_admin", {"user_id": member.user_id})
    levels = member.ok("GET", f"/rooms/{quote(room_id)}/state/m.room.power_levels")
    assert levels["users"][member.user_id] == 100
    said = owner.send(room_id, f"findable {member.user_id} please")  # a search row, push actions for the others
    member.ok("POST", f"/rooms/{quote(room_id)}/receipt/m.read/{quote(said)}", {})
    member.ok("PUT", f"/user/{quote(member.user_id)}/rooms/{quote(room_id)}/tags/u.work", {})
    related = {"event_search": "SELECT COUNT(*) FROM event_search WHERE room_id = ?",
               "receipts": "SELECT COUNT(*) FROM receipts WHERE room_id = ?",
               "push_actions": "SELECT COUNT(*) FROM push_actions WHERE room_id = ?",
               "account_data": "SELECT COUNT(*) FROM account_data WHERE room_id = ?"}
    wait_for(lambda: all(database_rows(server, sql, (room_id,))[0][0] for sql in related.values()),
             "the message indexed, its push actions, the receipt and the tag stored")

    delete_id = admin.ok("DELETE", f"{V2}/rooms/{quote(room_id)}", {"block": True, "purge": True})["delete_id"]
    status = admin.ok("GET", f"{V2}/rooms/delete_status/{delete_id}")
    assert status["status"] == "complete"
    assert sorted(status["shutdown_room"]["kicked_users"]) == sorted([owner.user_id, member.user_id,
                                                                      outsider.user_id])
    assert admin.ok("GET", f"{V2}/rooms/{quote(room_id)}/delete_status")["results"][0]["delete_id"] == delete_id
    assert database_rows(server, "SELECT COUNT(*) FROM events WHERE room_id = ?", (room_id,)) == [(0,)]
    assert {name: database_rows(server, sql, (room_id,))[0][0] for name, sql in related.items()} == dict.fromkeys(
        related, 0)
    assert room_id not in owner.ok("GET", "/joined_rooms")["joined_rooms"]
    status, body = admin.request("GET", f"{V1}/rooms/{quote(room_id)}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert audit_actions(admin, room_id) == ["block_room", "unblock_room", "make_room_admin", "delete_room"]


def test_destinations_and_server_version(server, admin):
    assert admin.ok("GET", f"{V1}/federation/destinations") == {"destinations": [], "total": 0}
    status, body = admin.request("GET", f"{V1}/federation/destinations/nowhere.example")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert admin.ok("GET", f"{V1}/server_version")["server_version"].startswith("Hexagone ")


def test_non_admins_are_refused_everywhere(server, admin):
    user = server.register()
    me = quote(user.user_id)
    calls = [("GET", f"{V2}/users"), ("GET", f"{V2}/users/{me}"), ("PUT", f"{V2}/users/{me}"),
             ("GET", f"{V2}/users/{me}/devices"), ("POST", f"{V1}/deactivate/{me}"),
             ("POST", f"{V1}/reset_password/{me}"), ("GET", f"{V1}/whois/{me}"), ("POST", f"{V1}/users/{me}/login"),
             ("POST", f"{V1}/users/{me}/shadow_ban"), ("GET", f"{V1}/users/{me}/override_ratelimit"),
             ("GET", f"{V1}/rooms"), ("GET", f"{V1}/rooms/!x:test.local"), ("DELETE", f"{V2}/rooms/!x:test.local"),
             ("PUT", f"{V1}/rooms/!x:test.local/block"), ("GET", f"{V1}/federation/destinations"),
             ("POST", f"{V1}/federation/destinations/x.example/reset_connection"),
             ("GET", f"{V1}/server_version")]
    for method, path in calls:
        status, body = user.request(method, path, {} if method in ("PUT", "POST", "DELETE") else None)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), (method, path)
    assert admin.ok("GET", f"{V2}/users/{me}")["admin"] is False  # nothing changed


def test_user_list_with_ten_thousand_users(homeserver_factory):
    """Admin user list latency with 10,000 users (created straight in the database, like a migrated server)."""
    big = homeserver_factory()
    boss = register_admin(big)
    bulk_users(big, 10_000)
    timings = {}
    for label, query in (("first page", "from=0&limit=100"), ("last page", "from=9900&limit=100"),
                         ("name search", "name=bulk0999&limit=100"), ("by creation_ts desc",
                                                                      "order_by=creation_ts&dir=b&limit=100")):
        start = time.perf_counter()
        body = boss.ok("GET", f"{V2}/users?{query}")
        timings[label] = (time.perf_counter() - start) * 1000
        assert body["users"] and body["total"] >= 10
    print("admin user list with 10,000 users (ms):", {k: round(v, 1) for k, v in timings.items()})
    assert boss.ok("GET", f"{V2}/users?limit=1")["total"] == 10_001
    assert max(timings.values()) < 2000
