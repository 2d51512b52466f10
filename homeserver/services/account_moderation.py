"""Account suspension and locking (client-server "Server Administration", "Account suspension" and "Account
locking", v1.18; MSC3823, MSC3939, MSC4323), as Synapse does them.

A locked account's every request but ``/logout`` and ``/logout/all`` is refused 401 ``M_USER_LOCKED`` with
``soft_logout: true``, and it cannot log in. A suspended account keeps reading (sync, messages, keys, leaving
rooms, redacting) but may not create rooms, join, invite or knock, send events other than redactions, or
change its profile: 403 ``M_USER_SUSPENDED``. Server admins set either through ``PUT /admin/suspend`` and
``/admin/lock``, on local, existing, active accounts other than their own and other admins' (and lock through
Synapse's ``PUT /_synapse/admin/v2/users/{userId}`` ``locked``, which reads both back). The state is held
in memory (read at start-up), so the check on every request costs no database round trip.
"""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.identifiers import domain_of, is_valid_user_id
from homeserver.storage.account_moderation import AccountModerationStore


class AccountModeration:
    def __init__(self, *, store: AccountModerationStore, accounts, server_name: str):
        self._store = store
        self._accounts = accounts  # the accounts store: get_user -> {admin, deactivated}
        self.server_name = server_name
        rows = store.load()
        self._suspended = {user_id for user_id, suspended, _ in rows if suspended}
        self._locked = {user_id for user_id, _, locked in rows if locked}

    def is_suspended(self, user_id: str) -> bool:
        return user_id in self._suspended

    def is_locked(self, user_id: str) -> bool:
        return user_id in self._locked

    def check_not_locked(self, user_id: str) -> None:
        if user_id in self._locked:
            raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)

    def check_not_suspended(self, user_id: str) -> None:
        if user_id in self._suspended:
            raise MatrixError(403, "M_USER_SUSPENDED", "This account is suspended: it may not do this")

    async def _target(self, user_id: str) -> None:
        """Spec: 400 M_INVALID_PARAM for a user of another server, 404 M_NOT_FOUND for an unknown or
        deactivated one."""
        if not is_valid_user_id(user_id) or domain_of(user_id) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "The user is not a user of this server")
        account = await self._accounts.get_user(user_id)
        if account is None or account["deactivated"]:
            raise not_found("User not found")

    async def status(self, user_id: str, what: str) -> dict:
        """GET /admin/suspend/{userId} (``what`` "suspended") or /admin/lock/{userId} ("locked")."""
        await self._target(user_id)
        return {what: user_id in (self._suspended if what == "suspended" else self._locked)}

    async def set_status(self, admin_id: str, user_id: str, what: str, value) -> dict:
        """PUT /admin/suspend/{userId} or /admin/lock/{userId}, by a server admin."""
        if not isinstance(value, bool):
            raise MatrixError(400, "M_BAD_JSON", f"{what} must be a boolean")
        await self._target(user_id)
        if user_id == admin_id:
            raise forbidden(f"You may not change whether your own account is {what}")
        if (await self._accounts.get_user(user_id))["admin"]:
            raise forbidden(f"You may not change whether another server admin is {what}")
        await self.set(user_id, **{what: value})
        return {what: value}

    async def set(self, user_id: str, *, suspended: bool | None = None, locked: bool | None = None) -> None:
        """Suspend or lock (True), lift either (False), leave it as it is (None); stored, then in force."""
        suspended = user_id in self._suspended if suspended is None else suspended
        locked = user_id in self._locked if locked is None else locked
        await self._store.put(user_id, suspended, locked)
        for accounts, on in ((self._suspended, suspended), (self._locked, locked)):
            accounts.add(user_id) if on else accounts.discard(user_id)
