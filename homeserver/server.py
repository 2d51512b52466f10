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

from twisted.internet import defer, threads
from signedjson.key import decode_signing_key_base64, generate_signing_key, write_signing_keys
from twisted.python.threadpool import ThreadPool
from unpaddedbase64 import encode_base64

from federation.api import key_server as federation_key_server_api
from federation.appservice_client import AppServiceClient
from federation.origin_client import OriginClient
from federation.api import keys as federation_keys_api, server as federation_api
from federation.api import policy as federation_policy_api
from federation.client import FederationClient
from federation.identity_client import IdentityServerClient
from federation.push_client import PushGatewayClient
from federation.handlers.edus import InboundEdus, OutboundEdus, RemoteDeviceLists
from federation.handlers.membership import FederationMembership
from federation.handlers.queries import FederationQueries
from federation.handlers.receive import PduReceiver
from federation.handlers.remote_queries import RemoteQueries
from federation.keys import KeyRing, ServerKeys
from federation.outbox import PduOutbox
from federation.peers import FederationPeers
from federation.policy import IpRangeFilter
from homeserver.events.policy_servers import POLICY_KEY_VERSION, RefusalRules
from homeserver.services.policy_servers import PolicyServer, RoomPolicy
from federation.rejections import FederationRejections
from federation.request_auth import FederationAuthenticator
from federation.room_servers import RoomServers
from federation.sender import FederationSender
from federation.service import Federation
from federation.tls import ClientTlsPolicy, TlsServerFactory, server_context
from federation.transport import FederationTransport
from homeserver import config as config_module
from homeserver.config.values import ConfigError
from homeserver.api import admin as admin_api, hexagone_admin as hexagone_admin_api
from homeserver.api import admin_federation, admin_reports, admin_rooms, admin_users, console as console_api
from homeserver.api import admin_background_updates, admin_server_notices
from homeserver.api import metrics as metrics_api, replication as replication_api
from homeserver.api.client import account, discovery, profile, room_events as room_events_api, rooms as rooms_api
from homeserver.api.client import sync as sync_api
from homeserver.api.client import legacy_events as legacy_events_api
from homeserver.api.client import key_backup as key_backup_api, keys as keys_api, to_device as to_device_api
from homeserver.api.client import account_data as account_data_api, receipts as receipts_api
from homeserver.api.client import delayed_events as delayed_events_api
from homeserver.api.client import presence as presence_api, push_rules as push_rules_api, pushers as pushers_api
from homeserver.api.client import search as search_api, user_directory as user_directory_api
from homeserver.api.client import appservice as appservice_api, server_admin as server_admin_api
from homeserver.api.client import reporting as reporting_api, spaces as spaces_api, threepids as threepids_api
from homeserver.api.client import session_tokens as session_tokens_api, sso as sso_api
from homeserver.config.workers import MAIN
from homeserver.api.client import uia_fallback as uia_fallback_api
from homeserver.http.router import Router
from homeserver.http.site import ConnectionTracker, MatrixResource, make_site
from homeserver.metrics import Metrics, TrafficHistory
from homeserver.replication.http import (ForwardedOutbox, ForwardedPersistence, ReplicationClient,
                                         forwarded_edu_handlers)
from homeserver.replication.redis import RedisPubSub
from homeserver.replication.streams import (FollowedStream, ReplicationFollower, ReplicationPublisher,
                                            channel_name)
from homeserver.services.account_moderation import AccountModeration
from homeserver.services.access_rules import AccessRules
from homeserver.services.retention import RetentionService
from homeserver.services.account_data import AccountDataService
from homeserver.services.admin import AdminService
from homeserver.services.appservice_sender import AppServiceSender
from homeserver.services.appservices import AppServices
from homeserver.services.audit import AuditLog
from homeserver.services.background import BackgroundJobs, ScheduledJob
from homeserver.services.auth import AuthService
from homeserver.services.config_reload import ConfigReloader
from homeserver.services.delayed_events import DelayedEventService, DelayedStateCancels
from homeserver.services.device_lists import DeviceListService, DeviceListSource
from homeserver.services.directory import DirectoryService
from homeserver.services.email_notifs import EmailNotifier
from homeserver.services.e2e_keys import E2eKeysService, LocalKeys
from homeserver.services.filters import FilterService
from homeserver.services.guests import GuestRevocations
from homeserver.services.history import RoomHistoryService
from homeserver.services.legacy_events import LegacyEventsService
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.mailer import Mailer, SmtpSettings
from homeserver.services.notifier import Notifier
from homeserver.services.openid import OpenIdTokens
from homeserver.services.session_tokens import SessionTokens
from homeserver.services.cas import CasProvider
from homeserver.services.sso import SsoService
from homeserver.services.presence import PresenceService
from homeserver.services.profiles import ProfileService
from homeserver.services.push import PushService
from homeserver.services.pushers import PusherService
from homeserver.services.ratelimit import RateLimits, Ratelimiter, RatelimitOverrides
from homeserver.services.receipts import ReceiptService
from homeserver.services.recaptcha import RecaptchaVerifier
from homeserver.services.registration import RegistrationService
from homeserver.services.reports import ReportService
from homeserver.services.restricted_joins import RestrictedJoins
from homeserver.services.room_events.gate import JoinGate
from homeserver.services.room_events.heads import RoomHeads
from homeserver.services.room_events.local import LocalAppends
from homeserver.services.room_events.remote import RemotePersistence
from homeserver.services.room_blocks import RoomBlocks
from homeserver.services.rooms import RoomService
from homeserver.services.search import SearchService
from homeserver.services.spaces import SpaceService
from homeserver.services.server_notices import NoticesConfig, ServerNotices
from homeserver.services.serialize import EventSerializer
from homeserver.services.sync import SyncService
from homeserver.services.identity import IdentityService, trusted_entries
from homeserver.services.third_party_invites import ThirdPartyInvites
from homeserver.services.threepids import ThreepidService
from homeserver.services.to_device import ToDeviceService, ToDeviceSource
from homeserver.services.typing import TypingService
from homeserver.services.user_directory import UserDirectoryService
from homeserver.storage import account_moderation as account_moderation_storage
from homeserver.storage import account_data as account_data_storage
from homeserver.storage import appservice_directory as appservice_directory_storage
from homeserver.storage import appservices as appservices_storage
from homeserver.storage import accounts as accounts_storage
from homeserver.storage import admin as admin_storage
from homeserver.storage import audit as audit_storage
from homeserver.storage import delayed_events as delayed_events_storage
from homeserver.storage import rejected_events as rejected_events_storage
from homeserver.storage import device_inbox as device_inbox_storage
from homeserver.storage import device_lists as device_lists_storage
from homeserver.storage import directory as directory_storage
from homeserver.storage import e2e_keys as e2e_keys_storage
from homeserver.storage import events as events_storage
from homeserver.storage import federation_queue as federation_queue_storage
from homeserver.storage import filters as filters_storage
from homeserver.storage import key_backup as key_backup_storage
from homeserver.storage import openid as openid_storage
from homeserver.storage import spaces as spaces_storage
from homeserver.storage import presence as presence_storage
from homeserver.storage import push as push_storage
from homeserver.storage import pushers as pushers_storage
from homeserver.storage import receipts as receipts_storage
from homeserver.storage import reports as reports_storage
from homeserver.storage import search as search_storage
from homeserver.storage import retention as retention_storage
from homeserver.storage import server_keys as server_keys_storage
from homeserver.storage import identity as identity_storage
from homeserver.storage import threepids as threepids_storage
from homeserver.storage import server_notices as server_notices_storage
from homeserver.storage import session_tokens as session_tokens_storage
from homeserver.storage import sso as sso_storage
from homeserver.storage import user_directory as user_directory_storage
from homeserver.storage.database import Database, open_engine
from homeserver.storage.schema import apply_migrations
from homeserver.storage.streams import StreamIdGenerator
from homeserver.worker_threads import WorkerThreads
from media_repo import storage as media_storage
from media_repo.api import admin as media_admin_api, client as media_client_api, federation as media_federation_api
from media_repo.api import preview as media_preview_api
from media_repo.filestore import FileStore
from media_repo.hooks import ProviderEntry
from media_repo.remote import RemoteMediaClient
from media_repo.service import MediaRepository, MediaSettings
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
    "device_list_signatures": device_lists_storage.SIGNATURE_MIGRATIONS,
    "device_inbox": device_inbox_storage.MIGRATIONS,
    "key_backup": key_backup_storage.MIGRATIONS,
    "receipts": receipts_storage.MIGRATIONS,
    "account_data": account_data_storage.MIGRATIONS,
    "server_keys": server_keys_storage.MIGRATIONS,
    "federation_queue": federation_queue_storage.MIGRATIONS,
    "push": push_storage.MIGRATIONS,
    "pushers": pushers_storage.MIGRATIONS,
    "presence": presence_storage.MIGRATIONS,
    "user_directory": user_directory_storage.MIGRATIONS,
    "search": search_storage.MIGRATIONS,
    "appservices": appservices_storage.MIGRATIONS,
    "appservice_room_list": appservice_directory_storage.MIGRATIONS,
    "delayed_events": delayed_events_storage.MIGRATIONS,
    "openid": openid_storage.MIGRATIONS,
    "audit": audit_storage.MIGRATIONS,
    "admin": admin_storage.MIGRATIONS,
    "media": media_storage.MIGRATIONS,
    "spaces": spaces_storage.MIGRATIONS,
    "account_moderation": account_moderation_storage.MIGRATIONS,
    "threepids": threepids_storage.MIGRATIONS,
    "identity": identity_storage.MIGRATIONS,
    "reports": reports_storage.MIGRATIONS,
    "server_notices": server_notices_storage.MIGRATIONS,
    "session_tokens": session_tokens_storage.MIGRATIONS,
    "sso": sso_storage.MIGRATIONS,
    "rejected_events": rejected_events_storage.MIGRATIONS,
    "user_directory_search": user_directory_storage.SEARCH_MIGRATIONS,  # after accounts and user_directory
}

CLIENT_API_MODULES = [discovery, account, session_tokens_api, profile, rooms_api, room_events_api, sync_api, receipts_api,
                      account_data_api, keys_api, to_device_api, key_backup_api, federation_key_server_api,
                      federation_api, federation_keys_api, admin_api, hexagone_admin_api, admin_users, admin_rooms,
                      admin_federation, admin_reports, admin_server_notices, admin_background_updates,
                      metrics_api, console_api, reporting_api,
                      push_rules_api, pushers_api, presence_api, user_directory_api, search_api, appservice_api,
                      delayed_events_api, spaces_api, server_admin_api, threepids_api,
                      legacy_events_api, sso_api, uia_fallback_api, federation_policy_api, replication_api]
# What a worker serves (the reverse proxy sends it only some of it, see docs/workers.md): the GET routes of
# WORKER_API_MODULES, reads that write no stream (the main process writes every stream); every route of
# MEDIA_MODULES when it serves media (enable_media_repo: media has no stream, any process serves it); and every
# route of FEDERATION_MODULES when main's replication listener is configured (main persists what it receives).
WORKER_API_MODULES = [discovery, account, profile, rooms_api, room_events_api, sync_api, account_data_api,
                      keys_api, push_rules_api, pushers_api, presence_api]
MEDIA_MODULES = [media_client_api, media_federation_api, media_admin_api]
FEDERATION_MODULES = [federation_api, federation_key_server_api, federation_keys_api]
MEDIA_THREADS = 4  # Pillow, reads and renames of media files: never the reactor's global pool
DRAIN_TIMEOUT_S = 5  # at shutdown, how long in-flight requests may take to finish
RETENTION_INTERVAL_S = 3600  # media_retention: how often the background job runs

@dataclass
class HomeServer:
    """Every service of one homeserver, built once by ``build_server``, passed to the API modules."""

    config: Any
    reactor: Any
    signing_key: Any
    db: Database
    threads: WorkerThreads  # blocking work other than the database's (bcrypt, getaddrinfo, signature checks)
    accounts_store: accounts_storage.AccountStore
    event_store: events_storage.EventStore
    filters: FilterService
    notifier: Notifier
    auth: AuthService
    registration: RegistrationService
    profiles: ProfileService
    room_heads: RoomHeads
    local_appends: LocalAppends
    join_gate: JoinGate
    serializer: EventSerializer
    sync: SyncService
    directory: DirectoryService
    rooms: RoomService
    history: RoomHistoryService
    legacy_events: LegacyEventsService
    guest_revocations: GuestRevocations
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
    pushers: PusherService
    threepids: ThreepidService
    identity: IdentityService  # the identity servers this server may ask (trusted_third_party_id_servers)
    third_party_invites: ThirdPartyInvites
    email_notifs: EmailNotifier | None  # None: email.enable_notifs is false (no e-mail pushers)
    user_directory: UserDirectoryService
    spaces: SpaceService
    account_moderation: AccountModeration  # suspended and locked accounts
    search: SearchService
    appservices: AppServices
    appservice_sender: AppServiceSender
    delayed_events: DelayedEventService
    delayed_cancels: DelayedStateCancels
    federation: FederationTransport
    federation_handler: Federation
    pdu_outbox: PduOutbox
    federation_rejections: FederationRejections  # PDUs and EDUs refused, counted by reason
    metrics: Metrics
    traffic: TrafficHistory  # the console's charts
    openid: OpenIdTokens
    session_tokens: SessionTokens
    sso: SsoService  # single sign-on (cas_config); without an identity provider it only says so
    audit: AuditLog
    config_reload: ConfigReloader
    admin: AdminService
    access_rules: AccessRules
    retention: RetentionService
    background_jobs: BackgroundJobs
    reports: ReportService
    server_notices: ServerNotices
    resource: MatrixResource
    media: MediaRepository
    media_pool: ThreadPool
    url_previewer: UrlPreviewer | None  # None: url_preview_enabled is false (its routes are not bound)
    remote_events: RemotePersistence | ForwardedPersistence  # remote events persisted (on a worker, by main)
    main_client: ReplicationClient | None  # an inbound federation worker's: main's replication listener
    pubsub: RedisPubSub | None  # the Redis connections to the other processes, when redis.enabled
    replication: ReplicationFollower | None  # a worker's: applies the main process's writes
    replication_publisher: ReplicationPublisher | None  # the main process's, when redis.enabled
    policy_server: PolicyServer | None = None  # None: policy_server.enabled is false
    ports: list = field(default_factory=list)  # the listening ports, once ``listen`` has opened them

    @property
    def server_name(self) -> str:
        return self.config.server_name

    def close(self) -> None:
        """Close the database and stop the worker and media threads (they would keep the process alive)."""
        if self.pubsub is not None:
            self.pubsub.stop()
        self.db.close()
        self.threads.stop()
        self.media_pool.stop()


def build_server(config, reactor) -> HomeServer:
    """Open the database, apply migrations, and build every object, each given its collaborators."""
    signing_key = config_module.read_signing_key(config.signing_key_path)
    media_pool = ThreadPool(minthreads=0, maxthreads=MEDIA_THREADS, name="media")  # no thread until used
    media_pool.start()
    media_providers = _storage_providers(config, _in_pool(reactor, media_pool))
    if config.database.engine == "sqlite" and os.path.dirname(config.database.sqlite_path):
        os.makedirs(os.path.dirname(config.database.sqlite_path), exist_ok=True)
    metrics = Metrics(config.server_name, export=config.enable_metrics)
    db = Database(open_engine(config.database), reactor, on_transaction=metrics.transaction_done)
    apply_migrations(db, STORAGE_DOMAINS, apply=not config.worker_role.is_worker)
    server_name = config.server_name
    threads = WorkerThreads(reactor)

    accounts_store = accounts_storage.AccountStore(db)
    event_store = events_storage.EventStore(db)
    filters = FilterService(store=filters_storage.FilterStore(db), timeline_cap=config.filter_timeline_limit)
    directory_store = directory_storage.DirectoryStore(db)

    role = config.worker_role
    pubsub = RedisPubSub(reactor, config.redis_host, config.redis_port, channel_name(server_name)) \
        if role.replicated else None
    # The main process tells the others of its writes; ``sync`` (built below) gives every stream's position,
    # ``push`` where the push actions are stored up to. (A worker only says which servers it heard from.)
    publisher = ReplicationPublisher(
        instance=role.instance, publish=pubsub.publish, positions=lambda: sync.current_positions(), clock=reactor,
        push_stored=lambda: push.stored_through,
        on_heard=(lambda server: transport.sender.wake(server)) if role.sends_federation else None) \
        if pubsub is not None and not role.is_worker else None
    heard_from = (publisher or ReplicationPublisher(instance=role.instance, publish=pubsub.publish, positions=dict,
                                                    clock=reactor)).heard_from \
        if pubsub is not None and not role.sends_federation else None
    # An inbound federation worker hands main what it receives to write, over main's replication listener.
    main_client = ReplicationClient(reactor, *config.instance_map[MAIN], config.worker_replication_secret) \
        if role.is_worker and config.instance_map and MAIN in config.instance_map \
        and config.worker_replication_secret else None
    notifier = Notifier(reactor, on_notify=publisher.notified if publisher is not None else None)
    appservice_client = AppServiceClient(reactor, ClientTlsPolicy())  # system CAs (SSL_CERT_FILE too)
    appservices = AppServices(registrations=tuple(config.app_services), client=appservice_client,
                              accounts=accounts_store, clock=reactor)
    audit = AuditLog(store=audit_storage.AuditStore(db), clock=reactor)
    peers = FederationPeers(config.federation_domain_whitelist, config.federation_peer_policy)
    config_reload = ConfigReloader(
        path=config.config_path, load=lambda path: config_module.load_config(path, *config.more_config_paths),
        apply=[lambda new: peers.update(new.federation_domain_whitelist, new.federation_peer_policy)],
        on_reloaded=lambda actor, applied: audit.record("config_reload", actor, None, None, applied))
    admin_store = admin_storage.AdminStore(db)
    ratelimit = RateLimits(config, reactor, federation_per_host=peers.rc_federation,
                           overrides=RatelimitOverrides(reactor, admin_store.ratelimit_overrides_sync()))
    transport = _build_transport(config, reactor, threads, db, signing_key, peers, audit, publisher, heard_from)
    rejections = FederationRejections(metrics.federation_rejected, audit=audit.note)
    room_heads = RoomHeads(clock=reactor, store=event_store, event_cache_size=config.event_cache_size,
                           stream=StreamIdGenerator(event_store.max_stream_ordering_sync()),
                           state_group_ids=StreamIdGenerator(event_store.max_state_group_sync()))
    room_servers = RoomServers(room_heads)
    serializer = EventSerializer(room_heads, event_store)
    remote_queries = RemoteQueries(client=transport.client)
    directory = DirectoryService(store=directory_store, events=event_store, room_heads=room_heads,
                                 appservice_lists=appservice_directory_storage.AppServiceDirectoryStore(db),
                                 server_name=server_name, appservices=appservices, remote=remote_queries,
                                 require_membership=config.require_membership_for_aliases)
    join_gate = JoinGate(clock=reactor, store=event_store, aliases=directory)
    # Local changes go out as EDUs through OutboundEdus and to the application services (MSC2409 ephemeral
    # events, MSC4203 to-device, MSC3202 device lists) through the AppServiceSender, both built before the
    # services that make the changes; the EDUs received are applied to those services by the InboundEdus
    # built after them.
    e2e_store = e2e_keys_storage.E2eKeyStore(db)
    device_list_store = device_lists_storage.DeviceListStore(db)
    device_list_stream = StreamIdGenerator(device_list_store.max_position_sync())
    appservice_sender = AppServiceSender(
        registrations=tuple(config.app_services), client=appservice_client,
        store=appservices_storage.AppServiceStore(db), event_store=event_store, directory_store=directory_store,
        serializer=serializer, device_list_store=device_list_store, device_list_stream=device_list_stream,
        e2e_store=e2e_store, accounts=accounts_store, reactor=reactor,
        start_position=event_store.max_stream_ordering_sync(),
        on_queued=publisher.appservice_queued if publisher is not None and not role.sends_appservices else None)
    local_keys = LocalKeys(store=e2e_store, accounts=accounts_store)
    outbound_edus = OutboundEdus(server_name=server_name, clock=reactor, sender=transport.sender,
                                 room_servers=room_servers, room_heads=room_heads, event_store=event_store,
                                 accounts=accounts_store, keys=local_keys)
    e2ee = _build_e2ee(config, reactor, db, event_store, accounts_store, room_heads, notifier, transport,
                       rejections, e2e_store, local_keys, outbound_edus, appservice_sender,
                       device_list_store, device_list_stream)
    account_data = AccountDataService(store=account_data_storage.AccountDataStore(db), notifier=notifier)
    push = PushService(store=push_storage.PushStore(db), room_heads=room_heads, event_store=event_store,
                       account_data=account_data, serializer=serializer,
                       read_positions=receipts_storage.ReceiptStore(db).read_positions,
                       server_name=server_name, clock=reactor, memoize=not role.is_worker,
                       on_stored=publisher.push_stored if publisher is not None and not role.sends_pushes else None)
    # E-mail (the email section): validation links for addresses, and e-mail pushers with enable_notifs.
    threepid_store = threepids_storage.ThreepidStore(db)
    mailer = Mailer(SmtpSettings.from_config(config), threads) if config.email_notif_from else None
    email_notifs = EmailNotifier(
        mailer=mailer, config=config, room_heads=room_heads,
        read_positions=receipts_storage.ReceiptStore(db).read_positions,
        threepid_owner=threepid_store.owner, unsubscribe_key=signing_key.encode(), clock=reactor,
    ) if mailer is not None and config.email_enable_notifs else None
    pushers = PusherService(store=pushers_storage.PusherStore(db), push=push, room_heads=room_heads,
                            event_store=event_store, reactor=reactor, email=email_notifs,
                            sends=role.sends_pushes, sends_for=role.sends_pushes_for, replicated=role.is_worker,
                            on_changed=publisher.pushers_changed if publisher is not None else None,
                            client=PushGatewayClient(reactor=reactor, threads=threads, ip_filter=IpRangeFilter(
                                config.ip_range_blacklist, config.ip_range_whitelist), tls_policy=ClientTlsPolicy(
                                verify=not config.use_insecure_ssl_client_just_for_testing_do_not_use)))
    session_token_store = session_tokens_storage.SessionTokenStore(db)
    auth = AuthService(store=accounts_store, clock=reactor, server_name=server_name,
                       bcrypt_rounds=config.bcrypt_rounds, threads=threads, failed_logins=ratelimit.login_failed,
                       on_tokens_forgotten=publisher.tokens_forgotten if publisher is not None else None,
                       on_devices_removed=[e2ee.e2e_keys.on_devices_removed, e2ee.to_device.on_devices_removed,
                                           pushers.on_devices_removed, session_token_store.on_devices_removed],
                       on_devices_changed=[e2ee.e2e_keys.on_devices_changed],
                       lifetimes=session_token_store, recaptcha=_build_recaptcha(config, reactor))
    registration = RegistrationService(store=accounts_store, auth=auth, config=config, clock=reactor,
                                       appservices=appservices)
    threepids = ThreepidService(store=threepid_store, mailer=mailer, config=config, clock=reactor, pushers=pushers)
    receipts = ReceiptService(store=receipts_storage.ReceiptStore(db), room_heads=room_heads,
                              account_data=account_data, notifier=notifier, clock=reactor, federation=outbound_edus,
                              appservices=appservice_sender, on_read=pushers.on_read)
    typing = TypingService(reactor=reactor, room_heads=room_heads, notifier=notifier, federation=outbound_edus,
                           appservices=appservice_sender,
                           on_changed=publisher.typing_changed if publisher is not None else None)
    presence = PresenceService(store=presence_storage.PresenceStore(db), event_store=event_store,
                               notifier=notifier, clock=reactor, enabled=config.presence_enabled,
                               server_name=server_name, federation=outbound_edus, appservices=appservice_sender,
                               writer=not role.is_worker)
    # Each source adds its part of a /sync response in this order: the push source last, as it fills the
    # notification counts of every joined room the others put in. (A token names each stream, so this order
    # is free otherwise.)
    media = _build_media(config, reactor, db, media_pool, event_store, RemoteMediaClient(transport.client),
                         media_providers, peers, ratelimit.remote_media_download)
    retention = RetentionService(config=config.retention, room_heads=room_heads,
                                 store=retention_storage.RetentionStore(db), clock=reactor, server_name=server_name,
                                 on_purged=(media.on_events_purged,))  # purged events take their media along
    sync = SyncService(room_heads=room_heads, store=event_store, serializer=serializer, notifier=notifier,
                       retention=retention.filter, ignored_users=account_data.ignored_users,
                       erased_users=admin_store.erased_among,
                       cache_answers=not role.is_worker,
                       clock=reactor, sources=[account_data, receipts, typing, e2ee.device_list_source,
                                               ToDeviceSource(e2ee.to_device), presence, push])
    user_directory = UserDirectoryService(
        store=user_directory_storage.UserDirectoryStore(db), room_heads=room_heads,
        enabled=config.user_directory_enabled, search_all_users=config.user_directory_search_all_users)
    search_store = search_storage.SearchStore(db)
    search_store.prepare_sync()
    search = SearchService(store=search_store, room_heads=room_heads, event_store=event_store,
                           serializer=serializer, sync=sync)
    pdu_outbox = PduOutbox(room_heads=room_heads, room_servers=room_servers, server_name=server_name,
                           sender=transport.sender)
    delayed_store = delayed_events_storage.DelayedEventStore(db)
    delayed_cancels = DelayedStateCancels(delayed_store)
    guest_revocations = GuestRevocations(accounts=accounts_store, event_store=event_store, server_name=server_name)

    # Who is told of new room events (local, remote, out-of-band memberships), in this order, once the stream
    # shows them. Push first and the notifier second depend on their places, and presence for new members after
    # the PDU outbox; the appservice, metrics and pusher listeners only wake loops or count, so they come last.
    room_event_listeners = (publisher.on_room_events,) if publisher is not None else ()
    room_event_listeners += (
        push.on_room_events,  # first: a sync woken by the event waits for its push actions (counts come with it)
        lambda events: _notify_room_events(notifier, events),  # wakes /sync; after push, see above
        typing.on_room_events,  # a member who leaves stops typing
        e2ee.device_lists.on_room_events,  # membership changes change who shares our users' device lists
        presence.on_room_events,
        user_directory.on_room_events,
        search.on_room_events,
        pdu_outbox.on_new_events,  # local events to the other servers of the room
        e2ee.remote_devices.on_room_events,  # remote users who no longer share a room are no longer tracked
        presence.on_joins,  # presence to a room's new members, after the join PDU is queued to them
        delayed_cancels.on_room_events,  # state set by a user cancels others' delayed events for it
        appservice_sender.on_room_events,  # only wakes the appservices' loops, which read the stream themselves
        metrics.on_room_events,  # events persisted
        pushers.on_room_events,  # only wakes the pushers' loops, which wait for the push actions above
        guest_revocations.on_room_events,  # only queues the rooms whose guests must leave (``run`` below)
    )
    policy_server = _build_policy_server(config, room_heads) if not role.is_worker else None
    room_policy = RoomPolicy(heads=room_heads, client=transport.client, server_name=server_name, local=policy_server)
    appends = LocalAppends(heads=room_heads, store=event_store, server_name=server_name, signing_key=signing_key,
                           listeners=room_event_listeners, policy_sign=room_policy.sign_local)
    delayed_events = DelayedEventService(
        store=delayed_store, cancels=delayed_cancels, appends=appends, reactor=reactor,
        max_delay_ms=config.max_event_delay_ms, max_per_user=config.max_delayed_events_per_user)
    remote_events = RemotePersistence(heads=room_heads, store=event_store, listeners=room_event_listeners) \
        if main_client is None else ForwardedPersistence(client=main_client, heads=room_heads)

    profiles = ProfileService(accounts=accounts_store, events=event_store, room_heads=room_heads, appends=appends,
                              remote=remote_queries, server_name=server_name, appservices=appservices)
    inbound_edus = InboundEdus(
        room_servers=room_servers, event_store=event_store, typing=typing, receipts=receipts, presence=presence,
        to_device=e2ee.to_device, remote_devices=e2ee.remote_devices, rejections=rejections)
    access_rules = AccessRules(room_heads=room_heads, server_name=server_name,
                               internal_servers=config.room_access_rules_internal_servers, audit=audit)
    edu_handlers = inbound_edus.handlers()
    receiver = PduReceiver(room_heads=room_heads, remote=remote_events, join_gate=join_gate,
                           key_fetcher=transport.keyring, threads=threads, client=transport.client,
                           server_name=server_name, acl=room_servers.origin_allowed, rejections=rejections,
                           edu_handlers=edu_handlers if main_client is None
                           else forwarded_edu_handlers(main_client, edu_handlers),
                           membership_policy=access_rules.check_membership,
                           rejected=rejected_events_storage.RejectedEventStore(db),
                           room_policy=room_policy.check_remote)
    restricted_joins = RestrictedJoins(room_heads=room_heads, server_name=server_name)
    federation_handler = Federation(
        room_heads=room_heads, join_gate=join_gate, room_servers=room_servers, receiver=receiver,
        membership=FederationMembership(room_heads=room_heads, appends=appends, remote=remote_events,
                                        join_gate=join_gate, room_servers=room_servers,
                                        restricted_joins=restricted_joins, receiver=receiver,
                                        client=transport.client, server_name=server_name,
                                        signing_key=signing_key, clock=reactor,
                                        sender=transport.sender if main_client is None
                                        else ForwardedOutbox(main_client),
                                        room_policy=room_policy.check_remote),
        queries=FederationQueries(room_heads=room_heads, directory=directory, profiles=profiles,
                                  server_name=server_name, clock=reactor, room_servers=room_servers,
                                  erased=admin_store.erased),
        remote=remote_queries, server_name=server_name, client=transport.client, sender=transport.sender)
    room_blocks = RoomBlocks(store=admin_store, memoize=not role.is_worker)
    rooms = RoomService(room_heads=room_heads, appends=appends, join_gate=join_gate, store=event_store,
                        profiles=profiles, server_name=server_name,
                        default_room_version=config.default_room_version, restricted_joins=restricted_joins,
                        federation=federation_handler, directory=directory, join_limits=ratelimit,
                        blocked_by=room_blocks.blocked_by, access_rules=access_rules,
                        account_data=account_data)
    identity = _build_identity(config, reactor, threads, db, signing_key, transport)
    third_party_invites = ThirdPartyInvites(identity=identity, rooms=rooms, room_heads=room_heads, appends=appends,
                                            profiles=profiles, remote=remote_queries, server_name=server_name)
    spaces = SpaceService(room_heads=room_heads, room_servers=room_servers, directory=directory,
                          remote=remote_queries, sessions=spaces_storage.HierarchySessionStore(db),
                          events=event_store, server_name=server_name, clock=reactor)
    history = RoomHistoryService(room_heads=room_heads, store=event_store, serializer=serializer, sync=sync,
                                 backfill=None if role.is_worker else federation_handler.backfill)
    reports = ReportService(store=reports_storage.ReportStore(db), history=history, room_heads=room_heads,
                            accounts=accounts_store, event_store=event_store, audit=audit, clock=reactor,
                            server_name=server_name)
    server_notices = ServerNotices(
        config=NoticesConfig.of(config), server_name=server_name,
        store=server_notices_storage.ServerNoticeStore(db), accounts=accounts_store, registration=registration,
        profiles=profiles, rooms=rooms, room_heads=room_heads, appends=appends, account_data=account_data)
    replication = ReplicationFollower(
        instance=role.instance, notifier=notifier, room_heads=room_heads, auth=auth, typing=typing,
        publish=pubsub.publish,
        federation_sender=transport.sender if role.sends_federation else None,
        pushers=pushers if role.sends_pushes else None, push=push,
        appservices=appservice_sender if role.sends_appservices else None, all_rooms=main_client is not None,
        streams={"events": FollowedStream(room_heads.stream),
                 account_data.name: FollowedStream(account_data.stream, account_data.changes, "users"),
                 receipts.name: FollowedStream(receipts.stream, receipts.changes, "rooms"),
                 "device_lists": FollowedStream(e2ee.device_lists.stream),
                 "to_device": FollowedStream(e2ee.to_device.stream),
                 presence.name: FollowedStream(presence.stream)}) if role.is_worker else None


    account_moderation = AccountModeration(store=account_moderation_storage.AccountModerationStore(db),
                                           accounts=accounts_store, server_name=server_name)
    router = Router()
    resource = MatrixResource(router, auth.resolve_token, authenticate_server=transport.authenticator.authenticate,
                              db_counters=lambda: (db.txn_count, db.round_trips),
                              room_gate=join_gate.settled, federation_limit=ratelimit.federation.run,
                              tarpit=ratelimit.tarpit, authenticate_appservice=appservices.authenticate,
                              file_reads=_in_pool(reactor, media_pool), metrics=metrics,
                              check_locked=account_moderation.check_not_locked)
    previewer = _build_previewer(config, reactor, media, media_pool)
    session_tokens = SessionTokens(store=session_token_store, accounts=accounts_store, auth=auth, config=config)
    hs = HomeServer(config=config, reactor=reactor, signing_key=signing_key, db=db, threads=threads,
                    accounts_store=accounts_store, event_store=event_store, filters=filters,
                    notifier=notifier, auth=auth, registration=registration, profiles=profiles,
                    room_heads=room_heads, local_appends=appends, join_gate=join_gate,
                    serializer=serializer, sync=sync, directory=directory,
                    rooms=rooms, history=history, ratelimit=ratelimit,
                    router=router, presence=presence, guest_revocations=guest_revocations,
                    legacy_events=LegacyEventsService(sync=sync, history=history, room_heads=room_heads,
                                                      notifier=notifier, serializer=serializer, directory=directory,
                                                      presence=presence, clock=reactor),
                    e2e_keys=e2ee.e2e_keys, device_lists=e2ee.device_lists, to_device=e2ee.to_device,
                    key_backup=KeyBackupService(store=key_backup_storage.KeyBackupStore(db)),
                    account_data=account_data, receipts=receipts, typing=typing, push=push, pushers=pushers,
                    threepids=threepids, identity=identity, third_party_invites=third_party_invites,
                    email_notifs=email_notifs,
                    user_directory=user_directory, spaces=spaces, account_moderation=account_moderation,
                    search=search, appservices=appservices,
                    appservice_sender=appservice_sender, delayed_events=delayed_events,
                    delayed_cancels=delayed_cancels, federation=transport,
                    federation_handler=federation_handler, pdu_outbox=pdu_outbox, federation_rejections=rejections,
                    metrics=metrics, traffic=TrafficHistory(metrics, reactor),
                    openid=OpenIdTokens(store=openid_storage.OpenIdTokenStore(db), clock=reactor),
                    session_tokens=session_tokens,
                    sso=_build_sso(config, reactor, db, accounts_store, auth, registration, profiles, session_tokens,
                                   ratelimit.registration),
                    audit=audit, config_reload=config_reload,
                    admin=AdminService(store=admin_store, server_name=server_name, auth=auth,
                                       registration=registration, profiles=profiles, rooms=rooms,
                                       room_heads=room_heads, appends=appends, event_store=event_store,
                                       serializer=serializer, sync=sync, sender=transport.sender,
                                       ratelimit_overrides=ratelimit.overrides, clock=reactor,
                                       moderation=account_moderation, blocks=room_blocks, threepids=threepids,
                                       identity=identity),
                    access_rules=access_rules, retention=retention, reports=reports,
                    background_jobs=BackgroundJobs(reactor, [
                        *([] if role.is_worker else retention.scheduled_jobs()),
                        *([ScheduledJob("media_retention", RETENTION_INTERVAL_S * 1000, media.apply_retention,
                                        first_now=True)] if role.media_jobs else [])],
                        {"push_actions": push.work, "search_index": search.work,
                         "user_directory": user_directory.work, "delayed_event_cancels": delayed_cancels.work}),
                    server_notices=server_notices, resource=resource, media=media, media_pool=media_pool,
                    url_previewer=previewer, remote_events=remote_events, main_client=main_client,
                    pubsub=pubsub, replication=replication, replication_publisher=publisher,
                    policy_server=policy_server)
    media_modules = MEDIA_MODULES + ([media_preview_api] if previewer is not None else [])
    if role.is_worker:
        for module in WORKER_API_MODULES:
            router.bind(hs, [e for e in module.ROUTES if e.method == "GET"])
        for module in (media_modules if role.serves_media else []) + (
                FEDERATION_MODULES if main_client is not None else []):
            router.bind(hs, module.ROUTES)
        return hs
    for module in CLIENT_API_MODULES + (media_modules if role.serves_media else []):  # else a media worker's
        router.bind(hs, module.ROUTES)
    return hs


def _build_policy_server(config, room_heads: RoomHeads) -> PolicyServer | None:
    """Our Policy Server when ``policy_server.enabled``, with its own key (created when missing)."""
    if not config.policy_server_enabled:
        return None
    path = config.policy_server_signing_key_path or os.path.join(
        os.path.dirname(os.path.abspath(config.signing_key_path)), "policy_server.signing.key")
    if not os.path.exists(path):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
            write_signing_keys(f, [generate_signing_key(POLICY_KEY_VERSION)])
    seed = config_module.read_signing_key(path).encode()
    key = decode_signing_key_base64("ed25519", POLICY_KEY_VERSION, encode_base64(seed))
    rules = RefusalRules(list(config.policy_server_banned_users), list(config.policy_server_banned_servers),
                         list(config.policy_server_spam_keywords))
    return PolicyServer(heads=room_heads, server_name=config.server_name, signing_key=key, rules=rules,
                        rooms=list(config.policy_server_rooms), ban_lists=list(config.policy_server_ban_lists))


def _build_media(config, reactor, db, pool: ThreadPool, event_store, remote, providers: list[ProviderEntry],
                 peers: FederationPeers, download_limit: Ratelimiter) -> MediaRepository:
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
        federation_allowed=peers.allows,
        events=event_store, remote=remote,
        scanner=ClamdScanner(scanner.clamd, reactor) if scanner is not None else None, providers=providers,
        download_limit=download_limit)


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


def _build_recaptcha(config, reactor) -> RecaptchaVerifier | None:
    """The m.login.recaptcha stage once recaptcha_private_key is set: its client reaches
    recaptcha_siteverify_api only, its https checked as outbound federation's is."""
    if not config.recaptcha_private_key:
        return None
    tls_policy = ClientTlsPolicy(verify=config.federation_verify_certificates,
                                 ca_files=config.federation_custom_ca_list,
                                 minimum_version=config.federation_client_minimum_tls_version)
    client = OriginClient(reactor=reactor, base_url=config.recaptcha_siteverify_api, tls_policy=tls_policy,
                          name="the reCAPTCHA siteverify API")
    return RecaptchaVerifier(client=client, private_key=config.recaptcha_private_key,
                             public_key=config.recaptcha_public_key)


def _build_sso(config, reactor, db, accounts, auth, registration, profiles, session_tokens,
               registration_limit) -> SsoService:
    """Single sign-on: the CAS provider when cas_config is enabled (its client reaches server_url only, its
    https checked as outbound federation's is), the SSO service over it."""
    cas = None
    if config.cas_config_enabled:
        tls_policy = ClientTlsPolicy(verify=config.federation_verify_certificates,
                                     ca_files=config.federation_custom_ca_list,
                                     minimum_version=config.federation_client_minimum_tls_version)
        cas = CasProvider(client=OriginClient(reactor=reactor, base_url=config.cas_config_server_url,
                                              tls_policy=tls_policy, name="the CAS server"),
                          server_url=config.cas_config_server_url, public_baseurl=config.public_baseurl,
                          protocol_version=config.cas_config_protocol_version, name=config.cas_config_idp_name,
                          icon=config.cas_config_idp_icon, brand=config.cas_config_idp_brand,
                          allow_numeric_ids=config.cas_config_allow_numeric_ids,
                          numeric_ids_prefix=config.cas_config_numeric_ids_prefix)
    return SsoService(config=config, cas=cas, store=sso_storage.SsoStore(db), accounts=accounts, auth=auth,
                      registration=registration, profiles=profiles, session_tokens=session_tokens,
                      registration_limit=registration_limit)


def _build_previewer(config, reactor, media: MediaRepository, pool: ThreadPool) -> UrlPreviewer | None:
    """URL previews when url_preview_enabled: their own IP ranges; images stored through the media repository."""
    if not config.url_preview_enabled:
        return None
    return UrlPreviewer(reactor=reactor, run_in_thread=_in_pool(reactor, pool),
                        ip_filter=IpRangeFilter(config.url_preview_ip_range_blacklist,
                                                config.url_preview_ip_range_whitelist),
                        url_blacklist=config.url_preview_url_blacklist, max_spider_size=config.max_spider_size,
                        new_spool=media.new_spool, store_image=media_image_store(media))


def _build_identity(config, reactor, threads, db, signing_key, transport) -> IdentityService:
    """The identity servers' client: federation's IP ranges and TLS (as Synapse's for the identity servers
    clients name), asking only those ``trusted_third_party_id_servers`` (or ``default_identity_server``) allow."""
    try:
        trusted = trusted_entries(config.trusted_third_party_id_servers, config.default_identity_server)
    except ValueError as e:
        raise ConfigError(f"default_identity_server: not a URL of a valid server name ({e})") from None
    client = IdentityServerClient(reactor=reactor, threads=threads, ip_filter=transport.client.ip_filter,
                                  tls_policy=transport.client.tls_policy, server_name=config.server_name,
                                  signing_key=signing_key)
    return IdentityService(client=client, store=identity_storage.IdentityBindingStore(db), trusted=trusted)


def _build_transport(config, reactor, threads, db, signing_key, peers: FederationPeers,
                     audit: AuditLog, publisher: ReplicationPublisher | None,
                     heard_from: Callable[[str], None] | None) -> FederationTransport:
    """Federation keys, the outbound client, the sender and the inbound request authenticator, all under
    ``peers`` (whom we federate with); inbound refusals go to the audit trail."""
    def now_ms() -> int:
        return int(reactor.seconds() * 1000)

    server_keys = ServerKeys(config.server_name, signing_key, config.old_signing_keys, now_ms)
    if any(n["server_name"] == "matrix.org" for n in config.trusted_key_servers) \
            and not config.suppress_key_server_warning:
        logger.warning("This server trusts matrix.org to vouch for other servers' signing keys "
                       "(trusted_key_servers); set suppress_key_server_warning: true to silence this")
    client = FederationClient(
        reactor=reactor, threads=threads, server_name=config.server_name, signing_key=signing_key,
        tls_policy=ClientTlsPolicy(verify=config.federation_verify_certificates,
                                   ca_files=config.federation_custom_ca_list,
                                   minimum_version=config.federation_client_minimum_tls_version),
        ip_filter=(IpRangeFilter(config.ip_range_blacklist, config.ip_range_whitelist)
                   if config.federation_ip_range_blacklist is None
                   else IpRangeFilter(config.federation_ip_range_blacklist)),
        peers=peers, now_ms=now_ms)
    keyring = KeyRing(store=server_keys_storage.ServerKeyStore(db), own=server_keys, client=client,
                      trusted_key_servers=config.trusted_key_servers, now_ms=now_ms)
    queue = federation_queue_storage.FederationQueueStore(db)
    sender = FederationSender(reactor=reactor, store=queue, client=client, server_name=config.server_name,
                              peers=peers, now_ms=now_ms,
                              positions=StreamIdGenerator(queue.max_position_sync()),
                              transmits=config.worker_role.sends_federation_to,
                              on_queued=publisher.federation_queued if publisher is not None else None,
                              min_retry_ms=config.federation_destination_min_retry_interval,
                              retry_multiplier=config.federation_destination_retry_multiplier,
                              max_retry_ms=config.federation_destination_max_retry_interval)
    authenticator = FederationAuthenticator(
        server_name=config.server_name, keyring=keyring, peers=peers, now_ms=now_ms,
        on_origin=heard_from or sender.wake,  # the process that sends federation stops backing off from it
        on_refused=lambda origin, reason: audit.record("federation_refused", origin, None, origin, {"reason": reason}))
    return FederationTransport(server_keys, keyring, client, sender, authenticator, peers)


@dataclass
class _E2ee:
    device_lists: DeviceListService
    device_list_source: DeviceListSource
    remote_devices: RemoteDeviceLists
    e2e_keys: E2eKeysService
    to_device: ToDeviceService


def _build_e2ee(config, reactor, db, event_store, accounts_store, room_heads, notifier, transport,
                rejections, e2e_store, local_keys, federation, appservices, device_list_store,
                device_list_stream) -> _E2ee:
    """End-to-end encryption: device lists (local, and remote ones over federation), keys, to-device messages."""
    server_name = config.server_name
    inbox_store = device_inbox_storage.DeviceInboxStore(db)
    device_lists = DeviceListService(store=device_list_store, events=event_store, room_heads=room_heads,
                                     notifier=notifier, stream=device_list_stream, federation=federation,
                                     appservices=appservices)
    remote_devices = RemoteDeviceLists(
        server_name=server_name, client=transport.client, cache=e2e_keys_storage.RemoteDeviceCache(db),
        e2e_store=e2e_store, event_store=event_store, device_lists=device_lists, rejections=rejections)
    e2e_keys = E2eKeysService(store=e2e_store, keys=local_keys, accounts=accounts_store, device_lists=device_lists,
                              remote=remote_devices, server_name=server_name, clock=reactor, federation=federation)
    to_device = ToDeviceService(store=inbox_store, accounts=accounts_store, notifier=notifier,
                                server_name=server_name, stream=StreamIdGenerator(inbox_store.max_position_sync()),
                                federation=transport.sender, appservices=appservices)
    return _E2ee(device_lists, DeviceListSource(device_lists, e2e_keys), remote_devices, e2e_keys, to_device)


def _notify_room_events(notifier: Notifier, events) -> None:
    rooms = {e.room_id for e in events}
    users = {e.state_key for e in events if e.type == "m.room.member" and e.state_key}
    notifier.notify(users=users, rooms=rooms)


def listen(hs: HomeServer) -> list:
    """Start every configured http listener (``tls: true`` ones with the configured certificate), each
    serving only its ``resources``, then resume the federation queues."""
    role = hs.config.worker_role
    listeners = hs.config.worker_listeners if role.is_worker else hs.config.listeners
    ports = []
    contexts = [server_context(hs.config.tls_certificate_path, hs.config.tls_private_key_path)
                if listener.tls else None for listener in listeners]  # bad files refused before binding
    for listener, tls in zip(listeners, contexts):
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
    if hs.pubsub is not None:
        hs.pubsub.start_publishing()
    if hs.replication is not None:
        hs.pubsub.subscribe(hs.replication.on_message, hs.replication.on_connected)
    elif hs.pubsub is not None:  # the writer: it answers the workers' hellos
        hs.pubsub.subscribe(hs.replication_publisher.on_message, lambda: None)
    # Pushers, appservice transactions and media jobs run where the configuration says (main by default).
    if role.sends_appservices:
        hs.reactor.callWhenRunning(hs.appservice_sender.start)
    if role.sends_pushes:
        hs.reactor.callWhenRunning(lambda: defer.ensureDeferred(hs.pushers.start()))
    if role.is_worker:  # main runs the other background jobs (a federation sender resumes on subscribing)
        if role.media_jobs:
            hs.reactor.callWhenRunning(hs.background_jobs.start)  # media retention
        return ports
    hs.reactor.callWhenRunning(hs.traffic.start)
    hs.reactor.callWhenRunning(hs.background_jobs.start)  # retention purge jobs, media retention
    hs.reactor.callWhenRunning(hs.pdu_outbox.catch_up)
    hs.reactor.callWhenRunning(hs.federation.sender.resume)
    hs.reactor.callWhenRunning(lambda: defer.ensureDeferred(hs.delayed_events.start()))
    hs.reactor.callWhenRunning(lambda: defer.ensureDeferred(hs.guest_revocations.run(
        lambda room_id, user_id: hs.rooms.set_membership(room_id, user_id, user_id, "leave"))))
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
        try:  # a request stuck on an unreachable database must not hold the shutdown
            await hs.resource.wait_drained().addTimeout(DRAIN_TIMEOUT_S, hs.reactor)
        except defer.TimeoutError:
            logger.warning("Requests still in flight after %ss; stopping anyway", DRAIN_TIMEOUT_S)
    for tracker in _connection_trackers(hs.ports):
        try:  # let the answers just given reach their clients before the reactor stops
            await tracker.close_connections().addTimeout(1, hs.reactor)
        except defer.TimeoutError:
            tracker.abort_connections()
    hs.federation.sender.stop()
    hs.background_jobs.stop()
    hs.traffic.stop()
    await hs.federation.client.close()
    if hs.main_client is not None:
        await hs.main_client.close()
    await hs.appservice_sender.stop()
    await hs.pushers.stop()
    try:
        for service in (hs.push, hs.search, hs.user_directory, hs.pdu_outbox, hs.delayed_cancels):  # their listeners' writes
            await service.flush()
    except Exception:  # e.g. the database is gone: still close it, or its threads keep the process alive
        logger.exception("Writes pending at shutdown could not be stored")
    hs.close()
    logger.info("Shut down cleanly")


def _setup_logging(config) -> None:
    if config.log_config and os.path.exists(config.log_config):
        import logging.config

        import yaml
        with open(config.log_config) as f:
            logging.config.dictConfig(yaml.safe_load(f))


def run_server(config) -> int:
    """``hexagone run``: serve in the foreground until SIGTERM or SIGINT; SIGHUP reloads the configuration."""
    from twisted.internet import reactor

    _setup_logging(config)
    hs = build_server(config, reactor)
    try:
        listen(hs)
    except Exception:
        hs.close()
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
    # SIGHUP: read the configuration file again and apply what can change live (services/config_reload.py).
    signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(
        lambda: defer.ensureDeferred(hs.config_reload.reload_logged())))
    logger.info("Hexagone serving %s", config.server_name)
    reactor.run(installSignalHandlers=False)
    return 0
