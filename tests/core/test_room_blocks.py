"""RoomBlocks (``homeserver/services/room_blocks.py``), over a store whose reads wait until the test lets them
go: main keeps what it read (a join asks each time), never across a block made meanwhile; a worker keeps nothing."""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred

from homeserver.services.room_blocks import RoomBlocks

ROOM = "!r:test.local"


class BlocksStore:
    def __init__(self):
        self.blocked: dict[str, str] = {}
        self.reads: list[Deferred] = []

    async def room_blocked_by(self, room_id):
        by = self.blocked.get(room_id)  # read now, answered when released
        release: Deferred = Deferred()
        self.reads.append(release)
        await release
        return by

    async def block_room(self, room_id, user_id):
        if user_id is None:
            self.blocked.pop(room_id, None)
        else:
            self.blocked[room_id] = user_id


def read(blocks: RoomBlocks, store: BlocksStore):
    d = ensureDeferred(blocks.blocked_by(ROOM))
    if not d.called:
        store.reads[-1].callback(None)
    return d.result


def test_main_reads_a_room_once_and_sees_its_own_blocks():
    store = BlocksStore()
    blocks = RoomBlocks(store=store, memoize=True)
    assert read(blocks, store) is None and read(blocks, store) is None
    assert len(store.reads) == 1
    ensureDeferred(blocks.block(ROOM, "@admin:test.local"))
    assert read(blocks, store) == "@admin:test.local"
    ensureDeferred(blocks.block(ROOM, None))
    assert read(blocks, store) is None
    assert len(store.reads) == 3


def test_a_read_begun_before_a_block_is_not_kept():
    store = BlocksStore()
    blocks = RoomBlocks(store=store, memoize=True)
    stale = ensureDeferred(blocks.blocked_by(ROOM))  # read "not blocked", not yet answered
    ensureDeferred(blocks.block(ROOM, "@admin:test.local"))
    store.reads[0].callback(None)
    assert stale.result is None
    assert read(blocks, store) == "@admin:test.local"  # read again


def test_a_worker_reads_each_time():
    store = BlocksStore()
    blocks = RoomBlocks(store=store, memoize=False)
    read(blocks, store)
    store.blocked[ROOM] = "@admin:test.local"  # main blocked it
    assert read(blocks, store) == "@admin:test.local"
