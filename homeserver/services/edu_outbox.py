"""What the services tell other servers of their local users' changes, as EDUs (server-server "Typing
Notifications", "Receipts", "Presence", "Device Management", "End-to-End Encryption").

Implemented by ``federation.handlers.edus.OutboundEdus``, built before the services that call it; the EDUs
received are applied to those services by ``federation.handlers.edus.InboundEdus``, built after them.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Protocol

from homeserver.storage.events import StoredEvent
from homeserver.storage.presence import PresenceRow
from homeserver.storage.receipts import Receipt


class EduOutbox(Protocol):
    def on_typing(self, room_id: str, user_id: str, typing: bool) -> None: ...

    def on_receipt(self, receipt: Receipt) -> None: ...

    def on_presence(self, row: PresenceRow) -> None: ...

    def on_joins(self, events: list[StoredEvent],
                 states_of: Callable[[list[str]], Awaitable[list[PresenceRow]]]) -> None: ...

    async def on_device_updates(self, user_id: str, updates: list[tuple[str, int, int | None]]) -> None: ...

    async def on_signing_keys(self, user_id: str) -> None: ...
