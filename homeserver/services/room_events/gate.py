"""Requests about a room held while a join of it completes.

A join through another server may be accepted before the room's state is checked and stored (and, with
send_join ``omit_members``, before its member events are fetched): until it completes, the requests about the
room wait here, by room id or alias (client-server ``{roomId}`` and ``{roomIdOrAlias}`` paths, PDUs received).
At start-up every room waits until the joins to resume are read from the database.
"""

from __future__ import annotations

import logging
from typing import Protocol

from twisted.internet import defer

from homeserver.storage.events import EventStore

logger = logging.getLogger(__name__)

JOIN_WAIT_S = 60  # longest a request about a room waits for its join to complete


class Aliases(Protocol):
    """``services/directory.py``: the room of a local or remote alias (raises if unknown)."""

    async def resolve(self, alias: str) -> dict: ...


class JoinGate:
    def __init__(self, *, clock, store: EventStore, aliases: Aliases):
        """``aliases`` are resolved only while a join completes."""
        self._clock = clock
        self._store = store
        self._aliases = aliases
        self._completing: dict[str, list[defer.Deferred]] = {}  # rooms whose join is completing: waiters
        self._until_known: list[defer.Deferred] | None = None  # start-up: partial joins not read yet

    def complete_later(self, room_id: str) -> None:
        """A join of ``room_id`` through another server is being completed: until :meth:`completed`,
        requests about the room wait in :meth:`settled`."""
        self._completing.setdefault(room_id, [])

    def completed(self, room_id: str) -> None:
        for waiter in self._completing.pop(room_id, []):
            waiter.callback(None)

    async def record_partial_join(self, room_id: str, event_id: str, servers: list[str]) -> None:
        """A join accepted with partial state, to complete again after a restart."""
        await self._store.add_partial_join(room_id, event_id, servers)

    async def end_partial_join(self, room_id: str) -> None:
        await self._store.remove_partial_join(room_id)
        self.completed(room_id)

    async def partial_joins(self) -> list[tuple[str, str, list[str]]]:
        return await self._store.partial_joins()

    def hold_until_partial_joins_known(self) -> None:
        """At start-up, before serving: requests about any room wait in :meth:`settled` until
        :meth:`partial_joins_known` (the joins to resume are read from the database first)."""
        self._until_known = []

    def partial_joins_known(self) -> None:
        waiters, self._until_known = self._until_known or [], None
        for waiter in waiters:
            waiter.callback(None)

    async def settled(self, room_id_or_alias: str) -> None:
        """Return once no join of the room (named by id or alias) is completing, or after JOIN_WAIT_S (the
        request then finds the room as it is)."""
        if self._until_known is not None:
            known: defer.Deferred = defer.Deferred()
            self._until_known.append(known)
            await known
        if not self._completing:
            return
        room_id = room_id_or_alias
        if room_id_or_alias.startswith("#"):
            room_id = await self._alias_target(room_id_or_alias)
        waiters = self._completing.get(room_id) if room_id is not None else None
        if waiters is None:
            return
        waiter: defer.Deferred = defer.Deferred()
        waiters.append(waiter)
        waiter.addTimeout(JOIN_WAIT_S, self._clock)
        try:
            await waiter
        except defer.TimeoutError:
            logger.warning("Still completing the join of %s after %ds", room_id, JOIN_WAIT_S)
            if waiter in waiters:
                waiters.remove(waiter)

    async def _alias_target(self, alias: str) -> str | None:
        """The alias's room, or None when it cannot be resolved (the request then reports why)."""
        try:
            return (await self._aliases.resolve(alias))["room_id"]
        except Exception as e:
            logger.debug("Alias %s not resolved while a join completes: %s", alias, e)
            return None
