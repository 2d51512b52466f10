"""Message retention (m.room.retention with Synapse's ``retention`` config) and the admin API's history purges,
between real servers: ``home`` purges often, ``peer`` (a Hexagone, then a Synapse) keeps everything, ``joiner``
hides expired events but only purges once a day. A purge never breaks the room: new members join (one through ``home`` over
federation), the state stays whole and every server agrees on it."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.integration.harness import ServerError, register_admin, timeline_events, unique, wait_for
from tests.integration.media_client import AUTHED, download, split_mxc, upload

RETENTION = "m.room.retention"
LIFETIME_MS = 3000  # long enough for a message to reach every server (and the tests' reads) in time
DAY_MS = 24 * 60 * 60 * 1000
PURGE = "/_synapse/admin/v1/purge_history"


@pytest.fixture(scope="module")
def servers(fed):
    home = fed(retention={"enabled": True, "purge_jobs": [{"interval": 200}]})
    peer = fed()
    joiner = fed(retention={"enabled": True})
    return home, peer, joiner


def bodies(events: list[dict]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def stored_bodies(admin, room_id: str) -> list[str]:
    """The messages the server still holds (the admin API reads them whatever their age)."""
    return bodies(admin.ok("GET", f"/_synapse/admin/v1/rooms/{quote(room_id)}/messages",
                           params={"dir": "b", "limit": 1000})["chunk"])


def visible_bodies(user, room_id: str) -> list[str]:
    return bodies(user.messages(room_id, dir="b", limit=100)["chunk"])


def state_ids(user, room_id: str) -> set[tuple[str, str, str]]:
    return {(e["type"], e["state_key"], e["event_id"]) for e in user.ok("GET", f"/rooms/{quote(room_id)}/state")}


def found_by_search(user, term: str) -> list[str]:
    results = user.ok("POST", "/search", {"search_categories": {"room_events": {"search_term": term}}})
    return [r["result"]["event_id"] for r in results["search_categories"]["room_events"]["results"]]


def public_room(owner) -> tuple[str, str]:
    alias = unique("keep")
    room_id = owner.create_room(preset="public_chat", room_alias_name=alias)
    return room_id, f"#{alias}:{owner.server.config['server_name']}"


def test_expired_events_are_hidden_before_any_purge(servers):
    _home, _peer, joiner = servers
    admin, owner = register_admin(joiner.process), joiner.process.register()
    room_id, _alias = public_room(owner)
    owner.put_state(room_id, RETENTION, {"max_lifetime": LIFETIME_MS})
    owner.send(room_id, "soon gone")
    wait_for(lambda: "soon gone" not in visible_bodies(owner, room_id), "the message to leave the window")
    assert "soon gone" in stored_bodies(admin, room_id)  # hidden, not purged: the job runs once a day
    owner.send(room_id, "recent")
    initial = timeline_events(owner.sync(), room_id)
    assert bodies(initial) == ["recent"]
    assert visible_bodies(owner, room_id) == ["recent"]
    assert any(e["type"] == RETENTION for e in owner.ok("GET", f"/rooms/{quote(room_id)}/state"))


@pytest.mark.parametrize("peer_kind", ["hexagone", "synapse"])
def test_the_purge_job_deletes_old_messages_and_the_room_keeps_working(servers, peer_kind, request):
    home, peer, joiner = servers
    if peer_kind == "synapse":
        peer = request.getfixturevalue("synapse_peer")
    admin, owner = register_admin(home.process), home.process.register()
    remote = peer.process.register()
    room_id, alias = public_room(owner)
    owner.put_state(room_id, RETENTION, {"max_lifetime": LIFETIME_MS})
    assert remote.join(alias) == room_id
    remote.send(room_id, "old remote")
    wait_for(lambda: "old remote" in stored_bodies(admin, room_id), "the remote message to reach home")
    owner.send(room_id, "old local")
    owner.put_state(room_id, "m.room.topic", {"topic": "kept"})  # the latest event, a state event
    state_before = state_ids(owner, room_id)

    wait_for(lambda: not {"old remote", "old local"} & set(stored_bodies(admin, room_id)),
             "the purge job to delete the expired messages")
    assert state_ids(owner, room_id) == state_before
    assert visible_bodies(owner, room_id) == []
    assert "old local" in visible_bodies(remote, room_id)  # the peer has no retention: its copy stays
    owner.put_state(room_id, RETENTION, {"max_lifetime": DAY_MS})  # what follows is not racing the clock

    # the room keeps working: a local member, a member joining through home over federation, new messages
    newcomer, visitor = home.process.register(), joiner.process.register()
    assert newcomer.join(room_id) == room_id
    assert visitor.join(alias) == room_id
    owner.send(room_id, "fresh")
    for user in (newcomer, visitor, remote):
        user.timeline_until(room_id, lambda e: e["content"].get("body") == "fresh")
    assert "fresh" in visible_bodies(newcomer, room_id)
    wait_for(lambda: state_ids(owner, room_id) == state_ids(remote, room_id) == state_ids(visitor, room_id),
             "the three servers to agree on the room's state")
    assert ("m.room.topic", "", next(e for t, k, e in state_before if t == "m.room.topic")) \
        in state_ids(visitor, room_id)


def test_purge_history_endpoint(servers):
    _home, _peer, joiner = servers
    admin, owner = register_admin(joiner.process), joiner.process.register()
    room_id, _alias = public_room(owner)
    sent = [owner.send(room_id, f"m{i}") for i in range(5)]
    wait_for(lambda: found_by_search(owner, "m0") == [sent[0]], "the message to be indexed")

    # local users' events stay unless delete_local_events
    purge_id = admin.ok("POST", f"{PURGE}/{quote(room_id)}/{quote(sent[3])}", {})["purge_id"]
    wait_for(lambda: admin.ok("GET", f"/_synapse/admin/v1/purge_history_status/{purge_id}")["status"] == "complete",
             "the purge to complete")
    assert stored_bodies(admin, room_id) == ["m4", "m3", "m2", "m1", "m0"]

    purge_id = admin.ok("POST", f"{PURGE}/{quote(room_id)}",
                        {"purge_up_to_event_id": sent[3], "delete_local_events": True})["purge_id"]
    wait_for(lambda: admin.ok("GET", f"/_synapse/admin/v1/purge_history_status/{purge_id}") == {"status": "complete"},
             "the purge to complete")
    assert stored_bodies(admin, room_id) == ["m4", "m3"]
    assert visible_bodies(owner, room_id) == ["m4", "m3"]
    assert {e["type"] for e in owner.ok("GET", f"/rooms/{quote(room_id)}/state")} >= {
        "m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules"}
    status, body = owner.request("GET", f"/rooms/{quote(room_id)}/event/{quote(sent[0])}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert found_by_search(owner, "m0") == []
    audited = admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=admin_action&target={quote(room_id)}")["events"]
    assert [e["details"]["action"] for e in audited] == ["purge_history", "purge_history"]

    # by timestamp: the room's latest event is always kept
    purge_id = admin.ok("POST", f"{PURGE}/{quote(room_id)}",
                        {"purge_up_to_ts": 2 ** 53, "delete_local_events": True})["purge_id"]
    wait_for(lambda: admin.ok("GET", f"/_synapse/admin/v1/purge_history_status/{purge_id}") == {"status": "complete"},
             "the purge to complete")
    assert stored_bodies(admin, room_id) == ["m4"]
    owner.send(room_id, "still works")
    assert visible_bodies(owner, room_id) == ["still works", "m4"]


def test_purged_events_take_their_local_media_along(servers):
    _home, _peer, joiner = servers
    admin, owner = register_admin(joiner.process), joiner.process.register()
    room_id, _alias = public_room(owner)
    status, body = upload(joiner.process.base_url, owner.token, b"a purged file", filename="old.txt")
    assert status == 200, body
    origin, media_id = split_mxc(body["content_uri"])
    path = f"{AUTHED}/download/{origin}/{media_id}"
    old = owner.send(room_id, {"msgtype": "m.file", "body": "old.txt", "url": body["content_uri"]})
    kept = owner.send(room_id, "after")
    assert download(joiner.process.base_url, path, owner.token)[0] == 200

    purge_id = admin.ok("POST", f"{PURGE}/{quote(room_id)}",
                        {"purge_up_to_event_id": kept, "delete_local_events": True})["purge_id"]
    wait_for(lambda: admin.ok("GET", f"/_synapse/admin/v1/purge_history_status/{purge_id}") == {"status": "complete"},
             "the purge to complete")
    assert owner.request("GET", f"/rooms/{quote(room_id)}/event/{quote(old)}")[0] == 404
    status, _headers, answer = download(joiner.process.base_url, path, owner.token)
    assert status == 404, answer


@pytest.mark.parametrize("path,body,status,errcode", [
    ("{room}", {}, 400, "M_BAD_JSON"),  # neither an event nor a timestamp
    ("{room}", {"purge_up_to_ts": 1}, 400, "M_NOT_FOUND"),  # nothing that old
    ("{room}", {"purge_up_to_ts": "yesterday"}, 400, "M_INVALID_PARAM"),
    ("{room}", {"purge_up_to_event_id": "$nope"}, 404, "M_NOT_FOUND"),
    ("{room}/{other_event}", {}, 400, "M_UNKNOWN"),  # an event of another room
    ("!unknown:localhost", {"purge_up_to_ts": 1}, 404, "M_NOT_FOUND"),
])
def test_purge_history_errors(servers, path, body, status, errcode):
    _home, _peer, joiner = servers
    admin, owner = register_admin(joiner.process), joiner.process.register()
    room_id, other = owner.create_room(), owner.create_room()
    other_event = owner.send(other, "elsewhere")
    target = path.format(room=quote(room_id), other_event=quote(other_event))
    got, answer = admin.request("POST", f"{PURGE}/{target}", body)
    assert (got, answer["errcode"]) == (status, errcode), answer


def test_purge_history_is_for_server_admins_only(servers):
    _home, _peer, joiner = servers
    owner = joiner.process.register()
    room_id = owner.create_room()
    status, body = owner.request("POST", f"{PURGE}/{quote(room_id)}", {"purge_up_to_ts": 2 ** 53})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = owner.request("GET", "/_synapse/admin/v1/purge_history_status/abc")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    admin = register_admin(joiner.process)
    status, body = admin.request("GET", "/_synapse/admin/v1/purge_history_status/abc")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


def test_an_invalid_retention_config_refuses_start(homeserver_factory):
    server = homeserver_factory(start=False, retention={"enabled": True, "allowed_lifetime_min": "2d",
                                                        "allowed_lifetime_max": "1d"})
    with pytest.raises(ServerError) as refused:
        server.start()
    assert "retention: allowed_lifetime_min" in str(refused.value)


@pytest.mark.parametrize("content", [{"max_lifetime": "1d"}, {"min_lifetime": -1},
                                     {"min_lifetime": 2000, "max_lifetime": 1000}])
def test_an_invalid_policy_is_refused(servers, content):
    _home, _peer, joiner = servers
    owner = joiner.process.register()
    room_id = owner.create_room()
    status, body = owner.request("PUT", f"/rooms/{quote(room_id)}/state/{RETENTION}/", content)
    assert (status, body["errcode"]) == (400, "M_BAD_JSON"), body
