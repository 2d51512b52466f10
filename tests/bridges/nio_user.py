"""A matrix-nio user for the bridge tests: keeps every timeline and ephemeral event it synced, joins
every room it is invited to (portals invite it), and waits on conditions over what it saw."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import nio

from tests.integration.harness import PASSWORD

SYNC_TIMEOUT_MS = 1000


class NioUser:
    def __init__(self, client: nio.AsyncClient):
        self.client = client
        self.timeline: list[tuple[str, dict]] = []  # (room_id, event source)
        self.ephemeral: list[tuple[str, Any]] = []  # (room_id, nio event)
        self.sync_times: list[tuple[float, str, dict]] = []  # (monotonic time seen, room_id, event)
        self.decrypted: set[str] = set()  # the ids of the events that came encrypted and were decrypted

    @classmethod
    async def login(cls, homeserver, localpart: str, store_path: str | None = None) -> "NioUser":
        """``store_path``: an end-to-end encryption device (matrix-nio's, on vodozemac) kept there."""
        user_id = f"@{localpart}:{homeserver.name}"
        status, _ = homeserver.request("GET", f"/profile/{user_id}")
        if status != 200:
            homeserver.register(localpart)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        client = nio.AsyncClient(homeserver.base_url, user_id, store_path=store_path or "", config=config)
        resp = await client.login(PASSWORD)
        assert isinstance(resp, nio.LoginResponse), resp
        if client.olm is not None:
            assert isinstance(await client.keys_upload(), nio.KeysUploadResponse)
        user = cls(client)
        await user.sync_once(timeout_ms=0)
        return user

    async def close(self) -> None:
        await self.client.close()

    @property
    def user_id(self) -> str:
        return self.client.user_id

    async def sync_once(self, timeout_ms: int = SYNC_TIMEOUT_MS) -> None:
        resp = await self.client.sync(timeout=timeout_ms)
        assert isinstance(resp, nio.SyncResponse), resp
        seen = time.monotonic()
        if self.client.olm is not None:  # what nio's own sync loop does: keys up, queried, claimed
            if self.client.should_upload_keys:
                await self.client.keys_upload()
            if self.client.should_query_keys:
                await self.client.keys_query()
            if self.client.should_claim_keys:
                await self.client.keys_claim(self.client.get_users_for_key_claiming())
            await self.client.send_to_device_messages()
        for room_id, info in resp.rooms.join.items():
            for event in info.timeline.events:
                if getattr(event, "decrypted", False):
                    self.decrypted.add(event.event_id)
                self.timeline.append((room_id, event.source))
                self.sync_times.append((seen, room_id, event.source))
            for event in info.ephemeral:
                self.ephemeral.append((room_id, event))
        for room_id in resp.rooms.invite:
            joined = await self.client.join(room_id)
            assert isinstance(joined, nio.JoinResponse), joined

    async def wait_for(self, predicate: Callable[[str, dict], bool], timeout: float = 60.0,
                       where: list | None = None) -> tuple[str, dict]:
        """The first synced (room_id, event) matching ``predicate``, syncing until one arrives."""
        deadline = time.monotonic() + timeout
        events = self.timeline if where is None else where
        checked = 0
        while True:
            for room_id, event in events[checked:]:
                if predicate(room_id, event):
                    return room_id, event
            checked = len(events)
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user_id} never saw the expected event")
            await self.sync_once()

    async def wait_message(self, body: str, timeout: float = 60.0) -> tuple[str, dict]:
        return await self.wait_for(lambda _r, e: e.get("type") == "m.room.message"
                                   and e.get("content", {}).get("body") == body, timeout)

    async def wait_receipt(self, event_id: str, user_id: str, timeout: float = 60.0) -> None:
        def has(_room_id, event) -> bool:
            return isinstance(event, nio.ReceiptEvent) and any(
                r.event_id == event_id and r.user_id == user_id for r in event.receipts)
        await self.wait_for(has, timeout, where=self.ephemeral)

    def count(self, predicate: Callable[[str, dict], bool]) -> int:
        return sum(1 for room_id, event in self.timeline if predicate(room_id, event))

    async def send(self, room_id: str, content: dict, event_type: str = "m.room.message") -> str:
        resp = await self.client.room_send(room_id, event_type, content, ignore_unverified_devices=True)
        assert isinstance(resp, nio.RoomSendResponse), resp
        return resp.event_id

    async def state(self, room_id: str, event_type: str, state_key: str = "") -> Any:
        resp = await self.client.room_get_state_event(room_id, event_type, state_key)
        return getattr(resp, "content", None)


def run(coro) -> Any:
    return asyncio.run(coro)
