"""Send-to-device messaging (spec v1.19 client-server "Send-to-Device messaging").

Delivery is at least once: a message stays in its device's inbox until the
device syncs with a ``since`` token whose to_device position covers it.
Messages for remote users go to their servers as one ``m.direct_to_device`` EDU
per server (server-server "Send-to-device messaging"), queued on the federation sender.
"""

from __future__ import annotations

from typing import Protocol

from homeserver.errors import bad_json
from homeserver.services.auth import random_string
from homeserver.services.edu_outbox import EphemeralFeed
from homeserver.services.sync import SyncContext, SyncResponse
from homeserver.storage.accounts import AccountStore
from homeserver.storage.device_inbox import DeviceInboxStore
from homeserver.storage.streams import StreamIdGenerator

MESSAGES_PER_SYNC = 100


class EduQueue(Protocol):
    """The federation's outbound queue (``federation.sender.FederationSender``)."""

    async def send_edu(self, destination: str, edu_type: str, content: dict) -> None: ...


class ToDeviceService:
    def __init__(self, *, store: DeviceInboxStore, accounts: AccountStore, notifier, server_name: str,
                 stream: StreamIdGenerator, federation: EduQueue, appservices: EphemeralFeed):
        self._store = store
        self._accounts = accounts
        self._notifier = notifier
        self.server_name = server_name
        self.stream = stream
        self._federation = federation
        self._appservices = appservices  # told of the messages put in local inboxes (MSC4203)

    def _is_local(self, user_id: str) -> bool:
        return user_id.split(":", 1)[-1] == self.server_name

    async def send(self, sender: str, sender_device: str | None, event_type: str, txn_id: str,
                   messages) -> None:
        """PUT /sendToDevice/{eventType}/{txnId}; idempotent per (sender, device, txn_id)."""
        if not isinstance(messages, dict) or not all(
                isinstance(by_device, dict) and all(isinstance(c, dict) for c in by_device.values())
                for by_device in messages.values()):
            raise bad_json("messages must map user ids to device ids to message contents")
        remote: dict[str, dict] = {}
        for user_id, by_device in messages.items():
            if not self._is_local(user_id):
                edu = remote.setdefault(user_id.split(":", 1)[-1], {
                    "sender": sender, "type": event_type, "message_id": random_string(16), "messages": {}})
                edu["messages"][user_id] = by_device
        stored = await self._deliver(sender, sender_device or "", txn_id, event_type, messages)
        if stored:
            for destination, edu in sorted(remote.items()):
                await self._federation.send_edu(destination, "m.direct_to_device", edu)

    async def receive_remote(self, sender: str, event_type: str, message_id: str, messages: dict) -> None:
        """An ``m.direct_to_device`` EDU from the sender's server: idempotent per (sender, message_id)."""
        await self._deliver(sender, "", message_id, event_type,
                            {u: d for u, d in messages.items() if self._is_local(u)})

    async def _deliver(self, sender: str, sender_device: str, txn_id: str, event_type: str,
                       messages: dict) -> bool:
        """Put the messages for local devices ("*": every device of the user) in their inboxes."""
        local, recipients = [], set()
        for user_id, by_device in messages.items():
            if not self._is_local(user_id):
                continue
            devices = {d["device_id"] for d in await self._accounts.list_devices(user_id)}
            for device_id, content in by_device.items():
                for target in (devices if device_id == "*" else devices & {device_id}):
                    local.append((user_id, target, {"sender": sender, "type": event_type, "content": content}))
                    recipients.add(user_id)
        (pos,) = self.stream.allocate()
        try:
            stored = await self._store.add_messages(pos, sender, sender_device, txn_id, local)
        finally:
            self.stream.done([pos])
        if stored and recipients:
            self._notifier.notify(users=recipients)
            self._appservices.on_to_device(local)
        return stored

    async def on_devices_removed(self, user_id: str, device_ids: list[str]) -> None:
        """AuthService hook: a removed device's inbox goes."""
        if device_ids:
            await self._store.delete_inboxes(user_id, device_ids)

    async def messages(self, user_id: str, device_id: str, since: int | None, to: int) -> tuple[list[dict], int]:
        """Messages for a sync, and the position the next sync should start from.

        Messages up to ``since`` were delivered by the sync that returned it, so they go now.
        """
        if since:
            await self._store.delete_delivered(user_id, device_id, since)
        found = await self._store.messages_for_device(user_id, device_id, since or 0, to, MESSAGES_PER_SYNC)
        upto = found[-1][0] if len(found) == MESSAGES_PER_SYNC else to
        return [msg for _, msg in found], upto


class ToDeviceSource:
    """The "to_device" sync stream (per device)."""

    name = "to_device"
    token_key = "x"  # in sync tokens (services/sync.py)
    sync_phase = 0  # sync: needs no room (services/sync.py SyncSource)

    def __init__(self, to_device: ToDeviceService):
        self._to_device = to_device

    def current(self) -> int:
        return self._to_device.stream.current()

    async def contribute(self, ctx: SyncContext, response: SyncResponse) -> None:
        device_id = ctx.requester.device_id
        if device_id is None:
            return
        events, upto = await self._to_device.messages(ctx.user_id, device_id, ctx.since_of(self.name),
                                                      ctx.to[self.name])
        response["to_device"] = {"events": events}
        ctx.to[self.name] = upto  # more than a sync's worth: the next sync carries on from here
