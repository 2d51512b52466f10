"""Federation membership endpoints as older servers (and SyTest's 50federation) use them: the deprecated v1
``send_join``, ``send_leave`` and ``invite`` (answered ``[200, {...}]``), malformed membership events, and
the notary's deprecated ``GET /_matrix/key/v2/query/{serverName}/{keyId}``.

Spec v1.19 server-server "Joining Rooms", "Leaving Rooms (Rejecting Invites)", "Inviting to a room"
(the v1 forms are deprecated but still in the spec) and "Querying Keys Through Another Server".
"""

from __future__ import annotations

import time
from urllib.parse import quote

from homeserver.events.builder import build_event
from homeserver.events.hashing import strip_convenience_keys
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.integration.harness import unique, wait_for

FED = "/_matrix/federation"


def signed(home, peer, method: str, path: str, content=None):
    return home.signed(method, path, origin=peer.name, key=peer.signing_key, content=content)


def membership_event(home, peer, room_id: str, user_id: str, membership: str, **content_extra) -> dict:
    """make_{join,leave} at ``home`` as ``peer``, then the event built and signed by ``peer``."""
    status, made = signed(home, peer, "GET", f"{FED}/v1/make_{membership}/{quote(room_id)}/{quote(user_id)}"
                                             + ("?ver=10&ver=11&ver=12" if membership == "join" else ""))
    assert status == 200, made
    version = KNOWN_ROOM_VERSIONS[made["room_version"]]
    template = made["event"]
    pdu = build_event(version, server_name=peer.name, signing_key=peer.signing_key, room_id=room_id,
                      sender=user_id, event_type="m.room.member",
                      content=dict(template["content"], **content_extra), state_key=user_id,
                      prev_events=template["prev_events"], auth_events=template["auth_events"],
                      depth=template["depth"], origin_server_ts=int(time.time() * 1000))
    return pdu, version


def test_v1_send_join_and_send_leave(home, hexagone_peer):
    owner = home.process.register()
    room_id = owner.create_room(preset="public_chat", room_version="10")
    joiner = f"@{unique('v1')}:{hexagone_peer.name}"
    pdu, version = membership_event(home, hexagone_peer, room_id, joiner, "join")
    status, answer = signed(home, hexagone_peer, "PUT", f"{FED}/v1/send_join/{quote(room_id)}/{quote(pdu['event_id'])}",
                            strip_convenience_keys(pdu, version))
    assert status == 200 and answer[0] == 200, answer
    assert {"state", "auth_chain"} <= set(answer[1])
    assert any(e.get("type") == "m.room.create" for e in answer[1]["state"])
    members = owner.ok("GET", f"/rooms/{quote(room_id)}/joined_members")["joined"]
    assert joiner in members

    pdu, version = membership_event(home, hexagone_peer, room_id, joiner, "leave")
    status, answer = signed(home, hexagone_peer, "PUT",
                            f"{FED}/v1/send_leave/{quote(room_id)}/{quote(pdu['event_id'])}",
                            strip_convenience_keys(pdu, version))
    assert (status, answer) == (200, [200, {}])
    assert joiner not in owner.ok("GET", f"/rooms/{quote(room_id)}/joined_members")["joined"]


def test_v2_send_join_auth_chain_is_whole_unless_members_omitted(home, hexagone_peer):
    owner = home.process.register()
    room_id = owner.create_room(preset="public_chat", room_version="10")
    for omit in (False, True):
        joiner = f"@{unique('chain')}:{hexagone_peer.name}"
        pdu, version = membership_event(home, hexagone_peer, room_id, joiner, "join")
        path = f"{FED}/v2/send_join/{quote(room_id)}/{quote(pdu['event_id'])}" + ("?omit_members=true" if omit else "")
        status, answer = signed(home, hexagone_peer, "PUT", path, strip_convenience_keys(pdu, version))
        assert status == 200, answer
        chain_types = {e["type"] for e in answer["auth_chain"]}
        # spec: events of `state` may be left out of `auth_chain` only with omit_members
        assert ("m.room.create" in chain_types) is not omit, chain_types


def test_make_join_once_no_local_user_is_left(home, hexagone_peer):
    owner = home.process.register()
    room_id = owner.create_room(preset="public_chat", room_version="10")
    joiner = f"@{unique('late')}:{hexagone_peer.name}"
    path = f"{FED}/v1/make_join/{quote(room_id)}/{quote(joiner)}?ver=10"
    assert signed(home, hexagone_peer, "GET", path)[0] == 200
    owner.leave(room_id)
    status, err = signed(home, hexagone_peer, "GET", path)
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND")


def test_malformed_send_join_is_bad_json(home, hexagone_peer):
    owner = home.process.register()
    room_id = owner.create_room(preset="public_chat", room_version="10")
    joiner = f"@{unique('float')}:{hexagone_peer.name}"
    status, made = signed(home, hexagone_peer, "GET", f"{FED}/v1/make_join/{quote(room_id)}/{quote(joiner)}?ver=10")
    assert status == 200
    version = KNOWN_ROOM_VERSIONS["10"]
    template = made["event"]
    pdu = build_event(version, server_name=hexagone_peer.name, signing_key=hexagone_peer.signing_key,
                      room_id=room_id, sender=joiner, event_type="m.room.member",
                      content={"membership": "join", "bad_val": 1.1}, state_key=joiner,
                      prev_events=template["prev_events"], auth_events=template["auth_events"],
                      depth=template["depth"], origin_server_ts=int(time.time() * 1000))
    status, err = signed(home, hexagone_peer, "PUT", f"{FED}/v2/send_join/{quote(room_id)}/{quote(pdu['event_id'])}",
                         strip_convenience_keys(pdu, version))
    assert (status, err["errcode"]) == (400, "M_BAD_JSON"), err


def test_v1_invite_is_cosigned(home, hexagone_peer):
    invitee = home.process.register()
    version = KNOWN_ROOM_VERSIONS["1"]
    room_id = f"!{unique('v1room')}:{hexagone_peer.name}"
    inviter = f"@{unique('inviter')}:{hexagone_peer.name}"
    pdu = build_event(version, server_name=hexagone_peer.name, signing_key=hexagone_peer.signing_key,
                      room_id=room_id, sender=inviter, event_type="m.room.member",
                      content={"membership": "invite"}, state_key=invitee.user_id,
                      prev_events=[], auth_events=[], depth=5, origin_server_ts=int(time.time() * 1000))
    stripped = [{"type": "m.room.name", "state_key": "", "sender": inviter, "content": {"name": "Old"}}]
    body = dict(strip_convenience_keys(pdu, version), unsigned={"invite_room_state": stripped})
    status, answer = signed(home, hexagone_peer, "PUT", f"{FED}/v1/invite/{quote(room_id)}/{quote(pdu['event_id'])}",
                            body)
    assert status == 200 and answer[0] == 200, answer
    assert home.name in answer[1]["event"]["signatures"]
    invites, _ = invitee.sync_until(lambda r: r["rooms"]["invite"].get(room_id))
    assert {"type": "m.room.name", "state_key": "", "sender": inviter, "content": {"name": "Old"}} \
        in invites["invite_state"]["events"]


def test_notary_get_with_key_id(home, hexagone_peer):
    status, body = home.https("GET", f"/_matrix/key/v2/query/{quote(home.name)}/{quote(home.key_id)}")
    assert status == 200, body
    (keys,) = body["server_keys"]
    assert keys["server_name"] == home.name and home.key_id in keys["verify_keys"]


def test_rejecting_an_invite_no_server_takes_back_is_done_locally(home, hexagone_peer):
    """As Synapse: the inviting server refuses (it does not know the room) and the room's own server is
    unreachable, so the rejection is a leave kept on this server; the invite leaves the user's /sync."""
    invitee = home.process.register()
    version = KNOWN_ROOM_VERSIONS["10"]
    room_id = f"!{unique('gone')}:127.0.0.1:1"
    pdu = build_event(version, server_name=hexagone_peer.name, signing_key=hexagone_peer.signing_key,
                      room_id=room_id, sender=f"@{unique('inviter')}:{hexagone_peer.name}",
                      event_type="m.room.member", content={"membership": "invite"}, state_key=invitee.user_id,
                      prev_events=[], auth_events=[], depth=3, origin_server_ts=int(time.time() * 1000))
    status, answer = signed(home, hexagone_peer, "PUT", f"{FED}/v2/invite/{quote(room_id)}/{quote(pdu['event_id'])}",
                            {"event": strip_convenience_keys(pdu, version), "room_version": "10",
                             "invite_room_state": []})
    assert status == 200, answer
    _, since = invitee.sync_until(lambda r: room_id in r["rooms"]["invite"])
    invitee.ok("POST", f"/rooms/{quote(room_id)}/leave", {})
    left, _ = invitee.sync_until(lambda r: r["rooms"]["leave"].get(room_id), since=since)
    assert room_id not in invitee.sync()["rooms"]["invite"]
    # the local leave is the left room's timeline (as Synapse for an out-of-band membership)
    (leave,) = left["timeline"]["events"]
    assert (leave["type"], leave["state_key"], leave["sender"], leave["content"]["membership"]) == \
        ("m.room.member", invitee.user_id, invitee.user_id, "leave")


def test_notary_asks_the_origin_again_for_keys_valid_later(home, hexagone_peer):
    """A notary query for keys valid later than those held goes to the origin each time (only a failed fetch
    holds the next one back), as Synapse's notary does."""
    def fetches() -> int:
        return hexagone_peer.process.log(tail=100_000).count("GET /_matrix/key/v2/server ")

    far = int(time.time() * 1000) + 10 * 365 * 86400 * 1000
    query = {"server_keys": {hexagone_peer.name: {hexagone_peer.key_id: {"minimum_valid_until_ts": far}}}}
    before = fetches()
    for n in (1, 2):
        status, body = home.https("POST", "/_matrix/key/v2/query", query)
        assert status == 200 and body["server_keys"][0]["server_name"] == hexagone_peer.name, body
        wait_for(lambda: fetches() >= before + n, f"fetch {n} at the origin")
