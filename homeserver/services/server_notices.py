"""Server notices (spec v1.19 client-server "Server Notices"; Synapse's ``server_notices`` configuration and
``docs/admin_api/server_notices.md``).

A server admin sends a notice to a local user; it is sent by the system user
(``server_notices.system_mxid_localpart``, created on first use, without a password) into the user's notices
room: one room per user, created on the first notice and again when the user has left it, tagged
``m.server_notice`` in the user's account data, the user invited (joined with ``auto_join``). The user's power
level there (``users_default`` -10) is below what sending any event needs, so they can only read and leave.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from homeserver.errors import MatrixError, not_found
from homeserver.events.identifiers import domain_of
from homeserver.services.room_events.local import EventSpec

TAG = "m.server_notice"
USER_POWER_LEVEL = -10  # below events_default (0): the user cannot post, invite or change state


@dataclass(frozen=True)
class NoticesConfig:
    """The ``server_notices`` keys."""

    system_mxid_localpart: str | None
    system_mxid_display_name: str | None
    system_mxid_avatar_url: str | None
    room_name: str | None
    room_avatar_url: str | None
    room_topic: str | None
    auto_join: bool

    @classmethod
    def of(cls, config) -> "NoticesConfig":
        return cls(**{name: getattr(config, f"server_notices_{name}") for name in cls.__dataclass_fields__})


class ServerNotices:
    def __init__(self, *, config: NoticesConfig, server_name: str, store, accounts, registration, profiles, rooms,
                 room_heads, appends, account_data):
        self._config = config
        self._server_name = server_name
        self._store = store  # homeserver.storage.server_notices.ServerNoticeStore
        self._accounts = accounts
        self._registration = registration
        self._profiles = profiles
        self._rooms = rooms
        self._heads = room_heads
        self._appends = appends
        self._account_data = account_data
        self._lock = defer.DeferredLock()  # one notices room per user, one system user

    @property
    def system_user(self) -> str | None:
        localpart = self._config.system_mxid_localpart
        return None if localpart is None else f"@{localpart}:{self._server_name}"

    async def send(self, user_id: str, event_type: str, content: dict, state_key: str | None,
                   txn: tuple[str, str, str] | None) -> str:
        """POST/PUT /_synapse/admin/v1/send_server_notice: the event id of the notice sent to ``user_id``."""
        system = self.system_user
        if system is None:
            raise MatrixError(400, "M_UNKNOWN", "Server notices are not enabled on this server")
        if not isinstance(user_id, str) or domain_of(user_id) != self._server_name:
            raise MatrixError(400, "M_UNKNOWN", "Server notices can only be sent to local users")
        if not await self._accounts.user_exists(user_id):
            raise not_found("User not found")
        async with self._lock:
            await self._ensure_system_user(system)
            room_id = await self._room_for(user_id, system)
        event = await self._appends.send(room_id, EventSpec(system, event_type, content, state_key, txn=txn))
        return event.event_id

    async def _ensure_system_user(self, system: str) -> None:
        if not await self._accounts.user_exists(system):
            await self._registration.register(self._config.system_mxid_localpart, None)
        profile = await self._profiles.member_content(system)
        for key, wanted in (("displayname", self._config.system_mxid_display_name),
                            ("avatar_url", self._config.system_mxid_avatar_url)):
            if wanted is not None and profile.get(key) != wanted:
                await self._profiles.set_field(system, system, key, wanted)

    async def _room_for(self, user_id: str, system: str) -> str:
        """The user's notices room, a new one if they have none they are invited to or joined."""
        room_id = await self._store.room_of(user_id)
        if room_id is not None and await self._heads.membership(room_id, user_id) in ("invite", "join"):
            return room_id
        body: dict = {"preset": "private_chat", "power_level_content_override": {"users_default": USER_POWER_LEVEL},
                      "invite": [user_id]}
        for key, value in (("name", self._config.room_name), ("topic", self._config.room_topic)):
            if value is not None:
                body[key] = value
        if self._config.room_avatar_url is not None:
            body["initial_state"] = [{"type": "m.room.avatar", "state_key": "",
                                      "content": {"url": self._config.room_avatar_url}}]
        room_id = await self._rooms.create_room(system, body)
        await self._account_data.set_tag(user_id, room_id, TAG, {})
        if self._config.auto_join:
            await self._rooms.set_membership(room_id, user_id, user_id, "join")
        await self._store.set_room(user_id, room_id)
        return room_id
