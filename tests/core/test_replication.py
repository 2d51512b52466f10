"""Replication between processes (homeserver/replication/): the RESP parser and how a worker applies the
main process's messages, without Redis."""

from __future__ import annotations

import json
from types import SimpleNamespace

from homeserver.replication.redis import RedisError, encode_command, parse_reply
from homeserver.replication.streams import FollowedStream, ReplicationFollower, ReplicationPublisher
from homeserver.storage.streams import ChangeTracker, StreamIdGenerator


def test_resp_replies_parse_whole_or_not_at_all():
    message = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
    assert parse_reply(message) == ([b"message", b"ch", b"hello"], len(message))
    for cut in range(len(message)):
        assert parse_reply(message[:cut]) is None
    assert parse_reply(b":12\r\n+OK\r\n") == (12, 5)
    assert parse_reply(b"+OK\r\n") == (b"OK", 5)
    assert isinstance(parse_reply(b"-ERR no\r\n")[0], RedisError)
    assert encode_command(b"PUBLISH", b"c", b"x") == b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$1\r\nx\r\n"


class Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_a_worker_follows_main_positions_caches_typing_and_tokens():
    sent: list[bytes] = []
    main = ReplicationPublisher(instance="main", publish=sent.append,
                                positions=lambda: {"events": 7, "account_data": 3, "typing": 2},
                                clock=SimpleNamespace(seconds=lambda: 100.0))
    events = StreamIdGenerator(5)
    account_data = StreamIdGenerator(1)
    changes = ChangeTracker(1)
    notifier, heads, auth, typing, sender = Recorder(), Recorder(), Recorder(), Recorder(), Recorder()
    worker = ReplicationFollower(instance="sync1", notifier=notifier, room_heads=heads, auth=auth, typing=typing,
                                 publish=sent.append, federation_sender=sender,
                                 streams={"events": FollowedStream(events),
                                          "account_data": FollowedStream(account_data, changes, "users")})
    state = SimpleNamespace(room_id="!r", state_key="", type="m.room.name", pdu={}, content={})
    redaction = SimpleNamespace(room_id="!s", state_key=None, type="m.room.redaction", pdu={"redacts": "$x"},
                                content={})
    main.on_room_events([state, redaction])
    main.notified(["@a:hs"], ["!r"])
    main.typing_changed("!r", ["@a:hs"], 2)
    main.tokens_forgotten("@a:hs")
    main.federation_queued(9, ["other.example"])
    main.heard_from("other.example")
    main.heard_from("other.example")  # once in HEARD_EVERY_S
    for payload in sent:
        worker.on_message(payload)
    worker.on_message(b"not json")  # logged, not raised
    assert (events.current(), account_data.current()) == (7, 3)
    assert changes.changed_since("@a:hs", 2) and not changes.changed_since("@b:hs", 2)
    assert heads.calls == [("forget", (["!r"], ["$x"]), {})]
    assert notifier.calls == [("notify", (), {"users": ["@a:hs"], "rooms": ["!r"]})]
    assert typing.calls == [("replicated", ("!r", ["@a:hs"], 2), {})]
    assert auth.calls == [("forget_cached_tokens", ("@a:hs",), {})]
    assert sender.calls == [("queued_elsewhere", (9, ["other.example"]), {}), ("wake", ("other.example",), {})]
    assert worker.received == 6


def test_a_process_ignores_its_own_messages():
    sent: list[bytes] = []
    ReplicationPublisher(instance="sync1", publish=sent.append, positions=dict, clock=None).tokens_forgotten("@a:hs")
    auth = Recorder()
    follower = ReplicationFollower(instance="sync1", streams={}, notifier=None, room_heads=None, auth=auth, typing=None,
                                   publish=sent.append)
    follower.on_message(sent[0])
    assert auth.calls == [] and json.loads(sent[0])["k"] == "tokens"


def test_a_worker_that_subscribes_asks_main_for_every_position():
    to_main: list[bytes] = []
    to_worker: list[bytes] = []
    heads, sender = Recorder(), Recorder()
    events = StreamIdGenerator(1)
    worker = ReplicationFollower(instance="sync1", streams={"events": FollowedStream(events)}, notifier=Recorder(),
                                 room_heads=heads, auth=None, typing=None, publish=to_main.append,
                                 federation_sender=sender)
    main = ReplicationPublisher(instance="main", publish=to_worker.append, positions=lambda: {"events": 40},
                                clock=None)
    worker.on_connected()
    for payload in to_main:
        main.on_message(payload)
    for payload in to_worker:
        worker.on_message(payload)
    assert events.current() == 40
    assert heads.calls == [("forget_all", (), {})] and sender.calls == [("resume_queued_elsewhere", (), {})]
