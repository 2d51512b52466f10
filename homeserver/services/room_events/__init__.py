"""Room events, by job, around one shared object (spec client-server "Events", server-server "PDUs").

- :mod:`.heads`: :class:`~.heads.RoomHeads`, every room's current state and forward extremities (its head)
  and the events read through the event cache; shared by the others, read by every service.
- :mod:`.gate`: :class:`~.gate.JoinGate`, requests about a room held while a join of it completes.
- :mod:`.local`: :class:`~.local.LocalAppends`, local events built, authorised and persisted.
- :mod:`.remote`: :class:`~.remote.RemotePersistence`, checked remote and backfilled events persisted.

The writers call the room-event listeners (one ordered list, declared in ``homeserver/server.py``) once the
stream shows their events; the head update is the pure :mod:`homeserver.events.room_head`.
"""
