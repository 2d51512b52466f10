"""MatrixRTC call membership keys (MSC3401 ``org.matrix.msc3401.call.member``, MSC4143 ``m.rtc.member``).

A member announces each of its devices in a call with one state event whose state key names the
user and the device: ``_@user:server_DEVICE_m.call`` (Element Call today), ``_@user:server_DEVICE``,
the MSC3757 form ``@user:server_DEVICE``, or the older per-user form ``@user:server``. Server names hold
no ``_``, so the first ``_`` after the user ID's ``:`` ends the user ID (MSC3757's parse).
"""

from __future__ import annotations

from homeserver.events.auth_rules import AuthState, user_power_level
from homeserver.events.identifiers import is_valid_user_id
from homeserver.events.room_versions import RoomVersion

CALL_MEMBER_TYPES = frozenset({"org.matrix.msc3401.call.member", "m.rtc.member"})
POWER_STATE = frozenset({("m.room.create", ""), ("m.room.power_levels", "")})  # what a refusal may read


def call_member_owner(state_key: str) -> tuple[str, str | None] | None:
    """The (user ID, rest after the user ID and ``_``, or None) a call-member state key names, or
    None when it names no user."""
    key = state_key[1:] if state_key.startswith("_@") else state_key
    if not key.startswith("@"):
        return None
    colon = key.find(":", 1)
    if colon < 0:
        return None
    underscore = key.find("_", colon + 1)
    user_id, rest = (key, None) if underscore < 0 else (key[:underscore], key[underscore + 1:])
    if not is_valid_user_id(user_id):
        return None
    return user_id, rest


def call_member_refusal(event_type: str, state_key: str, user_id: str, device_id: str | None,
                        version: RoomVersion | None = None, power_state: AuthState | None = None) -> str | None:
    """Why ``user_id`` on ``device_id`` may not set this call-member state, or None when it may.

    A member sets the state of its own devices only: the key must name the sender and, when it names a
    device, the sending device (the part after the user ID is the device ID, possibly followed by
    ``_`` and an application suffix such as ``m.call``). As in MSC3757, someone whose power level is above
    the named user's may set it too (a moderator clearing a stale member), given the room's ``version`` and
    its create and power levels events (``power_state``, keyed by :data:`POWER_STATE`)."""
    if event_type not in CALL_MEMBER_TYPES:
        return None
    owner = call_member_owner(state_key)
    if owner is None:
        return "A call member state key must name the sender and its device"
    owner_user, rest = owner
    if owner_user != user_id:
        if version is not None and power_state is not None and \
                user_power_level(version, power_state, user_id) > user_power_level(version, power_state, owner_user):
            return None
        return "A call member state key may name only the sender"
    if rest is not None and not (device_id and (rest == device_id or rest.startswith(device_id + "_"))):
        return "A call member state key may name only the sending device"
    return None
