"""Inbound server-server endpoints (spec v1.19 server-server API), all behind X-Matrix auth."""

from __future__ import annotations

from functools import partial

from homeserver.bodies import RawBody, encode_json
from homeserver.errors import MatrixError, forbidden
from homeserver.events.identifiers import domain_of
from homeserver.http.router import AUTH_NONE, AUTH_SERVER, NO_PREFIX, ApiRequest, Endpoint
from homeserver.services.directory import public_rooms_body, public_rooms_network

PREFIX = "/_matrix/federation"
MAX_TXN_PDUS = 50  # spec "Transactions"
MAX_TXN_EDUS = 100


async def _room_allowed(hs, req: ApiRequest, room_id: str) -> None:
    if not await hs.federation_handler.origin_allowed_in_room(req.origin, room_id):
        raise forbidden("Server is banned from this room by its server ACL")


async def _peer_may(hs, req: ApiRequest, term: str, what: str) -> None:
    """``federation_peer_policy``: 403 M_FORBIDDEN (and an audit event) unless the origin's ``term`` is true."""
    if not getattr(hs.federation.peers.policy(req.origin), term):
        await hs.audit.record("federation_refused", req.origin, req.path_params.get("roomId"), req.origin,
                              {"reason": f"federation_peer_policy: {term} is false", "path": req.path})
        raise forbidden(f"This server does not let users of {req.origin} {what}")


async def send_transaction(hs, req: ApiRequest):
    """PUT /v1/send/{txnId}: at most 50 PDUs and 100 EDUs (spec "Transactions"; more is a 400, as in
    Synapse); a transaction is processed once per (origin, txnId)."""
    body = req.json()
    pdus, edus = body.get("pdus", []), body.get("edus", [])
    if not isinstance(pdus, list) or not isinstance(edus, list):
        raise MatrixError(400, "M_BAD_JSON", "pdus and edus must be lists")
    if len(pdus) > MAX_TXN_PDUS or len(edus) > MAX_TXN_EDUS:
        raise MatrixError(400, "M_BAD_JSON", f"Too many PDUs or EDUs: a transaction holds at most "
                                             f"{MAX_TXN_PDUS} PDUs and {MAX_TXN_EDUS} EDUs")
    fed = hs.federation_handler
    result, first = await fed.receiver.on_transaction_once(req.origin, req.path_params["txnId"], body)
    if first:
        fed.peer_is_up(req.origin)
    return result


async def make_membership(hs, req: ApiRequest, membership: str):
    """GET /v1/make_{join,leave,knock}/{roomId}/{userId}."""
    room_id = req.path_params["roomId"]
    if membership != "leave":
        await _peer_may(hs, req, "join_rooms", "join its rooms")
    await _room_allowed(hs, req, room_id)
    if membership == "join":
        user_id = req.path_params["userId"]
        await hs.access_rules.check_membership(room_id, user_id, user_id, "join", req.origin)
    # Spec: without ?ver= the joining server supports room version 1 only.
    versions = (req.args.get("ver") or ["1"]) if membership != "leave" else None
    return await hs.federation_handler.membership.make_membership(req.origin, room_id, req.path_params["userId"],
                                                                  membership, versions)


async def send_membership(hs, req: ApiRequest, membership: str):
    """PUT /v2/send_join, /v2/send_leave, /v1/send_knock."""
    fed = hs.federation_handler
    room_id = req.path_params["roomId"]
    if membership != "leave":
        await _peer_may(hs, req, "join_rooms", "join its rooms")
    await _room_allowed(hs, req, room_id)
    if membership == "join":
        user_id = req.json().get("state_key")
        if isinstance(user_id, str):
            await hs.access_rules.check_membership(room_id, user_id, user_id, "join", req.origin)
    result = await fed.membership.send_membership(req.origin, room_id, req.path_params["eventId"],
                                                  req.json(), membership,
                                                  omit_members=req.arg("omit_members") == "true")
    if membership == "knock":
        result = {"knock_room_state": await fed.stripped_state(room_id)}
    return result


def _v1_wrapped(result) -> RawBody:
    """The deprecated v1 send_join, send_leave and invite answer ``[200, <the v2 answer>]``."""
    data = result.data if isinstance(result, RawBody) else encode_json(result)
    return RawBody(b"[200," + data + b"]", b"application/json")


async def send_membership_v1(hs, req: ApiRequest, membership: str):
    """PUT /v1/send_join, /v1/send_leave (deprecated in the spec, still sent by older servers)."""
    return _v1_wrapped(await send_membership(hs, req, membership))


async def invite_v1(hs, req: ApiRequest):
    """PUT /v1/invite (deprecated): the body is the invite itself, its stripped state in ``unsigned``; no room
    version is given, so it is taken as version 1 (as Synapse: versions 1 and 2 differ only in state
    resolution, which an invite does not use)."""
    return _v1_wrapped(await invite(hs, req, {"event": req.json(), "room_version": "1"}))


async def invite(hs, req: ApiRequest, body: dict | None = None):
    """PUT /v2/invite."""
    await _peer_may(hs, req, "invite_users", "invite its users")
    await _room_allowed(hs, req, req.path_params["roomId"])
    body = req.json() if body is None else body
    invitee = body["event"].get("state_key") if isinstance(body.get("event"), dict) else None
    if isinstance(invitee, str) and domain_of(invitee) == hs.config.server_name:
        hs.ratelimit.invites_per_user.check(invitee)  # rc_invites.per_user; per room is the sender's (Synapse)
    if isinstance(invitee, str):
        sender = body["event"].get("sender")
        await hs.access_rules.check_membership(req.path_params["roomId"], sender if isinstance(sender, str) else "",
                                               invitee, "invite", req.origin)
    return await hs.federation_handler.membership.on_invite(req.origin, req.path_params["roomId"],
                                                            req.path_params["eventId"], body)


async def event(hs, req: ApiRequest):
    return await hs.federation_handler.queries.event(req.origin, req.path_params["eventId"])


def _event_id_arg(req: ApiRequest) -> str:
    event_id = req.arg("event_id")
    if event_id is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing event_id")
    return event_id


async def state(hs, req: ApiRequest):
    return await hs.federation_handler.queries.state(req.origin, req.path_params["roomId"], _event_id_arg(req))


async def state_ids(hs, req: ApiRequest):
    return await hs.federation_handler.queries.state_ids(req.origin, req.path_params["roomId"], _event_id_arg(req))


async def event_auth(hs, req: ApiRequest):
    return await hs.federation_handler.queries.event_auth(req.origin, req.path_params["roomId"],
                                                          req.path_params["eventId"])


async def missing_events(hs, req: ApiRequest):
    return await hs.federation_handler.queries.get_missing_events(req.origin, req.path_params["roomId"], req.json())


async def backfill(hs, req: ApiRequest):
    return await hs.federation_handler.queries.backfill(req.origin, req.path_params["roomId"], req.args.get("v", []),
                                                        req.int_arg("limit", 10, minimum=0))


async def query_directory(hs, req: ApiRequest):
    alias = req.arg("room_alias")
    if alias is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing room_alias")
    return await hs.federation_handler.queries.query_directory(alias)


async def query_profile(hs, req: ApiRequest):
    user_id = req.arg("user_id")
    if user_id is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing user_id")
    return await hs.federation_handler.queries.query_profile(user_id, req.arg("field"))


QUERY_HANDLERS = {"directory": query_directory, "profile": query_profile}


async def query(hs, req: ApiRequest):
    """GET /v1/query/{queryType}: the known query types (``directory``, ``profile``); any other is 404
    M_NOT_FOUND (as Synapse: "No handler for Query type")."""
    handler = QUERY_HANDLERS.get(req.path_params["queryType"])
    if handler is None:
        raise MatrixError(404, "M_NOT_FOUND", f"No handler for Query type {req.path_params['queryType']!r}")
    return await handler(hs, req)


async def exchange_third_party_invite(hs, req: ApiRequest):
    """PUT /v1/exchange_third_party_invite/{roomId} (server-server "Third-party invites")."""
    room_id = req.path_params["roomId"]
    await _room_allowed(hs, req, room_id)
    await hs.third_party_invites.on_exchange(room_id, req.json())
    return {}


async def on_bind(hs, req: ApiRequest):
    """PUT /v1/3pid/onbind, from an identity server (no X-Matrix: it is not a homeserver); POST too, which
    Synapse serves (and SyTest's identity server sends)."""
    await hs.third_party_invites.on_bind(req.json())
    return {}


async def public_rooms(hs, req: ApiRequest):
    if not hs.config.allow_public_rooms_over_federation:
        raise forbidden("This server does not publish its room directory over federation")
    if req.method == "POST":
        body = req.json(allow_empty=True)
        limit, since, search = public_rooms_body(body)
        network = public_rooms_network(body.get("include_all_networks"), body.get("third_party_instance_id"))
    else:
        limit, since, search = req.int_arg("limit", minimum=0), req.arg("since"), None
        network = public_rooms_network(req.bool_arg("include_all_networks"), req.arg("third_party_instance_id"))
    return await hs.directory.public_rooms(limit=limit, since=since, search=search, network=network)


async def hierarchy(hs, req: ApiRequest):
    return await hs.spaces.federation_hierarchy(req.origin, req.path_params["roomId"], req.bool_arg("suggested_only"))


async def timestamp_to_event(hs, req: ApiRequest):
    ts = req.int_arg("ts")
    if ts is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing ts")
    return await hs.federation_handler.queries.timestamp_to_event(req.origin, req.path_params["roomId"], ts,
                                                                  req.arg("dir", "f"))


async def openid_userinfo(hs, req: ApiRequest):
    """GET /openid/userinfo?access_token=: whose OpenID token this is (server-server "OpenID")."""
    token = req.arg("access_token")
    user_id = await hs.openid.user_for_token(token) if token else None
    if user_id is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown OpenID token")
    return {"sub": user_id}


def _federation(method: str, path: str, handler, auth: str = AUTH_SERVER) -> Endpoint:
    return Endpoint(method, PREFIX + path, handler, auth=auth, prefixes=NO_PREFIX)


ROUTES = [
    _federation("PUT", "/v1/send/{txnId}", send_transaction),
    _federation("GET", "/v1/make_join/{roomId}/{userId}", partial(make_membership, membership="join")),
    _federation("GET", "/v1/make_leave/{roomId}/{userId}", partial(make_membership, membership="leave")),
    _federation("GET", "/v1/make_knock/{roomId}/{userId}", partial(make_membership, membership="knock")),
    _federation("PUT", "/v2/send_join/{roomId}/{eventId}", partial(send_membership, membership="join")),
    _federation("PUT", "/v2/send_leave/{roomId}/{eventId}", partial(send_membership, membership="leave")),
    _federation("PUT", "/v1/send_knock/{roomId}/{eventId}", partial(send_membership, membership="knock")),
    _federation("PUT", "/v2/invite/{roomId}/{eventId}", invite),
    _federation("PUT", "/v1/send_join/{roomId}/{eventId}", partial(send_membership_v1, membership="join")),
    _federation("PUT", "/v1/send_leave/{roomId}/{eventId}", partial(send_membership_v1, membership="leave")),
    _federation("PUT", "/v1/invite/{roomId}/{eventId}", invite_v1),
    _federation("GET", "/v1/event/{eventId}", event),
    _federation("GET", "/v1/state/{roomId}", state),
    _federation("GET", "/v1/state_ids/{roomId}", state_ids),
    _federation("GET", "/v1/event_auth/{roomId}/{eventId}", event_auth),
    _federation("POST", "/v1/get_missing_events/{roomId}", missing_events),
    _federation("GET", "/v1/backfill/{roomId}", backfill),
    _federation("GET", "/v1/query/directory", query_directory),
    _federation("GET", "/v1/query/profile", query_profile),
    _federation("GET", "/v1/query/{queryType}", query),
    _federation("PUT", "/v1/exchange_third_party_invite/{roomId}", exchange_third_party_invite),
    _federation("PUT", "/v1/3pid/onbind", on_bind, auth=AUTH_NONE),
    _federation("POST", "/v1/3pid/onbind", on_bind, auth=AUTH_NONE),
    _federation("GET", "/v1/publicRooms", public_rooms),
    _federation("POST", "/v1/publicRooms", public_rooms),
    _federation("GET", "/v1/hierarchy/{roomId}", hierarchy),
    _federation("GET", "/v1/timestamp_to_event/{roomId}", timestamp_to_event),
    _federation("GET", "/v1/openid/userinfo", openid_userinfo, auth=AUTH_NONE),
]
