"""The federation transport of one homeserver.

:class:`FederationTransport` holds keys, the outbound client, the sender and
the inbound request authenticator and the peers' terms, all built by the composition root
(``homeserver/server.py``). Its endpoints (key server, notary, version) are in
``federation/api/key_server.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.client import FederationClient
from federation.keys import KeyRing, ServerKeys
from federation.peers import FederationPeers
from federation.request_auth import FederationAuthenticator
from federation.sender import FederationSender


@dataclass
class FederationTransport:
    server_keys: ServerKeys
    keyring: KeyRing
    client: FederationClient
    sender: FederationSender
    authenticator: FederationAuthenticator
    peers: FederationPeers  # whom we federate with, on what terms (reloadable)
