"""Receiving PDUs from other servers (server-server "Checks performed on receipt of a PDU").

The numbered steps follow the spec:
1-3. format, signatures, hashes (pdu_checks);
4. auth against the event's own auth events;
5. auth against the state before the event (state resolution over its prev events; for an event pushed to
   us (/send, /invite), missing prev events come from /get_missing_events, and one still missing then
   rejects it (as Synapse: the sender must divulge them); for an event pulled with /get_missing_events, the
   state after a prev event we lack comes from /state_ids);
6. auth against the current state: failing only this soft-fails the event.
The state before the event (5's prev events and gaps) is computed before 4, as Synapse does: a rejected
event has one too. An event that fails 4 or 5 is rejected: remembered (``RejectedEventStore``) but never used
as an auth event nor shown; as a later event's prev event, the state after it is the state before it
(remembered with it).
Then the server's own policy (room access rules, ``membership_policy``): a join or invite it refuses, relayed
in a transaction, is rejected as one sent to /invite or /send_join would be.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from federation.paths import segment as quote

from federation.handlers.pdu_checks import (Encodings, PduRejected, Reason, check_signatures_and_hashes,
                                            normalise_pdu)
from federation.rejections import FederationRejections
from homeserver.events.auth_rules import auth_types_for_event, check_auth, check_auth_events
from homeserver.events.builder import create_event_id_from_room_id, event_id_list
from homeserver.events.errors import AuthError
from homeserver.errors import MatrixError, Unavailable
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.lru import LruCache
from homeserver.services.room_events.gate import JoinGate
from homeserver.services.room_events.heads import RoomHeads
from homeserver.services.room_events.remote import ExternalEvent, RemotePersistence
from homeserver.storage.rejected_events import RejectedEventStore

logger = logging.getLogger(__name__)

MAX_MISSING_EVENTS = 20
MAX_AUTH_FETCH = 200
FETCH_ONE_BY_ONE = 20  # more missing state events than this are fetched with one GET /state
ANSWERED_TRANSACTIONS = 10_000  # answers kept to answer a retried /send the same
AUTH_REJECTIONS = frozenset({"auth_events", "state_before"})  # refused by the auth rules (spec checks 4 and 5)


def room_id_of(pdu: dict) -> str | None:
    room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
    return room_id if isinstance(room_id, str) else None


def state_answer_pdus(body: dict, state_section: str, version: RoomVersion, room_id: str,
                      encodings: Encodings) -> tuple[dict[str, dict], list[str]]:
    """The PDUs of an answer carrying room state (GET /state's ``pdus``, send_join's ``state``) and its
    ``auth_chain``, normalised, of this room only, by event id (auth chain first); and the state's ids."""
    pdus: dict[str, dict] = {}
    state_ids: list[str] = []
    for section in ("auth_chain", state_section):
        for raw in body.get(section) or []:
            try:
                pdu = normalise_pdu(raw, version, encodings)
            except PduRejected:
                continue
            if room_id_of(pdu) in (room_id, None):
                pdus[pdu["event_id"]] = pdu
                if section == state_section:
                    state_ids.append(pdu["event_id"])
    return pdus, state_ids


class PduReceiver:
    def __init__(self, *, room_heads: RoomHeads, remote: RemotePersistence, join_gate: JoinGate, key_fetcher,
                 threads, client, server_name: str, rejections: FederationRejections,
                 edu_handlers: dict[str, Callable[[str, dict], Awaitable]], rejected: RejectedEventStore,
                 acl=None, membership_policy=None, room_policy=None):
        """``edu_handlers``: EDU type -> async handler(origin, content) (``federation.handlers.edus``);
        ``threads``: the worker threads that check large batches of PDUs."""
        self._heads = room_heads
        self._remote = remote
        self._join_gate = join_gate
        self._keys = key_fetcher
        self._threads = threads
        self._client = client
        self.server_name = server_name
        self._rejections = rejections
        self._rejected = rejected
        self._acl = acl  # callable(origin, room_id) -> awaitable bool, or None
        # async (room_id, sender, target, membership, origin): raises MatrixError to refuse, or None
        self._membership_policy = membership_policy
        # RoomPolicy.check_remote: (allowed, PDU with the policy server's signature), or None
        self._room_policy = room_policy
        self.edu_handlers = edu_handlers
        self._answered: LruCache[tuple[str, str], dict] = LruCache(ANSWERED_TRANSACTIONS)  # (origin, txnId)

    # -- /send ----------------------------------------------------------------------------------
    async def on_transaction_once(self, origin: str, txn_id: str, body: dict) -> tuple[dict, bool]:
        """A transaction is processed once per (origin, txnId) (spec "Transactions"): the answer, and
        whether this was its first delivery. The last ANSWERED_TRANSACTIONS answers are kept."""
        key = (origin, txn_id)
        if key in self._answered:
            return self._answered.peek(key), False  # peek: the oldest answers go first
        result = await self.on_transaction(origin, body)
        self._answered.put(key, result)
        return result, True

    async def on_transaction(self, origin: str, body: dict) -> dict:
        """Spec PUT /_matrix/federation/v1/send/{txnId}: per-PDU results (an ``error`` for a PDU that could
        not be processed); EDUs dispatched by type.
        The PDUs of a room are handled parents first, whatever their order in the transaction."""
        results: dict[str, dict] = {}
        encodings = Encodings()
        batch = self._remote.batch()  # an inbound federation worker's: main persists the messages together
        for version, pdu in await self._transaction_pdus(origin, body.get("pdus") or [], encodings):
            try:
                if self._acl is not None and not await self._acl(origin, pdu["room_id"]):
                    raise PduRejected("server is denied by the room's server ACL", "server_acl")
                await self.handle_pdu(origin, version, pdu, encodings=encodings, batch=batch)
                results[pdu["event_id"]] = {}
            except PduRejected as e:
                self._rejections.pdu(origin, pdu["event_id"], e.reason, e.kind)
                # A PDU the auth rules reject was processed (as Synapse, which answers {} for it and stores it
                # as rejected); one that could not be checked at all (signature, format, ACL, ...) is an error.
                results[pdu["event_id"]] = {} if e.kind in AUTH_REJECTIONS else {"error": e.reason}
            except Unavailable:
                raise  # the whole transaction is answered 503: the origin sends it again
            except Exception as e:
                logger.exception("Failed to handle PDU %s from %s", pdu.get("event_id"), origin)
                self._rejections.counter.inc("internal_error")
                results[pdu["event_id"]] = {"error": f"internal error: {e}"}
        if batch is not None:
            try:
                await batch.flush()
            except Unavailable:
                raise
            except Exception:
                logger.exception("Failed to persist PDUs from %s", origin)
            for event_id in batch.failed:
                results[event_id] = {"error": "internal error: not persisted"}
        for edu in body.get("edus") or []:
            await self._dispatch_edu(origin, edu)
        return {"pdus": results}

    async def _transaction_pdus(self, origin: str, raws: list, encodings: Encodings) -> list[tuple]:
        """(room version, normalised PDU) for each PDU of a transaction about a room we are in, each once,
        every PDU after those of the transaction it names as prev events."""
        by_id: dict[str, dict] = {}
        versions: dict[str, RoomVersion] = {}
        for raw in raws:
            room_id = room_id_of(raw)
            version = await self._heads.room_version(room_id) if room_id else None
            try:
                if version is None:
                    raise PduRejected(f"not a room this server is in: {room_id!r:.200}", "unknown_room")
                pdu = normalise_pdu(raw, version, encodings)
            except PduRejected as e:
                claimed_id = raw.get("event_id") if isinstance(raw, dict) else None
                self._rejections.pdu(origin, claimed_id if isinstance(claimed_id, str) else None, e.reason, e.kind)
                continue
            by_id.setdefault(pdu["event_id"], pdu)
            versions[pdu["event_id"]] = version
        return [(versions[p["event_id"]], p) for p in _dag_order(by_id, "prev_events")]

    async def _dispatch_edu(self, origin: str, edu) -> None:
        if not isinstance(edu, dict) or not isinstance(edu.get("content"), dict):
            self._rejections.edu(origin, "(unknown)", f"not an EDU: {edu!r:.200}", "edu_invalid")
            return
        handler = self.edu_handlers.get(edu.get("edu_type"))
        if handler is None:
            return
        try:
            await handler(origin, edu["content"])
        except Unavailable:
            raise
        except Exception:
            logger.exception("EDU %s from %s failed", edu.get("edu_type"), origin)

    # -- one PDU ---------------------------------------------------------------------------------
    async def handle_pdu(self, origin: str, version: RoomVersion, pdu: dict, *, pulled: bool = False,
                         encodings: Encodings | None = None, batch=None) -> None:
        """Check and store one PDU. ``pulled``: it came from /get_missing_events (or a send_join), so the state
        after a prev event we lack is asked with /state_ids; else (pushed to us) the gap is fetched with
        /get_missing_events, and a prev event still missing then rejects the event. ``batch``: the
        transaction's PersistBatch (an inbound federation worker's), else None."""
        room_id = pdu["room_id"]
        await self._join_gate.settled(room_id)  # a join of ours still completing decides the state before it
        pending = batch.pending if batch is not None else {}
        if pdu["event_id"] in pending:
            return
        known = await self._heads.get_event(pdu["event_id"])
        if known is not None and not _without_state(known):
            return
        if await self._rejected.get([pdu["event_id"]]):
            raise PduRejected("rejected already", "auth_events")
        encodings = encodings if encodings is not None else Encodings()
        accepted, rejected = await self.check_signatures([pdu], version, encodings)
        if not accepted:
            reason = next(iter(rejected.values()), Reason("signature check failed", "signature"))
            raise PduRejected(reason, reason.kind)
        pdu = accepted[0]
        # The state before it first (its prev events fetched, as Synapse): even a rejected event has one, the
        # state after it for a later event that names it as a prev event.
        state_before, group = await self._state_before(origin, version, pdu, pulled, pending)
        auth_events = await self._auth_events(origin, version, pdu, (state_before, group))
        create = await self._create_pdu(version, room_id)
        try:
            check_auth_events(version, pdu, auth_events.values())
            check_auth(version, pdu, auth_state(version, pdu, list(auth_events.values()) + [create]))
        except AuthError as e:
            await self._reject(pdu, f"auth events forbid it: {e.reason}", "auth_events", (state_before, group))
        state_events = await self._heads.get_events(
            state_before[k] for k in _auth_keys(version, pdu) if k in state_before)
        try:
            check_auth(version, pdu, auth_state(version, pdu, [e.pdu for e in state_events.values()]))
        except AuthError as e:
            await self._reject(pdu, f"state before the event forbids it: {e.reason}", "state_before",
                               (state_before, group))
        await self._check_redaction_target(version, pdu, (state_before, group))
        await self._check_policy(origin, room_id, pdu)
        soft_failed = not await self._allowed_by_current_state(room_id, version, pdu)
        why = "the current state forbids it"
        encoded = encodings.whole.get(pdu["event_id"])
        if not soft_failed and self._room_policy is not None:
            # Spec server-server "Policy Servers": without a valid signature of the room's policy server
            # (on the event, or asked for now) the event is soft-failed (as Synapse). One obtained is kept.
            allowed, signed = await self._room_policy(room_id, version, pdu)
            if signed is not pdu:
                pdu, encoded = signed, None
            if not allowed:
                soft_failed, why = True, "no signature of the room's policy server"
        if soft_failed:
            self._rejections.soft_failed(origin, pdu["event_id"], why)
        item = ExternalEvent(pdu, state_before=state_before, state_before_group=group, soft_failed=soft_failed,
                             encoded=encoded)
        if batch is not None:
            await batch.persist(room_id, version, pdu["event_id"], item)
        else:
            await self._remote.persist_external(room_id, version, [item])

    async def _reject(self, pdu: dict, reason: str, kind: str, state: tuple[dict, int | None]) -> None:
        """Remember that the auth rules rejected ``pdu`` with ``state``, the state before it (by key, and its
        stored group if it is one): the state after it, for a later event naming it as a prev event. Then
        raise its PduRejected."""
        await self._rejected.add(pdu["event_id"], pdu["room_id"], state[1], state[0], reason, self._heads.now_ms())
        raise PduRejected(reason, kind)

    async def _check_redaction_target(self, version: RoomVersion, pdu: dict, state: tuple[dict, int | None]) -> None:
        """A redaction of an event of another room, or of a create event, is rejected: Synapse withholds such
        a redaction from every read (clients and servers), which is what a rejected event is here."""
        if pdu["type"] != "m.room.redaction":
            return
        target_id = pdu.get("content", {}).get("redacts") if version.redacts_in_content else pdu.get("redacts")
        target = await self._heads.get_event(target_id) if isinstance(target_id, str) else None
        if target is not None and (target.room_id != pdu["room_id"] or target.type == "m.room.create"):
            await self._reject(pdu, f"it redacts {target_id}, an event of another room or a create event",
                               "auth_events", state)

    async def _check_policy(self, origin: str, room_id: str, pdu: dict) -> None:
        membership = pdu.get("content", {}).get("membership")
        if self._membership_policy is None or pdu["type"] != "m.room.member" or membership not in ("join", "invite"):
            return
        try:
            await self._membership_policy(room_id, pdu["sender"], pdu["state_key"], membership, origin)
        except MatrixError as e:
            raise PduRejected(e.error, "access_rules") from None

    async def _create_pdu(self, version: RoomVersion, room_id: str) -> dict | None:
        """The room's create event (room v12 no longer lists it among auth events)."""
        create_id = create_event_id(version, room_id)
        if create_id is not None:
            ev = await self._heads.get_event(create_id)
        else:
            ev = await self._heads.current_state_event(room_id, "m.room.create", "")
        return None if ev is None else ev.pdu

    async def _allowed_by_current_state(self, room_id: str, version: RoomVersion, pdu: dict) -> bool:
        current = await self._heads.current_state(room_id, _auth_keys(version, pdu))
        try:
            check_auth(version, pdu, auth_state(version, pdu, [e.pdu for e in current.values()]))
            return True
        except AuthError:
            return False

    async def _auth_events(self, origin: str, version: RoomVersion, pdu: dict,
                           state: tuple[dict, int | None]) -> dict[str, dict]:
        """The event's auth events, fetched from the origin (and stored as outliers) when we lack them. One that
        was rejected rejects the event (room versions' auth rules: "entries which were themselves rejected")."""
        ids = event_id_list(pdu.get("auth_events", []))
        have = await self._heads.get_events(ids)
        missing = [i for i in ids if i not in have]
        rejected = await self._rejected.get(missing)
        if rejected:
            await self._reject(pdu, f"auth event {next(iter(rejected))} was rejected", "auth_events", state)
        if missing:
            await self.fetch_outliers(origin, version, pdu["room_id"], missing)
            have = await self._heads.get_events(ids)
        return {i: have[i].pdu for i in ids if i in have}

    async def fetch_outliers(self, origin: str, version: RoomVersion, room_id: str, event_ids: list[str]) -> None:
        """Fetch events and their missing auth chains with /event, check them, store them as outliers."""
        fetched: dict[str, dict] = {}
        queue = list(event_ids)
        while queue and len(fetched) < MAX_AUTH_FETCH:
            eid = queue.pop()
            if eid in fetched or await self._heads.get_event(eid) is not None:
                continue
            try:
                body = await self._client.get_json(origin, f"/_matrix/federation/v1/event/{quote(eid)}")
                pdu = normalise_pdu((body.get("pdus") or [None])[0], version)
            except PduRejected:
                continue
            except Exception as e:
                logger.info("Could not fetch %s from %s: %s", eid, origin, e)
                continue
            if pdu["event_id"] != eid or room_id_of(pdu) not in (room_id, None):
                continue
            fetched[eid] = pdu
            queue.extend(event_id_list(pdu.get("auth_events", [])))
        await self.store_outliers(version, room_id, list(fetched.values()))

    async def store_outliers(self, version: RoomVersion, room_id: str, pdus: list[dict],
                             encodings: Encodings | None = None) -> list[str]:
        """Check outliers and store the good ones. Returns the ids stored."""
        encodings = encodings if encodings is not None else Encodings()
        good = await self.check_batch(version, room_id, pdus, encodings)
        if good:
            await self._remote.persist_external(room_id, version, [
                ExternalEvent(p, outlier=True, encoded=encodings.whole.get(p["event_id"])) for p in good])
        return [p["event_id"] for p in good]

    async def check_signatures(self, pdus: list[dict], version: RoomVersion,
                               encodings: Encodings | None = None) -> tuple[list[dict], dict]:
        """Steps 1-3 of "Checks performed on receipt of a PDU" (:func:`check_signatures_and_hashes`)."""
        return await check_signatures_and_hashes(pdus, version, self._keys, self._threads, encodings)

    async def check_batch(self, version: RoomVersion, room_id: str, pdus: list[dict],
                          encodings: Encodings | None = None) -> list[dict]:
        """Signatures, hashes, and auth against each event's own auth events (from the batch or stored),
        in auth order. Returns the PDUs that pass."""
        accepted, rejected = await self.check_signatures(pdus, version, encodings)
        for eid, reason in rejected.items():
            logger.info("Rejected %s: %s", eid, reason)
        by_id = {p["event_id"]: p for p in accepted}
        available = {eid: ev.pdu for eid, ev in (await self._heads.get_events(
            a for p in accepted for a in event_id_list(p.get("auth_events", [])))).items()}
        create = by_id.get(create_event_id(version, room_id)) or await self._create_pdu(version, room_id)
        good: list[dict] = []
        for pdu in _dag_order(by_id, "auth_events"):
            auth = {a: available[a] for a in event_id_list(pdu.get("auth_events", [])) if a in available}
            try:
                check_auth_events(version, pdu, auth.values())
                check_auth(version, pdu, auth_state(version, pdu, list(auth.values()) + [create]))
            except AuthError as e:
                logger.info("Rejected %s: %s", pdu["event_id"], e.reason)
                continue
            available[pdu["event_id"]] = pdu
            good.append(pdu)
        return good

    async def backfill(self, room_id: str, servers: list[str], from_ids: list[str] | None = None) -> bool:
        """Spec GET /backfill: fetch history from ``from_ids`` (events we lack), else older than the earliest
        events we hold. True if any came."""
        version = await self._heads.room_version(room_id)
        if from_ids is None:
            oldest = await self._heads.oldest_events(room_id)
            from_ids = [p for ev in oldest for p in event_id_list(ev.pdu.get("prev_events", []))]
        have = await self._heads.get_events(from_ids)
        missing = sorted({p for p in from_ids if p not in have or have[p].outlier})
        if version is None or not missing:
            return False
        for server in servers:
            try:
                body = await self._client.get_json(server, f"/_matrix/federation/v1/backfill/{quote(room_id)}",
                                                   {"v": missing, "limit": "50"})
            except Exception as e:
                logger.info("Backfill from %s failed: %s", server, e)
                continue
            pdus = []
            for raw in body.get("pdus") or []:
                try:
                    pdu = normalise_pdu(raw, version)
                except PduRejected:
                    continue
                if room_id_of(pdu) == room_id and pdu["event_id"] not in have:
                    pdus.append(pdu)
            known = await self._heads.get_events(p["event_id"] for p in pdus)
            pdus = [p for p in pdus if p["event_id"] not in known or known[p["event_id"]].outlier]  # outliers join the timeline
            await self._fetch_auth_events_for(server, version, room_id, pdus)
            good = await self.check_batch(version, room_id, pdus)
            if good:
                await self._remote.persist_backfilled(room_id, version, good)
                return True
        return False

    async def _fetch_auth_events_for(self, origin: str, version: RoomVersion, room_id: str, pdus: list[dict]) -> None:
        ids = {a for p in pdus for a in event_id_list(p.get("auth_events", []))} - {p["event_id"] for p in pdus}
        have = await self._heads.get_events(ids)
        missing = [i for i in ids if i not in have]
        if missing:
            await self.fetch_outliers(origin, version, room_id, missing)

    async def _prev_events(self, prev_ids: list[str], pending: dict) -> tuple[dict, dict, list[str]]:
        """The prev events we hold with their state (``pending``: checked and not yet persisted, by id), those
        we rejected (as :meth:`RejectedEventStore.get`), and the ids of the others (missing, or held without
        state)."""
        prevs = await self._heads.events_incl_pending(prev_ids, pending)
        rejected = await self._rejected.get(p for p in prev_ids if p not in prevs)
        missing = [p for p in prev_ids if p not in rejected and (p not in prevs or _without_state(prevs[p]))]
        return prevs, rejected, missing

    async def _state_before(self, origin: str, version: RoomVersion, pdu: dict,
                            pulled: bool, pending: dict) -> tuple[dict, int | None]:
        """State before the event: the resolution of the state after each prev event."""
        prev_ids = event_id_list(pdu.get("prev_events", []))
        prevs, rejected, missing = await self._prev_events(prev_ids, pending)
        if missing and not pulled:
            await self._fetch_missing(origin, version, pdu)
            prevs, rejected, missing = await self._prev_events(prev_ids, pending)
            if missing:  # pushed to us: the sender holds them, and would not give them (Synapse rejects it so)
                raise PduRejected(f"its prev events {', '.join(missing)[:300]} are missing, and "
                                  f"/get_missing_events did not give them", "missing_prev")
        state_sets = []
        for pid in prev_ids:
            if pid in missing:
                try:
                    state_sets.append(await self._remote_state_after(origin, version, pdu["room_id"], pid))
                except Exception as e:  # the origin cannot (or will not) say what the state was there
                    raise PduRejected(f"no state for its prev event {pid}: {str(e)[:200]}", "missing_prev")
            elif pid in rejected:
                state_sets.append(await self._state_after_rejected(pdu["room_id"], pid, rejected[pid]))
            else:
                state_sets.append(await self._heads.state_at_group(prevs[pid].state_group, pdu["room_id"]))
        if len(prev_ids) == 1 and prev_ids[0] in prevs and not missing:
            return state_sets[0], prevs[prev_ids[0]].state_group
        return await self._heads.resolve(version, state_sets), None

    async def _state_after_rejected(self, room_id: str, event_id: str,
                                    rejected: tuple[str, int | None, dict | None]) -> dict:
        """The state after a rejected event: the state before it, as remembered."""
        rejected_room, group, state = rejected
        if rejected_room != room_id:
            raise PduRejected(f"its prev event {event_id} is of another room", "missing_prev")
        if group is not None:
            return await self._heads.state_at_group(group)
        if state is None:
            raise PduRejected(f"no state for its rejected prev event {event_id}", "missing_prev")
        return dict(state)

    async def _fetch_missing(self, origin: str, version: RoomVersion, pdu: dict) -> None:
        """Spec POST /get_missing_events: fill the gap between our extremities and the event."""
        room_id = pdu["room_id"]
        extremities = await self._heads.forward_extremities(room_id)
        try:
            body = await self._client.post_json(
                origin, f"/_matrix/federation/v1/get_missing_events/{quote(room_id)}",
                {"earliest_events": extremities, "latest_events": [pdu["event_id"]],
                 "limit": MAX_MISSING_EVENTS, "min_depth": 0})
        except Exception as e:
            logger.info("get_missing_events from %s failed: %s", origin, e)
            return
        events = []
        for raw in body.get("events") or []:
            try:
                events.append(normalise_pdu(raw, version))
            except PduRejected:
                continue
        for missing_pdu in sorted(events, key=lambda p: p.get("depth", 0)):
            if room_id_of(missing_pdu) != room_id:
                continue
            try:
                await self.handle_pdu(origin, version, missing_pdu, pulled=True)
            except PduRejected as e:
                self._rejections.pdu(origin, missing_pdu["event_id"], e.reason, e.kind)

    async def _remote_state_after(self, origin: str, version: RoomVersion, room_id: str, event_id: str) -> dict:
        """The state after ``event_id`` according to ``origin``: the state before it, plus the event itself."""
        state = await self.remote_state_before(origin, version, room_id, event_id)
        if await self._heads.get_event(event_id) is None:
            await self.fetch_outliers(origin, version, room_id, [event_id])
        ev = await self._heads.get_event(event_id)
        if ev is not None and ev.state_key is not None:
            state[(ev.type, ev.state_key)] = event_id
        return state

    async def remote_state_before(self, origin: str, version: RoomVersion, room_id: str, event_id: str) -> dict:
        """Spec GET /state_ids: the state before ``event_id``; the events we lack are fetched, checked and
        stored (all at once with GET /state when there are many, else one by one with GET /event)."""
        body = await self._client.get_json(origin, f"/_matrix/federation/v1/state_ids/{quote(room_id)}",
                                           {"event_id": event_id})
        ids = [i for i in (body.get("pdu_ids") or []) if isinstance(i, str)]
        wanted = ids + [i for i in (body.get("auth_chain_ids") or []) if isinstance(i, str)]
        have = await self._heads.get_events(wanted)
        missing = [i for i in wanted if i not in have]
        if len(missing) > FETCH_ONE_BY_ONE:
            await self.store_state(version, room_id, await self.fetch_state(origin, room_id, event_id), set(missing))
        elif missing:
            await self.fetch_outliers(origin, version, room_id, missing)
        return await self._state_by_key(ids)

    async def fetch_state(self, origin: str, room_id: str, event_id: str) -> dict:
        """Spec GET /state: the state before ``event_id`` and its auth chain, as the server sent them."""
        return await self._client.get_json(origin, f"/_matrix/federation/v1/state/{quote(room_id)}",
                                           {"event_id": event_id})

    async def store_state(self, version: RoomVersion, room_id: str, body: dict,
                          wanted: set[str] | None = None) -> dict:
        """Check and store the events of a GET /state answer (the ``wanted`` ones, else those we lack). Returns
        the state it gives, by key, of the events we now hold."""
        encodings = Encodings()
        pdus, state_ids = state_answer_pdus(body, "pdus", version, room_id, encodings)
        if wanted is None:
            wanted = pdus.keys() - (await self._heads.get_events(pdus)).keys()
        await self.store_outliers(version, room_id, [p for eid, p in pdus.items() if eid in wanted], encodings)
        return await self._state_by_key(state_ids)

    async def _state_by_key(self, event_ids: list[str]) -> dict:
        have = await self._heads.get_events(event_ids)
        return {(ev.type, ev.state_key): eid for eid in event_ids
                if (ev := have.get(eid)) is not None and ev.state_key is not None}


def create_event_id(version: RoomVersion, room_id: str) -> str | None:
    """For room versions whose room id is the create event's hash, that event's id."""
    return create_event_id_from_room_id(room_id) if version.room_id_from_create_event else None


def _without_state(event) -> bool:
    """An outlier: an event whose state we do not know (a soft-failed event has its state, and counts)."""
    return event.outlier and event.state_group is None


def _auth_keys(version: RoomVersion, pdu: dict) -> set:
    return set(auth_types_for_event(version, pdu)) | {("m.room.create", "")}


def auth_state(version: RoomVersion, pdu: dict, events) -> dict:
    """The (type, state_key) -> PDU map that check_auth wants, from a list of candidate events."""
    keys = _auth_keys(version, pdu)
    state = {}
    for ev in events:
        if ev is None or "state_key" not in ev:
            continue
        key = (ev["type"], ev["state_key"])
        if key in keys:
            state[key] = ev
    return state


def _dag_order(by_id: dict[str, dict], parents: str) -> list[dict]:
    """Events ordered so that each comes after those of the batch it names in ``parents`` (``auth_events``
    or ``prev_events``)."""
    ordered, seen = [], set()

    def visit(eid: str, stack: set) -> None:
        if eid in seen or eid in stack or eid not in by_id:
            return
        stack.add(eid)
        for parent in event_id_list(by_id[eid].get(parents, [])):
            visit(parent, stack)
        stack.discard(eid)
        seen.add(eid)
        ordered.append(by_id[eid])

    for eid in sorted(by_id, key=lambda i: d if isinstance(d := by_id[i].get("depth"), int) else 0):
        visit(eid, set())
    return ordered


def version_of(identifier: str) -> RoomVersion | None:
    return KNOWN_ROOM_VERSIONS.get(identifier)
