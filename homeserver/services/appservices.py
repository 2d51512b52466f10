"""Application services as the homeserver sees them (spec v1.19 application service API):
who holds an ``as_token`` and whom it may act as, exclusive namespaces, and the queries, pings and
third-party lookups the homeserver makes to them. Pushing events is
:mod:`homeserver.services.appservice_sender`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from federation.appservice_client import AppServiceClient, AppServiceUnreachable, quote_part
from homeserver.config.appservices import Registration
from homeserver.errors import MatrixError, forbidden
from homeserver.requester import Requester

logger = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 15.0
PROTOCOL_CACHE_S = 3600.0  # an appservice's protocol metadata is kept an hour, as Synapse does
THIRDPARTY_KINDS = {"user": "userid", "location": "alias"}  # kind -> the field each result must hold


def exclusive_error(what: str) -> MatrixError:
    return MatrixError(400, "M_EXCLUSIVE", f"This {what} is reserved by an application service")


class AppServices:
    """The registrations of ``app_service_config_files`` and the homeserver's requests to them."""

    def __init__(self, *, registrations: tuple[Registration, ...], client: AppServiceClient, accounts, clock):
        self.registrations = registrations
        self._client = client
        self._accounts = accounts
        self._clock = clock
        # (appservice id, protocol) -> (until, the metadata it answered): clients ask for the protocols
        # often (at every start), the appservices' answers seldom change.
        self._protocol_cache: dict[tuple[str, str], tuple[float, dict]] = {}
        self._by_token = {r.as_token: r for r in registrations}
        self._by_id = {r.id: r for r in registrations}

    def by_id(self, as_id: str | None) -> Registration | None:
        return self._by_id.get(as_id) if as_id is not None else None

    # -- acting as users (spec "Client-Server API Extensions") ------------------------------------
    async def authenticate(self, token: str, client_ip: str, user_id: str | None = None,
                           device_id: str | None = None) -> Requester | None:
        """None unless ``token`` is an as_token; then the requester it acts as: its sender, or with
        spec "Identity assertion" (``?user_id=``) a user of its namespace that it registered, and with MSC4326/MSC3202
        device masquerading (``?device_id=``) one of that user's devices."""
        registration = self._by_token.get(token)
        if registration is None:
            return None
        if not registration.allows_address(client_ip):
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token")  # Synapse's answer too
        requester = Requester(registration.sender, None, token, appservice_id=registration.id)
        if user_id is not None and user_id != registration.sender:
            if not registration.is_user_in_namespace(user_id) or \
                    user_id.rpartition(":")[2] != registration.sender.rpartition(":")[2]:
                raise forbidden("Application service cannot masquerade as this user")
            if not await self._accounts.user_exists(user_id):  # as Synapse: a ghost is registered first
                raise forbidden("Application service has not registered this user")
            requester = replace(requester, user_id=user_id)
        if device_id is not None:
            if await self._accounts.get_device(requester.user_id, device_id) is None:
                raise MatrixError(400, "M_UNKNOWN_DEVICE", "Application service cannot act as an unknown device")
            requester = replace(requester, device_id=device_id)
        return requester

    def check_user_id(self, user_id: str, appservice_id: str | None) -> None:
        """``M_EXCLUSIVE`` for a user id another appservice reserves (or, for an appservice, one outside
        its namespace: spec POST /register with m.login.application_service)."""
        if appservice_id is not None:
            if not self._by_id[appservice_id].is_user_in_namespace(user_id):
                raise exclusive_error("user ID is outside the application service's namespace and")
            return
        if any(r.is_exclusive_user(user_id) for r in self.registrations):
            raise exclusive_error("user ID")

    def check_alias(self, alias: str, user_id: str) -> None:
        """``M_EXCLUSIVE`` for an alias in an appservice's exclusive namespace, unless ``user_id`` acts for it."""
        for r in self.registrations:
            if r.is_exclusive_alias(alias) and not r.is_user_in_namespace(user_id):
                raise exclusive_error("room alias")

    # -- queries (spec "Querying") ------------------------------------------------------------------
    async def query_user(self, user_id: str) -> bool:
        """Spec GET /users/{userId}: whether an appservice whose namespace holds the user created it."""
        return await self._ask(Registration.is_user_in_namespace, user_id, "/users/")

    async def query_alias(self, alias: str) -> bool:
        """Spec GET /rooms/{roomAlias}: whether an appservice whose namespace holds the alias created it."""
        return await self._ask(Registration.is_alias_in_namespace, alias, "/rooms/")

    async def _ask(self, in_namespace, value: str, path: str) -> bool:
        for r in self.registrations:
            if r.url is not None and in_namespace(r, value) and await self._query(r, path + quote_part(value)):
                return True
        return False

    async def _query(self, registration: Registration, path: str) -> bool:
        try:
            response = await self._client.request(registration, "GET", path, timeout_s=QUERY_TIMEOUT_S)
        except AppServiceUnreachable as e:
            logger.warning("Query to application service %s failed: %s", registration.id, e)
            return False
        return response.ok

    # -- third-party networks (spec "Third-party networks") ------------------------------------------
    def _with_protocol(self, protocol: str) -> list[Registration]:
        return [r for r in self.registrations if r.url is not None and protocol in r.protocols]

    async def protocols(self) -> dict:
        """Spec GET /thirdparty/protocols: each protocol's metadata, from the first appservice that answers."""
        found: dict[str, dict] = {}
        for protocol in dict.fromkeys(p for r in self.registrations for p in r.protocols):
            info = await self.protocol(protocol)
            if info is not None:
                found[protocol] = info
        return found

    async def protocol(self, protocol: str) -> dict | None:
        """Spec GET /thirdparty/protocol/{protocol}: the instances of every appservice serving it merged (each
        instance with a ``network_id`` gets the ``instance_id`` that /publicRooms takes, ``<as id>|<network>``)."""
        merged: dict | None = None
        for r in self._with_protocol(protocol):
            info = await self._protocol_of(r, protocol)
            if info is None:
                continue
            instances = []
            for instance in info["instances"]:
                if isinstance(instance, dict) and isinstance(instance.get("network_id"), str):
                    instance = dict(instance, instance_id=f"{r.id}|{instance['network_id']}")
                instances.append(instance)
            if merged is None:
                merged = dict(info, instances=instances)
            else:
                merged["instances"].extend(instances)
        return merged

    async def _protocol_of(self, registration: Registration, protocol: str) -> dict | None:
        """One appservice's metadata of a protocol (application service API GET /thirdparty/protocol/{protocol}),
        kept ``PROTOCOL_CACHE_S`` once it answered well."""
        key, now = (registration.id, protocol), self._clock.seconds()
        cached = self._protocol_cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        info = await self._get_json(registration, "/thirdparty/protocol/" + quote_part(protocol), None)
        if not isinstance(info, dict) or not isinstance(info.get("instances"), list):
            return None
        self._protocol_cache[key] = (now + PROTOCOL_CACHE_S, info)
        return info

    async def thirdparty_lookup(self, kind: str, protocol: str | None, args: dict[str, list[str]]) -> list[dict]:
        """Spec GET /thirdparty/{location,user}[/{protocol}]: the results of every appservice asked."""
        required = THIRDPARTY_KINDS[kind]
        path = f"/thirdparty/{kind}" + ("/" + quote_part(protocol) if protocol is not None else "")
        targets = self._with_protocol(protocol) if protocol is not None else \
            [r for r in self.registrations if r.url is not None]
        results: list[dict] = []
        for r in targets:
            found = await self._get_json(r, path, args)
            if isinstance(found, list):
                results.extend(x for x in found if isinstance(x, dict) and isinstance(x.get(required), str)
                               and isinstance(x.get("protocol"), str) and isinstance(x.get("fields"), dict))
        return results

    async def _get_json(self, registration: Registration, path: str, args):
        try:
            response = await self._client.request(registration, "GET", path, args=args, timeout_s=QUERY_TIMEOUT_S)
        except AppServiceUnreachable as e:
            logger.warning("Third-party lookup at application service %s failed: %s", registration.id, e)
            return None
        return response.json if response.ok else None

    # -- ping (spec POST /_matrix/client/v1/appservice/{appserviceId}/ping) ------------------------
    async def ping(self, requester: Requester, as_id: str, transaction_id: str | None) -> dict:
        registration = self._by_id.get(as_id)
        if registration is None or requester.appservice_id != as_id:
            raise forbidden("The access token is not this application service's")
        if registration.url is None:
            raise MatrixError(400, "M_URL_NOT_SET", "The application service has no URL")
        body = {} if transaction_id is None else {"transaction_id": transaction_id}
        start = time.monotonic()
        try:
            response = await self._client.request(registration, "POST", "/ping", body, timeout_s=PING_TIMEOUT_S)
        except AppServiceUnreachable as e:
            if e.timed_out:
                raise MatrixError(504, "M_CONNECTION_TIMEOUT", "The application service did not answer in time")
            raise MatrixError(502, "M_CONNECTION_FAILED", "The application service could not be reached")
        if not response.ok:
            error = MatrixError(502, "M_BAD_STATUS", "The application service answered with an error")
            error.extra.update(status=response.status, body=response.body.decode("utf-8", "replace")[:1000])
            raise error
        if not isinstance(response.json, dict):
            raise MatrixError(502, "M_NOT_JSON", "The application service's answer is not JSON")
        return {"duration_ms": int((time.monotonic() - start) * 1000)}
