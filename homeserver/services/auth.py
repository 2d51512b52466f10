"""Access tokens, passwords, devices and user-interactive auth.

Spec: client-server "Client Authentication", "User-Interactive Authentication API",
"Device management".
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field

import bcrypt
from twisted.internet import threads

from homeserver.errors import InteractiveAuthRequired, MatrixError, forbidden, unknown_token
from homeserver.http.router import Requester
from homeserver.storage.accounts import AccountStore

UIA_SESSION_LIFETIME_MS = 15 * 60 * 1000


def random_string(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class UiaSession:
    created_ms: int
    request_fingerprint: str
    completed: list[str] = field(default_factory=list)
    user_id: str | None = None
    extra: dict = field(default_factory=dict)


class AuthService:
    def __init__(self, *, store: AccountStore, clock, server_name: str, bcrypt_rounds: int, reactor):
        self._store = store
        self._clock = clock
        self.server_name = server_name
        self._rounds = bcrypt_rounds
        self._reactor = reactor
        self._token_cache: dict[str, Requester] = {}
        self._uia: dict[str, UiaSession] = {}
        self.on_devices_removed: list = []   # callbacks(user_id, device_ids)

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- passwords ---------------------------------------------------------------------
    async def hash_password(self, password: str) -> str:
        salt = bcrypt.gensalt(self._rounds)
        hashed = await threads.deferToThread(bcrypt.hashpw, password.encode("utf-8"), salt)
        return hashed.decode("ascii")

    async def check_password(self, user_id: str, password: str) -> bool:
        user = await self._store.get_user(user_id)
        if user is None or user["deactivated"] or not user["password_hash"]:
            return False
        stored = user["password_hash"].encode("ascii")
        return await threads.deferToThread(bcrypt.checkpw, password.encode("utf-8"), stored)

    # -- tokens ------------------------------------------------------------------------
    async def resolve_token(self, token: str) -> Requester:
        cached = self._token_cache.get(token)
        if cached is not None:
            return cached
        info = await self._store.get_token(token)
        if info is None or info.deactivated:
            raise unknown_token()
        requester = Requester(info.user_id, info.device_id, token, info.is_admin)
        if len(self._token_cache) > 100_000:
            self._token_cache.clear()
        self._token_cache[token] = requester
        return requester

    async def login_device(self, user_id: str, device_id: str | None, display_name: str | None,
                           client_ip: str | None) -> tuple[str, str]:
        """Create or reuse a device and issue an access token: (device_id, token)."""
        device_id = device_id or random_string(10, string.ascii_uppercase)
        token = "syt_" + random_string(40)
        for cached_token, req in list(self._token_cache.items()):
            if req.user_id == user_id and req.device_id == device_id:
                del self._token_cache[cached_token]
        await self._store.add_device_and_token(user_id, device_id, token, display_name=display_name,
                                               now_ms=self.now_ms(), client_ip=client_ip)
        return device_id, token

    async def logout(self, requester: Requester) -> None:
        """Spec /logout: the token and its device go."""
        if requester.device_id is not None:
            await self.delete_devices(requester.user_id, [requester.device_id])
        else:
            await self._store.delete_token(requester.access_token)
        self._token_cache.pop(requester.access_token, None)

    async def delete_devices(self, user_id: str, device_ids: list[str] | None) -> list[str]:
        removed = await self._store.delete_devices(user_id, device_ids)
        self._forget_tokens(user_id, None if device_ids is None else set(device_ids))
        for callback in self.on_devices_removed:
            await callback(user_id, removed)
        return removed

    def _forget_tokens(self, user_id: str, device_ids: set[str] | None, keep_token: str | None = None) -> None:
        for token, req in list(self._token_cache.items()):
            if req.user_id == user_id and token != keep_token and (device_ids is None or req.device_id in device_ids):
                del self._token_cache[token]

    async def set_password(self, requester: Requester, new_password: str, logout_devices: bool) -> None:
        hashed = await self.hash_password(new_password)
        removed = await self._store.set_password_hash(requester.user_id, hashed, keep_device=requester.device_id,
                                                      logout_devices=logout_devices)
        if logout_devices:
            self._forget_tokens(requester.user_id, None, keep_token=requester.access_token)
            for callback in self.on_devices_removed:
                await callback(requester.user_id, removed)

    async def deactivate(self, user_id: str) -> None:
        removed = await self._store.deactivate(user_id)
        self._forget_tokens(user_id, None)
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
    async def check_uia(self, body: dict, flows: list[list[str]], *, fingerprint: str,
                        requester: Requester | None, stage_checker=None) -> UiaSession:
        """Spec "User-Interactive Authentication API": complete a stage per call until a flow is done."""
        self._expire_uia()
        auth = body.get("auth")
        session: UiaSession | None = None
        session_id = None
        if isinstance(auth, dict) and isinstance(auth.get("session"), str):
            session_id = auth["session"]
            session = self._uia.get(session_id)
            if session is None:
                raise MatrixError(400, "M_UNKNOWN", "Unknown UIA session")
            if session.request_fingerprint != fingerprint:
                raise forbidden("Requested operation has changed during the UI authentication session")
        if session is None:
            session_id = random_string(24)
            session = self._uia[session_id] = UiaSession(self.now_ms(), fingerprint)
        error = None
        if isinstance(auth, dict) and auth.get("type"):
            try:
                await self._complete_stage(session, auth, requester, stage_checker)
            except MatrixError as e:
                error = e
        for flow in flows:
            if all(stage in session.completed for stage in flow):
                del self._uia[session_id]
                return session
        body_out = {"flows": [{"stages": f} for f in flows], "params": {}, "session": session_id,
                    "completed": list(session.completed)}
        if error is not None:
            body_out.update(errcode=error.errcode, error=error.error)
        raise InteractiveAuthRequired(body_out)

    async def _complete_stage(self, session: UiaSession, auth: dict, requester: Requester | None,
                              stage_checker) -> None:
        stage = auth["type"]
        if stage == "m.login.password":
            user_id = await self.user_from_identifier(auth)
            if requester is not None and user_id != requester.user_id:
                raise forbidden("Invalid username or password")
            if not isinstance(auth.get("password"), str) or not await self.check_password(user_id, auth["password"]):
                raise forbidden("Invalid username or password")
            session.user_id = user_id
        elif stage == "m.login.dummy":
            pass
        elif stage_checker is not None:
            await stage_checker(stage, auth, session)
        else:
            raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown auth stage {stage}")
        if stage not in session.completed:
            session.completed.append(stage)

    def _expire_uia(self) -> None:
        cutoff = self.now_ms() - UIA_SESSION_LIFETIME_MS
        for sid in [s for s, v in self._uia.items() if v.created_ms < cutoff]:
            del self._uia[sid]
