"""The federation transport assembled for one homeserver, and its own endpoints.

:func:`build_transport` wires keys, the outbound client, the sender and the
inbound request authenticator from the configuration. :func:`register` adds
the key server / notary (spec v1.19 server-server "Retrieving server keys")
and ``GET /_matrix/federation/v1/version`` ("Server implementation").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from federation.client import HEXAGONE_VERSION, FederationClient
from federation.keys import KeyRing, ServerKeys, parse_old_signing_keys
from federation.policy import IpRangeFilter, split_server_name
from federation.request_auth import FederationAuthenticator
from federation.sender import FederationSender
from federation.tls import ClientTlsPolicy
from homeserver.errors import MatrixError, bad_json, too_large
from homeserver.http.router import AUTH_NONE, ApiRequest, Router
from homeserver.storage.federation_queue import FederationQueueStore
from homeserver.storage.server_keys import ServerKeyStore
from homeserver.storage.streams import StreamIdGenerator

logger = logging.getLogger(__name__)


@dataclass
class FederationTransport:
    server_keys: ServerKeys
    keyring: KeyRing
    client: FederationClient
    sender: FederationSender
    authenticator: FederationAuthenticator


def build_transport(config, reactor, db, signing_key) -> FederationTransport:
    def now_ms() -> int:
        return int(reactor.seconds() * 1000)

    server_keys = ServerKeys(config.server_name, signing_key, parse_old_signing_keys(config.raw), now_ms)
    if any(n["server_name"] == "matrix.org" for n in config.trusted_key_servers) \
            and not config.suppress_key_server_warning:
        logger.warning("This server trusts matrix.org to vouch for other servers' signing keys "
                       "(trusted_key_servers); set suppress_key_server_warning: true to silence this")
    keyring = KeyRing(store=ServerKeyStore(db), own=server_keys, trusted_key_servers=config.trusted_key_servers,
                      now_ms=now_ms)
    client = FederationClient(
        reactor=reactor, server_name=config.server_name, signing_key=signing_key,
        tls_policy=ClientTlsPolicy(verify=config.federation_verify_certificates,
                                   ca_files=config.federation_custom_ca_list,
                                   minimum_version=config.federation_client_minimum_tls_version),
        ip_filter=(IpRangeFilter(config.ip_range_blacklist, config.ip_range_whitelist)
                   if config.federation_ip_range_blacklist is None
                   else IpRangeFilter(config.federation_ip_range_blacklist)),
        whitelist=config.federation_domain_whitelist, now_ms=now_ms)
    keyring.client = client
    queue = FederationQueueStore(db)
    sender = FederationSender(reactor=reactor, store=queue, client=client, server_name=config.server_name,
                              whitelist=config.federation_domain_whitelist, now_ms=now_ms,
                              positions=StreamIdGenerator(queue.max_position_sync()))
    authenticator = FederationAuthenticator(server_name=config.server_name, keyring=keyring,
                                            whitelist=config.federation_domain_whitelist, now_ms=now_ms,
                                            on_origin=sender.wake)
    return FederationTransport(server_keys, keyring, client, sender, authenticator)


def _server_name_param(value: str) -> str:
    try:
        split_server_name(value)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", f"{value!r} is not a server name") from None
    return value


# One unauthenticated notary query fans out to each server it names: at most this many servers, key ids in all.
MAX_QUERY_SERVERS = 100
MAX_QUERY_KEY_IDS = 1000


def _criteria(body: dict, now: int) -> dict[str, tuple[list[str], int]]:
    """``POST /query`` body -> server -> (key ids, the latest minimum_valid_until_ts; now if none).

    More than ``MAX_QUERY_SERVERS`` servers or ``MAX_QUERY_KEY_IDS`` key ids: 413 M_TOO_LARGE (the spec sets
    no limit; the request is refused as too large rather than cut)."""
    server_keys = body.get("server_keys")
    if not isinstance(server_keys, dict):
        raise bad_json("server_keys must be an object")
    if len(server_keys) > MAX_QUERY_SERVERS or \
            sum(len(k) for k in server_keys.values() if isinstance(k, dict)) > MAX_QUERY_KEY_IDS:
        raise too_large(f"at most {MAX_QUERY_SERVERS} servers and {MAX_QUERY_KEY_IDS} key ids per query")
    out = {}
    for server_name, keys in server_keys.items():
        if not isinstance(keys, dict):
            raise bad_json(f"server_keys.{server_name} must be an object")
        minimum = now
        for key_id, criteria in keys.items():
            ts = criteria.get("minimum_valid_until_ts") if isinstance(criteria, dict) else None
            if not isinstance(criteria, dict) or ts is not None and (isinstance(ts, bool) or not isinstance(ts, int)):
                raise bad_json(f"server_keys.{server_name}.{key_id} must be {{minimum_valid_until_ts: int}}")
            minimum = max(minimum, ts or 0)
        out[_server_name_param(server_name)] = (list(keys), minimum)
    return out


def register(router: Router, hs) -> None:
    transport: FederationTransport = hs.federation

    def now_ms() -> int:
        return int(hs.reactor.seconds() * 1000)

    async def server_keys(req: ApiRequest):
        return transport.server_keys.key_response()

    async def notary(req: ApiRequest, criteria: dict) -> dict:
        """Spec "Querying Keys Through Another Server": each query may fetch from other servers, so the
        unauthenticated asker is held to ``rc_federation`` by its IP address."""
        return await hs.ratelimit.key_server.run(
            req.client_ip, lambda: transport.keyring.query(criteria))

    async def query_one(req: ApiRequest):
        server_name = _server_name_param(req.path_params["serverName"])
        minimum = req.int_arg("minimum_valid_until_ts", now_ms())
        return {"server_keys": await notary(req, {server_name: ([], minimum)})}

    async def query_batch(req: ApiRequest):
        return {"server_keys": await notary(req, _criteria(req.json(), now_ms()))}

    async def version(req: ApiRequest):
        # Needs no authentication, but a request that is signed must be signed correctly (as Synapse does).
        if req.headers.get("authorization", "").lower().startswith("x-matrix"):
            req.origin = await transport.authenticator.authenticate(req)
        return {"server": {"name": "Hexagone", "version": HEXAGONE_VERSION}}

    router.add("GET", "/_matrix/key/v2/server", server_keys, auth=AUTH_NONE)
    router.add("GET", "/_matrix/key/v2/server/{keyId}", server_keys, auth=AUTH_NONE)
    router.add("GET", "/_matrix/key/v2/query/{serverName}", query_one, auth=AUTH_NONE)
    router.add("POST", "/_matrix/key/v2/query", query_batch, auth=AUTH_NONE)
    router.add("GET", "/_matrix/federation/v1/version", version, auth=AUTH_NONE)
