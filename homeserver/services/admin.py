"""What Synapse's admin API does, for the tools admins already use (synapse-admin, scripts).

Users (list, query, create and modify, deactivate with erase, reset password, login as a user, devices, whois,
shadow ban, rate-limit overrides), rooms (list and search, details, members, state, messages, block, delete
with purge, make room admin, forward extremities) and federation destinations (retry state, reset the
backoff), in the shapes of Synapse's ``docs/admin_api`` (user_admin_api.md, rooms.md, federation.md). Callers
are server admins: the API layer checks that. Every change is written to the audit trail by the API layer.
"""

from __future__ import annotations

import logging
import math
import secrets
import string
from dataclasses import dataclass
from typing import Any

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.auth_rules import get_power_level
from homeserver.events.identifiers import domain_of
from homeserver.requester import Requester
from homeserver.services.auth import random_string
from homeserver.services.room_events.local import EventSpec
from homeserver.storage.admin import USER_ORDER

logger = logging.getLogger(__name__)

# order_by values of GET /_synapse/admin/v1/rooms (Synapse's deprecated aliases included), largest first for counts.
ROOM_ORDER = {
    "name": ("name", False), "alphabetical": ("name", False), "canonical_alias": ("canonical_alias", False),
    "joined_members": ("joined_members", True), "size": ("joined_members", True),
    "joined_local_members": ("joined_local_members", True), "version": ("version", True),
    "creator": ("creator", False), "encryption": ("encryption", False), "federatable": ("federatable", True),
    "public": ("public", True), "join_rules": ("join_rules", False), "guest_access": ("guest_access", False),
    "history_visibility": ("history_visibility", False), "state_events": ("state_events", True),
}


@dataclass(frozen=True)
class UserFilter:
    """The filters of GET /_synapse/admin/v2/users."""

    user_id: str | None = None
    name: str | None = None
    guests: bool = True
    admins: bool | None = None
    deactivated: bool = False
    order_by: str = "name"
    backwards: bool = False


DESTINATION_ORDER = ("destination", "retry_last_ts", "retry_interval", "failure_ts",
                     "last_successful_stream_ordering")


def room_json(summary: dict) -> dict:
    """A room of GET /_synapse/admin/v1/rooms from :meth:`AdminStore.rooms_summary`'s entry."""
    state = summary["state"]
    create = state.get("m.room.create", {})
    return {
        "room_id": summary["room_id"], "name": state.get("m.room.name", {}).get("name"),
        "canonical_alias": state.get("m.room.canonical_alias", {}).get("alias"),
        "joined_members": summary["joined_members"], "joined_local_members": summary["joined_local_members"],
        "version": summary["version"], "creator": summary["creator"] or create.get("creator"),
        "encryption": state.get("m.room.encryption", {}).get("algorithm"),
        "federatable": create.get("m.federate", True) is not False, "public": summary["public"],
        "join_rules": state.get("m.room.join_rules", {}).get("join_rule"),
        "guest_access": state.get("m.room.guest_access", {}).get("guest_access"),
        "history_visibility": state.get("m.room.history_visibility", {}).get("history_visibility"),
        "state_events": summary["state_events"], "room_type": create.get("type"),
    }


def select_rooms(rooms: list[dict], *, search_term: str | None, order_by: str, backwards: bool,
                 public: bool | None, empty: bool | None) -> list[dict]:
    """Synapse's filters and order for the room list: the term in the name, the alias's localpart or the room
    id; ties (and rooms without the field) by room id."""
    if order_by not in ROOM_ORDER:
        raise invalid_param(f"Unknown value for order_by: {order_by}")
    field, largest_first = ROOM_ORDER[order_by]
    chosen = []
    for room in rooms:
        if public is not None and room["public"] != public:
            continue
        if empty is not None and (room["joined_members"] == 0) != empty:
            continue
        if search_term:
            alias_local = (room["canonical_alias"] or "")[1:].split(":", 1)[0]
            if search_term.lower() not in (room["name"] or "").lower() \
                    and search_term.lower() not in alias_local.lower() and search_term not in room["room_id"]:
                continue
        chosen.append(room)
    chosen.sort(key=lambda r: r["room_id"])
    present = [r for r in chosen if r[field] is not None]
    present.sort(key=lambda r: r[field], reverse=largest_first)
    ordered = present + [r for r in chosen if r[field] is None]
    return ordered[::-1] if backwards else ordered


def page(items: list, offset: int, limit: int) -> tuple[list, int | None]:
    """The page at ``offset`` and the offset of the next one (None at the end)."""
    chosen = items[offset:offset + limit]
    return chosen, (offset + limit if offset + limit < len(items) else None)


class AdminService:
    def __init__(self, *, store, server_name: str, auth, registration, profiles, rooms, room_heads, appends, event_store,
                 serializer, sync, sender, ratelimit_overrides, clock, moderation, blocks, threepids=None,
                 identity=None):
        """``threepids``, ``identity``: the account's 3PIDs, unbound from identity servers on deactivation."""
        self._store = store  # homeserver.storage.admin.AdminStore
        self._blocks = blocks  # services.room_blocks.RoomBlocks
        self._threepids = threepids
        self._identity = identity
        self._moderation = moderation  # services.account_moderation.AccountModeration: suspended, locked
        self.server_name = server_name
        self._auth = auth
        self._registration = registration
        self._profiles = profiles
        self._rooms = rooms
        self._heads = room_heads
        self._appends = appends
        self._event_store = event_store
        self._serializer = serializer
        self._sync = sync
        self._sender = sender
        self._overrides = ratelimit_overrides  # services.ratelimit.RatelimitOverrides, shared with RateLimits
        self._clock = clock
        self._shadow_banned = store.shadow_banned_sync()

    def _local_user(self, user_id: str) -> str:
        if not user_id.startswith("@") or ":" not in user_id:
            raise invalid_param(f"Invalid user ID {user_id!r}")
        if domain_of(user_id) != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "Can only look up local users")
        return user_id

    async def _existing(self, user_id: str) -> dict:
        user = await self._store.get_user(self._local_user(user_id))
        if user is None:
            raise not_found("User not found")
        return user

    # -- users ---------------------------------------------------------------------------------------
    async def list_users(self, f: UserFilter, offset: int, limit: int) -> dict:
        """GET /_synapse/admin/v2/users."""
        if f.order_by not in USER_ORDER:
            raise invalid_param(f"Unknown value for order_by: {f.order_by}")
        users, total = await self._store.list_users(f, offset, limit)
        body: dict[str, Any] = {"users": users, "total": total}
        if offset + len(users) < total:
            body["next_token"] = str(offset + len(users))
        return body

    async def query_user(self, user_id: str) -> dict:
        """GET /_synapse/admin/v2/users/{userId}."""
        user = await self._existing(user_id)
        return dict(user, threepids=[], external_ids=[], appservice_id=None, consent_server_notice_sent=None,
                    consent_version=None, consent_ts=None, suspended=self._moderation.is_suspended(user_id),
                    locked=self._moderation.is_locked(user_id))

    async def upsert_user(self, user_id: str, body: dict) -> tuple[int, dict]:
        """PUT /_synapse/admin/v2/users/{userId}: 201 for a new user, 200 for a changed one."""
        self._local_user(user_id)
        password = body.get("password")
        if password is not None:
            self._auth.check_new_password(password)
        for key in ("admin", "deactivated", "logout_devices", "locked"):
            if key in body and not isinstance(body[key], bool):
                raise invalid_param(f"{key} must be a boolean")
        for key in ("displayname", "avatar_url"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise invalid_param(f"{key} must be a string")
        existing = await self._store.get_user(user_id)
        status = 200
        if existing is None:
            await self._registration.register(user_id[1:].split(":", 1)[0], password,
                                               admin=bool(body.get("admin", False)))
            status = 201
        else:
            if password is not None:
                await self.reset_password(user_id, password, body.get("logout_devices", True))
            if "admin" in body:
                await self._store.set_admin(user_id, body["admin"])
            if body.get("deactivated") is True and not existing["deactivated"]:
                await self.deactivate(user_id, erase=False)
            elif body.get("deactivated") is False and existing["deactivated"]:
                if password is None:
                    raise invalid_param("Must provide a password to re-activate an account.")
                await self._store.reactivate(user_id)
        for key in ("displayname", "avatar_url"):
            if key in body:
                await self._profiles.set_field(user_id, user_id, key, body[key] or None)
        if "locked" in body:
            await self._moderation.set(user_id, locked=body["locked"])
        return status, await self.query_user(user_id)

    async def deactivate(self, user_id: str, *, erase: bool) -> dict:
        """POST /_synapse/admin/v1/deactivate/{userId}: 3PIDs unbound and removed, leave every room, lose devices
        and password; with ``erase``, the profile too and the user marked erased."""
        await self._existing(user_id)
        unbound = True
        if self._threepids is not None and self._identity is not None:  # as the user's own deactivation
            threepids = [(t["medium"], t["address"]) for t in await self._threepids.list(user_id)]
            unbound = await self._identity.unbind_all(user_id, threepids)
        if erase:  # before the leaves, which move the streams: no read served meanwhile shows them unredacted
            await self.mark_erased(user_id)
        await self._rooms.leave_all_rooms(user_id)
        await self._auth.deactivate(user_id)
        if self._threepids is not None:
            await self._threepids.on_deactivated(user_id)
        return {"id_server_unbind_result": "success" if unbound else "no-support"}

    async def mark_erased(self, user_id: str) -> None:
        """Synapse's erasure (GDPR): the user's events are shown redacted to those who were not in the room
        when they were sent (services/sync.py ``visible_events``)."""
        await self._store.set_flag("erased_users", user_id, True)

    async def reset_password(self, user_id: str, new_password: str, logout_devices: bool = True) -> None:
        """POST /_synapse/admin/v1/reset_password/{userId}."""
        await self._existing(user_id)
        if not isinstance(new_password, str) or not new_password:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing new_password")
        await self._auth.set_password(Requester(user_id, None, ""), new_password, bool(logout_devices))

    async def devices(self, user_id: str) -> dict:
        await self._existing(user_id)
        devices = [dict(d, dehydrated=False) for d in await self._auth.list_devices(user_id)]
        return {"devices": devices, "total": len(devices)}

    async def device(self, user_id: str, device_id: str) -> dict:
        await self._existing(user_id)
        device = await self._auth.get_device(user_id, device_id)
        if device is None:
            raise not_found("Device not found")
        return device

    async def rename_device(self, user_id: str, device_id: str, display_name) -> None:
        await self.device(user_id, device_id)
        if display_name is not None:
            if not isinstance(display_name, str):
                raise invalid_param("display_name must be a string")
            await self._auth.rename_device(user_id, device_id, display_name)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        await self._existing(user_id)
        await self._auth.delete_devices(user_id, device_ids)

    async def joined_rooms(self, user_id: str) -> dict:
        rooms = await self._rooms.joined_rooms(user_id)
        return {"joined_rooms": rooms, "total": len(rooms)}

    async def memberships(self, user_id: str) -> dict:
        rooms = await self._event_store.rooms_for_user(user_id)
        return {"memberships": {room_id: membership for room_id, (membership, _, _) in rooms.items()}}

    async def is_admin(self, user_id: str) -> dict:
        return {"admin": (await self._existing(user_id))["admin"]}

    async def set_admin(self, admin_id: str, user_id: str, admin) -> None:
        """PUT /_synapse/admin/v1/users/{userId}/admin: not one's own."""
        if not isinstance(admin, bool):
            raise MatrixError(400, "M_MISSING_PARAM", "Missing or invalid admin flag")
        await self._existing(user_id)
        if user_id == admin_id and not admin:
            raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself.")
        await self._store.set_admin(user_id, admin)

    async def whois(self, user_id: str) -> dict:
        """GET /_synapse/admin/v1/whois/{userId}: each device's last connection."""
        await self._existing(user_id)
        devices = {}
        for device_id, ip, last_seen in await self._store.sessions(user_id):
            connections = [{"ip": ip, "last_seen": last_seen, "user_agent": None}] if ip or last_seen else []
            devices[device_id] = {"sessions": [{"connections": connections}]}
        return {"user_id": user_id, "devices": devices}

    async def login_as(self, admin_id: str, user_id: str, valid_until_ms: int | None) -> dict:
        """POST /_synapse/admin/v1/users/{userId}/login: a token for the user, on no device of theirs (it ends
        with /logout, as in Synapse)."""
        if user_id == admin_id:
            raise MatrixError(400, "M_UNKNOWN", "Cannot use admin API to login as self")
        user = await self._existing(user_id)
        if user["deactivated"]:
            raise forbidden("The user is deactivated")
        if valid_until_ms is not None:  # access tokens do not expire here yet: refuse rather than ignore it
            raise invalid_param("valid_until_ms is not supported: tokens given by this API never expire")
        token = "syt_" + random_string(40)
        await self._store.add_token(user_id, token, self._auth.now_ms())
        return {"access_token": token}

    async def shadow_ban(self, user_id: str, on: bool) -> None:
        await self._existing(user_id)
        await self._store.set_flag("shadow_banned_users", user_id, on)
        (self._shadow_banned.add if on else self._shadow_banned.discard)(user_id)

    def shadow_banned_event_id(self, user_id: str) -> str | None:
        """For a shadow-banned user's message or invite: the made-up event id answered instead of sending it
        (Synapse's shadow ban: their requests look successful, nothing reaches the room). None otherwise."""
        if user_id not in self._shadow_banned:
            return None
        return "$" + random_string(43, string.ascii_letters + string.digits + "-_")

    async def ratelimit_override(self, user_id: str) -> dict:
        await self._existing(user_id)
        override = self._overrides.get(user_id)
        return {} if override is None else {"messages_per_second": override[0], "burst_count": override[1]}

    async def set_ratelimit_override(self, user_id: str, body: dict | None) -> dict:
        """POST (``body``) or DELETE (None) /_synapse/admin/v1/users/{userId}/override_ratelimit."""
        await self._existing(user_id)
        override = None
        if body is not None:
            values = [body.get(k, 0) for k in ("messages_per_second", "burst_count")]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
                raise invalid_param("messages_per_second and burst_count must be integers >= 0")
            override = (values[0], values[1])
        await self._store.set_ratelimit_override(user_id, override)
        self._overrides.set(user_id, override)
        return {} if override is None else {"messages_per_second": override[0], "burst_count": override[1]}

    # -- rooms ---------------------------------------------------------------------------------------
    async def list_rooms(self, *, search_term: str | None, order_by: str, backwards: bool, offset: int,
                         limit: int, public: bool | None, empty: bool | None) -> dict:
        """GET /_synapse/admin/v1/rooms."""
        rooms = [room_json(s) for s in await self._store.rooms_summary(self.server_name)]
        chosen = select_rooms(rooms, search_term=search_term, order_by=order_by, backwards=backwards,
                              public=public, empty=empty)
        rooms_page, next_offset = page(chosen, offset, limit)
        body: dict[str, Any] = {"rooms": rooms_page, "offset": offset, "total_rooms": len(chosen)}
        if next_offset is not None:
            body["next_batch"] = next_offset
        if offset > 0:
            body["prev_batch"] = max(0, offset - limit)
        return body

    async def _summary(self, room_id: str) -> dict:
        found = await self._store.rooms_summary(self.server_name, room_id)
        if not found:
            raise not_found("Room not found")
        return found[0]

    async def room_details(self, room_id: str) -> dict:
        summary = await self._summary(room_id)
        members = [u for u in await self._event_store.joined_members(room_id) if domain_of(u) == self.server_name]
        devices = 0
        for user_id in members:
            devices += len(await self._auth.list_devices(user_id))
        state = summary["state"]
        return dict(room_json(summary), topic=state.get("m.room.topic", {}).get("topic"),
                    avatar=state.get("m.room.avatar", {}).get("url"), joined_local_devices=devices,
                    forgotten=False)

    async def members(self, room_id: str) -> dict:
        await self._summary(room_id)
        members = sorted(await self._event_store.joined_members(room_id))
        return {"members": members, "total": len(members)}

    async def state(self, room_id: str, event_type: str | None) -> dict:
        await self._summary(room_id)
        events = [e for e in (await self._heads.current_state(room_id)).values()
                  if event_type is None or e.type == event_type]
        return {"state": await self._serializer.serialize(events, None, bundle=False)}

    async def messages(self, room_id: str, *, from_token: str | None, backwards: bool, limit: int) -> dict:
        """GET /_synapse/admin/v1/rooms/{roomId}/messages: every event, whatever the history visibility."""
        await self._summary(room_id)
        current = self._heads.stream.current()
        start = current if from_token is None and backwards else 0 if from_token is None \
            else min(self._sync.parse_token(from_token)["events"], current)
        end_bound = 0 if backwards else current
        batch = await self._event_store.room_events_between(room_id, start, end_bound, limit + 1,
                                                            backwards=backwards)
        chunk = batch[:limit]
        body = {"chunk": await self._serializer.serialize(chunk, None), "start": self._token(start)}
        if len(batch) > limit:
            last = chunk[-1].stream_ordering
            body["end"] = self._token(last - 1 if backwards else last)
        return body

    def _token(self, position: int) -> str:
        return self._sync.encode_token(dict(self._sync.current_positions(), events=position))

    async def block_room(self, room_id: str, admin_id: str, block: bool) -> dict:
        await self._blocks.block(room_id, admin_id if block else None)
        return {"block": block}

    async def room_block(self, room_id: str) -> dict:
        by = await self._blocks.blocked_by(room_id)
        return {"block": True, "user_id": by} if by is not None else {"block": False}

    async def delete_room(self, admin_id: str, room_id: str, *, block: bool, purge: bool) -> dict:
        """DELETE /_synapse/admin/v1|v2/rooms/{roomId}: every local member leaves; then, as asked, the room is
        blocked and its events and state purged. Done before answering; the result is kept under a
        delete id (GET .../delete_status)."""
        if not room_id.startswith("!"):
            raise invalid_param(f"{room_id} is not a room ID")
        if block:
            await self._blocks.block(room_id, admin_id)
        kicked, failed = [], []
        if await self._heads.room_version(room_id) is not None:
            for user_id in await self._event_store.joined_members(room_id):
                if domain_of(user_id) != self.server_name:
                    continue
                try:
                    await self._rooms.set_membership(room_id, user_id, user_id, "leave")
                    kicked.append(user_id)
                except MatrixError as e:
                    logger.warning("Could not remove %s from %s: %s", user_id, room_id, e.error)
                    failed.append(user_id)
        aliases = await self._store.local_aliases(room_id)
        if purge:
            await self._store.purge_room(room_id)
        result = {"kicked_users": kicked, "failed_to_kick_users": failed, "local_aliases": aliases,
                  "new_room_id": None}
        delete_id = "".join(secrets.choice(string.ascii_letters) for _ in range(16))
        await self._store.record_deletion(delete_id, room_id, "complete", result)
        return {"delete_id": delete_id, **result}

    async def delete_status(self, *, room_id: str | None = None, delete_id: str | None = None) -> list[dict]:
        found = await self._store.deletions(room_id=room_id, delete_id=delete_id)
        if not found:
            raise not_found("No delete task for room" if room_id else "delete id not found")
        return found

    async def deletions_of_room(self, room_id: str) -> dict:
        """GET /_synapse/admin/v2/rooms/{roomId}/delete_status."""
        return {"results": await self.delete_status(room_id=room_id)}

    async def make_room_admin(self, room_id: str, user_id: str) -> None:
        """POST /_synapse/admin/v1/rooms/{roomIdOrAlias}/make_room_admin: the local member of highest power
        gives ``user_id`` (local) that power, inviting and joining them first if needed."""
        self._local_user(user_id)
        levels_event = await self._heads.current_state_event(room_id, "m.room.power_levels")
        if levels_event is None:
            raise MatrixError(400, "M_UNKNOWN", "No power levels in the room")
        levels = dict(levels_event.content)
        users = dict(levels.get("users") or {})
        local = [u for u in await self._event_store.joined_members(room_id) if domain_of(u) == self.server_name]
        if not local:
            raise MatrixError(400, "M_UNKNOWN", "No local member of the room can give power")
        version = await self._heads.room_version(room_id)
        create = await self._heads.current_state_event(room_id, "m.room.create")
        power_of = {u: get_power_level(version, create.pdu if create else None, levels_event.pdu, u) for u in local}
        granter = max(local, key=power_of.__getitem__)
        # A v12 creator's power is infinite: the highest finite level in the room, at least 100, is given.
        power = power_of[granter] if math.isfinite(power_of[granter]) else \
            max([100, *(v for v in users.values() if isinstance(v, int))])
        if await self._heads.membership(room_id, user_id) != "join":
            join_rule = await self._heads.current_state_event(room_id, "m.room.join_rules")
            if join_rule is None or join_rule.content.get("join_rule") != "public":
                await self._rooms.set_membership(room_id, granter, user_id, "invite")
            await self._rooms.set_membership(room_id, user_id, user_id, "join")
        users[user_id] = power
        levels["users"] = users
        await self._appends.send(room_id, EventSpec(granter, "m.room.power_levels", levels, ""))

    async def forward_extremities(self, room_id: str) -> dict:
        await self._summary(room_id)
        results = await self._store.forward_extremities(room_id)
        return {"count": len(results), "results": results}

    # -- federation ----------------------------------------------------------------------------------
    async def destinations(self, *, name: str | None, order_by: str, backwards: bool, offset: int,
                           limit: int) -> dict:
        """GET /_synapse/admin/v1/federation/destinations."""
        if order_by not in DESTINATION_ORDER:
            raise invalid_param(f"Unknown value for order_by: {order_by}")
        found = [d for d in await self.federation_queues() if name is None or name in d["destination"]]
        found.sort(key=lambda d: (d[order_by] is None, d[order_by] or 0, d["destination"]))
        if backwards:
            found.reverse()
        chosen, next_offset = page(found, offset, limit)
        body: dict[str, Any] = {"destinations": chosen, "total": len(found)}
        if next_offset is not None:
            body["next_token"] = str(next_offset)
        return body

    async def federation_queues(self) -> list[dict]:
        """Every destination with its queue length and retry state (the admin API and the metrics page)."""
        return [self._with_last_success(d) for d in await self._store.destinations()]

    def _with_last_success(self, destination: dict) -> dict:
        """Hexagone's fields beside Synapse's: the last accepted transaction's time and round trip (ms), since
        this process started (None before)."""
        last = self._sender.last_success(destination["destination"])
        return {**destination, "last_success_ts": last[0] if last else None, "latency_ms": last[1] if last else None}

    async def destination(self, destination: str) -> dict:
        found = [self._with_last_success(d) for d in await self._store.destinations(destination)]
        if not found:
            raise not_found("Unknown destination")
        return found[0]

    async def reset_destination(self, destination: str) -> None:
        """POST .../destinations/{destination}/reset_connection: forget the backoff, send what is queued."""
        await self.destination(destination)
        await self._store.reset_destination(destination)
        self._sender.wake(destination)
