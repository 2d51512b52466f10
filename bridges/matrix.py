"""The client-server API as the appservice speaks it: the ``as_token``, ``?user_id=`` to act as a ghost
(spec: application service API, "Identity assertion") and ``?ts=`` to keep a remote message's time
("Timestamp massaging"). Only HTTP: nothing here knows the homeserver's internals.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)

RETRIES = 5


class MatrixRequestError(Exception):
    def __init__(self, status: int, errcode: str, error: str):
        super().__init__(f"{status} {errcode}: {error}")
        self.status, self.errcode, self.error = status, errcode, error


def q(value: str) -> str:
    return quote(value, safe="")


def txn_id_for(key: str) -> str:
    """A transaction id derived from what is being sent, so a resend after a crash is deduplicated
    by the homeserver (spec: "Transaction identifiers")."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class MatrixClient:
    def __init__(self, base_url: str, as_token: str, bot_mxid: str, crypto=None):
        """``crypto``: the bot's encryption device (``bridges.crypto.BridgeCrypto``), or None: what is sent
        to an encrypted room is then sent in clear."""
        self.crypto = crypto
        self._base = base_url
        self._token = as_token
        self.bot_mxid = bot_mxid
        self._session: aiohttp.ClientSession | None = None
        self.reachable = False  # the last request got an answer (for the bridge's readiness)

    @property
    def encryption(self):
        """The bot's encryption device when it is running, else None."""
        return self.crypto if self.crypto is not None and self.crypto.ready else None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self._token}"},
                                              timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: Any = None, *, user_id: str | None = None,
                      ts: int | None = None, params: dict | None = None) -> Any:
        """One JSON request, retried on 429 and on connection errors; MatrixRequestError otherwise."""
        query = dict(params or {})
        if user_id and user_id != self.bot_mxid:
            query["user_id"] = user_id
        if ts is not None:
            query["ts"] = str(ts)
        for attempt in range(RETRIES):
            try:
                async with self._session.request(method, self._base + path, json=body, params=query) as resp:
                    self.reachable = True
                    data = await resp.json(content_type=None) if resp.content_length != 0 else {}
                    if resp.status == 429 and attempt < RETRIES - 1:
                        await asyncio.sleep(min(data.get("retry_after_ms", 500), 5000) / 1000)
                        continue
                    if resp.status >= 400:
                        data = data if isinstance(data, dict) else {}
                        raise MatrixRequestError(resp.status, data.get("errcode", "M_UNKNOWN"),
                                                 data.get("error", ""))
                    return data if isinstance(data, (dict, list)) else {}  # a list: GET /rooms/{id}/state
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
                if attempt == RETRIES - 1:
                    self.reachable = False
                    raise
                await asyncio.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    # -- accounts -----------------------------------------------------------------------------
    async def ensure_registered(self, localpart: str) -> None:
        """spec: POST /register with m.login.application_service; M_USER_IN_USE means done already."""
        try:
            await self.request("POST", "/_matrix/client/v3/register",
                               {"type": "m.login.application_service", "username": localpart,
                                "inhibit_login": True})
        except MatrixRequestError as e:
            if e.errcode != "M_USER_IN_USE":
                raise

    async def set_displayname(self, user_id: str, name: str) -> None:
        await self.request("PUT", f"/_matrix/client/v3/profile/{q(user_id)}/displayname",
                           {"displayname": name}, user_id=user_id)

    async def set_avatar_url(self, user_id: str, mxc: str) -> None:
        await self.request("PUT", f"/_matrix/client/v3/profile/{q(user_id)}/avatar_url",
                           {"avatar_url": mxc}, user_id=user_id)

    async def whoami(self) -> dict:
        return await self.request("GET", "/_matrix/client/v3/account/whoami")

    # -- rooms --------------------------------------------------------------------------------
    async def create_room(self, body: dict) -> str:
        return (await self.request("POST", "/_matrix/client/v3/createRoom", body))["room_id"]

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/invite", {"user_id": user_id})

    async def join(self, room_id: str, user_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/join/{q(room_id)}", {}, user_id=user_id)

    async def leave(self, room_id: str, user_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/leave", {}, user_id=user_id)

    async def joined_members(self, room_id: str) -> dict:
        return (await self.request("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/joined_members"))["joined"]

    async def send_state(self, room_id: str, event_type: str, state_key: str, content: dict,
                         user_id: str | None = None) -> str:
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"
        return (await self.request("PUT", path, content, user_id=user_id))["event_id"]

    async def send(self, room_id: str, event_type: str, content: dict, *, user_id: str | None = None,
                   ts: int | None = None, txn_key: str) -> str:
        """A room event, encrypted in an encrypted room when the bot has its device (also for a ghost)."""
        if self.encryption is not None:
            encrypted = await self.encryption.encrypt(room_id, event_type, content)
            if encrypted is not None:
                event_type, content = encrypted
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/send/{q(event_type)}/{txn_id_for(txn_key)}"
        return (await self.request("PUT", path, content, user_id=user_id, ts=ts))["event_id"]

    async def redact(self, room_id: str, event_id: str, *, user_id: str | None = None, txn_key: str,
                     reason: str | None = None) -> str:
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/redact/{q(event_id)}/{txn_id_for(txn_key)}"
        return (await self.request("PUT", path, {"reason": reason} if reason else {}, user_id=user_id))["event_id"]

    async def receipt(self, room_id: str, event_id: str, user_id: str) -> None:
        await self.request("POST", f"/_matrix/client/v3/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {},
                           user_id=user_id)

    async def get_event(self, room_id: str, event_id: str) -> dict:
        return await self.request("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}")

    # -- media (spec: content repository; authenticated download, v1.11) ----------------------
    async def upload(self, chunks: AsyncIterator[bytes], size: int, content_type: str, filename: str,
                     user_id: str | None = None) -> str:
        """Stream ``chunks`` (exactly ``size`` bytes) to the media repository; the mxc URI."""
        params = {"filename": filename} if filename else {}  # none for an encrypted file: the name is secret
        if user_id and user_id != self.bot_mxid:
            params["user_id"] = user_id
        headers = {"Content-Type": content_type or "application/octet-stream", "Content-Length": str(size)}
        async with self._session.post(self._base + "/_matrix/media/v3/upload", data=chunks, params=params,
                                      headers=headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise MatrixRequestError(resp.status, data.get("errcode", "M_UNKNOWN"), data.get("error", ""))
            return data["content_uri"]

    async def download(self, mxc: str, sink, limit: int) -> int:
        """Stream an mxc URI into ``sink`` (a binary file); MatrixRequestError(M_TOO_LARGE) past ``limit``."""
        if not mxc.startswith("mxc://") or mxc.count("/") != 3:
            raise MatrixRequestError(400, "M_INVALID_PARAM", f"not an mxc URI: {mxc!r}")
        server, media_id = mxc[len("mxc://"):].split("/")
        path = f"/_matrix/client/v1/media/download/{q(server)}/{q(media_id)}"
        async with self._session.get(self._base + path) as resp:
            if resp.status == 404:  # a homeserver without authenticated media (before spec v1.11)
                resp.release()
                return await self._download_legacy(server, media_id, sink, limit)
            return await _drain(resp, sink, limit)

    async def _download_legacy(self, server: str, media_id: str, sink, limit: int) -> int:
        async with self._session.get(self._base + f"/_matrix/media/v3/download/{q(server)}/{q(media_id)}") as resp:
            return await _drain(resp, sink, limit)


async def _drain(resp: aiohttp.ClientResponse, sink, limit: int) -> int:
    if resp.status >= 400:
        data = await resp.json(content_type=None)
        raise MatrixRequestError(resp.status, data.get("errcode", "M_UNKNOWN"), data.get("error", ""))
    if resp.content_length is not None and resp.content_length > limit:
        raise MatrixRequestError(413, "M_TOO_LARGE", f"{resp.content_length} bytes, over the limit of {limit}")
    total = 0
    async for chunk in resp.content.iter_chunked(1 << 20):
        total += len(chunk)
        if total > limit:
            raise MatrixRequestError(413, "M_TOO_LARGE", f"over the limit of {limit} bytes")
        sink.write(chunk)
    return total
