"""Push latency: from a message sent to its notification at the push gateway, and the sender's latency
with and without pushers (pushes never delay the send).

A room of PUSH_BENCH_USERS users (default 10; the figure quoted is 50), each with an HTTP pusher, gets
PUSH_BENCH_MESSAGES messages (default 60; quoted: 500) from one of them, one after the other, or
PUSH_BENCH_RATE a second when set. The gateway runs in its own process. Run:

    PUSH_BENCH_USERS=50 PUSH_BENCH_MESSAGES=500 .venv/bin/python -m pytest -p no:cacheprovider -q -s \\
        tests/integration/test_push_latency.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from tests.integration.harness import unique

USERS = int(os.environ.get("PUSH_BENCH_USERS", "10"))
MESSAGES = int(os.environ.get("PUSH_BENCH_MESSAGES", "60"))
RATE = float(os.environ.get("PUSH_BENCH_RATE", "0"))  # messages a second; 0: back to back


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def timed_sends(sender, room: str, label: str) -> list[tuple[str, float, float]]:
    """(event_id, monotonic time the send started, its latency) per message."""
    out = []
    first = time.monotonic()
    for i in range(MESSAGES):
        if RATE:
            time.sleep(max(0.0, first + i / RATE - time.monotonic()))  # pacing, not synchronisation
        start = time.monotonic()
        event_id = sender.send(room, f"{label} {i}")
        out.append((event_id, start, time.monotonic() - start))
    return out


def until_received(url: str, count: int, deadline_s: float = 600) -> list:
    """Poll the gateway process until it recorded ``count`` notifications."""
    end = time.monotonic() + deadline_s
    while True:
        with urllib.request.urlopen(url.replace("/_matrix/push/v1/notify", "/received")) as resp:
            received = json.loads(resp.read())
        if len(received) >= count:
            return received
        assert time.monotonic() < end, f"{len(received)} of {count} notifications after {deadline_s}s"
        time.sleep(0.5)


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.1f} ms, p99 {percentile(values, 99) * 1000:.1f} ms"


def test_push_latency_and_unchanged_send_latency(homeserver_factory):
    gateway = subprocess.Popen([sys.executable, "-m", "tests.integration.pushgateway"], stdout=subprocess.PIPE,
                               text=True)
    try:
        url = gateway.stdout.readline().strip()
        server = homeserver_factory(ip_range_whitelist=["127.0.0.1/32"])
        users = [server.register() for _ in range(USERS)]
        sender = users[0]
        room = sender.create_room(preset="public_chat")
        for user in users[1:]:
            user.join(room)
        without = timed_sends(sender, room, "no pushers")
        keys = {}
        for user in users:
            key = keys[user.user_id] = unique("key")
            user.ok("POST", "/pushers/set", {
                "kind": "http", "app_id": "org.example.bench", "pushkey": key, "app_display_name": "Bench",
                "device_display_name": "d", "lang": "en", "data": {"url": url}})
        sent = timed_sends(sender, room, "pushed")
        expected = MESSAGES * (USERS - 1)
        received = until_received(url, expected)
        started = {event_id: start for event_id, start, _ in sent}
        pushes = [(n["event_id"], n["devices"][0]["pushkey"], at) for at, n in received]
        assert len(pushes) == expected and len({(e, k) for e, k, _ in pushes}) == expected  # each once
        assert keys[sender.user_id] not in {k for _, k, _ in pushes}  # not the sender's own messages
        delays = [at - started[event_id] for event_id, _, at in pushes]
        before, after = [lat for _, _, lat in without], [lat for _, _, lat in sent]
        print(f"\npush latency over {MESSAGES} messages x {USERS - 1} pushers: {ms(delays)}")
        print(f"send latency without pushers: {ms(before)}; with pushers: {ms(after)}")
        # the send does not wait for pushes: the median stays of the same order
        assert statistics.median(after) < 3 * statistics.median(before) + 0.020
    finally:
        gateway.terminate()
        gateway.wait()
