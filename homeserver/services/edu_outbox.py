"""What the services tell of their local changes: to other servers as EDUs (server-server "Typing
Notifications", "Receipts", "Presence", "Device Management", "End-to-End Encryption"), and to the application
services (application service API, MSC2409 ephemeral events, MSC4203 to-device, MSC3202 device lists).

``EduOutbox`` is implemented by ``federation.handlers.edus.OutboundEdus`` and ``EphemeralFeed`` by
``homeserver.services.appservice_sender.AppServiceSender``; both are built before the services that call
them, so nothing is subscribed after construction. The EDUs received are applied to those services by
``federation.handlers.edus.InboundEdus``, built after them.
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


class EphemeralFeed(Protocol):
    def on_typing(self, room_id: str, typers: tuple[str, ...]) -> None: ...

    def on_receipt(self, receipt: Receipt) -> None: ...

    def on_presence(self, row: PresenceRow) -> None: ...

    def on_to_device(self, messages: list[tuple[str, str, dict]]) -> None: ...

    async def on_device_updates(self, user_id: str, updates: list[tuple[str, int, int | None]]) -> None: ...
