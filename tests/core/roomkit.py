"""Test helpers: build signed rooms/DAGs with the pure event core."""

from __future__ import annotations

from typing import Any

from nacl.signing import SigningKey

from homeserver.events.auth_rules import auth_types_for_event, check_auth
from homeserver.events.builder import build_event, room_id_from_create_event
from homeserver.events.room_versions import get_room_version
from homeserver.events.state_res import resolve_state

_KEYS: dict[str, SigningKey] = {}


def key_for(server: str) -> SigningKey:
    """Deterministic signing key per server name (key id ed25519:1)."""
    if server not in _KEYS:
        seed = (server.encode() * 32)[:32]
        k = SigningKey(seed)
        k.version = "1"  # type: ignore[attr-defined]
        k.alg = "ed25519"  # type: ignore[attr-defined]
        _KEYS[server] = k
    return _KEYS[server]


def verify_key_lookup(server: str, key_id: str):
    if key_id != "ed25519:1" or server not in _KEYS:
        return None
    return _KEYS[server].verify_key


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1]


class Room:
    """A linear-or-branching room DAG. ``state_after[eid]`` holds the state map after
    each event, computed with ``resolve_state`` over the prev events' states."""

    def __init__(self, version: str, creator: str = "@alice:a.test", *, create_content: dict | None = None,
                 ts: int = 1000) -> None:
        self.rv = get_room_version(version)
        self.events: dict[str, dict] = {}
        self.state_after: dict[str, dict] = {}
        self.ts = ts
        self.room_id: str | None = None if self.rv.room_id_from_create_event else "!room:" + server_of(creator)
        content = dict(create_content or {})
        content.setdefault("room_version", version)
        create = self.add(creator, "m.room.create", content, "", prev=[], check=False)
        if self.room_id is None:
            self.room_id = room_id_from_create_event(create["event_id"])
        self.create_id = create["event_id"]
        self.head = [create["event_id"]]

    # -- building ------------------------------------------------------------------
    def state_before(self, prev: list[str]) -> dict:
        if not prev:
            return {}
        if len(prev) == 1:
            return dict(self.state_after[prev[0]])
        return resolve_state(self.rv, [self.state_after[p] for p in prev], self.events.get)

    def auth_state_for(self, proto: dict, state: dict) -> dict:
        keys = set(auth_types_for_event(self.rv, proto)) | {("m.room.create", "")}
        return {k: self.events[state[k]] for k in keys if k in state}

    def add(self, sender: str, etype: str, content: dict, state_key: str | None = None, *,
            prev: list[str] | None = None, check: bool = True, auth_events: list[str] | None = None,
            ts: int | None = None, extra_signers: tuple[str, ...] = (), redacts: str | None = None) -> dict:
        """Build an event on top of ``prev`` (default: current head). With ``check``
        the event must pass auth against the state before it. Advances the head."""
        prev = list(self.head) if prev is None else prev
        state = self.state_before(prev)
        proto: dict[str, Any] = {"type": etype, "sender": sender, "content": content}
        if state_key is not None:
            proto["state_key"] = state_key
        if auth_events is None:
            keys = auth_types_for_event(self.rv, proto)
            auth_events = sorted(state[k] for k in keys if k in state)
        if ts is None:
            self.ts += 1
            ts = self.ts
        depth = max((self.events[p]["depth"] for p in prev), default=0) + 1
        ev = build_event(
            self.rv, server_name=server_of(sender), signing_key=key_for(server_of(sender)),
            room_id=None if (self.rv.room_id_from_create_event and etype == "m.room.create") else self.room_id,
            sender=sender, event_type=etype,
            content=content, state_key=state_key, prev_events=prev, auth_events=auth_events,
            depth=depth, origin_server_ts=ts, redacts=redacts,
        )
        for server in extra_signers:
            from homeserver.events.signing import sign_event
            ev = sign_event(ev, server, key_for(server), self.rv)
        if check:
            check_auth(self.rv, ev, self.auth_state_for(ev, state))
        eid = ev["event_id"]
        self.events[eid] = ev
        after = dict(state)
        if state_key is not None:
            after[(etype, state_key)] = eid
        self.state_after[eid] = after
        self.head = [eid]
        return ev

    def state(self, key_type: str, state_key: str = "", at: list[str] | None = None) -> dict | None:
        st = self.state_before(self.head if at is None else at)
        eid = st.get((key_type, state_key))
        return self.events[eid] if eid else None

    # -- shortcuts -----------------------------------------------------------------
    def join(self, user: str, **kw) -> dict:
        return self.add(user, "m.room.member", {"membership": "join"}, user, **kw)

    def member(self, sender: str, target: str, membership: str, **kw) -> dict:
        content = {"membership": membership, **kw.pop("content", {})}
        return self.add(sender, "m.room.member", content, target, **kw)

    def power_levels(self, sender: str, users: dict, **kw) -> dict:
        content = {"users": users, **kw.pop("content", {})}
        return self.add(sender, "m.room.power_levels", content, "", **kw)

    def join_rules(self, sender: str, rule: str, **kw) -> dict:
        content = {"join_rule": rule, **kw.pop("content", {})}
        return self.add(sender, "m.room.join_rules", content, "", **kw)

    def current_state(self) -> dict:
        return self.state_before(self.head)

    def draft(self, sender: str, etype: str, content: dict, state_key: str | None = None, **kw) -> dict:
        """Build an event without checking auth or advancing the head."""
        head = list(self.head)
        ev = self.add(sender, etype, content, state_key, check=False, **kw)
        del self.events[ev["event_id"]]
        del self.state_after[ev["event_id"]]
        self.head = head
        return ev

    def check(self, ev: dict, at: list[str] | None = None) -> None:
        """check_auth of ``ev`` against the state before ``at`` (default: its prev_events)."""
        prev = at if at is not None else ev["prev_events"]
        prev = [p if isinstance(p, str) else p[0] for p in prev]
        state = self.state_before(prev)
        check_auth(self.rv, ev, self.auth_state_for(ev, state))


def standard_room(version: str, creator: str = "@alice:a.test", pl_users: dict | None = None,
                  join_rule: str = "public", **kw) -> Room:
    """create + creator join + power levels + join rules."""
    room = Room(version, creator, **kw)
    room.join(creator)
    rv = room.rv
    users = dict(pl_users) if pl_users is not None else ({} if rv.creators_infinite_power else {creator: 100})
    room.power_levels(creator, users)
    room.join_rules(creator, join_rule)
    return room
