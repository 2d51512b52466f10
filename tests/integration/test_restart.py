"""A restart in the middle: SIGTERM, start again on the same directory, nothing is lost.

Everything a client saw acknowledged survives; sync tokens, access tokens
and transaction ids from before the restart keep working.
"""

from __future__ import annotations

import http.client
import json
import time

from tests.integration.harness import STOP_TIMEOUT_S, q, unique


def bodies(events: list[dict]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def test_restart_keeps_everything(homeserver_factory):
    server = homeserver_factory()
    alice, bob = server.register(), server.register()
    room = alice.create_room(preset="public_chat", name="Durable")
    bob.join(room)
    before = [alice.send(room, f"before {i}") for i in range(5)]
    token = bob.sync()["next_batch"]
    txn = unique("txn")
    acknowledged = [alice.send(room, "acked 0", txn_id=txn)] + [alice.send(room, f"acked {i}") for i in range(1, 4)]
    alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Alice Durable"})
    filter_id = bob.ok("POST", f"/user/{q(bob.user_id)}/filter", {"room": {"timeline": {"limit": 3}}})["filter_id"]

    server.stop()
    server.start()

    # access tokens still valid
    assert alice.ok("GET", "/account/whoami")["user_id"] == alice.user_id
    assert bob.ok("GET", "/account/whoami")["device_id"] == bob.device_id
    # nothing acknowledged is lost
    history = alice.messages(room, dir="b", limit=50)["chunk"]
    assert [e["event_id"] for e in history if e["type"] == "m.room.message"] == (before + acknowledged)[::-1]
    assert alice.ok("GET", f"/rooms/{q(room)}/state/m.room.name/") == {"name": "Durable"}
    assert server.request("GET", f"/profile/{q(alice.user_id)}/displayname")[1] == {"displayname": "Alice Durable"}
    # the sync token from before the restart gives exactly what came after it
    incremental = bob.sync(token)
    events = incremental["rooms"]["join"][room]["timeline"]["events"]
    assert bodies(events) == ["acked 0", "acked 1", "acked 2", "acked 3"]
    assert bob.sync(token, filter=filter_id)["rooms"]["join"][room]["timeline"]["limited"] is True
    # a retried transaction is still recognised, and new events come after the old ones
    assert alice.send(room, "acked 0", txn_id=txn) == acknowledged[0]
    after = alice.send(room, "after restart")
    newer = bob.sync(incremental["next_batch"])
    assert [e["event_id"] for e in newer["rooms"]["join"][room]["timeline"]["events"]
            if e["type"] == "m.room.message"] == [after]
    assert alice.messages(room, dir="b", limit=1)["chunk"][0]["event_id"] == after
    # the passwords survived too
    server.login(bob.user_id)


def test_stop_during_long_poll_is_clean(homeserver_factory):
    """SIGTERM wakes a pending long-poll: it is answered, and the process still exits cleanly in time."""
    server = homeserver_factory()
    alice = server.register()
    since = alice.sync()["next_batch"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/_matrix/client/v3/sync?since={since}&timeout=120000",
                 headers={"Authorization": f"Bearer {alice.token}"})
    # A later request answered means the server has read the long-poll already (one reactor, in order).
    alice.ok("GET", "/account/whoami")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < STOP_TIMEOUT_S
    response = conn.getresponse()
    assert response.status == 200 and "next_batch" in json.loads(response.read())
    conn.close()
    server.start()
    assert alice.ok("GET", "/account/whoami")["user_id"] == alice.user_id
