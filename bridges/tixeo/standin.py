"""A stand-in Tixeo server implementing ``contract.yaml`` (our assumed contract), for tests and
demonstrations: ``hexagone bridge tixeo standin --port P [--dir D]``. It keeps meetings, invitees and
participants (no media: Tixeo's media stack is not bridged). Test controls (not part of the contract):
``POST /_standin/meetings/{id}/participants`` (someone joins; a guest is refused when the meeting has
no guest web access), ``DELETE /_standin/meetings/{id}/participants/{pid}``, ``POST
/_standin/meetings/{id}/end``, plus the shared revoke and fault controls.
"""

from __future__ import annotations

import time

from aiohttp import web

from bridges.standin import StandinState, build_standin, error

PROFILES = ("public", "restricted")


class TixeoStandin:
    def __init__(self, directory: str, client_id: str, client_secret: str):
        self.state = StandinState(directory, {"meetings": {}})
        routes = [
            ("POST", "/v1/meetings", self.create), ("GET", "/v1/meetings", self.find),
            ("GET", "/v1/meetings/{id}", self.get), ("POST", "/v1/meetings/{id}/end", self.end),
            ("GET", "/v1/meetings/{id}/participants", self.participants),
            ("POST", "/_standin/meetings/{id}/participants", self.join),
            ("DELETE", "/_standin/meetings/{id}/participants/{pid}", self.leave),
            ("POST", "/_standin/meetings/{id}/end", self.end),
        ]
        self.app = build_standin(self.state, client_id, client_secret, routes)

    @property
    def meetings(self) -> dict:
        return self.state.doc["meetings"]

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        profile, guests = body.get("security_profile", "public"), body.get("guest_web_access", True)
        if not isinstance(body.get("name"), str) or not body["name"]:
            return error(400, "bad_request", "name: required")
        if profile not in PROFILES:
            return error(400, "bad_request", f"security_profile: one of {PROFILES}")
        if profile == "restricted" and guests:
            return error(400, "bad_request", "a restricted meeting has no guest web access")
        invitees = body.get("invitees", [])
        if not isinstance(invitees, list) or not all(isinstance(i, str) for i in invitees):
            return error(400, "bad_request", "invitees: a list of strings")
        meeting_id = self.state.new_id("m")
        now = int(time.time() * 1000)
        meeting = {"id": meeting_id, "name": body["name"], "organizer": body.get("organizer", ""),
                   "invitees": invitees, "start": body.get("start", now), "end": body.get("end"),
                   "recurrence": body.get("recurrence"), "security_profile": profile,
                   "guest_web_access": bool(guests), "external_ref": body.get("external_ref", ""),
                   "status": "scheduled", "join_url": f"https://meet.tixeo.invalid/j/{meeting_id}",
                   "participants": {}}
        self.meetings[meeting_id] = meeting
        self.state.emit("meeting.created", meeting_id=meeting_id)
        self.state.save()
        return web.json_response(public(meeting), status=201)

    async def find(self, request: web.Request) -> web.Response:
        ref, active = request.query.get("external_ref"), request.query.get("active") == "true"
        items = [public(m) for m in self.meetings.values()
                 if (ref is None or m["external_ref"] == ref) and not (active and m["status"] == "ended")]
        return web.json_response({"items": items})

    async def get(self, request: web.Request) -> web.Response:
        meeting = self.meetings.get(request.match_info["id"])
        return web.json_response(public(meeting)) if meeting else error(404, "not_found", "no such meeting")

    async def participants(self, request: web.Request) -> web.Response:
        meeting = self.meetings.get(request.match_info["id"])
        if meeting is None:
            return error(404, "not_found", "no such meeting")
        return web.json_response({"items": list(meeting["participants"].values())})

    async def end(self, request: web.Request) -> web.Response:
        meeting = self.meetings.get(request.match_info["id"])
        if meeting is None:
            return error(404, "not_found", "no such meeting")
        if meeting["status"] != "ended":
            meeting["status"], meeting["participants"] = "ended", {}
            self.state.emit("meeting.ended", meeting_id=meeting["id"])
            self.state.save()
        return web.json_response(public(meeting))

    async def join(self, request: web.Request) -> web.Response:
        meeting = self.meetings.get(request.match_info["id"])
        body = await request.json()
        if meeting is None or meeting["status"] == "ended":
            return error(404, "not_found", "no such meeting, or it has ended")
        if body.get("guest") and not meeting["guest_web_access"]:
            return error(403, "guest_refused", "this meeting has no guest web access")
        participant = {"id": self.state.new_id("p"), "name": body["name"], "guest": bool(body.get("guest"))}
        meeting["participants"][participant["id"]] = participant
        if meeting["status"] == "scheduled":
            meeting["status"] = "started"
            self.state.emit("meeting.started", meeting_id=meeting["id"])
        self.state.emit("participant.joined", meeting_id=meeting["id"], participant=participant)
        self.state.save()
        return web.json_response(participant, status=201)

    async def leave(self, request: web.Request) -> web.Response:
        meeting = self.meetings.get(request.match_info["id"])
        participant = meeting and meeting["participants"].pop(request.match_info["pid"], None)
        if not participant:
            return error(404, "not_found", "no such participant")
        self.state.emit("participant.left", meeting_id=meeting["id"], participant=participant)
        self.state.save()
        return web.Response(status=204)


def public(meeting: dict) -> dict:
    """A meeting as the contract shows it (participants are listed apart)."""
    return {k: v for k, v in meeting.items() if k != "participants"}
