"""The thread walk of receipts and push (client-server "Threaded read receipts")."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from homeserver.events.threads import MAX_RELATION_HOPS, thread_walk


@dataclass
class Ev:
    event_id: str
    room_id: str = "!r:x"
    content: dict = field(default_factory=dict)


def relates(event_id: str, parent: str, rel_type: str = "m.annotation", room_id: str = "!r:x") -> Ev:
    return Ev(event_id, room_id, {"m.relates_to": {"rel_type": rel_type, "event_id": parent}})


def walk(event: Ev, *known: Ev):
    by_id = {e.event_id: e for e in known}

    async def get_event(event_id):
        return by_id.get(event_id)
    return asyncio.run(thread_walk(event, get_event))


def test_thread_reply_names_its_root():
    assert walk(relates("$a", "$root", "m.thread")) == ("$root", {"$a"})


def test_root_found_through_other_relations_within_the_hops():
    chain = [relates("$h0", "$root", "m.thread")] + [relates(f"$h{i}", f"$h{i - 1}")
                                                     for i in range(1, MAX_RELATION_HOPS)]
    assert walk(chain[-1], *chain) == ("$root", {e.event_id for e in chain})


def test_walk_stops_after_the_hops():
    chain = [relates("$h0", "$root", "m.thread")] + [relates(f"$h{i}", f"$h{i - 1}")
                                                     for i in range(1, MAX_RELATION_HOPS + 1)]
    root, walked = walk(chain[-1], *chain)
    assert root is None and len(walked) == MAX_RELATION_HOPS + 1


def test_no_relation_unknown_parent_or_other_room_is_no_thread():
    assert walk(Ev("$a")) == (None, {"$a"})
    assert walk(relates("$a", "$gone")) == (None, {"$a"})
    other = relates("$p", "$root", "m.thread", room_id="!other:x")
    assert walk(relates("$a", "$p"), other) == (None, {"$a"})
    assert walk(Ev("$a", content={"m.relates_to": {"event_id": 5}})) == (None, {"$a"})
