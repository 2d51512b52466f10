"""The CAS identity provider (``cas_config``, as Synapse's ``cas_config``), and the pure parts of the CAS
protocol (Apereo CAS Protocol 2.0/3.0: ``/login?service=``, then ``/proxyValidate?ticket=&service=``, whose
XML ``serviceResponse`` names the user and, with version 3, their attributes).

The service URL the CAS server sends users back to (with their ticket) is Synapse's:
``public_baseurl + _matrix/client/r0/login/cas/ticket``, its query holding ``redirectUrl`` (a login) or
``session`` (user-interactive auth); the same URL is given again when the ticket is validated.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlencode

CAS_IDP_ID = "cas"   # the identity provider's id (identity_providers, /login/sso/redirect/{idpId}, external ids)
TICKET_PATH = "_matrix/client/r0/login/cas/ticket"


class CasError(Exception):
    """A ticket that did not validate: ``error`` is a short code, ``description`` for the user."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass(frozen=True)
class CasResponse:
    username: str
    attributes: dict[str, list[str | None]] = field(default_factory=dict)


def _local(tag: str) -> str:
    """An XML tag without its namespace (``{http://www.yale.edu/tp/cas}user`` is ``user``)."""
    return tag.rsplit("}", 1)[-1]


def parse_cas_response(body: bytes) -> CasResponse:
    """A ``serviceResponse`` document: the user and attributes of ``authenticationSuccess``, else CasError.
    A document with a DTD is refused (no entity can be declared, so none can be expanded)."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise CasError("invalid_response", "The CAS server's response declares a DTD")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise CasError("invalid_response", "The CAS server's response is not XML") from None
    if _local(root.tag) != "serviceResponse" or len(root) == 0:
        raise CasError("missing_service_response", "The root of the CAS response is not serviceResponse")
    outcome = root[0]
    if _local(outcome.tag) != "authenticationSuccess":
        code = outcome.get("code") or "UNKNOWN"
        raise CasError("unsuccessful_response", f"The CAS server refused the ticket ({code})")
    user = None
    attributes: dict[str, list[str | None]] = {}
    for child in outcome:
        name = _local(child.tag)
        if name == "user":
            user = (child.text or "").strip() or None
        elif name == "attributes":
            for attribute in child:
                attributes.setdefault(_local(attribute.tag), []).append(attribute.text)
    if user is None:
        raise CasError("no_user", "The CAS response does not name a user")
    return CasResponse(user, attributes)


def missing_requirement(attributes: dict[str, list], required: dict[str, str | None]) -> str | None:
    """The first required attribute (``cas_config.required_attributes``) absent or without the required
    value, None when all are met (Synapse's rule: null requires only that the attribute be present)."""
    for name, value in required.items():
        if name not in attributes or (value is not None and value not in attributes[name]):
            return name
    return None


_NOT_LOCALPART = re.compile(rb"[^a-z0-9_\-./+]")


def username_to_localpart(username: str) -> str:
    """Synapse's ``map_username_to_mxid_localpart``: lower case, every other byte outside
    ``[a-z0-9_-./+]`` (``=`` included) as ``=xx``, and a leading ``_`` as ``=5f``."""
    escaped = _NOT_LOCALPART.sub(lambda m: b"=%02x" % m.group()[0], username.lower().encode("utf-8"))
    return re.sub(rb"^_", b"=5f", escaped).decode("ascii")


class CasProvider:
    """The CAS server of ``cas_config``: where to send users, and the validation of their tickets."""

    idp_id = CAS_IDP_ID

    def __init__(self, *, client, server_url: str, public_baseurl: str, protocol_version: int | None,
                 name: str, icon: str | None, brand: str | None, allow_numeric_ids: bool, numeric_ids_prefix: str):
        self._client = client   # federation/origin_client.py: requests to server_url only
        self._server_url = server_url
        self._service_url = public_baseurl + TICKET_PATH
        self._validate_path = "/p3/proxyValidate" if protocol_version == 3 else "/proxyValidate"
        self.name = name
        self.icon = icon
        self.brand = brand
        self._numeric_prefix = numeric_ids_prefix if allow_numeric_ids else None

    def describe(self) -> dict:
        """Its entry in ``identity_providers`` (spec "Login", ``m.login.sso``)."""
        entry = {"id": self.idp_id, "name": self.name}
        if self.icon is not None:
            entry["icon"] = self.icon
        if self.brand is not None:
            entry["brand"] = self.brand
        return entry

    def service_url(self, args: dict[str, str]) -> str:
        return f"{self._service_url}?{urlencode(args)}"

    def login_url(self, args: dict[str, str]) -> str:
        """The CAS server's login page, which sends the user back to our service URL with ``args``."""
        return f"{self._server_url}/login?{urlencode({'service': self.service_url(args)})}"

    async def validate(self, ticket: str, args: dict[str, str]) -> CasResponse:
        """The CAS server's verdict on ``ticket`` issued for our service URL with ``args``; CasError if refused
        or unreachable (the caller logs and shows it)."""
        try:
            body = await self._client.get(self._validate_path, {"ticket": ticket, "service": self.service_url(args)})
        except ConnectionError as e:   # federation/origin_client.py's OriginUnreachable
            raise CasError("server_error", f"The CAS server could not validate the ticket: {e}") from None
        response = parse_cas_response(body)
        if self._numeric_prefix is not None and response.username.isdigit():
            response = CasResponse(self._numeric_prefix + response.username, response.attributes)
        return response
