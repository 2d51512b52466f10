"""Authorisation rules (room versions 1-12, "Authorisation rules"; server-server API
"Auth events selection", "Checks performed on receipt of a PDU").

Rule names used in :class:`AuthError` (stable across versions, unlike the spec's
rule numbers which shift between versions):

``create.prev_events``, ``create.room_id`` (v12: present; v1-v11: domain mismatch),
``create.room_version``, ``create.creator``, ``create.additional_creators``,
``room_id.create_event`` (v12 rule 2), ``auth_events.duplicate``,
``auth_events.unexpected``, ``auth_events.rejected``, ``auth_events.no_create``,
``auth_events.room_id``, ``federate``, ``aliases.state_key``, ``aliases.domain``,
``member.malformed``, ``member.authoriser_signature``, ``member.join.sender``,
``member.join.banned``, ``member.join.invite_only``, ``member.join.restricted``,
``member.join.not_allowed``, ``member.invite.third_party`` (and
``member.invite.third_party.<check>``), ``member.invite.sender_not_joined``,
``member.invite.target``, ``member.invite.power``, ``member.leave.self``,
``member.leave.sender_not_joined``, ``member.leave.unban_power``,
``member.leave.power``, ``member.ban.sender_not_joined``, ``member.ban.power``,
``member.knock.join_rule``, ``member.knock.sender``, ``member.knock.membership``,
``member.unknown``, ``sender_not_joined``, ``third_party_invite.power``,
``event.power``, ``event.state_key``, ``power_levels.not_integer``,
``power_levels.users``, ``power_levels.creators``, ``power_levels.change``,
``power_levels.events``, ``power_levels.users_change``, ``redaction.power``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Mapping

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64

from .errors import AuthError
from .hashing import event_id_of
from .identifiers import domain_of, is_valid_user_id
from .room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, get_room_version
from .signing import signing_bytes

CREATE = "m.room.create"
MEMBER = "m.room.member"
JOIN_RULES = "m.room.join_rules"
POWER_LEVELS = "m.room.power_levels"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
REDACTION = "m.room.redaction"
ALIASES = "m.room.aliases"

StateKey = tuple[str, str]
AuthState = Mapping[StateKey, dict]

_LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")
_NAMED_DEFAULTS = {"invite": 0, "kick": 50, "ban": 50, "redact": 50, "state_default": 50,
                   "events_default": 0, "users_default": 0}
_STRINGY_INT_RE = re.compile(r"^\s*[+-]?[0-9]+\s*$")


def _content(event: dict | None) -> dict:
    if event is None:
        return {}
    c = event.get("content")
    return c if isinstance(c, dict) else {}


# --------------------------------------------------------------------------------------
# Power levels
# --------------------------------------------------------------------------------------


def parse_power_level(room_version: RoomVersion | str, value: Any) -> int | None:
    """Parse one power level value; ``None`` if invalid for the room version.

    v10+: only integers ("Values in m.room.power_levels events must be integers").
    v1-v9: integers, integer strings (v1 "stringy power levels") and finite floats
    truncated towards zero (v1 "floaty power levels").
    """
    rv = get_room_version(room_version)
    if type(value) is int:
        return value
    if rv.enforce_int_power_levels:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str) and _STRINGY_INT_RE.match(value):
        return int(value.strip())
    return None


def room_creators(room_version: RoomVersion | str, create_event: dict | None) -> set[str]:
    """The room creators (v12 "room creators": sender + ``additional_creators``;
    v11: sender; v1-v10: ``content.creator``)."""
    rv = get_room_version(room_version)
    if create_event is None:
        return set()
    if rv.creators_infinite_power:
        creators = {create_event.get("sender")}
        extra = _content(create_event).get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
        return {c for c in creators if isinstance(c, str)}
    creator = create_event.get("sender") if rv.implicit_room_creator else _content(create_event).get("creator")
    return {creator} if isinstance(creator, str) else set()


def get_power_level(room_version: RoomVersion | str, create_event: dict | None,
                    power_levels_event: dict | None, user_id: str) -> int | float:
    """A user's power level (``m.room.power_levels`` description; v12 creators have
    infinite power). Without a power levels event the creator has 100, others 0."""
    rv = get_room_version(room_version)
    creators = room_creators(rv, create_event)
    if rv.creators_infinite_power and user_id in creators:
        return math.inf
    if power_levels_event is None:
        return 100 if user_id in creators else 0
    content = _content(power_levels_event)
    users = content.get("users")
    if isinstance(users, dict) and user_id in users:
        level = parse_power_level(rv, users[user_id])
        if level is not None:
            return level
    level = parse_power_level(rv, content.get("users_default", 0))
    return 0 if level is None else level


def get_named_level(room_version: RoomVersion | str, power_levels_event: dict | None, name: str) -> int:
    """The *invite/kick/ban/redact level* (or ``*_default``) with spec defaults."""
    default = _NAMED_DEFAULTS[name]
    value = _content(power_levels_event).get(name)
    if value is None:
        return default
    level = parse_power_level(room_version, value)
    return default if level is None else level


def get_required_power_level(room_version: RoomVersion | str, power_levels_event: dict | None,
                             event_type: str, is_state: bool) -> int:
    """The *required power level* for an event type (server-server "Definitions")."""
    events = _content(power_levels_event).get("events")
    if isinstance(events, dict) and event_type in events:
        level = parse_power_level(room_version, events[event_type])
        if level is not None:
            return level
    return get_named_level(room_version, power_levels_event, "state_default" if is_state else "events_default")


# --------------------------------------------------------------------------------------
# Auth events selection and state-independent checks
# --------------------------------------------------------------------------------------


def auth_types_for_event(room_version: RoomVersion | str, event: dict) -> set[StateKey]:
    """The ``(type, state_key)`` pairs auth events are selected from (server-server
    "Auth events selection"). Empty for ``m.room.create``; v12 excludes the create event."""
    rv = get_room_version(room_version)
    if event.get("type") == CREATE:
        return set()
    keys: set[StateKey] = {(POWER_LEVELS, ""), (MEMBER, event.get("sender"))}
    if rv.create_event_in_auth_events:
        keys.add((CREATE, ""))
    if event.get("type") == MEMBER and isinstance(event.get("state_key"), str):
        content = _content(event)
        membership = content.get("membership")
        keys.add((MEMBER, event["state_key"]))
        if membership in ("join", "invite", "knock"):
            keys.add((JOIN_RULES, ""))
        tpi = content.get("third_party_invite")
        if membership == "invite" and isinstance(tpi, dict):
            signed = tpi.get("signed")
            if isinstance(signed, dict) and isinstance(signed.get("token"), str):
                keys.add((THIRD_PARTY_INVITE, signed["token"]))
        authoriser = content.get("join_authorised_via_users_server")
        if membership == "join" and rv.restricted_join_rule and isinstance(authoriser, str):
            keys.add((MEMBER, authoriser))
    return keys


def check_auth_events(room_version: RoomVersion | str, event: dict, auth_events: Iterable[dict],
                      is_rejected: Callable[[dict], bool] | None = None) -> None:
    """Rule "Considering the event's auth_events" (v1-v11 rule 2, v12 rule 3):
    duplicates, unexpected entries, rejected entries, missing create (v1-v11) and
    foreign ``room_id``. ``auth_events`` are the event's own auth events."""
    rv = get_room_version(room_version)
    if event.get("type") == CREATE:
        return
    expected = auth_types_for_event(rv, event)
    seen: set[StateKey] = set()
    for ae in auth_events:
        key = (ae.get("type"), ae.get("state_key"))
        if key in seen:
            raise AuthError("auth_events.duplicate", f"duplicate auth event for {key}")
        seen.add(key)
        if key not in expected:
            raise AuthError("auth_events.unexpected", f"auth event {key} is not selected by the auth rules")
        if is_rejected is not None and is_rejected(ae):
            raise AuthError("auth_events.rejected", f"auth event for {key} was rejected")
        if ae.get("room_id") != event.get("room_id"):
            raise AuthError("auth_events.room_id", f"auth event for {key} is in another room")
    if rv.create_event_in_auth_events and (CREATE, "") not in seen:
        raise AuthError("auth_events.no_create", "no m.room.create event among auth events")


def check_create(room_version: RoomVersion | str, event: dict) -> None:
    """Rule 1, ``m.room.create`` events (v1, v11 and v12 variants)."""
    rv = get_room_version(room_version)
    if event.get("prev_events"):
        raise AuthError("create.prev_events", "create event has prev_events")
    if rv.room_id_from_create_event:
        if "room_id" in event:
            raise AuthError("create.room_id", "v12 create event must not have a room_id")
    elif domain_of(event.get("room_id")) != domain_of(event.get("sender")) or domain_of(event.get("sender")) is None:
        raise AuthError("create.room_id", "room_id domain does not match sender domain")
    content = _content(event)
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError("create.room_version", f"unknown room version {content['room_version']!r}")
    if not rv.implicit_room_creator and "creator" not in content:
        raise AuthError("create.creator", "create event has no creator")
    if rv.creators_infinite_power and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("create.additional_creators", "additional_creators must be a list of user IDs")


# --------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------


class _Ctx:
    """Pre-extracted state used by the rules for one event."""

    def __init__(self, rv: RoomVersion, event: dict, state: AuthState) -> None:
        self.rv = rv
        self.event = event
        self.state = state
        self.create = state.get((CREATE, ""))
        self.pl = state.get((POWER_LEVELS, ""))
        self.sender = event.get("sender")

    def membership(self, user_id: Any) -> str:
        ev = self.state.get((MEMBER, user_id)) if isinstance(user_id, str) else None
        m = _content(ev).get("membership") if ev is not None else None
        return m if isinstance(m, str) else "leave"

    def level(self, user_id: Any) -> int | float:
        return get_power_level(self.rv, self.create, self.pl, user_id)

    def named(self, name: str) -> int:
        return get_named_level(self.rv, self.pl, name)

    def join_rule(self) -> str:
        jr = _content(self.state.get((JOIN_RULES, ""))).get("join_rule", "invite")
        return jr if isinstance(jr, str) else "invite"


def check_auth(room_version: RoomVersion | str, event: dict, auth_state: AuthState) -> None:
    """Check ``event`` against the authorisation rules of ``room_version`` given the
    relevant state ``auth_state`` (``(type, state_key) -> event``; the create event
    must be present, also for v12). Raises :class:`AuthError` naming the failed rule.

    The "auth_events" rule (needs the auth events themselves) is in
    :func:`check_auth_events`. For ``join_authorised_via_users_server`` only the
    *presence* of the authorising server's signature is checked here; its validity is
    checked by ``signing.verify_event_signatures``.
    """
    rv = get_room_version(room_version)
    if event.get("type") == CREATE:
        check_create(rv, event)
        return
    ctx = _Ctx(rv, event, auth_state)
    if ctx.create is None:
        raise AuthError("auth_events.no_create", "no m.room.create event in the auth state")
    if rv.room_id_from_create_event:
        create_id = event_id_of(ctx.create, rv)
        if event.get("room_id") != "!" + create_id[1:]:
            raise AuthError("room_id.create_event", "room_id does not match the create event")
    if _content(ctx.create).get("m.federate") is False:
        if domain_of(ctx.sender) != domain_of(ctx.create.get("sender")):
            raise AuthError("federate", "room is not federated and sender is from another server")
    if rv.special_case_aliases_auth and event.get("type") == ALIASES:
        _check_aliases(event)
        return
    if event.get("type") == MEMBER:
        _check_membership(ctx)
        return
    if ctx.membership(ctx.sender) != "join":
        raise AuthError("sender_not_joined", f"{ctx.sender} is not joined to the room")
    if event.get("type") == THIRD_PARTY_INVITE:
        if ctx.level(ctx.sender) < ctx.named("invite"):
            raise AuthError("third_party_invite.power", "sender power level is below the invite level")
        return
    is_state = "state_key" in event
    required = get_required_power_level(rv, ctx.pl, event.get("type"), is_state)
    if required > ctx.level(ctx.sender):
        raise AuthError("event.power", f"sending {event.get('type')} requires power level {required}")
    state_key = event.get("state_key")
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != ctx.sender:
        raise AuthError("event.state_key", "state_key starting with @ must match the sender")
    if event.get("type") == POWER_LEVELS:
        _check_power_levels(ctx)
        return
    if rv.redaction_auth_rule and event.get("type") == REDACTION:
        _check_v1_redaction(ctx)


def _check_aliases(event: dict) -> None:
    """v1-v5 rule 4: ``m.room.aliases``."""
    if "state_key" not in event:
        raise AuthError("aliases.state_key", "m.room.aliases must have a state_key")
    if event["state_key"] != domain_of(event.get("sender")):
        raise AuthError("aliases.domain", "state_key must be the sender's domain")


def _check_v1_redaction(ctx: _Ctx) -> None:
    """v1/v2 rule 11: ``m.room.redaction``."""
    if ctx.level(ctx.sender) >= ctx.named("redact"):
        return
    redacts = ctx.event.get("redacts")
    if domain_of(redacts) is not None and domain_of(redacts) == domain_of(ctx.event.get("event_id")):
        return
    raise AuthError("redaction.power", "sender may not redact this event")


def _check_membership(ctx: _Ctx) -> None:
    """Rules for ``m.room.member`` events (v1 rule 5, v11 rule 4, v12 rule 5)."""
    event, rv = ctx.event, ctx.rv
    content = _content(event)
    if not isinstance(event.get("state_key"), str) or "membership" not in content:
        raise AuthError("member.malformed", "member event needs a state_key and content.membership")
    membership = content["membership"]
    authoriser = content.get("join_authorised_via_users_server")
    if rv.restricted_join_rule and "join_authorised_via_users_server" in content:
        server = domain_of(authoriser)
        sigs = event.get("signatures")
        if server is None or not isinstance(sigs, dict) or not sigs.get(server):
            raise AuthError("member.authoriser_signature",
                            "event is not signed by the server of join_authorised_via_users_server")
    if membership == "join":
        _check_join(ctx, authoriser)
    elif membership == "invite":
        _check_invite(ctx)
    elif membership == "leave":
        _check_leave(ctx)
    elif membership == "ban":
        _check_ban(ctx)
    elif membership == "knock" and rv.knock:
        _check_knock(ctx)
    else:
        raise AuthError("member.unknown", f"unknown membership {membership!r}")


def _is_creator_first_join(ctx: _Ctx) -> bool:
    prev = ctx.event.get("prev_events")
    if not isinstance(prev, list) or len(prev) != 1:
        return False
    prev_id = prev[0] if isinstance(prev[0], str) else (prev[0][0] if isinstance(prev[0], list) and prev[0] else None)
    if prev_id != event_id_of(ctx.create, ctx.rv):
        return False
    if ctx.rv.implicit_room_creator:
        creator = ctx.create.get("sender")
    else:
        creator = _content(ctx.create).get("creator")
    return creator == ctx.event.get("state_key")


def _check_join(ctx: _Ctx, authoriser: Any) -> None:
    rv = ctx.rv
    if _is_creator_first_join(ctx):
        return
    if ctx.sender != ctx.event["state_key"]:
        raise AuthError("member.join.sender", "sender does not match state_key")
    current = ctx.membership(ctx.sender)
    if current == "ban":
        raise AuthError("member.join.banned", f"{ctx.sender} is banned")
    join_rule = ctx.join_rule()
    if join_rule == "invite" or (rv.knock and join_rule == "knock"):
        if current in ("invite", "join"):
            return
        raise AuthError("member.join.invite_only", "room is invite-only and sender is not invited")
    restricted = (rv.restricted_join_rule and join_rule == "restricted") or (
        rv.knock_restricted_join_rule and join_rule == "knock_restricted")
    if restricted:
        if current in ("join", "invite"):
            return
        if (not isinstance(authoriser, str) or ctx.membership(authoriser) != "join"
                or ctx.level(authoriser) < ctx.named("invite")):
            raise AuthError("member.join.restricted",
                            "join_authorised_via_users_server is not a joined user able to invite")
        return
    if join_rule == "public":
        return
    raise AuthError("member.join.not_allowed", f"join rule {join_rule!r} does not allow joining")


def _check_invite(ctx: _Ctx) -> None:
    content = _content(ctx.event)
    target = ctx.event["state_key"]
    if "third_party_invite" in content:
        _check_third_party_invite(ctx, content["third_party_invite"], target)
        return
    if ctx.membership(ctx.sender) != "join":
        raise AuthError("member.invite.sender_not_joined", "sender is not joined")
    if ctx.membership(target) in ("join", "ban"):
        raise AuthError("member.invite.target", "target is already joined or banned")
    if ctx.level(ctx.sender) >= ctx.named("invite"):
        return
    raise AuthError("member.invite.power", "sender power level is below the invite level")


def _check_third_party_invite(ctx: _Ctx, tpi: Any, target: str) -> None:
    """Rule "If content has a third_party_invite property" (invite via 3PID)."""
    def fail(check: str, reason: str) -> AuthError:
        return AuthError(f"member.invite.third_party.{check}", reason)

    if ctx.membership(target) == "ban":
        raise fail("banned", "target user is banned")
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict):
        raise fail("signed", "third_party_invite has no signed property")
    if "mxid" not in signed or "token" not in signed:
        raise fail("signed_fields", "signed needs mxid and token")
    if signed["mxid"] != target:
        raise fail("mxid", "signed.mxid does not match state_key")
    token = signed["token"]
    invite_event = ctx.state.get((THIRD_PARTY_INVITE, token)) if isinstance(token, str) else None
    if invite_event is None:
        raise fail("no_invite_event", "no m.room.third_party_invite with that token")
    if invite_event.get("sender") != ctx.sender:
        raise fail("sender", "sender does not match the third party invite's sender")
    if _third_party_signature_ok(signed, _content(invite_event)):
        return
    raise fail("signature", "no signature in signed matches the invite's public keys")


def _decode_key(b64: Any) -> VerifyKey | None:
    if not isinstance(b64, str):
        return None
    try:
        raw = decode_base64(b64.replace("-", "+").replace("_", "/"))
        return VerifyKey(raw)
    except Exception:
        return None


def _third_party_signature_ok(signed: dict, invite_content: dict) -> bool:
    return third_party_signing_key(signed, invite_content) is not None


def third_party_public_keys(invite_content: dict) -> list[dict]:
    """The keys of an ``m.room.third_party_invite`` event: ``public_key`` (with ``key_validity_url``) and each
    of ``public_keys``, as ``{"public_key", "key_validity_url"?}`` objects."""
    keys = []
    if isinstance(invite_content.get("public_key"), str):
        keys.append({k: invite_content[k] for k in ("public_key", "key_validity_url") if k in invite_content})
    public_keys = invite_content.get("public_keys")
    if isinstance(public_keys, list):
        keys.extend(pk for pk in public_keys if isinstance(pk, dict) and isinstance(pk.get("public_key"), str))
    return keys


def third_party_signing_key(signed: dict, invite_content: dict) -> dict | None:
    """The key of the invite (:func:`third_party_public_keys`) whose signature ``signed`` carries (any
    ``ed25519:`` signature of any entity), or None."""
    candidates = [(pk, _decode_key(pk["public_key"])) for pk in third_party_public_keys(invite_content)]
    candidates = [(pk, vk) for pk, vk in candidates if vk is not None]
    sigs = signed.get("signatures")
    if not candidates or not isinstance(sigs, dict):
        return None
    try:
        data = signing_bytes(signed)
    except Exception:
        return None
    for by_key in sigs.values():
        if not isinstance(by_key, dict):
            continue
        for key_id, sig_b64 in by_key.items():
            if not str(key_id).startswith("ed25519:") or not isinstance(sig_b64, str):
                continue
            try:
                sig = decode_base64(sig_b64)
            except Exception:
                continue
            for public_key, vk in candidates:
                try:
                    vk.verify(data, sig)
                    return public_key
                except (BadSignatureError, ValueError):
                    continue
    return None


def _check_leave(ctx: _Ctx) -> None:
    target = ctx.event["state_key"]
    if ctx.sender == target:
        allowed = ("invite", "join", "knock") if ctx.rv.knock else ("invite", "join")
        if ctx.membership(target) in allowed:
            return
        raise AuthError("member.leave.self", "user is not invited, joined or knocking")
    if ctx.membership(ctx.sender) != "join":
        raise AuthError("member.leave.sender_not_joined", "sender is not joined")
    sender_level = ctx.level(ctx.sender)
    if ctx.membership(target) == "ban" and sender_level < ctx.named("ban"):
        raise AuthError("member.leave.unban_power", "sender power level is below the ban level")
    if sender_level >= ctx.named("kick") and ctx.level(target) < sender_level:
        return
    raise AuthError("member.leave.power", "sender may not kick the target")


def _check_ban(ctx: _Ctx) -> None:
    target = ctx.event["state_key"]
    if ctx.membership(ctx.sender) != "join":
        raise AuthError("member.ban.sender_not_joined", "sender is not joined")
    sender_level = ctx.level(ctx.sender)
    if sender_level >= ctx.named("ban") and ctx.level(target) < sender_level:
        return
    raise AuthError("member.ban.power", "sender may not ban the target")


def _check_knock(ctx: _Ctx) -> None:
    join_rule = ctx.join_rule()
    allowed = ("knock", "knock_restricted") if ctx.rv.knock_restricted_join_rule else ("knock",)
    if join_rule not in allowed:
        raise AuthError("member.knock.join_rule", f"join rule {join_rule!r} does not allow knocking")
    if ctx.sender != ctx.event["state_key"]:
        raise AuthError("member.knock.sender", "sender does not match state_key")
    if ctx.membership(ctx.sender) not in ("ban", "invite", "join"):
        return
    raise AuthError("member.knock.membership", "sender is banned, invited or joined")


def _validate_power_levels_content(ctx: _Ctx, content: dict) -> None:
    """v10+ integer checks and the ``users`` check (all versions), v12 creators check."""
    rv = ctx.rv
    if rv.enforce_int_power_levels:
        for key in _LEVEL_KEYS:
            if key in content and type(content[key]) is not int:
                raise AuthError("power_levels.not_integer", f"{key} must be an integer")
        for key in ("events", "notifications"):
            if key in content:
                value = content[key]
                if not isinstance(value, dict) or any(type(v) is not int for v in value.values()):
                    raise AuthError("power_levels.not_integer", f"{key} must map to integers")
    users = content.get("users", {})
    if not isinstance(users, dict):
        raise AuthError("power_levels.users", "users must be an object")
    for user_id, level in users.items():
        if not is_valid_user_id(user_id) or parse_power_level(rv, level) is None:
            raise AuthError("power_levels.users", f"invalid users entry {user_id!r}")
    if rv.creators_infinite_power:
        if room_creators(rv, ctx.create) & set(users):
            raise AuthError("power_levels.creators", "room creators may not appear in users")


def _level_map(rv: RoomVersion, value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    out = {}
    for k, v in value.items():
        level = parse_power_level(rv, v)
        if level is not None:
            out[k] = level
    return out


def _check_power_levels(ctx: _Ctx) -> None:
    """Rule "If type is m.room.power_levels" (v1 rule 10, v11 rule 9, v12 rule 10)."""
    rv = ctx.rv
    new = _content(ctx.event)
    _validate_power_levels_content(ctx, new)
    if ctx.pl is None:
        return
    old = _content(ctx.pl)
    sender_level = ctx.level(ctx.sender)
    for key in _LEVEL_KEYS:
        old_v = parse_power_level(rv, old[key]) if key in old else None
        new_v = parse_power_level(rv, new[key]) if key in new else None
        if old_v == new_v:
            continue
        if (old_v is not None and old_v > sender_level) or (new_v is not None and new_v > sender_level):
            raise AuthError("power_levels.change", f"sender may not change {key}")
    maps = ("events", "notifications") if rv.limit_notifications_power_levels else ("events",)
    for field in maps:
        _check_level_map_changes(ctx, field, old.get(field), new.get(field), sender_level)
    old_users, new_users = _level_map(rv, old.get("users")), _level_map(rv, new.get("users"))
    for user in set(old_users) | set(new_users):
        old_v, new_v = old_users.get(user), new_users.get(user)
        if old_v == new_v:
            continue
        if user != ctx.sender and old_v is not None and old_v >= sender_level:
            raise AuthError("power_levels.users_change", f"sender may not change the level of {user}")
        if new_v is not None and new_v > sender_level:
            raise AuthError("power_levels.users_change", f"sender may not raise {user} above own level")


def _check_level_map_changes(ctx: _Ctx, field: str, old: Any, new: Any, sender_level: int | float) -> None:
    old_m, new_m = _level_map(ctx.rv, old), _level_map(ctx.rv, new)
    for key in set(old_m) | set(new_m):
        old_v, new_v = old_m.get(key), new_m.get(key)
        if old_v == new_v:
            continue
        if old_v is not None and old_v > sender_level:
            raise AuthError("power_levels.events", f"sender may not change {field}[{key}]")
        if new_v is not None and new_v > sender_level:
            raise AuthError("power_levels.events", f"sender may not set {field}[{key}] above own level")


# --------------------------------------------------------------------------------------
# Convenience helpers for the homeserver
# --------------------------------------------------------------------------------------


def get_membership(state: AuthState, user_id: str) -> str:
    """Current membership of ``user_id`` in ``state`` (``"leave"`` when absent)."""
    m = _content(state.get((MEMBER, user_id))).get("membership")
    return m if isinstance(m, str) else "leave"


def user_power_level(room_version: RoomVersion | str, state: AuthState, user_id: str) -> int | float:
    """``get_power_level`` reading the create and power levels events from ``state``."""
    return get_power_level(room_version, state.get((CREATE, "")), state.get((POWER_LEVELS, "")), user_id)


def user_can_send(room_version: RoomVersion | str, state: AuthState, user_id: str,
                  event_type: str, is_state: bool) -> bool:
    """Whether a joined ``user_id`` has the *required power level* for ``event_type``."""
    if get_membership(state, user_id) != "join":
        return False
    required = get_required_power_level(room_version, state.get((POWER_LEVELS, "")), event_type, is_state)
    return user_power_level(room_version, state, user_id) >= required


def may_redact_others(room_version: RoomVersion | str, state: AuthState, sender: str) -> bool:
    """Whether ``sender`` has the power levels' *redact level* (spec "Redactions"; default 50), so that their
    redactions of other users' events apply."""
    return user_power_level(room_version, state, sender) >= get_named_level(
        room_version, state.get((POWER_LEVELS, "")), "redact")


def user_can_redact(room_version: RoomVersion | str, state: AuthState, redaction_sender: str,
                    original_event: dict) -> bool:
    """Whether a redaction should be applied (room v3 "Handling redactions"): the
    sender has the redact level, or is on the same server as the original sender."""
    if may_redact_others(room_version, state, redaction_sender):
        return True
    return domain_of(redaction_sender) == domain_of(original_event.get("sender"))


def is_allowed(room_version: RoomVersion | str, event: dict, auth_state: AuthState) -> bool:
    """``check_auth`` as a boolean."""
    try:
        check_auth(room_version, event, auth_state)
    except AuthError:
        return False
    return True
