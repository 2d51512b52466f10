"""Signed federation requests: the ``Authorization: X-Matrix`` header.

Spec v1.19 server-server "Request Authentication": the method, target URI,
origin, destination and JSON body are wrapped in an object, signed as JSON
(appendices "Signing JSON") and the signature sent as
``X-Matrix origin="…",destination="…",key="…",sig="…"``.

Building, parsing and verifying are pure functions; :class:`FederationAuthenticator`
is the inbound check the HTTP layer runs for ``AUTH_SERVER`` routes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from nacl.exceptions import BadSignatureError
from unpaddedbase64 import decode_base64, encode_base64

from federation.keys import KeyLookupError
from federation.policy import split_server_name
from homeserver.errors import MatrixError
from homeserver.events.signing import signing_bytes

logger = logging.getLogger(__name__)

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:")


class AuthHeaderError(ValueError):
    """An X-Matrix header that is missing, garbled or does not verify."""


@dataclass(frozen=True)
class XMatrix:
    """The parameters of one X-Matrix Authorization header."""

    origin: str
    destination: str | None
    key_id: str
    signature: str


def request_json(method: str, uri: str, origin: str, destination: str, content: Any = None) -> dict:
    """The object that is signed (step 1); ``content`` is left out when there is no body."""
    obj = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(signing_key, origin: str, destination: str, method: str, uri: str, content: Any = None) -> str:
    """The ``Authorization`` header value for a request from ``origin`` (step 2)."""
    signature = signing_key.sign(signing_bytes(request_json(method, uri, origin, destination, content))).signature
    key_id = f"{getattr(signing_key, 'alg', 'ed25519')}:{signing_key.version}"
    return (f'X-Matrix origin="{_quote(origin)}",destination="{_quote(destination)}",'
            f'key="{_quote(key_id)}",sig="{encode_base64(signature)}"')


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def parse_x_matrix(header: str) -> XMatrix:
    """Parse an RFC 7235 ``X-Matrix`` credential: case-insensitive names, quoted (with
    backslash escapes) or bare values, bare values may contain colons; unknown names ignored."""
    if not isinstance(header, str):
        raise AuthHeaderError("no Authorization header")
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "x-matrix":  # RFC 7235: schemes are case-insensitive
        raise AuthHeaderError("Authorization scheme is not X-Matrix")
    params = _parse_params(rest)
    missing = [name for name in ("origin", "key", "sig") if not params.get(name)]
    if missing:
        raise AuthHeaderError(f"X-Matrix header lacks {', '.join(missing)}")
    try:
        split_server_name(params["origin"])
    except ValueError:
        raise AuthHeaderError("X-Matrix origin is not a valid server name") from None
    return XMatrix(origin=params["origin"], destination=params.get("destination"),
                   key_id=params["key"], signature=params["sig"])


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in " \t,":
            pos += 1
        if pos >= end:
            return params
        eq = text.find("=", pos)
        if eq == -1:
            raise AuthHeaderError("X-Matrix parameter without a value")
        name = text[pos:eq].strip().lower()
        if not name or any(c not in _TOKEN_CHARS for c in name):
            raise AuthHeaderError("garbled X-Matrix parameter name")
        value, pos = _parse_value(text, eq + 1)
        params.setdefault(name, value)
        while pos < end and text[pos] in " \t":
            pos += 1
        if pos < end and text[pos] != ",":
            raise AuthHeaderError("X-Matrix parameters must be separated by commas")


def _parse_value(text: str, pos: int) -> tuple[str, int]:
    end = len(text)
    if pos < end and text[pos] == '"':
        out = []
        pos += 1
        while pos < end:
            c = text[pos]
            if c == "\\" and pos + 1 < end:
                out.append(text[pos + 1])
                pos += 2
            elif c == '"':
                return "".join(out), pos + 1
            else:
                out.append(c)
                pos += 1
        raise AuthHeaderError("unterminated quoted X-Matrix value")
    start = pos
    while pos < end and text[pos] in _TOKEN_CHARS:
        pos += 1
    return text[start:pos], pos


def verify_request(auth: XMatrix, verify_key, method: str, uri: str, destination: str, content: Any = None) -> None:
    """Check the header's signature over the request with the origin's ``verify_key``."""
    try:
        signature = decode_base64(auth.signature)
    except Exception:
        raise AuthHeaderError("X-Matrix sig is not base64") from None
    signed = signing_bytes(request_json(method, uri, auth.origin, destination, content))
    try:
        verify_key.verify(signed, signature)
    except (BadSignatureError, ValueError):
        raise AuthHeaderError(f"signature by {auth.origin} ({auth.key_id}) does not verify") from None


def unauthorized(reason: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", reason)


class FederationAuthenticator:
    """``authenticate(req) -> origin`` for ``MatrixResource(authenticate_server=...)``.

    401 ``M_UNAUTHORIZED`` for a missing header (or not X-Matrix), another destination, an unknown key or a bad
    signature; 400 ``M_UNAUTHORIZED`` for a malformed X-Matrix header (its origin not a server name, say), as
    Synapse; 403 ``M_FORBIDDEN`` for an origin outside
    ``federation_domain_whitelist`` (after ``await on_refused(origin, reason)``). ``on_origin(origin)`` runs
    after each success (the sender uses it to retry a peer that was down).
    """

    def __init__(self, *, server_name: str, keyring, peers, now_ms: Callable[[], int],
                 on_origin: Callable[[str], None] | None = None,
                 on_refused: Callable[[str, str], Awaitable[None]] | None = None):
        self._server_name = server_name
        self._keyring = keyring
        self._peers = peers  # a federation.peers.FederationPeers
        self._now_ms = now_ms
        self.on_origin = on_origin
        self._on_refused = on_refused

    async def authenticate(self, req) -> str:
        header = req.headers.get("authorization")
        try:
            auth = parse_x_matrix(header)
        except AuthHeaderError as e:
            if isinstance(header, str) and header[:9].lower() == "x-matrix ":
                raise MatrixError(400, "M_UNAUTHORIZED", f"Malformed Authorization header: {e}") from None
            raise unauthorized(str(e)) from None
        if auth.destination is not None and auth.destination != self._server_name:
            raise unauthorized(f"request is for {auth.destination}, not {self._server_name}")
        if not self._peers.allows(auth.origin):
            if self._on_refused is not None:
                await self._on_refused(auth.origin, "not in federation_domain_whitelist")
            raise MatrixError(403, "M_FORBIDDEN", f"Federation denied with {auth.origin}")
        content = req.json() if req.body.strip() else None
        key = await self._lookup_key(auth)
        try:
            verify_request(auth, key, req.method, req.uri, self._server_name, content)
        except AuthHeaderError as e:
            raise unauthorized(str(e)) from None
        if self.on_origin is not None:
            self.on_origin(auth.origin)
        return auth.origin

    async def _lookup_key(self, auth: XMatrix):
        try:
            return await self._keyring.get_verify_key(auth.origin, auth.key_id, self._now_ms())
        except KeyLookupError as e:
            logger.info("Refusing request from %s: %s", auth.origin, e)
            raise unauthorized(f"unknown key {auth.key_id} for {auth.origin}") from None

