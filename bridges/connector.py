"""What a bridged product implements (Olvid here; Oodrive and Tixeo next): the ``Connector`` protocol.

The framework (``core.py``) owns Matrix: portals, ghosts, the bot, commands, relay, permissions,
idempotency. A connector owns its remote network: it calls the core's ``remote_*`` methods for what
happens there, and answers the core's calls for what Matrix users do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Protocol

if TYPE_CHECKING:
    from bridges.core import BridgeCore
    from bridges.store import Portal


class DeliveryError(Exception):
    """The remote network refused or could not take a Matrix user's action; ``permanent`` when a retry
    cannot help. The message is shown to the user."""

    def __init__(self, message: str, *, permanent: bool = True, reason: str = "m_foreign_network_error"):
        super().__init__(message)
        self.permanent, self.reason = permanent, reason


@dataclass(frozen=True)
class RemoteUser:
    id: str
    name: str
    avatar_key: str = ""  # changes whenever the picture changes; "" when there is none
    fetch_avatar: Callable[[], Awaitable[tuple[bytes, str]]] | None = None  # (bytes, mime type)


@dataclass(frozen=True)
class RemoteChat:
    id: str
    title: str
    members: list[str] = field(default_factory=list)  # remote user ids


@dataclass(frozen=True)
class OutgoingFile:
    """A Matrix attachment on its way out: spooled to ``path`` (memory stays bounded)."""
    path: str
    filename: str
    mime: str
    size: int


@dataclass(frozen=True)
class OutgoingMessage:
    event_id: str
    sender: str
    text: str  # with the relay prefix when relayed
    reply_to: str | None = None  # the remote id of the message replied to
    file: OutgoingFile | None = None


@dataclass(frozen=True)
class IncomingFile:
    """A remote attachment on its way in: ``chunks()`` streams exactly ``size`` bytes."""
    filename: str
    mime: str
    size: int
    chunks: Callable[[], AsyncIterator[bytes]]


class Connector(Protocol):
    """Also, optionally: ``commands`` (name -> help) with ``async run_command(name, args, portal, sender) -> str``
    for the bridge's own commands (``portal`` is None outside portals), and ``async matrix_event(portal, event)``
    for the portal events the framework does not handle itself (state, calls, widgets ...)."""

    network_id: str  # "olvid"
    network_name: str  # "Olvid"

    async def start(self, core: "BridgeCore") -> None:
        """Connect, catch up on what was missed, and keep the notification streams up."""

    async def stop(self) -> None: ...

    def connection_state(self) -> dict:
        """``{"state_event": "CONNECTED" | "CONNECTING" | "TRANSIENT_DISCONNECT" | ..., "message": ...}``"""

    async def chat_info(self, chat_id: str) -> RemoteChat | None: ...

    async def user_info(self, user_id: str) -> RemoteUser | None: ...

    async def sync(self) -> str:
        """Fetch the remote state now (chats, members, missed messages); a one-line summary."""

    async def send_message(self, portal: "Portal", message: OutgoingMessage) -> str:
        """Deliver a message; its remote id. DeliveryError when it cannot be delivered."""

    async def edit_message(self, portal: "Portal", remote_id: str, text: str) -> None: ...

    async def delete_message(self, portal: "Portal", remote_id: str) -> None: ...

    async def react(self, portal: "Portal", remote_id: str, key: str) -> None:
        """Set the reaction (``""`` removes it)."""
