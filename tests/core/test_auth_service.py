"""AuthService against concurrent requests, with a store that holds its reads until the test lets them go,
so that interleavings are exact.

Spec "Client Authentication", "Logout": a lookup reads the database, then caches what it read; a logout
deletes the token, then forgets it from the cache. A logout landing between the read and the caching must
not leave the token in the cache. "Login" and UIA m.login.password: rc_login.failed_attempts is checked
before any password is hashed, with the checks under way counted.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from homeserver.errors import MatrixError
from homeserver.requester import Requester
from homeserver.services.auth import AuthService
from homeserver.services.ratelimit import Ratelimiter
from homeserver.storage.accounts import TokenInfo

ALICE = "@alice:test.local"


class Store:
    """The AccountStore calls AuthService makes here, over a dict; ``hold`` pauses the next read."""

    def __init__(self):
        self.tokens = {"tok1": TokenInfo(ALICE, "PHONE", False, False),
                       "tok2": TokenInfo(ALICE, "LAPTOP", False, False)}
        self.reads = 0
        self.hold: Deferred | None = None

    async def get_token(self, token):
        self.reads += 1
        info = self.tokens.get(token)  # read now, answered when released
        if self.hold is not None:
            await self.hold
        return info

    async def get_user(self, user_id):
        self.reads += 1
        if self.hold is not None:
            await self.hold
        return None  # no such user: a wrong password, with no hashing needed

    async def delete_devices(self, user_id, device_ids):
        gone = [t for t, i in self.tokens.items() if i.user_id == user_id and (
            device_ids is None or i.device_id in device_ids)]
        for token in gone:
            del self.tokens[token]
        return device_ids or []

    async def delete_token(self, token):
        self.tokens.pop(token, None)


def resolve(auth: AuthService, token: str) -> Requester:
    d = ensureDeferred(auth.resolve_token(token))
    assert d.called
    return d.result


def service(failed_logins: Ratelimiter | None = None) -> tuple[AuthService, Store]:
    store = Store()
    return AuthService(store=store, clock=None, server_name="test.local", bcrypt_rounds=4, threads=None,
                       failed_logins=failed_logins), store


def test_a_token_is_read_once_then_served_from_the_cache():
    auth, store = service()
    assert resolve(auth, "tok1").device_id == "PHONE"
    assert resolve(auth, "tok1").device_id == "PHONE"
    assert store.reads == 1


def test_a_logout_during_a_lookup_is_not_undone_by_it():
    auth, store = service()
    resolve(auth, "tok2")  # another device's token is cached: the logout below must drop only tok1
    store.hold = Deferred()
    lookup = ensureDeferred(auth.resolve_token("tok1"))
    assert not lookup.called  # it has read the row and waits
    logout = ensureDeferred(auth.logout(Requester(ALICE, "PHONE", "tok1", False)))
    assert logout.called and "tok1" not in store.tokens
    release, store.hold = store.hold, None
    release.callback(None)
    assert lookup.result.device_id == "PHONE"  # that request came in before the logout
    failed = ensureDeferred(auth.resolve_token("tok1"))
    assert isinstance(failed.result.value, MatrixError) and failed.result.value.errcode == "M_UNKNOWN_TOKEN"
    failed.addErrback(lambda f: None)
    reads = store.reads
    assert resolve(auth, "tok2").device_id == "LAPTOP" and store.reads == reads  # still cached


def test_a_token_whose_device_logs_out_is_forgotten():
    auth, store = service()
    resolve(auth, "tok1")
    ensureDeferred(auth.delete_devices(ALICE, ["PHONE"]))
    failed = ensureDeferred(auth.resolve_token("tok1"))
    assert failed.result.value.errcode == "M_UNKNOWN_TOKEN"
    failed.addErrback(lambda f: None)


def test_guesses_under_way_count_against_the_failed_attempts_limit():
    """Five concurrent guesses with three failures allowed: two are refused before their password is
    looked at; once the three are known wrong, even one more is refused."""
    auth, store = service(Ratelimiter(Clock(), per_second=0.001, burst_count=3))
    store.hold = Deferred()
    guesses = [ensureDeferred(auth.validate_password(ALICE, f"guess {i}")) for i in range(5)]
    assert store.reads == 3 and [g.called for g in guesses] == [False, False, False, True, True]
    for refused in guesses[3:]:
        assert refused.result.value.errcode == "M_LIMIT_EXCEEDED"
        refused.addErrback(lambda f: None)
    release, store.hold = store.hold, None
    release.callback(None)
    for wrong in guesses[:3]:
        assert (wrong.result.value.status, wrong.result.value.errcode) == (403, "M_FORBIDDEN")
        wrong.addErrback(lambda f: None)
    late = ensureDeferred(auth.validate_password(ALICE, "guess 6"))
    assert late.result.value.errcode == "M_LIMIT_EXCEEDED" and store.reads == 3
    late.addErrback(lambda f: None)
