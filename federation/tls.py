"""TLS for federation: the listener's certificate, and certificate checks on outbound connections.

Spec v1.19 server-server "TLS": the destination must present a certificate
signed by a trusted CA for the name we expect (SNI sent, except for IP
literals). Trust comes from the system's CAs, or from
``federation_custom_ca_list`` (which replaces them, as in Synapse);
``federation_verify_certificates: false`` turns checks off (test networks only).

TLS itself is Python's ``ssl`` module (the system's OpenSSL) over memory BIOs:
:class:`TlsConnection` sits between a Twisted TCP transport and the protocol it
carries, which sees an ordinary transport once the handshake is done.
"""

from __future__ import annotations

import ssl

from twisted.internet import defer, interfaces, protocol
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from zope.interface import implementer

from homeserver.config import ConfigError

MINIMUM_TLS = ssl.TLSVersion.TLSv1_2
# federation_client_minimum_tls_version
CLIENT_MINIMUM_TLS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
SERVER_HANDSHAKE_TIMEOUT_S = 30.0
_READ_SIZE = 64 * 1024


class TlsHandshakeTimeout(Exception):
    """The peer did not finish the TLS handshake in time."""


def _no_passphrase() -> bytes:
    # An encrypted key must fail to load, not prompt on the terminal (OpenSSL's default).
    return b""


def server_context(certificate_path: str, private_key_path: str) -> ssl.SSLContext:
    """The context of a ``tls: true`` listener: the first certificate of the file is ours, the
    following ones its chain. Unreadable or mismatched files are a ConfigError naming the key."""
    for path, key in ((certificate_path, "tls_certificate_path"), (private_key_path, "tls_private_key_path")):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise ConfigError(f"{key}: cannot read {path}: {e.strerror or e}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_TLS
    try:
        context.load_cert_chain(certificate_path, private_key_path, password=_no_passphrase)
    except ssl.SSLError as e:
        raise ConfigError(f"tls_certificate_path / tls_private_key_path: {certificate_path} and "
                          f"{private_key_path} are not a PEM certificate chain and its unencrypted "
                          f"private key: {e.reason or e}") from None
    context.set_alpn_protocols(["http/1.1"])  # we speak HTTP/1.1 only; a client offering only h2 gets no ALPN
    return context


class ClientTlsPolicy:
    """The context of outbound TLS connections, built on first use (loading CAs costs memory)."""

    def __init__(self, *, verify: bool = True, ca_files: list[str] = (), minimum_version: str = "1.2"):
        self._verify = verify
        self._minimum = CLIENT_MINIMUM_TLS[minimum_version]
        self._ca_files = list(ca_files)
        for path in self._ca_files:  # refuse a bad file at start, not at the first connection
            self._load_cas(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), path)
        self._context: ssl.SSLContext | None = None

    @staticmethod
    def _load_cas(context: ssl.SSLContext, path: str) -> None:
        try:
            context.load_verify_locations(cafile=path)
        except OSError as e:  # ssl.SSLError included
            raise ConfigError(f"federation_custom_ca_list: {path} holds no valid PEM certificate: "
                              f"{getattr(e, 'reason', None) or e.strerror or e}") from None

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificate and host name checked
            context.minimum_version = self._minimum
            if not self._verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif self._ca_files:
                for path in self._ca_files:
                    self._load_cas(context, path)
            else:
                context.load_default_certs()
            self._context = context
        return self._context


@implementer(interfaces.ISSLTransport)
class TlsConnection(protocol.Protocol):
    """One TLS connection carrying ``wrapped``, which is connected once the handshake succeeds and
    sees this object as its transport. ``secured`` fires then with ``wrapped``, or fails with why the
    handshake did not complete. Flow control (producers) passes through to the TCP transport:
    encryption is synchronous, so nothing is buffered here."""

    def __init__(self, wrapped: protocol.Protocol, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None, clock=None, handshake_timeout_s: float | None = None):
        self.wrapped = wrapped
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self._clock = clock
        self._handshake_timeout_s = handshake_timeout_s
        self._timer = None
        self._handshaken = False
        self._failure: Failure | None = None
        self._producer = None
        self._close_when_unregistered = False
        self.disconnecting = False
        self.secured = defer.Deferred(lambda _d: self.abortConnection())

    # -- from the TCP transport ---------------------------------------------------------------

    def connectionMade(self) -> None:
        if self._handshake_timeout_s is not None:
            self._timer = self._clock.callLater(self._handshake_timeout_s, self._fail,
                                                TlsHandshakeTimeout("TLS handshake timed out"))
        self._advance_handshake()

    def dataReceived(self, data: bytes) -> None:
        self._incoming.write(data)
        if not self._handshaken:
            self._advance_handshake()
        if self._handshaken:
            self._deliver()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        reason = self._failure or reason
        if self._handshaken:
            self.wrapped.connectionLost(reason)
        elif not self.secured.called:
            if reason.check(ConnectionLost) is None and self._failure is None:
                reason = Failure(ConnectionLost(f"connection closed during the TLS handshake: {reason.value}"))
            self.secured.errback(reason)

    def _advance_handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ValueError) as e:
            self._flush()  # the alert telling the peer why
            self._fail(e)
            return
        self._flush()
        self._handshaken = True
        if self._timer is not None:
            self._timer.cancel()
        self.wrapped.makeConnection(self)
        if not self.secured.called:
            self.secured.callback(self.wrapped)

    def _deliver(self) -> None:
        """Hand over every decrypted byte, until the wrapped protocol closes the connection."""
        while not self.disconnecting:
            try:
                data = self._tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer's close_notify: a clean close
                self.loseConnection()
                break
            except ssl.SSLError as e:
                self._fail(e)
                break
            if not data:
                break
            self.wrapped.dataReceived(data)
        self._flush()  # TLS 1.3 may answer records of its own (key updates)

    def _flush(self) -> None:
        if self._outgoing.pending:
            self.transport.write(self._outgoing.read())

    def _fail(self, error: Exception) -> None:
        if self._failure is None:
            self._failure = Failure(error)
        self.disconnecting = True
        self.transport.loseConnection()

    # -- the transport of the wrapped protocol ------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.disconnecting or not data:
            return
        try:
            self._tls.write(data)
        except ssl.SSLError as e:
            self._fail(e)
            return
        self._flush()

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Close after what was written, with a close_notify (once a registered producer is done)."""
        if self._producer is not None:
            self._close_when_unregistered = True
            return
        if self.disconnecting:
            return
        self.disconnecting = True
        if self._handshaken:
            try:
                self._tls.unwrap()
            except ssl.SSLError:  # SSLWantReadError: we do not wait for the peer's close_notify
                pass
            self._flush()
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.transport.abortConnection()

    def loseWriteConnection(self) -> None:
        self.loseConnection()

    def registerProducer(self, producer, streaming: bool) -> None:
        self._producer = producer
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._producer = None
        self.transport.unregisterProducer()
        if self._close_when_unregistered:
            self.loseConnection()

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.loseConnection()

    def getPeer(self):
        return self.transport.getPeer()

    def getHost(self):
        return self.transport.getHost()

    def getTcpNoDelay(self) -> bool:
        return self.transport.getTcpNoDelay()

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.transport.setTcpNoDelay(enabled)

    def getTcpKeepAlive(self) -> bool:
        return self.transport.getTcpKeepAlive()

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.transport.setTcpKeepAlive(enabled)

    def getPeerCertificate(self) -> bytes | None:
        """The peer's certificate (DER), if it sent one."""
        return self._tls.getpeercert(binary_form=True) if self._handshaken else None

    @property
    def negotiatedProtocol(self) -> bytes | None:
        """The ALPN protocol agreed on (twisted.web reads it to choose HTTP/1.1 or HTTP/2)."""
        selected = self._tls.selected_alpn_protocol() if self._handshaken else None
        return selected.encode("ascii") if selected else None


class TlsServerFactory(protocol.Factory):
    """Serves ``wrappedFactory``'s protocols over TLS; a handshake must end within the timeout."""

    def __init__(self, wrappedFactory: protocol.Factory, context: ssl.SSLContext, clock,
                 handshake_timeout_s: float = SERVER_HANDSHAKE_TIMEOUT_S):
        self.wrappedFactory = wrappedFactory
        self._context = context
        self._clock = clock
        self._handshake_timeout_s = handshake_timeout_s

    def doStart(self) -> None:
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()

    def buildProtocol(self, addr):
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        connection = TlsConnection(wrapped, self._context, server_side=True, clock=self._clock,
                                   handshake_timeout_s=self._handshake_timeout_s)
        connection.secured.addErrback(lambda _f: None)  # a client that failed its handshake: nothing to do
        return connection


class _TlsClientFactory(protocol.Factory):
    def __init__(self, wrappedFactory: protocol.Factory, context: ssl.SSLContext, server_hostname: str,
                 clock, handshake_timeout_s: float):
        self._wrapped = wrappedFactory
        self._context = context
        self._server_hostname = server_hostname
        self._clock = clock
        self._handshake_timeout_s = handshake_timeout_s

    def buildProtocol(self, addr):
        return TlsConnection(self._wrapped.buildProtocol(addr), self._context, server_side=False,
                             server_hostname=self._server_hostname, clock=self._clock,
                             handshake_timeout_s=self._handshake_timeout_s)


@implementer(interfaces.IStreamClientEndpoint)
class TlsClientEndpoint:
    """``tcp_endpoint`` with TLS on top: ``connect`` fires once the handshake, certificate check
    included, has succeeded, so a refused certificate is a failed connection."""

    def __init__(self, tcp_endpoint, context: ssl.SSLContext, server_hostname: str, clock,
                 handshake_timeout_s: float):
        self._tcp = tcp_endpoint
        self._factory_args = (context, server_hostname, clock, handshake_timeout_s)

    def connect(self, factory):
        connecting = self._tcp.connect(_TlsClientFactory(factory, *self._factory_args))
        return connecting.addCallback(lambda connection: connection.secured)
