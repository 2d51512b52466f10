"""Account data and room tags (client-server "Client Config", "Room Tagging") and their sync stream.

Global account data goes to ``account_data`` in /sync, room account data to
each room's ``account_data``. Tags are the room account data type ``m.tag``
(``{"tags": {...}}``), so they flow through the same stream.
"""

from __future__ import annotations

from twisted.internet import defer

from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.streams import ChangeTracker, StreamIdGenerator

TAG_TYPE = "m.tag"
IGNORED_USERS_TYPE = "m.ignored_user_list"


class AccountDataService:
    """Writes account data, serialising read-modify-writes (tags) per user and room."""

    name = "account_data"
    token_key = "a"  # in sync tokens (services/sync.py)
    sync_phase = 0  # sync: the rooms left it puts data in: once built (services/sync.py SyncSource)

    def __init__(self, *, store: AccountDataStore, notifier):
        self._store = store
        self._notifier = notifier
        self.stream = StreamIdGenerator(store.max_stream_id_sync())
        self.changes = ChangeTracker(self.stream.current())
        self._locks: dict[tuple[str, str | None], defer.DeferredLock] = {}

    def current(self) -> int:
        return self.stream.current()

    async def get(self, user_id: str, room_id: str | None, data_type: str) -> dict | None:
        """Global (``room_id`` None) or room account data of one type, None when never set."""
        return await self._store.get(user_id, room_id, data_type)

    async def put(self, user_id: str, room_id: str | None, data_type: str, content: dict) -> None:
        """Set account data (no type is refused here: the API refuses server-managed ones)."""
        (position,) = self.stream.allocate()
        try:
            await self._store.put(user_id, room_id, data_type, content, position)
            self.changes.record(user_id, position)
        finally:
            self.stream.done([position])
        self.stream.when_visible(position, lambda: self._notifier.notify(users=[user_id]))

    async def ignored_users(self, user_id: str) -> frozenset[str]:
        """Spec "Ignoring Users": the users ``m.ignored_user_list`` names."""
        content = await self._store.get(user_id, None, IGNORED_USERS_TYPE) or {}
        ignored = content.get("ignored_users")
        return frozenset(ignored) if isinstance(ignored, dict) else frozenset()

    # -- tags ------------------------------------------------------------------------
    async def get_tags(self, user_id: str, room_id: str) -> dict:
        content = await self.get(user_id, room_id, TAG_TYPE) or {}
        tags = content.get("tags")
        return tags if isinstance(tags, dict) else {}

    async def set_tag(self, user_id: str, room_id: str, tag: str, content: dict | None) -> None:
        """Add (or replace) a tag; ``content`` None removes it. A no-op removal writes nothing."""
        lock = self._locks.setdefault((user_id, room_id), defer.DeferredLock())
        await lock.acquire()
        try:
            tags = dict(await self.get_tags(user_id, room_id))
            if content is None:
                if tag not in tags:
                    return
                del tags[tag]
            else:
                tags[tag] = content
            await self.put(user_id, room_id, TAG_TYPE, {"tags": tags})
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop((user_id, room_id), None)

    # -- sync ------------------------------------------------------------------------
    async def contribute(self, ctx, response) -> None:
        """Spec "GET /sync": all account data on an initial sync, what changed since the token otherwise."""
        since = ctx.since_of(self.name)
        if since is not None and not self.changes.changed_since(ctx.user_id, since):
            return
        changes = await self._store.changes_for_user(ctx.user_id, since, ctx.to[self.name])
        await ctx.rooms_built()  # the rooms left that the response carries
        joined = set(ctx.joined_rooms)
        left = response["rooms"]["leave"]
        f = ctx.filter
        for room_id, data_type, content in changes:
            event = {"type": data_type, "content": content}
            if room_id is None:
                if f.account_data.allows(event):
                    response["account_data"]["events"].append(event)
                continue
            if not f.room_account_data.allows(event | {"room_id": room_id}):
                continue
            section = "join" if room_id in joined else "leave" if room_id in left else None
            if section is not None:
                response.room(section, room_id)["account_data"]["events"].append(event)
