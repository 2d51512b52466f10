"""Synapse's background updates admin API (element-hq/synapse docs/usage/administration/admin_api/
background_updates.md) over Hexagone's real periodic jobs: message retention purge jobs and media retention.
Their status counts what they really did; start_job runs one now; disabled, the periodic runs stop."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.integration.harness import register_admin, wait_for

BG = "/_synapse/admin/v1/background_updates"
LIFETIME_MS = 1000
DAY_MS = 24 * 60 * 60 * 1000


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory(retention={"enabled": True, "purge_jobs": [
        {"interval": DAY_MS, "longest_max_lifetime": 60_000}, {"interval": 300, "shortest_max_lifetime": 60_000}]})


@pytest.fixture(scope="module")
def admin(server):
    return register_admin(server)


def job(admin, name: str) -> dict:
    return next(j for j in admin.ok("GET", f"{BG}/status")["jobs"] if j["name"] == name)


def stored(admin, room_id: str) -> list[str]:
    chunk = admin.ok("GET", f"/_synapse/admin/v1/rooms/{quote(room_id)}/messages", params={"dir": "b"})["chunk"]
    return [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]


def test_status_lists_the_real_jobs(server, admin):
    status = admin.ok("GET", f"{BG}/status")
    assert status["enabled"] is True
    assert [j["name"] for j in status["jobs"]] == ["retention_purge_0", "retention_purge_1", "media_retention"]
    wait_for(lambda: job(admin, "media_retention")["runs"] >= 1, "media retention's first run at start-up")
    wait_for(lambda: job(admin, "retention_purge_1")["runs"] >= 2, "the 300 ms purge job running")
    assert job(admin, "retention_purge_0")["runs"] == 0  # daily, first run after a day


def test_start_job_purges_expired_events(server, admin):
    owner = server.register()
    room_id = owner.create_room()
    owner.put_state(room_id, "m.room.retention", {"max_lifetime": LIFETIME_MS})
    owner.send(room_id, "old news")
    wait_for(lambda: not [e for e in owner.messages(room_id, dir="b")["chunk"]
                          if e["content"].get("body") == "old news"], "the message to expire")
    owner.send(room_id, "latest")  # the room's latest event is never purged
    assert stored(admin, room_id) == ["latest", "old news"]
    before = job(admin, "retention_purge_0")
    assert admin.ok("POST", f"{BG}/start_job", {"job_name": "retention_purge_0"}) == {}
    wait_for(lambda: job(admin, "retention_purge_0")["runs"] == before["runs"] + 1, "the purge job run")
    after = job(admin, "retention_purge_0")
    assert after["total_item_count"] >= before["total_item_count"] + 1 and after["last_error"] is None
    assert stored(admin, room_id) == ["latest"]

    for body, errcode in (({"job_name": "populate_stats_process_rooms"}, "M_UNKNOWN"), ({}, "M_MISSING_PARAM")):
        status, answer = admin.request("POST", f"{BG}/start_job", body)
        assert (status, answer["errcode"]) == (400, errcode)


def test_disable_stops_periodic_runs_not_start_job(server, admin):
    assert admin.ok("POST", f"{BG}/enabled", {"enabled": False}) == {"enabled": False}
    assert admin.ok("GET", f"{BG}/enabled") == {"enabled": False}
    runs = job(admin, "retention_purge_1")["runs"]
    media_runs = job(admin, "media_retention")["runs"]
    admin.ok("POST", f"{BG}/start_job", {"job_name": "media_retention"})
    wait_for(lambda: job(admin, "media_retention")["runs"] == media_runs + 1, "media retention run on demand")
    admin.ok("POST", f"{BG}/start_job", {"job_name": "retention_purge_0"})
    wait_for(lambda: not job(admin, "retention_purge_0")["running"], "a manual purge run")
    assert job(admin, "retention_purge_1")["runs"] <= runs + 1  # at most the run already under way
    assert admin.ok("POST", f"{BG}/enabled", {"enabled": True}) == {"enabled": True}
    wait_for(lambda: job(admin, "retention_purge_1")["runs"] >= runs + 2, "periodic runs resumed")
    status, answer = admin.request("POST", f"{BG}/enabled", {"enabled": "yes"})
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
    audit = admin.ok("GET", "/_hexagone/admin/v1/audit?kind=admin_action&limit=10")["events"]
    assert "background_updates_disabled" in [e["details"]["action"] for e in audit]
    user = server.register()
    status, answer = user.request("GET", f"{BG}/status")
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")


def test_traffic_history_counts_requests_and_events(server, admin):
    """The console's charts read /_hexagone/admin/v1/traffic: counts per interval, the last one under way."""
    owner = server.register()
    room_id = owner.create_room()
    for i in range(3):
        owner.send(room_id, f"counted {i}")
    body = admin.ok("GET", "/_hexagone/admin/v1/traffic")
    assert body["interval_ms"] == 10_000 and body["points"]
    assert sum(p["requests"] for p in body["points"]) >= 5
    assert sum(p["local_events"] for p in body["points"]) >= 3 + 5  # the messages and the room's first events
    work = {w["name"]: w for w in admin.ok("GET", f"{BG}/status")["listener_work"]}
    assert set(work) == {"push_actions", "search_index", "user_directory", "delayed_event_cancels"}
    assert work["search_index"]["started"] >= 1 and work["push_actions"]["failed"] == 0
    assert all(p["remote_events"] == p["federation_rejected"] == 0 for p in body["points"])
    later = admin.ok("GET", f"/_hexagone/admin/v1/traffic?since={body['points'][-1]['ts']}")
    assert 1 <= len(later["points"]) <= 2  # the interval under way (and one just sampled)
