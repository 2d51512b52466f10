"""The key server and notary (spec v1.19 server-server "Retrieving server keys") and
``GET /_matrix/federation/v1/version`` ("Server implementation"): public, unauthenticated endpoints."""

from __future__ import annotations

from federation.client import HEXAGONE_VERSION
from federation.policy import split_server_name
from homeserver.errors import MatrixError, bad_json, too_large
from homeserver.http.router import AUTH_NONE, NO_PREFIX, ApiRequest, Endpoint


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


def _now_ms(hs) -> int:
    return int(hs.reactor.seconds() * 1000)


async def server_keys(hs, req: ApiRequest):
    return hs.federation.server_keys.key_response()


async def _notary(hs, req: ApiRequest, criteria: dict) -> dict:
    """Spec "Querying Keys Through Another Server": each query may fetch from other servers, so the
    unauthenticated asker is held to ``rc_federation`` by its IP address."""
    return await hs.ratelimit.key_server.run(
        req.client_ip, lambda: hs.federation.keyring.query(criteria))


async def query_one(hs, req: ApiRequest):
    """GET /query/{serverName}, and the deprecated /query/{serverName}/{keyId} (still asked by older servers,
    served by Synapse)."""
    server_name = _server_name_param(req.path_params["serverName"])
    minimum = req.int_arg("minimum_valid_until_ts", _now_ms(hs))
    key_ids = [req.path_params["keyId"]] if req.path_params.get("keyId") else []
    return {"server_keys": await _notary(hs, req, {server_name: (key_ids, minimum)})}


async def query_batch(hs, req: ApiRequest):
    return {"server_keys": await _notary(hs, req, _criteria(req.json(), _now_ms(hs)))}


async def version(hs, req: ApiRequest):
    # Needs no authentication, but a request that is signed must be signed correctly (as Synapse does).
    if req.headers.get("authorization", "").lower().startswith("x-matrix"):
        req.origin = await hs.federation.authenticator.authenticate(req)
    return {"server": {"name": "Hexagone", "version": HEXAGONE_VERSION}}


ROUTES = [
    Endpoint("GET", "/_matrix/key/v2/server", server_keys, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/_matrix/key/v2/server/{keyId}", server_keys, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/_matrix/key/v2/query/{serverName}", query_one, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/_matrix/key/v2/query/{serverName}/{keyId}", query_one, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("POST", "/_matrix/key/v2/query", query_batch, auth=AUTH_NONE, prefixes=NO_PREFIX),
    Endpoint("GET", "/_matrix/federation/v1/version", version, auth=AUTH_NONE, prefixes=NO_PREFIX),
]
