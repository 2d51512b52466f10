"""The composition root: builds every store and service from the configuration.

Nothing here is module-level state, so several homeservers can run in one
process (federation tests do). ``run_server`` is what ``hexagone run`` calls.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet import defer, task, threads
from twisted.python.threadpool import ThreadPool

from federation.api import key_server as federation_key_server_api
from federation.api import keys as federation_keys_api, server as federation_api
from federation.client import FederationClient
from federation.handlers.edus import EduFederation, RemoteDeviceLists
from federation.handlers.membership import FederationMembership
from federation.handlers.queries import FederationQueries
from federation.handlers.receive import PduReceiver
from federation.handlers.remote_queries import RemoteQueries
from federation.keys import KeyRing, ServerKeys, parse_old_signing_keys
from federation.policy import IpRangeFilter, federation_allowed
from federation.rejections import FederationRejections
from federation.request_auth import FederationAuthenticator
from federation.room_servers import RoomServers
from federation.sender import FederationSender
from federation.service import Federation, OpenIdTokens
from federation.tls import ClientTlsPolicy, TlsServerFactory, server_context
from federation.transport import FederationTransport
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
from homeserver.services.filters import FilterService
from homeserver.services.history import RoomHistoryService
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.notifier import Notifier
from homeserver.services.presence import PresenceService
from homeserver.services.profiles import ProfileService
from homeserver.services.push import PushService
from homeserver.services.ratelimit import RateLimits
from homeserver.services.receipts import ReceiptService
from homeserver.services.registration import RegistrationService
from homeserver.services.restricted_joins import RestrictedJoins
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
from media_repo import storage as media_storage
from media_repo.api import admin as media_admin_api, client as media_client_api, federation as media_federation_api
from media_repo.filestore import FileStore
from media_repo.hooks import ProviderEntry
from media_repo.remote import RemoteMediaClient
from media_repo.service import MediaRepository, MediaSettings
from media_repo.api import preview as media_preview_api
from media_repo.preview import UrlPreviewer, media_image_store
from media_repo.scanner import ClamdScanner

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
    "media": media_storage.MIGRATIONS,
}

CLIENT_API_MODULES = [discovery, account, profile, rooms_api, room_events_api, sync_api, receipts_api,
                      account_data_api, keys_api, to_device_api, key_backup_api, federation_key_server_api,
                      federation_api, federation_keys_api, admin_api,
                      push_rules_api, presence_api, user_directory_api, search_api, media_client_api,
                      media_federation_api, media_admin_api]
MEDIA_THREADS = 4  # Pillow, reads, fsyncs and renames of media files: never the reactor's global pool
RETENTION_INTERVAL_S = 3600  # media_retention: how often the background job runs

@dataclass
class HomeServer:
    """Every service of one homeserver, built once by ``build_server``, passed to the API modules."""

    config: Any
    reactor: Any
    signing_key: Any
    db: Database
    accounts_store: accounts_storage.AccountStore
    event_store: events_storage.EventStore
    filters: FilterService
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
    presence: PresenceService
    e2e_keys: E2eKeysService
    device_lists: DeviceListService
    to_device: ToDeviceService
    key_backup: KeyBackupService
    account_data: AccountDataService
    receipts: ReceiptService
    typing: TypingService
    push: PushService
    user_directory: UserDirectoryService
    search: SearchService
    federation: FederationTransport
    federation_handler: Federation
    federation_rejections: FederationRejections  # PDUs and EDUs refused, counted by reason
    openid: OpenIdTokens
    resource: MatrixResource
    media: MediaRepository
    media_pool: ThreadPool
    url_previewer: UrlPreviewer | None  # None: url_preview_enabled is false (its routes are not bound)
    ports: list = field(default_factory=list)  # the listening ports, once ``listen`` has opened them

    @property
    def server_name(self) -> str:
        return self.config.server_name


def build_server(config, reactor) -> HomeServer:
    """Open the database, apply migrations, and build every object, each given its collaborators."""
    signing_key = config_module.read_signing_key(config.signing_key_path)
    media_pool = ThreadPool(minthreads=0, maxthreads=MEDIA_THREADS, name="media")  # no thread until used
    media_pool.start()
    media_providers = _storage_providers(config, _in_pool(reactor, media_pool))
    if config.database.engine == "sqlite" and os.path.dirname(config.database.sqlite_path):
        os.makedirs(os.path.dirname(config.database.sqlite_path), exist_ok=True)
    db = Database(open_engine(config.database), reactor)
    apply_migrations(db, STORAGE_DOMAINS)
    server_name = config.server_name

    accounts_store = accounts_storage.AccountStore(db)
    event_store = events_storage.EventStore(db)
    filters = FilterService(store=filters_storage.FilterStore(db), timeline_cap=config.filter_timeline_limit)
    directory_store = directory_storage.DirectoryStore(db)

    notifier = Notifier(reactor)
    ratelimit = RateLimits(config, reactor)
    transport = _build_transport(config, reactor, db, signing_key)
    rejections = FederationRejections(Counter("federation_rejected", "reason"))
    # Filled at the end, once every listener is built (they read rooms through room_events).
    room_event_listeners: list[Callable[[list], None]] = []
    room_events = RoomEventService(
        clock=reactor, store=event_store, server_name=server_name, signing_key=signing_key,
        stream=StreamIdGenerator(event_store.max_stream_ordering_sync()),
        state_group_ids=StreamIdGenerator(event_store.max_state_group_sync()), listeners=room_event_listeners)
    profiles = ProfileService(accounts=accounts_store, events=event_store, room_events=room_events,
                              server_name=server_name)
    serializer = EventSerializer(room_events, event_store)
    directory = DirectoryService(store=directory_store, events=event_store, room_events=room_events,
                                 server_name=server_name)
    e2ee = _build_e2ee(config, reactor, db, event_store, accounts_store, room_events, notifier, transport,
                       rejections)
    auth = AuthService(store=accounts_store, clock=reactor, server_name=server_name,
                       bcrypt_rounds=config.bcrypt_rounds, reactor=reactor, failed_logins=ratelimit.login_failed,
                       on_devices_removed=[e2ee.e2e_keys.on_devices_removed, e2ee.to_device.on_devices_removed])
    registration = RegistrationService(store=accounts_store, auth=auth, config=config, clock=reactor)
    account_data = AccountDataService(store=account_data_storage.AccountDataStore(db), notifier=notifier)
    receipts = ReceiptService(store=receipts_storage.ReceiptStore(db), room_events=room_events,
                              account_data=account_data, notifier=notifier, clock=reactor)
    typing = TypingService(reactor=reactor, room_events=room_events, notifier=notifier)
    presence = PresenceService(store=presence_storage.PresenceStore(db), event_store=event_store,
                               notifier=notifier, clock=reactor, enabled=config.presence_enabled,
                               server_name=server_name)
    push = PushService(store=push_storage.PushStore(db), room_events=room_events, event_store=event_store,
                       account_data=account_data, serializer=serializer,
                       read_positions=receipts_storage.ReceiptStore(db).read_positions,
                       server_name=server_name, clock=reactor)
    # Each source adds its part of a /sync response in this order: the push source last, as it fills the
    # notification counts of every joined room the others put in. (A token names each stream, so this order
    # is free otherwise.)
    sync = SyncService(room_events=room_events, store=event_store, serializer=serializer, notifier=notifier,
                       clock=reactor, sources=[account_data, receipts, typing, e2ee.device_list_source,
                                               ToDeviceSource(e2ee.to_device), presence, push])

    room_servers = RoomServers(room_events)
    edus = EduFederation(
        server_name=server_name, clock=reactor, sender=transport.sender, room_servers=room_servers,
        room_events=room_events, event_store=event_store, accounts=accounts_store, typing=typing,
        receipts=receipts, presence=presence, to_device=e2ee.to_device, e2e_keys=e2ee.e2e_keys,
        remote_devices=e2ee.remote_devices, rejections=rejections)
    # A real cycle: the EDUs received go to these services, whose local changes go out as EDUs.
    typing.listeners.append(edus.on_typing)
    receipts.listeners.append(edus.on_receipt)
    presence.listeners.append(edus.on_presence)
    e2ee.device_lists.device_update_listeners.append(edus.on_device_updates)
    e2ee.e2e_keys.signing_key_listeners.append(edus.on_signing_keys)
    receiver = PduReceiver(room_events=room_events, key_fetcher=transport.keyring, client=transport.client,
                           server_name=server_name, acl=room_servers.origin_allowed, rejections=rejections,
                           edu_handlers=edus.handlers())
    restricted_joins = RestrictedJoins(room_events=room_events, server_name=server_name)
    federation_handler = Federation(
        room_events=room_events, room_servers=room_servers, receiver=receiver,
        membership=FederationMembership(room_events=room_events, room_servers=room_servers,
                                        restricted_joins=restricted_joins, receiver=receiver,
                                        client=transport.client, server_name=server_name,
                                        signing_key=signing_key, sender=transport.sender, clock=reactor),
        queries=FederationQueries(room_events=room_events, directory=directory, profiles=profiles,
                                  server_name=server_name, clock=reactor, acl=room_servers.origin_allowed),
        remote=RemoteQueries(client=transport.client),
        server_name=server_name, client=transport.client, sender=transport.sender)
    rooms = RoomService(room_events=room_events, store=event_store, profiles=profiles, server_name=server_name,
                        default_room_version=config.default_room_version, restricted_joins=restricted_joins,
                        federation=federation_handler, directory=directory, join_limits=ratelimit)
    history = RoomHistoryService(room_events=room_events, store=event_store, serializer=serializer, sync=sync,
                                 backfill=federation_handler.backfill)
    user_directory = UserDirectoryService(
        store=user_directory_storage.UserDirectoryStore(db), room_events=room_events,
        enabled=config.user_directory_enabled, search_all_users=config.user_directory_search_all_users)
    search_store = search_storage.SearchStore(db)
    search_store.prepare_sync()
    search = SearchService(store=search_store, room_events=room_events, event_store=event_store,
                           serializer=serializer, sync=sync)

    # Who is told of new room events (local, remote, out-of-band memberships), in this order, once the stream
    # shows them. Only the first two depend on their places; the rest keep the order they had.
    room_event_listeners.extend([
        push.on_room_events,  # first: a sync woken by the event waits for its push actions (counts come with it)
        lambda events: _notify_room_events(notifier, events),  # wakes /sync; after push, see above
        typing.on_room_events,  # a member who leaves stops typing
        e2ee.device_lists.on_room_events,  # membership changes change who shares our users' device lists
        presence.on_room_events,
        user_directory.on_room_events,
        search.on_room_events,
        federation_handler.on_new_events,  # local events to the other servers of the room
        e2ee.remote_devices.on_room_events,  # remote users who no longer share a room are no longer tracked
        edus.on_room_events,  # presence to a room's new members, after the join PDU is queued to them
    ])

    media = _build_media(config, reactor, db, media_pool, event_store, RemoteMediaClient(transport.client),
                         media_providers)

    router = Router()
    resource = MatrixResource(router, auth.resolve_token, authenticate_server=transport.authenticator.authenticate,
                              db_counters=lambda: (db.txn_count, db.round_trips),
                              room_gate=room_events.settled, federation_limit=ratelimit.federation.run,
                              tarpit=ratelimit.tarpit, file_reads=_in_pool(reactor, media_pool))
    previewer = _build_previewer(config, reactor, media, media_pool)
    hs = HomeServer(config=config, reactor=reactor, signing_key=signing_key, db=db,
                    accounts_store=accounts_store, event_store=event_store, filters=filters,
                    notifier=notifier, auth=auth, registration=registration, profiles=profiles,
                    room_events=room_events, serializer=serializer, sync=sync, directory=directory,
                    rooms=rooms, history=history, ratelimit=ratelimit, router=router, presence=presence,
                    e2e_keys=e2ee.e2e_keys, device_lists=e2ee.device_lists, to_device=e2ee.to_device,
                    key_backup=KeyBackupService(store=key_backup_storage.KeyBackupStore(db)),
                    account_data=account_data, receipts=receipts, typing=typing, push=push,
                    user_directory=user_directory, search=search, federation=transport,
                    federation_handler=federation_handler, federation_rejections=rejections,
                    openid=OpenIdTokens(reactor), resource=resource, media=media, media_pool=media_pool,
                    url_previewer=previewer)
    for module in CLIENT_API_MODULES + ([media_preview_api] if previewer is not None else []):
        router.bind(hs, module.ROUTES)
    return hs


def _build_media(config, reactor, db, pool: ThreadPool, event_store, remote,
                 providers: list[ProviderEntry]) -> MediaRepository:
    """The media repository: its store under media_store_path (swept of half-received files), its tables, the
    content scanner (clamd) when configured, the storage providers."""
    scanner = config.content_scanner
    files = FileStore(config.media_store_path)
    files.prepare()
    settings = MediaSettings(
        max_upload_size=config.max_upload_size, upload_limits=tuple(config.media_upload_limits),
        authenticated_media=config.enable_authenticated_media, max_pending_uploads=config.max_pending_media_uploads,
        unused_expiration_ms=config.unused_expiration_time_ms, thumbnail_sizes=tuple(config.thumbnail_sizes),
        dynamic_thumbnails=config.dynamic_thumbnails, max_image_pixels=config.max_image_pixels,
        retention=config.media_retention, scan_fail_closed=scanner is None or scanner.fail_closed)
    return MediaRepository(
        store=media_storage.MediaStore(db), files=files, clock=reactor, server_name=config.server_name,
        run_in_thread=_in_pool(reactor, pool), settings=settings,
        federation_allowed=lambda server: federation_allowed(config.federation_domain_whitelist, server),
        events=event_store, remote=remote,
        scanner=ClamdScanner(scanner.clamd, reactor) if scanner is not None else None, providers=providers)


def _in_pool(reactor, pool: ThreadPool) -> Callable:
    """``run_in_thread(fn, *args)``: fn(*args) on ``pool``, as an awaitable."""
    return lambda fn, *args: threads.deferToThreadPool(reactor, pool, fn, *args)


def _storage_providers(config, run_in_thread) -> list[ProviderEntry]:
    """Each ``media_storage_providers`` entry with its provider (the config reader admits only the S3 module)."""
    if not config.media_storage_providers:
        return []
    from media_repo.s3 import S3StorageProvider  # boto3 (0.5 s and 20 MB to import) only where S3 is used
    return [ProviderEntry(S3StorageProvider(p.config, run_in_thread), p.store_local, p.store_remote,
                          p.store_synchronous) for p in config.media_storage_providers]


def _build_previewer(config, reactor, media: MediaRepository, pool: ThreadPool) -> UrlPreviewer | None:
    """URL previews when url_preview_enabled: their own IP ranges; images stored through the media repository."""
    if not config.url_preview_enabled:
        return None
    return UrlPreviewer(reactor=reactor, run_in_thread=_in_pool(reactor, pool),
                        ip_filter=IpRangeFilter(config.url_preview_ip_range_blacklist,
                                                config.url_preview_ip_range_whitelist),
                        url_blacklist=config.url_preview_url_blacklist, max_spider_size=config.max_spider_size,
                        new_spool=media.new_spool, store_image=media_image_store(media))


def _build_transport(config, reactor, db, signing_key) -> FederationTransport:
    """Federation keys, the outbound client, the sender and the inbound request authenticator."""
    def now_ms() -> int:
        return int(reactor.seconds() * 1000)

    server_keys = ServerKeys(config.server_name, signing_key, parse_old_signing_keys(config.raw), now_ms)
    if any(n["server_name"] == "matrix.org" for n in config.trusted_key_servers) \
            and not config.suppress_key_server_warning:
        logger.warning("This server trusts matrix.org to vouch for other servers' signing keys "
                       "(trusted_key_servers); set suppress_key_server_warning: true to silence this")
    client = FederationClient(
        reactor=reactor, server_name=config.server_name, signing_key=signing_key,
        tls_policy=ClientTlsPolicy(verify=config.federation_verify_certificates,
                                   ca_files=config.federation_custom_ca_list,
                                   minimum_version=config.federation_client_minimum_tls_version),
        ip_filter=(IpRangeFilter(config.ip_range_blacklist, config.ip_range_whitelist)
                   if config.federation_ip_range_blacklist is None
                   else IpRangeFilter(config.federation_ip_range_blacklist)),
        whitelist=config.federation_domain_whitelist, now_ms=now_ms)
    keyring = KeyRing(store=server_keys_storage.ServerKeyStore(db), own=server_keys, client=client,
                      trusted_key_servers=config.trusted_key_servers, now_ms=now_ms)
    queue = federation_queue_storage.FederationQueueStore(db)
    sender = FederationSender(reactor=reactor, store=queue, client=client, server_name=config.server_name,
                              whitelist=config.federation_domain_whitelist, now_ms=now_ms,
                              positions=StreamIdGenerator(queue.max_position_sync()))
    authenticator = FederationAuthenticator(server_name=config.server_name, keyring=keyring,
                                            whitelist=config.federation_domain_whitelist, now_ms=now_ms,
                                            on_origin=sender.wake)
    return FederationTransport(server_keys, keyring, client, sender, authenticator)


@dataclass
class _E2ee:
    device_lists: DeviceListService
    device_list_source: DeviceListSource
    remote_devices: RemoteDeviceLists
    e2e_keys: E2eKeysService
    to_device: ToDeviceService


def _build_e2ee(config, reactor, db, event_store, accounts_store, room_events, notifier, transport,
                rejections) -> _E2ee:
    """End-to-end encryption: device lists (local, and remote ones over federation), keys, to-device messages."""
    server_name = config.server_name
    device_list_store = device_lists_storage.DeviceListStore(db)
    inbox_store = device_inbox_storage.DeviceInboxStore(db)
    e2e_store = e2e_keys_storage.E2eKeyStore(db)
    device_lists = DeviceListService(store=device_list_store, events=event_store, room_events=room_events,
                                     notifier=notifier, stream=StreamIdGenerator(device_list_store.max_position_sync()))
    remote_devices = RemoteDeviceLists(
        server_name=server_name, client=transport.client, cache=e2e_keys_storage.RemoteDeviceCache(db),
        e2e_store=e2e_store, event_store=event_store, device_lists=device_lists, rejections=rejections)
    e2e_keys = E2eKeysService(store=e2e_store, accounts=accounts_store, device_lists=device_lists,
                              remote=remote_devices, server_name=server_name, clock=reactor)
    to_device = ToDeviceService(store=inbox_store, accounts=accounts_store, notifier=notifier,
                                server_name=server_name, stream=StreamIdGenerator(inbox_store.max_position_sync()),
                                federation=transport.sender)
    return _E2ee(device_lists, DeviceListSource(device_lists, e2e_keys), remote_devices, e2e_keys, to_device)


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
    retention = task.LoopingCall(lambda: defer.ensureDeferred(hs.media.apply_retention()).addErrback(
        lambda f: logger.error("media_retention failed: %s", f.getTraceback())))
    retention.clock = hs.reactor
    hs.reactor.callWhenRunning(retention.start, RETENTION_INTERVAL_S, now=True)
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
    hs.media_pool.stop()
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
