"""Third-party identifiers: e-mail addresses proved by a mailed link, bound to accounts.

Spec v1.19 client-server "Adding Account Administrative Contact Information" (``/account/3pid`` and its
``add``, ``delete``, ``bind``, ``unbind``, ``email/requestToken``, ``msisdn/requestToken``), "Account
registration" (``/register/email/requestToken``, the ``m.login.email.identity`` UIA stage) and "Password
management" (``/account/password/email/requestToken``). Where the spec leaves the validation to the
homeserver, this does what Synapse does: the mail holds a link to this server (``public_baseurl``), the
link validates the session (a password reset's link first shows a confirmation form, so that a mail
scanner following links resets nothing), and the client then uses the session's ``sid`` and
``client_secret``. No identity server is configured, so nothing is bound on one.
"""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import urlencode, urlsplit

from homeserver.errors import MatrixError, bad_json, forbidden
from homeserver.services.auth import random_string
from homeserver.services.mailer import Mailer, MailNotSent
from homeserver.storage.threepids import ThreepidStore, ValidationSession

logger = logging.getLogger(__name__)

EMAIL = "email"
REGISTRATION, ADD_THREEPID, PASSWORD_RESET = "registration", "add_threepid", "password_reset"
EMAIL_STAGE = "m.login.email.identity"
EMAIL_APP_ID = "m.email"  # Synapse's app_id of e-mail pushers
CLIENT_SECRET_RE = re.compile(r"^[0-9a-zA-Z.=_\-]{1,255}$")  # spec "client_secret" grammar (our sids fit it too)
SESSION_ID_LENGTH, TOKEN_LENGTH = 24, 32
MAX_SEND_ATTEMPT = 2 ** 63 - 1
# Where each link points (Synapse's paths, so that a client or a mail template made for Synapse fits).
LINK_PATHS = {
    REGISTRATION: "_matrix/client/unstable/registration/email/submit_token",
    ADD_THREEPID: "_matrix/client/unstable/add_threepid/email/submit_token",
    PASSWORD_RESET: "_synapse/client/password_reset/email/submit_token",
}
SUBJECTS = {  # Synapse's default subjects
    REGISTRATION: "[%(server_name)s] Validate your email",
    ADD_THREEPID: "[%(server_name)s] Validate your email",
    PASSWORD_RESET: "[%(server_name)s] Password reset",
}
INTROS = {
    REGISTRATION: "You have asked us to register this email with a new %(app)s account on %(server_name)s.",
    ADD_THREEPID: "You have asked us to add this email to your %(app)s account on %(server_name)s.",
    PASSWORD_RESET: "A password reset request has been received for your %(app)s account on %(server_name)s.",
}


def canonical_email(address) -> str:
    """Synapse's canonical form: trimmed, the domain lowercased, the local part case-folded."""
    if not isinstance(address, str):
        raise bad_json("'email' must be a string")
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or len(address) > 500 or any(c.isspace() or c < " " for c in address):
        raise MatrixError(400, "M_INVALID_PARAM", "Unable to parse email address")
    return local.casefold() + "@" + domain.lower()


def _client_secret(value) -> str:
    if not isinstance(value, str) or not CLIENT_SECRET_RE.match(value):
        raise MatrixError(400, "M_INVALID_PARAM", "client_secret must match [0-9a-zA-Z.=_-]{1,255}")
    return value


def _creds(creds) -> tuple[str, str]:
    """(sid, client_secret) of a ``threepid_creds`` object."""
    if not isinstance(creds, dict):
        raise MatrixError(400, "M_MISSING_PARAM", "Missing threepid_creds")
    sid = creds.get("sid")
    if not isinstance(sid, str) or not CLIENT_SECRET_RE.match(sid):
        raise MatrixError(400, "M_MISSING_PARAM" if sid is None else "M_INVALID_PARAM", "Missing or invalid sid")
    return sid, _client_secret(creds.get("client_secret"))


class ThreepidService:
    """E-mail validation sessions and the e-mail addresses of accounts."""

    def __init__(self, *, store: ThreepidStore, mailer: Mailer | None, config, clock, pushers):
        self._store = store
        self._mailer = mailer  # None: no email section, so no address can be validated
        self._config = config
        self._clock = clock
        self._pushers = pushers

    @property
    def enabled(self) -> bool:
        return self._mailer is not None

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- requestToken and the mailed link ------------------------------------------------------
    async def request_token(self, purpose: str, body: dict) -> dict:
        """Spec ``.../email/requestToken``: mail a validation link; ``{"sid": ...}``."""
        if self._mailer is None:
            raise MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "E-mail is not configured on this server")
        client_secret = _client_secret(body.get("client_secret"))
        address = canonical_email(body.get("email"))
        attempt = body.get("send_attempt")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 <= attempt <= MAX_SEND_ATTEMPT:
            raise MatrixError(400, "M_INVALID_PARAM" if "send_attempt" in body else "M_MISSING_PARAM",
                              "send_attempt must be a non-negative integer")
        next_link = body.get("next_link")
        if next_link is not None and (not isinstance(next_link, str) or any(c < " " for c in next_link)
                                      or urlsplit(next_link).scheme not in ("http", "https")):
            raise MatrixError(400, "M_INVALID_PARAM", "next_link must be an http(s) URL")
        owner = await self._store.owner(EMAIL, address)
        if purpose == PASSWORD_RESET and owner is None:
            raise MatrixError(400, "M_THREEPID_NOT_FOUND", "Email not found")
        if purpose != PASSWORD_RESET and owner is not None:
            raise MatrixError(400, "M_THREEPID_IN_USE", "Email is already in use")
        now = self._now_ms()
        session, send = await self._store.start_session(ValidationSession(
            session_id=random_string(SESSION_ID_LENGTH), client_secret=client_secret, medium=EMAIL, address=address,
            purpose=purpose, send_attempt=attempt, token=random_string(TOKEN_LENGTH), next_link=next_link,
            expires_at=now + self._config.email_validation_token_lifetime_ms, validated_at=None), now)
        if send:
            await self._mail_link(session)
        return {"sid": session.session_id}

    def link(self, path: str, query: dict) -> str:
        return self._config.public_baseurl.rstrip("/") + "/" + path + "?" + urlencode(query)

    async def _mail_link(self, session: ValidationSession) -> None:
        values = {"app": self._config.email_app_name, "server_name": self._config.server_name}
        link = self.link(LINK_PATHS[session.purpose], {"token": session.token, "client_secret": session.client_secret,
                                                       "sid": session.session_id})
        text = (INTROS[session.purpose] % values + "\n\nTo confirm, follow this link:\n\n" + link +
                "\n\nIf this was not you, do not follow the link above.\n")
        try:
            await self._mailer.send(session.address, SUBJECTS[session.purpose] % values, text)
        except MailNotSent as e:
            logger.warning("Validation mail to %s not sent: %s", session.address, e)
            await self._store.unsent(session.session_id)  # spec "send_attempt": a retry of this request sends it
            raise MatrixError(500, "M_UNKNOWN", "Could not send the validation email") from None

    async def submit_token(self, purpose: str, sid, client_secret, token) -> str | None:
        """The mailed link followed: validate the session; its ``next_link`` (or None). Raises MatrixError when
        the link is wrong or expired."""
        if not all(isinstance(v, str) and CLIENT_SECRET_RE.match(v) for v in (sid, client_secret, token)):
            raise MatrixError(400, "M_INVALID_PARAM", "The link is incomplete")
        session = await self._store.session(sid, client_secret)
        if session is None or session.purpose != purpose or not hmac.compare_digest(session.token, token):
            raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "This link is not valid")
        if session.validated_at is None:
            if session.expires_at < self._now_ms():
                raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "This link has expired")
            await self._store.mark_validated(sid, self._now_ms())
        return session.next_link

    async def validated(self, creds, purpose: str) -> ValidationSession | None:
        """The validated session these ``threepid_creds`` name, if any."""
        sid, client_secret = _creds(creds)
        session = await self._store.session(sid, client_secret)
        if session is None or session.purpose != purpose or session.validated_at is None:
            return None
        return session

    # -- user-interactive auth --------------------------------------------------------------
    def stage_checker(self, purpose: str, other=None):
        """A UIA stage checker for ``m.login.email.identity`` (a validated session of ``purpose``, kept in the
        UIA session's ``threepid``); other stages go to ``other``."""
        async def check(stage: str, auth: dict, uia_session) -> None:
            if stage != EMAIL_STAGE:
                if other is None:
                    raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown auth stage {stage}")
                return await other(stage, auth, uia_session)
            session = await self.validated(auth.get("threepid_creds", auth.get("threepidCreds")), purpose)
            if session is None:
                raise MatrixError(401, "M_UNAUTHORIZED", "The email address has not been validated")
            uia_session.threepid = {"medium": session.medium, "address": session.address,
                                    "validated_at": session.validated_at, "sid": session.session_id}
        return check

    def registration_flows(self, flows: list[list[str]]) -> list[list[str]]:
        """With e-mail configured, registering may also prove an address (after any token stage); it must with
        ``registrations_require_3pid: [email]``."""
        if not self.enabled:
            return flows
        with_email = [[s for s in flows[0] if s != "m.login.dummy"] + [EMAIL_STAGE]]
        if "email" in self._config.registrations_require_3pid:
            return with_email
        return flows + [f for f in with_email if f not in flows]

    async def on_registered(self, user_id: str, threepid: dict | None) -> None:
        """Registration with a validated address: the address becomes the account's, and with
        ``notif_for_new_users`` it gets an e-mail pusher (as Synapse)."""
        if threepid is None:
            return
        await self._bind(user_id, threepid["address"], threepid["validated_at"], threepid["sid"])
        if self._config.email_enable_notifs and self._config.email_notif_for_new_users:
            await self._pushers.set_email_pusher(user_id, threepid["address"], self._now_ms())

    async def _bind(self, user_id: str, address: str, validated_at: int, sid: str) -> None:
        if not await self._store.add(user_id, EMAIL, address, validated_at, self._now_ms()):
            raise MatrixError(400, "M_THREEPID_IN_USE", "Email is already in use")
        await self._store.end_session(sid)

    # -- an account's addresses ------------------------------------------------------------------
    async def list(self, user_id: str) -> list[dict]:
        return await self._store.threepids(user_id)

    async def owner(self, address: str) -> str | None:
        return await self._store.owner(EMAIL, address)

    async def login_identifier(self, body: dict) -> dict:
        """Spec "Identifier types": a login by ``m.id.thirdparty`` (or the deprecated top-level ``medium`` and
        ``address``) as the ``m.id.user`` of the address's account; 403 M_FORBIDDEN for an address nobody has."""
        identifier = body.get("identifier")
        if isinstance(identifier, dict) and identifier.get("type") == "m.id.thirdparty":
            medium, address = identifier.get("medium"), identifier.get("address")
        elif identifier is None and "medium" in body:
            medium, address = body.get("medium"), body.get("address")
        else:
            return body
        owner = await self._store.owner(EMAIL, canonical_email(address)) if medium == EMAIL else None
        if owner is None:
            raise forbidden("Invalid username or password")
        return dict(body, identifier={"type": "m.id.user", "user": owner})

    async def add(self, user_id: str, creds) -> None:
        """Spec POST /account/3pid/add: the address of a validated ``add_threepid`` session."""
        session = await self.validated(creds, ADD_THREEPID)
        if session is None:
            raise MatrixError(400, "M_THREEPID_AUTH_FAILED", "No validated 3pid session found")
        await self._bind(user_id, session.address, session.validated_at, session.session_id)

    async def delete(self, user_id: str, medium, address) -> None:
        """Spec POST /account/3pid/delete: the address goes, and its e-mail pusher with it (as Synapse)."""
        if not isinstance(medium, str) or not isinstance(address, str):
            raise MatrixError(400, "M_MISSING_PARAM", "medium and address must be strings")
        if medium != EMAIL:
            return  # only e-mail addresses are ever added
        address = canonical_email(address)
        if await self._store.remove(user_id, medium, address):
            await self._pushers.remove((EMAIL_APP_ID, address, user_id))

    async def on_deactivated(self, user_id: str) -> None:
        await self._store.remove_all(user_id)
