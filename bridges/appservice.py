"""The appservice's HTTP side (spec: application service API, "Homeserver -> Application Service API")
and the bridge's liveness and readiness endpoints.

A transaction is written to the store's inbox before it is acknowledged, so a retried transaction is
recognised by its id and a crash after the 200 loses nothing; the bridge then handles the inbox in order.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Awaitable, Callable, Protocol

from aiohttp import web

logger = logging.getLogger(__name__)

MAX_TRANSACTION_BYTES = 16 * 1024 * 1024
MAX_WEBHOOK_BYTES = 64 * 1024
# what a transaction carries for the appservice's devices: to-device messages (MSC2409/MSC4203), device
# lists and one-time key counts (MSC3202), under the unstable names Synapse and Hexagone use
DEVICE_DATA_PREFIXES = ("de.sorunome.msc2409.to_device", "org.matrix.msc2409.to_device", "org.matrix.msc3202.")


class TransactionSink(Protocol):
    async def accept_transaction(self, txn_id: str, events: list[dict], ephemeral: list[dict],
                                 devices: dict) -> None: ...

    async def query_user(self, user_id: str) -> bool: ...

    def health(self) -> tuple[bool, dict]: ...

    async def webhook(self, body: bytes, signature: str) -> bool: ...


def _error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


def valid_events(events: Any) -> tuple[list[dict], int]:
    """The events of a transaction that can be handled, and how many were not (a bad one is skipped,
    never allowed to block the ones after it)."""
    good = [e for e in events if isinstance(e, dict) and isinstance(e.get("event_id"), str)
            and isinstance(e.get("type"), str) and isinstance(e.get("room_id"), str)
            and isinstance(e.get("sender"), str)]
    return good, len(events) - len(good)


def build_app(hs_token: str, sink: TransactionSink) -> web.Application:
    def authorised(handler: Callable[[web.Request], Awaitable[web.Response]]):
        async def wrapper(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization", "")
            token = header[len("Bearer "):] if header.startswith("Bearer ") else request.query.get("access_token")
            if not token:
                return _error(401, "M_UNAUTHORIZED", "missing the homeserver token")
            if not hmac.compare_digest(token.encode(), hs_token.encode()):
                return _error(403, "M_FORBIDDEN", "wrong homeserver token")
            return await handler(request)
        return wrapper

    async def transaction(request: web.Request) -> web.Response:
        """spec: PUT /_matrix/app/v1/transactions/{txnId}"""
        raw = await request.content.read(MAX_TRANSACTION_BYTES + 1)
        if len(raw) > MAX_TRANSACTION_BYTES:
            return _error(413, "M_TOO_LARGE", "transaction too large")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "M_NOT_JSON", "the transaction is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("events", []), list):
            return _error(400, "M_BAD_JSON", "a transaction is an object with an 'events' list")
        events, bad = valid_events(body.get("events", []))
        if bad:
            logger.warning("transaction %s: skipped %d malformed event(s)", request.match_info["txn_id"], bad)
        ephemeral = body.get("ephemeral") or body.get("de.sorunome.msc2409.ephemeral") or []
        devices = {k: v for k, v in body.items() if k.startswith(DEVICE_DATA_PREFIXES)}
        await sink.accept_transaction(request.match_info["txn_id"], events,
                                      ephemeral if isinstance(ephemeral, list) else [], devices)
        return web.json_response({})

    async def user_query(request: web.Request) -> web.Response:
        """spec: GET /_matrix/app/v1/users/{userId}"""
        if await sink.query_user(request.match_info["user_id"]):
            return web.json_response({})
        return _error(404, "M_NOT_FOUND", "no such remote user")

    async def room_query(request: web.Request) -> web.Response:
        """spec: GET /_matrix/app/v1/rooms/{roomAlias}: this bridge creates no room from an alias."""
        return _error(404, "M_NOT_FOUND", "no room for this alias")

    async def ping(request: web.Request) -> web.Response:
        """spec: POST /_matrix/app/v1/ping"""
        return web.json_response({})

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def ready(request: web.Request) -> web.Response:
        ok, state = sink.health()
        return web.json_response(state, status=200 if ok else 503)

    app = web.Application(client_max_size=MAX_TRANSACTION_BYTES)
    for prefix in ("/_matrix/app/v1", ""):  # "" : the legacy paths some homeservers still use
        app.router.add_put(prefix + "/transactions/{txn_id}", authorised(transaction))
        app.router.add_get(prefix + "/users/{user_id}", authorised(user_query))
        app.router.add_get(prefix + "/rooms/{alias}", authorised(room_query))
    app.router.add_post("/_matrix/app/v1/ping", authorised(ping))
    app.router.add_get("/_bridge/live", live)
    app.router.add_get("/_bridge/ready", ready)

    async def webhook(request: web.Request) -> web.Response:
        """A product's webhook (Oodrive, Tixeo): something changed, the feed says what; 403 unless signed."""
        body = await request.content.read(MAX_WEBHOOK_BYTES)
        ok = await sink.webhook(body, request.headers.get("X-Signature", ""))
        return web.json_response({}) if ok else _error(403, "M_FORBIDDEN", "bad or missing signature")

    app.router.add_post("/_bridge/webhook", webhook)
    return app
