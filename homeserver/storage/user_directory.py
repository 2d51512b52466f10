"""The user directory (client-server "User directory").

Owns the display names seen in member events and the set of public rooms
(joinable by anyone or world-readable). A search reads, without writing, the
room memberships (``current_state``) and local accounts (``users``,
``profiles``) to find the users a searcher may see: those sharing a room with
them (not themself), those in public rooms and, when configured, every local user but themself.
"""

from __future__ import annotations

from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE user_directory_profiles (
        user_id TEXT PRIMARY KEY,
        display_name TEXT,
        avatar_url TEXT
    );
    CREATE TABLE user_directory_public_rooms (
        room_id TEXT PRIMARY KEY
    )
    """,
]

_SHARING = ("SELECT b.state_key AS user_id FROM current_state a JOIN current_state b ON a.room_id = b.room_id"
            " WHERE a.type = 'm.room.member' AND a.state_key = ? AND a.membership = 'join'"
            " AND b.type = 'm.room.member' AND b.membership = 'join' AND b.state_key != a.state_key")
_IN_PUBLIC_ROOMS = ("SELECT c.state_key AS user_id FROM current_state c"
                    " JOIN user_directory_public_rooms r ON c.room_id = r.room_id"
                    " WHERE c.type = 'm.room.member' AND c.membership = 'join'")
_LOCAL_USERS = "SELECT user_id FROM users WHERE deactivated = 0"


def like_pattern(word: str) -> str:
    """``%word%`` with LIKE's wildcards escaped (ESCAPE '\\')."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UserDirectoryStore(Store):
    async def set_profile(self, user_id: str, display_name: str | None, avatar_url: str | None) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM user_directory_profiles WHERE user_id = ?", (user_id,))
            txn.execute("INSERT INTO user_directory_profiles (user_id, display_name, avatar_url) VALUES (?, ?, ?)",
                        (user_id, display_name, avatar_url))

        await self.db.run("user_directory_set_profile", txn_fn)

    async def set_room_public(self, room_id: str, public: bool) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM user_directory_public_rooms WHERE room_id = ?", (room_id,))
            if public:
                txn.execute("INSERT INTO user_directory_public_rooms (room_id) VALUES (?)", (room_id,))

        await self.db.run("user_directory_set_room_public", txn_fn)

    async def candidates(self, searcher: str, words: list[str], *, all_local: bool,
                         limit: int) -> list[tuple[str, str | None, str | None]]:
        """(user_id, display name, avatar url) of visible users whose id or name contains every word.

        Words are lower case; the caller refines the match. Local users' names come from their
        profile, other users' from their latest member event.
        """
        sources = [_SHARING, _IN_PUBLIC_ROOMS] + ([_LOCAL_USERS] if all_local else [])
        name = "COALESCE(p.displayname, d.display_name)"
        where = " AND ".join(f"(LOWER(v.user_id) LIKE ? ESCAPE '\\' OR LOWER({name}) LIKE ? ESCAPE '\\')"
                             for _ in words) or "1 = 1"
        # As Synapse: the searcher finds themself only as a member of a public room, or never with all_local.
        if all_local:
            where += " AND v.user_id != ?"
        sql = (f"SELECT v.user_id, {name}, COALESCE(p.avatar_url, d.avatar_url)"
               f" FROM ({' UNION '.join(sources)}) v"
               " LEFT JOIN profiles p ON p.user_id = v.user_id"
               " LEFT JOIN user_directory_profiles d ON d.user_id = v.user_id"
               " LEFT JOIN users u ON u.user_id = v.user_id"
               f" WHERE (u.deactivated IS NULL OR u.deactivated = 0) AND {where} LIMIT ?")
        args: list = [searcher] + [p for w in words for p in (like_pattern(w), like_pattern(w))] \
            + ([searcher] if all_local else []) + [limit]
        rows = await self.db.run("user_directory_search", lambda t: t.select_all(sql, args))
        return [(r[0], r[1], r[2]) for r in rows]
