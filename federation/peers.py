"""Whom this server federates with, and on what terms, as the configuration says now.

``federation_domain_whitelist`` (Synapse's: None lets every server in, a list only those names, ``[]``
nobody) and ``federation_peer_policy`` (ours: per peer, may its users invite ours, join our rooms, and its own
``rc_federation``). One :class:`FederationPeers` is shared by the inbound authenticator, the outbound client
and sender, the federation endpoints and the federation rate limiter; a configuration reload (SIGHUP or the
admin API) replaces its terms at once for all of them, with no restart.
"""

from __future__ import annotations

from federation.policy import federation_allowed
from homeserver.config.values import FederationRateLimit, PeerPolicy

OPEN = PeerPolicy()


class FederationPeers:
    def __init__(self, whitelist: list[str] | None = None, policies: dict[str, PeerPolicy] | None = None):
        self.whitelist: frozenset[str] | None = None
        self.policies: dict[str, PeerPolicy] = {}
        self.update(whitelist, policies)

    def update(self, whitelist: list[str] | None, policies: dict[str, PeerPolicy] | None) -> None:
        """Replace the terms (a reload); requests already admitted finish under the old ones."""
        self.whitelist = None if whitelist is None else frozenset(whitelist)
        self.policies = dict(policies or {})

    def allows(self, server_name: str) -> bool:
        """May we exchange anything at all with ``server_name`` (either way)?"""
        return federation_allowed(self.whitelist, server_name)

    def policy(self, server_name: str) -> PeerPolicy:
        return self.policies.get(server_name) or self.policies.get("*") or OPEN

    def rc_federation(self, server_name: str, default: FederationRateLimit) -> FederationRateLimit:
        """The inbound limits of ``server_name``: its own if its policy gives some, else ``default``."""
        return self.policy(server_name).rc_federation or default
