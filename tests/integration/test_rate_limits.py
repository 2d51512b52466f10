"""Every enforced ``rc_*`` key through real servers: with a tight limit in the configuration, the action past
the burst is answered 429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` and a ``Retry-After`` header (spec
client-server "Rate limiting", MSC4041), and other users, rooms and servers are unaffected
(``homeserver/services/ratelimit.py`` says where each key applies)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from homeserver.services.ratelimit import TARPIT_MAX_DELAY_S, TARPIT_MAX_HELD_PER_CLIENT
from tests.integration.harness import PASSWORD, User, q, unique

NO_REFILL = 0.0001  # per second: nothing comes back during a test


def bucket(burst: int) -> dict:
    return {"per_second": NO_REFILL, "burst_count": burst}


MESSAGE_BURST, ADMIN_REDACTION_BURST = 3, 2
LIMITS = dict(
    rc_message=bucket(MESSAGE_BURST), rc_admin_redaction=bucket(ADMIN_REDACTION_BURST),
    rc_joins={"local": bucket(2), "remote": bucket(1)}, rc_joins_per_room=bucket(3),
    rc_invites={"per_room": bucket(4), "per_user": bucket(2), "per_issuer": bucket(3)},
)
# A server of its own for the limits keyed by client IP (every test client is 127.0.0.1) and the per-account ones.
GATE_LIMITS = dict(
    rc_registration=bucket(3), rc_login={"address": bucket(100), "account": bucket(3), "failed_attempts": bucket(2)},
    rc_room_creation=bucket(2), rc_presence={"per_user": bucket(2)}, rc_user_directory=bucket(2),
)
TOKEN_LIMITS = dict(registration_requires_token=True, rc_registration_token_validity=bucket(2),
                    rc_login={"address": bucket(2)})
# rc_federation: from the third request in a minute each one waits SLEEP_MS, one at a time; past one request
# asleep or waiting, refused.
SLEEP_MS = 4000
FEDERATION_LIMITS = dict(rc_federation={"window_size": 60_000, "sleep_limit": 2, "sleep_delay": SLEEP_MS,
                                        "reject_limit": 1, "concurrent": 1})


@pytest.fixture(scope="module")
def limited(fed):
    """A server with tight client limits (it also serves federation, for remote joins)."""
    return fed(**LIMITS)


@pytest.fixture(scope="module")
def gate(homeserver_factory):
    return homeserver_factory(**GATE_LIMITS)


def account(server) -> User:
    """A user made with the shared-secret API (no /register, no /login), logged in by it."""
    body = server.shared_secret_register(unique())["body"]
    return User(server, body["user_id"], body["access_token"], body["device_id"])


def assert_limited(status: int, headers, body) -> None:
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED"), (status, body)
    assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] > 0, body
    assert int(headers["Retry-After"]) == -(-body["retry_after_ms"] // 1000), dict(headers)


def exchange(user, method: str, path: str, body=None, **kwargs):
    return user.server.client().exchange(method, path, body, user.token, **kwargs)


def send_path(room_id: str) -> str:
    return f"/rooms/{q(room_id)}/send/m.room.message/{unique('txn')}"


# -- rc_message: messages, state events, redactions, profile changes --------------------------------------
ACTIONS = {
    "message": lambda user, room, own: ("PUT", send_path(room), {"msgtype": "m.text", "body": "one more"}),
    "state": lambda user, room, own: ("PUT", f"/rooms/{q(room)}/state/m.room.topic/", {"topic": unique()}),
    "redaction": lambda user, room, own: ("PUT", f"/rooms/{q(room)}/redact/{q(own)}/{unique('txn')}", {}),
    "profile": lambda user, room, own: ("PUT", f"/profile/{q(user.user_id)}/displayname",
                                        {"displayname": unique()}),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_rc_message_counts_every_event_and_profile_change(limited, action):
    user, other = limited.process.register(), limited.process.register()
    room_id = user.create_room(preset="public_chat")
    other.join(room_id)
    own = [user.send(room_id, f"message {i}") for i in range(MESSAGE_BURST)]
    assert_limited(*exchange(user, *ACTIONS[action](user, room_id, own[0])))
    other.send(room_id, "others are unaffected")


def test_a_client_that_keeps_sending_gets_delayed_429s_and_others_are_served_promptly(limited):
    """The tarpit: the first 429 at once, each later one (still told to wait) after up to TARPIT_MAX_DELAY_S;
    at most TARPIT_MAX_HELD_PER_CLIENT held at once (the others answered at once), all released, and another
    user's send is not queued behind them."""
    user, other = limited.process.register(), limited.process.register()
    room_id = user.create_room(preset="public_chat")
    other.join(room_id)
    for i in range(MESSAGE_BURST):
        user.send(room_id, f"message {i}")
    message = {"msgtype": "m.text", "body": "one more"}

    def hammer() -> tuple[float, tuple]:
        started = time.monotonic()
        answer = exchange(user, "PUT", send_path(room_id), message)
        return time.monotonic() - started, answer

    told, answer = hammer()
    assert_limited(*answer)
    assert told < TARPIT_MAX_DELAY_S, told
    again, answer = hammer()
    assert_limited(*answer)
    assert again >= TARPIT_MAX_DELAY_S * 0.99, again

    n = 2 * TARPIT_MAX_HELD_PER_CLIENT
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(hammer) for _ in range(n)]
        started = time.monotonic()
        other.send(room_id, "served while the hammering user's requests are held")
        prompt = time.monotonic() - started
        assert prompt < TARPIT_MAX_DELAY_S and not all(f.done() for f in futures), prompt
        answers = [f.result() for f in futures]
    for _, answer in answers:
        assert_limited(*answer)
    held = sorted(round(d, 2) for d, _ in answers if d >= TARPIT_MAX_DELAY_S * 0.99)
    assert len(held) == TARPIT_MAX_HELD_PER_CLIENT, sorted(round(d, 2) for d, _ in answers)


def test_rc_admin_redaction_for_redactions_of_others_events(limited):
    moderator, member = limited.process.register(), limited.process.register()
    room_id = moderator.create_room(preset="public_chat")
    member.join(room_id)
    theirs = [member.send(room_id, f"spam {i}") for i in range(MESSAGE_BURST)]
    for event_id in theirs[:ADMIN_REDACTION_BURST]:
        moderator.ok("PUT", f"/rooms/{q(room_id)}/redact/{q(event_id)}/{unique('txn')}", {})
    assert_limited(*exchange(moderator, "PUT", f"/rooms/{q(room_id)}/redact/{q(theirs[-1])}/{unique('txn')}", {}))
    moderator.send(room_id, "rc_message is a bucket of its own")


# -- to-device and key uploads: rc_message's figures, buckets of their own --------------------------------
def test_to_device_sends_are_limited(limited):
    user, other = limited.process.register(), limited.process.register()
    message = {"messages": {other.user_id: {other.device_id: {"hello": "there"}}}}
    for _ in range(MESSAGE_BURST):
        user.ok("PUT", f"/sendToDevice/m.test/{unique('txn')}", message)
    assert_limited(*exchange(user, "PUT", f"/sendToDevice/m.test/{unique('txn')}", message))
    room_id = user.create_room()
    user.send(room_id, "messages are a bucket of their own")
    other.ok("PUT", f"/sendToDevice/m.test/{unique('txn')}",
             {"messages": {user.user_id: {user.device_id: {"hello": "back"}}}})


def test_key_uploads_are_limited(limited):
    user, other = limited.process.register(), limited.process.register()
    for i in range(MESSAGE_BURST):
        user.ok("POST", "/keys/upload", {"one_time_keys": {f"curve25519:K{i}": f"key{i}"}})
    assert_limited(*exchange(user, "POST", "/keys/upload", {"one_time_keys": {"curve25519:K9": "key9"}}))
    other.ok("POST", "/keys/upload", {"one_time_keys": {"curve25519:K0": "key0"}})


# -- rc_joins, rc_joins_per_room, rc_invites --------------------------------------------------------------
def test_rc_joins_local_per_user(limited):
    owner, joiner, other = (limited.process.register() for _ in range(3))
    rooms = [owner.create_room(preset="public_chat") for _ in range(3)]
    for room_id in rooms[:2]:
        joiner.join(room_id)
    assert_limited(*exchange(joiner, "POST", f"/join/{q(rooms[2])}", {}))
    other.join(rooms[2])


def test_rc_joins_per_room(limited):
    owner = limited.process.register()
    crowded, quiet = owner.create_room(preset="public_chat"), owner.create_room(preset="public_chat")
    for _ in range(3):
        limited.process.register().join(crowded)
    late = limited.process.register()
    assert_limited(*exchange(late, "POST", f"/join/{q(crowded)}", {}))
    late.join(quiet)


def test_rc_joins_remote_per_user(limited, hexagone_peer):
    host = hexagone_peer.process.register()
    remote_rooms = [host.create_room(preset="public_chat") for _ in range(2)]
    joiner = limited.process.register()
    joiner.ok("POST", f"/join/{q(remote_rooms[0])}", {}, params={"via": hexagone_peer.name})
    assert_limited(*exchange(joiner, "POST", f"/join/{q(remote_rooms[1])}", {}, params={"via": hexagone_peer.name}))
    joiner.join(limited.process.register().create_room(preset="public_chat"))  # local joins: rc_joins.local


def test_rc_invites_per_user_and_per_issuer(limited):
    invitee, late_invitee = limited.process.register(), limited.process.register()
    inviters = [limited.process.register() for _ in range(3)]
    for inviter in inviters[:2]:
        inviter.invite(inviter.create_room(), invitee)
    third = inviters[2].create_room()
    assert_limited(*exchange(inviters[2], "POST", f"/rooms/{q(third)}/invite", {"user_id": invitee.user_id}))
    inviters[2].invite(third, late_invitee)  # per_user: the invitee's bucket, not the inviter's

    issuer = limited.process.register()
    room_id = issuer.create_room()
    for _ in range(3):
        issuer.invite(room_id, limited.process.register())
    assert_limited(*exchange(issuer, "POST", f"/rooms/{q(room_id)}/invite",
                             {"user_id": limited.process.register().user_id}))


def test_rc_invites_per_room(limited):
    issuers = [limited.process.register() for _ in range(2)]
    room_id = issuers[0].create_room(preset="public_chat")
    issuers[1].join(room_id)
    for n in range(4):
        issuers[n // 3].invite(room_id, limited.process.register())  # 3 from the first (per_issuer), 1 more
    assert_limited(*exchange(issuers[1], "POST", f"/rooms/{q(room_id)}/invite",
                             {"user_id": limited.process.register().user_id}))
    issuers[1].invite(issuers[1].create_room(), limited.process.register())


def test_rc_invites_per_user_on_invites_from_other_servers(limited, hexagone_peer):
    """Synapse limits an invite arriving over federation by its invitee only (the room is the sender's job)."""
    invitee = limited.process.register()
    inviters = [hexagone_peer.process.register() for _ in range(3)]
    for inviter in inviters[:2]:
        inviter.invite(inviter.create_room(), invitee)
    room_id = inviters[2].create_room()
    status, err = inviters[2].request("POST", f"/rooms/{q(room_id)}/invite", {"user_id": invitee.user_id})
    assert status != 200, err  # (the inviting Hexagone answers 500 for any refusal by the invitee's server)
    invited, _ = invitee.sync_until(lambda r: len(r["rooms"]["invite"]) >= 2 and r["rooms"]["invite"])
    assert room_id not in invited
    other = limited.process.register()
    inviters[2].invite(room_id, other)


# -- registration, login, room creation, presence, user directory ---------------------------------------------
def test_rc_registration_per_ip(gate):
    for _ in range(3):
        gate.register()
    body = {"username": unique(), "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
    assert_limited(*gate.client().exchange("POST", "/register", body))


def test_rc_registration_token_validity_and_rc_login_address_per_ip(homeserver_factory):
    server = homeserver_factory(**TOKEN_LIMITS)
    path = "/_matrix/client/v1/register/m.login.registration_token/validity"
    for _ in range(2):
        assert server.request("GET", path, params={"token": "nope"}) == (200, {"valid": False})
    assert_limited(*server.client().exchange("GET", path, params={"token": "nope"}))
    user = account(server)
    for _ in range(2):
        server.login(user.user_id)
    assert_limited(*server.client().exchange("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id}, "password": PASSWORD}))


def _login(server, user_id: str, password: str = PASSWORD):
    return server.client().exchange("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password})


def test_rc_login_account(gate):
    user, other = account(gate), account(gate)
    for _ in range(3):
        gate.login(user.user_id)
    assert_limited(*_login(gate, user.user_id))
    gate.login(other.user_id)


def test_rc_login_failed_attempts(gate):
    user, other = account(gate), account(gate)
    for _ in range(2):
        status, _, body = _login(gate, user.user_id, "wrong password")
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert_limited(*_login(gate, user.user_id, "wrong password"))
    assert _login(gate, other.user_id, "wrong password")[0] == 403


def test_rc_room_creation(gate):
    user, other = account(gate), account(gate)
    for _ in range(2):
        user.create_room()
    assert_limited(*exchange(user, "POST", "/createRoom", {}))
    other.create_room()


def test_rc_presence_per_user(gate):
    user, other = account(gate), account(gate)
    for state in ("online", "unavailable"):
        user.ok("PUT", f"/presence/{q(user.user_id)}/status", {"presence": state})
    assert_limited(*exchange(user, "PUT", f"/presence/{q(user.user_id)}/status", {"presence": "online"}))
    other.ok("PUT", f"/presence/{q(other.user_id)}/status", {"presence": "online"})


def test_rc_user_directory(gate):
    user, other = account(gate), account(gate)
    for _ in range(2):
        user.ok("POST", "/user_directory/search", {"search_term": "someone"})
    assert_limited(*exchange(user, "POST", "/user_directory/search", {"search_term": "someone"}))
    other.ok("POST", "/user_directory/search", {"search_term": "someone"})


# -- rc_federation: per origin, and per IP on the key server -----------------------------------------------
def _burst(call, count: int) -> list[tuple[int, object, float]]:
    """``count`` calls at once; each one's (status, body, seconds taken)."""
    def timed(_):
        started = time.monotonic()
        status, body = call()
        return status, body, time.monotonic() - started
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(timed, range(count)))


def _assert_flood_limited(results) -> None:
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(429) >= 1 and statuses.count(200) >= 2, statuses
    for status, body, _ in results:
        if status == 429:
            assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0, body
    assert max(took for status, _, took in results if status == 200) >= SLEEP_MS / 1000 * 0.9  # one slept


def test_rc_federation_per_origin(fed, hexagone_peer, limited):
    guarded = fed(**FEDERATION_LIMITS)
    user = guarded.process.register()
    path = f"/_matrix/federation/v1/query/profile?user_id={q(user.user_id)}"

    def from_peer():
        return guarded.signed("GET", path, origin=hexagone_peer.name, key=hexagone_peer.signing_key)

    assert from_peer()[0] == 200  # the peer's key fetched once, outside the burst
    _assert_flood_limited(_burst(from_peer, 5))
    started = time.monotonic()
    status, _ = guarded.signed("GET", path, origin=limited.name, key=limited.signing_key)
    assert status == 200 and time.monotonic() - started < SLEEP_MS / 1000  # another origin: not delayed


def test_rc_federation_on_the_key_server_per_ip(fed):
    guarded = fed(**FEDERATION_LIMITS)
    query = {"server_keys": {guarded.name: {}}}

    def notary():
        status, body = guarded.process.request("POST", "/_matrix/key/v2/query", query)
        return status, body

    assert notary()[0] == 200
    _assert_flood_limited(_burst(notary, 5))
