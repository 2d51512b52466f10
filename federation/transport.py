"""The federation transport assembled for one homeserver.

:func:`build_transport` wires keys, the outbound client, the sender and the
inbound request authenticator from the configuration. Its endpoints (key server,
notary, version) are in ``federation/api/key_server.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from federation.client import FederationClient
from federation.keys import KeyRing, ServerKeys, parse_old_signing_keys
from federation.policy import IpRangeFilter
from federation.request_auth import FederationAuthenticator
from federation.sender import FederationSender
from federation.tls import ClientTlsPolicy
from homeserver.storage.federation_queue import FederationQueueStore
from homeserver.storage.server_keys import ServerKeyStore
from homeserver.storage.streams import StreamIdGenerator

logger = logging.getLogger(__name__)


@dataclass
class FederationTransport:
    server_keys: ServerKeys
    keyring: KeyRing
    client: FederationClient
    sender: FederationSender
    authenticator: FederationAuthenticator


def build_transport(config, reactor, db, signing_key) -> FederationTransport:
    def now_ms() -> int:
        return int(reactor.seconds() * 1000)

    server_keys = ServerKeys(config.server_name, signing_key, parse_old_signing_keys(config.raw), now_ms)
    if any(n["server_name"] == "matrix.org" for n in config.trusted_key_servers) \
            and not config.suppress_key_server_warning:
        logger.warning("This server trusts matrix.org to vouch for other servers' signing keys "
                       "(trusted_key_servers); set suppress_key_server_warning: true to silence this")
    keyring = KeyRing(store=ServerKeyStore(db), own=server_keys, trusted_key_servers=config.trusted_key_servers,
                      now_ms=now_ms)
    client = FederationClient(
        reactor=reactor, server_name=config.server_name, signing_key=signing_key,
        tls_policy=ClientTlsPolicy(verify=config.federation_verify_certificates,
                                   ca_files=config.federation_custom_ca_list,
                                   minimum_version=config.federation_client_minimum_tls_version),
        ip_filter=(IpRangeFilter(config.ip_range_blacklist, config.ip_range_whitelist)
                   if config.federation_ip_range_blacklist is None
                   else IpRangeFilter(config.federation_ip_range_blacklist)),
        whitelist=config.federation_domain_whitelist, now_ms=now_ms)
    keyring.client = client
    queue = FederationQueueStore(db)
    sender = FederationSender(reactor=reactor, store=queue, client=client, server_name=config.server_name,
                              whitelist=config.federation_domain_whitelist, now_ms=now_ms,
                              positions=StreamIdGenerator(queue.max_position_sync()))
    authenticator = FederationAuthenticator(server_name=config.server_name, keyring=keyring,
                                            whitelist=config.federation_domain_whitelist, now_ms=now_ms,
                                            on_origin=sender.wake)
    return FederationTransport(server_keys, keyring, client, sender, authenticator)
