"""This homeserver as a client of identity servers (spec v1.19 identity service API v2).

Who may be asked: only the identity servers the admin trusts (``trusted_third_party_id_servers``; unset,
the host of ``default_identity_server``; neither set, none). A client naming any other gets 400
``M_SERVER_NOT_TRUSTED`` (Synapse's errcode for an identity server it will not talk to) before anything is
sent, so a user cannot make this server reach an arbitrary host. An entry ``host:port`` allows that port
only, a bare ``host`` any port of it. A ``key_validity_url`` (third-party invites) is fetched only when its
host is trusted too.

What is asked (as Synapse): lookups with ``/v2/hash_details`` then ``/v2/lookup`` (sha256 preferred, else
``none``), invites with ``/v2/store-invite``, binds with ``/v2/3pid/bind`` (the user's ``id_access_token``
as Bearer), unbinds with ``/v2/3pid/unbind`` signed by this server (X-Matrix), key checks with
``key_validity_url``. Errors an identity server answers are passed on to the client (status and errcode;
a 401, about the ``id_access_token``, becomes a 403); an identity server that cannot be reached is a 502.
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

from unpaddedbase64 import encode_base64

from federation.identity_client import IdentityServerUnreachable
from federation.policy import split_server_name
from homeserver.errors import MatrixError, forbidden
from homeserver.storage.identity import IdentityBindingStore

logger = logging.getLogger(__name__)

UNBIND_NOT_SUPPORTED = (400, 404, 501)  # as Synapse: the identity server does not support unbinding


def trusted_entries(trusted: list[str] | None, default_identity_server: str | None) -> list[tuple[str, int | None]]:
    """The admin's allow-list as (lower-case host, port or None): ``trusted_third_party_id_servers``, else the
    host of ``default_identity_server``."""
    if trusted is None:
        netloc = ""
        if default_identity_server:  # a URL (as Synapse), or a bare server name
            netloc = urlsplit(default_identity_server).netloc or default_identity_server.strip("/")
        trusted = [netloc] if netloc else []
    entries = []
    for name in trusted:
        host, port = split_server_name(name)
        entries.append((host.lower(), port))
    return entries


def is_trusted(entries: list[tuple[str, int | None]], id_server) -> bool:
    """``id_server`` (a server name, ``host[:port]``) is one the allow-list names."""
    try:
        host, port = split_server_name(id_server)
    except ValueError:
        return False
    host = host.lower()
    return any(host == h and (p is None or p == port) for h, p in entries)


def lookup_hash(medium: str, address: str, pepper: str) -> str:
    """Identity service API "Hashing": unpadded URL-safe base64 of sha256 of ``"<address> <medium> <pepper>"``."""
    digest = hashlib.sha256(f"{address} {medium} {pepper}".encode("utf-8")).digest()
    return encode_base64(digest, urlsafe=True)


def _not_trusted() -> MatrixError:
    return MatrixError(400, "M_SERVER_NOT_TRUSTED", "Untrusted ID server")


def _proxied(status: int, body, what: str) -> MatrixError:
    """An identity server's refusal, passed on (spec ``/account/3pid/bind``: "proxy any errors")."""
    if isinstance(body, dict) and isinstance(body.get("errcode"), str) and 400 <= status < 600:
        if status == 401:  # about the id_access_token, not the client's access token: never a 401 from us, which
            # a client would take for its own session ending (a 401 M_UNKNOWN_TOKEN logs it out)
            errcode = "M_FORBIDDEN" if body["errcode"] == "M_UNKNOWN_TOKEN" else body["errcode"]
            return MatrixError(403, errcode, f"{what}: the identity server refused the id_access_token")
        return MatrixError(status, body["errcode"], str(body.get("error", what)))
    return MatrixError(502, "M_UNKNOWN", f"{what}: the identity server answered {status}")


class IdentityService:
    def __init__(self, *, client, store: IdentityBindingStore, trusted: list[tuple[str, int | None]]):
        """``client``: ``federation.identity_client.IdentityServerClient``; ``trusted``: :func:`trusted_entries`."""
        self._client = client
        self._store = store
        self._trusted = trusted

    def check_trusted(self, id_server) -> str:
        if not isinstance(id_server, str) or not is_trusted(self._trusted, id_server):
            raise _not_trusted()
        return id_server

    async def _call(self, method: str, id_server: str, path: str, what: str, **kwargs) -> tuple[int, object]:
        try:
            return await self._client.request(method, id_server, path, **kwargs)
        except IdentityServerUnreachable as e:
            logger.info("%s at %s failed: %s", what, id_server, e)
            raise MatrixError(502, "M_UNKNOWN", f"{what}: could not reach the identity server") from None

    # -- lookups and invites ------------------------------------------------------------------
    async def lookup(self, id_server: str, id_access_token: str, medium: str, address: str) -> str | None:
        """The Matrix ID bound to the 3PID at ``id_server``, or None."""
        self.check_trusted(id_server)
        status, details = await self._call("GET", id_server, "/_matrix/identity/v2/hash_details", "Lookup",
                                           access_token=id_access_token)
        if status != 200:
            raise _proxied(status, details, "Lookup")
        algorithms = details.get("algorithms") if isinstance(details, dict) else None
        pepper = details.get("lookup_pepper") if isinstance(details, dict) else None
        if not isinstance(algorithms, list) or not isinstance(pepper, str):
            raise MatrixError(502, "M_UNKNOWN", "Lookup: the identity server's hash_details are malformed")
        if "sha256" in algorithms:
            algorithm, value = "sha256", lookup_hash(medium, address, pepper)
        elif "none" in algorithms:
            algorithm, value = "none", f"{address} {medium}"
        else:
            raise MatrixError(400, "M_UNKNOWN", "The identity server supports no lookup algorithm this server knows")
        status, answer = await self._call("POST", id_server, "/_matrix/identity/v2/lookup", "Lookup",
                                          access_token=id_access_token,
                                          body={"addresses": [value], "algorithm": algorithm, "pepper": pepper})
        if status != 200:
            raise _proxied(status, answer, "Lookup")
        mappings = answer.get("mappings") if isinstance(answer, dict) else None
        mxid = mappings.get(value) if isinstance(mappings, dict) else None
        return mxid if isinstance(mxid, str) and mxid.startswith("@") else None

    async def store_invite(self, id_server: str, id_access_token: str, invite: dict) -> dict:
        """``/v2/store-invite``: the content of the ``m.room.third_party_invite`` event to send (display name,
        public keys, the fallback ``public_key`` and its ``key_validity_url``) and its ``token``."""
        self.check_trusted(id_server)
        status, data = await self._call("POST", id_server, "/_matrix/identity/v2/store-invite", "Store invite",
                                        access_token=id_access_token, body=invite)
        if status != 200:
            raise _proxied(status, data, "Store invite")
        token = data.get("token") if isinstance(data, dict) else None
        display_name = data.get("display_name") if isinstance(data, dict) else None
        public_keys = data.get("public_keys", []) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or not isinstance(display_name, str) \
                or not isinstance(public_keys, list) \
                or not all(isinstance(k, dict) and isinstance(k.get("public_key"), str) for k in public_keys):
            raise MatrixError(502, "M_UNKNOWN", "Store invite: the identity server's answer is malformed")
        public_keys = [{k: v for k, v in key.items() if k in ("public_key", "key_validity_url")}
                       for key in public_keys]
        if isinstance(data.get("public_key"), str):  # as Synapse: the fallback key's validity URL is ours to name
            fallback = {"public_key": data["public_key"],
                        "key_validity_url": f"https://{id_server}/_matrix/identity/v2/pubkey/isvalid"}
        elif public_keys:
            fallback = public_keys[0]
        else:
            raise MatrixError(502, "M_UNKNOWN", "Store invite: the identity server gave no public key")
        content = {"display_name": display_name, "public_keys": public_keys or [fallback],
                   "public_key": fallback["public_key"]}
        if "key_validity_url" in fallback:
            content["key_validity_url"] = fallback["key_validity_url"]
        return {"token": token, "content": content}

    async def check_key_valid(self, key_validity_url, public_key: str) -> None:
        """Server-server "Third-party invites": the key that signed is still valid, per the identity server
        (403 otherwise, and when it cannot be asked)."""
        host = urlsplit(key_validity_url).netloc if isinstance(key_validity_url, str) else ""
        if not host or not is_trusted(self._trusted, host):
            raise forbidden("Third party certificate could not be checked: untrusted key_validity_url")
        try:
            status, body = await self._client.get_url(key_validity_url, {"public_key": public_key})
        except IdentityServerUnreachable as e:
            logger.info("key validity check at %s failed: %s", key_validity_url, e)
            raise forbidden("Third party certificate could not be checked") from None
        if status != 200:
            raise forbidden("Third party certificate could not be checked")
        if not isinstance(body, dict) or body.get("valid") is not True:
            raise forbidden("Third party certificate was invalid")

    # -- binds -------------------------------------------------------------------------------
    async def bind(self, user_id: str, id_server, id_access_token: str, sid: str, client_secret: str) -> None:
        """Spec ``POST /account/3pid/bind``; the bind is remembered for a later unbind."""
        self.check_trusted(id_server)
        status, data = await self._call("POST", id_server, "/_matrix/identity/v2/3pid/bind", "Bind",
                                        access_token=id_access_token,
                                        body={"sid": sid, "client_secret": client_secret, "mxid": user_id})
        if status != 200:
            raise _proxied(status, data, "Bind")
        medium = data.get("medium") if isinstance(data, dict) else None
        address = data.get("address") if isinstance(data, dict) else None
        if not isinstance(medium, str) or not isinstance(address, str):
            raise MatrixError(502, "M_UNKNOWN", "Bind: the identity server's answer is malformed")
        await self._store.add(user_id, medium, address, id_server)

    async def unbind(self, user_id: str, medium: str, address: str, id_server: str | None) -> bool:
        """Unbind from ``id_server``, or from every identity server it was bound on through this server.
        True when every one confirmed; False ("no-support") when none is known or one does not support it."""
        if id_server is not None:
            self.check_trusted(id_server)
            servers = [id_server]
        else:
            servers = [s for s in await self._store.id_servers(user_id, medium, address)
                       if is_trusted(self._trusted, s)]  # one the admin no longer trusts is not asked
        if not servers:
            return False
        done = True
        for server in servers:
            status, body = await self._call("POST", server, "/_matrix/identity/v2/3pid/unbind", "Unbind",
                                            signed=True,
                                            body={"mxid": user_id, "threepid": {"medium": medium, "address": address}})
            if status in UNBIND_NOT_SUPPORTED:
                logger.info("%s answered %d to the unbind of %s: not supported", server, status, user_id)
                done = False
            elif not 200 <= status < 300:
                raise MatrixError(502, "M_UNKNOWN", f"Unbind: the identity server answered {status}")
            await self._store.remove(user_id, medium, address, server)
        return done

    async def unbind_all(self, user_id: str, threepids: list[tuple[str, str]], id_server: str | None = None) -> bool:
        """Account deactivation: the account's 3PIDs and those it bound, unbound from ``id_server`` or
        everywhere they were bound through this server. True when every unbind was confirmed."""
        done = True
        for medium, address in dict.fromkeys(threepids + await self._store.bound(user_id)):
            done = await self.unbind(user_id, medium, address, id_server) and done
        return done
