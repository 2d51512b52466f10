"""Content reports: spec v1.19 client-server "Reporting content" (events, rooms since v1.13, users since
v1.14), kept for the server's admins and read through Synapse's admin API (``docs/admin_api/event_reports.md``,
``room_reports.md``; user reports, which Synapse has no admin API for, under ``/_hexagone/admin/v1``).

A report is committed (and its audit entry written, kind ``content_report``) before the reporter gets 200.
What cannot be reported answers 404: an event the reporter is not joined to see (or a redacted one), a room
this server does not know, a user it has never seen.
"""

from __future__ import annotations

import itertools
import json

from homeserver.errors import not_found
from homeserver.events.identifiers import domain_of
from homeserver.services.room_events.heads import federation_form

EVENT, ROOM, USER = "event", "room", "user"


def _content(event_json: str | None, key: str):
    if event_json is None:
        return None
    value = json.loads(event_json).get("content", {}).get(key)
    return value if isinstance(value, str) else None


class ReportService:
    def __init__(self, *, store, history, room_heads, accounts, event_store, audit, clock, server_name: str):
        self._store = store  # homeserver.storage.reports.ReportStore
        self._history = history
        self._heads = room_heads
        self._accounts = accounts
        self._events = event_store
        self._audit = audit
        self._clock = clock
        self._server_name = server_name
        self._ids = itertools.count(store.max_id_sync() + 1)

    async def _add(self, kind: str, user_id: str, origin: str | None, target: str, **fields) -> None:
        report = {"id": next(self._ids), "kind": kind, "received_ts": int(self._clock.seconds() * 1000),
                  "user_id": user_id, **fields}
        await self._store.add(report)
        await self._audit.record("content_report", user_id, target, origin,
                                 {"report": kind, "report_id": report["id"], "reason": fields.get("reason")})

    # -- reporting (client-server API) ----------------------------------------------------------------
    async def report_event(self, user_id: str, origin: str | None, room_id: str, event_id: str,
                           reason: str | None, score: int | None) -> None:
        """POST /rooms/{roomId}/report/{eventId}: the reporter must be joined and able to see the event."""
        event = await self._history.joined_visible_event(user_id, room_id, event_id)
        if event is None or event.redacted_by:
            raise not_found("Unable to report event: it does not exist or you aren't able to see it.")
        await self._add(EVENT, user_id, origin, event_id, room_id=room_id, event_id=event_id,
                        event_sender=event.sender, reason=reason, score=score)

    async def report_room(self, user_id: str, origin: str | None, room_id: str, reason: str) -> None:
        """POST /rooms/{roomId}/report: any room this server knows, joined or not."""
        if await self._heads.room_version(room_id) is None:
            raise not_found("The room was not found.")
        await self._add(ROOM, user_id, origin, room_id, room_id=room_id, reason=reason)

    async def report_user(self, user_id: str, origin: str | None, target: str, reason: str) -> None:
        """POST /users/{userId}/report: a local account, or a remote user in a room this server knows."""
        if domain_of(target) == self._server_name:
            known = await self._accounts.user_exists(target)
        else:
            known = bool(await self._events.rooms_for_user(target))
        if not known:
            raise not_found("The user was not found.")
        await self._add(USER, user_id, origin, target, target_user_id=target, reason=reason)

    # -- reading (admin API) --------------------------------------------------------------------------
    async def _with_rooms(self, reports: list[dict], fields: tuple[str, ...]) -> list[dict]:
        labels = await self._store.room_labels(r["room_id"] for r in reports)
        out = []
        for report in reports:
            room = labels.get(report["room_id"], {})
            shaped = {k: report[k] for k in fields}
            shaped.update(name=_content(room.get("name"), "name"),
                          canonical_alias=_content(room.get("alias"), "alias"))
            if report["kind"] == ROOM:
                shaped["topic"] = _content(room.get("topic"), "topic")
            out.append(shaped)
        return out

    async def event_reports(self, *, offset: int, limit: int, newest_first: bool, room_id: str | None,
                            user_id: str | None, sender: str | None) -> dict:
        """GET /_synapse/admin/v1/event_reports: ``room_id`` and ``user_id`` match parts, the sender exactly."""
        contains = {k: v for k, v in (("room_id", room_id), ("user_id", user_id)) if v}
        reports, total = await self._store.list(EVENT, offset=offset, limit=limit, newest_first=newest_first,
                                                exact={"event_sender": sender} if sender else None,
                                                contains=contains)
        body = {"event_reports": [self._event_shape(r) for r in await self._with_rooms(
            reports, ("id", "received_ts", "room_id", "event_id", "user_id", "reason", "score", "event_sender"))],
            "total": total}
        if offset + len(reports) < total:
            body["next_token"] = offset + len(reports)
        return body

    @staticmethod
    def _event_shape(report: dict) -> dict:
        shaped = dict(report, sender=report["event_sender"])
        del shaped["event_sender"]
        return shaped

    async def event_report(self, report_id: int) -> dict:
        """GET /_synapse/admin/v1/event_reports/{report_id}, with the event as other servers see it."""
        report = await self._store.get(EVENT, report_id)
        if report is None:
            raise not_found("Event report not found")
        (shaped,) = await self._with_rooms([report], ("id", "received_ts", "room_id", "event_id", "user_id",
                                                      "reason", "score", "event_sender"))
        event, version = await self._heads.get_event(report["event_id"]), await self._heads.room_version(
            report["room_id"])
        shaped = self._event_shape(shaped)
        shaped["event_json"] = federation_form(event, version) if event is not None and version else None
        return shaped

    async def delete(self, kind: str, report_id: int) -> None:
        if not await self._store.delete(kind, report_id):
            raise not_found("Report not found")

    async def room_reports(self, *, before_id: int | None, limit: int, room_id: str | None,
                           user_id: str | None) -> dict:
        """GET /_synapse/admin/v1/room_reports: newest first from report ``before_id`` (``next_batch``); as in
        Synapse, not the reports of rooms deleted and purged since."""
        exact = {k: v for k, v in (("room_id", room_id), ("user_id", user_id)) if v}
        reports, total = await self._store.list(ROOM, offset=0, limit=limit + 1, newest_first=True,
                                                before_id=before_id, exact=exact, known_rooms_only=True)
        body = {"room_reports": await self._with_rooms(
            reports[:limit], ("id", "received_ts", "room_id", "user_id", "reason")), "total": total}
        if len(reports) > limit:
            body["next_batch"] = reports[limit]["id"]
        return body

    async def room_report(self, report_id: int) -> dict:
        report = await self._store.get(ROOM, report_id)
        if report is None:
            raise not_found("Room report not found")
        return (await self._with_rooms([report], ("id", "received_ts", "room_id", "user_id", "reason")))[0]

    async def user_reports(self, *, offset: int, limit: int, newest_first: bool, user_id: str | None,
                           target: str | None) -> dict:
        """GET /_hexagone/admin/v1/user_reports, shaped like the event reports."""
        exact = {k: v for k, v in (("user_id", user_id), ("target_user_id", target)) if v}
        reports, total = await self._store.list(USER, offset=offset, limit=limit, newest_first=newest_first,
                                                exact=exact)
        body = {"user_reports": [{k: r[k] for k in ("id", "received_ts", "user_id", "target_user_id", "reason")}
                                 for r in reports], "total": total}
        if offset + len(reports) < total:
            body["next_token"] = offset + len(reports)
        return body
