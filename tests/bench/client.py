"""A small Matrix client-server API client on plain asyncio sockets.

The benchmarks run the client and the server on the same 2 cores, so the
client must cost little: one keep-alive HTTP/1.1 connection per simulated
user, no TLS, stdlib ``json``. It only speaks the public client-server API
(spec v1.19), so it can measure any homeserver.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import urllib.parse
import uuid
from dataclasses import dataclass

DEFAULT_TIMEOUT_S = 60.0
_txn_ids = itertools.count(1)
# Transaction ids unique to this process too: a growth --measure run sends with the access tokens its --fill run
# kept, and a server answers a transaction id it has seen on that device with the event it already made.
_TXN_PREFIX = f"bench{uuid.uuid4().hex[:8]}-"


class RequestFailed(Exception):
    """A request that did not return 2xx (or did not return at all)."""

    def __init__(self, method: str, path: str, status: int | None, detail: str):
        super().__init__(f"{method} {path.split('?')[0]}: {status or 'no response'} {detail}")
        self.status = status


@dataclass(frozen=True)
class Reply:
    """A 2xx answer. Its body is decoded when first read, so a timed request measures the server
    and the wire, not the client's JSON decoding (the same cost whichever server answered)."""

    status: int
    raw: bytes

    @property
    def size(self) -> int:
        """Body bytes on the wire."""
        return len(self.raw)

    @functools.cached_property
    def json(self) -> dict:
        return json.loads(self.raw) if self.raw else {}


WRITE_SLICE = 256 * 1024  # bytes of a request body handed to the transport at once
# The stream buffer's limit: asyncio stops and restarts reading the socket at twice it, which at its 64 KiB
# default made the client, not the server, the bound of a 20 MB download.
READ_LIMIT = 4 * 1024 * 1024


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; requests on it are sequential."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]
                      ) -> tuple[int, bytes]:
        """Send one request; a reused connection the server closed while idle is reopened once."""
        reused = self._writer is not None
        try:
            return await self._exchange(method, path, body, headers)
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            self.close()
            if not reused or getattr(e, "partial", b"") != b"":
                raise
            return await self._exchange(method, path, body, headers)

    async def _exchange(self, method, path, body, headers) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=READ_LIMIT)
            self._writer.transport.max_size = READ_LIMIT  # one recv() may take that much (asyncio: 256 KiB)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        payload = body or b""
        if body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(payload)}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        # A large body goes in slices: asyncio (3.11) keeps what the socket did not take in one bytearray that
        # it shifts after every send, which for a 20 MB upload cost the client more CPU than the server spent.
        body_view = memoryview(payload)
        for start in range(0, len(payload), WRITE_SLICE):
            self._writer.write(body_view[start:start + WRITE_SLICE])
            await self._writer.drain()
        await self._writer.drain()
        status, response_headers = await self._read_head()
        data = await self._read_body(response_headers)
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        status_line = await self._reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := await self._reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self._reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunks.append(await self._reader.readexactly(size))
                await self._reader.readexactly(2)
            while await self._reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        data = await self._reader.read()
        self.close()
        return data

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


class MatrixClient:
    """One simulated user: an access token and its own connection."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S):
        parsed = urllib.parse.urlsplit(base_url)
        self.base_url = base_url
        self._conn = HttpConnection(parsed.hostname, parsed.port)
        self.timeout_s = timeout_s
        self.user_id: str | None = None
        self.access_token: str | None = None

    def clone(self) -> MatrixClient:
        """The same user on a connection of its own, for concurrent requests."""
        other = MatrixClient(self.base_url, timeout_s=self.timeout_s)
        other.user_id, other.access_token = self.user_id, self.access_token
        return other

    async def call(self, method: str, path: str, body: dict | None = None, *,
                   timeout_s: float | None = None) -> Reply:
        """One client-server API call under /_matrix/client/v3; non-2xx raises RequestFailed."""
        data = json.dumps(body).encode() if body is not None else None
        return await self.send(method, "/_matrix/client/v3" + path, data,
                               {"Content-Type": "application/json"} if body is not None else {}, timeout_s)

    async def send(self, method: str, full: str, data: bytes | None, headers: dict[str, str],
                   timeout_s: float | None = None) -> Reply:
        """One request to ``full`` (a path from the root) with this user's token; non-2xx raises RequestFailed."""
        if self.access_token:
            headers = {**headers, "Authorization": f"Bearer {self.access_token}"}
        try:
            status, raw = await asyncio.wait_for(self._conn.request(method, full, data, headers),
                                                 timeout_s or self.timeout_s)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
            self._conn.close()
            raise RequestFailed(method, full, None, type(e).__name__) from e
        if not 200 <= status < 300:
            raise RequestFailed(method, full, status, raw[:200].decode("utf-8", "replace"))
        return Reply(status, raw)

    def close(self) -> None:
        self._conn.close()

    # -- the endpoints the workloads use -------------------------------------------------

    async def register(self, username: str, password: str) -> None:
        """POST /register with the m.login.dummy stage."""
        body = {"username": username, "password": password, "auth": {"type": "m.login.dummy"}}
        result = (await self.call("POST", "/register", body)).json
        self.user_id, self.access_token = result["user_id"], result["access_token"]

    async def login(self, username: str, password: str) -> None:
        """POST /login with m.login.password."""
        result = (await self.call("POST", "/login", {
            "type": "m.login.password", "password": password,
            "identifier": {"type": "m.id.user", "user": username}})).json
        self.user_id, self.access_token = result["user_id"], result["access_token"]

    async def create_room(self, **body) -> str:
        return (await self.call("POST", "/createRoom", body)).json["room_id"]

    async def send_text(self, room_id: str, text: str) -> str:
        path = f"/rooms/{quote(room_id)}/send/m.room.message/{_TXN_PREFIX}{next(_txn_ids)}"
        return (await self.call("PUT", path, {"msgtype": "m.text", "body": text})).json["event_id"]

    async def join(self, room_id: str, via: tuple[str, ...] = (), timeout_s: float | None = None) -> None:
        """POST /join/{roomIdOrAlias}, through the ``via`` servers for a room this server is not in."""
        query = "?" + urllib.parse.urlencode([("via", v) for v in via]) if via else ""
        await self.call("POST", f"/join/{quote(room_id)}{query}", {}, timeout_s=timeout_s)

    async def put_state(self, room_id: str, event_type: str, state_key: str, content: dict) -> str:
        path = f"/rooms/{quote(room_id)}/state/{quote(event_type)}/{quote(state_key)}"
        return (await self.call("PUT", path, content)).json["event_id"]

    async def state(self, room_id: str) -> Reply:
        return await self.call("GET", f"/rooms/{quote(room_id)}/state")

    async def sync(self, since: str | None = None, timeout_ms: int = 0, sync_filter: dict | None = None) -> Reply:
        query = {"timeout": str(timeout_ms)}
        if since is not None:
            query["since"] = since
        if sync_filter is not None:
            query["filter"] = json.dumps(sync_filter, separators=(",", ":"))
        return await self.call("GET", "/sync?" + urllib.parse.urlencode(query),
                               timeout_s=self.timeout_s + timeout_ms / 1000)

    async def messages(self, room_id: str, from_token: str | None, limit: int) -> Reply:
        """GET /rooms/{roomId}/messages backwards from ``from_token`` (the newest events when None)."""
        query = {"dir": "b", "limit": str(limit)} | ({"from": from_token} if from_token is not None else {})
        return await self.call("GET", f"/rooms/{quote(room_id)}/messages?" + urllib.parse.urlencode(query))

    async def search_users(self, term: str, limit: int = 10) -> Reply:
        return await self.call("POST", "/user_directory/search", {"search_term": term, "limit": limit})

    async def members(self, room_id: str, timeout_s: float | None = None) -> Reply:
        return await self.call("GET", f"/rooms/{quote(room_id)}/members", timeout_s=timeout_s)

    async def upload(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        """POST /_matrix/media/v3/upload: the content URI."""
        reply = await self.send("POST", "/_matrix/media/v3/upload", data, {"Content-Type": content_type})
        return reply.json["content_uri"]

    async def download(self, content_uri: str, what: str = "download") -> Reply:
        """GET /_matrix/client/v1/media/download (or ``what``: ``thumbnail/...?width=...``) of an mxc URI."""
        server_and_id = content_uri.removeprefix("mxc://")
        return await self.send("GET", f"/_matrix/client/v1/media/{what.replace('{}', server_and_id)}", None, {})

    async def first_byte_s(self, content_uri: str) -> float:
        """Seconds from sending an authenticated download to its first byte (status line); the rest is read
        and dropped on a connection of its own."""
        parsed = urllib.parse.urlsplit(self.base_url)
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port, limit=2 ** 20)
        try:
            path = f"/_matrix/client/v1/media/download/{content_uri.removeprefix('mxc://')}"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {parsed.hostname}\r\nConnection: close\r\n"
                         f"Authorization: Bearer {self.access_token}\r\n\r\n".encode())
            start = asyncio.get_running_loop().time()
            await writer.drain()
            first = await reader.read(1)
            elapsed = asyncio.get_running_loop().time() - start
            if first != b"H":
                raise RequestFailed("GET", path, None, "no answer")
            while await reader.read(2 ** 20):
                pass
            return elapsed
        finally:
            writer.close()
