"""An SMTP server on 127.0.0.1 for the e-mail tests (aiosmtpd from PyPI), recording every mail it accepts.

With a TLS context it offers STARTTLS and refuses mail before it; with ``logins`` it requires AUTH (which
aiosmtpd only allows over TLS) and records who logged in.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from tests.integration.harness import free_port

DEADLINE_S = 30


@dataclass
class Mail:
    to: list[str]
    message: EmailMessage
    tls: bool
    login: str | None
    received_at: float

    @property
    def subject(self) -> str:
        return self.message["Subject"]

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content().replace("\r\n", "\n") if part is not None else ""

    def links(self) -> list[str]:
        return re.findall(r"https?://\S+", self.text)


class _HeloOnly(SMTP):
    """A server that knows only RFC 821 SMTP: EHLO is an unknown command (as SyTest's own SMTP server)."""

    async def smtp_EHLO(self, hostname):  # noqa: N802 (aiosmtpd's naming)
        await self.push("500 Error: command \"EHLO\" not recognized")


class _HeloOnlyController(Controller):
    def factory(self):
        return _HeloOnly(self.handler, **self.SMTP_kwargs)


class MailSink:
    def __init__(self, tls_context=None, logins: dict[str, str] | None = None, esmtp: bool = True):
        """``esmtp`` False: EHLO is refused, a client must greet with HELO."""
        self.mails: list[Mail] = []
        self.failed_logins = 0
        self._cond = threading.Condition()
        self._logins = logins
        extra = {}
        if logins is not None:
            extra.update(authenticator=self._authenticate, auth_required=True)
        self.port = free_port()
        controller = Controller if esmtp else _HeloOnlyController
        self._controller = controller(self, hostname="127.0.0.1", port=self.port, tls_context=tls_context,
                                      require_starttls=tls_context is not None, **extra)
        self._controller.start()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        login, password = auth_data.login.decode(), auth_data.password.decode()
        if self._logins.get(login) == password:
            return AuthResult(success=True, auth_data=login)
        self.failed_logins += 1
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        with self._cond:
            self.mails.append(Mail(list(envelope.rcpt_tos), message, session.ssl is not None, login, time.time()))
            self._cond.notify_all()
        return "250 OK"

    def to(self, address: str) -> list[Mail]:
        with self._cond:
            return [m for m in self.mails if address in m.to]

    def wait_for(self, address: str, count: int = 1) -> list[Mail]:
        """The first ``count`` mails to ``address``, waiting for them."""
        end = time.monotonic() + DEADLINE_S
        with self._cond:
            while len(found := [m for m in self.mails if address in m.to]) < count:
                left = end - time.monotonic()
                assert left > 0, f"no {count} mail(s) to {address}; got {[(m.to, m.subject) for m in self.mails]}"
                self._cond.wait(left)
        return found[:count]

    def close(self) -> None:
        self._controller.stop()
