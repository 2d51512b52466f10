"""Receipts, read markers, typing, account data and tags over real HTTP and /sync.

Spec v1.19 client-server "Receipts", "Fully read markers", "Typing
Notifications", "Client Config", "Room Tagging".
"""

from __future__ import annotations

import asyncio
import threading
import time

import nio

from tests.integration.harness import PASSWORD, q, shared_room


def ephemeral(resp: dict, room_id: str, event_type: str) -> list[dict]:
    room = resp["rooms"]["join"].get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def room_account_data(resp: dict, room_id: str, section: str = "join") -> dict:
    room = resp["rooms"][section].get(room_id, {})
    return {e["type"]: e["content"] for e in room.get("account_data", {}).get("events", [])}


def global_account_data(resp: dict) -> dict:
    return {e["type"]: e["content"] for e in resp["account_data"]["events"]}


def receipts_of(resp: dict, room_id: str) -> dict:
    """Merge the room's m.receipt events: {(event_id, type, user): data}."""
    found = {}
    for ev in ephemeral(resp, room_id, "m.receipt"):
        for event_id, by_type in ev["content"].items():
            for rtype, by_user in by_type.items():
                for user_id, data in by_user.items():
                    found[(event_id, rtype, user_id)] = data
    return found


def receipt_threads(resp: dict, room_id: str, event_id: str, user_id: str) -> set[str | None]:
    """The thread ids (None: unthreaded) of the user's m.read receipts on the event."""
    return {by_type["m.read"][user_id].get("thread_id")
            for ev in ephemeral(resp, room_id, "m.receipt")
            for eid, by_type in ev["content"].items()
            if eid == event_id and user_id in by_type.get("m.read", {})}


def receipt_path(room: str, rtype: str, event_id: str) -> str:
    return f"/rooms/{q(room)}/receipt/{q(rtype)}/{q(event_id)}"


def typing_path(room: str, user_id: str) -> str:
    return f"/rooms/{q(room)}/typing/{q(user_id)}"


def typers(resp: dict, room_id: str) -> list[str] | None:
    """The user_ids of the room's last m.typing event, None when there is none."""
    events = ephemeral(resp, room_id, "m.typing")
    return events[-1]["content"]["user_ids"] if events else None


def assert_error(resp: tuple, status: int, errcode: str) -> None:
    assert (resp[0], resp[1].get("errcode")) == (status, errcode), resp


# -- receipts ----------------------------------------------------------------------------------

def test_receipts_in_sync_and_private_ones_only_for_their_owner(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    first, second = bob.send(room, "one"), bob.send(room, "two")
    bob_token = bob.sync()["next_batch"]

    before = int(time.time() * 1000)
    assert alice.ok("POST", receipt_path(room, "m.read", second), {}) == {}
    found, bob_token = bob.sync_until(lambda r: receipts_of(r, room), since=bob_token)
    assert list(found) == [(second, "m.read", alice.user_id)]
    data = found[(second, "m.read", alice.user_id)]
    assert set(data) == {"ts"} and before - 5000 <= data["ts"] <= int(time.time() * 1000) + 5000

    # an older receipt never replaces a newer one
    alice.ok("POST", receipt_path(room, "m.read", first), {})
    third = bob.send(room, "three")
    alice.ok("POST", receipt_path(room, "m.read.private", third), {})
    alice_own = alice.sync()
    own = receipts_of(alice_own, room)
    assert set(own) == {(second, "m.read", alice.user_id), (third, "m.read.private", alice.user_id)}
    assert own[(second, "m.read", alice.user_id)] == data

    # Bob never sees Alice's private receipt: not incrementally, not on an initial sync
    resp = bob.sync(bob_token)
    assert (third, "m.read.private", alice.user_id) not in receipts_of(resp, room)
    initial = bob.sync()
    assert receipts_of(initial, room) == {(second, "m.read", alice.user_id): data}

    # an incremental sync carries only what changed
    bob.ok("POST", receipt_path(room, "m.read", third), {})
    found, _ = alice.sync_until(lambda r: receipts_of(r, room), since=alice_own["next_batch"])
    assert list(found) == [(third, "m.read", bob.user_id)]


def test_threaded_receipts(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    root = alice.send(room, "root")
    reply = alice.send(room, {"msgtype": "m.text", "body": "in thread",
                              "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    reaction = alice.send(room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": reply, "key": "+"}},
                          event_type="m.reaction")
    other = alice.send(room, "main timeline")
    token = alice.sync()["next_batch"]

    bob.ok("POST", receipt_path(room, "m.read", reply), {"thread_id": root})
    bob.ok("POST", receipt_path(room, "m.read", other), {"thread_id": "main"})
    bob.ok("POST", receipt_path(room, "m.read", root), {})  # unthreaded, kept beside the threaded ones
    bob.ok("POST", receipt_path(room, "m.read", reaction), {"thread_id": root})  # related to a threaded event
    bob.ok("POST", receipt_path(room, "m.read.private", root), {"thread_id": root})  # the root takes its thread

    def all_three(resp):
        found = receipts_of(resp, room)
        return found if (root, "m.read", bob.user_id) in found else None

    found, _ = alice.sync_until(all_three, since=token)
    assert found[(reaction, "m.read", bob.user_id)]["thread_id"] == root
    assert found[(other, "m.read", bob.user_id)]["thread_id"] == "main"
    assert "thread_id" not in found[(root, "m.read", bob.user_id)]
    initial = receipts_of(alice.sync(), room)
    assert {k: v.get("thread_id") for k, v in initial.items() if k[2] == bob.user_id} == {
        (reaction, "m.read", bob.user_id): root, (other, "m.read", bob.user_id): "main",
        (root, "m.read", bob.user_id): None}

    # an unthreaded and a threaded receipt on one event both come down
    bob.ok("POST", receipt_path(room, "m.read", reaction), {})
    assert receipt_threads(alice.sync(), room, reaction, bob.user_id) == {None, root}

    # an event outside the thread
    for event_id, thread_id in ((reply, "main"), (other, root), (root, reply)):
        assert_error(bob.request("POST", receipt_path(room, "m.read", event_id), {"thread_id": thread_id}),
                     400, "M_INVALID_PARAM")


def test_receipt_errors(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    event_id = alice.send(room)
    elsewhere_room = alice.create_room()
    elsewhere = alice.send(elsewhere_room)
    stranger = homeserver.register()

    assert_error(bob.request("POST", receipt_path(room, "m.unknown", event_id), {}), 400, "M_INVALID_PARAM")
    assert_error(bob.request("POST", receipt_path(room, "m.fully_read", event_id), {"thread_id": "main"}),
                 400, "M_INVALID_PARAM")
    for bad_thread in ("", 12, None, ["main"]):
        assert_error(bob.request("POST", receipt_path(room, "m.read", event_id), {"thread_id": bad_thread}),
                     400, "M_INVALID_PARAM")
    assert_error(bob.request("POST", receipt_path(room, "m.read", elsewhere), {}), 404, "M_NOT_FOUND")
    assert_error(bob.request("POST", receipt_path(room, "m.read", "$nope"), {}), 404, "M_NOT_FOUND")
    assert_error(bob.request("POST", receipt_path(room, "m.read", "not-an-event"), {}), 400, "M_INVALID_PARAM")
    assert_error(bob.request("POST", receipt_path("not-a-room", "m.read", event_id), {}), 400, "M_INVALID_PARAM")
    assert_error(stranger.request("POST", receipt_path(room, "m.read", event_id), {}), 403, "M_FORBIDDEN")
    assert_error(bob.request("POST", receipt_path(room, "m.read", event_id), "[]"), 400, "M_BAD_JSON")
    assert_error(homeserver.request("POST", receipt_path(room, "m.read", event_id), {}), 401, "M_MISSING_TOKEN")
    # nothing was stored by the failures
    assert receipts_of(alice.sync(), room) == {}


# -- read markers --------------------------------------------------------------------------------

def test_read_markers(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    first, second = alice.send(room, "one"), alice.send(room, "two")
    alice_token, bob_token = alice.sync()["next_batch"], bob.sync()["next_batch"]

    bob.ok("POST", f"/rooms/{q(room)}/read_markers", {"m.fully_read": first, "m.read": second})
    found, _ = alice.sync_until(lambda r: receipts_of(r, room), since=alice_token)
    assert list(found) == [(second, "m.read", bob.user_id)]
    markers, bob_token = bob.sync_until(lambda r: room_account_data(r, room), since=bob_token)
    assert markers == {"m.fully_read": {"event_id": first}}
    assert bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read") == {"event_id": first}

    # m.fully_read through the receipt endpoint is the same marker; private receipts stay private
    bob.ok("POST", receipt_path(room, "m.fully_read", second), {})
    bob.ok("POST", f"/rooms/{q(room)}/read_markers", {"m.read.private": second})
    markers, _ = bob.sync_until(lambda r: room_account_data(r, room), since=bob_token)
    assert markers == {"m.fully_read": {"event_id": second}}
    assert receipts_of(bob.sync(), room)[(second, "m.read.private", bob.user_id)]
    assert (second, "m.read.private", bob.user_id) not in receipts_of(alice.sync(), room)

    # every target is checked before anything is written
    third = alice.send(room, "three")
    elsewhere = alice.send(alice.create_room())
    assert_error(bob.request("POST", f"/rooms/{q(room)}/read_markers", {"m.read": third, "m.fully_read": elsewhere}),
                 404, "M_NOT_FOUND")
    assert_error(bob.request("POST", f"/rooms/{q(room)}/read_markers", {"m.read": 42}), 400, "M_BAD_JSON")
    assert_error(bob.request("POST", f"/rooms/{q(room)}/read_markers", "not json"), 400, "M_NOT_JSON")
    stranger = homeserver.register()
    assert_error(stranger.request("POST", f"/rooms/{q(room)}/read_markers", {"m.fully_read": first}),
                 403, "M_FORBIDDEN")
    assert bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read") == {"event_id": second}
    assert set(receipts_of(alice.sync(), room)) == {(second, "m.read", bob.user_id)}


# -- typing --------------------------------------------------------------------------------------

def test_typing_on_off_and_expiry(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    token = bob.sync()["next_batch"]
    assert typers(bob.sync(), room) is None

    alice.ok("PUT", typing_path(room, alice.user_id), {"typing": True, "timeout": 30000})
    users, token = bob.sync_until(lambda r: typers(r, room), since=token)
    assert users == [alice.user_id]
    assert typers(bob.sync(), room) == [alice.user_id]  # initial sync: rooms with typers

    bob.ok("PUT", typing_path(room, bob.user_id), {"typing": True})
    users, token = alice.sync_until(lambda r: typers(r, room) if typers(r, room) and len(typers(r, room)) == 2
                                    else None)
    assert sorted(users) == sorted([alice.user_id, bob.user_id])

    alice.ok("PUT", typing_path(room, alice.user_id), {"typing": False})
    bob.ok("PUT", typing_path(room, bob.user_id), {"typing": False})
    users, token = bob.sync_until(lambda r: typers(r, room) == [] and [True], since=token)
    assert typers(bob.sync(), room) is None

    # a short timeout expires on its own; /sync is woken when it does
    alice.ok("PUT", typing_path(room, alice.user_id), {"typing": True, "timeout": 500})
    users, token = bob.sync_until(lambda r: typers(r, room), since=token)
    assert users == [alice.user_id]
    expired, _ = bob.sync_until(lambda r: typers(r, room) == [] and [True], since=token)
    assert expired

    # leaving the room stops typing
    alice.ok("PUT", typing_path(room, alice.user_id), {"typing": True})
    users, token = bob.sync_until(lambda r: typers(r, room), since=token)
    alice.leave(room)
    bob.sync_until(lambda r: typers(r, room) == [] and [True], since=token)


def test_typing_errors(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    stranger = homeserver.register()
    assert_error(alice.request("PUT", typing_path(room, bob.user_id), {"typing": True}), 403, "M_FORBIDDEN")
    assert_error(stranger.request("PUT", typing_path(room, stranger.user_id), {"typing": True}), 403, "M_FORBIDDEN")
    for body in ({}, {"typing": "yes"}, {"typing": 1}, {"typing": True, "timeout": -1},
                 {"typing": True, "timeout": "5"}, {"typing": True, "timeout": 1.5}):
        assert_error(alice.request("PUT", typing_path(room, alice.user_id), body), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", typing_path(room, alice.user_id), "nope"), 400, "M_NOT_JSON")
    assert_error(alice.request("PUT", typing_path("bad", alice.user_id), {"typing": True}), 400, "M_INVALID_PARAM")
    assert typers(bob.sync(), room) is None


def test_typing_token_from_before_restart(homeserver_factory):
    server = homeserver_factory()
    alice, bob = server.register(), server.register()
    room = shared_room(alice, bob, public=True)
    for state in (True, False, True, False):
        alice.ok("PUT", typing_path(room, alice.user_id), {"typing": state})
    old_token = bob.sync()["next_batch"]

    server.stop()
    server.start()
    # the typing position restarted below the token's: never an error
    assert bob.sync(old_token)["next_batch"]
    alice.ok("PUT", typing_path(room, alice.user_id), {"typing": True})
    users, token = bob.sync_until(lambda r: typers(r, room), since=old_token)
    assert users == [alice.user_id]
    alice.ok("PUT", typing_path(room, alice.user_id), {"typing": False})
    assert bob.sync_until(lambda r: typers(r, room) == [] and [True], since=token)[0]
    server.stop()


# -- account data ---------------------------------------------------------------------------------

def test_account_data_global_and_room(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    me = q(alice.user_id)
    alice.ok("PUT", f"/user/{me}/account_data/org.example.one", {"n": 1})
    alice.ok("PUT", f"/user/{me}/rooms/{q(room)}/account_data/org.example.room", {"r": 1})
    assert alice.ok("GET", f"/user/{me}/account_data/org.example.one") == {"n": 1}
    assert alice.ok("GET", f"/user/{me}/rooms/{q(room)}/account_data/org.example.room") == {"r": 1}
    # room and global account data do not fall back to each other
    assert_error(alice.request("GET", f"/user/{me}/account_data/org.example.room"), 404, "M_NOT_FOUND")
    assert_error(alice.request("GET", f"/user/{me}/rooms/{q(room)}/account_data/org.example.one"),
                 404, "M_NOT_FOUND")

    initial = alice.sync()
    assert global_account_data(initial)["org.example.one"] == {"n": 1}
    assert room_account_data(initial, room) == {"org.example.room": {"r": 1}}
    assert "org.example.one" not in global_account_data(bob.sync())
    assert room_account_data(bob.sync(), room) == {}

    # across a since token only what changed comes down
    alice.ok("PUT", f"/user/{me}/account_data/org.example.two", {"n": 2})
    alice.ok("PUT", f"/user/{me}/account_data/org.example.one", {"n": 11})
    found, token = alice.sync_until(lambda r: global_account_data(r), since=initial["next_batch"])
    assert found == {"org.example.one": {"n": 11}, "org.example.two": {"n": 2}}
    assert room_account_data(alice.sync(token), room) == {}
    alice.ok("PUT", f"/user/{me}/rooms/{q(room)}/account_data/org.example.room", {"r": 2})
    found, token = alice.sync_until(lambda r: room_account_data(r, room), since=token)
    assert found == {"org.example.room": {"r": 2}}
    assert global_account_data(alice.sync(token)) == {}

    # a waiting /sync wakes up when account data is written
    result = {}
    waiter = threading.Thread(target=lambda: result.update(resp=alice.sync(token, timeout_ms=20000)))
    started = time.monotonic()
    waiter.start()
    alice.ok("PUT", f"/user/{me}/account_data/org.example.wake", {"w": True})
    waiter.join(30)
    assert time.monotonic() - started < 15
    assert global_account_data(result["resp"]) == {"org.example.wake": {"w": True}}


def test_account_data_errors(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    me, other = q(alice.user_id), q(bob.user_id)
    bob.ok("PUT", f"/user/{other}/account_data/org.example.secret", {"s": 1})
    for method, body in (("PUT", {"x": 1}), ("GET", None)):
        assert_error(alice.request(method, f"/user/{other}/account_data/org.example.secret", body),
                     403, "M_FORBIDDEN")
        assert_error(alice.request(method, f"/user/{other}/rooms/{q(room)}/account_data/org.example.x", body),
                     403, "M_FORBIDDEN")
        assert_error(alice.request(method, f"/user/{me}/rooms/not-a-room/account_data/org.example.x", body),
                     400, "M_INVALID_PARAM")
    for data_type in ("m.fully_read", "m.push_rules"):
        assert_error(alice.request("PUT", f"/user/{me}/account_data/{data_type}", {}), 405, "M_BAD_JSON")
        assert_error(alice.request("PUT", f"/user/{me}/rooms/{q(room)}/account_data/{data_type}", {}),
                     405, "M_BAD_JSON")
    assert_error(alice.request("GET", f"/user/{me}/account_data/org.example.missing"), 404, "M_NOT_FOUND")
    assert_error(alice.request("GET", f"/user/{me}/rooms/{q(room)}/account_data/org.example.missing"),
                 404, "M_NOT_FOUND")
    assert_error(alice.request("PUT", f"/user/{me}/account_data/org.example.x", "{not json"), 400, "M_NOT_JSON")
    assert_error(alice.request("PUT", f"/user/{me}/account_data/org.example.x", [1, 2]), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", f"/user/{me}/rooms/{q(room)}/account_data/org.example.x", ""),
                 400, "M_NOT_JSON")


# -- tags -----------------------------------------------------------------------------------------

def test_tags(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    tags_path = f"/user/{q(alice.user_id)}/rooms/{q(room)}/tags"
    assert alice.ok("GET", tags_path) == {"tags": {}}
    token = alice.sync()["next_batch"]

    alice.ok("PUT", f"{tags_path}/m.favourite", {"order": 0.25})
    alice.ok("PUT", f"{tags_path}/u.work", {})
    alice.ok("PUT", f"{tags_path}/u.edge", {"order": 1})
    tags = {"m.favourite": {"order": 0.25}, "u.work": {}, "u.edge": {"order": 1}}
    assert alice.ok("GET", tags_path) == {"tags": tags}
    found, token = alice.sync_until(lambda r: room_account_data(r, room).get("m.tag"), since=token)
    assert found == {"tags": tags}

    alice.ok("DELETE", f"{tags_path}/u.work")
    alice.ok("DELETE", f"{tags_path}/u.never-set")
    found, token = alice.sync_until(lambda r: room_account_data(r, room).get("m.tag"), since=token)
    assert found == {"tags": {"m.favourite": {"order": 0.25}, "u.edge": {"order": 1}}}
    assert alice.ok("GET", f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/m.tag") == found
    assert room_account_data(alice.sync(), room)["m.tag"] == found
    assert bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(room)}/tags") == {"tags": {}}

    for body in ({"order": 1.5}, {"order": -0.1}, {"order": "0.5"}, {"order": True}, {"order": None}):
        assert_error(alice.request("PUT", f"{tags_path}/u.bad", body), 400, "M_BAD_JSON")
    assert_error(alice.request("PUT", f"{tags_path}/{'t' * 256}", {}), 400, "M_INVALID_PARAM")
    assert_error(alice.request("PUT", f"{tags_path}/u.bad", "[]"), 400, "M_BAD_JSON")
    other_tags = f"/user/{q(bob.user_id)}/rooms/{q(room)}/tags"
    assert_error(alice.request("GET", other_tags), 403, "M_FORBIDDEN")
    assert_error(alice.request("PUT", f"{other_tags}/u.x", {}), 403, "M_FORBIDDEN")
    assert_error(alice.request("DELETE", f"{other_tags}/u.x"), 403, "M_FORBIDDEN")
    assert_error(alice.request("GET", f"/user/{q(alice.user_id)}/rooms/bad/tags"), 400, "M_INVALID_PARAM")
    assert "u.bad" not in alice.ok("GET", tags_path)["tags"]


# -- sync filters ---------------------------------------------------------------------------------

def test_sync_filters_apply_to_ephemeral_and_account_data(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    event_id = bob.send(room)
    bob.ok("POST", receipt_path(room, "m.read", event_id), {})
    bob.ok("PUT", typing_path(room, bob.user_id), {"typing": True})
    me = q(alice.user_id)
    alice.ok("PUT", f"/user/{me}/account_data/org.example.keep", {"k": 1})
    alice.ok("PUT", f"/user/{me}/account_data/org.example.drop", {"d": 1})
    alice.ok("PUT", f"/user/{me}/rooms/{q(room)}/account_data/org.example.room", {"r": 1})

    unfiltered = alice.sync()
    assert receipts_of(unfiltered, room) and typers(unfiltered, room) == [bob.user_id]
    sync_filter = {"account_data": {"not_types": ["org.example.drop"]},
                   "room": {"ephemeral": {"not_types": ["m.typing"]}, "account_data": {"types": ["m.tag"]}}}
    filtered = alice.sync(filter=sync_filter)
    assert receipts_of(filtered, room) and typers(filtered, room) is None
    assert "org.example.keep" in global_account_data(filtered)
    assert "org.example.drop" not in global_account_data(filtered)
    assert room_account_data(filtered, room) == {}
    nothing = alice.sync(filter={"room": {"ephemeral": {"types": []}}})
    assert ephemeral(nothing, room, "m.receipt") == ephemeral(nothing, room, "m.typing") == []


# -- matrix-nio ---------------------------------------------------------------------------------

def test_nio_client_receipts_typing_and_tags(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = shared_room(alice, bob, public=True)
    message = alice.send(room, "read me")
    alice_token = alice.sync()["next_batch"]

    async def as_bob():
        client = nio.AsyncClient(homeserver.base_url, bob.user_id)
        try:
            assert isinstance(await client.login(PASSWORD), nio.LoginResponse)
            first = await client.sync(timeout=0)
            assert isinstance(await client.room_typing(room, True, timeout=60000), nio.RoomTypingResponse)
            assert isinstance(await client.update_receipt_marker(room, message), nio.UpdateReceiptMarkerResponse)
            assert isinstance(await client.room_read_markers(room, message), nio.RoomReadMarkersResponse)
            # Alice's receipt and Bob's tag come down Bob's next syncs as typed nio events
            alice.ok("POST", receipt_path(room, "m.read", message), {})
            bob.ok("PUT", f"/user/{q(bob.user_id)}/rooms/{q(room)}/tags/u.nio", {"order": 0.5})
            seen: dict = {}
            since = first.next_batch
            deadline = time.monotonic() + 15
            while not ("receipt" in seen and "tag" in seen and "fully_read" in seen):
                assert time.monotonic() < deadline, seen
                resp = await client.sync(timeout=5000, since=since)
                since = resp.next_batch
                info = resp.rooms.join.get(room)
                for ev in info.ephemeral if info else []:
                    if isinstance(ev, nio.ReceiptEvent):
                        for receipt in ev.receipts:
                            if receipt.user_id == alice.user_id and receipt.event_id == message:
                                seen["receipt"] = receipt.receipt_type
                for ev in info.account_data if info else []:
                    if isinstance(ev, nio.TagEvent):
                        seen["tag"] = ev.tags
                    if isinstance(ev, nio.FullyReadEvent):
                        seen["fully_read"] = ev.event_id
            return seen
        finally:
            await client.close()

    seen = asyncio.run(as_bob())
    assert seen == {"receipt": "m.read", "tag": {"u.nio": {"order": 0.5}}, "fully_read": message}

    def bob_activity(resp):
        found = receipts_of(resp, room)
        if (message, "m.read", bob.user_id) in found and typers(resp, room) is not None:
            return found, typers(resp, room)
        return None

    (found, users), _ = alice.sync_until(bob_activity, since=alice_token)
    assert found[(message, "m.read", bob.user_id)]["thread_id"] == "main"  # nio sends threaded receipts
    assert bob.user_id in users
