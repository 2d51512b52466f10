"""E-mail pushers: a summary mail of the notifications a user has not read (Synapse's email pusher).

Spec v1.19 client-server "Pushers" leaves kind ``email`` to the homeserver; as Synapse (``email.enable_notifs``):
- a pusher's address (its pushkey) must be one of its user's validated addresses;
- a notification still unread ``notif_delay_before_mail`` after its event is mailed, together with every
  other notification of the user that is unread by then (read ones are never mailed), in one summary;
- each mail carries an unsubscribe link, served by this server, that removes the pusher; the link's token
  is an HMAC of the user, app id and pushkey under a key derived from the server's signing key;
- like HTTP pushers, a loop per pusher resumes after the position stored for it (the last notification
  the mail covered), so a restart neither loses nor repeats a summary.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import quote

from twisted.internet import task

from homeserver.errors import MatrixError
from homeserver.services.mailer import Mailer, MailNotSent
from homeserver.services.pushers import BATCH, PusherLoop
from homeserver.services.threepids import canonical_email
from homeserver.storage.push import PushAction
from homeserver.storage.pushers import Pusher

logger = logging.getLogger(__name__)

RETRY_S = 60.0  # a mail the SMTP server did not take is tried again after this
MAX_BODY_CHARS = 300  # of each message quoted in a summary


class EmailNotifier:
    """What e-mail pushers share: the mailer, the summary's wording, the unsubscribe tokens."""

    def __init__(self, *, mailer: Mailer, config, room_heads, read_positions, threepid_owner, unsubscribe_key: bytes,
                 clock):
        self.mailer = mailer
        self._config = config
        self._heads = room_heads
        self._read_positions = read_positions  # (rooms, user) -> room -> {thread or None: position}
        self._threepid_owner = threepid_owner  # (medium, address) -> user id or None
        self._key = hashlib.sha256(b"hexagone email unsubscribe\x00" + unsubscribe_key).digest()
        self.clock = clock
        self.delay_s = config.email_notif_delay_before_mail_ms / 1000

    def loop(self, owner, pusher: Pusher) -> "EmailPusherLoop":
        return EmailPusherLoop(owner, self, pusher)

    async def check_pushkey(self, user_id: str, address: str) -> None:
        """Synapse's rule: an e-mail pusher's address is one of its user's (400 M_THREEPID_NOT_FOUND otherwise)."""
        if await self._threepid_owner("email", canonical_email(address)) != user_id:
            raise MatrixError(400, "M_THREEPID_NOT_FOUND", "Email not found")

    # -- unsubscribe links ----------------------------------------------------------------------
    def _token(self, user_id: str, app_id: str, pushkey: str) -> str:
        message = "\x00".join((user_id, app_id, pushkey)).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def unsubscribe_valid(self, user_id, app_id, pushkey, token) -> bool:
        if not all(isinstance(v, str) for v in (user_id, app_id, pushkey, token)):
            return False
        return hmac.compare_digest(self._token(user_id, app_id, pushkey), token)

    def unsubscribe_link(self, pusher: Pusher) -> str:
        params = {"user_id": pusher.user_id, "app_id": pusher.app_id, "pushkey": pusher.pushkey,
                  "access_token": self._token(pusher.user_id, pusher.app_id, pusher.pushkey)}
        return (self._config.public_baseurl.rstrip("/") + "/_synapse/client/unsubscribe?"
                + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()))

    # -- the summary ----------------------------------------------------------------------------
    async def unread(self, user_id: str, actions: list[PushAction]) -> list[PushAction]:
        """The actions whose events the user has not read (per thread, as the notification counts)."""
        positions = await self._read_positions(sorted({a.room_id for a in actions}), user_id)
        return [a for a in actions if a.stream_ordering > max(positions[a.room_id].get(None, 0),
                                                              positions[a.room_id].get(a.thread_id, 0))]

    async def send_summary(self, pusher: Pusher, actions: list[PushAction]) -> None:
        """One mail listing ``actions`` by room; raises MailNotSent."""
        app = pusher.data.get("brand") if isinstance(pusher.data.get("brand"), str) else self._config.email_app_name
        rooms: dict[str, list[tuple[str, str]]] = {}
        names: dict[str, str] = {}
        senders: set[str] = set()
        for action in actions:
            ev = await self._heads.get_event(action.event_id)
            if ev is None:
                continue
            if action.room_id not in names:
                names[action.room_id] = await self._room_name(action.room_id)
            sender = await self._display_name(action.room_id, ev.sender)
            senders.add(sender)
            rooms.setdefault(action.room_id, []).append((sender, _describe(ev)))
        if not rooms:
            return
        subject = _subject(app, [names[r] for r in rooms], sorted(senders), sum(len(m) for m in rooms.values()))
        lines = [f"You have {sum(len(m) for m in rooms.values())} unread notification(s) on {app}:", ""]
        for room_id, messages in rooms.items():
            lines.append(names[room_id])
            lines += [f"  {sender}: {text}" for sender, text in messages]
            if self._config.email_client_base_url:
                lines.append(f"  {self._config.email_client_base_url.rstrip('/')}/#/room/{room_id}")
            lines.append("")
        unsubscribe = self.unsubscribe_link(pusher)
        lines += ["You are receiving this email because of an e-mail pusher of " + pusher.user_id + ".",
                  "To stop these emails, follow this link:", unsubscribe, ""]
        # RFC 2369 and RFC 8058: mail clients offer the unsubscribe link themselves (one click: a POST)
        await self.mailer.send(pusher.pushkey, subject, "\n".join(lines), headers={
            "List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})

    async def _room_name(self, room_id: str) -> str:
        state = await self._heads.current_state(room_id, {("m.room.name", ""), ("m.room.canonical_alias", "")})
        for key, field in ((("m.room.name", ""), "name"), (("m.room.canonical_alias", ""), "alias")):
            ev = state.get(key)
            if ev is not None and isinstance(ev.content.get(field), str) and ev.content[field]:
                return ev.content[field]
        return room_id

    async def _display_name(self, room_id: str, user_id: str) -> str:
        key = ("m.room.member", user_id)
        member = (await self._heads.current_state(room_id, {key})).get(key)
        name = member.content.get("displayname") if member is not None else None
        return name if isinstance(name, str) and name else user_id


def _describe(ev) -> str:
    body = ev.content.get("body") if isinstance(ev.content, dict) else None
    if ev.type == "m.room.encrypted":
        return "(an encrypted message)"
    if isinstance(body, str):
        return body if len(body) <= MAX_BODY_CHARS else body[:MAX_BODY_CHARS] + "…"
    return f"({ev.type})"


def _subject(app: str, room_names: list[str], senders: list[str], count: int) -> str:
    """Synapse's default subjects."""
    if len(room_names) > 1:
        return f"[{app}] You have messages on {app} in the {room_names[0]} room and others..."
    if count == 1:
        return f"[{app}] You have a message on {app} from {senders[0]} in the {room_names[0]} room..."
    if len(senders) == 1:
        return f"[{app}] You have messages on {app} from {senders[0]}..."
    return f"[{app}] You have messages on {app} in the {room_names[0]} room..."


class EmailPusherLoop(PusherLoop):
    """One e-mail pusher: waits until its oldest unread notification is ``notif_delay_before_mail`` old, then mails
    every notification unread by then."""

    def __init__(self, owner, notifier: EmailNotifier, pusher: Pusher):
        super().__init__(owner, pusher)
        self.notifier = notifier

    async def finish(self, timeout_s: float) -> None:
        """At shutdown: stop now (a mail not acknowledged is sent after the restart, from the stored position)."""
        self.stopping = True
        self.stop()

    async def _sleep(self, seconds: float) -> None:
        await task.deferLater(self.notifier.clock, max(0.0, seconds), lambda: None)

    async def _loop(self) -> None:
        owner, user_id = self.owner, self.pusher.user_id
        while not self.stopping:
            target, actions = await self.next_actions()
            pending = await self.notifier.unread(user_id, actions)
            if not pending:
                if not self.stopping:
                    self._advance(actions[-1].stream_ordering if len(actions) == BATCH else target)
                continue
            wait_s = pending[0].ts / 1000 + self.notifier.delay_s - self.notifier.clock.seconds()
            if wait_s > 0:  # then look again: the oldest unread one may have been read meanwhile
                await self._sleep(wait_s)
                continue
            upto, actions = await self.next_actions(owner.target)  # every notification unread by now
            if self.stopping:
                return
            unread = await self.notifier.unread(user_id, actions)
            if unread:
                try:
                    await self.notifier.send_summary(self.pusher, unread)
                except MailNotSent as e:
                    logger.warning("Notification mail to %s not sent (%s); retrying in %.0f s", self.pusher.pushkey,
                                   e, RETRY_S)
                    await self._sleep(RETRY_S)
                    continue
            self._advance(actions[-1].stream_ordering if len(actions) == BATCH else upto)

    def _advance(self, position: int) -> None:
        self.position = max(self.position, position)
        self.owner.record_position(self.pusher.key, self.position)
