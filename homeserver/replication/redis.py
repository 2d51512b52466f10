"""A small Redis client for pub/sub on Twisted (RESP2: https://redis.io/docs/latest/develop/reference/protocol-spec/).

Two connections, as Redis wants: one that only PUBLISHes (fire and forget, queued while
disconnected) and one SUBSCRIBEd to the channel, which hands each message to a callback.
Both reconnect with backoff; ``on_connected`` runs after each (re)subscription, since
messages published meanwhile were lost to this process.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable

from twisted.internet import protocol

logger = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # messages kept while the publishing connection is down


class RedisError(Exception):
    pass


def encode_command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def parse_reply(buf: bytes, start: int = 0):
    """One RESP2 reply from ``buf[start:]``: (value, next offset), or None while incomplete."""
    end = buf.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line, after = buf[start:start + 1], buf[start + 1:end], end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return RedisError(line.decode("utf-8", "replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, after
        if len(buf) < after + n + 2:
            return None
        return buf[after:after + n], after + n + 2
    if kind == b"*":
        n = int(line)
        items = []
        for _ in range(max(n, 0)):
            parsed = parse_reply(buf, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return (items if n >= 0 else None), after
    raise RedisError(f"unexpected reply type {kind!r}")


class _RespProtocol(protocol.Protocol):
    def __init__(self, on_reply: Callable, on_made: Callable):
        self._buf = b""
        self._on_reply = on_reply
        self._on_made = on_made

    def connectionMade(self):
        self._on_made(self)

    def dataReceived(self, data: bytes):
        self._buf += data
        offset = 0
        while True:
            parsed = parse_reply(self._buf, offset)
            if parsed is None:
                break
            reply, offset = parsed
            self._on_reply(reply)
        self._buf = self._buf[offset:]


class _Factory(protocol.ReconnectingClientFactory):
    maxDelay = 5

    def __init__(self, on_reply: Callable, on_made: Callable, on_lost: Callable):
        self._on_reply, self._on_made, self._on_lost = on_reply, on_made, on_lost

    def buildProtocol(self, addr):
        self.resetDelay()
        return _RespProtocol(self._on_reply, self._on_made)

    def clientConnectionLost(self, connector, reason):
        self._on_lost()
        super().clientConnectionLost(connector, reason)

    def clientConnectionFailed(self, connector, reason):
        logger.warning("Redis unreachable: %s", reason.getErrorMessage())
        super().clientConnectionFailed(connector, reason)


class RedisPubSub:
    """Publish to and receive from one channel."""

    def __init__(self, reactor, host: str, port: int, channel: str):
        self._reactor, self._host, self._port = reactor, host, port
        self._channel = channel.encode("utf-8")
        self._on_message: Callable[[bytes], None] = lambda payload: None
        self._on_connected: Callable[[], None] = lambda: None
        self._publisher: _RespProtocol | None = None
        self._queued: deque[bytes] = deque(maxlen=MAX_QUEUED)
        self._factories: list[_Factory] = []
        self._connectors: list = []

    def start_publishing(self) -> None:
        """Connect the publishing connection (messages published before are queued meanwhile)."""
        self._connect(_Factory(self._publisher_reply, self._publisher_made, self._publisher_lost))

    def subscribe(self, on_message: Callable[[bytes], None], on_connected: Callable[[], None]) -> None:
        """Receive the channel's messages; ``on_connected`` after each (re)subscription."""
        self._on_message, self._on_connected = on_message, on_connected
        self._connect(_Factory(self._subscriber_reply, self._subscriber_made, lambda: None))

    def _connect(self, factory: _Factory) -> None:
        self._factories.append(factory)
        self._connectors.append(self._reactor.connectTCP(self._host, self._port, factory))

    def stop(self) -> None:
        for factory, connector in zip(self._factories, self._connectors):
            factory.stopTrying()
            connector.disconnect()

    def publish(self, payload: bytes) -> None:
        command = encode_command(b"PUBLISH", self._channel, payload)
        if self._publisher is None:
            self._queued.append(command)
        else:
            self._publisher.transport.write(command)

    # -- connections ----------------------------------------------------------------------
    def _publisher_made(self, proto: _RespProtocol) -> None:
        self._publisher = proto
        while self._queued:
            proto.transport.write(self._queued.popleft())

    def _publisher_lost(self) -> None:
        self._publisher = None

    @staticmethod
    def _publisher_reply(reply) -> None:
        if isinstance(reply, RedisError):
            logger.error("Redis refused a PUBLISH: %s", reply)

    def _subscriber_made(self, proto: _RespProtocol) -> None:
        proto.transport.write(encode_command(b"SUBSCRIBE", self._channel))

    def _subscriber_reply(self, reply) -> None:
        if isinstance(reply, RedisError):
            logger.error("Redis refused SUBSCRIBE: %s", reply)
        elif isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            self._on_message(reply[2])
        elif isinstance(reply, list) and reply and reply[0] == b"subscribe":
            logger.info("Subscribed to Redis channel %s", self._channel.decode())
            self._on_connected()
