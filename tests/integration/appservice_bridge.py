"""A small bridge written with mautrix-python (an independent appservice library, from PyPI), run on its
own asyncio loop in a thread of the test process, against a real Hexagone process.

It records every event and ephemeral event its transactions bring, answers the homeserver's user and
alias queries by creating the ghost or the room asked for, and can be stopped and started again on the
same port (an outage).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from mautrix.appservice import AppService
from mautrix.types import RoomCreatePreset

from tests.integration.harness import wait_notified

GHOSTS = "ghost_"
DEFAULT_TIMEOUT_S = 30.0


def registration(as_id: str, url: str | None, domain: str, prefix: str = GHOSTS, **extra: Any) -> dict:
    """A registration file's content: ghosts @<prefix>*, aliases #<prefix>* (both exclusive)."""
    return {
        "id": as_id, "url": url, "as_token": f"as_{as_id}_token", "hs_token": f"hs_{as_id}_token",
        "sender_localpart": f"{as_id}bot", "rate_limited": False, "receive_ephemeral": True,
        "protocols": ["testproto"],
        "namespaces": {"users": [{"regex": f"@{prefix}.*:{domain}", "exclusive": True}],
                       "aliases": [{"regex": f"#{prefix}.*:{domain}", "exclusive": True}],
                       "rooms": []},
        **extra,
    }


class Bridge:
    """The mautrix AppService, its loop thread, and what it received (guarded by ``changed``)."""

    def __init__(self, reg: dict, homeserver_url: str, domain: str, port: int, prefix: str = GHOSTS):
        self.reg, self.homeserver_url, self.domain, self.port = reg, homeserver_url, domain, port
        self.prefix = prefix
        self.encryption = bool(reg.get("org.matrix.msc3202"))  # mautrix reads to-device, OTKs, device lists
        self.events: list[dict] = []  # room events, in the order handled
        self.ephemeral: list[dict] = []
        self.to_device: list[dict] = []
        self.otk_counts: list[dict] = []
        self.device_lists: list[list[str]] = []  # the "changed" list of each transaction that had one
        self.queried: list[str] = []
        self.changed = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="mautrix-bridge", daemon=True)
        self._thread.start()
        self.appservice: AppService | None = None

    def run(self, coro, timeout: float = DEFAULT_TIMEOUT_S):
        """Run a coroutine on the bridge's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "Bridge":
        self.run(self._start())
        return self

    async def _start(self) -> None:
        appservice = AppService(
            server=self.homeserver_url, domain=self.domain, as_token=self.reg["as_token"],
            hs_token=self.reg["hs_token"], bot_localpart=self.reg["sender_localpart"], id=self.reg["id"],
            loop=self.loop, ephemeral_events=True, encryption_events=self.encryption,
            query_user=self._query_user, query_alias=self._query_alias)
        appservice.synchronous_handlers = True  # handled in transaction order
        appservice.matrix_event_handler(self._on_event)
        appservice.to_device_handler = lambda ev: self._record(self.to_device, ev.serialize())
        appservice.otk_handler = lambda counts: self._record(
            self.otk_counts, {u: {d: c.serialize() for d, c in ds.items()} for u, ds in counts.items()})
        appservice.device_list_handler = lambda lists: self._record(self.device_lists, list(lists.changed))
        await appservice.start(host="127.0.0.1", port=self.port)
        self.appservice = appservice

    def stop(self) -> None:
        """Take the bridge down (its port refuses connections until ``start``)."""
        if self.appservice is not None:
            self.run(self.appservice.stop())
            self.appservice = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def bot(self):
        return self.appservice.intent

    def ghost(self, localpart: str):
        return self.appservice.intent.user(f"@{self.prefix}{localpart}:{self.domain}")

    async def _on_event(self, event) -> None:
        raw = event.serialize()
        await self._record(self.ephemeral if raw.get("type") in ("m.typing", "m.receipt", "m.presence")
                           else self.events, raw)

    async def _record(self, into: list, value) -> None:
        with self.changed:
            into.append(value)
            self.changed.notify_all()

    async def _query_user(self, user_id: str):
        """GET /users/{userId}: create ghosts named ghost_auto*."""
        self.queried.append(user_id)
        if not user_id.startswith(f"@{GHOSTS}auto"):
            return None
        intent = self.appservice.intent.user(user_id)
        await intent.ensure_registered()
        await intent.set_displayname(f"Auto {user_id}")
        return {"created": user_id}  # mautrix answers 404 to an empty (falsy) result

    async def _query_alias(self, alias: str):
        """GET /rooms/{roomAlias}: create public rooms for aliases #ghost_room*."""
        self.queried.append(alias)
        if not alias.startswith(f"#{GHOSTS}room"):
            return None
        await self.appservice.intent.create_room(alias_localpart=alias[1:].split(":")[0], is_direct=False,
                                                 preset=RoomCreatePreset.PUBLIC, name="Portal")
        return {"created": alias}

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        """Block until ``predicate()`` (called under the lock) is truthy; its value."""
        return wait_notified(self.changed, predicate, lambda: f"bridge never saw {what}; events: "
                             f"{self.events[-10:]}, ephemeral: {self.ephemeral[-5:]}", timeout)

    def bodies(self, room_id: str) -> list[str]:
        return [e["content"].get("body") for e in self.events
                if e.get("room_id") == room_id and e.get("type") == "m.room.message"]
