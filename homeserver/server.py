"""The composition root: builds every store and service from the configuration.

Nothing here is module-level state, so several homeservers can run in one
process (federation tests do). ``run_server`` is what ``hexagone run`` calls.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from federation import transport as federation_transport
from federation.api import keys as federation_keys_api, server as federation_api
from federation.handlers.edus import EduFederation, RemoteDeviceLists
from federation.rejections import FederationRejections
from federation.service import Federation, OpenIdTokens
from federation.tls import TlsServerFactory, server_context
from homeserver import config as config_module
from homeserver.api import admin as admin_api
from homeserver.api.client import account, discovery, profile, room_events as room_events_api, rooms as rooms_api
from homeserver.api.client import sync as sync_api
from homeserver.api.client import key_backup as key_backup_api, keys as keys_api, to_device as to_device_api
from homeserver.api.client import account_data as account_data_api, receipts as receipts_api
from homeserver.api.client import presence as presence_api, push_rules as push_rules_api
from homeserver.api.client import search as search_api, user_directory as user_directory_api
from homeserver.http.router import Router
from homeserver.http.site import ConnectionTracker, MatrixResource, make_site
from homeserver.metrics import Counter
from homeserver.services.account_data import AccountDataService
from homeserver.services.auth import AuthService
from homeserver.services.device_lists import DeviceListService, DeviceListSource
from homeserver.services.directory import DirectoryService
from homeserver.services.e2e_keys import E2eKeysService
from homeserver.services.history import RoomHistoryService
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.notifier import Notifier
from homeserver.services.presence import PresenceService
from homeserver.services.profiles import ProfileService
from homeserver.services.push import PushService
from homeserver.services.ratelimit import RateLimits
from homeserver.services.receipts import ReceiptService
from homeserver.services.registration import RegistrationService
from homeserver.services.room_events import RoomEventService
from homeserver.services.rooms import RoomService
from homeserver.services.search import SearchService
from homeserver.services.serialize import EventSerializer
from homeserver.services.sync import SyncService
from homeserver.services.to_device import ToDeviceService, ToDeviceSource
from homeserver.services.typing import TypingService
from homeserver.services.user_directory import UserDirectoryService
from homeserver.storage import account_data as account_data_storage
from homeserver.storage import accounts as accounts_storage
from homeserver.storage import device_inbox as device_inbox_storage
from homeserver.storage import device_lists as device_lists_storage
from homeserver.storage import directory as directory_storage
from homeserver.storage import e2e_keys as e2e_keys_storage
from homeserver.storage import events as events_storage
from homeserver.storage import federation_queue as federation_queue_storage
from homeserver.storage import filters as filters_storage
from homeserver.storage import key_backup as key_backup_storage
from homeserver.storage import presence as presence_storage
from homeserver.storage import push as push_storage
from homeserver.storage import receipts as receipts_storage
from homeserver.storage import search as search_storage
from homeserver.storage import server_keys as server_keys_storage
from homeserver.storage import user_directory as user_directory_storage
from homeserver.storage.database import Database, open_engine
from homeserver.storage.schema import apply_migrations
from homeserver.storage.streams import StreamIdGenerator

logger = logging.getLogger(__name__)

STORAGE_DOMAINS = {
    "accounts": accounts_storage.MIGRATIONS,
    "events": events_storage.MIGRATIONS,
    "directory": directory_storage.MIGRATIONS,
    "filters": filters_storage.MIGRATIONS,
    "e2e_keys": e2e_keys_storage.MIGRATIONS,
    "device_lists": device_lists_storage.MIGRATIONS,
    "device_inbox": device_inbox_storage.MIGRATIONS,
    "key_backup": key_backup_storage.MIGRATIONS,
    "receipts": receipts_storage.MIGRATIONS,
    "account_data": account_data_storage.MIGRATIONS,
    "server_keys": server_keys_storage.MIGRATIONS,
    "federation_queue": federation_queue_storage.MIGRATIONS,
    "push": push_storage.MIGRATIONS,
    "presence": presence_storage.MIGRATIONS,
    "user_directory": user_directory_storage.MIGRATIONS,
    "search": search_storage.MIGRATIONS,
}

CLIENT_API_MODULES = [discovery, account, profile, rooms_api, room_events_api, sync_api, receipts_api,
                      account_data_api, keys_api, to_device_api, key_backup_api, federation_transport,
                      federation_api, federation_keys_api, admin_api,
                      push_rules_api, presence_api, user_directory_api, search_api]

@dataclass
class HomeServer:
    """Every service of one homeserver, built once, passed to the API modules."""

    config: Any
    reactor: Any
    signing_key: Any
    db: Database
    accounts_store: accounts_storage.AccountStore
    event_store: events_storage.EventStore
    filter_store: filters_storage.FilterStore
    notifier: Notifier
    auth: AuthService
    registration: RegistrationService
    profiles: ProfileService
    room_events: RoomEventService
    serializer: EventSerializer
    sync: SyncService
    directory: DirectoryService
    rooms: RoomService
    history: RoomHistoryService
    ratelimit: RateLimits
    router: Router
    presence: Any = None
    e2e_keys: E2eKeysService | None = None
    device_lists: DeviceListService | None = None
    to_device: ToDeviceService | None = None
    key_backup: KeyBackupService | None = None
    account_data: AccountDataService | None = None
    receipts: ReceiptService | None = None
    typing: TypingService | None = None
    push: PushService | None = None
    user_directory: UserDirectoryService | None = None
    search: SearchService | None = None
    federation: federation_transport.FederationTransport | None = None
    federation_handler: Federation | None = None
    federation_rejections: FederationRejections | None = None  # PDUs and EDUs refused, counted by reason
    openid: OpenIdTokens | None = None
    resource: MatrixResource | None = None
    ports: list = field(default_factory=list)

    @property
    def server_name(self) -> str:
        return self.config.server_name


def build_server(config, reactor) -> HomeServer:
    """Open the database, apply migrations, and wire every service."""
    signing_key = config_module.read_signing_key(config.signing_key_path)
    if config.database.engine == "sqlite" and os.path.dirname(config.database.sqlite_path):
        os.makedirs(os.path.dirname(config.database.sqlite_path), exist_ok=True)
    db = Database(open_engine(config.database), reactor)
    apply_migrations(db, STORAGE_DOMAINS)
    server_name = config.server_name

    accounts_store = accounts_storage.AccountStore(db)
    event_store = events_storage.EventStore(db)
    filter_store = filters_storage.FilterStore(db)
    directory_store = directory_storage.DirectoryStore(db)

    notifier = Notifier(reactor)
    ratelimit = RateLimits(config, reactor)
    auth = AuthService(store=accounts_store, clock=reactor, server_name=server_name,
                       bcrypt_rounds=config.bcrypt_rounds, reactor=reactor, failed_logins=ratelimit.login_failed)
    registration = RegistrationService(store=accounts_store, auth=auth, config=config, clock=reactor)
    # Filled once every listener is built (they read rooms through room_events): see _room_event_listeners.
    room_event_listeners: list = []
    room_events = RoomEventService(
        clock=reactor, store=event_store, server_name=server_name, signing_key=signing_key,
        stream=StreamIdGenerator(event_store.max_stream_ordering_sync()),
        state_group_ids=StreamIdGenerator(event_store.max_state_group_sync()), listeners=room_event_listeners)
    profiles = ProfileService(accounts=accounts_store, events=event_store, server_name=server_name)
    profiles.room_events = room_events
    serializer = EventSerializer(room_events, event_store)
    sync = SyncService(room_events=room_events, store=event_store, serializer=serializer, notifier=notifier,
                       clock=reactor)
    directory = DirectoryService(store=directory_store, events=event_store, room_events=room_events,
                                 server_name=server_name)
    rooms = RoomService(room_events=room_events, store=event_store, profiles=profiles, server_name=server_name,
                        default_room_version=config.default_room_version, directory=directory,
                        join_limits=ratelimit)
    history = RoomHistoryService(room_events=room_events, store=event_store, serializer=serializer, sync=sync)
    account_data = AccountDataService(store=account_data_storage.AccountDataStore(db), notifier=notifier)
    receipts = ReceiptService(store=receipts_storage.ReceiptStore(db), room_events=room_events,
                              account_data=account_data, notifier=notifier, clock=reactor)
    typing = TypingService(reactor=reactor, room_events=room_events, notifier=notifier)
    for source in (account_data, receipts, typing):
        sync.add_source(source)

    hs = HomeServer(config=config, reactor=reactor, signing_key=signing_key, db=db,
                    accounts_store=accounts_store, event_store=event_store, filter_store=filter_store,
                    notifier=notifier, auth=auth, registration=registration, profiles=profiles,
                    room_events=room_events, serializer=serializer, sync=sync, directory=directory,
                    rooms=rooms, history=history, ratelimit=ratelimit, router=Router(),
                    account_data=account_data, receipts=receipts, typing=typing)
    _attach_e2ee(hs)
    _attach_push_presence_search(hs)
    hs.federation = federation_transport.build_transport(config, reactor, db, signing_key)
    edus = _attach_federation(hs)
    room_event_listeners.extend(_room_event_listeners(hs, edus))
    for module in CLIENT_API_MODULES:
        module.register(hs.router, hs)
    hs.resource = MatrixResource(hs.router, auth.resolve_token,
                                 authenticate_server=hs.federation.authenticator.authenticate,
                                 db_counters=lambda: (db.txn_count, db.round_trips),
                                 room_gate=hs.room_events.settled, federation_limit=ratelimit.federation.run)
    return hs


def _room_event_listeners(hs: HomeServer, edus: EduFederation) -> list:
    """Who is told of new room events (local, remote, out-of-band memberships), in this order, once the
    stream shows them. Only the first two depend on their places; the rest keep the order they had."""
    return [
        hs.push.on_room_events,  # first: a sync woken by the event waits for its push actions (counts come with it)
        lambda events: _notify_room_events(hs.notifier, events),  # wakes /sync; after push, see above
        hs.typing.on_room_events,  # a member who leaves stops typing
        hs.device_lists.on_room_events,  # membership changes change who shares our users' device lists
        hs.presence.on_room_events,
        hs.user_directory.on_room_events,
        hs.search.on_room_events,
        hs.federation_handler.on_new_events,  # local events to the other servers of the room
        hs.e2e_keys.remote.on_room_events,  # remote users who no longer share a room are no longer tracked
        edus.on_room_events,  # presence to a room's new members, after the join PDU is queued to them
    ]


def _attach_federation(hs: HomeServer) -> EduFederation:
    """Rooms over federation: receiving and answering PDUs, remote membership, backfill."""
    transport = hs.federation
    hs.federation_rejections = FederationRejections(Counter("federation_rejected", "reason"))
    hs.federation_handler = Federation(
        room_events=hs.room_events, rooms=hs.rooms, directory=hs.directory, profiles=hs.profiles,
        server_name=hs.server_name, signing_key=hs.signing_key, clock=hs.reactor, client=transport.client,
        key_fetcher=transport.keyring, sender=transport.sender, rejections=hs.federation_rejections)
    hs.rooms.federation = hs.federation_handler
    hs.history.backfill = hs.federation_handler.backfill
    hs.openid = OpenIdTokens(hs.reactor)
    return _attach_federation_edus(hs)


def _attach_federation_edus(hs: HomeServer) -> EduFederation:
    """Typing, receipts, presence, to-device messages and device lists to and from other servers."""
    remote_devices = RemoteDeviceLists(
        server_name=hs.server_name, client=hs.federation.client, cache=e2e_keys_storage.RemoteDeviceCache(hs.db),
        e2e_store=e2e_keys_storage.E2eKeyStore(hs.db), event_store=hs.event_store, device_lists=hs.device_lists,
        rejections=hs.federation_rejections)
    hs.e2e_keys.remote = remote_devices
    edus = EduFederation(
        server_name=hs.server_name, clock=hs.reactor, sender=hs.federation.sender,
        membership=hs.federation_handler.membership, room_events=hs.room_events, event_store=hs.event_store,
        accounts=hs.accounts_store, typing=hs.typing, receipts=hs.receipts,
        presence=hs.presence, to_device=hs.to_device, device_lists=hs.device_lists, e2e_keys=hs.e2e_keys,
        remote_devices=remote_devices, acl=hs.federation_handler.origin_allowed_in_room,
        rejections=hs.federation_rejections)
    hs.federation_handler.receiver.edu_handlers.update(edus.handlers())
    return edus


def _attach_e2ee(hs: HomeServer) -> None:
    """End-to-end encryption: device lists, keys, to-device messages and key backups."""
    device_list_store = device_lists_storage.DeviceListStore(hs.db)
    inbox_store = device_inbox_storage.DeviceInboxStore(hs.db)
    hs.device_lists = DeviceListService(store=device_list_store, events=hs.event_store, room_events=hs.room_events,
                                        notifier=hs.notifier,
                                        stream=StreamIdGenerator(device_list_store.max_position_sync()))
    hs.e2e_keys = E2eKeysService(store=e2e_keys_storage.E2eKeyStore(hs.db), accounts=hs.accounts_store,
                                 device_lists=hs.device_lists, server_name=hs.server_name, clock=hs.reactor)
    hs.to_device = ToDeviceService(store=inbox_store, accounts=hs.accounts_store, notifier=hs.notifier,
                                   server_name=hs.server_name,
                                   stream=StreamIdGenerator(inbox_store.max_position_sync()))
    hs.key_backup = KeyBackupService(store=key_backup_storage.KeyBackupStore(hs.db))
    hs.auth.on_devices_removed += [hs.e2e_keys.on_devices_removed, hs.to_device.on_devices_removed]
    hs.sync.add_source(DeviceListSource(hs.device_lists, hs.e2e_keys), volatile=True)  # one-time key counts
    hs.sync.add_source(ToDeviceSource(hs.to_device))


def _attach_push_presence_search(hs: HomeServer) -> None:
    """Presence, user directory, search, then push: its sync source fills the notification counts of
    every joined room the other sources put in the response, so it is added last."""
    config = hs.config
    hs.presence = PresenceService(store=presence_storage.PresenceStore(hs.db), event_store=hs.event_store,
                                  notifier=hs.notifier, clock=hs.reactor, enabled=config.presence_enabled,
                                  server_name=hs.server_name)
    hs.user_directory = UserDirectoryService(
        store=user_directory_storage.UserDirectoryStore(hs.db), room_events=hs.room_events,
        enabled=config.user_directory_enabled, search_all_users=config.user_directory_search_all_users)
    search_store = search_storage.SearchStore(hs.db)
    search_store.prepare_sync()
    hs.search = SearchService(store=search_store, room_events=hs.room_events, event_store=hs.event_store,
                              serializer=hs.serializer, sync=hs.sync)
    hs.push = PushService(store=push_storage.PushStore(hs.db), room_events=hs.room_events,
                          event_store=hs.event_store, account_data=hs.account_data, serializer=hs.serializer,
                          read_positions=receipts_storage.ReceiptStore(hs.db).read_positions,
                          server_name=hs.server_name, clock=hs.reactor)
    hs.sync.add_source(hs.presence)
    hs.sync.add_source(hs.push)


def _notify_room_events(notifier: Notifier, events) -> None:
    rooms = {e.room_id for e in events}
    users = {e.state_key for e in events if e.type == "m.room.member" and e.state_key}
    notifier.notify(users=users, rooms=rooms)


def listen(hs: HomeServer) -> list:
    """Start every configured http listener (``tls: true`` ones with the configured certificate), each
    serving only its ``resources``, then resume the federation queues."""
    ports = []
    contexts = [server_context(hs.config.tls_certificate_path, hs.config.tls_private_key_path)
                if listener.tls else None for listener in hs.config.listeners]  # bad files refused before binding
    for listener, tls in zip(hs.config.listeners, contexts):
        site = make_site(hs.resource, listener)  # its resources, x_forwarded and trusted proxies
        addresses = listener.bind_addresses or ["127.0.0.1"]
        factory = TlsServerFactory(site, tls, hs.reactor) if tls else site
        bound_any = False
        for address in addresses:
            try:
                ports.append(hs.reactor.listenTCP(listener.port, factory, interface=address))
                bound_any = True
            except Exception as e:  # e.g. "::" and "0.0.0.0" both binding one port
                if not bound_any and address == addresses[-1]:
                    raise
                logger.info("Not listening on %s:%d: %s", address, listener.port, e)
        logger.info("Listening on %s port %d%s", ",".join(addresses), listener.port, " (TLS)" if tls else "")
    hs.ports = ports
    hs.reactor.callWhenRunning(hs.federation_handler.catch_up)
    hs.reactor.callWhenRunning(hs.federation.sender.resume)
    hs.reactor.callWhenRunning(lambda: defer.ensureDeferred(hs.federation_handler.resume_partial_joins()))
    return ports


def _connection_trackers(ports) -> set[ConnectionTracker]:
    """The ConnectionTracker of each port, found under any wrapping factory (e.g. TLS)."""
    found = set()
    for port in ports:
        factory = port.factory
        while factory is not None and not isinstance(factory, ConnectionTracker):
            factory = getattr(factory, "wrappedFactory", None)
        if factory is not None:
            found.add(factory)
    return found


async def shutdown(hs: HomeServer) -> None:
    """Stop accepting, let in-flight requests finish (waking long-polls), then close the database."""
    for port in hs.ports:
        await port.stopListening()
    hs.notifier.wake_all()
    if hs.resource is not None:
        await hs.resource.wait_drained()
    for tracker in _connection_trackers(hs.ports):
        try:  # let the answers just given reach their clients before the reactor stops
            await tracker.close_connections().addTimeout(1, hs.reactor)
        except defer.TimeoutError:
            tracker.abort_connections()
    hs.federation.sender.stop()
    await hs.federation.client.close()
    try:
        for service in (hs.push, hs.search, hs.user_directory, hs.federation_handler):  # their listeners' writes
            await service.flush()
    except Exception:  # e.g. the database is gone: still close it, or its threads keep the process alive
        logger.exception("Writes pending at shutdown could not be stored")
    hs.db.close()
    logger.info("Shut down cleanly")


def _setup_logging(config) -> None:
    if config.log_config and os.path.exists(config.log_config):
        import logging.config

        import yaml
        with open(config.log_config) as f:
            logging.config.dictConfig(yaml.safe_load(f))


def run_server(config) -> int:
    """``hexagone run``: serve in the foreground until SIGTERM or SIGINT."""
    from twisted.internet import reactor

    _setup_logging(config)
    hs = build_server(config, reactor)
    try:
        listen(hs)
    except Exception:
        hs.db.close()  # its threads would keep the process alive
        raise
    stopping = []

    def on_signal(signum, frame):
        if stopping:
            return
        stopping.append(signum)
        logger.info("Received signal %d, shutting down", signum)
        reactor.callFromThread(lambda: defer.ensureDeferred(shutdown(hs)).addBoth(lambda _: reactor.stop()))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logger.info("Hexagone serving %s", config.server_name)
    reactor.run(installSignalHandlers=False)
    return 0
