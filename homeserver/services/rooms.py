"""Room creation and membership (client-server "Creation", "Room membership", "Room upgrades")."""

from __future__ import annotations

import copy
import logging
from typing import Protocol

from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.events.identifiers import domain_of, is_valid_user_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.services.restricted_joins import RestrictedJoins
from homeserver.services.room_events.gate import JoinGate
from homeserver.services.room_events.heads import RoomHeads
from homeserver.services.room_events.local import EventSpec, LocalAppends
from homeserver.storage.events import EventStore

logger = logging.getLogger(__name__)


PRESETS = {
    "private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join",
                     "invitees_admin": False},
    "trusted_private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join",
                             "invitees_admin": True},
    "public_chat": {"join_rule": "public", "history_visibility": "shared", "guest_access": None,
                    "invitees_admin": False},
}


def default_power_levels(creator: str, version: RoomVersion, invitees_admin: list[str]) -> dict:
    users = {} if version.creators_infinite_power else {creator: 100}
    for invitee in invitees_admin:
        users[invitee] = 100
    return {
        "users": users, "users_default": 0,
        "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                   "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                   "m.room.server_acl": 100, "m.room.encryption": 100},
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
        "notifications": {"room": 50},
    }


class JoinLimits(Protocol):
    """``rc_joins`` and ``rc_joins_per_room`` (``services/ratelimit.py``)."""

    def join(self, user_id: str, room_id: str, *, remote: bool) -> None: ...


class RoomService:
    def __init__(self, *, room_heads: RoomHeads, appends: LocalAppends, join_gate: JoinGate, store: EventStore,
                 profiles, server_name: str, default_room_version: str, restricted_joins: RestrictedJoins,
                 federation=None, directory=None, join_limits: JoinLimits | None = None, blocked_by=None,
                 access_rules=None, account_data=None):
        """``federation`` (``federation.service.Federation``): joins, leaves and knocks through other servers;
        ``blocked_by(room_id)``: the admin who blocked the room (admin API), None if it is not blocked;
        ``access_rules`` (``services/access_rules.py``): checks joins and invites."""
        self._heads = room_heads
        self._account_data = account_data  # an upgrade carries the upgrader's tags and m.direct over
        self._appends = appends
        self._join_gate = join_gate
        self._blocked_by = blocked_by
        self._access_rules = access_rules
        self._join_limits = join_limits
        self._store = store
        self._profiles = profiles
        self.server_name = server_name
        self.default_room_version = default_room_version
        self.directory = directory
        self._restricted_joins = restricted_joins
        self.federation = federation

    # -- creation -------------------------------------------------------------------------
    async def create_room(self, creator: str, body: dict, room_id: str | None = None) -> str:
        """Spec POST /createRoom: the events are sent in the order the spec lists (``room_id``: the id an
        upgrade chose beforehand)."""
        version_id = body.get("room_version", self.default_room_version)
        if not isinstance(version_id, str):  # a number is not a room version: a malformed body (as Synapse)
            raise bad_json("room_version must be a string")
        if version_id not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version_id!r}")
        version = KNOWN_ROOM_VERSIONS[version_id]
        preset_name = body.get("preset") or ("public_chat" if body.get("visibility") == "public" else "private_chat")
        if preset_name not in PRESETS:
            raise bad_json(f"Unknown preset {preset_name!r}")
        preset = PRESETS[preset_name]
        invitees = list(dict.fromkeys(i for i in _string_list(body, "invite") if i != creator))
        if not all(is_valid_user_id(i) for i in invitees):
            raise MatrixError(400, "M_INVALID_PARAM", "invite must list user IDs")
        invites_3pid = body.get("invite_3pid", [])
        if not isinstance(invites_3pid, list) or not all(isinstance(i, dict) for i in invites_3pid):
            raise bad_json("invite_3pid must be a list of objects")
        if invites_3pid:  # the caller sends them once the room exists (services/third_party_invites.py)
            raise MatrixError(400, "M_SERVER_NOT_TRUSTED", "Third-party invites are sent after creation")
        alias = await self._check_alias(body.get("room_alias_name"), creator)
        creation_content = body.get("creation_content") or {}
        if not isinstance(creation_content, dict):
            raise bad_json("creation_content must be an object")
        create_content = dict(creation_content, room_version=version_id)
        if not version.implicit_room_creator:
            create_content["creator"] = creator
        if version.creators_infinite_power and preset_name == "trusted_private_chat":
            # Spec: combine creation_content's additional_creators with the invitees, deduplicated.
            listed = _string_list(create_content, "additional_creators")
            create_content["additional_creators"] = list(dict.fromkeys(listed + invitees))
        profile = await self._profiles.member_content(creator)
        specs = [EventSpec(creator, "m.room.member", dict(profile, membership="join"), creator)]
        pl = default_power_levels(creator, version,
                                  invitees if preset["invitees_admin"] and not version.creators_infinite_power else [])
        override = body.get("power_level_content_override")
        if override is not None:
            if not isinstance(override, dict):
                raise bad_json("power_level_content_override must be an object")
            pl.update(copy.deepcopy(override))
        specs.append(EventSpec(creator, "m.room.power_levels", pl, ""))
        if alias is not None:
            specs.append(EventSpec(creator, "m.room.canonical_alias", {"alias": alias}, ""))
        initial = self._initial_state(creator, body.get("initial_state"))
        given = {(spec.type, spec.state_key) for spec in initial}
        # Spec: initial_state takes precedence over the preset; as Synapse, the preset's event is then not sent.
        for event_type, content in (("m.room.join_rules", {"join_rule": preset["join_rule"]}),
                                    ("m.room.history_visibility",
                                     {"history_visibility": preset["history_visibility"]}),
                                    ("m.room.guest_access", {"guest_access": preset["guest_access"]})):
            if (event_type, "") not in given and next(iter(content.values())):
                specs.append(EventSpec(creator, event_type, content, ""))
        specs += initial
        for key, event_type in (("name", "m.room.name"), ("topic", "m.room.topic")):
            if key in body:
                if not isinstance(body[key], str):
                    raise bad_json(f"{key} must be a string")
                content = {key: body[key]}
                if key == "topic":  # spec: a text/plain m.topic block too (v1.15)
                    content["m.topic"] = {"m.text": [{"body": body[key], "mimetype": "text/plain"}]}
                specs.append(EventSpec(creator, event_type, content, ""))
        create = EventSpec(creator, "m.room.create", create_content, "")
        room_id, _ = await self._appends.create_room(version, create, specs, room_id,
                                                    is_public=body.get("visibility") == "public")
        if alias is not None:
            await self.directory.create_alias(alias, room_id, creator)
        # Invites last, once the room's state is stored: a remote invitee's server co-signs its invite
        # (PUT /v2/invite with the stripped state), as for POST /rooms/{roomId}/invite.
        direct = {"is_direct": True} if body.get("is_direct") else None
        for invitee in invitees:
            await self.invite(room_id, creator, invitee, extra=direct)
        return room_id

    def _initial_state(self, creator: str, initial_state) -> list[EventSpec]:
        if initial_state is None:
            return []
        if not isinstance(initial_state, list):
            raise bad_json("initial_state must be a list")
        specs = []
        for item in initial_state:
            if not isinstance(item, dict) or not isinstance(item.get("type"), str) \
                    or not isinstance(item.get("content"), dict):
                raise bad_json("initial_state entries need a type and a content object")
            state_key = item.get("state_key", "")
            if not isinstance(state_key, str):
                raise bad_json("initial_state state_key must be a string")
            if item["type"] == "m.room.member":
                raise bad_json("initial_state may not contain membership events")
            specs.append(EventSpec(creator, item["type"], item["content"], state_key))
        return specs

    async def _check_alias(self, name, creator: str) -> str | None:
        if name is None:
            return None
        if not isinstance(name, str) or not name or ":" in name or " " in name:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room_alias_name")
        alias = f"#{name}:{self.server_name}"
        if self.directory is not None:
            self.directory.check_alias_free(alias, creator)
            if await self.directory.resolve_local(alias, ask_appservices=False) is not None:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        return alias

    # -- membership -------------------------------------------------------------------------
    async def set_membership(self, room_id: str, sender: str, target: str, membership: str,
                             reason: str | None = None, extra: dict | None = None,
                             servers: list[str] | None = None) -> str:
        """Send an m.room.member event; the room version's auth rules decide whether it is allowed.

        Rooms this server is not in go through a resident server (join, knock, leave); invites of
        users of other servers are co-signed by their server. Returns the event id.
        """
        await self._join_gate.settled(room_id)  # a join still completing here decides what comes next
        version = await self._heads.room_version(room_id)
        content: dict = {"membership": membership}
        if membership in ("join", "knock") or (membership == "invite" and target == sender):
            content.update(await self._profiles.member_content(target))
        if reason is not None:
            if not isinstance(reason, str):
                raise bad_json("reason must be a string")
            content["reason"] = reason
        if extra:
            content.update(extra)
        if version is None or not await self.is_resident(room_id):
            return await self._remote_membership(room_id, sender, target, membership, content, servers or [])
        current = await self._heads.current_state_event(room_id, "m.room.member", target)
        if membership == "join":
            if current is not None and current.content.get("membership") == "join" \
                    and all(current.content.get(k) == v for k, v in content.items()):
                return current.event_id  # already joined: joining again is a no-op
            authoriser = await self._restricted_joins.authoriser(room_id, version, target)
            if authoriser is not None:
                content["join_authorised_via_users_server"] = authoriser
        spec = EventSpec(sender, "m.room.member", content, target)
        if membership == "invite" and self.federation is not None and not self._is_local(target):
            spec.countersign = lambda pdu: self.federation.membership.invite_remote(room_id, pdu, version)
        return (await self._appends.send(room_id, spec)).event_id

    async def is_resident(self, room_id: str) -> bool:
        """This server is in the room (it has the room's latest events), so a join needs no other server."""
        return bool(await self._heads.forward_extremities(room_id))

    def _is_local(self, user_id: str) -> bool:
        return ":" in user_id and domain_of(user_id) == self.server_name

    async def _remote_membership(self, room_id: str, sender: str, target: str, membership: str, content: dict,
                                 servers: list[str]) -> str:
        if self.federation is None or sender != target or membership not in ("join", "leave", "knock"):
            raise not_found("Unknown room") if membership != "join" else forbidden("Unknown room")
        current = await self._heads.current_state_event(room_id, "m.room.member", target)
        candidates = list(servers)
        if current is not None:  # the server that invited us, or that we knocked through
            candidates.append(domain_of(current.sender))
        if ":" in room_id:
            candidates.append(domain_of(room_id))
        if membership == "leave" and (current is None or current.content.get("membership") not in ("invite", "knock")):
            raise not_found("You are not in this room")
        if membership == "leave" and not await self.is_resident(room_id):
            # Rejecting an invite (or withdrawing a knock) through the room's servers; failing that, as
            # Synapse, a leave made and kept here alone.
            try:
                if candidates:
                    return await self.federation.membership.remote_membership(target, room_id, candidates, "leave",
                                                                              content)
            except MatrixError as e:
                logger.info("Rejecting %s remotely failed (%s): rejecting it locally", room_id, e.error)
            return await self.federation.membership.reject_locally(room_id, target, current)
        if not candidates:
            raise not_found("No known servers for this room")
        return await self.federation.membership.remote_membership(target, room_id, candidates, membership, content)

    async def invite(self, room_id: str, sender: str, target: str, reason: str | None = None,
                     extra: dict | None = None) -> None:
        """Spec POST /rooms/{roomId}/invite: not someone already joined or banned (``extra``: createRoom's
        ``is_direct``)."""
        current = await self._heads.membership(room_id, target)
        if current == "join":
            raise forbidden("The user is already in the room")
        if current == "ban":
            raise forbidden("The user is banned from the room")
        if self._is_local(target):
            await self._profiles.local_profile(target)  # an appservice's user may be created on demand
        if self._access_rules is not None:
            await self._access_rules.check_membership(room_id, sender, target, "invite")
        await self.set_membership(room_id, sender, target, "invite", reason, extra)

    async def kick(self, room_id: str, sender: str, target: str, reason: str | None = None) -> None:
        """Spec POST /rooms/{roomId}/kick: only someone joined, invited or knocking."""
        if await self._heads.membership(room_id, target) not in ("join", "invite", "knock"):
            raise forbidden("The user is not in the room")
        await self.set_membership(room_id, sender, target, "leave", reason)

    async def ban(self, room_id: str, sender: str, target: str, reason: str | None = None) -> None:
        """Spec POST /rooms/{roomId}/ban (the auth rules check the sender's power)."""
        await self.set_membership(room_id, sender, target, "ban", reason)

    async def unban(self, room_id: str, sender: str, target: str, reason: str | None = None) -> None:
        """Spec POST /rooms/{roomId}/unban: only someone banned."""
        if await self._heads.membership(room_id, target) != "ban":
            raise forbidden("The user is not banned")
        await self.set_membership(room_id, sender, target, "leave", reason)

    async def leave(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        """Spec POST /rooms/{roomId}/leave: leaving a known room one is not in does nothing."""
        if await self._heads.membership(room_id, user_id) in (None, "leave"):
            if await self._heads.room_version(room_id) is None:
                raise not_found("Unknown room")
            return
        await self.set_membership(room_id, user_id, user_id, "leave", reason)

    async def forget(self, user_id: str, room_id: str) -> None:
        """Spec POST /rooms/{roomId}/forget: only a room one has left."""
        membership = await self._heads.membership(room_id, user_id)
        if membership in ("join", "invite", "knock"):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        if membership is None:
            raise not_found("You have never been in this room")
        await self._store.forget_room(user_id, room_id)

    async def joined_rooms(self, user_id: str) -> list[str]:
        """Spec GET /joined_rooms, sorted."""
        memberships = await self._store.rooms_for_user(user_id)
        return sorted(r for r, (m, _, _) in memberships.items() if m == "join")

    async def mutual_rooms(self, user_id: str, other_id: str) -> list[str]:
        """Spec GET /mutual_rooms: the user's joined rooms (sorted) where the other user, local or not, is
        joined too."""
        return [r for r in await self.joined_rooms(user_id) if await self._heads.membership(r, other_id) == "join"]

    async def leave_all_rooms(self, user_id: str) -> None:
        """Leave every joined, invited or knocked room (account deactivation)."""
        for room_id, (membership, _, _) in (await self._store.rooms_for_user(user_id)).items():
            if membership in ("join", "invite", "knock"):
                try:
                    await self.set_membership(room_id, user_id, user_id, "leave")
                except MatrixError:
                    pass

    async def resolve_room(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """A room id and servers to try, from a room id or a (local or remote) alias."""
        if room_id_or_alias.startswith("!"):
            return room_id_or_alias, []
        if not room_id_or_alias.startswith("#") or ":" not in room_id_or_alias:
            raise MatrixError(400, "M_INVALID_PARAM", "Expected a room id or alias")
        result = await self.directory.resolve(room_id_or_alias)
        return result["room_id"], result.get("servers", [])

    async def resolve_alias(self, alias: str) -> dict:
        """Spec GET /directory/room/{roomAlias}: local, or asked of the alias's server."""
        return await self.directory.resolve(alias)

    async def remote_public_rooms(self, server: str, limit: int | None, since: str | None,
                                  search: str | None, requester_id: str) -> dict:
        """Spec GET/POST /publicRooms with ``server``: that server's directory, over federation."""
        return await self.federation.remote.public_rooms(server, limit, since, search, requester_id)

    async def join(self, user_id: str, room_id_or_alias: str, reason: str | None = None,
                   extra: dict | None = None, servers: list[str] | None = None, guest: bool = False) -> str:
        """Spec POST /join/{roomIdOrAlias}: resolve an alias, then join (the auth rules decide). A guest joins
        only a room whose ``m.room.guest_access`` is ``can_join`` (spec "Guest Access", "Server behaviour")."""
        room_id, alias_servers = await self.resolve_room(room_id_or_alias)
        if guest:
            access = await self._heads.current_state_event(room_id, "m.room.guest_access")
            if access is None or access.content.get("guest_access") != "can_join":
                raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
        if self._blocked_by is not None and await self._blocked_by(room_id) is not None:
            raise forbidden("This room has been blocked on this server")
        if self._access_rules is not None:
            await self._access_rules.check_membership(room_id, user_id, user_id, "join")
        if self._join_limits is not None:
            self._join_limits.join(user_id, room_id, remote=not await self.is_resident(room_id))
        await self.set_membership(room_id, user_id, user_id, "join", reason, extra,
                                  servers=list(servers or []) + alias_servers)
        if self._account_data is not None:  # joining an upgraded room: the user's tags and m.direct follow
            create = await self._heads.current_state_event(room_id, "m.room.create")
            predecessor = (create.content.get("predecessor") or {}) if create is not None else {}
            if isinstance(predecessor, dict) and isinstance(predecessor.get("room_id"), str):
                await self._follow_upgrade(user_id, predecessor["room_id"], room_id)
        return room_id

    async def upgrade(self, user_id: str, room_id: str, new_version_id: str) -> str:
        """Spec "Room Upgrades", server behaviour (Synapse where the spec says less):

        1. the user must be able to send a tombstone in the old room, checked before anything is written;
        2. the replacement room, whose create event names the old room as its predecessor, with the old
           room's transferable state, power levels and bans;
        3. the tombstone in the old room. Up to room version 11 the new room's id is chosen first, so the
           tombstone goes first and the predecessor names it; from v12 the create event names the room, so
           the tombstone comes after (the predecessor's deprecated ``event_id`` is then left out);
        4. local aliases, the canonical alias and the directory entry move to the new room, the upgrader's
           tags and ``m.direct`` follow it;
        5. the old room's power levels are raised so that only moderators may talk or invite.
        """
        if new_version_id not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {new_version_id!r}")
        if await self._heads.room_version(room_id) is None:
            raise not_found("Unknown room")
        if await self._heads.membership(room_id, user_id) != "join":
            raise forbidden("You are not in this room")
        state = await self._heads.current_state(room_id)

        def tombstone(replacement: str) -> EventSpec:
            return EventSpec(user_id, "m.room.tombstone",
                             {"body": "This room has been replaced", "replacement_room": replacement}, "")

        await self._appends.send(room_id, tombstone("!pending"), dry_run=True)
        body, restore_pl = _upgrade_body(user_id, room_id, state, new_version_id)
        if KNOWN_ROOM_VERSIONS[new_version_id].room_id_from_create_event:
            new_room = await self.create_room(user_id, body)
            await self._appends.send(room_id, tombstone(new_room))
        else:
            new_room = self._appends.new_room_id()
            sent = await self._appends.send(room_id, tombstone(new_room))
            body["creation_content"]["predecessor"]["event_id"] = sent.event_id
            await self.create_room(user_id, body, room_id=new_room)
        await self._transfer(user_id, room_id, new_room, state, restore_pl)
        return new_room

    async def _transfer(self, user_id: str, room_id: str, new_room: str, state: dict,
                        restore_pl: dict | None) -> None:
        """Steps 2 (bans), 4 and 5 of :meth:`upgrade`, each as far as the upgrader's power allows."""
        if self.directory is not None:
            await self.directory.transfer_room(room_id, new_room)
        alias_ev = state.get(("m.room.canonical_alias", ""))
        specs = [(new_room, EventSpec(user_id, "m.room.member", ev.content, key))
                 for (event_type, key), ev in state.items()
                 if event_type == "m.room.member" and ev.content.get("membership") == "ban"]
        if alias_ev is not None and alias_ev.content:
            specs.append((new_room, EventSpec(user_id, "m.room.canonical_alias", alias_ev.content, "")))
        if restore_pl is not None:
            specs.append((new_room, EventSpec(user_id, "m.room.power_levels", restore_pl, "")))
        if alias_ev is not None and alias_ev.content:
            specs.append((room_id, EventSpec(user_id, "m.room.canonical_alias", {}, "")))
        pl = state.get(("m.room.power_levels", ""))
        if pl is not None:
            restricted = dict(pl.content)
            needed = max(50, int(restricted.get("users_default", 0)) + 1)
            restricted["events_default"] = needed
            restricted["invite"] = needed
            specs.append((room_id, EventSpec(user_id, "m.room.power_levels", restricted, "")))
        for target, spec in specs:
            try:
                await self._appends.send(target, spec)
            except MatrixError:
                pass  # the upgrader may lack that power; the upgrade still stands
        if self._account_data is not None:
            await self._follow_upgrade(user_id, room_id, new_room)

    async def forget_alias(self, room_id: str, alias: str, user_id: str) -> None:
        """A deleted alias leaves the room's ``m.room.canonical_alias`` too (as Synapse), if the user who
        deleted it may change that event; otherwise the event stays as it is."""
        current = await self._heads.current_state_event(room_id, "m.room.canonical_alias")
        if current is None:
            return
        content = dict(current.content)
        alt = content.get("alt_aliases")
        if content.get("alias") != alias and not (isinstance(alt, list) and alias in alt):
            return
        if content.get("alias") == alias:
            del content["alias"]
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
        try:
            await self._appends.send(room_id, EventSpec(user_id, "m.room.canonical_alias", content, ""))
        except MatrixError:
            pass  # no power to change it: the alias is gone from the directory all the same

    async def _follow_upgrade(self, user_id: str, room_id: str, new_room: str) -> None:
        """The user's tags of the old room and its place in ``m.direct`` carry over to the new one (as Synapse,
        for the upgrader and for each member who joins the new room)."""
        for tag, content in (await self._account_data.get_tags(user_id, room_id)).items():
            await self._account_data.set_tag(user_id, new_room, tag, content)
        direct = await self._account_data.get(user_id, None, "m.direct") or {}
        if any(isinstance(rooms, list) and room_id in rooms and new_room not in rooms for rooms in direct.values()):
            await self._account_data.put(user_id, None, "m.direct", {
                who: rooms + [new_room] if isinstance(rooms, list) and room_id in rooms and new_room not in rooms
                else rooms for who, rooms in direct.items()})


# Spec "Room Upgrades": the state events a server should transfer (power levels are set on creation).
UPGRADE_TRANSFERRED_STATE = ("m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
                             "m.room.name", "m.room.topic", "m.room.avatar", "m.room.encryption",
                             "m.room.server_acl")


def _upgrade_body(user_id: str, room_id: str, state: dict, new_version_id: str) -> tuple[dict, dict | None]:
    """The /createRoom body of an upgrade's replacement room: the old create event's ``m.federate`` and
    ``type`` (a space stays a space), the transferable state and the power levels; and the power levels
    to restore once the state is copied, if the upgrader needed more power for the copy."""
    old_create = state.get(("m.room.create", ""))
    creation = {k: old_create.content[k] for k in ("m.federate", "type")
                if old_create is not None and k in old_create.content}
    creation["predecessor"] = {"room_id": room_id}
    body = {"room_version": new_version_id, "creation_content": creation,
            "initial_state": [{"type": t, "state_key": k, "content": ev.content} for (t, k), ev in state.items()
                              if t in UPGRADE_TRANSFERRED_STATE and k == ""]}
    pl = state.get(("m.room.power_levels", ""))
    if pl is None:
        return body, None
    override = copy.deepcopy(pl.content)
    users = override["users"] = dict(override.get("users") or {})
    if KNOWN_ROOM_VERSIONS[new_version_id].creators_infinite_power:
        users.pop(user_id, None)
        body["power_level_content_override"] = override
        return body, None
    # As Synapse: an upgrader below the level of some state event is raised to it while the state is
    # copied, and put back afterwards (a second power levels event).
    levels = [override.get("state_default", 50), override.get("ban", 50),
              *(override.get("events") or {}).values()]
    needed = max(int(v) for v in levels if isinstance(v, int))
    own = users.get(user_id, override.get("users_default", 0))
    if not isinstance(own, int) or own >= needed:
        body["power_level_content_override"] = override
        return body, None
    body["power_level_content_override"] = dict(override, users=dict(users, **{user_id: needed}))
    return body, override


def _string_list(body: dict, key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"{key} must be a list of strings")
    return value
