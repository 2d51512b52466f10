"""Sending mail through the configured SMTP server (Synapse's ``email`` section: ``smtp_host``,
``smtp_port``, ``smtp_user``, ``smtp_pass``, ``enable_tls``, ``require_transport_security``, ``notif_from``).

Mails are few (validation links, password resets, notification summaries), so each is one SMTP
session with the standard library's client, on a worker thread: EHLO (HELO for a server that refuses it,
such as SyTest's), STARTTLS when the server offers it
and ``enable_tls`` (the certificate verified against the system's trust store), and no mail at all
over plain text when ``require_transport_security``. The password is only ever given to the server.
"""

from __future__ import annotations

import email.utils
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

logger = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 30


class MailNotSent(Exception):
    """The SMTP server could not be reached, refused the login or the mail, or offered no TLS when required."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str | None
    password: str | None
    enable_tls: bool
    require_tls: bool
    sender: str  # notif_from, with %(app)s replaced

    @classmethod
    def from_config(cls, config) -> "SmtpSettings":
        return cls(host=config.email_smtp_host, port=config.email_smtp_port, user=config.email_smtp_user,
                   password=config.email_smtp_pass, enable_tls=config.email_enable_tls,
                   require_tls=config.email_require_transport_security,
                   sender=config.email_notif_from.replace("%(app)s", config.email_app_name))

    def __repr__(self) -> str:  # never the password
        return f"SmtpSettings({self.host}:{self.port}, user={self.user!r}, tls={self.enable_tls}/{self.require_tls})"


def build_message(sender: str, to: str, subject: str, text: str, html: str | None = None,
                  headers: dict[str, str] | None = None) -> EmailMessage:
    """A mail with a text part (and an HTML alternative when given), and any more ``headers``."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=email.utils.parseaddr(sender)[1].rpartition("@")[2] or None)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


class Mailer:
    """Sends mails through one SMTP server, off the reactor thread."""

    def __init__(self, settings: SmtpSettings, threads):
        self._settings = settings
        self._threads = threads

    @property
    def sender(self) -> str:
        return self._settings.sender

    async def send(self, to: str, subject: str, text: str, html: str | None = None,
                   headers: dict[str, str] | None = None) -> None:
        """Send one mail; raises MailNotSent (with the reason, never the password)."""
        message = build_message(self._settings.sender, to, subject, text, html, headers)
        await self._threads.run(_send_blocking, self._settings, message)
        logger.info("Mail %r sent to %s", subject, to)


def _send_blocking(settings: SmtpSettings, message: EmailMessage) -> None:
    try:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT_S)
        try:
            if not 200 <= smtp.ehlo()[0] <= 299:  # RFC 5321 3.2: a server without ESMTP gets HELO
                code, reply = smtp.helo()
                if code != 250:
                    raise MailNotSent(f"{settings.host}:{settings.port} refused EHLO and HELO ({code})")
            if settings.enable_tls and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            elif settings.require_tls:
                raise MailNotSent(f"{settings.host}:{settings.port} offers no STARTTLS and "
                                  "require_transport_security is set: mail not sent")
            if settings.user:
                smtp.login(settings.user, settings.password or "")
            smtp.send_message(message)
            try:  # the mail is accepted: a server answering QUIT oddly changes nothing
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
        finally:
            smtp.close()
    except MailNotSent:
        raise
    except smtplib.SMTPAuthenticationError as e:
        raise MailNotSent(f"{settings.host}:{settings.port} refused the login of {settings.user!r} ({e.smtp_code})")
    except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
        raise MailNotSent(f"{settings.host}:{settings.port}: {type(e).__name__}: {e}") from None
