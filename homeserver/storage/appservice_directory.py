"""The application services' room directories (client-server "Application service room directories",
PUT /directory/list/appservice/{networkId}/{roomId}): the rooms each appservice publishes for each of its
third-party networks, kept apart from the homeserver's own public room list (``rooms.is_public``).
Table ``appservice_room_list`` keyed (appservice, network, room), as Synapse's of the same name.
"""

from __future__ import annotations

from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE appservice_room_list (
        appservice_id TEXT NOT NULL,
        network_id TEXT NOT NULL,
        room_id TEXT NOT NULL,
        PRIMARY KEY (appservice_id, network_id, room_id)
    )
    """,
]


class AppServiceDirectoryStore(Store):
    async def set_published(self, appservice_id: str, network_id: str, room_id: str, published: bool) -> None:
        def txn_fn(txn):
            txn.execute("DELETE FROM appservice_room_list WHERE appservice_id = ? AND network_id = ? AND room_id = ?",
                        (appservice_id, network_id, room_id))
            if published:
                txn.execute("INSERT INTO appservice_room_list (appservice_id, network_id, room_id) VALUES (?, ?, ?)",
                            (appservice_id, network_id, room_id))

        await self.db.run("set_appservice_room_published", txn_fn)

    async def room_ids(self, network: tuple[str, str] | None = None) -> list[str]:
        """The rooms one (appservice id, network id) publishes; with None, those of every network."""
        if network is None:
            sql, args = "SELECT DISTINCT room_id FROM appservice_room_list", ()
        else:
            sql, args = ("SELECT room_id FROM appservice_room_list WHERE appservice_id = ? AND network_id = ?",
                         network)
        return [r[0] for r in await self.db.run("appservice_room_ids", lambda t: t.select_all(sql, args))]
