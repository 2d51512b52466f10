"""A stand-in Oodrive server implementing ``contract.yaml`` (our assumed contract), for tests and
demonstrations: ``hexagone bridge oodrive standin --port P [--dir D]``.

Files are streamed to ``D/blobs`` (never held in memory); the state survives a restart. Test controls
(not part of the contract) act as an Oodrive user: ``POST /_standin/users``, ``POST
/_standin/folders/{id}/files?name=&user=`` (add a file or a new version), ``PATCH|DELETE
/_standin/files/{id}?user=``, ``PUT /_standin/limits``, plus the shared revoke and fault controls.
"""

from __future__ import annotations

import hashlib
import os
import time

from aiohttp import web

from bridges.standin import StandinState, build_standin, error

DEFAULT_MAX_FILE_SIZE = 2 * 1024 ** 3


class OodriveStandin:
    def __init__(self, directory: str, client_id: str, client_secret: str):
        self.state = StandinState(directory, {
            "max_file_size": DEFAULT_MAX_FILE_SIZE, "users": {}, "files": {}, "shares": {},
            "workspaces": {"w1": {"id": "w1", "name": "Agency"}},
            "teamspaces": {"t1": {"id": "t1", "workspace_id": "w1", "name": "Team", "roles": {}}},
            "folders": {"f0": {"id": "f0", "teamspace_id": "t1", "parent_id": None, "name": "Team", "path": "Team"}},
        })
        self.blobs = os.path.join(directory, "blobs")
        os.makedirs(self.blobs, exist_ok=True)
        self.client_id = client_id
        routes = [
            ("GET", "/v1/limits", self.limits), ("GET", "/v1/workspaces", self.workspaces),
            ("GET", "/v1/teamspaces", self.teamspaces),
            ("GET", "/v1/folders", self.folder_by_path), ("POST", "/v1/folders", self.create_folder),
            ("GET", "/v1/folders/{id}", self.folder), ("GET", "/v1/folders/{id}/files", self.list_files),
            ("POST", "/v1/folders/{id}/files", self.upload), ("GET", "/v1/files/{id}", self.file),
            ("PATCH", "/v1/files/{id}", self.rename), ("DELETE", "/v1/files/{id}", self.delete),
            ("GET", "/v1/files/{id}/versions/{version}/content", self.content),
            ("POST", "/v1/files/{id}/shares", self.share), ("GET", "/v1/users/{id}", self.user),
            ("POST", "/_standin/users", self.add_user), ("POST", "/_standin/folders/{id}/files", self.upload),
            ("PATCH", "/_standin/files/{id}", self.rename), ("DELETE", "/_standin/files/{id}", self.delete),
            ("PUT", "/_standin/limits", self.set_limits),
        ]
        self.app = build_standin(self.state, client_id, client_secret, routes)

    @property
    def doc(self) -> dict:
        return self.state.doc

    def actor(self, request: web.Request) -> dict:
        """The user an action is made by: the bridge's application, or (test controls) an Oodrive user."""
        if request.path.startswith("/_standin/"):
            user = self.doc["users"].get(request.query.get("user", ""))
            if user:
                return {"id": user["id"], "name": user["name"]}
        return {"id": f"app:{self.client_id}", "name": "Matrix bridge"}

    def live_file(self, file_id: str) -> dict | None:
        f = self.doc["files"].get(file_id)
        return f if f and not f["deleted"] else None

    # -- workspaces, teamspaces, folders ------------------------------------------------------
    async def limits(self, request: web.Request) -> web.Response:
        return web.json_response({"max_file_size": self.doc["max_file_size"]})

    async def workspaces(self, request: web.Request) -> web.Response:
        return web.json_response({"items": list(self.doc["workspaces"].values())})

    async def teamspaces(self, request: web.Request) -> web.Response:
        return web.json_response({"items": list(self.doc["teamspaces"].values())})

    async def folder(self, request: web.Request) -> web.Response:
        folder = self.doc["folders"].get(request.match_info["id"])
        return web.json_response(folder) if folder else error(404, "not_found", "no such folder")

    async def folder_by_path(self, request: web.Request) -> web.Response:
        path = request.query.get("path", "").strip("/")
        for folder in self.doc["folders"].values():
            if folder["path"] == path:
                return web.json_response(folder)
        return error(404, "not_found", f"no folder at {path!r}")

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        parent = self.doc["folders"].get(body.get("parent_id") or "f0")
        name = str(body.get("name", "")).strip().replace("/", "-")
        if parent is None or not name:
            return error(400, "bad_request", "a name and an existing parent_id")
        path = f"{parent['path']}/{name}"
        for folder in self.doc["folders"].values():
            if folder["path"] == path:
                return web.json_response(folder)  # idempotent: the same folder again
        folder = {"id": self.state.new_id("f"), "teamspace_id": parent["teamspace_id"], "parent_id": parent["id"],
                  "name": name, "path": path}
        self.doc["folders"][folder["id"]] = folder
        self.state.save()
        return web.json_response(folder, status=201)

    # -- files --------------------------------------------------------------------------------
    async def list_files(self, request: web.Request) -> web.Response:
        folder_id = request.match_info["id"]
        if folder_id not in self.doc["folders"]:
            return error(404, "not_found", "no such folder")
        items = [f for f in self.doc["files"].values() if f["folder_id"] == folder_id and not f["deleted"]]
        return web.json_response({"items": items})

    async def file(self, request: web.Request) -> web.Response:
        f = self.live_file(request.match_info["id"])
        return web.json_response(f) if f else error(404, "not_found", "no such file")

    async def upload(self, request: web.Request) -> web.Response:
        """A new file, or a new version of the folder's file of the same name; the body is streamed."""
        folder_id, name = request.match_info["id"], request.query.get("name", "").strip()
        if folder_id not in self.doc["folders"]:
            return error(404, "not_found", "no such folder")
        if not name or "/" in name:
            return error(400, "bad_request", "a file name without '/'")
        limit = self.doc["max_file_size"]
        if request.content_length is not None and request.content_length > limit:
            return error(413, "file_too_large", f"{request.content_length} bytes, the limit is {limit}")
        existing = next((f for f in self.doc["files"].values()
                         if f["folder_id"] == folder_id and f["name"] == name and not f["deleted"]), None)
        file_id = existing["id"] if existing else self.state.new_id("file")
        version = existing["version"] + 1 if existing else 1
        blob = os.path.join(self.blobs, f"{file_id}.v{version}")
        digest, size = hashlib.sha256(), 0
        with open(blob + ".part", "wb") as sink:
            async for chunk in request.content.iter_chunked(1 << 20):
                size += len(chunk)
                if size > limit:
                    sink.close()
                    os.unlink(blob + ".part")
                    return error(413, "file_too_large", f"over the limit of {limit} bytes")
                digest.update(chunk)
                sink.write(chunk)
        os.replace(blob + ".part", blob)
        record = {"id": file_id, "folder_id": folder_id, "name": name, "version": version, "size": size,
                  "mime_type": request.query.get("mime_type") or request.content_type or "application/octet-stream",
                  "sha256": digest.hexdigest(), "modified_by": self.actor(request),
                  "modified_at": int(time.time() * 1000), "deleted": False}
        self.doc["files"][file_id] = record
        self.state.emit("file.version_added" if existing else "file.added", folder_id=folder_id, file=dict(record),
                        actor=record["modified_by"])
        self.state.save()
        return web.json_response(record, status=201)

    async def rename(self, request: web.Request) -> web.Response:
        f = self.live_file(request.match_info["id"])
        name = str((await request.json()).get("name", "")).strip()
        if f is None:
            return error(404, "not_found", "no such file")
        if not name or "/" in name:
            return error(400, "bad_request", "a file name without '/'")
        old, f["name"] = f["name"], name
        self.state.emit("file.renamed", folder_id=f["folder_id"], file=dict(f), old_name=old,
                        actor=self.actor(request))
        self.state.save()
        return web.json_response(f)

    async def delete(self, request: web.Request) -> web.Response:
        f = self.live_file(request.match_info["id"])
        if f is None:
            return error(404, "not_found", "no such file")
        f["deleted"] = True
        self.state.emit("file.deleted", folder_id=f["folder_id"], file=dict(f), actor=self.actor(request))
        self.state.save()
        return web.Response(status=204)

    async def content(self, request: web.Request) -> web.StreamResponse:
        f = self.live_file(request.match_info["id"])
        version = request.match_info["version"]
        blob = os.path.join(self.blobs, f"{request.match_info['id']}.v{version}")
        if f is None or not version.isdigit() or not os.path.exists(blob):
            return error(404, "not_found", "no such file version")
        return web.FileResponse(blob, headers={"Content-Type": f["mime_type"]})

    async def share(self, request: web.Request) -> web.Response:
        f = self.live_file(request.match_info["id"])
        if f is None:
            return error(404, "not_found", "no such file")
        body = await request.json() if request.can_read_body else {}
        expires_in = body.get("expires_in_s")
        if expires_in is not None and (not isinstance(expires_in, int) or expires_in <= 0):
            return error(400, "bad_request", "expires_in_s: a positive number of seconds")
        share_id = self.state.new_id("s")
        share = {"id": share_id, "file_id": f["id"], "url": f"https://share.oodrive.invalid/s/{share_id}",
                 "expires_at": int(time.time() * 1000) + expires_in * 1000 if expires_in else None,
                 "password_protected": bool(body.get("password")), "watermark": bool(body.get("watermark"))}
        self.doc["shares"][share_id] = share
        self.state.save()
        return web.json_response(share, status=201)

    # -- users --------------------------------------------------------------------------------
    async def user(self, request: web.Request) -> web.Response:
        user = self.doc["users"].get(request.match_info["id"])
        return web.json_response(user) if user else error(404, "not_found", "no such user")

    async def add_user(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = {"id": self.state.new_id("u"), "name": body["name"], "email": body.get("email", "")}
        self.doc["users"][user["id"]] = user
        self.doc["teamspaces"]["t1"]["roles"][user["id"]] = body.get("role", "Member")
        self.state.save()
        return web.json_response(user, status=201)

    async def set_limits(self, request: web.Request) -> web.Response:
        self.doc["max_file_size"] = int((await request.json())["max_file_size"])
        self.state.save()
        return web.json_response({"max_file_size": self.doc["max_file_size"]})
