"""Messages over real HTTP: sending, pagination, context, relations, redaction, timestamps (relations and
redaction on a server built in this process, ``inprocess_server``, through the same client API).

Spec v1.19 client-server "Sending events to a room" (transaction ids),
"Getting events for a room" (/messages, /context, /event), "Relationships"
(edits, threads, annotations), "Redactions", "Room event by timestamp".
"""

from __future__ import annotations

import pytest

from tests.integration.harness import CLIENT_V1, q, unique

N_MESSAGES = 60


@pytest.fixture(scope="module")
def long_room(homeserver):
    """A room with N_MESSAGES numbered messages: (alice, bob, room_id, event ids in order)."""
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    ids = [(alice if i % 2 else bob).send(room, f"message {i}") for i in range(N_MESSAGES)]
    return alice, bob, room, ids


def bodies(chunk: list[dict]) -> list[str]:
    return [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]


def numbered(start: int, stop: int, step: int = 1) -> list[str]:
    return [f"message {i}" for i in range(start, stop, step)]


# -- pagination -------------------------------------------------------------------------------

def test_paginate_backwards_across_all_messages(long_room):
    alice, _, room, ids = long_room
    seen, token, pages = [], None, 0
    while True:
        page = alice.messages(room, dir="b", limit=17, **({"from": token} if token else {}))
        pages += 1
        assert len(page["chunk"]) <= 17
        seen += page["chunk"]
        if "end" not in page:
            break
        assert page["start"] != page["end"]
        token = page["end"]
        assert pages < 20
    assert bodies(seen) == numbered(N_MESSAGES - 1, -1, -1)
    assert seen[-1]["type"] == "m.room.create"  # the very beginning of the room
    assert [e["event_id"] for e in seen if e["type"] == "m.room.message"] == ids[::-1]
    assert len({e["event_id"] for e in seen}) == len(seen)


def test_paginate_forwards_with_to(long_room):
    alice, _, room, ids = long_room
    first = alice.messages(room, dir="f", limit=10)
    assert first["chunk"][0]["type"] == "m.room.create"
    collected, token = list(first["chunk"]), first["end"]
    while "end" in (page := alice.messages(room, dir="f", limit=25, **{"from": token})):
        assert page["chunk"]
        collected += page["chunk"]
        token = page["end"]
    collected += page["chunk"]
    assert bodies(collected) == numbered(0, N_MESSAGES)

    # a window: from the token after message 29, backwards, down to the token after message 19
    after_19 = alice.ok("GET", f"/rooms/{q(room)}/context/{q(ids[19])}", params={"limit": 0})["end"]
    after_29 = alice.ok("GET", f"/rooms/{q(room)}/context/{q(ids[29])}", params={"limit": 0})["end"]
    window = alice.messages(room, dir="b", limit=50, **{"from": after_29, "to": after_19})
    assert bodies(window["chunk"]) == numbered(29, 19, -1)
    window = alice.messages(room, dir="f", limit=50, **{"from": after_19, "to": after_29})
    assert bodies(window["chunk"]) == numbered(20, 30)
    # limit=0 returns nothing, and a bad dir is refused
    assert alice.messages(room, dir="b", limit=0)["chunk"] == []
    status, resp = alice.request("GET", f"/rooms/{q(room)}/messages", params={"dir": "x"})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM")


def test_limited_sync_prev_batch_continues_into_messages(long_room):
    _, bob, room, _ = long_room
    resp = bob.sync(filter={"room": {"timeline": {"limit": 5}}})
    timeline = resp["rooms"]["join"][room]["timeline"]
    assert timeline["limited"] is True
    assert bodies(timeline["events"]) == numbered(N_MESSAGES - 5, N_MESSAGES)
    older = bob.messages(room, dir="b", limit=10, **{"from": timeline["prev_batch"]})
    assert bodies(older["chunk"]) == numbered(N_MESSAGES - 6, N_MESSAGES - 16, -1)


def test_messages_filter(long_room):
    alice, bob, room, _ = long_room
    only_bob = alice.messages(room, dir="b", limit=5, filter={"senders": [bob.user_id]})
    assert {e["sender"] for e in only_bob["chunk"]} == {bob.user_id}
    assert bodies(only_bob["chunk"]) == numbered(N_MESSAGES - 2, N_MESSAGES - 12, -2)
    no_messages = alice.messages(room, dir="f", limit=50, filter={"not_types": ["m.room.message"]})
    assert no_messages["chunk"] and all(e["type"] != "m.room.message" for e in no_messages["chunk"])
    lazy = alice.messages(room, dir="b", limit=3, filter={"lazy_load_members": True})
    assert {e["state_key"] for e in lazy["state"]} <= {alice.user_id, bob.user_id}
    assert {e["sender"] for e in lazy["chunk"]} <= {e["state_key"] for e in lazy["state"]}


def test_filter_types_star_is_the_only_wildcard(homeserver):
    """Spec "Filtering": in ``types``/``not_types`` only ``*`` is special (no ``?`` nor ``[...]`` as fnmatch has),
    and the match is case-sensitive."""
    alice = homeserver.register()
    room = alice.create_room()
    sent = ["org.ex.a?c", "org.ex.abc", "org.ex.[ab]x", "org.ex.ax", "Org.Ex.ABCD"]
    for event_type in sent:
        alice.send(room, {"n": event_type}, event_type=event_type)

    def types(**event_filter):
        chunk = alice.messages(room, dir="b", limit=50, filter=event_filter)["chunk"]
        return sorted(e["type"] for e in chunk if e["type"] in sent)

    assert types(types=["org.ex.a?c*"]) == ["org.ex.a?c"]
    assert types(types=["org.ex.[ab]x*"]) == ["org.ex.[ab]x"]
    assert types(types=["org.ex.abc*"]) == ["org.ex.abc"]
    assert types(types=["Org.*"]) == ["Org.Ex.ABCD"]
    assert types(types=["org.*"], not_types=["*?c", "*]x"]) == ["org.ex.abc", "org.ex.ax"]


def test_context_and_event(long_room):
    alice, bob, room, ids = long_room
    ctx = alice.ok("GET", f"/rooms/{q(room)}/context/{q(ids[30])}", params={"limit": 6})
    assert ctx["event"]["event_id"] == ids[30]
    assert bodies(ctx["events_before"]) == numbered(29, 26, -1)
    assert bodies(ctx["events_after"]) == numbered(31, 34)
    assert {e["type"] for e in ctx["state"]} >= {"m.room.create", "m.room.member"}
    before = alice.messages(room, dir="b", limit=2, **{"from": ctx["start"]})
    assert bodies(before["chunk"]) == numbered(26, 24, -1)
    after = alice.messages(room, dir="f", limit=2, **{"from": ctx["end"]})
    assert bodies(after["chunk"]) == numbered(34, 36)

    event = bob.ok("GET", f"/rooms/{q(room)}/event/{q(ids[7])}")
    assert event["event_id"] == ids[7] and event["content"]["body"] == "message 7"
    assert event["room_id"] == room and event["sender"] == alice.user_id and "origin_server_ts" in event
    status, resp = bob.request("GET", f"/rooms/{q(room)}/event/{q('$nosuchevent')}")
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")
    status, resp = bob.request("GET", f"/rooms/{q(room)}/context/{q('$nosuchevent')}")
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")
    stranger = alice.server.register()
    status, resp = stranger.request("GET", f"/rooms/{q(room)}/event/{q(ids[7])}")
    assert status in (403, 404) and resp["errcode"] in ("M_FORBIDDEN", "M_NOT_FOUND")


def test_timestamp_to_event(long_room):
    alice, _, room, ids = long_room
    events = [alice.ok("GET", f"/rooms/{q(room)}/event/{q(i)}") for i in (ids[10], ids[40])]
    path = CLIENT_V1 + f"/rooms/{q(room)}/timestamp_to_event"
    found = alice.ok("GET", path, params={"ts": events[0]["origin_server_ts"], "dir": "f"})
    ts_of = {e["event_id"]: e["origin_server_ts"] for e in events}
    assert found["origin_server_ts"] >= events[0]["origin_server_ts"]
    assert found["origin_server_ts"] == ts_of.get(found["event_id"], found["origin_server_ts"])
    found_b = alice.ok("GET", path, params={"ts": events[1]["origin_server_ts"], "dir": "b"})
    assert found_b["origin_server_ts"] <= events[1]["origin_server_ts"]
    latest = alice.ok("GET", path, params={"ts": 2 ** 50, "dir": "b"})
    assert latest["event_id"] == ids[-1] or latest["origin_server_ts"] >= events[1]["origin_server_ts"]
    status, resp = alice.request("GET", path, params={"ts": 2 ** 50, "dir": "f"})
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")
    status, resp = alice.request("GET", path, params={"dir": "f"})
    assert (status, resp["errcode"]) == (400, "M_MISSING_PARAM")
    status, resp = alice.request("GET", path, params={"ts": 1, "dir": "sideways"})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM")


# -- sending ------------------------------------------------------------------------------------

def test_transaction_id_idempotency(homeserver):
    alice = homeserver.register()
    room = alice.create_room()
    txn = unique("txn")
    first = alice.send(room, "only once", txn_id=txn)
    again = alice.send(room, "only once", txn_id=txn)
    assert first == again
    assert bodies(alice.messages(room, dir="b", limit=20)["chunk"]).count("only once") == 1
    # the sending device sees its transaction id; another device reusing the id sends a new event
    event = alice.ok("GET", f"/rooms/{q(room)}/event/{q(first)}")
    assert event["unsigned"]["transaction_id"] == txn
    laptop = homeserver.login(alice.user_id)
    assert "transaction_id" not in laptop.ok("GET", f"/rooms/{q(room)}/event/{q(first)}")["unsigned"]
    other = laptop.send(room, "only once", txn_id=txn)
    assert other != first
    # the same device may reuse a txn id in another room
    room2 = alice.create_room()
    assert alice.send(room2, "x", txn_id=txn) != first


def test_send_to_unknown_room_and_as_non_member(homeserver):
    alice, bob = homeserver.register(), homeserver.register()
    room = alice.create_room()
    status, resp = bob.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique()}", {"body": "x"})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    status, resp = alice.request("PUT", f"/rooms/{q('!nosuch:test.local')}/send/m.room.message/{unique()}",
                                 {"body": "x"})
    assert status in (403, 404) and resp["errcode"] in ("M_FORBIDDEN", "M_NOT_FOUND")


def test_send_and_redact_without_transaction_id(homeserver):
    """POST /rooms/{roomId}/send/{eventType} and POST /rooms/{roomId}/redact/{eventId}, the forms without a
    transaction ID that Synapse serves: each request is a new event; the body is checked as with PUT."""
    alice = homeserver.register()
    room = alice.create_room()
    path = f"/rooms/{q(room)}/send/m.room.message"
    first = alice.ok("POST", path, {"msgtype": "m.text", "body": "posted"})["event_id"]
    second = alice.ok("POST", path, {"msgtype": "m.text", "body": "posted"})["event_id"]
    assert first != second
    assert bodies(alice.messages(room, dir="b", limit=20)["chunk"]).count("posted") == 2
    assert "transaction_id" not in alice.ok("GET", f"/rooms/{q(room)}/event/{q(first)}")["unsigned"]
    status, resp = alice.request("POST", path, b"[1, 2]")
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON")
    redaction = alice.ok("POST", f"/rooms/{q(room)}/redact/{q(first)}", {"reason": "no txn"})["event_id"]
    redacted = alice.ok("GET", f"/rooms/{q(room)}/event/{q(first)}")
    assert redacted["content"] == {} and redacted["unsigned"]["redacted_because"]["event_id"] == redaction


def test_messages_forwards_to_the_live_end_gives_end(homeserver):
    """Paginating forwards up to the newest event still gives "end" (more may come; as Synapse), and from
    there an empty chunk without "end"; backwards from the start of the room, no "end" (spec: omitted when
    the start of the timeline is reached)."""
    alice = homeserver.register()
    room = alice.create_room()
    since = alice.ok("GET", "/sync", params={"timeout": 0})["next_batch"]
    sent = alice.send(room, "latest")
    page = alice.messages(room, dir="f", **{"from": since})
    assert [e["event_id"] for e in page["chunk"]] == [sent] and "end" in page
    empty = alice.messages(room, dir="f", **{"from": page["end"]})
    assert empty["chunk"] == [] and "end" not in empty
    later = alice.send(room, "later")
    assert [e["event_id"] for e in alice.messages(room, dir="f", **{"from": page["end"]})["chunk"]] == [later]
    whole = alice.messages(room, dir="b", limit=50)
    assert whole["chunk"][-1]["type"] == "m.room.create" and "end" not in whole


def test_event_of_a_room_the_user_is_not_in_is_not_found(homeserver):
    """Spec GET /rooms/{roomId}/event/{eventId}: 404 when "you do not have permission to read this event" (a
    non-member of a room that is not world-readable), as for an unknown event; world-readable: served."""
    alice, eve = homeserver.register(), homeserver.register()
    room = alice.create_room(preset="private_chat")
    event_id = alice.send(room, "members only")
    for path in (f"/rooms/{q(room)}/event/{q(event_id)}", f"/rooms/{q(room)}/event/{q('$nosuch')}"):
        status, resp = eve.request("GET", path)
        assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")
    alice.put_state(room, "m.room.history_visibility", {"history_visibility": "world_readable"})
    public = alice.send(room, "anyone may read")
    assert eve.ok("GET", f"/rooms/{q(room)}/event/{q(public)}")["event_id"] == public


# -- relations (relation and redaction service behaviour: on a server built in this process) -----

def test_edit_bundled_in_messages_and_event(inprocess_server):
    alice, bob = inprocess_server.register(), inprocess_server.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    original = alice.send(room, "helo")
    edit = alice.send(room, {"msgtype": "m.text", "body": "* hello",
                             "m.new_content": {"msgtype": "m.text", "body": "hello"},
                             "m.relates_to": {"rel_type": "m.replace", "event_id": original}})
    event = bob.ok("GET", f"/rooms/{q(room)}/event/{q(original)}")
    assert event["content"]["body"] == "helo"  # the original content is unchanged
    replace = event["unsigned"]["m.relations"]["m.replace"]
    assert replace["event_id"] == edit and replace["content"]["m.new_content"]["body"] == "hello"
    chunk = bob.messages(room, dir="b", limit=5)["chunk"]
    in_messages = next(e for e in chunk if e["event_id"] == original)
    assert in_messages["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit

    # a later edit wins; an edit by someone else is not applied
    edit2 = alice.send(room, {"msgtype": "m.text", "body": "* hello!",
                              "m.new_content": {"msgtype": "m.text", "body": "hello!"},
                              "m.relates_to": {"rel_type": "m.replace", "event_id": original}})
    bob.send(room, {"msgtype": "m.text", "body": "* hijack", "m.new_content": {"msgtype": "m.text", "body": "x"},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": original}})
    event = bob.ok("GET", f"/rooms/{q(room)}/event/{q(original)}")
    assert event["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit2
    relations = bob.ok("GET", CLIENT_V1 + f"/rooms/{q(room)}/relations/{q(original)}/m.replace")
    assert edit in [e["event_id"] for e in relations["chunk"]]


def test_threads(inprocess_server):
    alice, bob = inprocess_server.register(), inprocess_server.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    root = alice.send(room, "thread root")
    lonely = alice.send(room, "not a thread")
    replies = [(bob if i % 2 else alice).send(room, {
        "msgtype": "m.text", "body": f"reply {i}",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}}) for i in range(3)]

    threads = bob.ok("GET", CLIENT_V1 + f"/rooms/{q(room)}/threads")
    assert [e["event_id"] for e in threads["chunk"]] == [root]
    summary = threads["chunk"][0]["unsigned"]["m.relations"]["m.thread"]
    assert summary["count"] == 3 and summary["latest_event"]["event_id"] == replies[-1]
    assert summary["current_user_participated"] is True
    carol = alice.server.register()
    carol.join(room)
    participated = carol.ok("GET", CLIENT_V1 + f"/rooms/{q(room)}/threads", params={"include": "participated"})
    assert participated["chunk"] == []
    assert carol.ok("GET", f"/rooms/{q(room)}/event/{q(root)}")["unsigned"]["m.relations"]["m.thread"][
        "current_user_participated"] is False
    assert lonely not in [e["event_id"] for e in threads["chunk"]]

    in_thread = bob.ok("GET", CLIENT_V1 + f"/rooms/{q(room)}/relations/{q(root)}/m.thread")
    assert [e["event_id"] for e in in_thread["chunk"]] == replies[::-1]
    page = bob.ok("GET", CLIENT_V1 + f"/rooms/{q(room)}/relations/{q(root)}/m.thread", params={"limit": 2})
    assert [e["event_id"] for e in page["chunk"]] == replies[:0:-1]
    rest = bob.ok("GET", CLIENT_V1 + f"/rooms/{q(room)}/relations/{q(root)}/m.thread",
                  params={"limit": 2, "from": page["next_batch"]})
    assert [e["event_id"] for e in rest["chunk"]] == replies[:1] and "next_batch" not in rest
    forwards = bob.ok("GET", CLIENT_V1 + f"/rooms/{q(room)}/relations/{q(root)}/m.thread", params={"dir": "f"})
    assert [e["event_id"] for e in forwards["chunk"]] == replies
    status, resp = bob.request("GET", CLIENT_V1 + f"/rooms/{q(room)}/threads", params={"include": "mine"})
    assert (status, resp["errcode"]) == (400, "M_INVALID_PARAM")


def test_annotations(inprocess_server):
    alice, bob = inprocess_server.register(), inprocess_server.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    target = alice.send(room, "react to me")
    reactions = [u.send(room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}},
                        event_type="m.reaction") for u, key in ((alice, "👍"), (bob, "👍"), (bob, "🎉"))]
    other = bob.send(room, {"body": "custom", "m.relates_to": {"rel_type": "m.annotation", "event_id": target,
                                                               "key": "x"}}, event_type="org.example.vote")
    base = CLIENT_V1 + f"/rooms/{q(room)}/relations/{q(target)}"
    every = alice.ok("GET", base)["chunk"]
    assert {e["event_id"] for e in every} == set(reactions) | {other}
    annotations = alice.ok("GET", base + "/m.annotation")["chunk"]
    assert {e["event_id"] for e in annotations} == set(reactions) | {other}
    only_reactions = alice.ok("GET", base + "/m.annotation/m.reaction")["chunk"]
    assert [e["event_id"] for e in only_reactions] == reactions[::-1]
    assert alice.ok("GET", base + "/m.replace")["chunk"] == []
    # annotations are not bundled (spec v1.7+)
    relations = alice.ok("GET", f"/rooms/{q(room)}/event/{q(target)}")["unsigned"].get("m.relations", {})
    assert "m.annotation" not in relations
    status, resp = alice.request("GET", CLIENT_V1 + f"/rooms/{q(room)}/relations/{q('$missing')}")
    assert (status, resp["errcode"]) == (404, "M_NOT_FOUND")


# -- redaction -------------------------------------------------------------------------------

def test_redaction(inprocess_server):
    alice, bob = inprocess_server.register(), inprocess_server.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    secret = bob.send(room, {"msgtype": "m.text", "body": "my password is hunter2", "extra": "x"})
    txn = unique("redact")
    redaction = bob.ok("PUT", f"/rooms/{q(room)}/redact/{q(secret)}/{txn}", {"reason": "oops"})["event_id"]
    assert bob.ok("PUT", f"/rooms/{q(room)}/redact/{q(secret)}/{txn}", {"reason": "oops"})["event_id"] == redaction

    for path_user in (alice, bob):
        event = path_user.ok("GET", f"/rooms/{q(room)}/event/{q(secret)}")
        assert event["content"] == {}
        because = event["unsigned"]["redacted_because"]
        assert because["event_id"] == redaction and because["content"]["reason"] == "oops"
        assert event["unsigned"]["redacted_by"] == redaction  # Synapse's, beside the spec's redacted_because
        assert because["sender"] == bob.user_id
    chunk = alice.messages(room, dir="b", limit=5)["chunk"]
    assert chunk[0]["event_id"] == redaction and chunk[0]["type"] == "m.room.redaction"
    assert chunk[0].get("redacts", chunk[0]["content"].get("redacts")) == secret
    redacted = next(e for e in chunk if e["event_id"] == secret)
    assert redacted["content"] == {} and "redacted_because" in redacted["unsigned"]

    # a member without power cannot redact someone else's event; a moderator can
    own = alice.send(room, "alice's words")
    status, resp = bob.request("PUT", f"/rooms/{q(room)}/redact/{q(own)}/{unique()}", {})
    assert (status, resp["errcode"]) == (403, "M_FORBIDDEN")
    assert alice.ok("GET", f"/rooms/{q(room)}/event/{q(own)}")["content"]["body"] == "alice's words"
    other = bob.send(room, "bob again")
    alice.ok("PUT", f"/rooms/{q(room)}/redact/{q(other)}/{unique()}", {})
    assert bob.ok("GET", f"/rooms/{q(room)}/event/{q(other)}")["content"] == {}


def test_redacted_state_keeps_protected_keys(inprocess_server):
    alice = inprocess_server.register()
    room = alice.create_room(preset="public_chat", room_version="11")
    event_id = alice.put_state(room, "m.room.join_rules", {"join_rule": "public", "extra": 1})
    alice.ok("PUT", f"/rooms/{q(room)}/redact/{q(event_id)}/{unique()}", {})
    assert alice.ok("GET", f"/rooms/{q(room)}/event/{q(event_id)}")["content"] == {"join_rule": "public"}
