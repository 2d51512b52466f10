"""RoomHeads.get_events under concurrent readers, with a store that holds its reads until the test lets them go:
an event being read is waited for, not read again; a failed read fails every reader of it and is not kept; a
read begun before another process redacted events is not joined after it."""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from homeserver.services.room_events.heads import RoomHeads
from homeserver.storage.events import StoredEvent

ROOM = "!r:test.local"


def stored(event_id: str) -> StoredEvent:
    return StoredEvent(event_id, {"type": "m.room.member", "state_key": event_id, "content": {}}, 1, ROOM)


class Store:
    """EventStore.get_events over a set of IDs; each read waits until the test releases it."""

    def __init__(self, ids):
        self.ids = set(ids)
        self.reads: list[tuple[list[str], Deferred]] = []

    async def get_events(self, event_ids):
        release: Deferred = Deferred()
        self.reads.append((list(event_ids), release))
        await release  # errback-ed: the read fails
        return {eid: stored(eid) for eid in event_ids if eid in self.ids}


def heads(store: Store, event_cache_size: int = 100) -> RoomHeads:
    return RoomHeads(clock=Clock(), store=store, stream=None, state_group_ids=None,
                     event_cache_size=event_cache_size)


def test_a_second_reader_waits_for_the_read_under_way_and_reads_only_what_it_does_not_cover():
    store = Store({"$a", "$b", "$c"})
    h = heads(store)
    first = ensureDeferred(h.get_events(["$a", "$b"]))
    second = ensureDeferred(h.get_events(["$b", "$c", "$gone"]))
    assert [ids for ids, _ in store.reads] == [["$a", "$b"], ["$c", "$gone"]]
    store.reads[1][1].callback(None)
    assert not second.called  # $b is still being read by the first
    store.reads[0][1].callback(None)
    assert set(first.result) == {"$a", "$b"}
    assert set(second.result) == {"$b", "$c"}
    assert second.result["$b"] is first.result["$b"]  # one copy, held once
    third = ensureDeferred(h.get_events(["$a", "$b", "$c"]))
    assert len(store.reads) == 2 and set(third.result) == {"$a", "$b", "$c"}  # from the cache


def test_a_failed_read_fails_its_waiting_readers_and_the_next_reader_reads_again():
    store = Store({"$a"})
    h = heads(store)
    first = ensureDeferred(h.get_events(["$a"]))
    second = ensureDeferred(h.get_events(["$a"]))
    assert len(store.reads) == 1
    store.reads[0][1].errback(ConnectionError("the database went away"))
    for reader in (first, second):
        assert reader.called and reader.result.check(ConnectionError)
        reader.addErrback(lambda _: None)
    third = ensureDeferred(h.get_events(["$a"]))
    assert len(store.reads) == 2
    store.reads[1][1].callback(None)
    assert set(third.result) == {"$a"}


def test_a_read_begun_before_another_process_redacted_events_is_not_joined_after_it():
    store = Store({"$a"})
    h = heads(store)
    before = ensureDeferred(h.get_events(["$a"]))
    h.forget([], ["$a"])  # another process redacted $a meanwhile
    after = ensureDeferred(h.get_events(["$a"]))
    assert len(store.reads) == 2  # read again: the first read may hold $a as it was
    for _, release in store.reads:
        release.callback(None)
    assert set(before.result) == set(after.result) == {"$a"}
    assert h.cache.get("$a") is after.result["$a"]  # only the read begun after the redaction is kept


def test_the_cache_holds_event_cache_size_events():
    store = Store({"$a", "$b", "$c"})
    h = heads(store, event_cache_size=2)
    read = ensureDeferred(h.get_events(["$a", "$b", "$c"]))
    store.reads[0][1].callback(None)
    assert set(read.result) == {"$a", "$b", "$c"}
    assert len(h.cache) == 2 and "$a" not in h.cache  # the least recently read went
    again = ensureDeferred(h.get_events(["$a"]))
    assert [ids for ids, _ in store.reads[1:]] == [["$a"]]
    store.reads[1][1].callback(None)
    assert set(again.result) == {"$a"}
