"""The bridge process's composition root: builds the store, the Matrix client, the core and the HTTP
listener around one connector, and runs them until cancelled."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from bridges.appservice import build_app
from bridges.config import BridgeConfig
from bridges.connector import Connector
from bridges.core import BridgeCore
from bridges.matrix import MatrixClient
from bridges.store import Store

logger = logging.getLogger(__name__)


async def run(config: BridgeConfig, connector: Connector) -> int:
    store = Store(config.database)
    await store.open()
    crypto = None
    if config.encryption:
        from bridges.crypto import BridgeCrypto  # the bridges-e2e extra, only when encryption is allowed
        crypto = BridgeCrypto(config.homeserver_url, config.as_token, config.bot_mxid, config.crypto_store)
    matrix = MatrixClient(config.homeserver_url, config.as_token, config.bot_mxid, crypto)
    await matrix.open()
    core = BridgeCore(config, store, matrix, connector)
    runner = web.AppRunner(build_app(config.hs_token, core), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.hostname, config.port)
    await site.start()  # listening before start(): the homeserver may already be retrying transactions
    logger.info("%s bridge listening on %s:%d", config.name, config.hostname, config.port)
    stopping = asyncio.Event()
    try:
        _on_signals(stopping.set)
        await core.start()
        _on_signals(stopping.set)  # again: a client library may have taken SIGTERM meanwhile (olvid-bot does)
        logger.info("%s bridge started", config.name)
        await stopping.wait()
        logger.info("%s bridge stopping", config.name)
    finally:
        await core.stop()
        await runner.cleanup()
        await matrix.close()
        await store.close()
    return 0


def _on_signals(callback) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)
