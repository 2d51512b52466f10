"""Configuration reload without a restart (SIGHUP, or ``POST /_hexagone/admin/v1/reload``).

The file the server started from is read and checked again as at start; if it is wrong, nothing changes and
the reason is given. Only the keys that can change live are applied: ``federation_domain_whitelist`` and
``federation_peer_policy`` (through the ``apply`` callables the composition root gives). Every other change
waits for a restart.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

logger = logging.getLogger(__name__)

LIVE_KEYS = ("federation_domain_whitelist", "federation_peer_policy")


class ConfigReloader:
    def __init__(self, *, path: str, load: Callable[[str], Any], apply: list[Callable[[Any], None]],
                 on_reloaded: Callable[[str | None, dict], Awaitable[None]] | None = None):
        self._path = path
        self._load = load  # homeserver.config.load_config: raises ConfigError with the key and reason
        self._apply = apply
        self._on_reloaded = on_reloaded

    async def reload(self, actor: str | None = None) -> dict:
        """Read the file again and apply its live keys; returns them. Raises ConfigError (nothing applied)."""
        config = self._load(self._path)
        for apply in self._apply:
            apply(config)
        whitelist = config.federation_domain_whitelist
        applied = {"federation_domain_whitelist": None if whitelist is None else sorted(whitelist),
                   "federation_peer_policy": sorted(config.federation_peer_policy or {})}
        if self._on_reloaded is not None:
            await self._on_reloaded(actor, applied)
        logger.info("Configuration reloaded from %s by %s: federation_domain_whitelist=%s", self._path,
                    actor or "SIGHUP", applied["federation_domain_whitelist"])
        return applied

    async def reload_logged(self, actor: str | None = None) -> None:
        """:meth:`reload`, a refusal only logged (SIGHUP has no one to answer)."""
        try:
            await self.reload(actor)
        except Exception as e:
            logger.error("Configuration not reloaded, the running one stays: %s", e)
