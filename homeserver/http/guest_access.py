"""Which client-server endpoints a guest account may call (spec v1.19 "Guest Access", "Client behaviour").

The spec's list, plus what Synapse also lets guests do so that a client keeps working (whoami, logout,
filters, capabilities, profile reads, typing and receipts, key changes, /join by alias, relations and
threads of the rooms they read, media). Any other endpoint that needs an access token answers a guest
403 ``M_GUEST_ACCESS_FORBIDDEN``; endpoints that need none (or take one optionally) serve guests as anyone.
"""

from __future__ import annotations

from homeserver.errors import MatrixError

# (method, path under the client prefix)
GUEST_ENDPOINTS = frozenset({
    # retrieving events
    ("GET", "/rooms/{roomId}/state"),
    ("GET", "/rooms/{roomId}/state/{eventType}"),
    ("GET", "/rooms/{roomId}/state/{eventType}/"),
    ("GET", "/rooms/{roomId}/state/{eventType}/{stateKey}"),
    ("GET", "/rooms/{roomId}/context/{eventId}"),
    ("GET", "/rooms/{roomId}/event/{eventId}"),
    ("GET", "/rooms/{roomId}/messages"),
    ("GET", "/rooms/{roomId}/members"),
    ("GET", "/rooms/{roomId}/joined_members"),
    ("GET", "/rooms/{roomId}/initialSync"),
    ("GET", "/rooms/{roomId}/relations/{eventId}"),
    ("GET", "/rooms/{roomId}/relations/{eventId}/{relType}"),
    ("GET", "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}"),
    ("GET", "/rooms/{roomId}/threads"),
    ("GET", "/sync"),
    ("GET", "/events"),
    ("GET", "/events/{eventId}"),
    # sending events
    ("POST", "/rooms/{roomId}/join"),
    ("POST", "/join/{roomIdOrAlias}"),
    ("POST", "/rooms/{roomId}/leave"),
    ("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}"),
    ("POST", "/rooms/{roomId}/send/{eventType}"),
    ("PUT", "/sendToDevice/{eventType}/{txnId}"),
    ("PUT", "/rooms/{roomId}/typing/{userId}"),
    ("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}"),
    ("POST", "/rooms/{roomId}/read_markers"),
    # their own account
    ("GET", "/account/whoami"),
    ("POST", "/logout"),
    ("POST", "/logout/all"),
    ("GET", "/profile/{userId}"),
    ("GET", "/profile/{userId}/{keyName}"),
    ("PUT", "/profile/{userId}/{keyName}"),
    ("GET", "/devices"),
    ("GET", "/devices/{deviceId}"),
    ("PUT", "/devices/{deviceId}"),
    ("POST", "/user/{userId}/filter"),
    ("GET", "/user/{userId}/filter/{filterId}"),
    ("GET", "/capabilities"),
    ("GET", "/pushrules/"),
    ("GET", "/voip/turnServer"),
    ("GET", "/presence/{userId}/status"),
    ("PUT", "/presence/{userId}/status"),
    # end-to-end encryption
    ("POST", "/keys/upload"),
    ("POST", "/keys/query"),
    ("POST", "/keys/claim"),
    ("GET", "/keys/changes"),
    # media (client-server "Content repository")
    ("GET", "/media/config"),
    ("GET", "/media/download/{serverName}/{mediaId}"),
    ("GET", "/media/download/{serverName}/{mediaId}/{fileName}"),
    ("GET", "/media/thumbnail/{serverName}/{mediaId}"),
    ("GET", "/media/preview_url"),
})

CLIENT_PATH_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0", "/_matrix/client/v1", "/_matrix/client/api/v1")


def client_path(template: str) -> str:
    """A route's template without its client-server version prefix."""
    for prefix in CLIENT_PATH_PREFIXES:
        if template.startswith(prefix + "/"):
            return template[len(prefix):]
    return template


def check_guest_may_call(method: str, template: str) -> None:
    """403 ``M_GUEST_ACCESS_FORBIDDEN`` unless a guest may call this route."""
    if (method, client_path(template)) not in GUEST_ENDPOINTS:
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed")
