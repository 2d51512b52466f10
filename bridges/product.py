"""What the Oodrive and Tixeo adapters share: an HTTP client of a product's contract (OAuth2 client
credentials, JSON errors, timeouts) and the poller of a product's activity feed.

Both products' contracts (``bridges/<name>/contract.yaml``) are our assumption, written from their
documented objects: an ``Authorization: Bearer`` token from ``POST /oauth/token`` (grant
``client_credentials``), errors as ``{"error": {"code", "message"}}``, and a feed ``GET .../events?after=``
whose ``next`` cursor is stored by the bridge so a restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
BACKOFF_MAX_S = 10.0


class ProductError(Exception):
    """A product's error answer (``status`` 0: unreachable or timed out)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}" if status else message)
        self.status, self.code, self.message = status, code, message

    @property
    def transient(self) -> bool:
        return self.status == 0 or self.status >= 500 or self.status == 429


class ProductClient:
    """One product's HTTP API: a bearer token from the client credentials, renewed once on 401."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, timeout_s: float = 30.0):
        self.base = base_url.rstrip("/")
        self._credentials = {"grant_type": "client_credentials", "client_id": client_id,
                             "client_secret": client_secret}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _authenticate(self) -> None:
        async with self._calling():
            async with self._session.post(self.base + "/oauth/token", data=self._credentials) as resp:
                body = await _answer(resp)
        self._token = body["access_token"]

    @contextlib.asynccontextmanager
    async def _calling(self):
        try:
            yield
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise ProductError(0, "unreachable", f"{self.base} did not answer ({type(e).__name__})") from None

    async def call(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
                   data: Any = None, headers: dict | None = None, raw: bool = False) -> Any:
        """One call; the JSON answer (``raw``: the open response, to stream; the caller releases it)."""
        for attempt in (0, 1):
            if self._token is None:
                await self._authenticate()
            all_headers = {"Authorization": f"Bearer {self._token}", **(headers or {})}
            async with self._calling():
                resp = await self._session.request(method, self.base + path, json=json, params=params, data=data,
                                                   headers=all_headers)
            if resp.status == 401:
                self._token = None  # expired or revoked: renewed on the next call
                if attempt == 0 and data is None:
                    resp.release()
                    continue
            if raw and resp.status < 400:
                return resp
            async with resp:
                return await _answer(resp)
        raise AssertionError("unreachable")

    async def stream(self, path: str) -> AsyncIterator[bytes]:
        """A download, chunk by chunk (memory stays bounded)."""
        resp = await self.call("GET", path, raw=True)
        async with resp:
            async with self._calling():
                async for chunk in resp.content.iter_chunked(CHUNK):
                    yield chunk


def problem(product: str, e: ProductError) -> str:
    """A product's error as a room notice says it."""
    if e.status == 401:
        return f"{product} refused the bridge's credentials (the token or the client was revoked); ask an admin"
    if e.status == 413:
        return f"the file is over {product}'s size limit ({e.message})"
    if e.transient:
        return f"{product} is unavailable ({e.message}); try again later"
    return f"{product} answered {e.code}: {e.message}"


class ProductAdapter:
    """The part of every adapter over a contract: the client's lifecycle and the activity feed."""

    def __init__(self, url: str, client_id: str, client_secret: str, timeout_s: float = 30.0):
        self.http = ProductClient(url, client_id, client_secret, timeout_s)

    async def open(self) -> None:
        await self.http.open()

    async def close(self) -> None:
        await self.http.close()

    async def register_webhook(self, url: str, secret: str) -> None:
        """Ask the product to POST to ``url``, signed with ``secret``, whenever its feed grows."""
        await self.http.call("POST", "/v1/webhooks", json={"url": url, "secret": secret})

    async def events(self, after: str) -> tuple[list[dict], str]:
        """One page of the feed after the cursor ``after``, and the cursor after that page."""
        page = await self.http.call("GET", "/v1/events", params={"after": after, "limit": "100"})
        return page["items"], page["next"]


async def none_if_missing(call: Awaitable[Any]) -> Any:
    """The answer of ``call``, or None when the product says 404."""
    try:
        return await call
    except ProductError as e:
        if e.status == 404:
            return None
        raise


async def _answer(resp: aiohttp.ClientResponse) -> Any:
    try:
        body = await resp.json(content_type=None)
    except ValueError:
        body = None
    if resp.status >= 400:
        error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
        raise ProductError(resp.status, str(error.get("code", f"http_{resp.status}")),
                           str(error.get("message", resp.reason or "")))
    return body


async def file_chunks(path: str) -> AsyncIterator[bytes]:
    """A spooled file, chunk by chunk, read off the event loop."""
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


class FeedPoller:
    """Polls a product's activity feed from a cursor the store keeps: ``fetch(cursor)`` gives (items,
    next cursor); each item is handled, then the cursor is saved, so a restart neither skips nor repeats
    more than the item being handled (whose Matrix sends carry deterministic transaction ids)."""

    def __init__(self, store, cursor_name: str, fetch: Callable[[str], Awaitable[tuple[list[dict], str]]],
                 handle: Callable[[dict], Awaitable[None]], interval_s: float, product: str):
        self._store, self._cursor_name, self._fetch, self._handle = store, cursor_name, fetch, handle
        self._interval, self._product = interval_s, product
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.state = {"state_event": "CONNECTING", "message": "starting"}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        """Poll now (a webhook call or a command said something changed)."""
        self._wakeup.set()

    async def poll_once(self) -> int:
        cursor = await self._store.cursor(self._cursor_name) or ""
        handled = 0
        while True:
            items, following = await self._fetch(cursor)
            for item in items:
                await self._handle(item)
                cursor = str(item.get("id", following))
                await self._store.set_cursor(self._cursor_name, cursor)
                handled += 1
            if following and following != cursor:
                cursor = following
                await self._store.set_cursor(self._cursor_name, cursor)
            if not items:
                return handled

    async def _run(self) -> None:
        backoff = self._interval
        while True:
            try:
                await self.poll_once()
                self.state = {"state_event": "CONNECTED", "message": ""}
                backoff = self._interval
            except ProductError as e:
                state = "TRANSIENT_DISCONNECT" if e.transient else "BAD_CREDENTIALS" if e.status == 401 else \
                    "UNKNOWN_ERROR"
                if self.state.get("message") != str(e):
                    logger.warning("%s feed: %s", self._product, e)
                self.state = {"state_event": state, "message": str(e)}
                backoff = min(max(backoff * 2, 0.2), BACKOFF_MAX_S)
            except Exception:
                logger.exception("%s feed item not handled; retried at the next poll", self._product)
                backoff = min(max(backoff * 2, 0.2), BACKOFF_MAX_S)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), backoff)
            self._wakeup.clear()


def adapter_from(config, adapter_class):
    """The HTTP adapter of the product's section of the configuration (``url``, ``client_id``,
    ``client_secret``, ``timeout_s``); BridgeConfigError naming a missing key."""
    from bridges.config import BridgeConfigError

    section = config.network
    for key in ("url", "client_id", "client_secret"):
        if not isinstance(section.get(key), str) or not section[key]:
            raise BridgeConfigError(f"{config.name}.{key}: missing")
    return adapter_class(section["url"], section["client_id"], section["client_secret"],
                         float(section.get("timeout_s", 30)))


def signature(secret: str, body: bytes) -> str:
    """``X-Signature`` of a webhook call: hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class PolledConnector:
    """The lifecycle a connector over a polled product shares: the adapter opened, the feed polled from
    the stored cursor ``<network_id>.feed`` into ``on_item``, its state as the connection state."""

    network_id = ""
    network_name = ""

    def __init__(self, config, api):
        self.config = config
        self.api = api
        self._interval = float(config.network.get("poll_interval_s", 2))
        self._core = None
        self._poller: FeedPoller | None = None

    async def on_item(self, item: dict) -> None:
        raise NotImplementedError

    async def start(self, core) -> None:
        self._core = core
        await self.api.open()
        self._poller = FeedPoller(core.store, f"{self.network_id}.feed", self.api.events, self.on_item, self._interval,
                                  self.network_name)
        self._poller.start()
        webhook_url = self.config.network.get("webhook_url")
        if webhook_url:  # the feed stays the source of truth; the webhook only says "poll now"
            try:
                await self.api.register_webhook(webhook_url, self._webhook_secret())
            except ProductError as e:
                logger.warning("%s webhook not registered (%s): polling only", self.network_name, e)

    def _webhook_secret(self) -> str:
        """Derived from the bridge's own secret: the same across restarts, never configured apart."""
        return signature(self.config.hs_token, f"webhook:{self.network_id}".encode())

    async def on_webhook(self, body: bytes, given: str) -> bool:
        if not self._poller or not hmac.compare_digest(signature(self._webhook_secret(), body), given):
            return False
        self._poller.poke()
        return True

    async def stop(self) -> None:
        if self._poller:
            await self._poller.stop()
        await self.api.close()

    def connection_state(self) -> dict:
        return dict(self._poller.state) if self._poller else {"state_event": "CONNECTING", "message": ""}

    async def sync(self) -> str:
        return f"{self.network_name}: {await self._poller.poll_once()} change(s) picked up."
