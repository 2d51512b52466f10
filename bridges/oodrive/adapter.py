"""The Oodrive adapter: what the bridge asks of Oodrive (``OodriveAPI``) and its implementation over
``contract.yaml`` (``HttpOodrive``). The contract is our assumption until Oodrive confirms it; a real
deployment whose API differs needs one class implementing ``OodriveAPI`` (and the conformance kit,
``bridges/oodrive/conformance.py``, run against it).
"""

from __future__ import annotations

from typing import AsyncIterator, Protocol
from urllib.parse import quote

from bridges.product import ProductAdapter, ProductError, file_chunks, none_if_missing


class OodriveAPI(Protocol):
    own_actor: str  # the actor id of the bridge's own changes in the activity feed

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def folder(self, id_or_path: str) -> dict | None: ...

    async def create_folder(self, name: str, parent_id: str | None) -> dict: ...

    async def files(self, folder_id: str) -> list[dict]: ...

    async def upload(self, folder_id: str, name: str, mime: str, size: int, path: str) -> dict: ...

    def download(self, file_id: str, version: int) -> AsyncIterator[bytes]: ...

    async def rename(self, file_id: str, name: str) -> dict: ...

    async def delete(self, file_id: str) -> None: ...

    async def share(self, file_id: str, expires_in_s: int | None, password: str | None,
                    watermark: bool) -> dict: ...

    async def user(self, user_id: str) -> dict | None: ...

    async def limits(self) -> dict: ...

    async def events(self, after: str) -> tuple[list[dict], str]: ...


class HttpOodrive(ProductAdapter):
    """``OodriveAPI`` over the contract's HTTP API."""

    def __init__(self, url: str, client_id: str, client_secret: str, timeout_s: float = 30.0):
        super().__init__(url, client_id, client_secret, timeout_s)
        self.own_actor = f"app:{client_id}"

    async def folder(self, id_or_path: str) -> dict | None:
        """By id, else by path (``Team/Projects``)."""
        found = None if "/" in id_or_path else await none_if_missing(
            self.http.call("GET", f"/v1/folders/{quote(id_or_path, safe='')}"))
        return found or await none_if_missing(self.http.call("GET", "/v1/folders", params={"path": id_or_path}))

    async def create_folder(self, name: str, parent_id: str | None) -> dict:
        return await self.http.call("POST", "/v1/folders", json={"name": name, "parent_id": parent_id})

    async def files(self, folder_id: str) -> list[dict]:
        return (await self.http.call("GET", f"/v1/folders/{folder_id}/files"))["items"]

    async def upload(self, folder_id: str, name: str, mime: str, size: int, path: str) -> dict:
        """Streams the spooled file; once more with a fresh stream when the token had expired."""
        for attempt in (0, 1):
            try:
                return await self.http.call("POST", f"/v1/folders/{folder_id}/files",
                                            params={"name": name, "mime_type": mime}, data=file_chunks(path),
                                            headers={"Content-Type": mime, "Content-Length": str(size)})
            except ProductError as e:
                if e.code != "invalid_token" or attempt:
                    raise
        raise AssertionError("unreachable")

    def download(self, file_id: str, version: int) -> AsyncIterator[bytes]:
        return self.http.stream(f"/v1/files/{file_id}/versions/{version}/content")

    async def rename(self, file_id: str, name: str) -> dict:
        return await self.http.call("PATCH", f"/v1/files/{file_id}", json={"name": name})

    async def delete(self, file_id: str) -> None:
        await self.http.call("DELETE", f"/v1/files/{file_id}")

    async def share(self, file_id: str, expires_in_s: int | None, password: str | None, watermark: bool) -> dict:
        body = {"expires_in_s": expires_in_s, "password": password, "watermark": watermark}
        return await self.http.call("POST", f"/v1/files/{file_id}/shares",
                                    json={k: v for k, v in body.items() if v is not None})

    async def user(self, user_id: str) -> dict | None:
        return await none_if_missing(self.http.call("GET", f"/v1/users/{user_id}"))

    async def limits(self) -> dict:
        return await self.http.call("GET", "/v1/limits")
