"""Account registration (client-server "Account registration and management")."""

from __future__ import annotations

import hashlib
import hmac
import re

from homeserver.errors import MatrixError, forbidden
from homeserver.services.auth import AuthService, random_string
from homeserver.storage.accounts import AccountStore

LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")
NONCE_LIFETIME_MS = 60_000


class RegistrationService:
    def __init__(self, *, store: AccountStore, auth: AuthService, config, clock, appservices):
        self._store = store
        self._appservices = appservices  # exclusive namespaces (application service API)
        self._auth = auth
        self._config = config
        self._clock = clock
        self._nonces: dict[str, int] = {}
        self.on_registered: list = []   # callbacks(user_id)

    @property
    def server_name(self) -> str:
        return self._config.server_name

    def flows(self) -> list[list[str]]:
        """With enable_registration_captcha, every flow starts with m.login.recaptcha (as Synapse)."""
        captcha = ["m.login.recaptcha"] if self._config.enable_registration_captcha else []
        if self._config.registration_requires_token:
            return [captcha + ["m.login.registration_token"]]
        return [captcha + ["m.login.dummy"]]

    def check_localpart(self, localpart: str) -> str:
        """Spec "User Identifiers": the historical lowercase grammar, 255 bytes for the whole id."""
        if not isinstance(localpart, str) or not localpart:
            raise MatrixError(400, "M_INVALID_USERNAME", "Username must be a non-empty string")
        localpart = localpart.lower()
        if not LOCALPART_RE.fullmatch(localpart):  # ($ would let a final newline through)
            raise MatrixError(400, "M_INVALID_USERNAME",
                              "Username may only contain a-z, 0-9, ., _, =, -, / and +")
        user_id = f"@{localpart}:{self.server_name}"
        if len(user_id.encode()) > 255:
            raise MatrixError(400, "M_INVALID_USERNAME", "Username is too long")
        return user_id

    async def exists(self, user_id: str) -> bool:
        return await self._store.user_exists(user_id)

    async def check_available(self, localpart: str, appservice_id: str | None = None) -> str:
        """The user id, free and (``M_EXCLUSIVE`` otherwise) not reserved by another application service;
        an appservice's registration must be in its own namespace."""
        user_id = self.check_localpart(localpart)
        self._appservices.check_user_id(user_id, appservice_id)
        if await self._store.find_user_case_insensitive(user_id):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        return user_id

    async def token_stage(self, stage: str, auth: dict, session) -> None:
        """UIA stage m.login.registration_token (spec "Token-authenticated registration")."""
        if stage != "m.login.registration_token" or not self._config.registration_requires_token:
            raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown auth stage {stage}")
        token = auth.get("token")
        if not isinstance(token, str) or not await self._store.registration_token_valid(token, self._auth.now_ms()):
            raise MatrixError(401, "M_FORBIDDEN", "Invalid registration token")
        session.registration_token = token

    async def register(self, localpart: str | None, password: str | None, *, admin: bool = False,
                       registration_token: str | None = None, appservice_id: str | None = None) -> str:
        if localpart is None:
            localpart = await self._free_numeric_localpart()
        user_id = await self.check_available(localpart, appservice_id)
        hashed = await self._auth.hash_password(password) if password else None
        if registration_token is not None and not await self._store.use_registration_token(
                registration_token, self._auth.now_ms()):
            raise MatrixError(401, "M_FORBIDDEN", "Invalid registration token")
        if not await self._store.create_user(user_id, hashed, admin=admin, now_ms=self._auth.now_ms(),
                                             displayname=localpart):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        for callback in self.on_registered:
            await callback(user_id)
        return user_id

    # -- client-server "Guest Access" -------------------------------------------------------
    async def register_guest(self) -> str:
        """A guest account, its localpart numeric as Synapse's (``allow_guest_access``)."""
        if not self._config.allow_guest_access:
            raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
        for _ in range(3):   # another registration may take the number first
            localpart = await self._free_numeric_localpart()
            user_id = self.check_localpart(localpart)
            if await self._store.create_user(user_id, None, admin=False, now_ms=self._auth.now_ms(),
                                             displayname=localpart, guest=True):
                return user_id
        raise MatrixError(503, "M_UNKNOWN", "Could not allocate a guest user id; try again")

    async def guest_to_upgrade(self, guest_access_token: str, localpart: str | None) -> str:
        """The guest whose token is ``guest_access_token``: only that guest's own localpart may be registered
        with it (403 otherwise, as Synapse)."""
        if not isinstance(guest_access_token, str):
            raise MatrixError(400, "M_INVALID_PARAM", "guest_access_token must be a string")
        try:
            guest = await self._auth.resolve_token(guest_access_token)
        except MatrixError:
            raise forbidden("Invalid guest access token") from None
        if not guest.is_guest or (localpart is not None and self.check_localpart(localpart) != guest.user_id):
            raise forbidden("Cannot register taken user ID without valid guest credentials for that user")
        return guest.user_id

    async def upgrade_guest(self, user_id: str, password: str | None) -> str:
        """The guest becomes a full account, keeping its user id (spec "Guest Access")."""
        hashed = await self._auth.hash_password(password) if password else None
        if not await self._store.upgrade_guest(user_id, hashed):
            raise forbidden("This account is not a guest account")
        self._auth.forget_cached_tokens(user_id)
        return user_id

    async def _free_numeric_localpart(self) -> str:
        start = await self._store.count_users() + 1
        for n in range(start, start + 1000):
            if not await self._store.user_exists(f"@{n}:{self.server_name}"):
                return str(n)
        return random_string(12).lower()

    # -- registration tokens (spec "Token-authenticated registration"; Synapse's admin API) --------
    async def token_valid(self, token: str) -> bool:
        return await self._store.registration_token_valid(token, self._auth.now_ms())

    async def registration_tokens(self, valid: bool | None = None) -> list[dict]:
        """Every token; with ``valid``, only those that can (True) or cannot (False) still be used."""
        tokens = await self._store.registration_tokens()
        if valid is None:
            return tokens
        now = self._auth.now_ms()
        usable = [t for t in tokens if (t["expiry_time"] is None or t["expiry_time"] > now)
                  and (t["uses_allowed"] is None or t["completed"] + t["pending"] < t["uses_allowed"])]
        return usable if valid else [t for t in tokens if t not in usable]

    async def registration_token(self, token: str) -> dict | None:
        found = await self._store.registration_tokens(token)
        return found[0] if found else None

    async def create_registration_token(self, token: str, uses_allowed: int | None,
                                        expiry_time: int | None) -> bool:
        """False when the token already exists."""
        return await self._store.create_registration_token(token, uses_allowed, expiry_time)

    async def update_registration_token(self, token: str, changes: dict) -> bool:
        return await self._store.update_registration_token(token, changes)

    async def delete_registration_token(self, token: str) -> bool:
        return await self._store.delete_registration_token(token)

    # -- Synapse's shared-secret registration (/_synapse/admin/v1/register) ---------------------
    def new_nonce(self) -> str:
        now = self._auth.now_ms()
        for nonce in [n for n, t in self._nonces.items() if t < now - NONCE_LIFETIME_MS]:
            del self._nonces[nonce]
        nonce = random_string(32)
        self._nonces[nonce] = now
        return nonce

    async def register_with_shared_secret(self, body: dict) -> str:
        secret = self._config.registration_shared_secret
        if not secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        nonce = body.get("nonce")
        if not isinstance(nonce, str) or self._nonces.pop(nonce, None) is None:
            raise MatrixError(400, "M_UNKNOWN", "unrecognised nonce")
        username, password, mac = body.get("username"), body.get("password"), body.get("mac")
        if not isinstance(username, str) or not isinstance(password, str) or not isinstance(mac, str):
            raise MatrixError(400, "M_INVALID_PARAM", "username, password and mac must be strings")
        admin = bool(body.get("admin", False))
        user_type = body.get("user_type")
        digest = hmac.new(secret.encode(), digestmod=hashlib.sha1)
        digest.update(nonce.encode() + b"\x00" + username.encode() + b"\x00" + password.encode() + b"\x00")
        digest.update(b"admin" if admin else b"notadmin")
        if user_type:
            digest.update(b"\x00" + str(user_type).encode())
        if not hmac.compare_digest(digest.hexdigest(), mac):
            raise forbidden("HMAC incorrect")
        return await self.register(username, password, admin=admin)
