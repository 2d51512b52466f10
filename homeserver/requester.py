"""Who is making a client request: produced by the auth service, read by the API and the services.

A plain value with no HTTP in it, so that services can take it without importing the HTTP layer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Requester:
    """Who is making a client request."""

    user_id: str
    device_id: str | None
    access_token: str
    is_admin: bool = False
    appservice_id: str | None = None
    valid_until_ms: int | None = None   # the access token expires then (spec "Refreshing access tokens")
    is_guest: bool = False  # client-server "Guest Access"
