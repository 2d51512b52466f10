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


def _with_word(user: str) -> str:
    """``user`` has a word in [?, ?): one index probe per candidate (a scalar subquery, which PostgreSQL never
    turns into a join: as an EXISTS it hashed every user of a common word, e.g. all members of a big room)."""
    return (f"(SELECT 1 FROM user_directory_words x WHERE x.user_id = {user} AND x.word >= ? AND x.word < ?"
            " LIMIT 1) IS NOT NULL")


_SHARING = ("SELECT b.state_key AS user_id FROM current_state a JOIN current_state b ON a.room_id = b.room_id"
            " WHERE a.type = 'm.room.member' AND a.state_key = ? AND a.membership = 'join'"
            " AND b.type = 'm.room.member' AND b.membership = 'join' AND b.state_key != a.state_key")
_IN_PUBLIC_ROOMS = ("SELECT c.state_key AS user_id FROM current_state c"
                    " JOIN user_directory_public_rooms r ON c.room_id = r.room_id"
                    " WHERE c.type = 'm.room.member' AND c.membership = 'join'")


def _visible(user: str, all_local: bool) -> str:
    """``user`` is not deactivated and the searcher (the ``?`` of the rooms shared) may see them: a local user
    (with ``all_local``), a user sharing a room with the searcher, or one in a public room. The order is fixed
    (CASE and COALESCE evaluate in order): with ``all_local``, the one index probe of ``users`` decides for a
    local user, and the rooms are read for the others only; without, the rooms come first (PostgreSQL may
    hash the users sharing a room and the public rooms' members once, which serves a search whose candidates
    are many and mostly hidden), then the probe."""
    deactivated = f"(SELECT u.deactivated FROM users u WHERE u.user_id = {user})"
    rooms = f"(EXISTS ({_SHARING} AND b.state_key = {user}) OR EXISTS ({_IN_PUBLIC_ROOMS} AND c.state_key = {user}))"
    if all_local:
        return f"COALESCE({deactivated}, CASE WHEN {rooms} THEN 0 ELSE 1 END) = 0"
    return f"CASE WHEN {rooms} THEN COALESCE({deactivated}, 0) ELSE 1 END = 0"


def search_sql(word_count: int, all_local: bool) -> str:
    """The search of :meth:`UserDirectoryStore.candidates` in one statement. Its arguments: (with more than one
    word) the bounds of each word, to count its users; then for each word its bounds, the bounds of every
    other word and the searcher (twice with ``all_local``); then the limit.

    With one word, its users are read from the index. With more, the number of users of each word (counted up
    to :data:`RANGE_COUNT_CAP`) chooses the rarest, whose users are read from the index; each part of the
    UNION ALL reads one word's users and runs only when that word is the rarest (the first of the rarest),
    checking the other words on them. The limit applies before the names are joined, so they are looked up
    for the users found only."""
    # As Synapse: the searcher finds themself only as a member of a public room, or never with all_local.
    myself = " AND w.user_id != ?" if all_local else ""
    counts, upper = "", ["?"]
    if word_count > 1:
        # (ORDER BY: the index is read; PostgreSQL otherwise scanned the table for a common word's rows)
        counts = "WITH n AS (SELECT " + ", ".join(
            f"(SELECT COUNT(*) FROM (SELECT 1 FROM user_directory_words WHERE word >= ? AND word < ?"
            f" ORDER BY word LIMIT {RANGE_COUNT_CAP}) c{i}) AS n{i}" for i in range(word_count)) + ") "
        # A part not to run gets an empty range (a word is never below ''): decided once, before it reads the
        # index, rather than on each of its rows (SQLite checks a constant WHERE term on every row).
        upper = ["CASE WHEN (SELECT " + " AND ".join([f"n{i} < n{j}" for j in range(i)]
                                                      + [f"n{i} <= n{j}" for j in range(i + 1, word_count)])
                 + " FROM n) THEN ? ELSE '' END" for i in range(word_count)]
    others = "".join(f" AND {_with_word('w.user_id')}" for _ in range(word_count - 1))
    parts = [f"SELECT w.user_id FROM user_directory_words w WHERE w.word >= ? AND w.word < {upper[i]}{others}"
             f" AND {_visible('w.user_id', all_local)}{myself}" for i in range(word_count)]
    return (f"{counts}SELECT f.user_id, COALESCE(p.displayname, d.display_name), COALESCE(p.avatar_url, d.avatar_url)"
            f" FROM ({' UNION ALL '.join(parts)} LIMIT ?) f"
            " LEFT JOIN profiles p ON p.user_id = f.user_id"
            " LEFT JOIN user_directory_profiles d ON d.user_id = f.user_id")


def like_pattern(word: str) -> str:
    """``%word%`` with LIKE's wildcards escaped (ESCAPE '\\')."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UserDirectoryStore(Store):
    async def set_profile(self, user_id: str, display_name: str | None, avatar_url: str | None) -> None:
        """The name and avatar of the user's latest join. A first name, or the name already held, is one pipelined
        upsert that adds the name's words (those of a name held stay). A changed name re-indexes the user, so the
        old name's words go: SERIALIZABLE, as every re-index; such a transaction never deletes words added after
        its snapshot (it cannot see them), and so no concurrent upsert loses its words."""
        def upsert_txn(txn):
            txn.executemany("INSERT INTO user_directory_words (word, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                            [(word, user_id) for word in set(words_of(user_id)) | set(words_of(display_name))])
            return txn.select_one(
                "INSERT INTO user_directory_profiles (user_id, display_name, avatar_url) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET avatar_url = excluded.avatar_url"
                " WHERE user_directory_profiles.display_name = excluded.display_name"
                " OR (user_directory_profiles.display_name IS NULL AND excluded.display_name IS NULL) RETURNING 1",
                (user_id, display_name, avatar_url))

        if await self.db.run_ordered("user_directory_upsert_profile", upsert_txn) is not None:
            return

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
        bounds = [(word, word + _AFTER_EVERY_WORD) for word in words]
        args: list = [bound for pair in bounds for bound in pair] if len(words) > 1 else []
        for i, driving in enumerate(bounds):
            args += [*driving, *(b for j, pair in enumerate(bounds) if j != i for b in pair)]
            args += [searcher] + ([searcher] if all_local else [])
        args.append(limit)
        sql = search_sql(len(words), all_local)
        rows = await self.db.run("user_directory_search", lambda t: t.select_all(sql, args))
        found: dict[str, tuple[str, str | None, str | None]] = {}
        for row in rows:  # a user twice when two of their words start with the first word
            found.setdefault(row[0], (row[0], row[1], row[2]))
        return list(found.values())
