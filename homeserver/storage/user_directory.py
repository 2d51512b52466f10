"""The user directory (client-server "User directory").

Owns the display names seen in member events and the set of public rooms
(joinable by anyone or world-readable). A search reads, without writing, the
room memberships (``current_state``) and local accounts (``users``,
``profiles``) to find the users a searcher may see: those sharing a room with
them (not themself), those in public rooms and, when configured, every local user but themself.
"""

from __future__ import annotations

import re

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

# Domain ``user_directory_search``: every word of each user's id and names (display name of their profile and
# of their latest join), casefolded, so a search finds the users whose words start with its words through the
# index instead of reading every visible user (Synapse: user_directory_search, a tsvector on PostgreSQL and FTS
# on SQLite). A plain table of words serves both engines with exactly the matching rule of the search (see
# words_of); a name no longer held leaves words behind only until the user's next re-index, and the search
# checks each candidate's current names anyway.
SEARCH_MIGRATIONS = [
    """
    CREATE TABLE user_directory_words (
        word TEXT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (word, user_id)
    );
    CREATE INDEX user_directory_words_user ON user_directory_words (user_id)
    """,
    lambda txn: reindex_users_txn(txn, [r[0] for r in txn.select_all(
        "SELECT user_id FROM users UNION SELECT user_id FROM user_directory_profiles")]),
]

_WORD = re.compile(r"\w+", re.UNICODE)
_AFTER_EVERY_WORD = "\U0010ffff"  # the highest code point: word < prefix + this for every word starting prefix
RANGE_COUNT_CAP = 1000  # index entries counted at most per word of a search, to find its rarest


def words_of(text: str | None) -> list[str]:
    """The words a search matches against (and its own words): runs of word characters, casefolded."""
    return _WORD.findall(text.casefold()) if text else []


def index_new_user_txn(txn, user_id: str, display_name: str | None) -> None:
    """The words of a user just created (nothing to read or replace: concurrent registrations only insert,
    and so never fail to serialize against each other here)."""
    txn.insert_rows("user_directory_words", ("word", "user_id"),
                    [(word, user_id) for word in set(words_of(user_id)) | set(words_of(display_name))])


def reindex_users_txn(txn, user_ids: list[str]) -> None:
    """Rewrite the words of these users from their ids and their names as stored now."""
    for i in range(0, len(user_ids), 500):
        chunk = user_ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        names: dict[str, set[str]] = {u: set() for u in chunk}
        for sql in (f"SELECT user_id, displayname FROM profiles WHERE user_id IN ({marks})",
                    f"SELECT user_id, display_name FROM user_directory_profiles WHERE user_id IN ({marks})"):
            for user_id, name in txn.select_all(sql, chunk):
                names[user_id].add(name)
        txn.execute(f"DELETE FROM user_directory_words WHERE user_id IN ({marks})", chunk)
        txn.insert_rows("user_directory_words", ("word", "user_id"), [
            (word, user_id) for user_id, held in names.items()
            for word in set(words_of(user_id)).union(*(words_of(n) for n in held))])


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
            reindex_users_txn(txn, [user_id])

        await self.db.run("user_directory_set_profile", txn_fn)

    async def set_room_public(self, room_id: str, public: bool) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM user_directory_public_rooms WHERE room_id = ?", (room_id,))
            if public:
                txn.execute("INSERT INTO user_directory_public_rooms (room_id) VALUES (?)", (room_id,))

        await self.db.run("user_directory_set_room_public", txn_fn)

    async def candidates(self, searcher: str, words: list[str], *, all_local: bool,
                         limit: int) -> list[tuple[str, str | None, str | None]]:
        """(user_id, display name, avatar url) of up to ``limit`` visible users having, for each of the words,
        a word (of their id or a name they had) that starts with it; each user once.

        Words are casefolded (:func:`words_of`); the caller checks the current names. Local users' names come
        from their profile, other users' from their latest member event. The users of the rarest word come
        from the index; the other words, and who may see whom, are checked on them only.
        """
        words = sorted(set(words))
        if len(words) > 1:  # the rarest word first (counted up to RANGE_COUNT_CAP): the fewest users to check
            counts = await self.db.run("user_directory_word_counts", lambda t: t.select_one("SELECT " + ", ".join(
                f"(SELECT COUNT(*) FROM (SELECT 1 FROM user_directory_words WHERE word >= ? AND word < ?"
                f" LIMIT {RANGE_COUNT_CAP}) n{i})" for i in range(len(words))),
                [bound for word in words for bound in (word, word + _AFTER_EVERY_WORD)]))
            words = [w for _, w in sorted(zip(counts, words))]
        name = "COALESCE(p.displayname, d.display_name)"
        others = "".join(" AND EXISTS (SELECT 1 FROM user_directory_words x WHERE x.user_id = w.user_id"
                         " AND x.word >= ? AND x.word < ?)" for _ in words[1:])
        visible = ["u.user_id IS NOT NULL"] if all_local else []  # first: no subquery for a local user
        visible += [f"EXISTS ({_SHARING} AND b.state_key = w.user_id)",
                    f"EXISTS ({_IN_PUBLIC_ROOMS} AND c.state_key = w.user_id)"]
        # As Synapse: the searcher finds themself only as a member of a public room, or never with all_local.
        myself = " AND w.user_id != ?" if all_local else ""
        sql = (f"SELECT w.user_id, {name}, COALESCE(p.avatar_url, d.avatar_url)"
               " FROM user_directory_words w"
               " LEFT JOIN profiles p ON p.user_id = w.user_id"
               " LEFT JOIN user_directory_profiles d ON d.user_id = w.user_id"
               " LEFT JOIN users u ON u.user_id = w.user_id"
               " WHERE w.word >= ? AND w.word < ? AND (u.deactivated IS NULL OR u.deactivated = 0)"
               f"{others} AND ({' OR '.join(visible)}){myself} LIMIT ?")
        args: list = [bound for word in words for bound in (word, word + _AFTER_EVERY_WORD)]
        args += [searcher] + ([searcher] if all_local else []) + [limit]
        rows = await self.db.run("user_directory_search", lambda t: t.select_all(sql, args))
        found: dict[str, tuple[str, str | None, str | None]] = {}
        for row in rows:  # a user twice when two of their words start with the first word
            found.setdefault(row[0], (row[0], row[1], row[2]))
        return list(found.values())
