"""Access tokens, passwords, devices and user-interactive auth.

Spec: client-server "Client Authentication", "User-Interactive Authentication API",
"Device management".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass, field
from typing import Callable

import bcrypt

from homeserver.errors import InteractiveAuthRequired, MatrixError, bad_json, forbidden, unknown_token
from homeserver.lru import LruCache
from homeserver.requester import Requester
from homeserver.services.ratelimit import Ratelimiter
from homeserver.services.recaptcha import RECAPTCHA_STAGE, RecaptchaVerifier
from homeserver.storage.accounts import AccountStore
from homeserver.storage.session_tokens import SessionTokenStore

UIA_SESSION_LIFETIME_MS = 15 * 60 * 1000
SSO_STAGE = "m.login.sso"   # completed by services/sso.py, when the identity provider sends the user back
UIA_SESSIONS_PER_USER = 5           # sessions alive at once for one user
UIA_SESSIONS_PER_ADDRESS = 50       # ... for /register from one address (several people behind one NAT)
UIA_SESSIONS_TOTAL = 10_000
UIA_SESSION_ID_LENGTH = 24
# A password longer than this cannot be set: bcrypt only reads the first 72 bytes.
MAX_PASSWORD_BYTES = 72


def random_string(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class UiaSession:
    """What a user-interactive auth session keeps: who opened it, for which request, and its progress."""

    owner: str
    created_ms: int
    request_digest: bytes
    completed: list[str] = field(default_factory=list)
    registration_token: str | None = None
    threepid: dict | None = None  # the address an m.login.email.identity stage proved (services/threepids.py)
    params: dict | None = None   # the parameters of the request that opened it (a retry may omit them)
    result: str | None = None    # what the completed operation made (the user id /register created)
    sso_user: str | None = None  # who the m.login.sso stage authenticated ("" for no user of ours)


class UiaSessions:
    """The live UIA sessions, in memory and oldest first, bounded per owner and in total.

    Spec "User-Interactive Authentication API": the server makes up session ids; a session it did not
    hand out (or one handed out to someone else) is unknown. Past the bounds, the oldest session goes.
    """

    def __init__(self, clock_ms, *, lifetime_ms: int = UIA_SESSION_LIFETIME_MS,
                 total: int = UIA_SESSIONS_TOTAL):
        self._now_ms = clock_ms
        self._lifetime_ms = lifetime_ms
        self._total = total
        self._sessions: dict[str, UiaSession] = {}   # insertion order is creation order
        self._by_owner: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str, owner: str) -> UiaSession | None:
        self._expire()
        session = self._sessions.get(session_id)
        return session if session is not None and session.owner == owner else None

    def find(self, session_id: str) -> UiaSession | None:
        """The live session of that id, whoever owns it (the id itself is the secret: SSO's fallback page)."""
        self._expire()
        return self._sessions.get(session_id)

    def create(self, owner: str, request_digest: bytes, per_owner: int) -> tuple[str, UiaSession]:
        """A new session; past ``per_owner`` live sessions of ``owner``, its oldest goes."""
        self._expire()
        owned = self._by_owner.get(owner, [])
        while len(owned) >= per_owner:
            self.remove(owned[0])
        while len(self._sessions) >= self._total:
            self.remove(next(iter(self._sessions)))
        session_id = random_string(UIA_SESSION_ID_LENGTH)
        self._sessions[session_id] = session = UiaSession(owner, self._now_ms(), request_digest)
        self._by_owner.setdefault(owner, []).append(session_id)
        return session_id, session

    def remove(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        owned = self._by_owner[session.owner]
        owned.remove(session_id)
        if not owned:
            del self._by_owner[session.owner]

    def _expire(self) -> None:
        cutoff = self._now_ms() - self._lifetime_ms
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if session.created_ms >= cutoff:
                return
            self.remove(session_id)


class TokenCache:
    """The requesters of recently used access tokens, by token (the least recently used evicted first) and
    by user.

    Every ``forget`` (after the database change it reflects) moves ``generation`` on; a lookup that read
    the database before it stores nothing, since the token it read may be gone by now.
    """

    MAX_TOKENS = 100_000

    def __init__(self, on_forget: Callable[[str], None] | None = None):
        self.generation = 0
        self._on_forget = on_forget  # told of the user whose tokens went (the other processes: replication)
        self._by_token: LruCache[str, Requester] = LruCache(self.MAX_TOKENS, on_evict=self._unindex)
        self._by_user: dict[str, set[str]] = {}

    def get(self, token: str) -> Requester | None:
        return self._by_token.get(token)

    def put(self, requester: Requester, generation: int) -> None:
        if generation != self.generation:
            return
        self._by_token.put(requester.access_token, requester)
        self._by_user.setdefault(requester.user_id, set()).add(requester.access_token)

    def _unindex(self, token: str, requester: Requester) -> None:
        tokens = self._by_user.get(requester.user_id, set())
        tokens.discard(token)
        if not tokens:
            self._by_user.pop(requester.user_id, None)

    def forget(self, user_id: str, device_ids: set[str] | None = None, *, only_token: str | None = None,
               keep_token: str | None = None) -> None:
        """Drop the user's tokens (of ``device_ids``, or ``only_token``, but never ``keep_token``)."""
        self.generation += 1
        if self._on_forget is not None:
            self._on_forget(user_id)
        tokens = self._by_user.get(user_id, set())
        for token in [t for t in tokens if t != keep_token and (only_token is None or t == only_token)
                      and (device_ids is None or self._by_token.peek(t).device_id in device_ids)]:
            tokens.discard(token)
            self._by_token.pop(token)
        if not tokens:
            self._by_user.pop(user_id, None)


class UiaWrongUser(MatrixError):
    """A UIA stage passed by another user than the one the operation is for."""


class AuthService:
    def __init__(self, *, store: AccountStore, clock, server_name: str, bcrypt_rounds: int, threads,
                 failed_logins: Ratelimiter | None = None, on_devices_removed: list | None = None,
                 on_devices_changed: list | None = None, lifetimes: SessionTokenStore | None = None,
                 on_tokens_forgotten: Callable[[str], None] | None = None,
                 recaptcha: RecaptchaVerifier | None = None):
        self._store = store
        # With recaptcha_private_key set, m.login.recaptcha is checked wherever UIA is (as Synapse)
        self._recaptcha = recaptcha
        self._lifetimes = lifetimes  # access tokens that expire, refresh tokens (services/session_tokens.py)
        self._clock = clock
        self.server_name = server_name
        self._rounds = bcrypt_rounds
        self._threads = threads  # WorkerThreads: bcrypt off the reactor thread
        self._token_cache = TokenCache(on_tokens_forgotten)
        self._uia = UiaSessions(self.now_ms)
        self._password_checks: dict[str, int] = {}   # user id -> password checks under way
        self._failed_logins = failed_logins  # rc_login.failed_attempts, shared with /login
        self.on_devices_removed = on_devices_removed or []   # async callbacks(user_id, device_ids)
        # async callbacks(user_id, device_ids): devices added or renamed (their users' device lists changed)
        self._on_devices_changed = on_devices_changed or []

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- passwords ---------------------------------------------------------------------
    @staticmethod
    def check_new_password(password) -> None:
        """A password to set: a string bcrypt reads whole (at most 72 bytes), else 400 M_WEAK_PASSWORD."""
        if not isinstance(password, str):
            raise bad_json("password must be a string")
        if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
            raise MatrixError(400, "M_WEAK_PASSWORD", f"Password must be at most {MAX_PASSWORD_BYTES} bytes")

    async def hash_password(self, password: str) -> str:
        self.check_new_password(password)
        salt = bcrypt.gensalt(self._rounds)
        hashed = await self._threads.run(bcrypt.hashpw, password.encode("utf-8"), salt)
        return hashed.decode("ascii")

    async def check_password(self, user_id: str, password: str) -> bool:
        """Whether ``password`` is the user's; one too long to have been set is no one's."""
        encoded = password.encode("utf-8")
        if len(encoded) > MAX_PASSWORD_BYTES:
            return False
        user = await self._store.get_user(user_id)
        if user is None or user["deactivated"] or not user["password_hash"]:
            return False
        return await self._threads.run(bcrypt.checkpw, encoded, user["password_hash"].encode("ascii"))

    async def validate_password(self, user_id: str, password) -> None:
        """Spec "Login" and the UIA m.login.password stage: 403 M_FORBIDDEN for a wrong password, and
        429 M_LIMIT_EXCEEDED before any hashing once ``rc_login.failed_attempts`` has run out for the
        user (password checks under way count as failures until they are known not to be)."""
        limiter = self._failed_logins
        under_way = self._password_checks.get(user_id, 0)
        if limiter is not None:
            limiter.check(user_id, cost=under_way + 1, update=False)
        self._password_checks[user_id] = under_way + 1
        try:
            ok = isinstance(password, str) and await self.check_password(user_id, password)
        finally:
            if self._password_checks[user_id] == 1:
                del self._password_checks[user_id]
            else:
                self._password_checks[user_id] -= 1
        if not ok:
            if limiter is not None:
                limiter.check(user_id)
            raise forbidden("Invalid username or password")

    # -- tokens ------------------------------------------------------------------------
    async def resolve_token(self, token: str) -> Requester:
        requester = self._token_cache.get(token) or await self._lookup_token(token)
        if requester.valid_until_ms is not None and self.now_ms() >= requester.valid_until_ms:
            raise unknown_token("Access token has expired", soft_logout=True)
        return requester

    async def _lookup_token(self, token: str) -> Requester:
        generation = self._token_cache.generation
        info = await self._store.get_token(token)
        if info is None or info.deactivated:
            raise unknown_token()
        valid_until, revoked = info.valid_until_ms, False
        if info.first_use_revokes and self._lifetimes is not None:
            # Spec "Refreshing access tokens": the first use of a refreshed token revokes the old refresh token.
            valid_until, revoked = await self._lifetimes.use_access_token(token)
        if revoked:
            self.forget_cached_tokens(info.user_id, info.device_id)
            generation = self._token_cache.generation
        requester = Requester(info.user_id, info.device_id, token, info.is_admin, valid_until_ms=valid_until,
                              is_guest=info.is_guest)
        self._token_cache.put(requester, generation)
        return requester

    def forget_cached_tokens(self, user_id: str, device_id: str | None = None) -> None:
        """The tokens of the user (or of one device) changed in the database by other means (a refresh, a guest
        upgraded): read them afresh."""
        self._token_cache.forget(user_id, None if device_id is None else {device_id})

    async def login_device(self, user_id: str, device_id: str | None, display_name: str | None,
                           client_ip: str | None) -> tuple[str, str]:
        """Create or reuse a device and issue an access token: (device_id, token)."""
        device_id = device_id or random_string(10, string.ascii_uppercase)
        token = "syt_" + random_string(40)
        if not await self._store.add_device_and_token(user_id, device_id, token, display_name=display_name,
                                                      now_ms=self.now_ms(), client_ip=client_ip):
            self._token_cache.forget(user_id, {device_id})   # the device's earlier tokens are gone
        else:
            await self._devices_changed(user_id, [device_id])
        return device_id, token

    async def _devices_changed(self, user_id: str, device_ids: list[str]) -> None:
        for callback in self._on_devices_changed:
            await callback(user_id, device_ids)

    async def logout(self, requester: Requester) -> None:
        """Spec /logout: the token and its device go."""
        if requester.device_id is not None:
            await self.delete_devices(requester.user_id, [requester.device_id])
        else:
            await self._store.delete_token(requester.access_token)
            self._token_cache.forget(requester.user_id, only_token=requester.access_token)

    async def list_devices(self, user_id: str) -> list[dict]:
        """Spec "Device management": GET /devices."""
        return await self._store.list_devices(user_id)

    async def get_device(self, user_id: str, device_id: str) -> dict | None:
        return await self._store.get_device(user_id, device_id)

    async def create_device(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        """MSC4190: an appservice creates a device of one of its users; False if it exists already."""
        created = await self._store.create_device(user_id, device_id, display_name, self.now_ms())
        if created:
            await self._devices_changed(user_id, [device_id])
        return created

    async def rename_device(self, user_id: str, device_id: str, display_name: str) -> bool:
        """False when the user has no such device."""
        renamed = await self._store.rename_device(user_id, device_id, display_name)
        if renamed:
            await self._devices_changed(user_id, [device_id])
        return renamed

    async def delete_devices(self, user_id: str, device_ids: list[str] | None) -> list[str]:
        removed = await self._store.delete_devices(user_id, device_ids)
        self._token_cache.forget(user_id, None if device_ids is None else set(device_ids))
        for callback in self.on_devices_removed:
            await callback(user_id, removed)
        return removed

    async def set_password(self, requester: Requester, new_password: str, logout_devices: bool) -> None:
        hashed = await self.hash_password(new_password)
        removed = await self._store.set_password_hash(requester.user_id, hashed, keep_device=requester.device_id,
                                                      logout_devices=logout_devices)
        if logout_devices:
            self._token_cache.forget(requester.user_id, keep_token=requester.access_token)
            for callback in self.on_devices_removed:
                await callback(requester.user_id, removed)

    async def deactivate(self, user_id: str) -> None:
        removed = await self._store.deactivate(user_id)
        self._token_cache.forget(user_id)
        for callback in self.on_devices_removed:
            await callback(user_id, removed)

    # -- identifiers -----------------------------------------------------------------------
    def qualify(self, user: str) -> str:
        """A full user id from a localpart or user id (login identifiers)."""
        if user.startswith("@"):
            return user
        return f"@{user.lower()}:{self.server_name}"

    async def user_from_identifier(self, body: dict) -> str:
        """Spec "Identifier types": m.id.user (and the deprecated top-level ``user``)."""
        identifier = body.get("identifier")
        if isinstance(identifier, dict):
            if identifier.get("type") != "m.id.user":
                raise MatrixError(400, "M_UNKNOWN", "Only m.id.user identifiers are supported")
            user = identifier.get("user")
        else:
            user = body.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "M_INVALID_PARAM", "Missing user identifier")
        user_id = self.qualify(user)
        found = await self._store.find_user_case_insensitive(user_id)
        return found or user_id

    # -- user-interactive auth ---------------------------------------------------------------
    def uia_session(self, body: dict, requester: Requester | None, client_ip: str | None) -> UiaSession | None:
        """The live session ``body.auth.session`` names, if it is this client's."""
        auth = body.get("auth")
        session_id = auth.get("session") if isinstance(auth, dict) else None
        if not isinstance(session_id, str):
            return None
        return self._uia.get(session_id, self._uia_owner(requester, client_ip))

    def uia_session_owner(self, session_id: str) -> str | None:
        session = self._uia.find(session_id)
        return session.owner if session is not None else None

    def complete_sso_stage(self, session_id: str, user_id: str) -> str | None:
        """The identity provider vouched for ``user_id`` in UIA session ``session_id`` (spec "Single Sign-On"
        stage): the stage is done, and the session's operation goes on only if ``user_id`` is its owner. The
        owner, or None for an unknown session."""
        session = self._uia.find(session_id)
        if session is None:
            return None
        session.sso_user = user_id
        if SSO_STAGE not in session.completed:
            session.completed.append(SSO_STAGE)
        return session.owner

    async def complete_recaptcha_stage(self, session_id: str, response, client_ip: str | None) -> bool:
        """The reCAPTCHA fallback page's answer for UIA session ``session_id`` (spec "Fallback"): the stage
        is done once the siteverify API accepts it (MatrixError otherwise). False for an unknown session."""
        session = self._uia.find(session_id)
        if session is None or self._recaptcha is None:
            return False
        await self._recaptcha.verify(response, client_ip)
        if RECAPTCHA_STAGE not in session.completed:
            session.completed.append(RECAPTCHA_STAGE)
        return True

    @property
    def recaptcha_enabled(self) -> bool:
        return self._recaptcha is not None

    @staticmethod
    def _uia_owner(requester: Requester | None, client_ip: str | None) -> str:
        return requester.user_id if requester is not None else f"address:{client_ip}"

    async def check_uia(self, body: dict, flows: list[list[str]], *, fingerprint: str,
                        requester: Requester | None, client_ip: str | None = None,
                        stage_checker=None, params: dict | None = None,
                        keep_completed: bool = False) -> UiaSession:
        """Spec "User-Interactive Authentication API": complete a stage per call until a flow is done.

        ``fingerprint`` names the operation and its parameters (a session is bound to one); a session
        belongs to the requester, or for /register to the client's address. Only the stages of ``flows``
        are accepted: m.login.password checks the requester's own password only. A new session keeps
        ``params``; with ``keep_completed`` a completed session lives on (until it expires), so that a retry
        of the operation is answered as the first completion was (Synapse's idempotent /register).
        """
        auth = body.get("auth")
        owner = self._uia_owner(requester, client_ip)
        digest = hashlib.sha256(fingerprint.encode("utf-8")).digest()
        if isinstance(auth, dict) and "session" in auth:
            session_id = auth["session"]
            session = self._uia.get(session_id, owner) if isinstance(session_id, str) else None
            if session is None:
                raise MatrixError(400, "M_UNKNOWN", "Unknown UIA session")
            if not hmac.compare_digest(session.request_digest, digest):
                raise forbidden("Requested operation has changed during the UI authentication session")
        else:
            session_id, session = self._uia.create(
                owner, digest, UIA_SESSIONS_PER_USER if requester is not None else UIA_SESSIONS_PER_ADDRESS)
            session.params = params
        error = None
        if isinstance(auth, dict) and auth.get("type"):
            try:
                await self._complete_stage(session, auth, requester, self._offered(flows), stage_checker,
                                           client_ip)
            except MatrixError as e:
                if e.status == 429 or isinstance(e, UiaWrongUser):
                    raise
                error = e
        for flow in flows:
            if all(stage in session.completed for stage in flow):
                if SSO_STAGE in flow and (requester is None or session.sso_user != requester.user_id):
                    # Synapse: signed on as another user (or one never seen here) is a plain 403
                    raise UiaWrongUser(403, "M_FORBIDDEN", "Authenticated as another user than the requester")
                if not keep_completed:
                    self._uia.remove(session_id)
                return session
        params_out = {RECAPTCHA_STAGE: self._recaptcha.params()} \
            if self._recaptcha is not None and any(RECAPTCHA_STAGE in f for f in flows) else {}
        body_out = {"flows": [{"stages": f} for f in flows], "params": params_out, "session": session_id,
                    "completed": list(session.completed)}
        if error is not None:
            body_out.update(errcode=error.errcode, error=error.error)
        raise InteractiveAuthRequired(body_out)

    def _offered(self, flows: list[list[str]]) -> set[str]:
        """The stages a request may complete: those of ``flows``, and m.login.recaptcha once it can be checked
        (Synapse checks every stage it has a checker for, in a flow or not; SyTest's "Register with a
        recaptcha" relies on it)."""
        offered = {s for f in flows for s in f}
        if self._recaptcha is not None:
            offered.add(RECAPTCHA_STAGE)
        return offered

    async def _complete_stage(self, session: UiaSession, auth: dict, requester: Requester | None,
                              offered: set[str], stage_checker, client_ip: str | None) -> None:
        stage = auth["type"]
        if not isinstance(stage, str) or stage not in offered:
            raise MatrixError(400, "M_UNRECOGNIZED", "That auth stage is not offered here")
        if stage == "m.login.password":
            # Only ever offered to a logged-in user, to confirm their own password. Another user's right
            # password does not authenticate this one: a plain 403, not a stage to retry (as Synapse).
            user_id = await self.user_from_identifier(auth) if requester is not None else None
            if user_id is None:
                raise forbidden("Invalid username or password")
            await self.validate_password(user_id, auth.get("password"))
            if user_id != requester.user_id:
                raise UiaWrongUser(403, "M_FORBIDDEN", "Authenticated as another user than the requester")
        elif stage == "m.login.dummy":
            pass
        elif stage == RECAPTCHA_STAGE and self._recaptcha is not None:
            await self._recaptcha.verify(auth.get("response"), client_ip)
        elif stage_checker is None:   # m.login.sso: done through its fallback page, not by a POST
            raise MatrixError(400, "M_UNRECOGNIZED", f"The {stage} stage is not completed by a request")
        else:
            await stage_checker(stage, auth, session)
        if stage not in session.completed:
            session.completed.append(stage)
