"""Membership across servers (server-server "Joining Rooms", "Inviting to a room",
"Leaving Rooms (Rejecting Invites)", "Knocking upon a room").

Both sides: answering make_*/send_* as a resident server, and joining,
leaving, knocking or inviting through a resident server.
"""

from __future__ import annotations

import logging

from twisted.internet import defer, task

from federation.paths import segment as quote

from federation.client import FederationDeniedError, FederationRequestError, HttpResponseError
from federation.handlers.pdu_checks import Encodings, PduRejected, normalise_pdu
from federation.handlers.receive import PduReceiver, auth_state, create_event_id, state_answer_pdus
from federation.room_servers import RoomServers
from homeserver.bodies import RawBody, with_encoded_arrays
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.auth_rules import auth_types_for_event, check_auth, check_auth_events
from homeserver.events.builder import build_event, event_id_list, validate_pdu
from homeserver.events.errors import AuthError, EventFormatError
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.identifiers import domain_of
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from homeserver.events.signing import sign_event
from homeserver.events.stripped_state import STRIPPED_STATE_TYPES, stripped
from homeserver.services.restricted_joins import RestrictedJoins
from homeserver.services.room_events.gate import JoinGate
from homeserver.services.room_events.heads import RoomHeads
from homeserver.services.room_events.local import EventSpec, LocalAppends
from homeserver.services.room_events.remote import ExternalEvent, RemotePersistence

logger = logging.getLogger(__name__)

HEROES = 5
PARTIAL_JOIN_RETRY_S = 2  # first wait before asking the room's servers again for its state after our join
PARTIAL_JOIN_RETRY_MAX_S = 300

SUPPORTED_VERSIONS = list(KNOWN_ROOM_VERSIONS)
FINAL_ERRCODES = ("M_FORBIDDEN", "M_INCOMPATIBLE_ROOM_VERSION", "M_UNABLE_TO_AUTHORISE_JOIN")


class FederationMembership:
    def __init__(self, *, room_heads: RoomHeads, appends: LocalAppends, remote: RemotePersistence,
                 join_gate: JoinGate, room_servers: RoomServers, restricted_joins: RestrictedJoins,
                 receiver: PduReceiver, client, server_name: str, signing_key, sender=None, clock=None,
                 room_policy=None):
        self._heads = room_heads
        # RoomPolicy.check_remote: (allowed, PDU with the policy server's signature) for a send_join/leave/knock
        self._room_policy = room_policy
        self._appends = appends
        self._remote = remote
        self._join_gate = join_gate
        self._restricted_joins = restricted_joins
        self._room_servers = room_servers
        self._receiver = receiver
        self._client = client
        self.server_name = server_name
        self._key = signing_key
        self._sender = sender
        self._clock = clock

    def is_local(self, user_id: str) -> bool:
        return domain_of(user_id) == self.server_name

    async def is_resident(self, room_id: str) -> bool:
        """Whether this server takes part in the room (has its event graph)."""
        return bool(await self._heads.forward_extremities(room_id))

    # -- resident side -------------------------------------------------------------------------
    async def make_membership(self, origin: str, room_id: str, user_id: str, membership: str,
                              versions: list[str] | None = None) -> dict:
        """Spec GET /make_join, /make_leave, /make_knock: a template for the remote user."""
        if domain_of(user_id) != origin:
            raise forbidden("The user does not belong to the requesting server")
        if not await self.is_resident(room_id):
            raise not_found("Unknown room")
        if membership != "leave" and self.server_name not in await self._room_servers.joined(room_id):
            raise not_found("No user of this server is in the room any more")   # as Synapse
        version = await self._heads.room_version(room_id)
        if versions is not None and version.identifier not in versions:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "Your server does not support this room version",
                              room_version=version.identifier)
        content: dict = {"membership": membership}
        if membership == "join":
            authoriser = await self._restricted_joins.authoriser(room_id, version, user_id)
            if authoriser is not None:
                content["join_authorised_via_users_server"] = authoriser
        _, template = await self._appends.template(room_id, EventSpec(user_id, "m.room.member", content, user_id))
        return {"room_version": version.identifier, "event": template}

    async def send_membership(self, origin: str, room_id: str, event_id: str, raw: dict,
                              membership: str, omit_members: bool = False) -> dict | RawBody:
        """Spec PUT /v2/send_join, /v2/send_leave, /v1/send_knock: accept the signed event into the room.
        ``omit_members``: the joining server takes the room's state without its member events."""
        version = await self._heads.room_version(room_id)
        if version is None or not await self.is_resident(room_id):
            raise not_found("Unknown room")
        try:
            pdu = normalise_pdu(raw, version)
        except PduRejected as e:
            raise MatrixError(400, "M_BAD_JSON", e.reason)
        content = pdu.get("content") or {}
        if pdu.get("type") != "m.room.member" or content.get("membership") != membership \
                or pdu.get("event_id") != event_id or pdu.get("room_id") != room_id \
                or domain_of(pdu.get("sender", "")) != origin or pdu.get("state_key") != pdu.get("sender"):
            raise MatrixError(400, "M_BAD_JSON", f"Not a {membership} event of a user of {origin}")
        authoriser = content.get("join_authorised_via_users_server")
        if membership == "join" and isinstance(authoriser, str) and self.is_local(authoriser):
            pdu = sign_event(pdu, self.server_name, self._key, version)
        pdu = await self._policy_signed(version, pdu)
        try:
            await self._receiver.handle_pdu(origin, version, pdu, pulled=True)
        except PduRejected as e:
            raise _refusal(e.reason, e.kind)
        stored = await self._heads.get_event(pdu["event_id"])
        if stored is None or stored.outlier:
            raise forbidden("The event is not allowed by the room's current state")
        await self._forward(stored, exclude={origin})
        if membership != "join":
            return {}
        return await self._join_response(stored, version, signed=pdu if isinstance(authoriser, str) else None,
                                         omit_members=omit_members)

    async def _policy_signed(self, version: RoomVersion, pdu: dict) -> dict:
        """Spec server-server "Policy Servers": in a room with a policy server, the membership event with its
        signature (asked for now when the event has none, once the sender's signatures are checked); refused
        403 M_FORBIDDEN, nothing stored, when the policy server will not sign it. (Received by /send, such an
        event is soft-failed instead; here the sending server is told.)"""
        if self._room_policy is None:
            return pdu
        accepted, rejected = await self._receiver.check_signatures([pdu], version)
        if not accepted:
            reason = next(iter(rejected.values()))
            raise _refusal(reason, reason.kind)
        allowed, signed = await self._room_policy(pdu["room_id"], version, accepted[0])
        if not allowed:
            raise forbidden("The room's policy server refused this membership event")
        return signed if signed is not accepted[0] else pdu

    async def _join_response(self, stored, version: RoomVersion, signed: dict | None,
                             omit_members: bool) -> RawBody:
        """The state before the join and its auth chain; with ``omit_members``, the state keeps only the member
        events of the room's heroes (when it has no name), and the auth chain only what that state needs."""
        state_after = await self._heads.state_at_group(stored.state_group)
        state_before = dict(state_after)
        key = ("m.room.member", stored.state_key)
        if stored.replaces_state:
            state_before[key] = stored.replaces_state
        else:
            state_before.pop(key, None)
        if omit_members:
            heroes = await self._heroes(state_before)
            state_before = {k: v for k, v in state_before.items() if k[0] != "m.room.member" or k[1] in heroes}
        state_ids = set(state_before.values())
        chain = await self._heads.auth_closure(list(state_ids) + [stored.event_id])
        # Spec send_join: the events of ``state`` may be left out of the auth chain only with omit_members.
        chain_ids = [eid for eid in chain if eid != stored.event_id and not (omit_members and eid in state_ids)]
        encoded = await self._heads.federation_json([*state_ids, *chain_ids], version)
        body = {"members_omitted": omit_members, "servers_in_room": await self._room_servers.joined(stored.room_id)}
        if signed is not None:
            body["event"] = strip_convenience_keys(signed, version)
        return with_encoded_arrays(body, state=[encoded[i] for i in state_ids if i in encoded],
                                   auth_chain=[encoded[i] for i in chain_ids if i in encoded])

    async def _heroes(self, state: dict) -> set[str]:
        """Spec send_join ``omit_members``: in a room without a name or canonical alias, the members a
        client names it after (client-server "m.heroes": up to 5 joined or invited members)."""
        if ("m.room.name", "") in state or ("m.room.canonical_alias", "") in state:
            return set()
        members = await self._heads.get_events(v for k, v in state.items() if k[0] == "m.room.member")
        return set(sorted(e.state_key for e in members.values()
                          if e.content.get("membership") in ("join", "invite"))[:HEROES])

    async def _forward(self, stored, exclude: set[str]) -> None:
        """Send an event we accepted as resident to every other server in the room."""
        if self._sender is None:
            return
        destinations = set(await self._room_servers.joined(stored.room_id)) - exclude - {self.server_name}
        if destinations:
            version = await self._heads.room_version(stored.room_id)
            await self._sender.send_pdu(sorted(destinations), strip_convenience_keys(stored.pdu, version))

    async def on_invite(self, origin: str, room_id: str, event_id: str, body: dict) -> dict:
        """Spec PUT /v2/invite: co-sign an invite for a local user and remember it."""
        version = KNOWN_ROOM_VERSIONS.get(body.get("room_version", "1"))
        if version is None:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "Unsupported room version",
                              room_version=body.get("room_version"))
        try:
            pdu = normalise_pdu(body.get("event"), version)
        except PduRejected as e:
            raise MatrixError(400, "M_BAD_JSON", e.reason)
        if pdu.get("type") != "m.room.member" or (pdu.get("content") or {}).get("membership") != "invite" \
                or not self.is_local(pdu.get("state_key", "")) or pdu.get("event_id") != event_id \
                or pdu.get("room_id") != room_id or domain_of(pdu.get("sender", "")) != origin:
            raise MatrixError(400, "M_BAD_JSON", "Not an invite of a local user from the requesting server")
        accepted, rejected = await self._receiver.check_signatures([pdu], version)
        if not accepted:
            reason = next(iter(rejected.values()), None)
            raise _refusal(f"Bad invite: {reason or 'signature check failed'}", getattr(reason, "kind", "signature"))
        signed = sign_event(pdu, self.server_name, self._key, version)
        if await self.is_resident(room_id):
            # Take the invite into the room now, so the invitee can join before /send brings it.
            try:
                await self._receiver.handle_pdu(origin, version, signed)
            except PduRejected as e:
                logger.info("Invite %s not accepted into the room yet: %s", event_id, e.reason)
        else:
            stripped = body.get("invite_room_state") or (pdu.get("unsigned") or {}).get("invite_room_state") or []
            stored = dict(signed, unsigned=dict(signed.get("unsigned") or {}, invite_room_state=stripped))
            await self._remote.store_out_of_band_membership(room_id, version, stored)
        return {"event": strip_convenience_keys(signed, version)}

    # -- joining side -----------------------------------------------------------------------------
    async def remote_membership(self, user_id: str, room_id: str, servers: list[str], membership: str,
                                content: dict) -> str:
        """Join, leave or knock through the first resident server that answers. Returns the event id."""
        errors = []
        for server in [s for s in dict.fromkeys(servers) if s != self.server_name]:
            try:
                return await self._remote_membership_via(server, user_id, room_id, membership, content)
            except MatrixError as e:
                if e.errcode in FINAL_ERRCODES:
                    raise
                errors.append(f"{server}: {e.error}")
            except HttpResponseError as e:
                # The resident server's refusal is the answer (as Synapse: any 4xx but "not found" or "unknown
                # endpoint" goes to the client as it came, its other fields too, e.g. room_version).
                if e.errcode in FINAL_ERRCODES or (400 <= e.status < 500 and e.status not in (404, 405, 429)
                                                   and e.errcode not in (None, "M_NOT_FOUND", "M_UNRECOGNIZED")):
                    body = dict(e.body)
                    error = str(body.pop("error", "Refused by the room's server"))
                    for reserved in ("errcode", "status"):
                        body.pop(reserved, None)
                    raise MatrixError(e.status, e.errcode, error, **body)
                errors.append(f"{server}: {e}")
            except Exception as e:
                errors.append(f"{server}: {e}")
                logger.info("%s via %s failed: %s", membership, server, e)
        raise MatrixError(404, "M_NOT_FOUND", "No server could complete the request: " + "; ".join(errors))

    async def reject_locally(self, room_id: str, user_id: str, previous) -> str:
        """Synapse's local out-of-band leave: an invite (or knock) that no server of the room would take back
        (unreachable, or refusing) is rejected on this server alone, so that it leaves the user's /sync. The
        leave follows the membership event it replaces; the inviting server never hears of it."""
        version = await self._heads.room_version(room_id)
        pdu = build_event(
            version, server_name=self.server_name, signing_key=self._key, room_id=room_id, sender=user_id,
            event_type="m.room.member", content={"membership": "leave"}, state_key=user_id,
            prev_events=[previous.event_id],
            auth_events=event_id_list(previous.pdu.get("auth_events", [])) + [previous.event_id],
            depth=int(previous.pdu.get("depth", 0)) + 1, origin_server_ts=int(self._clock.seconds() * 1000))
        await self._remote.store_out_of_band_membership(room_id, version, pdu)
        return pdu["event_id"]

    async def _remote_membership_via(self, server: str, user_id: str, room_id: str, membership: str,
                                     content: dict) -> str:
        make = {"join": "make_join", "leave": "make_leave", "knock": "make_knock"}[membership]
        args = {"ver": SUPPORTED_VERSIONS} if membership in ("join", "knock") else None
        body = await self._client.get_json(
            server, f"/_matrix/federation/v1/{make}/{quote(room_id)}/{quote(user_id)}", args)
        version = KNOWN_ROOM_VERSIONS.get(body.get("room_version", "1"))
        template = body.get("event")
        if version is None or not isinstance(template, dict):
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "Unsupported room version")
        pdu = build_event(
            version, server_name=self.server_name, signing_key=self._key, room_id=room_id, sender=user_id,
            event_type="m.room.member", content=dict(template.get("content") or {}, **content),
            state_key=user_id, prev_events=event_id_list(template.get("prev_events", [])),
            auth_events=event_id_list(template.get("auth_events", [])), depth=int(template.get("depth", 1)),
            origin_server_ts=int(self._clock.seconds() * 1000))
        send = {"join": "send_join", "leave": "send_leave", "knock": "send_knock"}[membership]
        path = f"{send}/{quote(room_id)}/{quote(pdu['event_id'])}"
        content = strip_convenience_keys(pdu, version)
        if membership == "knock":
            response = await self._client.put_json(server, f"/_matrix/federation/v1/{path}", content)
        else:
            response = await self._put_v2_or_v1(server, path, content,
                                                {"omit_members": "true"} if membership == "join" else None,
                                                v1_content=content)
        if membership == "join":
            if isinstance(response.get("event"), dict):  # co-signed by the authorising server
                pdu = normalise_pdu(response["event"], version)
            await self._complete_join(server, version, room_id, pdu, response)
        elif membership == "knock":
            stripped = response.get("knock_room_state") or response.get("knock_state_events") or []
            await self._remote.store_out_of_band_membership(
                room_id, version, dict(pdu, unsigned={"knock_room_state": stripped}))
        else:
            await self._remote.store_out_of_band_membership(room_id, version, pdu)
        return pdu["event_id"]

    async def _put_v2_or_v1(self, server: str, path: str, content: dict, args: dict | None = None, *,
                            v1_content: dict | None) -> dict:
        """PUT /v2/``path``; to a server that does not know it (404 or 405, or 400 M_UNRECOGNIZED: Synapse's
        test), the deprecated /v1/``path`` with ``v1_content`` (None: no fallback), answered ``[200, {...}]``."""
        try:
            return await self._client.put_json(server, f"/_matrix/federation/v2/{path}", content, args)
        except HttpResponseError as e:
            unknown = (e.status in (404, 405) and e.errcode in (None, "M_UNRECOGNIZED")) \
                or (e.status == 400 and e.errcode == "M_UNRECOGNIZED")
            if not unknown or v1_content is None:
                raise
        logger.info("%s does not serve /v2/%s: trying /v1", server, path.split("/")[0])
        return await self._client.put_json(server, f"/_matrix/federation/v1/{path}", v1_content, v1_wrapped=True)

    async def _complete_join(self, server: str, version: RoomVersion, room_id: str, join: dict,
                             response: dict) -> None:
        """Check the room state and auth chain the resident sent and our join against them, then persist
        them and the join; requests and PDUs about the room wait until the join is in. When the resident
        left the member events out (``members_omitted``), only the join is stored (aside) before we answer:
        the checked state is stored and the join completed in the background (:meth:`_finish_partial_join`)."""
        self._join_gate.complete_later(room_id)
        completing = False
        try:
            checked, state = await self._checked_state(version, room_id, response)
            auth_events = list((await self._events_by_id(event_id_list(join.get("auth_events", [])),
                                                         checked)).values())
            try:  # the join's own auth events stand in for the member events the state may omit
                check_auth_events(version, join, auth_events)
                await self._check_join(version, join, state, auth_events, checked)
            except AuthError as e:
                raise forbidden(f"The resident server's state does not allow our join: {e.reason}")
            if response.get("members_omitted") is not True:
                await self._remote.persist_external(room_id, version, [*checked.values(),
                                                                       ExternalEvent(join, state_before=state)])
                return
            await self._remote.persist_external(room_id, version, [ExternalEvent(join, outlier=True)])
            servers = [server] + [s for s in response.get("servers_in_room") or []
                                  if isinstance(s, str) and s not in (server, self.server_name)]
            await self._join_gate.record_partial_join(room_id, join["event_id"], servers)
            self.finish_partial_join(room_id, version, join["event_id"], servers, list(checked.values()))
            completing = True
        finally:
            if not completing:
                self._join_gate.completed(room_id)

    async def _events_by_id(self, event_ids, checked: dict[str, ExternalEvent]) -> dict[str, dict]:
        """PDUs by id, from the ``checked`` ones not stored yet, else from the database."""
        found = {eid: checked[eid].pdu for eid in event_ids if eid in checked}
        stored = await self._heads.get_events(eid for eid in event_ids if eid not in found)
        return {**found, **{eid: ev.pdu for eid, ev in stored.items()}}

    async def _check_join(self, version: RoomVersion, join: dict, state: dict, fallback: list[dict] = (),
                          checked: dict[str, ExternalEvent] | None = None) -> None:
        """Raise AuthError unless the room ``state`` (events of ``fallback`` for keys it lacks) allows the join;
        its events are stored or among ``checked``."""
        auth_keys = auth_types_for_event(version, join) | {("m.room.create", "")}
        state_events = await self._events_by_id([state[k] for k in auth_keys if k in state], checked or {})
        check_auth(version, join, auth_state(version, join, [*fallback, *state_events.values()]))

    async def _checked_state(self, version: RoomVersion, room_id: str, response: dict
                             ) -> tuple[dict[str, ExternalEvent], dict]:
        """Check the send_join answer's state and auth chain. Returns the events that passed, ready to store
        as outliers, and the state it gives, by key (events we hold already count too)."""
        encodings = Encodings()
        pdus, state_ids = state_answer_pdus(response, "state", version, room_id, encodings)
        good = await self._receiver.check_batch(version, room_id, list(pdus.values()), encodings)
        checked = {p["event_id"]: ExternalEvent(p, outlier=True, encoded=encodings.whole.get(p["event_id"]))
                   for p in good}
        known = await self._heads.get_events(eid for eid in state_ids if eid not in checked)
        state = {}
        for eid in state_ids:
            ev = checked[eid].pdu if eid in checked else known[eid].pdu if eid in known else None
            if ev is not None and "state_key" in ev:
                state[(ev["type"], ev["state_key"])] = eid
        create_id = create_event_id(version, room_id)
        if create_id is not None and ("m.room.create", "") not in state:
            state[("m.room.create", "")] = create_id
        if ("m.room.create", "") not in state:   # a room's state always has its create event
            raise MatrixError(502, "M_UNKNOWN", "The resident server's state of the room has no m.room.create event")
        return checked, state

    def finish_partial_join(self, room_id: str, version: RoomVersion, join_id: str, servers: list[str],
                            outliers: list[ExternalEvent] = ()) -> None:
        """Complete a join accepted with partial state, in the background (also after a restart), storing
        first the ``outliers`` its answer brought."""
        d = defer.ensureDeferred(self._finish_partial_join(room_id, version, join_id, servers, outliers))
        d.addErrback(lambda f: logger.error("Completing the join of %s failed: %s", room_id, f.getTraceback()))

    async def _finish_partial_join(self, room_id: str, version: RoomVersion, join_id: str,
                                   servers: list[str], outliers: list[ExternalEvent] = ()) -> None:
        """Fetch the whole state before our join from a server of the room (GET /state, the first time while
        the checked ``outliers`` of the join's answer are stored), check and store what we lack, check it allows
        the join, and put the join into the room with it; the room's waiting requests then go on. Retried with a
        growing delay."""
        first_fetch = None
        if servers:
            first_fetch = defer.ensureDeferred(self._receiver.fetch_state(servers[0], room_id, join_id))
        if outliers:
            try:
                await self._remote.persist_external(room_id, version, list(outliers))
            except Exception as e:  # what is missing is stored with the rest of the state
                logger.warning("Could not store the state of %s from the join: %s", room_id, e)
        delay = PARTIAL_JOIN_RETRY_S
        while True:
            for server in servers:
                try:
                    fetching, first_fetch = first_fetch or self._receiver.fetch_state(server, room_id, join_id), None
                    state = await self._receiver.store_state(version, room_id, await fetching)
                    join = (await self._heads.get_event(join_id)).pdu
                    await self._check_join(version, join, state)
                    await self._remote.persist_external(room_id, version, [ExternalEvent(join, state_before=state)])
                    await self._join_gate.end_partial_join(room_id)
                    logger.info("Joined %s with its whole state (%d events) from %s", room_id, len(state), server)
                    return
                except Exception as e:
                    logger.warning("Could not complete the join of %s through %s: %s", room_id, server, e)
            await task.deferLater(self._clock, delay, lambda: None)
            delay = min(delay * 2, PARTIAL_JOIN_RETRY_MAX_S)

    async def invite_remote(self, room_id: str, pdu: dict, version: RoomVersion) -> dict:
        """Spec PUT /v2/invite to the invitee's server; returns the event with their signature added."""
        target_server = domain_of(pdu["state_key"])
        state = await self._heads.current_state(room_id, {(t, "") for t in STRIPPED_STATE_TYPES})
        invite_room_state = [stripped(e) for e in state.values()]
        event = strip_convenience_keys(pdu, version)
        # v1 (deprecated) carries no room version: only for rooms whose events it can read (v1 and v2)
        v1_event = dict(event, unsigned=dict(event.get("unsigned") or {}, invite_room_state=invite_room_state)) \
            if version.event_format is EventFormat.V1 else None
        try:
            body = await self._put_v2_or_v1(
                target_server, f"invite/{quote(room_id)}/{quote(pdu['event_id'])}",
                {"event": event, "room_version": version.identifier, "invite_room_state": invite_room_state},
                v1_content=v1_event)
            signed = normalise_pdu(body.get("event"), version)
            validate_pdu(signed, version)
        except EventFormatError as e:   # e.g. a float in a v6+ room (Synapse answers the client so too)
            raise MatrixError(400, "M_BAD_JSON", f"The invitee's server sent an invalid invite: {e}")
        except HttpResponseError as e:
            if 400 <= e.status < 500 and (e.errcode or "").startswith("M_"):  # the invitee's server refuses
                raise MatrixError(e.status, e.errcode, str(e.body.get("error", "Refused by the invitee's server")))
            raise MatrixError(502, "M_UNKNOWN", f"The invitee's server {target_server} failed: HTTP {e.status}")
        except FederationDeniedError:
            raise forbidden(f"Federation with {target_server} is not allowed")
        except (FederationRequestError, PduRejected) as e:
            logger.info("Invite to %s failed: %s", target_server, e)
            raise MatrixError(502, "M_UNKNOWN", f"The invitee's server {target_server} gave no signed invite")
        if signed["event_id"] != pdu["event_id"]:
            raise forbidden("The invitee's server changed the invite")
        accepted, _ = await self._receiver.check_signatures([signed], version)
        if not accepted or target_server not in (signed.get("signatures") or {}):
            raise forbidden("The invitee's server did not sign the invite")
        return signed


def _refusal(reason: str, kind: str) -> MatrixError:
    """A membership event refused: 400 M_BAD_JSON when it is malformed (a float in a v6+ room, say), else
    403 M_FORBIDDEN (bad signature, not allowed)."""
    return MatrixError(400, "M_BAD_JSON", reason) if kind == "format" else forbidden(reason)
