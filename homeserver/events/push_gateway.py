"""Pure rules of pushers and push-gateway notifications.

Spec v1.19 client-server "Pushers" (POST /pushers/set body) and push gateway API
"POST /_matrix/push/v1/notify" (the notification object); priorities as Synapse chooses them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

NOTIFY_PATH = "/_matrix/push/v1/notify"
MAX_APP_ID, MAX_PUSHKEY = 64, 512
REQUIRED_STRINGS = ("app_display_name", "device_display_name", "lang")


class InvalidPusher(Exception):
    def __init__(self, errcode: str, message: str):
        super().__init__(message)
        self.errcode = errcode


def _string(body: dict, key: str) -> str:
    if key not in body or body[key] is None:
        raise InvalidPusher("M_MISSING_PARAM", f"Missing '{key}'")
    if not isinstance(body[key], str):
        raise InvalidPusher("M_INVALID_PARAM", f"'{key}' must be a string")
    return body[key]


def validate_pusher_body(body: dict, *, email: bool = False) -> dict | None:
    """The pusher to set, or None when ``kind`` is null (delete); raises InvalidPusher.

    An HTTP pusher's ``data.url`` must be an http(s) URL whose path is the gateway's notify path (as
    Synapse checks). ``email``: e-mail pushers (kind ``email``, the address as pushkey) are served too.
    """
    app_id, pushkey = _string(body, "app_id"), _string(body, "pushkey")
    if len(app_id) > MAX_APP_ID or len(pushkey.encode("utf-8")) > MAX_PUSHKEY:
        raise InvalidPusher("M_INVALID_PARAM", "app_id or pushkey too long")
    if "kind" not in body:
        raise InvalidPusher("M_MISSING_PARAM", "Missing 'kind'")
    if body["kind"] is None:
        return None
    kind = _string(body, "kind")
    if kind != "http" and not (kind == "email" and email):
        raise InvalidPusher("M_INVALID_PARAM", f"Unsupported pusher kind {kind!r}")
    for key in REQUIRED_STRINGS:
        _string(body, key)
    if body.get("profile_tag") is not None and not isinstance(body["profile_tag"], str):
        raise InvalidPusher("M_INVALID_PARAM", "'profile_tag' must be a string")
    if not isinstance(body.get("append", False), bool):
        raise InvalidPusher("M_INVALID_PARAM", "'append' must be a boolean")
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidPusher("M_MISSING_PARAM" if data is None else "M_INVALID_PARAM", "'data' must be an object")
    if kind == "http":
        parts = urlsplit(_string(data, "url"))
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path != NOTIFY_PATH:
            raise InvalidPusher("M_INVALID_PARAM", f"'url' must be an http(s) URL with path {NOTIFY_PATH}")
    if "format" in data and not isinstance(data["format"], str):
        raise InvalidPusher("M_INVALID_PARAM", "'format' must be a string")
    return {"app_id": app_id, "pushkey": pushkey, "kind": kind, "app_display_name": body["app_display_name"],
            "device_display_name": body["device_display_name"], "profile_tag": body.get("profile_tag"),
            "lang": body["lang"], "data": data}


def tweaks_of(actions: list) -> dict:
    """The ``set_tweak`` actions as a dict (``highlight`` without a value is true)."""
    tweaks = {}
    for action in actions:
        if isinstance(action, dict) and "set_tweak" in action:
            tweaks[action["set_tweak"]] = action.get("value", True if action["set_tweak"] == "highlight" else None)
    return {k: v for k, v in tweaks.items() if v is not None and v is not False}


def priority(event_type: str, tweaks: dict) -> str:
    """"high" for an encrypted event, a highlight or a sound (as Synapse), else "low"."""
    return "high" if event_type == "m.room.encrypted" or tweaks.get("highlight") or tweaks.get("sound") else "low"


def notification(*, event: dict, user_id: str, pusher_data: dict, device: dict, unread: int,
                 sender_display_name: str | None, room_name: str | None, tweaks: dict) -> dict:
    """The push gateway notification of one event for one pusher; ``event_id_only`` keeps the ids and counts."""
    device = dict(device, data={k: v for k, v in pusher_data.items() if k != "url"}, tweaks=tweaks)
    out = {"event_id": event["event_id"], "room_id": event["room_id"], "counts": {"unread": unread},
           "devices": [device], "prio": priority(event.get("type", ""), tweaks)}
    if pusher_data.get("format") == "event_id_only":
        return out
    out.update(id=event["event_id"], type=event.get("type"), sender=event.get("sender"))  # ``id``: Synapse's older name
    if sender_display_name is not None:
        out["sender_display_name"] = sender_display_name
    if room_name is not None:
        out["room_name"] = room_name
    if "content" in event:
        out["content"] = event["content"]
    if event.get("type") == "m.room.member" and event.get("state_key") is not None:
        out["user_is_target"] = event["state_key"] == user_id
        membership = event.get("content", {}).get("membership")
        if isinstance(membership, str):  # not in the spec's list, sent by Synapse (gateways read it for invites)
            out["membership"] = membership
    return out


def badge_notification(*, pusher_data: dict, device: dict, unread: int) -> dict:
    """A notification with the updated unread count only (push gateway API: ``event_id`` "may be omitted for
    notifications that only contain updated badge counts"); the count is sent even at 0, to clear the badge."""
    device = dict(device, data={k: v for k, v in pusher_data.items() if k != "url"})
    return {"counts": {"unread": unread}, "devices": [device], "prio": "low"}
