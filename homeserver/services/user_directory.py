"""User directory search (client-server "User directory").

The directory is kept up to date from room events: member events give
display names, join rules and history visibility tell which rooms are public.
A search term matches a user when each of its words starts a word of their
user id or display name, case-insensitively (the words, ``words_of``, are indexed by the store).
"""

from __future__ import annotations

from homeserver.services.background import ListenerWork
from homeserver.storage.user_directory import UserDirectoryStore, words_of
from homeserver.services.room_events.heads import RoomHeads

MAX_LIMIT = 50          # as Synapse
CANDIDATES_PER_RESULT = 20


def matches(term_words: list[str], user_id: str, display_name: str | None) -> bool:
    """Every word of the term is a prefix of a word of the user id or display name."""
    words = words_of(user_id) + words_of(display_name)
    return all(any(w.startswith(t) for w in words) for t in term_words)


def rank_key(term: str, user_id: str, display_name: str | None) -> tuple:
    """Best first: the whole term starting the display name or the localpart, then by name."""
    term = term.casefold()
    name = (display_name or "").casefold()
    localpart = user_id[1:].split(":", 1)[0].casefold()
    return (not (name.startswith(term) or localpart.startswith(term)), name or localpart, user_id)


class UserDirectoryService:
    def __init__(self, *, store: UserDirectoryStore, room_heads: RoomHeads, enabled: bool, search_all_users: bool):
        self._store = store
        self._heads = room_heads
        self.enabled = enabled
        self.search_all_users = search_all_users
        self.work = ListenerWork("Updating the user directory")

    # -- keeping the directory -------------------------------------------------------
    def on_room_events(self, events) -> None:
        """Room event listener: record profiles from joins and the public-ness of rooms."""
        relevant = [e for e in events if not e.outlier and e.state_key is not None and e.type in (
            "m.room.member", "m.room.join_rules", "m.room.history_visibility")]
        if relevant:
            self.work.start(self._update(relevant), max(e.stream_ordering for e in relevant))

    async def flush(self) -> None:
        """Finish the updates from what was persisted (at shutdown)."""
        await self.work.wait()

    async def _update(self, events) -> None:
        for ev in events:
            if ev.type == "m.room.member":
                if ev.content.get("membership") == "join":
                    name, avatar = ev.content.get("displayname"), ev.content.get("avatar_url")
                    await self._store.set_profile(ev.state_key, name if isinstance(name, str) else None,
                                                  avatar if isinstance(avatar, str) else None)
            elif ev.state_key == "":
                await self._store.set_room_public(ev.room_id, await self._is_public(ev.room_id))

    async def _is_public(self, room_id: str) -> bool:
        """Joinable by anyone, or readable by anyone (Synapse's rule for "users in public rooms")."""
        join_rules = await self._heads.current_state_event(room_id, "m.room.join_rules")
        visibility = await self._heads.current_state_event(room_id, "m.room.history_visibility")
        return (join_rules is not None and join_rules.content.get("join_rule") == "public") or (
            visibility is not None and visibility.content.get("history_visibility") == "world_readable")

    # -- search ------------------------------------------------------------------------
    async def search(self, searcher: str, term: str, limit: int) -> dict:
        """Spec POST /user_directory/search: ``results`` (user_id, display_name, avatar_url) and ``limited``."""
        limit = max(0, min(limit, MAX_LIMIT))
        term_words = words_of(term)
        if not self.enabled or not term_words:
            return {"limited": False, "results": []}
        await self.work.wait()  # a search sees every update committed before it
        cap = max(limit, 1) * CANDIDATES_PER_RESULT
        rows = await self._store.candidates(searcher, term_words, all_local=self.search_all_users, limit=cap)
        found = sorted((r for r in rows if matches(term_words, r[0], r[1])), key=lambda r: rank_key(term, r[0], r[1]))
        results = []
        for user_id, name, avatar in found[:limit]:
            entry = {"user_id": user_id}
            if name is not None:
                entry["display_name"] = name
            if avatar is not None:
                entry["avatar_url"] = avatar
            results.append(entry)
        return {"limited": len(found) > limit or len(rows) >= cap, "results": results}
