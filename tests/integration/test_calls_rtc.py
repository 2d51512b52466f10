"""MatrixRTC on one server: call-member state keys, delayed events (MSC4140), RTC focus discovery, OpenID.

Issue 17. The members of a call are clients of a real Hexagone process; the one that dies is a real
process killed with SIGKILL, and the server is restarted (SIGTERM, start again) while its delayed
leave is pending.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.harness import REPO_ROOT, next_timeline, q, timeline_events, unique

CALL_MEMBER = "org.matrix.msc3401.call.member"
DELAY = "org.matrix.msc4140.delay"
DELAYED = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
FOCI = {"org.matrix.msc4143.rtc_foci": [{"type": "livekit", "livekit_service_url": "https://jwt.example.org"}]}
MAX_DELAY_MS = 60_000
PER_USER = 5
CALL_POWER = {"events": {CALL_MEMBER: 0}}  # as Element Call sets up a room for calls


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory(max_event_delay_duration=f"{MAX_DELAY_MS}ms", extra_well_known_client_content=FOCI,
                              experimental_features={"msc4140_max_delayed_events_per_user": PER_USER},
                              matrix_rtc={"transports": FOCI["org.matrix.msc4143.rtc_foci"]})


def member_key(user) -> str:
    return f"_@{user.user_id[1:]}_{user.device_id}_m.call"


def member_content(user, call_id: str = "") -> dict:
    """What Element Call puts in its per-device call-member state (MSC4143 session form)."""
    return {"application": "m.call", "call_id": call_id, "scope": "m.room", "device_id": user.device_id,
            "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
            "foci_preferred": FOCI["org.matrix.msc4143.rtc_foci"], "expires": 14_400_000}


def state_path(room: str, key: str) -> str:
    return f"/rooms/{q(room)}/state/{q(CALL_MEMBER)}/{q(key)}"


def schedule_leave(user, room: str, delay_ms: int) -> str:
    return user.ok("PUT", state_path(room, member_key(user)), {}, params={DELAY: delay_ms})["delay_id"]


def test_well_known_carries_the_rtc_foci(server):
    status, body = server.request("GET", "/.well-known/matrix/client")
    assert status == 200
    assert body["org.matrix.msc4143.rtc_foci"] == FOCI["org.matrix.msc4143.rtc_foci"]
    assert body["m.homeserver"]["base_url"]


def test_clients_discover_delayed_events_and_rtc_transports(server):
    """What Element Call reads before it uses delayed events and a LiveKit transport (Synapse's shapes)."""
    alice = server.register()
    unstable = server.request("GET", "/_matrix/client/versions")[1]["unstable_features"]
    assert unstable["org.matrix.msc4140"] is True and unstable["org.matrix.msc4143"] is True
    caps = alice.ok("GET", "/capabilities")["capabilities"]
    assert caps["org.matrix.msc4140.delayed_events"] == {"max_delay_ms": MAX_DELAY_MS, "max_scheduled": PER_USER}
    status, body = alice.request("GET", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports")
    assert (status, body) == (200, {"rtc_transports": FOCI["org.matrix.msc4143.rtc_foci"]})
    assert server.request("GET", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports")[0] == 401


def test_call_state_and_ringing_reach_a_long_poll_in_one_round(server):
    """A member joining the call and its m.rtc.notification (ringing) wake a /sync long-poll already waiting:
    the one response carries them."""
    alice, bob = server.register(), server.register()
    room = alice.create_room(preset="public_chat", power_level_content_override=CALL_POWER)
    bob.join(room)
    since = bob.sync()["next_batch"]
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(next_timeline, bob, room, since)
        started = time.monotonic()
        alice.ok("PUT", state_path(room, member_key(alice)), member_content(alice, call_id=""))
        events = poll.result()
    print(f"\ncall member state reached the waiting long-poll in {(time.monotonic() - started) * 1000:.0f} ms")
    assert [e["state_key"] for e in events if e["type"] == CALL_MEMBER] == [member_key(alice)]
    since = bob.sync()["next_batch"]
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(next_timeline, bob, room, since)
        ring = alice.send(room, {"notification_type": "ring", "sender_ts": int(time.time() * 1000), "lifetime": 30_000,
                                 "m.mentions": {"user_ids": [bob.user_id]}}, event_type="m.rtc.notification")
        assert [e["event_id"] for e in poll.result()] == [ring]


def test_openid_token_is_checked_by_userinfo(server):
    """What an SFU's token service (lk-jwt-service) does with the token a caller hands it."""
    alice = server.register()
    token = alice.ok("POST", f"/user/{q(alice.user_id)}/openid/request_token", {})
    assert token["token_type"] == "Bearer" and token["matrix_server_name"] and token["expires_in"] > 0
    status, info = server.request("GET", "/_matrix/federation/v1/openid/userinfo",
                                  params={"access_token": token["access_token"]})
    assert (status, info) == (200, {"sub": alice.user_id})
    status, err = server.request("GET", "/_matrix/federation/v1/openid/userinfo", params={"access_token": "nope"})
    assert (status, err["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    bob = server.register()
    assert bob.request("POST", f"/user/{q(alice.user_id)}/openid/request_token", {})[0] == 403


def test_openid_tokens_survive_a_restart(roomy):
    alice = roomy.register()
    token = alice.ok("POST", f"/user/{q(alice.user_id)}/openid/request_token", {})["access_token"]
    roomy.stop()
    roomy.start()
    assert roomy.request("GET", "/_matrix/federation/v1/openid/userinfo", params={"access_token": token}) == (
        200, {"sub": alice.user_id})


def test_call_member_keys_name_only_the_sender_and_its_device(server):
    alice, bob = server.register(), server.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alice.ok("PUT", state_path(room, member_key(alice)), member_content(alice))
    alice.ok("PUT", state_path(room, f"_@{alice.user_id[1:]}_{alice.device_id}"), member_content(alice))
    alice.ok("PUT", state_path(room, alice.user_id), {"memberships": []})  # the older per-user form
    refused = [
        f"_@{alice.user_id[1:]}_{alice.device_id}_m.call",  # bob naming alice's device
        f"_@{alice.user_id[1:]}_{bob.device_id}_m.call",  # bob's device under alice's name
        alice.user_id,
        "",
        "not-a-user",
    ]
    for key in refused:
        status, err = bob.request("PUT", state_path(room, key), member_content(bob))
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), key
    other_device = f"_@{bob.user_id[1:]}_OTHERDEVICE_m.call"
    status, err = bob.request("PUT", state_path(room, other_device), member_content(bob))
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    # ... and a delayed event may not name them either
    status, err = bob.request("PUT", state_path(room, member_key(alice)), {}, params={DELAY: 1000})
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    # the room's admin outranks bob: it may clear his stale call state (MSC3757), not the other way round
    levels = alice.ok("GET", f"/rooms/{q(room)}/state/m.room.power_levels/")
    alice.put_state(room, "m.room.power_levels", {**levels, "events": {**levels.get("events", {}), CALL_MEMBER: 0}})
    bob.ok("PUT", state_path(room, member_key(bob)), member_content(bob))
    alice.ok("PUT", state_path(room, member_key(bob)), {})
    assert bob.ok("GET", state_path(room, member_key(bob))) == {}


def test_delayed_event_lifecycle_and_refusals(server):
    alice, bob = server.register(), server.register()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    since = bob.sync()["next_batch"]
    txn = f"/rooms/{q(room)}/send/m.room.message/{unique('t')}"
    message = alice.ok("PUT", txn, {"msgtype": "m.text", "body": "later"}, params={DELAY: 50_000})["delay_id"]
    assert alice.ok("PUT", txn, {"msgtype": "m.text", "body": "later"}, params={DELAY: 50_000}) == {
        "delay_id": message}  # a retried request schedules once
    state = schedule_leave(alice, room, 40_000)
    listed = alice.ok("GET", DELAYED)["delayed_events"]
    assert [e["delay_id"] for e in listed] == [state, message]
    assert listed[0]["state_key"] == member_key(alice) and listed[0]["delay"] == 40_000
    assert "state_key" not in listed[1] and listed[1]["content"]["body"] == "later"
    assert listed[0]["running_since"] <= int(time.time() * 1000)
    assert bob.ok("GET", DELAYED)["delayed_events"] == []

    # someone else's delayed event is not found for them; an unknown action is refused
    for path, body in ((f"{DELAYED}/{state}", {"action": "restart"}), (f"{DELAYED}/{state}/restart", None),
                       (f"{DELAYED}/{message}", {"action": "cancel"})):
        status, err = bob.request("POST", path, body)
        assert (status, err["errcode"]) == (404, "M_NOT_FOUND"), path
    assert alice.request("POST", f"{DELAYED}/{state}", {"action": "later"})[1]["errcode"] == "M_INVALID_PARAM"
    assert alice.request("POST", f"{DELAYED}/{state}", {})[1]["errcode"] == "M_MISSING_PARAM"

    # restart moves running_since; send sends now; cancel forgets
    alice.ok("POST", f"{DELAYED}/{state}", {"action": "restart"})
    assert alice.ok("GET", DELAYED)["delayed_events"][0]["running_since"] >= listed[0]["running_since"]
    alice.ok("POST", f"{DELAYED}/{message}/send", {})
    event, since = bob.timeline_until(room, lambda e: e["type"] == "m.room.message", since)
    assert event["content"]["body"] == "later" and event["sender"] == alice.user_id
    # without an access token the delay ID alone is the capability (Synapse's per-action endpoints)
    assert server.request("POST", f"{DELAYED}/{state}/cancel", {})[0] == 200
    assert alice.ok("GET", DELAYED)["delayed_events"] == []
    assert alice.request("POST", f"{DELAYED}/{state}", {"action": "send"})[1]["errcode"] == "M_NOT_FOUND"

    # a delay above max_event_delay_duration, and more than the per-user count
    status, err = alice.request("PUT", state_path(room, member_key(alice)), {}, params={DELAY: MAX_DELAY_MS + 1})
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    ids = [schedule_leave(alice, room, 30_000 + i) for i in range(PER_USER)]
    status, err = alice.request("PUT", state_path(room, member_key(alice)), {}, params={DELAY: 1000})
    assert (status, err["errcode"]) == (429, "M_LIMIT_EXCEEDED") and err["retry_after_ms"] > 0
    for delay_id in ids:
        alice.ok("POST", f"{DELAYED}/{delay_id}/cancel", {})


def test_delayed_events_are_refused_when_not_configured(homeserver_factory):
    off = homeserver_factory()
    alice = off.register()
    room = alice.create_room()
    status, err = alice.request("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique('t')}", {"body": "x"},
                                params={DELAY: 1000})
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")


def test_delayed_event_management_is_rate_limited(homeserver_factory):
    """rc_delayed_event_mgmt (Synapse's default: 1/s, burst 5), per user."""
    throttled = homeserver_factory(throttled=True, max_event_delay_duration="1h")
    alice = throttled.register()
    room = alice.create_room()
    delay_id = alice.ok("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique('t')}", {"body": "x"},
                        params={DELAY: 60_000})["delay_id"]
    answers = [alice.request("POST", f"{DELAYED}/{delay_id}/restart", {}) for _ in range(6)]
    assert [status for status, _ in answers[:5]] == [200] * 5
    assert answers[5][0] == 429 and answers[5][1]["errcode"] == "M_LIMIT_EXCEEDED"


def test_state_set_by_another_user_cancels_a_pending_delayed_state(server):
    """Synapse's rule: newer state from someone else wins over a pending delayed state event."""
    alice, bob = server.register(), server.register()
    room = alice.create_room(preset="public_chat", power_level_content_override={"state_default": 0})
    bob.join(room)
    alice.ok("PUT", f"/rooms/{q(room)}/state/m.room.topic/", {"topic": "set by bob"}, params={DELAY: 30_000})
    keep = alice.ok("PUT", f"/rooms/{q(room)}/state/m.room.name/", {"name": "n"}, params={DELAY: 30_000})["delay_id"]
    bob.put_state(room, "m.room.topic", {"topic": "bob's"})
    deadline = time.monotonic() + 10
    while [e["delay_id"] for e in alice.ok("GET", DELAYED)["delayed_events"]] != [keep]:
        assert time.monotonic() < deadline, alice.ok("GET", DELAYED)
        time.sleep(0.05)
    alice.ok("POST", f"{DELAYED}/{keep}/cancel", {})


# A call member as its own process, so that it can be killed: it joins the call, schedules its leave and
# restarts the delay every HEARTBEAT_S until killed (or until its delayed event is gone).
MEMBER_SCRIPT = r"""
import json, sys, time, urllib.error, urllib.parse, urllib.request
base, token, room, key, delay_ms, heartbeat_s, content = sys.argv[1:8]
def call(method, path, body, params=None):
    url = base + "/_matrix/client" + path + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(url, json.dumps(body).encode(), method=method,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)
state = "/v3/rooms/%s/state/org.matrix.msc3401.call.member/%s" % (urllib.parse.quote(room, safe=""),
                                                                  urllib.parse.quote(key, safe=""))
call("PUT", state, json.loads(content))
delay_id = call("PUT", state, {}, {"org.matrix.msc4140.delay": delay_ms})["delay_id"]
print(delay_id, flush=True)
while True:
    time.sleep(float(heartbeat_s))
    try:
        call("POST", "/unstable/org.matrix.msc4140/delayed_events/" + delay_id, {"action": "restart"})
    except (OSError, urllib.error.URLError):
        pass  # the server is restarting: the next beat goes through
"""


def start_member(user, room: str, delay_ms: int, heartbeat_s: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", MEMBER_SCRIPT, user.server.base_url, user.token, room,
                             member_key(user), str(delay_ms), str(heartbeat_s), json.dumps(member_content(user))],
                            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    return proc, proc.stdout.readline().strip()


@pytest.fixture(scope="module")
def roomy(homeserver_factory):
    """A server with Synapse's default per-user count (100) and a long maximum delay."""
    return homeserver_factory(max_event_delay_duration="1h")


def test_a_killed_member_leaves_the_call_within_its_delay_across_a_server_restart(roomy):
    server = roomy
    users = [server.register() for _ in range(3)]
    watcher = server.register()
    room = users[0].create_room(preset="public_chat", power_level_content_override=CALL_POWER)
    for u in users[1:] + [watcher]:
        u.join(room)
    since = watcher.sync()["next_batch"]
    delay_ms, heartbeat_s = 8000, 0.5
    members = [start_member(u, room, delay_ms, heartbeat_s) for u in users]
    try:
        assert all(delay_id.startswith("syd_") for _, delay_id in members)
        keys = {member_key(u) for u in users}
        seen: set[str] = set()

        def all_joined(resp) -> bool:
            seen.update(e["state_key"] for e in timeline_events(resp, room) if e["type"] == CALL_MEMBER and e["content"])
            return seen == keys

        _, since = watcher.sync_until(all_joined, since)

        victim, victim_proc = users[1], members[1][0]
        victim_proc.send_signal(signal.SIGKILL)  # no hangup, no more heartbeats
        victim_proc.wait()
        killed_at = time.time()
        server.stop()
        server.start()
        leave, since = watcher.timeline_until(
            room, lambda e: e["type"] == CALL_MEMBER and e["state_key"] == member_key(victim) and e["content"] == {},
            since)
        lateness = leave["origin_server_ts"] / 1000 - killed_at
        print(f"\nkilled member left {lateness:.2f}s after the kill (delay {delay_ms / 1000:.1f}s, "
              f"heartbeat {heartbeat_s}s, server restarted in between)")
        assert delay_ms / 1000 - heartbeat_s - 0.5 <= lateness <= delay_ms / 1000 + 2
        # the two living members are still in the call
        for u in (users[0], users[2]):
            status, content = u.request("GET", state_path(room, member_key(u)))
            assert status == 200 and content["application"] == "m.call", content
        assert len(users[0].ok("GET", DELAYED)["delayed_events"]) == 1
    finally:
        for proc, _ in members:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_delayed_event_lateness(roomy):
    """100 delayed messages due over two seconds: how late each is sent (its origin_server_ts against its due
    time in the listing). Prints the median and the maximum."""
    alice = roomy.register()
    room = alice.create_room()
    since = alice.sync()["next_batch"]
    for i in range(100):
        alice.ok("PUT", f"/rooms/{q(room)}/send/m.room.message/{unique('t')}",
                 {"msgtype": "m.text", "body": f"d{i}"}, params={DELAY: 3000 + 20 * i})
    due = {e["content"]["body"]: e["running_since"] + e["delay"] for e in alice.ok("GET", DELAYED)["delayed_events"]}
    assert len(due) == 100
    sent: dict[str, int] = {}

    def all_sent(resp) -> bool:
        sent.update((e["content"]["body"], e["origin_server_ts"]) for e in timeline_events(resp, room)
                    if e["type"] == "m.room.message")
        return len(sent) == 100

    alice.sync_until(all_sent, since, deadline_s=30)
    late = sorted(sent[body] - due[body] for body in due)
    print(f"\ndelayed event lateness over 100 events: median {statistics.median(late):.0f} ms, "
          f"max {late[-1]} ms, min {late[0]} ms")
    assert late[0] >= 0 and late[-1] < 1000


def test_call_members_of_three_servers_leave_by_their_own_servers_delayed_events(fed, ca, tmp_path_factory):
    """A room call with members on two Hexagones and a Synapse: each member's server sends its delayed leave
    (none of them restarts it: three vanished clients), and the room's other servers see every leave."""
    from tests.integration.synapse import SynapseProcess
    home, other = fed(max_event_delay_duration="1h"), fed(max_event_delay_duration="1h")
    synapse = SynapseProcess(str(tmp_path_factory.mktemp("synapse-rtc")), ca,
                             extra={"max_event_delay_duration": "1h"}).start()
    try:
        owner = home.process.register()
        members = [owner, other.process.register(), synapse.register()]
        alias = unique("call")
        room = owner.create_room(preset="public_chat", room_alias_name=alias, power_level_content_override=CALL_POWER)
        for m in members[1:]:
            m.join(f"#{alias}:{home.name}")
            owner.timeline_until(room, lambda e: e.get("state_key") == m.user_id)
        since = members[1].sync()["next_batch"]
        for i, m in enumerate(members):
            m.ok("PUT", state_path(room, member_key(m)), member_content(m))
            assert schedule_leave(m, room, 2000 + 500 * i).startswith("syd_")
        keys = {member_key(m) for m in members}
        left: set[str] = set()

        def all_left(resp) -> bool:
            left.update(e["state_key"] for e in timeline_events(resp, room)
                        if e["type"] == CALL_MEMBER and e["content"] == {})
            return left == keys

        members[1].sync_until(all_left, since, deadline_s=30)  # seen from the second Hexagone
        for m in members:
            assert m.ok("GET", state_path(room, member_key(m))) == {}
    finally:
        synapse.stop()


def test_a_fork_from_before_a_member_left_does_not_bring_it_back(fed):
    """State resolution after a branch from before the delayed leave: the member stays out of the call (no state
    reset), in the room state and in /sync."""
    from tests.integration.federation import EventForge, send_transaction
    host, forger = fed(max_event_delay_duration="1h"), fed()
    owner, visitor = host.process.register(), forger.process.register()
    alias = unique("call")
    room = owner.create_room(preset="public_chat", room_alias_name=alias, power_level_content_override=CALL_POWER)
    visitor.join(f"#{alias}:{host.name}")
    owner.timeline_until(room, lambda e: e.get("state_key") == visitor.user_id)
    owner.ok("PUT", state_path(room, member_key(owner)), member_content(owner))
    forge = EventForge(host, owner, room, forger, visitor)  # on top of the newest event: owner in the call
    since = owner.sync()["next_batch"]
    owner.ok("POST", f"{DELAYED}/{schedule_leave(owner, room, 60_000)}/send", {})
    owner.timeline_until(room, lambda e: e.get("state_key") == member_key(owner) and e["content"] == {}, since)
    since = owner.sync()["next_batch"]
    fork = forge.event(visitor.user_id, CALL_MEMBER, member_content(visitor), state_key=member_key(visitor))
    assert send_transaction(host, forger, [fork]) == {fork["_id"]: {}}
    owner.timeline_until(room, lambda e: e["event_id"] == fork["_id"], since)
    assert owner.ok("GET", state_path(room, member_key(owner))) == {}
    assert owner.ok("GET", state_path(room, member_key(visitor)))["device_id"] == visitor.device_id
    resp = owner.sync(since)
    room_sync = resp["rooms"]["join"].get(room, {})
    back = [e for e in room_sync.get("state", {}).get("events", []) + room_sync.get("timeline", {}).get("events", [])
            if e.get("state_key") == member_key(owner) and e["content"]]
    assert back == []
