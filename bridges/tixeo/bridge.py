"""The Tixeo bridge, at the signalling level (Tixeo's media stack is not WebRTC): a room's call is a
Tixeo meeting.

``!tixeo meet``, or the first MatrixRTC call member (``org.matrix.msc3401.call.member`` with a
non-empty content) in a room already linked, creates the room's meeting, or reuses it while it has not
ended, with the room's members as invitees and a security profile that follows the room. The join link
is posted as a notice and as a room widget (``im.vector.modular.widgets``); the activity feed's
participants joining and leaving become notices; when the meeting ends the widget is removed.
"""

from __future__ import annotations

import contextlib

from bridges.config import BridgeConfig
from bridges.connector import OutgoingMessage, RemoteChat, RemoteUser
from bridges.events import Command
from bridges.matrix import MatrixRequestError, q
from bridges.product import PolledConnector, adapter_from, ProductError, problem
from bridges.store import Portal
from bridges.tixeo.adapter import HttpTixeo, TixeoAPI

CALL_MEMBER = "org.matrix.msc3401.call.member"
WIDGETS = "im.vector.modular.widgets"
COMMANDS = {"meet": "create or reuse this room's Tixeo meeting; its link and widget are posted",
            "end": "end this room's Tixeo meeting"}


def security_profile(join_rule: str, guest_access: str) -> tuple[str, bool]:
    """(profile, guest web access) of a room's meeting: a room closed to outsiders (invite, restricted
    or knock, and no guest access) gets a restricted meeting without guest web access."""
    closed = join_rule in ("invite", "restricted", "knock", "knock_restricted", "private")
    if closed and guest_access != "can_join":
        return "restricted", False
    return "public", True


def widget_content(meeting: dict, bot: str) -> dict:
    """A room widget showing the meeting, as Element shows a Jitsi call (``im.vector.modular.widgets``)."""
    return {"type": "m.custom", "url": meeting["join_url"], "name": "Tixeo", "id": widget_key(meeting["id"]),
            "creatorUserId": bot, "waitForIframeLoad": True,
            "data": {"title": meeting["name"], "meetingId": meeting["id"], "joinUrl": meeting["join_url"]}}


def widget_key(meeting_id: str) -> str:
    return f"tixeo_{meeting_id}"


class TixeoConnector(PolledConnector):
    network_id = "tixeo"
    network_name = "Tixeo"
    commands = COMMANDS  # answered by command(), which needs the room
    api: TixeoAPI

    # -- Tixeo -> Matrix ----------------------------------------------------------------------
    async def on_item(self, item: dict) -> None:
        """One event of the feed."""
        portal = await self._core.store.portal_by_remote(item.get("meeting_id", ""))
        if portal is None:
            return  # a meeting of no room (or of a room's earlier meeting, replaced since)
        participant, key = item.get("participant") or {}, f"tixeo-event:{item['id']}"
        guest = " (guest)" if participant.get("guest") else ""
        if item["type"] == "participant.joined":
            await self._core.notice(portal.room_id, f"{participant.get('name')}{guest} joined the Tixeo meeting.", key)
        elif item["type"] == "participant.left":
            await self._core.notice(portal.room_id, f"{participant.get('name')}{guest} left the Tixeo meeting.", key)
        elif item["type"] == "meeting.ended":
            with contextlib.suppress(MatrixRequestError):  # the widget may be gone already
                await self._core.matrix.send_state(portal.room_id, WIDGETS, widget_key(portal.remote_id), {})
            await self._core.notice(portal.room_id, "The Tixeo meeting has ended.", key)

    # -- Matrix -> Tixeo ----------------------------------------------------------------------
    async def room_event(self, event: dict) -> bool:
        """A call member in a linked room starts its meeting; nothing else of a linked room goes to Tixeo
        (it has no chat)."""
        portal = await self._core.store.portal_by_room(event["room_id"])
        if event["type"] == CALL_MEMBER:
            if portal is not None and event.get("content") and isinstance(event.get("state_key"), str):
                try:
                    await self._meet(event["room_id"], event["sender"], None)
                except ProductError as e:
                    await self._core.notice(event["room_id"], f"No Tixeo meeting: {problem('Tixeo', e)}.",
                                            f"call-fail:{event['event_id']}")
            return True
        body = (event.get("content") or {}).get("body")  # another bridge's command is not for Tixeo either
        return portal is not None and not (isinstance(body, str) and body.split()[:1] == [self.config.command_prefix])

    async def command(self, room_id: str, event: dict, command: Command) -> str | None:
        try:
            if command.name == "meet":
                return await self._meet(room_id, event["sender"], event["event_id"])
            if command.name == "end":
                portal = await self._core.store.portal_by_room(room_id)
                if portal is None:
                    return "This room has no Tixeo meeting."
                await self.api.end_meeting(portal.remote_id)
                self._poller.poke()
                return "Ending the Tixeo meeting."
        except ProductError as e:
            return f"No Tixeo meeting: {problem('Tixeo', e)}."
        return None

    async def _meet(self, room_id: str, sender: str, reply_to: str | None) -> str:
        """The room's meeting, created when it has none that is still on; its link is posted once."""
        portal = await self._core.store.portal_by_room(room_id)
        current = await self.api.meeting(portal.remote_id) if portal else None
        if current is not None and current["status"] != "ended":
            if reply_to is None:
                return ""  # a call member while the meeting is on: the link is in the room already
            return f"The Tixeo meeting is on: {current['join_url']}"
        meeting = await self.api.active_meeting(room_id) or await self._create(room_id, sender)
        if portal is not None:
            await self._core.store.remove_portal(room_id)
        await self._core.store.add_portal(Portal(meeting["id"], room_id, meeting["name"], False))
        matrix = self._core.matrix
        await matrix.send_state(room_id, WIDGETS, widget_key(meeting["id"]), widget_content(meeting, self.config.bot_mxid))
        text = f"Tixeo meeting: {meeting['join_url']}"
        if not meeting["guest_web_access"]:
            text += " (restricted: no guest web access)"
        await self._core.notice(room_id, text, f"meet:{meeting['id']}")
        return "" if reply_to is None else f"The Tixeo meeting is ready ({meeting['security_profile']})."

    async def _create(self, room_id: str, sender: str) -> dict:
        matrix = self._core.matrix
        state = {}
        for event_type, field in (("m.room.join_rules", "join_rule"), ("m.room.guest_access", "guest_access"),
                                  ("m.room.name", "name")):
            with contextlib.suppress(MatrixRequestError):
                content = await matrix.request("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/{event_type}/")
                state[field] = content.get(field) if isinstance(content.get(field), str) else ""
        profile, guests = security_profile(state.get("join_rule", "invite"), state.get("guest_access", "forbidden"))
        members = [m for m in await matrix.joined_members(room_id) if not self.config.is_ours(m)]
        return await self.api.create_meeting({
            "name": state.get("name") or room_id, "organizer": sender, "invitees": members,
            "security_profile": profile, "guest_web_access": guests, "external_ref": room_id})

    # -- the Connector protocol: a meeting has no chat ----------------------------------------------
    async def chat_info(self, chat_id: str) -> RemoteChat | None:
        meeting = await self.api.meeting(chat_id)
        return RemoteChat(meeting["id"], meeting["name"], []) if meeting else None

    async def user_info(self, user_id: str) -> RemoteUser | None:
        return None  # participants are named in notices, not ghosts

    async def send_message(self, portal: Portal, message: OutgoingMessage) -> str:
        return f"matrix:{message.event_id}"  # never reached: room_event keeps the room's chat in Matrix

    async def edit_message(self, portal: Portal, remote_id: str, text: str) -> None:
        """Nothing: Tixeo meetings have no chat."""

    async def delete_message(self, portal: Portal, remote_id: str) -> None:
        """Nothing: Tixeo meetings have no chat."""

    async def react(self, portal: Portal, remote_id: str, key: str) -> None:
        """Nothing: Tixeo meetings have no chat."""


def make_connector(config: BridgeConfig) -> "TixeoConnector":
    return TixeoConnector(config, adapter_from(config, HttpTixeo))
