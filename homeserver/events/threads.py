"""Which thread an event belongs to (client-server "Threading": "Threaded read receipts",
"Marking notifications as read"): the one walk up the relations that receipts and push share."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

MAIN_THREAD = "main"  # the thread ID of the main timeline
MAX_RELATION_HOPS = 3  # spec: "the thread root ... within three relation hops"


async def thread_walk(event: Any, get_event: Callable[[str], Awaitable[Any]]) -> tuple[str | None, set[str]]:
    """The root of the ``m.thread`` relation found within :data:`MAX_RELATION_HOPS` relation hops up from
    ``event`` (``None`` when there is none), and the IDs of the events walked, ``event``'s included.

    ``event`` and what ``get_event(event_id)`` returns (``None`` if unknown) have ``event_id``,
    ``room_id`` and ``content``; the walk stops at an unknown parent or one in another room.
    """
    chain = {event.event_id}
    current = event
    for _ in range(MAX_RELATION_HOPS):
        relation = current.content.get("m.relates_to")
        if not isinstance(relation, dict) or not isinstance(relation.get("event_id"), str):
            break
        if relation.get("rel_type") == "m.thread":
            return relation["event_id"], chain
        parent = await get_event(relation["event_id"])
        if parent is None or parent.room_id != event.room_id:
            break
        chain.add(parent.event_id)
        current = parent
    return None, chain
