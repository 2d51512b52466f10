"""Policy Servers, both roles (spec v1.19 client-server "Policy Servers", server-server "Policy Servers").

- :class:`RoomPolicy`: this homeserver in a room whose ``m.room.policy`` names a policy server that has a
  joined member. Each local event (but the ``m.room.policy`` state event) gets the policy server's
  ``ed25519:policy_server`` signature before it is written, or is refused 403 ``M_FORBIDDEN`` as Synapse
  does; a received event without a valid signature gets one asked for (``/sign``) and is soft-failed when
  none comes (Synapse, ``federation_base.py``). The signature obtained is stored with the event, so that it
  passes on to the servers that fetch it from us.
- :class:`PolicyServer`: this homeserver acting as one, when ``policy_server.enabled``: ``/sign`` and
  ``/.well-known/matrix/policy_server``. What it refuses is :func:`~homeserver.events.policy_servers.refusal`;
  decisions are kept by event (the spec's caching advice), so all servers asking get the same answer.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Protocol

from unpaddedbase64 import encode_base64

from homeserver.errors import MatrixError
from homeserver.events.builder import validate_pdu
from homeserver.events.errors import EventFormatError
from homeserver.events.hashing import check_content_hash, reference_bytes, strip_convenience_keys
from homeserver.events.policy_servers import (POLICY_EVENT, POLICY_KEY_ID, RefusalRules, RoomPolicyServer,
                                              has_policy_signature, is_policy_state_event, policy_signature,
                                              refusal, room_policy_server, with_signature)
from homeserver.events.room_versions import RoomVersion
from homeserver.lru import LruCache
from homeserver.services.room_events.heads import RoomHeads

logger = logging.getLogger(__name__)

SIGN_PATH = "/_matrix/policy/v1/sign"
SIGN_TIMEOUT_S = 30.0  # Synapse's: long enough for a policy server that scans media
DECISIONS_KEPT = 10_000
MEMBER = "m.room.member"

StateIds = dict  # (type, state_key) -> event id


class FederationPoster(Protocol):
    async def post_json(self, destination: str, path: str, content: Any, args: dict | None = None, *,
                        timeout_s: float | None = None) -> dict: ...


class PolicyServer:
    """This server acting as a Policy Server (``policy_server`` config section)."""

    def __init__(self, *, heads: RoomHeads, server_name: str, signing_key, rules: RefusalRules,
                 rooms: list[str], ban_lists: list[str]):
        """``signing_key``: Ed25519, version ``policy_server`` (not a key of /_matrix/key/v2/server);
        ``rooms``: the rooms it protects (empty: every room whose ``m.room.policy`` names it);
        ``ban_lists``: rooms holding ``m.policy.rule.*`` state whose ``m.ban`` rules it applies."""
        self._heads = heads
        self.server_name = server_name
        self._key = signing_key
        self._rules = rules
        self._rooms = set(rooms)
        self._ban_lists = list(ban_lists)
        self._decisions: LruCache[str, str | None] = LruCache(DECISIONS_KEPT)  # reference hash -> refusal

    def public_keys(self) -> dict:
        """GET /.well-known/matrix/policy_server's answer."""
        return {"public_keys": {"ed25519": encode_base64(self._key.verify_key.encode())}}

    async def sign(self, origin: str | None, body: dict) -> dict:
        """POST /_matrix/policy/v1/sign: the signature, or 400 M_BAD_JSON / M_FORBIDDEN, 404 M_NOT_FOUND."""
        room_id = body.get("room_id")
        if not isinstance(room_id, str):
            raise MatrixError(400, "M_BAD_JSON", "The event has no room_id")
        version = await self._heads.room_version(room_id)
        if version is None or not await self.protects(room_id):
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room, or one this policy server does not protect")
        pdu = strip_convenience_keys(body, version)
        try:
            validate_pdu(pdu, version)
            reference = reference_bytes(pdu, version)
        except (EventFormatError, ValueError, TypeError, KeyError) as e:
            raise MatrixError(400, "M_BAD_JSON", f"Not a valid event for room version {version.identifier}: {e}")
        if not check_content_hash(pdu, version):
            raise MatrixError(400, "M_BAD_JSON", "The event's content hash does not match its content")
        reason = await self._decide(reference, pdu)
        if reason is not None:
            logger.info("Policy server refused an event of %s from %s: %s", pdu.get("sender"), origin, reason)
            raise MatrixError(400, "M_FORBIDDEN", reason)
        return policy_signature(pdu, version, self.server_name, self._key)

    async def protects(self, room_id: str) -> bool:
        """A room we are in, whose ``m.room.policy`` names this server with our key (and, when the admin
        listed rooms, one of them)."""
        if self._rooms and room_id not in self._rooms:
            return False
        event = await self._heads.current_state_event(room_id, POLICY_EVENT, "")
        named = room_policy_server(event.content if event is not None else None)
        if named is None or named.via != self.server_name \
                or named.ed25519 != self.public_keys()["public_keys"]["ed25519"]:
            return False
        suffix = ":" + self.server_name
        ours = [k for (t, k) in await self._heads.current_state_ids(room_id) if t == MEMBER and k.endswith(suffix)]
        members = await self._heads.current_state(room_id, {(MEMBER, k) for k in ours})
        return any(ev.content.get("membership") == "join" for ev in members.values())

    async def _decide(self, reference: bytes, pdu: dict) -> str | None:
        key = hashlib.sha256(reference).hexdigest()
        if key in self._decisions:
            return self._decisions.peek(key)
        rules = self._rules
        for list_room in self._ban_lists:
            state = await self._heads.current_state(list_room)
            rules = rules.with_policy_rules({"type": ev.type, "content": ev.content} for ev in state.values())
        reason = None if is_policy_state_event(pdu) else refusal(pdu, rules)
        self._decisions.put(key, reason)
        return reason


class RoomPolicy:
    """This homeserver in rooms that use a policy server (maybe itself, when ``local`` is given)."""

    def __init__(self, *, heads: RoomHeads, client: FederationPoster, server_name: str,
                 local: PolicyServer | None):
        self._heads = heads
        self._client = client
        self.server_name = server_name
        self._local = local

    async def server_for(self, state: StateIds, pending: dict | None = None) -> RoomPolicyServer | None:
        """Spec "Determining if a Policy Server is enabled in a room": the server named by a valid
        ``m.room.policy`` of ``state`` that has a joined member there."""
        policy_id = state.get((POLICY_EVENT, ""))
        if policy_id is None:
            return None
        events = await self._heads.events_incl_pending([policy_id], pending or {})
        named = room_policy_server(events[policy_id].content if policy_id in events else None)
        if named is None or (named.via == self.server_name and self._local is None):
            return None  # named, but we are not a policy server: as Synapse, the room uses none here
        suffix = ":" + named.via
        member_ids = [eid for (t, k), eid in state.items() if t == MEMBER and k.endswith(suffix)]
        members = await self._heads.events_incl_pending(member_ids, pending or {})
        if not any(ev.content.get("membership") == "join" for ev in members.values()):
            return None
        return named

    async def sign_local(self, version: RoomVersion, pdu: dict, state: StateIds, pending: dict) -> dict:
        """A local event with the policy server's signature (unchanged in a room without one); 403
        ``M_FORBIDDEN`` when the policy server refuses it or cannot be asked (Synapse's answer)."""
        if is_policy_state_event(pdu):
            return pdu
        server = await self.server_for(state, pending)
        if server is None:
            return pdu
        signed = await self._ask(server, version, pdu)
        if signed is None:
            raise MatrixError(403, "M_FORBIDDEN", "This message has been rejected as probable spam")
        return signed

    async def check_remote(self, room_id: str, version: RoomVersion, pdu: dict) -> tuple[bool, dict]:
        """A received event: (allowed, the event with the signature we obtained). Not allowed (to be
        soft-failed) when the room uses a policy server and no valid signature of it is on the event or
        comes from asking it."""
        if is_policy_state_event(pdu):
            return True, pdu
        head = await self._heads.head(room_id)
        server = None if head is None else await self.server_for(head.state)
        if server is None or has_policy_signature(pdu, version, server):
            return True, pdu
        signed = await self._ask(server, version, pdu)
        return signed is not None, signed if signed is not None else pdu

    async def _ask(self, server: RoomPolicyServer, version: RoomVersion, pdu: dict) -> dict | None:
        """``pdu`` signed by the policy server (ourselves, or over federation), or None when it refused,
        could not be reached, or signed with another key than the room's."""
        body = {k: v for k, v in pdu.items() if not (k == "event_id" and not version.event_id_in_pdu)}
        try:
            if server.via == self.server_name and self._local is not None:
                signature = await self._local.sign(self.server_name, body)
            else:
                signature = await self._client.post_json(server.via, SIGN_PATH, body, timeout_s=SIGN_TIMEOUT_S)
        except MatrixError as e:
            logger.info("Policy server %s refused %s: %s", server.via, pdu.get("event_id"), e.error)
            return None
        except Exception as e:  # refused, unreachable, or not a policy server
            logger.info("Policy server %s did not sign %s: %s", server.via, pdu.get("event_id"), e)
            return None
        signed = with_signature(pdu, signature, server.via)
        if not has_policy_signature(signed, version, server):
            logger.warning("Policy server %s answered no valid %s signature for %s", server.via, POLICY_KEY_ID,
                           pdu.get("event_id"))
            return None
        return signed
