"""Profiles (client-server "Profiles"): set, read, and propagated to member events."""

from __future__ import annotations

import logging

from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.services.room_events import EventSpec, RoomEventService
from homeserver.storage.accounts import AccountStore
from homeserver.storage.events import EventStore

logger = logging.getLogger(__name__)

PROFILE_FIELDS = ("displayname", "avatar_url")
MAX_DISPLAYNAME = 256
MAX_AVATAR_URL = 1000


class ProfileService:
    def __init__(self, *, accounts: AccountStore, events: EventStore, room_events: RoomEventService,
                 server_name: str, appservices):
        self._accounts = accounts
        self._appservices = appservices
        self._events = events
        self.room_events = room_events
        self.server_name = server_name

    async def get(self, user_id: str) -> dict:
        """A local user's profile (asked of an application service first, see :meth:`local_profile`)."""
        profile = await self.local_profile(user_id)
        if profile is None:
            raise not_found("Profile not found")
        return profile

    async def local_profile(self, user_id: str) -> dict | None:
        """A local user's profile, None for no such user; an unknown user in an application service's
        namespace is first asked of the appservice (application service API GET /users/{userId}), which
        may create it."""
        profile = await self._accounts.get_profile(user_id)
        if profile is None and await self._appservices.query_user(user_id):
            profile = await self._accounts.get_profile(user_id)
        return profile

    async def lookup(self, user_id: str, remote=None) -> dict:
        """Spec GET /profile/{userId}: a local profile, or a remote one through ``remote`` (the
        federation's RemoteQueries; None when federation is off)."""
        if ":" not in user_id or user_id.split(":", 1)[1] == self.server_name or remote is None:
            return await self.get(user_id)
        return await remote.profile(user_id)

    async def shares_room(self, user_id: str, other_id: str) -> bool:
        """Whether the two users are both in some room (``limit_profile_requests_to_users_who_share_rooms``)."""
        return other_id in await self._events.users_sharing_rooms(user_id)

    async def member_content(self, user_id: str) -> dict:
        """displayname / avatar_url to put in the user's member events."""
        return await self._accounts.get_profile(user_id) or {}

    async def set_field(self, requester_id: str, user_id: str, field: str, value) -> None:
        """Spec PUT /profile/{userId}/{keyName}; then update each joined room's member event."""
        if requester_id != user_id:
            raise forbidden("You may only change your own profile")
        if field not in PROFILE_FIELDS:
            raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown profile field {field}")
        if value is not None and not isinstance(value, str):
            raise bad_json(f"{field} must be a string")
        limit = MAX_DISPLAYNAME if field == "displayname" else MAX_AVATAR_URL
        if value is not None and len(value) > limit:
            raise MatrixError(400, "M_TOO_LARGE", f"{field} is too long")
        await self._accounts.set_profile_field(user_id, field, value or None)
        await self._propagate(user_id)

    async def _propagate(self, user_id: str) -> None:
        profile = await self.member_content(user_id)
        rooms = await self._events.rooms_for_user(user_id)
        for room_id, (membership, _, _) in rooms.items():
            if membership != "join":
                continue
            current = await self.room_events.current_state_event(room_id, "m.room.member", user_id)
            content = {k: v for k, v in (current.content if current else {}).items() if k not in PROFILE_FIELDS}
            content.update(profile, membership="join")
            try:
                await self.room_events.send(room_id, EventSpec(user_id, "m.room.member", content, user_id))
            except MatrixError as e:
                logger.warning("Could not update profile in %s: %s", room_id, e.error)
