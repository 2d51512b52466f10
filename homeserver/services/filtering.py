"""Event filters (client-server "Filtering"), as pure predicates over client events."""

from __future__ import annotations

from dataclasses import dataclass, replace

from homeserver.errors import bad_json
from homeserver.events.dotted_paths import split_dotted_path
from homeserver.events.glob import glob_matches
from homeserver.events.identifiers import is_valid_user_id


def _type_matches(pattern: str, value: str) -> bool:
    """Spec "Filtering": ``*`` matches any sequence of characters, everything else itself (case-sensitive)."""
    return glob_matches(pattern, value, case_sensitive=True, single_char=False) if "*" in pattern \
        else pattern == value


@dataclass(frozen=True)
class EventFilter:
    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    @classmethod
    def parse(cls, raw: dict | None, where: str = "filter") -> "EventFilter":
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise bad_json(f"{where} must be an object")

        def strings(key):
            value = raw.get(key)
            if value is None:
                return None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad_json(f"{where}.{key} must be a list of strings")
            # As Synapse's filter schema: senders are user IDs, rooms room IDs.
            if key in ("senders", "not_senders") and not all(is_valid_user_id(v) for v in value):
                raise bad_json(f"{where}.{key} must be a list of user IDs")
            if key in ("rooms", "not_rooms") and not all(v.startswith("!") for v in value):
                raise bad_json(f"{where}.{key} must be a list of room IDs")
            return tuple(value)

        limit = raw.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise bad_json(f"{where}.limit must be a non-negative integer")
        return cls(limit=limit, types=strings("types"), not_types=strings("not_types") or (),
                   senders=strings("senders"), not_senders=strings("not_senders") or (),
                   rooms=strings("rooms"), not_rooms=strings("not_rooms") or (),
                   contains_url=_flag(raw, "contains_url", where),
                   lazy_load_members=_flag(raw, "lazy_load_members", where) is True,
                   include_redundant_members=_flag(raw, "include_redundant_members", where) is True,
                   unread_thread_notifications=_flag(raw, "unread_thread_notifications", where) is True)

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def allows(self, event: dict) -> bool:
        etype = event.get("type", "")
        if any(_type_matches(p, etype) for p in self.not_types):
            return False
        if self.types is not None and not any(_type_matches(p, etype) for p in self.types):
            return False
        sender = event.get("sender")
        if sender in self.not_senders:
            return False
        if self.senders is not None and sender not in self.senders:
            return False
        room_id = event.get("room_id")
        if room_id is not None and not self.allows_room(room_id):
            return False
        if self.contains_url is not None:
            has_url = isinstance(event.get("content", {}).get("url"), str)
            if has_url != self.contains_url:
                return False
        return True


@dataclass(frozen=True)
class SyncFilter:
    """The parts of a filter definition /sync applies."""

    timeline: EventFilter = EventFilter()
    state: EventFilter = EventFilter()
    ephemeral: EventFilter = EventFilter()
    room_account_data: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    presence: EventFilter = EventFilter()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"  # spec: "client", or "federation" (the PDU itself)

    @classmethod
    def parse(cls, raw: dict | None, timeline_cap: int = -1) -> "SyncFilter":
        """``timeline_cap``: Synapse's ``filter_timeline_limit``, the largest room.timeline.limit (-1: none)."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise bad_json("filter must be an object")
        room = raw.get("room", {})
        if not isinstance(room, dict):
            raise bad_json("filter.room must be an object")
        top = EventFilter.parse({k: room[k] for k in ("rooms", "not_rooms") if k in room}, "filter.room")
        fields = raw.get("event_fields")
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            raise bad_json("filter.event_fields must be a list of strings")
        event_format = raw.get("event_format", "client")
        if event_format not in ("client", "federation"):
            raise bad_json("filter.event_format must be 'client' or 'federation'")
        timeline = EventFilter.parse(room.get("timeline"), "filter.room.timeline")
        if timeline_cap >= 0 and timeline.limit is not None and timeline.limit > timeline_cap:
            timeline = replace(timeline, limit=timeline_cap)
        return cls(
            timeline=timeline,
            state=EventFilter.parse(room.get("state"), "filter.room.state"),
            ephemeral=EventFilter.parse(room.get("ephemeral"), "filter.room.ephemeral"),
            room_account_data=EventFilter.parse(room.get("account_data"), "filter.room.account_data"),
            account_data=EventFilter.parse(raw.get("account_data"), "filter.account_data"),
            presence=EventFilter.parse(raw.get("presence"), "filter.presence"),
            rooms=top.rooms, not_rooms=top.not_rooms,
            include_leave=_flag(room, "include_leave", "filter.room") is True,
            event_fields=tuple(fields) if fields is not None else None, event_format=event_format)

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


def _flag(raw: dict, key: str, where: str) -> bool | None:
    """An optional boolean of a filter definition (spec "Filtering"); any other value is M_BAD_JSON."""
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise bad_json(f"{where}.{key} must be true or false")
    return value


def apply_event_fields(event: dict, fields: tuple[str, ...] | None) -> dict:
    """Keep only the listed dotted fields (spec "event_fields")."""
    if fields is None:
        return event
    out: dict = {}
    for field in fields:
        parts = split_dotted_path(field)
        src, dst = event, out
        for i, part in enumerate(parts):
            if not isinstance(src, dict) or part not in src:
                break
            if i == len(parts) - 1:
                dst[part] = src[part]
            else:
                src = src[part]
                dst = dst.setdefault(part, {})
    return out
