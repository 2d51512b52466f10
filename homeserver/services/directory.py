"""Room aliases and the public room directory (client-server "Room aliases", "Listing rooms")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.events.auth_rules import get_power_level
from homeserver.storage.appservice_directory import AppServiceDirectoryStore
from homeserver.storage.directory import DirectoryStore
from homeserver.storage.events import EventStore
from homeserver.services.room_events.heads import RoomHeads

ALIAS_RE = re.compile(r"^#[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")


class RemoteAliases(Protocol):
    async def room_alias(self, alias: str, server: str) -> dict: ...


class DirectoryService:
    def __init__(self, *, store: DirectoryStore, appservice_lists: AppServiceDirectoryStore, events: EventStore,
                 room_heads: RoomHeads, server_name: str, appservices, require_membership: bool = True,
                 remote: RemoteAliases | None = None):
        """``remote``: other servers' aliases (``federation.handlers.remote_queries.RemoteQueries``);
        ``require_membership``: the ``require_membership_for_aliases`` key."""
        self._require_membership = require_membership
        self._store = store
        self._appservice_lists = appservice_lists
        self._appservices = appservices  # exclusive alias namespaces, and alias queries
        self._events = events
        self._heads = room_heads
        self.server_name = server_name
        self._remote = remote

    def _check_local_alias(self, alias: str) -> None:
        if not ALIAS_RE.match(alias) or len(alias) > 255:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias")
        if alias.split(":", 1)[1] != self.server_name:
            raise MatrixError(400, "M_INVALID_PARAM", "Room alias must be on this server")

    async def resolve_local(self, alias: str, *, ask_appservices: bool = True) -> str | None:
        """The room of a local alias; an unknown one in an application service's namespace is first asked
        of the appservice (application service API GET /rooms/{roomAlias}), which may create it."""
        found = await self._store.get_alias(alias)
        if found is None and ask_appservices and await self._appservices.query_alias(alias):
            found = await self._store.get_alias(alias)
        return None if found is None else found[0]

    async def resolve(self, alias: str) -> dict:
        """Spec GET /directory/room/{roomAlias}; aliases of other servers through their /query/directory."""
        server = alias.split(":", 1)[1] if ":" in alias else ""
        if server != self.server_name and self._remote is not None:
            return await self._remote.room_alias(alias, server)
        room_id = await self.resolve_local(alias)
        if room_id is None:
            raise not_found(f"Room alias {alias} not found")
        return {"room_id": room_id, "servers": [self.server_name]}

    async def add_alias(self, alias: str, room_id: str, requester) -> None:
        """Spec PUT /directory/room/{roomAlias}. As Synapse: an application service may add an alias of its
        namespace to any room; anyone else must be in the room (``require_membership_for_aliases``, server
        admins aside) and keep out of the appservices' exclusive namespaces."""
        if requester.appservice_id is not None:
            registration = self._appservices.by_id(requester.appservice_id)
            if not registration.is_alias_in_namespace(alias):
                raise MatrixError(400, "M_EXCLUSIVE", "This application service has not reserved this kind of alias")
        elif self._require_membership and not requester.is_admin \
                and await self._heads.membership(room_id, requester.user_id) != "join":
            raise forbidden("You must be in the room to add an alias")
        await self.create_alias(alias, room_id, requester.user_id)

    def check_alias_free(self, alias: str, user_id: str) -> None:
        """``M_EXCLUSIVE`` when an application service reserves the alias and ``user_id`` is not acting for it."""
        self._appservices.check_alias(alias, user_id)

    async def create_alias(self, alias: str, room_id: str, user_id: str) -> None:
        self._check_local_alias(alias)
        self.check_alias_free(alias, user_id)
        if await self._heads.room_version(room_id) is None:
            raise not_found("Unknown room")
        if not await self._store.create_alias(alias, room_id, user_id):
            raise MatrixError(409, "M_UNKNOWN", "Room alias already exists")

    async def delete_alias(self, alias: str, requester) -> str:
        """The alias's creator, a room admin (may send m.room.canonical_alias) or a server admin may delete it.
        Returns the room it named."""
        found = await self._store.get_alias(alias)
        if found is None:
            raise not_found("Room alias not found")
        room_id, creator = found
        if creator != requester.user_id and not requester.is_admin and not await self._may_edit(room_id, requester.user_id):
            raise forbidden("You may not delete this alias")
        await self._store.delete_alias(alias)
        return room_id

    async def _may_edit(self, room_id: str, user_id: str) -> bool:
        state = await self._heads.current_state(room_id, {("m.room.create", ""), ("m.room.power_levels", "")})
        version = await self._heads.room_version(room_id)
        create = state.get(("m.room.create", ""))
        pl = state.get(("m.room.power_levels", ""))
        level = get_power_level(version, create.pdu if create else None, pl.pdu if pl else None, user_id)
        needed = 50
        if pl is not None:
            needed = pl.content.get("events", {}).get("m.room.canonical_alias", pl.content.get("state_default", 50))
        return level >= int(needed)

    async def room_aliases(self, room_id: str, user_id: str) -> list[str]:
        """Spec GET /rooms/{roomId}/aliases: members (or anyone for world_readable rooms)."""
        if await self._heads.membership(room_id, user_id) != "join":
            vis = await self._heads.current_state_event(room_id, "m.room.history_visibility")
            if vis is None or vis.content.get("history_visibility") != "world_readable":
                raise forbidden("You are not in this room")
        return await self._store.aliases_for_room(room_id)

    async def transfer_room(self, old_room_id: str, new_room_id: str) -> None:
        """Spec "Room Upgrades": local aliases move to the replacement room, and so does the old room's
        place in the public room directory (as Synapse)."""
        await self._store.move_aliases(old_room_id, new_room_id)
        if await self._events.is_room_public(old_room_id):
            await self._events.set_room_public(new_room_id, True)
            await self._events.set_room_public(old_room_id, False)

    # -- public room directory ----------------------------------------------------------------
    async def get_visibility(self, room_id: str) -> str:
        if await self._heads.room_version(room_id) is None:
            raise not_found("Unknown room")
        return "public" if await self._events.is_room_public(room_id) else "private"

    async def set_visibility(self, room_id: str, visibility, requester) -> None:
        """Spec PUT /directory/list/room/{roomId}: a room's place in the homeserver's own public list."""
        _check_visibility(visibility)
        if await self._heads.room_version(room_id) is None:
            raise not_found("Unknown room")
        if not requester.is_admin and not await self._may_edit(room_id, requester.user_id):
            raise forbidden("You may not change this room's visibility")
        await self._events.set_room_public(room_id, visibility == "public")

    async def set_appservice_visibility(self, network_id: str, room_id: str, visibility, requester) -> None:
        """Spec PUT /directory/list/appservice/{networkId}/{roomId} (and Synapse's DELETE, as ``private``): a
        room's place in the list the requesting application service keeps for one of its networks, apart
        from the homeserver's own list."""
        _check_visibility(visibility)
        if requester.appservice_id is None:
            raise forbidden("Only an application service may edit its room directory")
        if await self._heads.room_version(room_id) is None:
            raise not_found("Unknown room")
        await self._appservice_lists.set_published(requester.appservice_id, network_id, room_id,
                                                   visibility == "public")

    async def public_rooms(self, *, limit: int | None, since: str | None, search: str | None,
                           network: "PublicRoomsNetwork | None" = None) -> dict:
        """Spec GET/POST /publicRooms: largest rooms first, offset tokens for pagination. ``network``: the
        homeserver's own list (None, the default), an application service network's list, or all of them."""
        if network is None:
            room_ids = await self._events.public_room_ids()
        elif network.all_networks:
            room_ids = list(dict.fromkeys(await self._events.public_room_ids()
                                          + await self._appservice_lists.room_ids()))
        else:
            room_ids = await self._appservice_lists.room_ids((network.appservice_id, network.network_id))
        entries = []
        for room_id in room_ids:
            if network is not None and await self._heads.room_version(room_id) is None:
                continue  # an appservice's list names rooms by id only: one purged since is left out
            entry = await self.room_entry(room_id)
            if search and not _matches(entry, search):
                continue
            entries.append(entry)
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        try:
            offset = int(since[1:]) if since else 0
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid since token")
        end = len(entries) if limit is None else offset + limit
        result = {"chunk": entries[offset:end], "total_room_count_estimate": len(entries)}
        if end < len(entries):
            result["next_batch"] = f"n{end}"
        if offset > 0:
            result["prev_batch"] = f"n{max(0, offset - (limit or offset))}"
        return result

    async def room_entry(self, room_id: str) -> dict:
        """A PublishedRoomsChunk / room summary from current state."""
        state = await self._heads.current_state(room_id)
        joined = sum(1 for (t, _), ev in state.items()
                     if t == "m.room.member" and ev.content.get("membership") == "join")
        entry = {"room_id": room_id, "num_joined_members": joined,
                 "world_readable": _content(state, "m.room.history_visibility", "history_visibility") == "world_readable",
                 "guest_can_join": _content(state, "m.room.guest_access", "guest_access") == "can_join",
                 "join_rule": _content(state, "m.room.join_rules", "join_rule") or "invite"}
        for key, event_type, field in (("name", "m.room.name", "name"), ("topic", "m.room.topic", "topic"),
                                       ("canonical_alias", "m.room.canonical_alias", "alias"),
                                       ("avatar_url", "m.room.avatar", "url"),
                                       ("room_type", "m.room.create", "type")):
            value = _content(state, event_type, field)
            if isinstance(value, str) and value:
                entry[key] = value
        return entry


@dataclass(frozen=True)
class PublicRoomsNetwork:
    """Which list /publicRooms reads other than the homeserver's own: every list, or one application
    service network's (``third_party_instance_id``, ``<appservice id>|<network id>`` as in the instances of
    GET /thirdparty/protocols)."""
    all_networks: bool = False
    appservice_id: str = ""
    network_id: str = ""


def public_rooms_network(include_all_networks, third_party_instance_id) -> PublicRoomsNetwork | None:
    """Spec POST /publicRooms ``include_all_networks`` and ``third_party_instance_id`` (the latter only
    without the former)."""
    if include_all_networks is not None and not isinstance(include_all_networks, bool):
        raise bad_json("include_all_networks must be a boolean")
    if third_party_instance_id is not None and not isinstance(third_party_instance_id, str):
        raise bad_json("third_party_instance_id must be a string")
    if include_all_networks:
        if third_party_instance_id is not None:
            raise MatrixError(400, "M_INVALID_PARAM",
                              "third_party_instance_id cannot be used with include_all_networks")
        return PublicRoomsNetwork(all_networks=True)
    if third_party_instance_id is None:
        return None
    appservice_id, bar, network_id = third_party_instance_id.partition("|")
    if not bar:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid third_party_instance_id")
    return PublicRoomsNetwork(appservice_id=appservice_id, network_id=network_id)


def _check_visibility(visibility) -> None:
    if visibility not in ("public", "private"):
        raise bad_json("visibility must be public or private")


def public_rooms_body(body: dict) -> tuple[int | None, str | None, str | None]:
    """(limit, since, generic_search_term) of a POST /publicRooms body (client and federation APIs)."""
    limit, since, room_filter = body.get("limit"), body.get("since"), body.get("filter")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise bad_json("limit must be a non-negative integer")
    if since is not None and not isinstance(since, str):
        raise bad_json("since must be a string")
    if room_filter is not None and not isinstance(room_filter, dict):
        raise bad_json("filter must be an object")
    search = (room_filter or {}).get("generic_search_term")
    if search is not None and not isinstance(search, str):
        raise bad_json("generic_search_term must be a string")
    return limit, since, search


def _content(state: dict, event_type: str, field: str):
    ev = state.get((event_type, ""))
    return None if ev is None else ev.content.get(field)


def _matches(entry: dict, term: str) -> bool:
    term = term.lower()
    return any(term in str(entry.get(k, "")).lower() for k in ("name", "topic", "canonical_alias", "room_id"))
