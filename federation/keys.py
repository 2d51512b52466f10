"""Server signing keys: ours (published), others' (fetched, cached) and the notary.

Spec v1.19 server-server "Retrieving server keys": ``GET /_matrix/key/v2/server``
publishes our keys, self-signed; ``/_matrix/key/v2/query`` answers as a notary
(the origin's signed response, countersigned by us). :class:`KeyRing` finds a
server's verify key: cache, then the server itself, then the configured
``trusted_key_servers``; a key read from the cache is kept in memory for ``KEY_MEMO_MS`` (each
inbound request and PDU checks a signature). A key is accepted until the lesser of its
``valid_until_ts`` and 7 days after we fetched it; ``old_verify_keys`` until their
``expired_ts``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Awaitable, Callable

from nacl.signing import VerifyKey
from signedjson.key import get_verify_key as verify_key_of
from twisted.internet import defer
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.canonical_json import encode_canonical_json
from homeserver.events.errors import EventFormatError, SignatureError
from homeserver.events.signing import sign_json, verify_signed_json
from homeserver.lru import LruCache

logger = logging.getLogger(__name__)

OWN_KEY_VALIDITY_MS = 24 * 60 * 60 * 1000  # Synapse's key_refresh_interval default
MAX_KEY_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000  # spec: the lesser of valid_until_ts and 7 days
REFETCH_INTERVAL_MS = 30 * 1000  # at most one fetch round per (server, key id) per interval
KEY_MEMO_MS = 60 * 1000  # a stored key read is used this long before it is read again (another process may renew it)
KEY_MEMO_SERVERS = 10_000
KEY_PATH = "/_matrix/key/v2/server"
QUERY_PATH = "/_matrix/key/v2/query"


class KeyLookupError(Exception):
    """No usable verify key could be found (or a key response was invalid)."""


class ServerKeys:
    """This server's own keys and signatures."""

    def __init__(self, server_name: str, signing_key, old_keys: dict[str, tuple[VerifyKey, int]],
                 now_ms: Callable[[], int]):
        self.server_name = server_name
        self.signing_key = signing_key
        self.key_id = f"{signing_key.alg}:{signing_key.version}"
        self.verify_key = verify_key_of(signing_key)
        self.old_keys = old_keys
        self._now_ms = now_ms

    def sign(self, obj: dict) -> dict:
        return sign_json(obj, self.server_name, self.signing_key)

    def key_response(self) -> dict:
        """``GET /_matrix/key/v2/server``: current and old verify keys, self-signed."""
        return self.sign({
            "server_name": self.server_name,
            "valid_until_ts": self._now_ms() + OWN_KEY_VALIDITY_MS,
            "verify_keys": {self.key_id: {"key": encode_base64(self.verify_key.encode())}},
            "old_verify_keys": {kid: {"key": encode_base64(vk.encode()), "expired_ts": ts}
                                for kid, (vk, ts) in self.old_keys.items()},
        })

    def lookup(self, key_id: str) -> tuple[VerifyKey, int] | None:
        """One of our own keys with the time it is valid until."""
        if key_id == self.key_id:
            return self.verify_key, 2 ** 62
        return self.old_keys.get(key_id)


def keys_from_response(response: Any, server_name: str, now_ms: int) -> dict[str, tuple[VerifyKey, int]]:
    """Check a ``/_matrix/key/v2/server`` response of ``server_name`` and return its keys
    (key id -> (key, accepted until)). It must be signed by the server with a current key."""
    if not isinstance(response, dict) or response.get("server_name") != server_name:
        raise KeyLookupError(f"key response is not for {server_name}")
    valid_until = response.get("valid_until_ts")
    if isinstance(valid_until, bool) or not isinstance(valid_until, int):
        raise KeyLookupError(f"key response of {server_name} has no valid_until_ts")
    accepted_until = min(valid_until, now_ms + MAX_KEY_VALIDITY_MS)
    current = _decode_keys(response.get("verify_keys"), server_name)
    try:
        verify_signed_json(response, server_name, lambda _s, key_id: current.get(key_id))
    except (SignatureError, EventFormatError) as e:
        raise KeyLookupError(f"key response of {server_name} is not validly self-signed: {e}") from None
    keys = {key_id: (key, accepted_until) for key_id, key in current.items()}
    old = response.get("old_verify_keys")
    old_keys = _decode_keys(old, server_name) if isinstance(old, dict) else {}
    for key_id, key in old_keys.items():
        expired = old[key_id].get("expired_ts")
        if key_id not in keys and isinstance(expired, int) and not isinstance(expired, bool):
            keys[key_id] = (key, min(expired, accepted_until))
    return keys


def _decode_keys(section: Any, server_name: str) -> dict[str, VerifyKey]:
    if not isinstance(section, dict):
        raise KeyLookupError(f"key response of {server_name} has no verify_keys")
    out = {}
    for key_id, entry in section.items():
        if not key_id.startswith("ed25519:") or not isinstance(entry, dict):
            continue
        try:
            out[key_id] = VerifyKey(decode_base64(entry.get("key")))
        except Exception:
            raise KeyLookupError(f"key {key_id} of {server_name} is not a valid ed25519 key") from None
    return out


class KeyRing:
    """Finds, verifies and caches other servers' verify keys; answers notary queries."""

    def __init__(self, *, store, own: ServerKeys, client, trusted_key_servers: list[dict], now_ms: Callable[[], int]):
        self._store = store
        self._own = own
        self._notaries = [n for n in trusted_key_servers if n["server_name"] != own.server_name]
        self._now_ms = now_ms
        self.client = client  # the FederationClient
        self._inflight: dict[str, list[defer.Deferred]] = {}
        self._last_round: dict[tuple[str, str], int] = {}
        # server -> key id -> (key, valid until, when read): the keys read from the store lately
        self._read: LruCache[str, dict[str, tuple[VerifyKey, int, int]]] = LruCache(KEY_MEMO_SERVERS)

    async def get_verify_key(self, server_name: str, key_id: str, minimum_valid_until_ts: int = 0) -> VerifyKey:
        """A key of ``server_name`` valid until at least ``minimum_valid_until_ts``
        (0: any key it ever published, for room versions without key validity)."""
        own = self._own.lookup(key_id) if server_name == self._own.server_name else None
        if own is not None and own[1] >= minimum_valid_until_ts:
            return own[0]
        if server_name != self._own.server_name:
            key = await self._cached(server_name, key_id, minimum_valid_until_ts)
            if key is None and server_name in self._inflight:  # a fetch under way may bring it: wait for it
                with contextlib.suppress(Exception):
                    await self._shared(server_name, lambda: self.fetch_direct(server_name))
                key = await self._cached(server_name, key_id, minimum_valid_until_ts)
            if key is None and self._fetch_due(server_name, key_id):
                await self._shared(server_name, lambda: self._fetch_round(server_name, key_id,
                                                                          minimum_valid_until_ts))
                key = await self._cached(server_name, key_id, minimum_valid_until_ts)
            if key is not None:
                return key
        raise KeyLookupError(f"no key {key_id} of {server_name} valid until {minimum_valid_until_ts}")

    async def _cached(self, server_name: str, key_id: str, minimum: int) -> VerifyKey | None:
        now = self._now_ms()
        read = self._read.get(server_name, {}).get(key_id)
        if read is not None and read[1] >= minimum and now - read[2] < KEY_MEMO_MS:
            return read[0]
        stored = await self._store.get_verify_key(server_name, key_id)
        if stored is None or stored.valid_until_ts < minimum:
            return None
        key = VerifyKey(decode_base64(stored.verify_key))
        known = self._read.get(server_name)
        if known is None:
            self._read.put(server_name, {key_id: (key, stored.valid_until_ts, now)})
        else:
            known[key_id] = (key, stored.valid_until_ts, now)
        return key

    def _fetch_due(self, server_name: str, key_id: str) -> bool:
        """A key id we have not asked for lately: a new key (a rotation, or a server
        reinstalled under the same name) is fetched at once, a missing one not in a loop."""
        last = self._last_round.get((server_name, key_id), -REFETCH_INTERVAL_MS)
        return self._now_ms() - last >= REFETCH_INTERVAL_MS

    async def _fetch_round(self, server_name: str, key_id: str, minimum: int) -> None:
        """The server itself first, then each notary until one gives a usable key."""
        self._last_round[server_name, key_id] = self._now_ms()
        try:
            await self.fetch_direct(server_name)
            if await self._cached(server_name, key_id, minimum) is not None:
                return
        except Exception as e:
            logger.info("Fetching keys of %s directly failed: %s", server_name, e)
        for notary in self._notaries:
            if notary["server_name"] == server_name:
                continue
            try:
                await self.fetch_via_notary(notary, server_name, {key_id: minimum})
            except Exception as e:
                logger.info("Fetching keys of %s from notary %s failed: %s", server_name, notary["server_name"], e)
                continue
            if await self._cached(server_name, key_id, minimum) is not None:
                return

    async def _shared(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``make()`` once for concurrent callers with the same ``key``."""
        waiters = self._inflight.get(key)
        if waiters is not None:
            d: defer.Deferred = defer.Deferred()
            waiters.append(d)
            return await d
        waiters = self._inflight[key] = []
        try:
            result = await make()
        except Exception as e:
            del self._inflight[key]
            for d in waiters:
                d.errback(e)
            raise
        del self._inflight[key]
        for d in waiters:
            d.callback(result)
        return result

    async def fetch_direct(self, server_name: str) -> dict:
        """``GET /_matrix/key/v2/server`` from the server itself; stores and returns the response."""
        response = await self.client.get_json(server_name, KEY_PATH)
        await self._store_response(server_name, server_name, response)
        return response

    async def fetch_via_notary(self, notary: dict, server_name: str, key_ids: dict[str, int]) -> list[dict]:
        """``POST /_matrix/key/v2/query`` to a notary; each answer must carry the origin's
        self-signature and the notary's signature."""
        name = notary["server_name"]
        criteria = {key_id: {"minimum_valid_until_ts": ts} for key_id, ts in key_ids.items()}
        body = await self.client.post_json(name, QUERY_PATH, {"server_keys": {server_name: criteria}})
        responses = body.get("server_keys") if isinstance(body, dict) else None
        if not isinstance(responses, list):
            raise KeyLookupError(f"notary {name} gave no server_keys list")
        accepted = []
        for response in responses:
            if not isinstance(response, dict) or response.get("server_name") != server_name:
                continue
            await self._check_notary_signature(notary, response)
            await self._store_response(server_name, name, response)
            accepted.append(response)
        return accepted

    async def _check_notary_signature(self, notary: dict, response: dict) -> None:
        """With ``verify_keys`` configured the notary must have signed with one of them;
        otherwise with a key it publishes itself (fetched from it directly, over verified TLS)."""
        name = notary["server_name"]
        if notary.get("verify_keys"):
            keys = {kid: VerifyKey(decode_base64(b64)) for kid, b64 in notary["verify_keys"].items()}
        else:
            keys = await self._published_keys(name, response)
        try:
            verify_signed_json(response, name, lambda _server, key_id: keys.get(key_id))
        except (SignatureError, EventFormatError) as e:
            raise KeyLookupError(f"response from notary {name} is not signed by it: {e}") from None

    async def _published_keys(self, name: str, response: dict) -> dict[str, VerifyKey | None]:
        """The keys ``name`` signed ``response`` with, from our cache or fetched from it directly."""
        sigs = response.get("signatures", {}).get(name) if isinstance(response.get("signatures"), dict) else None
        if not isinstance(sigs, dict):
            raise KeyLookupError(f"response from notary {name} is not signed by it")
        keys = {}
        for key_id in sigs:
            key = await self._cached(name, key_id, self._now_ms())
            if key is None:
                await self.fetch_direct(name)
                key = await self._cached(name, key_id, self._now_ms())
            keys[key_id] = key
        return keys

    async def _store_response(self, server_name: str, from_server: str, response: Any) -> None:
        now = self._now_ms()
        keys = keys_from_response(response, server_name, now)
        try:
            await self._store.store_response(
                server_name, from_server, now, response["valid_until_ts"],
                encode_canonical_json(response).decode("utf-8"),
                {key_id: (encode_base64(key.encode()), until) for key_id, (key, until) in keys.items()})
        finally:
            self._read.pop(server_name)  # read again: what was stored may replace them

    # -- notary -------------------------------------------------------------------------------
    async def query(self, criteria: dict[str, tuple[list[str], int]]) -> list[dict]:
        """Answer ``/_matrix/key/v2/query``: ``criteria`` maps server -> (key ids wanted, none
        meaning any; the time they must be valid until). Each response is countersigned by us."""
        results = await defer.gatherResults(
            [defer.ensureDeferred(self._query_one(server, key_ids, minimum))
             for server, (key_ids, minimum) in criteria.items()],
            consumeErrors=True)
        return [response for server_results in results for response in server_results]

    async def _query_one(self, server_name: str, key_ids: list[str], minimum: int) -> list[dict]:
        if server_name == self._own.server_name:
            return [self._own.key_response()]
        now = self._now_ms()
        wanted = "query:" + ",".join(sorted(key_ids))   # throttled apart from the rounds for verifying keys
        if not _answerable(await self._store.get_responses(server_name), key_ids, minimum, now) \
                and self._fetch_due(server_name, wanted):
            self._last_round[server_name, wanted] = now
            try:
                await self._shared(server_name, lambda: self.fetch_direct(server_name))
                # Only a failed fetch holds the next one back (as Synapse, a notary asked for keys valid later
                # than it holds asks the origin again; the askers are held to rc_federation).
                self._last_round.pop((server_name, wanted), None)
            except Exception as e:  # serve what we have cached (spec: notaries keep old responses)
                logger.info("Notary: fetching keys of %s failed: %s", server_name, e)
        stored = await self._store.get_responses(server_name)
        if key_ids:  # as Synapse: the responses that hold the keys asked for, not the server's every other key
            stored = [r for r in stored if r.key_id in key_ids]
        return [self._own.sign(r) for r in _latest_responses(stored)]


def _without_signatures_of_others(response: dict, server_name: str) -> dict:
    """The origin's own view of its key response (a notary's countersignature left aside)."""
    if not isinstance(response, dict) or not isinstance(response.get("signatures"), dict):
        return response
    sigs = response["signatures"]
    return dict(response, signatures={server_name: sigs[server_name]} if server_name in sigs else {})


def _answerable(stored, wanted: list[str], minimum: int, now: int) -> bool:
    """Whether cached responses cover the query: valid long enough and younger than half their life."""
    fresh = {r.key_id for r in stored
             if r.valid_until_ts >= minimum and now < r.ts_fetched + (r.valid_until_ts - r.ts_fetched) // 2}
    return bool(fresh) and all(key_id in fresh for key_id in wanted)


def _latest_responses(stored) -> list[dict]:
    """One response per key id (the newest; ``stored`` is newest first), each distinct response once."""
    seen_keys: set[str] = set()
    seen_json: set[str] = set()
    out = []
    for r in stored:
        if r.key_id in seen_keys:
            continue
        seen_keys.add(r.key_id)
        if r.key_json not in seen_json:
            seen_json.add(r.key_json)
            response = json.loads(r.key_json)
            out.append(_without_signatures_of_others(response, response["server_name"]))
    return out
