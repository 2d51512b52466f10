"""Send-to-device messages: each device's inbox and the transaction ids seen.

Spec v1.19 client-server "Send-to-Device messaging". One stream ("to_device"
in the sync token) orders every inbox; a message stays in its inbox until the
device syncs with a token at or past its position.
"""

from __future__ import annotations

import json

from homeserver.storage.database import Store
from homeserver.storage.e2e_keys import canonical

MIGRATIONS = [
    """
    CREATE TABLE device_inbox (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        stream_id BIGINT NOT NULL,
        message_json TEXT NOT NULL,
        PRIMARY KEY (user_id, device_id, stream_id)
    );
    CREATE TABLE to_device_txns (
        user_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        txn_id TEXT NOT NULL,
        stream_id BIGINT NOT NULL,
        PRIMARY KEY (user_id, device_id, txn_id)
    );
    CREATE TABLE device_federation_outbox (
        destination TEXT NOT NULL,
        stream_id BIGINT NOT NULL,
        edu_json TEXT NOT NULL,
        PRIMARY KEY (destination, stream_id)
    )
    """,
    # Delivered messages are deleted, so the highest position handed out is kept on its own.
    """
    CREATE TABLE to_device_stream (
        position BIGINT NOT NULL
    );
    INSERT INTO to_device_stream (position) SELECT MAX(p) FROM (
        SELECT COALESCE(MAX(stream_id), 0) AS p FROM device_inbox
        UNION ALL SELECT COALESCE(MAX(stream_id), 0) AS p FROM device_federation_outbox
        UNION ALL SELECT COALESCE(MAX(stream_id), 0) AS p FROM to_device_txns
    ) AS positions
    """,
    # Messages for remote users go to the federation sender's queue (m.direct_to_device EDUs).
    """
    DROP TABLE device_federation_outbox
    """,
]


class DeviceInboxStore(Store):
    def max_position_sync(self) -> int:
        """The stream's highest position handed out (start-up only).

        Delivered messages are deleted, so the position is kept on its own: the stream never goes back
        below a token a client holds.
        """
        return self.db.run_sync("device_inbox_max", lambda t: int(t.select_value(
            "SELECT position FROM to_device_stream", default=0)))

    async def add_messages(self, stream_id: int, sender: str, sender_device: str, txn_id: str,
                           local: list[tuple[str, str, dict]]) -> bool:
        """Store the (user_id, device_id, message) of one /sendToDevice request or m.direct_to_device EDU.

        False, storing nothing, if the sender's device already used ``txn_id`` (a remote sender: its
        server's ``message_id``, with no device).
        """

        def txn_fn(txn):
            txn.execute("UPDATE to_device_stream SET position = ? WHERE position < ?", (stream_id, stream_id))
            if txn.select_one("SELECT 1 FROM to_device_txns WHERE user_id = ? AND device_id = ? AND txn_id = ?",
                              (sender, sender_device, txn_id)):
                return False
            txn.execute("INSERT INTO to_device_txns (user_id, device_id, txn_id, stream_id) VALUES (?, ?, ?, ?)",
                        (sender, sender_device, txn_id, stream_id))
            txn.executemany("INSERT INTO device_inbox (user_id, device_id, stream_id, message_json) "
                            "VALUES (?, ?, ?, ?)",
                            [(user_id, device_id, stream_id, canonical(msg)) for user_id, device_id, msg in local])
            return True

        return await self.db.run("add_to_device_messages", txn_fn)

    async def messages_for_device(self, user_id: str, device_id: str, from_pos: int, to_pos: int,
                                  limit: int) -> list[tuple[int, dict]]:
        """(position, message) in (from_pos, to_pos], oldest first, at most ``limit``."""
        rows = await self.db.run("messages_for_device", lambda t: t.select_all(
            "SELECT stream_id, message_json FROM device_inbox WHERE user_id = ? AND device_id = ? "
            "AND stream_id > ? AND stream_id <= ? ORDER BY stream_id LIMIT ?",
            (user_id, device_id, from_pos, to_pos, limit)))
        return [(int(r[0]), json.loads(r[1])) for r in rows]

    async def delete_delivered(self, user_id: str, device_id: str, up_to: int) -> None:
        await self.db.run("delete_delivered_to_device", lambda t: t.execute(
            "DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
            (user_id, device_id, up_to)))

    async def delete_inboxes(self, user_id: str, device_ids: list[str]) -> None:
        """Removed devices lose their inbox and their transaction ids."""

        def txn_fn(txn):
            for device_id in device_ids:
                txn.execute("DELETE FROM device_inbox WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                txn.execute("DELETE FROM to_device_txns WHERE user_id = ? AND device_id = ?", (user_id, device_id))

        await self.db.run("delete_device_inboxes", txn_fn)
