"""Inbound server-server endpoints (spec v1.19 server-server API), all behind X-Matrix auth."""

from __future__ import annotations

from homeserver.errors import MatrixError, forbidden
from homeserver.events.identifiers import domain_of
from homeserver.http.router import AUTH_NONE, AUTH_SERVER, ApiRequest, Router
from homeserver.lru import LruCache
from homeserver.services.directory import public_rooms_body

PREFIX = "/_matrix/federation"
MAX_TXN_PDUS = 50  # spec "Transactions"
MAX_TXN_EDUS = 100


def register(router: Router, hs) -> None:
    fed = hs.federation_handler
    seen_txns: LruCache[tuple[str, str], dict] = LruCache(10_000)  # read with peek: the oldest go first

    def add(method: str, path: str, handler, auth: str = AUTH_SERVER) -> None:
        router.add(method, PREFIX + path, handler, auth=auth)

    async def room_allowed(req: ApiRequest, room_id: str) -> None:
        if not await fed.origin_allowed_in_room(req.origin, room_id):
            raise forbidden("Server is banned from this room by its server ACL")

    async def send_transaction(req: ApiRequest):
        """PUT /v1/send/{txnId}: at most 50 PDUs and 100 EDUs (spec "Transactions"; more is a 400, as in
        Synapse); a transaction is processed once per (origin, txnId)."""
        body = req.json()
        pdus, edus = body.get("pdus", []), body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise MatrixError(400, "M_BAD_JSON", "pdus and edus must be lists")
        if len(pdus) > MAX_TXN_PDUS or len(edus) > MAX_TXN_EDUS:
            raise MatrixError(400, "M_BAD_JSON", f"Too many PDUs or EDUs: a transaction holds at most "
                                                 f"{MAX_TXN_PDUS} PDUs and {MAX_TXN_EDUS} EDUs")
        key = (req.origin, req.path_params["txnId"])
        if key in seen_txns:
            return seen_txns.peek(key)
        result = await fed.receiver.on_transaction(req.origin, body)
        seen_txns.put(key, result)
        fed.peer_is_up(req.origin)
        return result

    def make(membership: str):
        async def handler(req: ApiRequest):
            room_id = req.path_params["roomId"]
            await room_allowed(req, room_id)
            # Spec: without ?ver= the joining server supports room version 1 only.
            versions = (req.args.get("ver") or ["1"]) if membership != "leave" else None
            return await fed.membership.make_membership(req.origin, room_id, req.path_params["userId"],
                                                        membership, versions)
        return handler

    def send(membership: str):
        async def handler(req: ApiRequest):
            room_id = req.path_params["roomId"]
            await room_allowed(req, room_id)
            result = await fed.membership.send_membership(req.origin, room_id, req.path_params["eventId"],
                                                          req.json(), membership,
                                                          omit_members=req.arg("omit_members") == "true")
            if membership == "knock":
                result = {"knock_room_state": await fed.stripped_state(room_id)}
            return result
        return handler

    async def invite(req: ApiRequest):
        await room_allowed(req, req.path_params["roomId"])
        body = req.json()
        invitee = body["event"].get("state_key") if isinstance(body.get("event"), dict) else None
        if isinstance(invitee, str) and domain_of(invitee) == hs.config.server_name:
            hs.ratelimit.invites_per_user.check(invitee)  # rc_invites.per_user; per room is the sender's (Synapse)
        return await fed.membership.on_invite(req.origin, req.path_params["roomId"], req.path_params["eventId"], body)

    async def event(req: ApiRequest):
        return await fed.queries.event(req.origin, req.path_params["eventId"])

    def state_query(method_name: str):
        async def handler(req: ApiRequest):
            event_id = req.arg("event_id")
            if event_id is None:
                raise MatrixError(400, "M_MISSING_PARAM", "Missing event_id")
            return await getattr(fed.queries, method_name)(req.origin, req.path_params["roomId"], event_id)
        return handler

    async def event_auth(req: ApiRequest):
        return await fed.queries.event_auth(req.origin, req.path_params["roomId"], req.path_params["eventId"])

    async def missing_events(req: ApiRequest):
        return await fed.queries.get_missing_events(req.origin, req.path_params["roomId"], req.json())

    async def backfill(req: ApiRequest):
        return await fed.queries.backfill(req.origin, req.path_params["roomId"], req.args.get("v", []),
                                          req.int_arg("limit", 10, minimum=0))

    async def query_directory(req: ApiRequest):
        alias = req.arg("room_alias")
        if alias is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing room_alias")
        return await fed.queries.query_directory(alias)

    async def query_profile(req: ApiRequest):
        user_id = req.arg("user_id")
        if user_id is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing user_id")
        return await fed.queries.query_profile(user_id, req.arg("field"))

    async def public_rooms(req: ApiRequest):
        if not hs.config.allow_public_rooms_over_federation:
            raise forbidden("This server does not publish its room directory over federation")
        if req.method == "POST":
            limit, since, search = public_rooms_body(req.json(allow_empty=True))
        else:
            limit, since, search = req.int_arg("limit", minimum=0), req.arg("since"), None
        return await hs.directory.public_rooms(limit=limit, since=since, search=search)

    async def hierarchy(req: ApiRequest):
        return await fed.queries.hierarchy(req.origin, req.path_params["roomId"], req.bool_arg("suggested_only"))

    async def timestamp_to_event(req: ApiRequest):
        ts = req.int_arg("ts")
        if ts is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing ts")
        return await fed.queries.timestamp_to_event(req.origin, req.path_params["roomId"], ts, req.arg("dir", "f"))

    async def openid_userinfo(req: ApiRequest):
        token = req.arg("access_token")
        user_id = hs.openid.user_for_token(token) if token else None
        if user_id is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown OpenID token")
        return {"sub": user_id}

    add("PUT", "/v1/send/{txnId}", send_transaction)
    for membership in ("join", "leave", "knock"):
        add("GET", f"/v1/make_{membership}/{{roomId}}/{{userId}}", make(membership))
    add("PUT", "/v2/send_join/{roomId}/{eventId}", send("join"))
    add("PUT", "/v2/send_leave/{roomId}/{eventId}", send("leave"))
    add("PUT", "/v1/send_knock/{roomId}/{eventId}", send("knock"))
    add("PUT", "/v2/invite/{roomId}/{eventId}", invite)
    add("GET", "/v1/event/{eventId}", event)
    add("GET", "/v1/state/{roomId}", state_query("state"))
    add("GET", "/v1/state_ids/{roomId}", state_query("state_ids"))
    add("GET", "/v1/event_auth/{roomId}/{eventId}", event_auth)
    add("POST", "/v1/get_missing_events/{roomId}", missing_events)
    add("GET", "/v1/backfill/{roomId}", backfill)
    add("GET", "/v1/query/directory", query_directory)
    add("GET", "/v1/query/profile", query_profile)
    add("GET", "/v1/publicRooms", public_rooms)
    add("POST", "/v1/publicRooms", public_rooms)
    add("GET", "/v1/hierarchy/{roomId}", hierarchy)
    add("GET", "/v1/timestamp_to_event/{roomId}", timestamp_to_event)
    add("GET", "/v1/openid/userinfo", openid_userinfo, auth=AUTH_NONE)
