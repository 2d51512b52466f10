"""Asking other servers for information on behalf of local users: server-server "Querying for
information" (``/query/directory``, ``/query/profile``), the public room directory
(``POST /publicRooms``) and the space hierarchy (``GET /hierarchy``). The services call these; the raw
federation paths stay in this layer."""

from __future__ import annotations

import logging

from federation.client import HttpResponseError
from federation.paths import segment as quote
from homeserver.errors import MatrixError, not_found

logger = logging.getLogger(__name__)
MAX_HIERARCHY_SERVERS = 3  # servers of one child's ``via`` asked in turn (Synapse's MAX_SERVERS_PER_SPACE)


class RemoteQueries:
    def __init__(self, *, client):
        self._client = client

    async def room_alias(self, alias: str, server: str) -> dict:
        """Spec GET /query/directory: ``{"room_id", "servers"}``, or 404 M_NOT_FOUND on any failure."""
        try:
            result = await self._client.get_json(server, "/_matrix/federation/v1/query/directory",
                                                 {"room_alias": alias})
        except Exception:
            raise not_found(f"Room alias {alias} not found")
        if not isinstance(result.get("room_id"), str):
            raise not_found(f"Room alias {alias} not found")
        return {"room_id": result["room_id"], "servers": [s for s in result.get("servers", [])
                                                          if isinstance(s, str)] or [server]}

    async def profile(self, user_id: str) -> dict:
        """Spec GET /query/profile: the display name and avatar, or 404 M_NOT_FOUND on any failure."""
        try:
            result = await self._client.get_json(user_id.split(":", 1)[1], "/_matrix/federation/v1/query/profile",
                                                 {"user_id": user_id})
        except Exception:
            raise not_found("Profile not found")
        return {k: v for k, v in result.items() if k in ("displayname", "avatar_url") and isinstance(v, str)}

    async def public_rooms(self, server: str, limit: int | None, since: str | None, search: str | None,
                           requester_id: str) -> dict:
        """Another server's directory, through federation's POST /publicRooms (502 when it fails)."""
        body: dict = {}
        if limit is not None:
            body["limit"] = limit
        if since is not None:
            body["since"] = since
        if search:
            body["filter"] = {"generic_search_term": search}
        try:
            return await self._client.post_json(server, "/_matrix/federation/v1/publicRooms", body)
        except HttpResponseError as e:  # a Matrix server answered: its refusal is no secret
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered {e.status} {e.errcode or ''}".rstrip())
        except Exception as e:  # DNS, connection, TLS, blocked address: echoed, we would be a port scanner
            logger.info("publicRooms of %s for %s failed: %s", server, requester_id, e)
            raise MatrixError(502, "M_UNKNOWN", "Could not fetch that server's room directory")

    async def hierarchy(self, servers: list[str], room_id: str, suggested_only: bool) -> dict | None:
        """Server-server GET /hierarchy from the first of ``servers`` that answers with a well-formed result
        for ``room_id`` (``room``, ``children``, ``inaccessible_children``); None if none does."""
        for server in servers[:MAX_HIERARCHY_SERVERS]:
            try:
                result = await self._client.get_json(server, f"/_matrix/federation/v1/hierarchy/{quote(room_id)}",
                                                     {"suggested_only": "true" if suggested_only else "false"})
            except Exception as e:  # unreachable, refused, not allowed by federation_domain_whitelist
                logger.info("hierarchy of %s via %s failed: %s", room_id, server, e)
                continue
            room, children = result.get("room"), result.get("children", [])
            inaccessible = result.get("inaccessible_children", [])
            if not isinstance(room, dict) or room.get("room_id") != room_id or not isinstance(children, list) \
                    or not isinstance(inaccessible, list) or not isinstance(room.get("children_state", []), list):
                logger.info("hierarchy of %s via %s: malformed answer", room_id, server)
                continue
            return {"room": room, "children": [c for c in children if isinstance(c, dict)
                                               and isinstance(c.get("room_id"), str)],
                    "inaccessible_children": [r for r in inaccessible if isinstance(r, str)]}
        return None

    async def exchange_third_party_invite(self, destinations: list[str], room_id: str, event: dict) -> None:
        """Server-server ``PUT /exchange_third_party_invite/{roomId}`` to the first of ``destinations`` that
        accepts it. A refusal a server answered is passed on (403 for a bad signature); none reachable: 502."""
        refusal: MatrixError | None = None
        for server in destinations:
            try:
                await self._client.put_json(server, f"/_matrix/federation/v1/exchange_third_party_invite/"
                                                    f"{quote(room_id)}", event)
                return
            except HttpResponseError as e:
                logger.info("exchange_third_party_invite of %s at %s: %s", room_id, server, e)
                if e.errcode is not None and 400 <= e.status < 500:
                    refusal = MatrixError(e.status, e.errcode, f"{server} refused the invite")
            except Exception as e:  # unreachable, refused by federation_domain_whitelist
                logger.info("exchange_third_party_invite of %s at %s failed: %s", room_id, server, e)
        raise refusal or MatrixError(502, "M_UNKNOWN", "Failed to forward third party invite")
