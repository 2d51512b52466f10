"""Message retention: ``m.room.retention`` (MSC1763) with Synapse's ``retention`` configuration, and the
history purges of Synapse's admin API (``docs/admin_api/purge_history_api.md``).

A room's events older than its max_lifetime are hidden from clients at once (Synapse's
``filter_events_for_client``) and deleted by the purge jobs. A purge never touches what the room needs to
keep working: state events (the create event and every auth event among them), the room's latest event and
its forward extremities stay (storage/retention.py).
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Sequence

from twisted.internet import defer

from homeserver.config.values import PurgeJob, RetentionConfig
from homeserver.errors import MatrixError, not_found
from homeserver.services.auth import random_string
from homeserver.services.background import ScheduledJob
from homeserver.services.room_events.heads import RoomHeads
from homeserver.storage.events import StoredEvent

logger = logging.getLogger(__name__)

RETENTION_EVENT = "m.room.retention"

# Told of each purge's deleted events (room id, their PDUs): where the media repository removes their media.
PurgeListener = Callable[[str, list[dict]], Awaitable[None]]


def _lifetime(content: dict, name: str) -> int | None:
    value = content.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def check_policy(content: dict) -> None:
    """A new ``m.room.retention`` event's content: min_lifetime and max_lifetime integers when present, the
    first at most the second (400 M_BAD_JSON otherwise, as Synapse's event validator)."""
    for name in ("min_lifetime", "max_lifetime"):
        if name in content and _lifetime(content, name) is None:
            raise MatrixError(400, "M_BAD_JSON", f"'{name}' must be a non-negative integer")
    if "min_lifetime" in content and "max_lifetime" in content \
            and content["min_lifetime"] > content["max_lifetime"]:
        raise MatrixError(400, "M_BAD_JSON", "'min_lifetime' can't be greater than 'max_lifetime'")


def room_max_lifetime(content: dict | None) -> int | None:
    """The max_lifetime an ``m.room.retention`` content asks for (None: none, or not an integer)."""
    return None if content is None else _lifetime(content, "max_lifetime")


def effective_max_lifetime(config: RetentionConfig, content: dict | None) -> int | None:
    """The max_lifetime in force in a room: its own, else the default policy's; brought within the allowed
    range (Synapse's ``get_retention_policy_for_room``). None: kept forever."""
    if not config.enabled:
        return None
    lifetime = room_max_lifetime(content)
    if lifetime is None:
        lifetime = config.default_max_lifetime
    if lifetime is None:
        return None
    if config.allowed_lifetime_max is not None:
        lifetime = min(lifetime, config.allowed_lifetime_max)
    if config.allowed_lifetime_min is not None:
        lifetime = max(lifetime, config.allowed_lifetime_min)
    return lifetime


def job_covers(job: PurgeJob, config: RetentionConfig, content: dict | None) -> bool:
    """Whether ``job`` purges a room with this policy: its own max_lifetime (or, without one, the default
    policy's) in (shortest_max_lifetime, longest_max_lifetime], as Synapse's purge jobs choose rooms."""
    lifetime = room_max_lifetime(content)
    if lifetime is None:
        lifetime = config.default_max_lifetime
    if lifetime is None:
        return False
    return (job.shortest_max_lifetime is None or lifetime > job.shortest_max_lifetime) \
        and (job.longest_max_lifetime is None or lifetime <= job.longest_max_lifetime)


def unexpired(events: list[StoredEvent], oldest_ts: int | None) -> list[StoredEvent]:
    """The events a client may still see: state events, and the others sent at or after ``oldest_ts``."""
    if oldest_ts is None:
        return events
    return [e for e in events if e.state_key is not None or e.pdu.get("origin_server_ts", 0) >= oldest_ts]


class RetentionService:
    """The retention window of each room, the purge jobs and the admin API's purges (their status is kept in
    memory, as Synapse does)."""

    def __init__(self, *, config: RetentionConfig, room_heads: RoomHeads, store, clock, server_name: str,
                 on_purged: Sequence[PurgeListener] = ()):
        self._config = config
        self._heads = room_heads
        self._store = store
        self._clock = clock
        self._server_name = server_name
        self._on_purged = tuple(on_purged)
        self._purges: dict[str, dict] = {}

    async def oldest_visible_ts(self, room_id: str) -> int | None:
        """Events sent before this time are outside the room's retention window (None: no window)."""
        if not self._config.enabled:
            return None
        policy = await self._heads.current_state_event(room_id, RETENTION_EVENT)
        lifetime = effective_max_lifetime(self._config, None if policy is None else policy.content)
        return None if lifetime is None else self._heads.now_ms() - lifetime

    async def filter(self, room_id: str, events: list[StoredEvent]) -> list[StoredEvent]:
        """``events`` without those outside the room's retention window."""
        if not events or not self._config.enabled:
            return events
        return unexpired(events, await self.oldest_visible_ts(room_id))

    # -- purge jobs ------------------------------------------------------------------------------------
    def scheduled_jobs(self) -> list[ScheduledJob]:
        """Each purge job, every ``interval``, the first after one interval (as Synapse); none when retention
        is off. Run by :class:`~homeserver.services.background.BackgroundJobs`."""
        if not self._config.enabled:
            return []
        return [ScheduledJob(f"retention_purge_{i}", job.interval, lambda job=job: self.run_job(job))
                for i, job in enumerate(self._config.purge_jobs)]

    async def run_job(self, job: PurgeJob) -> int:
        """Purge the expired events of every room ``job`` covers; how many were deleted."""
        deleted = 0
        for room_id, content in await self._store.retention_policies():
            if not job_covers(job, self._config, content):
                continue
            lifetime = effective_max_lifetime(self._config, content)
            deleted += await self._purge(room_id, before_ts=self._heads.now_ms() - lifetime)
        return deleted

    async def _purge(self, room_id: str, *, before_ts: int | None = None, before_stream: int | None = None,
                     keep_local: bool = False) -> int:
        async with self._heads.lock(room_id):
            purged = await self._store.purge_history(room_id, before_ts=before_ts, before_stream=before_stream,
                                                     keep_sender_server=self._server_name if keep_local else None)
        for pdu in purged:
            self._heads.cache.pop(pdu["event_id"])
        if purged:
            logger.info("Purged %d events of %s", len(purged), room_id)
            for listener in self._on_purged:
                await listener(room_id, purged)
        return len(purged)

    # -- admin API -------------------------------------------------------------------------------------
    async def start_purge(self, room_id: str, *, event_id: str | None, up_to_ts: int | None,
                          delete_local_events: bool) -> str:
        """POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]: the non-state events before the
        event (or sent before ``up_to_ts``) deleted in the background; the purge id to follow it by."""
        if await self._heads.room_version(room_id) is None:
            raise not_found("Unknown room")
        if event_id is not None:
            event = await self._heads.get_event(event_id)
            if event is None:
                raise not_found("Event not found")
            if event.room_id != room_id:
                raise MatrixError(400, "M_UNKNOWN", "Event is for wrong room.")
            bounds = {"before_stream": event.stream_ordering}
        elif up_to_ts is not None:
            if not await self._store.has_event_before(room_id, up_to_ts):
                raise MatrixError(400, "M_NOT_FOUND", "there is no event to be purged")
            bounds = {"before_ts": up_to_ts}
        else:
            raise MatrixError(400, "M_BAD_JSON", "must specify purge_up_to_event_id or purge_up_to_ts")
        purge_id = random_string(16)
        self._purges[purge_id] = {"status": "active"}
        defer.ensureDeferred(self._admin_purge(purge_id, room_id, bounds, not delete_local_events))
        return purge_id

    async def _admin_purge(self, purge_id: str, room_id: str, bounds: dict, keep_local: bool) -> None:
        try:
            await self._purge(room_id, keep_local=keep_local, **bounds)
        except Exception as e:
            logger.exception("Purge %s of %s failed", purge_id, room_id)
            self._purges[purge_id] = {"status": "failed", "error": str(e)}
        else:
            self._purges[purge_id] = {"status": "complete"}

    def purge_status(self, purge_id: str) -> dict:
        """GET /_synapse/admin/v1/purge_history_status/{purgeId}: active, complete or failed."""
        if purge_id not in self._purges:
            raise not_found(f"purge id '{purge_id}' not found")
        return dict(self._purges[purge_id])
