"""Remote media fetched from its origin server for our users (spec v1.19 server-server "Content repository").

First ``GET /_matrix/federation/v1/media/download/{mediaId}`` (X-Matrix signed, ``multipart/mixed``); only if
the origin says it does not know that endpoint (404/405 with ``M_UNRECOGNIZED`` or an empty body, 400
``M_UNRECOGNIZED``: Synapse's test for an unknown endpoint) the legacy ``GET /_matrix/media/v3/download``,
signed as well, as Synapse does. The bytes are streamed into the caller's spool, never past ``max_size``.
A file part given as a ``Location`` is fetched from there: https only, to addresses allowed by
``ip_range_blacklist`` as for federation, redirects followed the same way, unsigned.
"""

from __future__ import annotations

import email.message
from urllib.parse import quote

from federation.client import FederationClient, FederationDeniedError, FederationRequestError, HttpResponseError
from media_repo.filestore import Spool
from media_repo.multipart import MultipartError, MultipartReader
from media_repo.service import RemoteMediaError

FETCH_TIMEOUT_S = 600.0  # a whole large file; the origin's timeout_ms bounds the wait for its first byte


def _unknown_endpoint(e: HttpResponseError) -> bool:
    if e.status in (404, 405):
        return e.errcode == "M_UNRECOGNIZED" or not e.body or e.body == b"404 page not found"
    return e.status == 400 and e.errcode == "M_UNRECOGNIZED"


def _file_name(disposition: str | None) -> str | None:
    """The file name of a ``Content-Disposition`` (``filename*`` preferred), None without one."""
    if not disposition:
        return None
    message = email.message.Message()
    message["content-disposition"] = disposition
    name = message.get_filename()
    return name if isinstance(name, str) and name else None


class RemoteMediaClient:
    """Downloads remote media through the federation client (signing, discovery, IP ranges, allow-list)."""

    def __init__(self, client: FederationClient):
        self.client = client

    async def download(self, server_name: str, media_id: str, spool: Spool, max_size: int,
                       timeout_ms: int) -> tuple[str | None, str | None]:
        """Write the file into ``spool``; its (content type, file name). Raises :class:`RemoteMediaError`."""
        try:
            try:
                return await self._federation(server_name, media_id, spool, max_size, timeout_ms)
            except HttpResponseError as e:
                if not _unknown_endpoint(e):
                    raise
            return await self._legacy(server_name, media_id, spool, max_size, timeout_ms)
        except HttpResponseError as e:
            if e.status == 404:
                raise RemoteMediaError(404, "M_NOT_FOUND", "The remote server does not have this media")
            if e.status == 504 and e.errcode == "M_NOT_YET_UPLOADED":
                raise RemoteMediaError(504, "M_NOT_YET_UPLOADED", "The media has not been uploaded yet")
            raise RemoteMediaError(502, "M_UNKNOWN", f"The remote server answered {e.status}")
        except FederationDeniedError:
            raise RemoteMediaError(403, "M_FORBIDDEN", f"Federation with {server_name} is not allowed")
        except (FederationRequestError, MultipartError) as e:
            if spool.size > max_size:
                raise RemoteMediaError(502, "M_TOO_LARGE", "The remote media is over max_upload_size")
            raise RemoteMediaError(502, "M_UNKNOWN", f"Could not fetch the remote media: {e}")

    async def _federation(self, server_name: str, media_id: str, spool: Spool, max_size: int,
                          timeout_ms: int) -> tuple[str | None, str | None]:
        readers: list[MultipartReader] = []

        def sink_for(headers: dict[str, str]):
            readers.append(MultipartReader(headers.get("content-type"), spool.write))
            return readers[0].feed

        # the envelope adds the JSON part and headers: at most multipart.HEAD_LIMIT and the delimiters
        await self.client.get_stream(server_name, f"/_matrix/federation/v1/media/download/{quote(media_id)}",
                                     {"timeout_ms": str(timeout_ms)}, sink_for, limit=max_size + 66 * 1024,
                                     timeout_s=FETCH_TIMEOUT_S)
        reader = readers[0]
        reader.finish()
        headers = reader.headers
        if "location" in headers:  # the file is elsewhere (spec: the second part may be a Location)
            status, headers, data = await self.client.get_https(
                headers["location"], limit=max_size, timeout_s=FETCH_TIMEOUT_S, sink_for=lambda _h: spool.write)
            if not 200 <= status < 300:
                raise HttpResponseError(status, data[:200])
        if spool.size > max_size:
            raise MultipartError("over max_upload_size")
        return headers.get("content-type"), _file_name(headers.get("content-disposition"))

    async def _legacy(self, server_name: str, media_id: str, spool: Spool, max_size: int,
                      timeout_ms: int) -> tuple[str | None, str | None]:
        headers = await self.client.get_stream(
            server_name, f"/_matrix/media/v3/download/{quote(server_name)}/{quote(media_id)}",
            {"allow_remote": "false", "timeout_ms": str(timeout_ms)}, lambda _headers: spool.write,
            limit=max_size, timeout_s=FETCH_TIMEOUT_S)
        return headers.get("content-type"), _file_name(headers.get("content-disposition"))
