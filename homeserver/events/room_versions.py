"""Room version definitions (spec: "Room Versions", feature matrix and v1..v12)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EventFormat(Enum):
    """How event IDs are represented (spec: room versions, "Event IDs")."""

    V1 = 1  # $opaque:domain, event_id carried in the PDU, [id, hashes] pairs
    V3 = 3  # $ + standard unpadded base64 of the reference hash
    V4 = 4  # $ + URL-safe unpadded base64 of the reference hash


class StateResAlgorithm(Enum):
    """Which state resolution algorithm a room version uses."""

    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"  # room version 12 ("starts from empty state", conflicted subgraph)


@dataclass(frozen=True)
class RoomVersion:
    """Feature flags of one room version.

    * ``event_format``: event ID scheme (v1/v2 opaque, v3 base64, v4+ url-safe base64).
    * ``state_res``: state resolution algorithm.
    * ``enforce_key_validity``: v5+ signing key validity period is enforced.
    * ``special_case_aliases_auth``: v1-v5 auth rule for ``m.room.aliases``.
    * ``strict_canonical_json``: v6+ rejects floats and out-of-range integers.
    * ``limit_notifications_power_levels``: v6+ auth rules cover ``notifications``.
    * ``redaction_rule_aliases``: v1-v5 redaction keeps ``aliases`` content.
    * ``knock``: v7+ knocking.
    * ``restricted_join_rule``: v8+ ``restricted`` join rule.
    * ``restricted_join_redaction``: v9+ redaction keeps ``join_authorised_via_users_server``/``allow``.
    * ``knock_restricted_join_rule``: v10+.
    * ``enforce_int_power_levels``: v10+ power levels must be integers.
    * ``implicit_room_creator``: v11+ the creator is the create event's ``sender``.
    * ``updated_redaction_rules``: v11 redaction algorithm.
    * ``redacts_in_content``: v11+ ``redacts`` lives in ``content``.
    * ``redaction_auth_rule``: v1/v2 auth rule 11 for ``m.room.redaction``.
    * ``creators_infinite_power``: v12 creators (sender + additional_creators).
    * ``room_id_from_create_event``: v12 room ID is the create event ID with ``!``.
    * ``create_event_in_auth_events``: v1-v11 select the create event as auth event.
    """

    identifier: str
    event_format: EventFormat
    state_res: StateResAlgorithm
    enforce_key_validity: bool
    special_case_aliases_auth: bool
    strict_canonical_json: bool
    limit_notifications_power_levels: bool
    redaction_rule_aliases: bool
    knock: bool
    restricted_join_rule: bool
    restricted_join_redaction: bool
    knock_restricted_join_rule: bool
    enforce_int_power_levels: bool
    implicit_room_creator: bool
    updated_redaction_rules: bool
    redacts_in_content: bool
    redaction_auth_rule: bool
    creators_infinite_power: bool
    room_id_from_create_event: bool
    create_event_in_auth_events: bool

    @property
    def event_id_in_pdu(self) -> bool:
        """True for v1/v2, where ``event_id`` is a real field of the PDU."""
        return self.event_format is EventFormat.V1

    @property
    def max_depth(self) -> int:
        """Largest allowed ``depth`` (2**63-1 for v1-v5, 2**53-1 with canonical JSON)."""
        return 2**53 - 1 if self.strict_canonical_json else 2**63 - 1


def _make(n: int) -> RoomVersion:
    if n == 1:
        fmt = EventFormat.V1
    elif n == 2:
        fmt = EventFormat.V1
    elif n == 3:
        fmt = EventFormat.V3
    else:
        fmt = EventFormat.V4
    if n == 1:
        sr = StateResAlgorithm.V1
    elif n >= 12:
        sr = StateResAlgorithm.V2_1
    else:
        sr = StateResAlgorithm.V2
    return RoomVersion(
        identifier=str(n),
        event_format=fmt,
        state_res=sr,
        enforce_key_validity=n >= 5,
        special_case_aliases_auth=n <= 5,
        strict_canonical_json=n >= 6,
        limit_notifications_power_levels=n >= 6,
        redaction_rule_aliases=n <= 5,
        knock=n >= 7,
        restricted_join_rule=n >= 8,
        restricted_join_redaction=n >= 9,
        knock_restricted_join_rule=n >= 10,
        enforce_int_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        updated_redaction_rules=n >= 11,
        redacts_in_content=n >= 11,
        redaction_auth_rule=n <= 2,
        creators_infinite_power=n >= 12,
        room_id_from_create_event=n >= 12,
        create_event_in_auth_events=n <= 11,
    )


KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {str(n): _make(n) for n in range(1, 13)}
DEFAULT_ROOM_VERSION = "12"
# The versions Hexagone creates rooms in; it joins and serves rooms of every known version.
CREATABLE_ROOM_VERSIONS: tuple[str, ...] = ("10", "11", "12")


def get_room_version(room_version: RoomVersion | str) -> RoomVersion:
    """Accept a ``RoomVersion`` or its identifier; raise ``KeyError`` if unknown."""
    if isinstance(room_version, RoomVersion):
        return room_version
    return KNOWN_ROOM_VERSIONS[room_version]
