"""Pure translations between Matrix event content and what a bridge hands to its remote network:
command parsing, reply fallbacks, relay formatting, and the bridge-info and message-status contents.
No I/O here; everything is unit-tested in tests/core/test_bridge_events.py.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = {
    "help": "show this help",
    "ping": "check the bridge and the connection to the remote network",
    "sync": "fetch what the remote network holds now (chats, members, missed messages)",
    "bridge": "bridge <remote-id>: link this room to a remote chat",
    "unbridge": "unlink this room from its remote chat",
    "set-relay": "relay the messages of this room's Matrix users through the bridge bot",
    "unset-relay": "stop relaying this room's messages",
}
ADMIN_COMMANDS = frozenset({"bridge", "unbridge", "set-relay", "unset-relay"})
FILE_MSGTYPES = frozenset({"m.file", "m.image", "m.video", "m.audio"})


@dataclass(frozen=True)
class Command:
    name: str
    args: list[str]


def parse_command(body: str, prefix: str, management: bool) -> Command | None:
    """``!olvid ping`` anywhere, or ``ping`` alone in the management room; None if not a command."""
    text = body.strip()
    if text == prefix or text.startswith(prefix + " "):
        text = text[len(prefix):].strip()
    elif not management:
        return None
    words = text.split()
    if not words:
        return Command("help", [])
    return Command(words[0].lower(), words[1:])


def help_text(prefix: str, extra: dict[str, str] | None = None) -> str:
    """The framework's commands, then the bridge's own (``extra``: name -> help)."""
    commands = {**COMMANDS, **(extra or {})}
    width = max(map(len, commands))
    lines = [f"{prefix} {name.ljust(width)}  {text}" for name, text in commands.items()]
    return "Commands (the prefix is optional in the management room):\n" + "\n".join(lines)


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> quoted`` lines a client may put first in a reply (spec: "Fallbacks for rich replies")."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:])


def relates_to(content: dict) -> dict:
    relation = content.get("m.relates_to")
    return relation if isinstance(relation, dict) else {}


def reply_target(content: dict) -> str | None:
    reply = relates_to(content).get("m.in_reply_to")
    target = reply.get("event_id") if isinstance(reply, dict) else None
    return target if isinstance(target, str) else None


def edit_target(content: dict) -> str | None:
    relation = relates_to(content)
    target = relation.get("event_id")
    return target if relation.get("rel_type") == "m.replace" and isinstance(target, str) else None


def message_text(content: dict) -> str:
    """The text to send for a message or an edit: the new content of an edit, replies without fallback."""
    new = content.get("m.new_content")
    source = new if edit_target(content) and isinstance(new, dict) else content
    body = source.get("body")
    return strip_reply_fallback(body) if isinstance(body, str) else ""


def relay_text(fmt: str, displayname: str, user_id: str, body: str) -> str:
    return fmt.format(displayname=displayname or user_id, mxid=user_id, body=body)


def bridge_info(network_id: str, network_name: str, bot: str, chat_id: str, chat_name: str) -> tuple[str, dict]:
    """(state_key, content) of the MSC2346 ``m.bridge`` / ``uk.half-shot.bridge`` state event."""
    content = {"bridgebot": bot, "creator": bot,
               "protocol": {"id": network_id, "displayname": network_name},
               "channel": {"id": chat_id, "displayname": chat_name}}
    return f"net.hexagone.{network_id}://{network_id}/{chat_id}", content


def message_status(network_id: str, event_id: str, error: str | None = None, permanent: bool = True,
                   reason: str = "m_foreign_network_error") -> dict:
    """The content of a ``com.beeper.message_send_status`` event about ``event_id``."""
    content = {"network": network_id, "m.relates_to": {"rel_type": "m.reference", "event_id": event_id}}
    if error is None:
        content["status"] = "SUCCESS"
    else:
        content.update(status="FAIL_PERMANENT" if permanent else "FAIL_RETRIABLE", reason=reason,
                       error=error, message=error)
    return content


def remote_content(body: str, reply_to_event: str | None = None, *, edit_of: str | None = None) -> dict:
    """The Matrix content of a remote text message, a reply, or an edit (spec: m.replace)."""
    content: dict = {"msgtype": "m.text", "body": body}
    if edit_of:
        return {"msgtype": "m.text", "body": f"* {body}", "m.new_content": {"msgtype": "m.text", "body": body},
                "m.relates_to": {"rel_type": "m.replace", "event_id": edit_of}}
    if reply_to_event:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to_event}}
    return content


def file_content(msgtype_for_mime: str, filename: str, mxc: str, mime: str, size: int) -> dict:
    return {"msgtype": msgtype_for_mime, "body": filename, "filename": filename, "url": mxc,
            "info": {"mimetype": mime, "size": size}}


def msgtype_for(mime: str) -> str:
    kind = (mime or "").split("/", 1)[0]
    return {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(kind, "m.file")
