"""Reporting content (spec v1.19 client-server "Reporting content": events, rooms v1.13, users v1.14) over real
HTTP, and the reports read and deleted through Synapse's admin API (element-hq/synapse
docs/admin_api/event_reports.md, room_reports.md) in its shapes; each report and deletion in the audit trail."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.integration.harness import register_admin, shared_room

V1 = "/_synapse/admin/v1"
EVENT_REPORT_FIELDS = {"id", "received_ts", "room_id", "name", "canonical_alias", "event_id", "user_id", "reason",
                       "score", "sender"}


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory()


@pytest.fixture(scope="module")
def admin(server):
    return register_admin(server)


def report_event(user, room_id, event_id, body):
    return user.request("POST", f"/rooms/{quote(room_id)}/report/{quote(event_id)}", body)


def test_event_reports_end_to_end(server, admin):
    alice, bob, outsider = server.register(), server.register(), server.register()
    room_id = shared_room(alice, bob)
    alice.put_state(room_id, "m.room.name", {"name": "Reported room"})
    bad = alice.send(room_id, "offensive")
    other = alice.send(room_id, "also offensive")

    assert report_event(bob, room_id, bad, {"reason": "rude", "score": -100}) == (200, {})
    assert report_event(bob, room_id, other, {}) == (200, {})  # reason optional
    for who, event_id, body in ((outsider, bad, {"reason": "x"}),  # not joined
                                (bob, "$nope:test.local", {"reason": "x"}),
                                (bob, bad.replace("$", "$x"), {"reason": "x"})):
        status, answer = report_event(who, room_id, event_id, body)
        assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    status, answer = report_event(bob, room_id, bad, {"reason": 12})
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    status, answer = report_event(bob, room_id, bad, {"score": "low"})
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")

    listed = admin.ok("GET", f"{V1}/event_reports?room_id={quote(room_id)}")
    assert listed["total"] == 2 and "next_token" not in listed
    newest, oldest = listed["event_reports"]
    assert set(newest) == EVENT_REPORT_FIELDS and newest["event_id"] == other and oldest["event_id"] == bad
    assert (oldest["reason"], oldest["score"], oldest["sender"], oldest["user_id"], oldest["name"]) == (
        "rude", -100, alice.user_id, bob.user_id, "Reported room")
    page = admin.ok("GET", f"{V1}/event_reports?room_id={quote(room_id)}&dir=f&limit=1")
    assert [r["event_id"] for r in page["event_reports"]] == [bad] and page["next_token"] == 1
    by_sender = admin.ok("GET", f"{V1}/event_reports?event_sender_user_id={quote(alice.user_id)}")
    assert by_sender["total"] == 2
    assert admin.ok("GET", f"{V1}/event_reports?user_id={quote(alice.user_id)}")["total"] == 0

    detail = admin.ok("GET", f"{V1}/event_reports/{oldest['id']}")
    assert detail["event_json"]["content"]["body"] == "offensive" and detail["event_json"]["sender"] == alice.user_id
    assert admin.ok("DELETE", f"{V1}/event_reports/{oldest['id']}", {}) == {}
    for method in ("GET", "DELETE"):
        status, answer = admin.request(method, f"{V1}/event_reports/{oldest['id']}", {} if method == "DELETE" else None)
        assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    status, answer = admin.request("GET", f"{V1}/event_reports/abc")
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")

    audit = admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=content_report&actor={quote(bob.user_id)}")["events"]
    assert [e["target"] for e in audit] == [other, bad]
    deleted = admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=admin_action&target={oldest['id']}")["events"]
    assert [e["details"]["action"] for e in deleted] == ["delete_event_report"]


def test_room_and_user_reports(server, admin):
    alice, carol = server.register(), server.register()
    room_id = alice.create_room(name="Spam room", topic="buy now")
    # Not joined: a room can still be reported; an unknown one cannot.
    assert carol.request("POST", f"/rooms/{quote(room_id)}/report", {"reason": "spam"}) == (200, {})
    assert carol.request("POST", f"/rooms/{quote(room_id)}/report", {"reason": ""}) == (200, {})
    status, answer = carol.request("POST", "/rooms/!unknown:test.local/report", {"reason": "spam"})
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    status, answer = carol.request("POST", f"/rooms/{quote(room_id)}/report", {})
    assert (status, answer["errcode"]) == (400, "M_MISSING_PARAM")

    listed = admin.ok("GET", f"{V1}/room_reports?room_id={quote(room_id)}&limit=1")
    assert listed["total"] == 2 and len(listed["room_reports"]) == 1
    first = listed["room_reports"][0]
    assert (first["reason"], first["name"], first["topic"], first["user_id"]) == ("", "Spam room", "buy now",
                                                                                 carol.user_id)
    rest = admin.ok("GET", f"{V1}/room_reports?room_id={quote(room_id)}&from={listed['next_batch']}")
    assert [r["reason"] for r in rest["room_reports"]] == ["spam"] and "next_batch" not in rest
    assert admin.ok("GET", f"{V1}/room_reports/{first['id']}")["room_id"] == room_id
    admin.ok("DELETE", f"/_synapse/admin/v2/rooms/{quote(room_id)}", {"purge": True})
    assert admin.ok("GET", f"{V1}/room_reports?room_id={quote(room_id)}") == {"room_reports": [], "total": 0}

    assert carol.request("POST", f"/users/{quote(alice.user_id)}/report", {"reason": "harasses"}) == (200, {})
    status, answer = carol.request("POST", f"/users/{quote('@ghost:test.local')}/report", {"reason": "x"})
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    status, answer = carol.request("POST", f"/users/{quote('@ghost:elsewhere.example')}/report", {"reason": "x"})
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    users = admin.ok("GET", f"/_hexagone/admin/v1/user_reports?target_user_id={quote(alice.user_id)}")
    assert [(r["user_id"], r["reason"]) for r in users["user_reports"]] == [(carol.user_id, "harasses")]

    for path in (f"{V1}/event_reports", f"{V1}/room_reports", "/_hexagone/admin/v1/user_reports"):
        status, answer = carol.request("GET", path)
        assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")


def test_reports_are_rate_limited(homeserver_factory):
    """rc_reports (Synapse's key): the spec's 429 once a reporter's burst is spent."""
    limited = homeserver_factory(rc_reports={"per_second": 0.01, "burst_count": 2})
    reporter, target = limited.register(), limited.register()
    answers = [reporter.request("POST", f"/users/{quote(target.user_id)}/report", {"reason": "spam"}) for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 429]
    assert answers[2][1]["errcode"] == "M_LIMIT_EXCEEDED" and answers[2][1]["retry_after_ms"] > 0
