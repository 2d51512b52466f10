"""The bridge bot's own end-to-end encryption device (spec v1.19: "End-to-End Encryption": Olm, Megolm,
"Sending encrypted attachments"), for bridges running with ``bridge.encryption.allow``.

The crypto machine is matrix-nio's, on vodozemac (the maintained Rust implementation of Olm and Megolm),
installed by the ``bridges-e2e`` extra; this module is only imported when encryption is allowed.
The device is the bot's: an appservice login (``m.login.application_service``) with a device id kept in
the store directory, whose Olm account, sessions and sync token nio keeps in a SQLite file there (pickled
with a key derived from the appservice token). The bot's own ``/sync`` brings the to-device room keys,
the device list changes and the one-time key counts; a homeserver that refuses that sync (Synapse) has
them in the appservice transactions instead (MSC2409/MSC4203, MSC3202), fed to the crypto machine as a
sync would be, with a room's state read when the bridge sends to it. Room events always arrive by
appservice transactions and are decrypted here on demand. What the bridge posts in an encrypted room
is encrypted with the bot's Megolm session, shared with the members' devices over Olm, also when a ghost
sends it (as mautrix bridges do: the event's sender is the ghost, the session the bot's device's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from urllib.parse import quote

import aiohttp
import nio

logger = logging.getLogger(__name__)

LONG_POLL_MS = 30_000
# the bot's sync carries what the crypto machine needs: room state (encryption, members), to-device
# messages and device lists; room messages come through the appservice transactions instead
SYNC_FILTER = {"presence": {"types": []}, "account_data": {"types": []},
               "room": {"timeline": {"types": ["m.room.member", "m.room.encryption"], "limit": 50},
                        "ephemeral": {"types": []}, "account_data": {"types": []}}}
DECRYPT_ATTEMPTS = 3
DEVICE_FILE = "device_id"
TRANSACTION_TOKEN = "transaction-"  # the sync tokens of device data that came by appservice transactions


class BridgeCrypto:
    def __init__(self, homeserver_url: str, as_token: str, bot_mxid: str, store_dir: str):
        self._base = homeserver_url
        self._as_token = as_token
        self._bot_mxid = bot_mxid
        self._store_dir = store_dir
        pickle_key = hashlib.sha256(b"hexagone-bridge-crypto:" + as_token.encode()).hexdigest()
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True, pickle_key=pickle_key)
        self.client = nio.AsyncClient(homeserver_url, bot_mxid, store_path=store_dir, config=config)
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task | None = None
        self._fetch: asyncio.Task | None = None
        self._started = 0  # syncs started, and applied: a caller waits for one started after its call
        self._applied = 0
        self._waiting = 0
        self._progress = asyncio.Condition()
        self._sending = asyncio.Lock()
        self._refused = False  # the homeserver refused the device: the bridge runs without it
        self._by_transactions = False  # no /sync for the bot (Synapse): to-device messages come by transactions

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Log the bot's device in (the same device id across restarts), upload its keys, sync once.
        A homeserver that refuses (Synapse answers the appservice's own user's /sync with a 500): the
        bridge runs without a device, and says so."""
        try:
            await self._start()
        except (RuntimeError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            logger.warning("no encryption device: %s; encrypted rooms are not bridged", e)
            self._refused = True
            await self.stop()

    async def _start(self) -> None:
        os.makedirs(self._store_dir, exist_ok=True)
        device_path = os.path.join(self._store_dir, DEVICE_FILE)
        device_id = open(device_path).read().strip() if os.path.exists(device_path) else None
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        body = {"type": "m.login.application_service", "identifier": {"type": "m.id.user",
                                                                     "user": self._bot_mxid},
                "initial_device_display_name": "Bridge bot (encryption)"}
        if device_id:
            body["device_id"] = device_id
        async with self._session.post(self._base + "/_matrix/client/v3/login", json=body,
                                      headers={"Authorization": f"Bearer {self._as_token}"}) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"the bot's encryption device could not log in: {resp.status} "
                                   f"{answer.get('errcode')} {answer.get('error')}")
        with open(device_path, "w") as f:
            f.write(answer["device_id"])
        self.client.restore_login(answer["user_id"], answer["device_id"], answer["access_token"])
        token = self.client.loaded_sync_token  # not one of the tokens that stand for transactions (_apply)
        self.client.next_batch = token if token and not token.startswith(TRANSACTION_TOKEN) else None
        if self.client.should_upload_keys:
            await self._checked(self.client.keys_upload())
        try:
            await self._sync_once(0)
            self._loop_task = asyncio.create_task(self._sync_loop())
        except SyncRefused:
            logger.info("the homeserver refuses /sync to the bot: to-device messages, device lists and one-time "
                        "key counts come by appservice transactions (MSC2409, MSC3202)")
            self._by_transactions = True
        logger.info("encryption device %s of %s ready", answer["device_id"], answer["user_id"])

    async def stop(self) -> None:
        if self._loop_task and not self._loop_task.done():
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self.client.close()
        if self._session:
            await self._session.close()

    @property
    def ready(self) -> bool:
        """The device is logged in and its keys are loaded."""
        return self.client.olm is not None and not self._refused

    # -- the bot's sync -------------------------------------------------------------------------
    async def _sync_loop(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._sync_once(0 if self._waiting else LONG_POLL_MS)
                delay = 0.5
            except asyncio.CancelledError:
                if self._fetch is not None and self._fetch.cancelled() and not _self_cancelled():
                    continue  # only the long poll was cut short: someone wants a fresh sync
                raise
            except Exception as e:  # the homeserver, or the crypto machine on a response: the loop goes on
                logger.warning("the bot's sync failed (%s); again in %.1fs", e, delay,
                               exc_info=not isinstance(e, (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError)))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _sync_once(self, timeout_ms: int) -> None:
        self._started += 1
        number = self._started
        self._fetch = asyncio.ensure_future(self._get_sync(timeout_ms))
        response = await self._fetch
        await self.client.receive_response(response)
        await self._after_sync()
        async with self._progress:
            self._applied = number
            self._progress.notify_all()

    async def _get_sync(self, timeout_ms: int) -> nio.SyncResponse:
        params = {"timeout": str(timeout_ms), "filter": json.dumps(SYNC_FILTER)}
        if self.client.next_batch:
            params["since"] = self.client.next_batch
        async with self._session.get(self._base + "/_matrix/client/v3/sync", params=params,
                                     headers={"Authorization": f"Bearer {self.client.access_token}"}) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                errcode = body.get("errcode") if isinstance(body, dict) else ""
                raise (SyncRefused if resp.status == 500 else RuntimeError)(f"sync answered {resp.status} {errcode}")
        response = nio.SyncResponse.from_dict(body)
        if not isinstance(response, nio.SyncResponse):
            raise RuntimeError(f"unreadable sync response: {response}")
        return response

    async def _after_sync(self) -> None:
        """What nio's own sync loop does after each sync: keys up, queries, claims, to-device out."""
        client = self.client
        if client.should_upload_keys:
            await self._checked(client.keys_upload())
        if client.should_query_keys:
            await self._checked(client.keys_query())
        if client.should_claim_keys:
            await self._checked(client.keys_claim(client.get_users_for_key_claiming()))
        await client.send_to_device_messages()

    @staticmethod
    async def _checked(call):
        response = await call
        if isinstance(response, nio.ErrorResponse):
            logger.warning("encryption request failed: %s", response)
        return response

    async def synced(self) -> None:
        """Return after a sync that started after this call was applied (cutting a long poll short);
        without /sync, after the next transaction's device data (or a few seconds)."""
        if self._by_transactions:
            target = self._applied + 1
            async with self._progress:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._progress.wait_for(lambda: self._applied >= target), 5)
            return
        target = self._started + 1
        self._waiting += 1
        try:
            if self._fetch is not None and not self._fetch.done():
                self._fetch.cancel()
            async with self._progress:
                await asyncio.wait_for(self._progress.wait_for(lambda: self._applied >= target), 30)
        finally:
            self._waiting -= 1

    # -- rooms ---------------------------------------------------------------------------------
    # -- without /sync: what the appservice transactions bring, and room state read on demand ----
    async def from_transaction(self, body: dict) -> None:
        """The bot device's share of a transaction: its to-device messages (MSC2409/MSC4203), the device
        lists changed and its one-time key counts (MSC3202), fed to the crypto machine as a sync would be."""
        if not self._by_transactions or not self.ready:
            return
        me, device = self.client.user_id, self.client.device_id
        to_device = [m for m in body.get("de.sorunome.msc2409.to_device") or body.get("org.matrix.msc2409.to_device")
                     or [] if isinstance(m, dict) and m.get("to_user_id") == me and m.get("to_device_id") == device]
        counts = (body.get("org.matrix.msc3202.device_one_time_keys_count") or {}).get(me, {}).get(device)
        lists = body.get("org.matrix.msc3202.device_lists") or {}
        if to_device or counts is not None or lists:
            await self._apply({"to_device": {"events": to_device}, "device_lists": lists,
                               **({"device_one_time_keys_count": counts} if isinstance(counts, dict) else {})})

    async def _load_room(self, room_id: str) -> None:
        """A room's current state (encryption, members) read with the device's token, as a sync gives it."""
        async with self._session.get(f"{self._base}/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state",
                                     headers={"Authorization": f"Bearer {self.client.access_token}"}) as resp:
            state = await resp.json(content_type=None)
            if resp.status != 200 or not isinstance(state, list):
                return  # not (yet) in the room: nothing to encrypt for
        await self._apply({"rooms": {"join": {room_id: {"state": {"events": state}, "timeline": {"events": []}}}}})

    async def _apply(self, body: dict) -> None:
        self._started += 1
        number = self._started
        response = nio.SyncResponse.from_dict({"next_batch": f"{TRANSACTION_TOKEN}{number}", **body})
        if not isinstance(response, nio.SyncResponse):
            logger.warning("unreadable device data: %s", response)
            return
        await self.client.receive_response(response)
        await self._after_sync()
        async with self._progress:
            self._applied = number
            self._progress.notify_all()

    async def _fresh(self, room_id: str) -> None:
        """The room's latest members and their devices known."""
        if self._by_transactions:
            await self._load_room(room_id)
        else:
            await self.synced()

    async def is_encrypted(self, room_id: str) -> bool:
        if room_id not in self.client.rooms:
            await self._fresh(room_id)
        room = self.client.rooms.get(room_id)
        return bool(room and room.encrypted)

    async def decrypt(self, event: dict) -> dict | None:
        """The plaintext event of an ``m.room.encrypted`` event (``decrypted``: True), None when it
        cannot be decrypted (its room key never came)."""
        parsed = nio.Event.parse_event(event)
        if not isinstance(parsed, nio.MegolmEvent):
            return None
        parsed.room_id = event["room_id"]
        for attempt in range(DECRYPT_ATTEMPTS):
            try:
                plain = self.client.decrypt_event(parsed)
            except nio.EncryptionError as e:
                if attempt == DECRYPT_ATTEMPTS - 1:
                    logger.warning("event %s could not be decrypted: %s", event.get("event_id"), e)
                    return None
                await self.synced()  # the room key may be in the bot's to-device inbox still
                continue
            source = getattr(plain, "source", None)
            if not isinstance(source, dict) or not isinstance(source.get("content"), dict):
                return None
            return {**event, "type": source.get("type"), "content": source["content"], "decrypted": True}
        return None

    async def encrypt(self, room_id: str, event_type: str, content: dict) -> tuple[str, dict] | None:
        """(``m.room.encrypted``, its content) for an encrypted room, None for another; the Megolm session
        is shared first with the devices of the members (invited ones too) the bot's sync knows."""
        if not await self.is_encrypted(room_id):
            return None
        async with self._sending:
            await self._fresh(room_id)
            client = self.client
            room = client.rooms[room_id]
            if not room.members_synced:
                await self._checked(client.joined_members(room_id))
            if client.should_query_keys:
                await self._checked(client.keys_query())
            if client.olm.should_share_group_session(room_id):
                await client.share_group_session(room_id, ignore_unverified_devices=True)
            return client.encrypt(room_id, event_type, content)


class SyncRefused(RuntimeError):
    """The homeserver does not let the appservice's own user sync (Synapse: a 500)."""


def _self_cancelled() -> bool:
    task = asyncio.current_task()
    return bool(task and task.cancelling())
