"""Other servers' signing keys (server-server "Retrieving server keys").

``server_verify_keys`` holds each verified key with the time until which we
accept it; ``server_key_responses`` keeps the signed ``/_matrix/key/v2/server``
responses as received, so this server can answer as a notary with the
original signatures.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE server_verify_keys (
        server_name TEXT NOT NULL,
        key_id TEXT NOT NULL,
        verify_key TEXT NOT NULL,
        valid_until_ts BIGINT NOT NULL,
        ts_fetched BIGINT NOT NULL,
        PRIMARY KEY (server_name, key_id)
    );
    CREATE TABLE server_key_responses (
        server_name TEXT NOT NULL,
        key_id TEXT NOT NULL,
        from_server TEXT NOT NULL,
        ts_fetched BIGINT NOT NULL,
        valid_until_ts BIGINT NOT NULL,
        key_json TEXT NOT NULL,
        PRIMARY KEY (server_name, key_id, from_server)
    )
    """,
]


@dataclass(frozen=True)
class StoredKey:
    verify_key: str  # unpadded base64
    valid_until_ts: int
    ts_fetched: int


@dataclass(frozen=True)
class StoredResponse:
    key_id: str
    from_server: str
    ts_fetched: int
    valid_until_ts: int
    key_json: str


class ServerKeyStore(Store):
    async def get_verify_key(self, server_name: str, key_id: str) -> StoredKey | None:
        row = await self.db.run("get_server_verify_key", lambda t: t.select_one(
            "SELECT verify_key, valid_until_ts, ts_fetched FROM server_verify_keys"
            " WHERE server_name = ? AND key_id = ?", (server_name, key_id)))
        return None if row is None else StoredKey(row[0], int(row[1]), int(row[2]))

    async def store_response(self, server_name: str, from_server: str, ts_fetched: int, response_valid_until: int,
                             key_json: str, keys: dict[str, tuple[str, int]]) -> None:
        """Record a verified key response: ``keys`` maps key id -> (base64 key, accepted until).

        A key's validity only grows (an older or notary copy never shortens it).
        """
        def txn_fn(txn):
            for key_id, (verify_key, valid_until) in keys.items():
                current = txn.select_one(
                    "SELECT valid_until_ts FROM server_verify_keys WHERE server_name = ? AND key_id = ?",
                    (server_name, key_id))
                if current is None:
                    txn.execute("INSERT INTO server_verify_keys (server_name, key_id, verify_key, valid_until_ts,"
                                " ts_fetched) VALUES (?, ?, ?, ?, ?)",
                                (server_name, key_id, verify_key, valid_until, ts_fetched))
                elif int(current[0]) < valid_until:
                    txn.execute("UPDATE server_verify_keys SET verify_key = ?, valid_until_ts = ?, ts_fetched = ?"
                                " WHERE server_name = ? AND key_id = ?",
                                (verify_key, valid_until, ts_fetched, server_name, key_id))
                txn.execute("DELETE FROM server_key_responses WHERE server_name = ? AND key_id = ? AND from_server = ?",
                            (server_name, key_id, from_server))
                txn.execute("INSERT INTO server_key_responses (server_name, key_id, from_server, ts_fetched,"
                            " valid_until_ts, key_json) VALUES (?, ?, ?, ?, ?, ?)",
                            (server_name, key_id, from_server, ts_fetched, response_valid_until, key_json))

        await self.db.run("store_server_key_response", txn_fn)

    async def get_responses(self, server_name: str) -> list[StoredResponse]:
        """Every stored key response for ``server_name``, newest first."""
        rows = await self.db.run("get_server_key_responses", lambda t: t.select_all(
            "SELECT key_id, from_server, ts_fetched, valid_until_ts, key_json FROM server_key_responses"
            " WHERE server_name = ? ORDER BY ts_fetched DESC", (server_name,)))
        return [StoredResponse(r[0], r[1], int(r[2]), int(r[3]), r[4]) for r in rows]
