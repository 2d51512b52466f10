"""TLS for federation: the listener's certificate, and certificate checks on outbound connections.

Spec v1.19 server-server "TLS": the destination must present a certificate
signed by a trusted CA for the name we expect (SNI sent, except for IP
literals). Trust comes from the system's CAs, or from
``federation_custom_ca_list`` (which replaces them, as in Synapse);
``federation_verify_certificates: false`` turns checks off (test networks only).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from homeserver.config import ConfigError

MINIMUM_TLS = ssl.TLSVersion.TLSv1_2


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror or e}") from None


def _certificates(path: str, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(path, what))
    except ValueError as e:
        raise ConfigError(f"{what}: {path} holds no valid PEM certificate: {e}") from None


def server_context_factory(certificate_path: str, private_key_path: str) -> ssl.CertificateOptions:
    """The context factory of a ``tls: true`` listener: the first certificate of the file is
    ours, the following ones its chain."""
    chain = _certificates(certificate_path, "tls_certificate_path")
    try:
        key = serialization.load_pem_private_key(_read(private_key_path, "tls_private_key_path"), password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"tls_private_key_path: {private_key_path} is not an unencrypted PEM private key: "
                          f"{e}") from None
    # ALPN: we speak HTTP/1.1 (Twisted fails the handshake when a client offers ALPN and nothing matches).
    return ssl.CertificateOptions(privateKey=key, certificate=chain[0], extraCertChain=chain[1:],
                                  raiseMinimumTo=MINIMUM_TLS, acceptableProtocols=[b"http/1.1"])


class ClientTlsPolicy:
    """Connection creators for outbound TLS, one per certificate name (cached)."""

    def __init__(self, *, verify: bool = True, ca_files: list[str] = ()):
        self._verify = verify
        self._trust = None
        if ca_files:
            pems = [c.public_bytes(serialization.Encoding.PEM)
                    for path in ca_files for c in _certificates(path, "federation_custom_ca_list")]
            self._trust = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(pem) for pem in pems])
        self._creators: dict[str, IOpenSSLClientConnectionCreator] = {}
        self._unverified_options = ssl.CertificateOptions(verify=False, raiseMinimumTo=MINIMUM_TLS)

    def creator_for(self, tls_name: str) -> IOpenSSLClientConnectionCreator:
        creator = self._creators.get(tls_name)
        if creator is None:
            if len(self._creators) > 1000:
                self._creators.clear()
            if self._verify:
                creator = ssl.optionsForClientTLS(tls_name, trustRoot=self._trust,
                                                  extraCertificateOptions={"raiseMinimumTo": MINIMUM_TLS})
            else:
                creator = _UnverifiedCreator(tls_name, self._unverified_options)
            self._creators[tls_name] = creator
        return creator


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedCreator:
    """TLS without certificate checks (``federation_verify_certificates: false``); SNI still sent."""

    def __init__(self, tls_name: str, options: ssl.CertificateOptions):
        self._name = None if isIPAddress(tls_name) or isIPv6Address(tls_name) else tls_name.encode("idna")
        self._options = options

    def clientConnectionForTLS(self, tls_protocol) -> SSL.Connection:
        connection = self._options.clientConnectionForTLS(tls_protocol)
        if self._name is not None:
            connection.set_tlsext_host_name(self._name)
        return connection
