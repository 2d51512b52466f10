"""Sending and reading room events.

Spec v1.19 client-server: "Sending events to a room", "Redactions",
"Getting events for a room", "Relationships", "Threading",
"Room event by timestamp".
"""

from __future__ import annotations

from homeserver.api.client.delayed_events import schedule_if_delayed
from homeserver.errors import MatrixError, bad_json, forbidden
from homeserver.events.identifiers import is_valid_user_id
from homeserver.events.rtc import CALL_MEMBER_TYPES, POWER_STATE, call_member_refusal
from homeserver.http.router import ApiRequest, Endpoint, parse_json
from homeserver.services.filtering import EventFilter
from homeserver.services.room_events.local import EventSpec

V1 = ("/_matrix/client/v1",)


def _txn_key(req: ApiRequest) -> tuple[str, str, str] | None:
    """(user, device, txnId) of a request whose path has a transaction id; None without one."""
    if "txnId" not in req.path_params:
        return None
    return (req.user_id, req.requester.device_id or "", req.path_params["txnId"])


def _json_arg(req: ApiRequest, name: str) -> dict | None:
    raw = req.arg(name)
    if raw is None:
        return None
    value = parse_json(raw.encode("utf-8"), name)
    if not isinstance(value, dict):
        raise bad_json(f"{name} must be a JSON object")
    return value


def _massaged_ts(req: ApiRequest) -> int | None:
    """Application service API "Timestamp massaging": an appservice's ``?ts=`` (ignored for others)."""
    return req.int_arg("ts", minimum=0) if req.requester.appservice_id is not None else None


async def send(hs, req: ApiRequest):
    """PUT /rooms/{roomId}/send/{eventType}/{txnId}: idempotent per (device, txnId); a suspended account may
    send only redactions. Synapse also serves the older POST /rooms/{roomId}/send/{eventType}, with no
    transaction id (each request a new event), which appservices such as SyTest's still use."""
    content = req.json()
    if req.path_params["eventType"] != "m.room.redaction":
        hs.account_moderation.check_not_suspended(req.user_id)
    _check_tombstone(req.path_params["roomId"], req.path_params["eventType"], content)
    delayed = await schedule_if_delayed(hs, req, req.path_params["eventType"], content, None, _txn_key(req))
    if delayed is not None:
        return delayed
    hs.ratelimit.event(req.user_id)
    if (fake := hs.admin.shadow_banned_event_id(req.user_id)) is not None:
        return {"event_id": fake}
    spec = EventSpec(req.user_id, req.path_params["eventType"], content, txn=_txn_key(req),
                     origin_server_ts=_massaged_ts(req))
    ev = await hs.local_appends.send(req.path_params["roomId"], spec)
    return {"event_id": ev.event_id}


async def put_state(hs, req: ApiRequest):
    """PUT /rooms/{roomId}/state/...; a suspended account may only leave, or ban."""
    content = req.json()
    room_id, event_type = req.path_params["roomId"], req.path_params["eventType"]
    if event_type != "m.room.member" or content.get("membership") not in ("leave", "ban"):
        hs.account_moderation.check_not_suspended(req.user_id)
    state_key = req.path_params.get("stateKey", "")
    if event_type == "m.room.member":
        if not is_valid_user_id(state_key):
            raise MatrixError(400, "M_INVALID_PARAM", "The state key of a membership event must be a user ID")
        membership = content.get("membership")
        if not isinstance(membership, str):
            raise bad_json("membership must be a string")
    if event_type == "m.room.canonical_alias":
        await _check_canonical_alias(hs, room_id, content)
    _check_tombstone(room_id, event_type, content)
    if event_type in CALL_MEMBER_TYPES:
        await _check_call_member(hs, room_id, event_type, state_key, req)
    await hs.access_rules.check_state(room_id, req.user_id, event_type, content)
    delayed = await schedule_if_delayed(hs, req, event_type, content, state_key)
    if delayed is not None:
        return delayed
    current = await hs.room_heads.current_state_event(room_id, event_type, state_key)
    if current is not None and current.sender == req.user_id and current.content == content:
        return {"event_id": current.event_id}  # unchanged state is not sent again
    hs.ratelimit.event(req.user_id)
    ev = await hs.local_appends.send(room_id, EventSpec(req.user_id, event_type, content, state_key,
                                                        origin_server_ts=_massaged_ts(req)))
    return {"event_id": ev.event_id}


async def redact(hs, req: ApiRequest):
    body = req.json(allow_empty=True)
    room_id, target = req.path_params["roomId"], req.path_params["eventId"]
    content = {}
    if "reason" in body:
        if not isinstance(body["reason"], str):
            raise bad_json("reason must be a string")
        content["reason"] = body["reason"]
    redacted = await hs.room_heads.get_event(target)  # someone else's: a moderator's redaction (Synapse)
    if redacted is not None and redacted.room_id != room_id:  # as Synapse: an event of another room
        raise MatrixError(400, "M_INVALID_PARAM", "The event to redact is in another room")
    hs.ratelimit.event(req.user_id, admin_redaction=redacted is not None and redacted.sender != req.user_id)
    version = await hs.room_heads.room_version(room_id)
    if version is not None and version.redacts_in_content:
        content["redacts"] = target
    ev = await hs.local_appends.send(room_id, EventSpec(req.user_id, "m.room.redaction", content, redacts=target,
                                                        txn=_txn_key(req)))
    return {"event_id": ev.event_id}


async def get_state(hs, req: ApiRequest):
    events = await hs.history.state(req.requester, req.path_params["roomId"])
    return 200, await hs.serializer.serialize(events, req.requester, bundle=False)


async def get_state_event(hs, req: ApiRequest):
    ev = await hs.history.state_event(req.requester, req.path_params["roomId"], req.path_params["eventType"],
                                      req.path_params.get("stateKey", ""))
    if req.arg("format") == "event":
        return await hs.serializer.serialize_one(ev, req.requester)
    if ev.redacted_by:
        return (await hs.serializer.serialize_one(ev, req.requester))["content"]
    return ev.content


async def get_event(hs, req: ApiRequest):
    return await hs.history.event(req.requester, req.path_params["roomId"], req.path_params["eventId"])


async def messages(hs, req: ApiRequest):
    return await hs.history.messages(
        req.requester, req.path_params["roomId"], from_token=req.arg("from"), to_token=req.arg("to"),
        direction=req.arg("dir", "b"), limit=req.int_arg("limit", 10, minimum=0),
        event_filter=EventFilter.parse(_json_arg(req, "filter")))


async def context(hs, req: ApiRequest):
    return await hs.history.context(req.requester, req.path_params["roomId"], req.path_params["eventId"],
                                    req.int_arg("limit", 10, minimum=0), EventFilter.parse(_json_arg(req, "filter")))


async def members(hs, req: ApiRequest):
    chunk = await hs.history.members(req.requester, req.path_params["roomId"], at=req.arg("at"),
                                     membership=req.arg("membership"), not_membership=req.arg("not_membership"))
    return {"chunk": chunk}


async def joined_members(hs, req: ApiRequest):
    return await hs.history.joined_members(req.requester, req.path_params["roomId"])


async def relations(hs, req: ApiRequest):
    return await hs.history.relations(
        req.requester, req.path_params["roomId"], req.path_params["eventId"],
        rel_type=req.path_params.get("relType"), event_type=req.path_params.get("eventType"),
        from_token=req.arg("from"), limit=req.int_arg("limit", 50, minimum=0), direction=req.arg("dir", "b"))


async def threads(hs, req: ApiRequest):
    include = req.arg("include", "all")
    if include not in ("all", "participated"):
        raise MatrixError(400, "M_INVALID_PARAM", "include must be all or participated")
    return await hs.history.threads(req.requester, req.path_params["roomId"], include=include,
                                    from_token=req.arg("from"), limit=req.int_arg("limit", 50, minimum=0))


async def timestamp_to_event(hs, req: ApiRequest):
    ts = req.int_arg("ts")
    if ts is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing ts")
    return await hs.history.timestamp_to_event(req.requester, req.path_params["roomId"], ts, req.arg("dir", "f"))


async def _check_call_member(hs, room_id: str, event_type: str, state_key: str, req: ApiRequest) -> None:
    """MatrixRTC call-member state: the sender's own device, or a user it outranks (homeserver/events/rtc.py)."""
    power_state = {k: e.pdu for k, e in (await hs.room_heads.current_state(room_id, POWER_STATE)).items()}
    refusal = call_member_refusal(event_type, state_key, req.user_id, req.requester.device_id,
                                  await hs.room_heads.room_version(room_id), power_state)
    if refusal is not None:
        raise forbidden(refusal)


def _check_tombstone(room_id: str, event_type: str, content: dict) -> None:
    """A tombstone cannot name its own room as the replacement (400, as Synapse)."""
    if event_type == "m.room.tombstone" and content.get("replacement_room") == room_id:
        raise bad_json("A tombstone cannot name its own room as the replacement")


async def _check_canonical_alias(hs, room_id: str, content: dict) -> None:
    """Spec m.room.canonical_alias: every alias listed must point to this room (M_BAD_ALIAS)."""
    aliases = []
    if content.get("alias") is not None:
        aliases.append(content["alias"])
    alt = content.get("alt_aliases", [])
    if not isinstance(alt, list):
        raise bad_json("alt_aliases must be a list")
    aliases += alt
    for alias in aliases:
        if not isinstance(alias, str):
            raise bad_json("aliases must be strings")
        if not alias.startswith("#") or ":" not in alias:  # not an alias at all (as Synapse)
            raise MatrixError(400, "M_INVALID_PARAM", f"{alias[:255]!r} is not a room alias")
        if alias.endswith(":" + hs.config.server_name):
            if await hs.directory.resolve_local(alias) != room_id:
                raise MatrixError(400, "M_BAD_ALIAS", f"{alias} does not point to this room")


ROUTES = [
    Endpoint("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", send),
    Endpoint("POST", "/rooms/{roomId}/send/{eventType}", send),
    Endpoint("PUT", "/rooms/{roomId}/state/{eventType}", put_state),
    Endpoint("PUT", "/rooms/{roomId}/state/{eventType}/", put_state),
    Endpoint("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey}", put_state),
    Endpoint("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", redact),
    Endpoint("GET", "/rooms/{roomId}/state", get_state),
    Endpoint("GET", "/rooms/{roomId}/state/{eventType}", get_state_event),
    Endpoint("GET", "/rooms/{roomId}/state/{eventType}/", get_state_event),
    Endpoint("GET", "/rooms/{roomId}/state/{eventType}/{stateKey}", get_state_event),
    Endpoint("GET", "/rooms/{roomId}/event/{eventId}", get_event),
    Endpoint("GET", "/rooms/{roomId}/messages", messages),
    Endpoint("GET", "/rooms/{roomId}/context/{eventId}", context),
    Endpoint("GET", "/rooms/{roomId}/members", members),
    Endpoint("GET", "/rooms/{roomId}/joined_members", joined_members),
    Endpoint("GET", "/rooms/{roomId}/relations/{eventId}", relations, prefixes=V1),
    Endpoint("GET", "/rooms/{roomId}/relations/{eventId}/{relType}", relations, prefixes=V1),
    Endpoint("GET", "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", relations, prefixes=V1),
    Endpoint("GET", "/rooms/{roomId}/threads", threads, prefixes=V1),
    Endpoint("GET", "/rooms/{roomId}/timestamp_to_event", timestamp_to_event, prefixes=V1),
]
