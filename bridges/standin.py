"""What the Oodrive and Tixeo stand-in servers share: OAuth2 client credentials, the JSON error shape,
a state kept in a directory (so a restarted stand-in has lost nothing), an activity feed with
increasing ids, and test controls under ``/_standin/`` that are not part of any contract: revoke the
tokens, answer 500 or stall for the next calls.

Run one with ``hexagone bridge oodrive standin --port P`` (or ``tixeo``); it listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from typing import Any, Callable

import aiohttp
from aiohttp import web

from bridges.product import signature

logger = logging.getLogger(__name__)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class StandinState:
    """A JSON document in ``directory/state.json``, written after every change (atomically)."""

    def __init__(self, directory: str, initial: dict):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "state.json")
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                self.doc = json.load(f)
        else:
            self.doc = {"next_id": 1, "events": [], "tokens": [], "webhooks": {}, **initial}
            self.save()
        self.listeners: list[Callable[[dict], None]] = []

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.doc, f)
        os.replace(tmp, self.path)

    def new_id(self, prefix: str) -> str:
        value = self.doc["next_id"]
        self.doc["next_id"] = value + 1
        return f"{prefix}{value}"

    def emit(self, event_type: str, **fields: Any) -> dict:
        event = {"id": str(len(self.doc["events"]) + 1), "type": event_type,
                 "at": int(time.time() * 1000), **fields}
        self.doc["events"].append(event)
        for listener in self.listeners:
            listener(event)
        return event

    def events_after(self, after: str, limit: int) -> dict:
        start = int(after) if after.isdigit() else 0
        items = self.doc["events"][start:start + limit]
        return {"items": items, "next": items[-1]["id"] if items else str(start)}


def build_standin(state: StandinState, client_id: str, client_secret: str, routes: list) -> web.Application:
    """The app: ``routes`` (method, path, handler) behind the bearer check and the injected faults."""
    faults = {"status": 0, "count": 0, "delay_s": 0.0, "path": ""}

    @web.middleware
    async def guard(request: web.Request, handler):
        if request.path.startswith("/_standin/") or request.path == "/oauth/token":
            return await handler(request)
        if faults["count"] > 0 and request.path.startswith(faults["path"]):
            faults["count"] -= 1
            if faults["delay_s"]:
                await asyncio.sleep(faults["delay_s"])
            if faults["status"]:
                return error(faults["status"], "injected", "injected failure")
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in state.doc["tokens"]:
            return error(401, "invalid_token", "the bearer token is missing, expired or revoked")
        return await handler(request)

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return error(400, "unsupported_grant_type", "only client_credentials")
        if form.get("client_id") != client_id or form.get("client_secret") != state.doc.get("secret", client_secret):
            return error(401, "invalid_client", "unknown client or wrong secret")
        value = secrets.token_urlsafe(24)
        state.doc["tokens"].append(value)
        state.save()
        return web.json_response({"access_token": value, "token_type": "Bearer", "expires_in": 3600})

    async def revoke(request: web.Request) -> web.Response:
        """Test control: every token is revoked; ``{"secret": ...}`` also changes the client secret."""
        body = await request.json() if request.can_read_body else {}
        state.doc["tokens"] = []
        if body.get("secret"):
            state.doc["secret"] = body["secret"]
        state.save()
        return web.json_response({})

    async def fault(request: web.Request) -> web.Response:
        """Test control: the next ``count`` calls (under ``path``) answer ``status`` (0: normally) after
        ``delay_s``."""
        body = await request.json()
        faults.update(status=int(body.get("status", 0)), count=int(body.get("count", 1)),
                      delay_s=float(body.get("delay_s", 0)), path=str(body.get("path", "")))
        return web.json_response({})

    async def register_webhook(request: web.Request) -> web.Response:
        body = await request.json()
        if not str(body.get("url", "")).startswith(("http://", "https://")) or not body.get("secret"):
            return error(400, "bad_request", "a url and a secret")
        state.doc["webhooks"][body["url"]] = body["secret"]
        state.save()
        return web.json_response({})

    pending: set[asyncio.Task] = set()

    def notify(event: dict) -> None:
        """POST ``{"id": ...}`` to every registered webhook, signed; failures only logged (the feed keeps it)."""
        async def post(url: str, secret: str) -> None:
            body = json.dumps({"id": event["id"]}).encode()
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                    await session.post(url, data=body, headers={"X-Signature": signature(secret, body),
                                                                "Content-Type": "application/json"})
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                logger.info("webhook %s: %s", url, e)

        for url, secret in state.doc["webhooks"].items():
            task = asyncio.get_running_loop().create_task(post(url, secret))
            pending.add(task)
            task.add_done_callback(pending.discard)

    state.listeners.append(notify)

    async def events(request: web.Request) -> web.Response:
        limit = min(int(request.query.get("limit", "100")), 500)
        return web.json_response(state.events_after(request.query.get("after", ""), limit))

    app = web.Application(middlewares=[guard], client_max_size=1 << 20)
    app.router.add_post("/oauth/token", token)
    app.router.add_post("/_standin/revoke", revoke)
    app.router.add_post("/_standin/fault", fault)
    app.router.add_get("/v1/events", events)
    app.router.add_post("/v1/webhooks", register_webhook)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


def serve(app: web.Application, port: int) -> int:
    """Run a stand-in in the foreground on 127.0.0.1 until interrupted."""
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: None, access_log=None)
    return 0
