"""Stripped state (client-server "Stripped state"): what invitees and knockers see of a room, given in
``/sync``'s ``invite_state``/``knock_state``, the federation ``invite_room_state`` and ``knock_room_state``."""

from __future__ import annotations

from typing import Any

# The spec's recommended list ("Stripped state": "servers SHOULD include ... the following").
STRIPPED_STATE_TYPES = ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
                        "m.room.canonical_alias", "m.room.encryption", "m.room.topic")


def stripped(event: Any) -> dict:
    """The stripped form of a state event (``type``, ``state_key``, ``content``, ``sender``)."""
    return {"type": event.type, "state_key": event.state_key, "content": event.content, "sender": event.sender}
