"""The Oodrive bridge: a room linked to a teamspace folder (``!oodrive link <folder>``).

Matrix -> Oodrive: a file posted in the room (``m.file``, ``m.image`` ...) is streamed from the media
repository (whose antivirus verdict applies: an infected file fails to download, and the core posts a
notice) to a spool file, then to the folder; a file of the same name becomes its new version.
Oodrive -> Matrix: the activity feed, polled from a stored cursor: a file added appears from the ghost
of who added it, a new version as a reply to the previous one, a deletion or a rename as a notice.
Text messages stay in Matrix.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from functools import partial

from bridges.config import BridgeConfig, allows
from bridges.connector import DeliveryError, IncomingFile, OutgoingMessage, RemoteChat, RemoteUser
from bridges.events import FILE_MSGTYPES, Command
from bridges.matrix import MatrixRequestError, q
from bridges.oodrive.adapter import HttpOodrive, OodriveAPI
from bridges.product import PolledConnector, adapter_from, ProductError, problem
from bridges.store import Portal

DECRYPT_SETTING = "oodrive.decrypt:"  # + room id: "1" when the room's admins allowed decryption
E2EE_NOTICE = "oodrive.e2ee-notice:"  # + room id: an undecryptable event was explained once
REFUSED_ENCRYPTED = ("this room is encrypted and its admins have not allowed the bridge to decrypt the files it "
                     "stores (a room admin can: !oodrive decrypt on)")
TEAM_JOIN_WAIT_S = 15.0
DURATION = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
USAGE_TEAM = "Usage: !hexagone team <name> [--olvid <Olvid discussion id>]"
USAGE_SHARE = "Usage: !oodrive share <file> [--expires 7d] [--password [secret]] [--watermark]"


def version_key(file_id: str, version: int) -> str:
    """The remote id of one version of a file (what the mapping store keeps)."""
    return f"{file_id}:v{version}"


def may_send_state(state: list[dict], user_id: str) -> bool:
    """Whether ``user_id`` may send state events, from a room's state events (spec: m.room.power_levels;
    room version 12: the creator and ``additional_creators`` have unlimited power)."""
    by_type = {e.get("type"): e for e in state if isinstance(e, dict) and e.get("state_key") == ""}
    create = by_type.get("m.room.create", {})
    content = create.get("content") or {}
    if content.get("room_version") == "12" and (
            user_id == create.get("sender") or user_id in (content.get("additional_creators") or [])):
        return True
    levels = (by_type.get("m.room.power_levels") or {}).get("content") or {}
    users = levels.get("users") if isinstance(levels.get("users"), dict) else {}
    return users.get(user_id, levels.get("users_default", 0)) >= levels.get("state_default", 50)


def parse_duration(text: str) -> int | None:
    """``7d``, ``12h``, ``30m`` ... in seconds; None when it is not one."""
    match = DURATION.match(text.strip().lower())
    return int(match.group(1)) * UNITS[match.group(2)] if match and int(match.group(1)) > 0 else None


def parse_share_args(args: list[str]) -> tuple[str, int | None, str | None, bool] | str:
    """``share`` arguments -> (file, expiry in seconds, password, watermark), or the error to show.
    ``--password`` alone asks for a generated password."""
    name, expires, password, watermark = [], None, None, False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--expires":
            if index + 1 >= len(args) or (expires := parse_duration(args[index + 1])) is None:
                return "--expires takes a duration such as 7d, 12h or 30m"
            index += 1
        elif arg == "--password":
            if index + 1 < len(args) and not args[index + 1].startswith("--"):
                password = args[index + 1]
                index += 1
            else:
                password = ""
        elif arg == "--watermark":
            watermark = True
        elif arg.startswith("--"):
            return f"unknown option {arg}. {USAGE_SHARE}"
        else:
            name.append(arg)
        index += 1
    if not name:
        return USAGE_SHARE
    return " ".join(name), expires, password, watermark


def parse_team_args(args: list[str]) -> tuple[str, str | None] | str:
    """``team`` arguments -> (room name, Olvid discussion id or None), or the usage to show."""
    olvid = None
    if "--olvid" in args:
        at = args.index("--olvid")
        if at + 2 != len(args):
            return USAGE_TEAM
        args, olvid = args[:at], args[at + 1]
    name = " ".join(args).strip()
    return (name, olvid) if name else USAGE_TEAM


def make_connector(config: BridgeConfig) -> "OodriveConnector":
    return OodriveConnector(config, adapter_from(config, HttpOodrive))


class OodriveConnector(PolledConnector):
    network_id = "oodrive"
    network_name = "Oodrive"
    commands = {  # answered by command(), which needs the room
        "link": "link <folder path or id>: store this room's files in an Oodrive folder",
        "share": "share <file> [--expires 7d] [--password [secret]] [--watermark]: a share link",
        "decrypt": "decrypt on|off: may the bridge decrypt this encrypted room's files (room admins)",
        "team": "team <name> [--olvid <discussion id>] (or !hexagone team ...): an encrypted room with its folder, "
                "meeting and Olvid discussion",
    }

    def __init__(self, config: BridgeConfig, api: OodriveAPI):
        super().__init__(config, api)
        self._team_parent = str(config.network.get("team_parent_folder", ""))
        self._tixeo_bot = str(config.network.get("team_tixeo_bot", ""))
        self._olvid_bot = str(config.network.get("team_olvid_bot", ""))

    # -- Oodrive -> Matrix --------------------------------------------------------------------
    async def on_item(self, item: dict) -> None:
        """One activity of the feed."""
        actor, f, kind = item.get("actor") or {}, item.get("file") or {}, item.get("type")
        if actor.get("id") == self.api.own_actor:
            return  # the bridge's own upload, already in the room
        portal = await self._core.portal_for(item.get("folder_id", ""), create=False)
        if portal is None:
            return  # a folder no room is linked to
        who = actor.get("name") or actor.get("id") or "Someone"
        if kind in ("file.added", "file.version_added"):
            version = int(f["version"])
            previous = None
            for earlier in range(version - 1, 0, -1):
                if await self._core.is_bridged(version_key(f["id"], earlier)):
                    previous = version_key(f["id"], earlier)
                    break
            incoming = IncomingFile(f["name"], f.get("mime_type") or "application/octet-stream", int(f["size"]),
                                    partial(self.api.download, f["id"], version))
            await self._core.remote_message(portal.remote_id, version_key(f["id"], version), actor.get("id"), "",
                                            int(item.get("at", 0)) or None, reply_to=previous, files=[incoming])
        elif kind == "file.deleted":
            await self._core.notice(portal.room_id, f"{who} deleted {f.get('name')} from the Oodrive folder.",
                                    f"oodrive-activity:{item['id']}")
        elif kind == "file.renamed":
            await self._core.notice(portal.room_id, f"{who} renamed {item.get('old_name')} to {f.get('name')} "
                                                    "in the Oodrive folder.", f"oodrive-activity:{item['id']}")

    # -- what the core asks -------------------------------------------------------------------
    async def chat_info(self, chat_id: str) -> RemoteChat | None:
        folder = await self.api.folder(chat_id)
        return RemoteChat(folder["id"], folder.get("path") or folder["name"], []) if folder else None

    async def user_info(self, user_id: str) -> RemoteUser | None:
        if user_id.startswith("app:"):
            return None
        user = await self.api.user(user_id)
        return RemoteUser(user["id"], user["name"]) if user else None

    async def send_message(self, portal: Portal, message: OutgoingMessage) -> str:
        if message.file is None:
            return f"text:{message.event_id}"  # never reached: room_event keeps text in Matrix
        f = message.file
        try:
            stored = await self.api.upload(portal.remote_id, f.filename, f.mime, f.size, f.path)
        except ProductError as e:
            raise DeliveryError(problem("Oodrive", e), permanent=not e.transient,
                                reason="m_event_too_large" if e.status == 413 else "m_foreign_network_error") from None
        return version_key(stored["id"], int(stored["version"]))

    async def edit_message(self, portal: Portal, remote_id: str, text: str) -> None:
        """Nothing: a caption edit does not change a document."""

    async def delete_message(self, portal: Portal, remote_id: str) -> None:
        """Nothing: removing a message from the room keeps the document in Oodrive (its records)."""

    async def react(self, portal: Portal, remote_id: str, key: str) -> None:
        """Nothing: Oodrive documents carry no reactions."""

    # -- events and commands of its own ---------------------------------------------------------
    async def room_event(self, event: dict) -> bool:
        """Keep text in Matrix; explain why files of an encrypted room are not stored; ``!hexagone team``."""
        content = event.get("content") if isinstance(event.get("content"), dict) else {}
        body = content.get("body") if isinstance(content.get("body"), str) else ""
        if event["type"] == "m.room.message" and body.split()[:2] == ["!hexagone", "team"]:
            if allows(self.config.permissions, event["sender"], "user"):
                answer = await self._team(event["room_id"], event["sender"], body.split()[2:])
                await self._core.notice(event["room_id"], answer, f"reply:{event['event_id']}", event["event_id"])
            return True
        portal = await self._core.store.portal_by_room(event["room_id"])
        if portal is None:
            return False
        if event["type"] == "m.room.encrypted":
            await self._undecryptable(portal.room_id)
            return True
        if event.get("decrypted") and content.get("msgtype") in FILE_MSGTYPES and \
                await self._core.store.cursor(DECRYPT_SETTING + portal.room_id) != "1":
            await self._core.refuse(portal.room_id, event["event_id"], REFUSED_ENCRYPTED)
            return True
        return event["type"] == "m.room.message" and content.get("msgtype") not in FILE_MSGTYPES \
            and not body.startswith("!")

    async def _undecryptable(self, room_id: str) -> None:
        """An encrypted event the bridge could not decrypt: said once per room."""
        flag = f"{E2EE_NOTICE}{room_id}"
        if await self._core.store.cursor(flag):
            return
        if self._core.matrix.encryption is None:
            text = ("This room is encrypted and this bridge runs without an encryption device (bridge.encryption.allow "
                    "is off, or the homeserver refused it): files posted here are not stored in Oodrive.")
        else:
            text = ("The bridge could not decrypt a message of this room (its device did not get the room key): "
                    "files posted so are not stored in Oodrive.")
        await self._core.notice(room_id, text, flag)
        await self._core.store.set_cursor(flag, "1")

    async def command(self, room_id: str, event: dict, command: Command) -> str | None:
        name, args = command.name, command.args
        try:
            if name == "link":
                return await self._link(room_id, args)
            if name == "share":
                return await self._share(room_id, args)
            if name == "decrypt":
                return await self._decrypt_setting(room_id, event["sender"], args)
            if name == "team" or name == "!hexagone" and args[:1] == ["team"]:
                return await self._team(room_id, event["sender"], args[1:] if name == "!hexagone" else args)
        except ProductError as e:
            return problem("Oodrive", e) + "."
        return None

    async def _link(self, room_id: str, args: list[str]) -> str:
        if len(args) != 1:
            return "Usage: !oodrive link <folder path or id>"
        folder = await self.api.folder(args[0])
        if folder is None:
            return f"No Oodrive folder {args[0]!r} (give its path, e.g. Team/Projects, or its id)."
        return await self._core.link(room_id, folder["id"])

    async def _share(self, room_id: str, args: list[str]) -> str:
        portal = await self._core.store.portal_by_room(room_id)
        if portal is None:
            return "This room is not linked to an Oodrive folder: !oodrive link <folder> first."
        parsed = parse_share_args(args)
        if isinstance(parsed, str):
            return parsed
        name, expires, password, watermark = parsed
        found = [f for f in await self.api.files(portal.remote_id) if name in (f["name"], f["id"])]
        if not found:
            return f"No file {name!r} in the linked folder."
        if password == "":
            password = secrets.token_urlsafe(9)
        share = await self.api.share(found[0]["id"], expires, password, watermark)
        answer = f"Share link for {found[0]['name']}: {share['url']}"
        if expires:
            answer += f" (expires in {args[args.index('--expires') + 1]})"
        if password:
            answer += f"; password: {password}"
        return answer

    async def _decrypt_setting(self, room_id: str, sender: str, args: list[str]) -> str:
        if args not in (["on"], ["off"]):
            return "Usage: !oodrive decrypt on|off (lets the bridge decrypt the files it stores from this room)"
        if not await self._is_room_admin(room_id, sender):
            return "Only the room's admins can change this setting."
        await self._core.store.set_cursor(DECRYPT_SETTING + room_id, "1" if args == ["on"] else "0")
        return f"Decryption of stored files is {args[0]} for this room."

    async def _is_room_admin(self, room_id: str, user_id: str) -> bool:
        """spec: m.room.power_levels: the user may send state events; in room versions with creator
        privileges (12), the creators always may."""
        try:
            state = await self._core.matrix.request("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state")
        except MatrixRequestError:
            return False
        return may_send_state(state if isinstance(state, list) else [], user_id)

    async def _team(self, room_id: str, sender: str, args: list[str]) -> str:
        """An encrypted room with its Oodrive folder linked, and its Tixeo meeting when a Tixeo bot is
        configured (invited and asked to ``!tixeo meet``), and its Olvid discussion with ``--olvid <id>``
        (the Olvid bot is invited and asked to ``!olvid bridge <id>``)."""
        parsed = parse_team_args(args)
        if isinstance(parsed, str):
            return parsed
        name, olvid = parsed
        if olvid is not None and not self._olvid_bot:
            return "No Olvid bridge is configured for team rooms (oodrive.team_olvid_bot)."
        parent = await self.api.folder(self._team_parent) if self._team_parent else None
        folder = await self.api.create_folder(name, parent["id"] if parent else None)
        bots = [self._tixeo_bot] if self._tixeo_bot else []
        bots += [self._olvid_bot] if olvid is not None else []
        team_room = await self._core.matrix.create_room({
            "name": name, "preset": "trusted_private_chat",  # the invitees get the creator's power
            "invite": [sender] + bots,
            "initial_state": [{"type": "m.room.encryption", "state_key": "",
                               "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                              {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}}]})
        await self._core.link(team_room, folder["id"])
        answer = f"Team room {name!r} created ({team_room}), linked to the Oodrive folder {folder['path']}"
        if self._tixeo_bot:
            answer += await self._ask(team_room, self._tixeo_bot, "!tixeo meet", " and to a Tixeo meeting")
        if olvid is not None:
            answer += await self._ask(team_room, self._olvid_bot, f"!olvid bridge {olvid}",
                                      f" and to the Olvid discussion {olvid}")
        return answer + "."

    async def _ask(self, team_room: str, bot: str, command: str, done: str) -> str:
        """Once ``bot`` joined the team room, send it ``command``; what the answer says about it."""
        if not await self._joined(team_room, bot):
            return f"; {bot} did not join: send {command} in the room"
        await self._core.matrix.send(team_room, "m.room.message", {"msgtype": "m.text", "body": command},
                                     txn_key=f"team:{team_room}:{command}")
        return done

    async def _joined(self, room_id: str, user_id: str) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TEAM_JOIN_WAIT_S
        while loop.time() < deadline:
            if user_id in await self._core.matrix.joined_members(room_id):
                return True
            await asyncio.sleep(0.2)
        return False
