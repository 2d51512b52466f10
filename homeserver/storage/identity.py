"""Which identity servers each user's third-party identifiers were bound on through this homeserver.

Spec v1.19 client-server ``POST /account/3pid/bind``: "Homeservers should track successful binds so they
can be unbound later" (``/account/3pid/unbind`` and ``/account/3pid/delete`` without ``id_server``, account
deactivation). One row per (user, medium, address, identity server), as Synapse's
``user_threepid_id_server``; a row is written only after the identity server confirmed the bind and
removed once it confirmed (or could not support) the unbind.
"""

from __future__ import annotations

from homeserver.storage.database import Store

MIGRATIONS = [
    """
    CREATE TABLE user_threepid_id_servers (
        user_id TEXT NOT NULL,
        medium TEXT NOT NULL,
        address TEXT NOT NULL,
        id_server TEXT NOT NULL,
        PRIMARY KEY (user_id, medium, address, id_server)
    )
    """,
]


class IdentityBindingStore(Store):
    async def add(self, user_id: str, medium: str, address: str, id_server: str) -> None:
        await self.db.run("add_threepid_binding", lambda t: t.execute(
            "INSERT INTO user_threepid_id_servers (user_id, medium, address, id_server) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id, medium, address, id_server) DO NOTHING", (user_id, medium, address, id_server)))

    async def remove(self, user_id: str, medium: str, address: str, id_server: str) -> None:
        await self.db.run("remove_threepid_binding", lambda t: t.execute(
            "DELETE FROM user_threepid_id_servers WHERE user_id = ? AND medium = ? AND address = ? AND id_server = ?",
            (user_id, medium, address, id_server)))

    async def id_servers(self, user_id: str, medium: str, address: str) -> list[str]:
        rows = await self.db.run("threepid_binding_servers", lambda t: t.select_all(
            "SELECT id_server FROM user_threepid_id_servers WHERE user_id = ? AND medium = ? AND address = ?"
            " ORDER BY id_server", (user_id, medium, address)))
        return [r[0] for r in rows]

    async def bound(self, user_id: str) -> list[tuple[str, str]]:
        """The (medium, address) pairs the user bound on any identity server."""
        rows = await self.db.run("threepid_bindings_of_user", lambda t: t.select_all(
            "SELECT DISTINCT medium, address FROM user_threepid_id_servers WHERE user_id = ?"
            " ORDER BY medium, address", (user_id,)))
        return [(m, a) for m, a in rows]
