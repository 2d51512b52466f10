"""Rooms an admin blocked (Synapse's admin API "Block Room"): nobody on this server joins them.

Asked at every join: the process that blocks rooms (main) keeps the answers in memory; a worker reads them each
time (main may block a room under it).
"""

from __future__ import annotations

from homeserver.lru import LruCache
from homeserver.storage.admin import AdminStore

ROOMS_KEPT = 10_000
_UNKNOWN = object()


class RoomBlocks:
    def __init__(self, *, store: AdminStore, memoize: bool):
        self._store = store
        self._known: LruCache[str, str | None] = LruCache(ROOMS_KEPT if memoize else 0)  # room -> who blocked it
        self._writes = 0  # blocks and unblocks done: a read that spans one is not kept

    async def blocked_by(self, room_id: str) -> str | None:
        """The admin who blocked the room, None if it is not blocked."""
        known = self._known.get(room_id, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        writes = self._writes
        by = await self._store.room_blocked_by(room_id)
        if writes == self._writes:
            self._known.put(room_id, by)
        return by

    async def block(self, room_id: str, admin_id: str | None) -> None:
        """Block the room (``admin_id`` blocking it), or unblock it (None)."""
        await self._store.block_room(room_id, admin_id)
        self._writes += 1
        self._known.pop(room_id)
