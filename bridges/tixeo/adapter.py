"""The Tixeo adapter: what the bridge asks of Tixeo (``TixeoAPI``) and its implementation over
``contract.yaml`` (``HttpTixeo``). The contract is our assumption until Tixeo confirms it; a real
deployment whose API differs needs one class implementing ``TixeoAPI`` (checked by
``bridges/tixeo/conformance.py``).
"""

from __future__ import annotations

from typing import Protocol

from bridges.product import ProductAdapter, none_if_missing


class TixeoAPI(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_meeting(self, meeting: dict) -> dict: ...

    async def meeting(self, meeting_id: str) -> dict | None: ...

    async def active_meeting(self, external_ref: str) -> dict | None: ...

    async def end_meeting(self, meeting_id: str) -> dict: ...

    async def participants(self, meeting_id: str) -> list[dict]: ...

    async def events(self, after: str) -> tuple[list[dict], str]: ...


class HttpTixeo(ProductAdapter):
    """``TixeoAPI`` over the contract's HTTP API."""

    async def create_meeting(self, meeting: dict) -> dict:
        return await self.http.call("POST", "/v1/meetings", json=meeting)

    async def meeting(self, meeting_id: str) -> dict | None:
        return await none_if_missing(self.http.call("GET", f"/v1/meetings/{meeting_id}"))

    async def active_meeting(self, external_ref: str) -> dict | None:
        """The meeting created for ``external_ref`` (a room) that has not ended, if any."""
        page = await self.http.call("GET", "/v1/meetings", params={"external_ref": external_ref, "active": "true"})
        return page["items"][0] if page["items"] else None

    async def end_meeting(self, meeting_id: str) -> dict:
        return await self.http.call("POST", f"/v1/meetings/{meeting_id}/end")

    async def participants(self, meeting_id: str) -> list[dict]:
        return (await self.http.call("GET", f"/v1/meetings/{meeting_id}/participants"))["items"]
