"""Federation faults: a peer down while messages are sent, forged events, the allow-list, and a restart
in the middle of a join."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tests.integration.federation import EventForge, FederationProxy, send_transaction
from tests.integration.harness import shared_room, timeline_events, unique


def test_messages_sent_while_the_peer_is_down_arrive_in_order(pair):
    """Both directions: a Synapse host catches a returning Hexagone up with only the newest event,
    so this also exercises /get_missing_events on our side."""
    host, guest = pair
    owner, visitor = host.process.register(), guest.process.register()
    room_id = shared_room(owner, visitor, public=True)
    _, since = visitor.sync_until(lambda r: r.get("next_batch"))
    guest.process.stop()
    sent = [f"while down {i}" for i in range(10)]
    for text in sent:
        owner.send(room_id, text)
    guest.process.start()
    bodies: list[str] = []

    def all_arrived(resp):
        bodies.extend(e["content"]["body"] for e in timeline_events(resp, room_id) if e.get("type") == "m.room.message")
        return bodies[-1:] == sent[-1:]

    visitor.sync_until(all_arrived, since, deadline_s=60, filter={"room": {"timeline": {"limit": 50}}})
    assert bodies == sent


def test_forged_events_are_rejected(fed):
    host, forger = fed(), fed()
    owner, visitor = host.process.register(), forger.process.register()
    room_id = shared_room(owner, visitor, public=True)
    forge = EventForge(host, owner, room_id, forger, visitor)
    bad_signature = forge.message(visitor.user_id, "forged signature", origin_server_ts=1)
    bad_hash = forge.message(visitor.user_id, "original", content={"msgtype": "m.text", "body": "tampered"})
    not_a_member = forge.message(f"@{unique('stranger')}:{forger.name}", "not in the room", member=False)
    result = send_transaction(host, forger, [bad_signature, bad_hash, not_a_member])
    errors = {k: v for k, v in result.items() if "error" in v}
    # The bad signature is an error; the non-member is rejected by the auth rules, which is no error (as
    # Synapse answers); neither is shown.
    assert set(errors) == {bad_signature["_id"]} and result[not_a_member["_id"]] == {}, result
    bodies = [e["content"].get("body") for e in owner.messages(room_id, dir="b", limit=20)["chunk"]]
    assert "forged signature" not in bodies and "not in the room" not in bodies and "tampered" not in bodies
    assert "original" not in bodies  # a hash mismatch is accepted only in its redacted form


def test_a_gap_is_filled_with_get_missing_events(fed):
    """An event whose parent we lack: the parent is fetched from the sending server before it is accepted."""
    host, relay, author = fed(), fed(), fed()
    owner, relay_user = host.process.register(), relay.process.register()
    room_id = shared_room(owner, relay_user, public=True)
    writer = author.process.register()
    writer.ok("POST", f"/join/{quote(room_id)}", {}, params={"via": host.name})
    owner.timeline_until(room_id, lambda e: e.get("state_key") == writer.user_id)
    relay_user.timeline_until(room_id, lambda e: e.get("state_key") == writer.user_id)
    forge = EventForge(host, owner, room_id, author, writer)
    parent = forge.message(writer.user_id, "the parent")
    child = forge.message(writer.user_id, "the child", prev=parent["_id"])
    # The relay holds both; the host gets only the child and must ask the relay for the parent.
    assert send_transaction(relay, author, [parent, child]) == {parent["_id"]: {}, child["_id"]: {}}
    assert send_transaction(host, relay, [child]) == {child["_id"]: {}}
    bodies = [e["content"].get("body") for e in owner.messages(room_id, dir="b", limit=5)["chunk"]]
    assert bodies[:2] == ["the child", "the parent"], bodies


def test_servers_outside_the_allow_list_are_refused(fed, home):
    outsider = fed()
    gated = fed(federation_domain_whitelist=[home.name])
    owner, member = gated.process.register(), home.process.register()  # the listed server federates as usual
    room_id = shared_room(owner, member, public=True)
    alias = unique("gated")
    owner.ok("PUT", f"/directory/room/{quote(f'#{alias}:{gated.name}')}", {"room_id": room_id})
    status, body = gated.signed("GET", f"/_matrix/federation/v1/query/directory?room_alias="
                                f"{quote(f'#{alias}:{gated.name}')}", origin=outsider.name,
                                key=outsider.signing_key)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    visitor = outsider.process.register()
    status, body = visitor.request("POST", f"/join/{quote(f'#{alias}:{gated.name}')}", {})
    assert status in (403, 404), body
    assert member.user_id in owner.ok("GET", f"/rooms/{quote(room_id)}/joined_members")["joined"]
    assert visitor.user_id not in owner.ok("GET", f"/rooms/{quote(room_id)}/joined_members")["joined"]


def test_a_join_cut_short_by_a_restart_completes_when_the_server_is_back(fed, ca):
    """A join answered without the member events (send_join ``omit_members``) whose state cannot be fetched
    yet: the joining server stops, and when it starts again it resumes the join; requests about the room wait
    until the join is in."""
    proxy = FederationProxy(ca)
    try:
        host = fed(name_port=proxy.port)  # reached by the other server through the proxy only
        proxy.target_port = host.tls_port
        guest = fed()
        owner, visitor = host.process.register(), guest.process.register()
        members = [host.process.register() for _ in range(4)]
        alias = unique("resume")
        room_id = owner.create_room(preset="public_chat", room_alias_name=alias)
        for member in members:
            member.join(room_id)
        proxy.refused_prefixes = ("/_matrix/federation/v1/state_ids/", "/_matrix/federation/v1/state/")

        assert visitor.join(f"#{alias}:{host.name}") == room_id
        assert proxy.refused.wait(30), "the joining server never asked for the room's state"
        guest.process.stop()
        proxy.refused_prefixes = ()
        guest.process.start()

        joined = visitor.ok("GET", f"/rooms/{quote(room_id)}/joined_members")["joined"]
        assert set(joined) == {owner.user_id, visitor.user_id, *(m.user_id for m in members)}
        visitor.send(room_id, "back after the restart")
        owner.timeline_until(room_id, lambda e: e.get("content", {}).get("body") == "back after the restart")
        assert f"Joined {room_id} with its whole state" in guest.process.log(tail=2000)
    finally:
        proxy.close()


@pytest.mark.parametrize("by_alias", [False, True], ids=["room_id", "alias"])
def test_a_join_by_room_id_or_alias_waits_for_a_join_completing(fed, ca, by_alias):
    """Routes whose path names ``{roomIdOrAlias}`` (POST /join) are held while a join of the room completes,
    as the ``{roomId}`` ones are (an alias, here another server's, resolved by the gate): the second join is
    answered only once the first has its whole state."""
    proxy = FederationProxy(ca)
    try:
        host = fed(name_port=proxy.port)
        proxy.target_port = host.tls_port
        guest = fed()
        owner, first, second = host.process.register(), guest.process.register(), guest.process.register()
        alias = unique("held")
        room_id = owner.create_room(preset="public_chat", room_alias_name=alias)
        proxy.refused_prefixes = ("/_matrix/federation/v1/state_ids/", "/_matrix/federation/v1/state/")
        assert first.join(f"#{alias}:{host.name}") == room_id
        assert proxy.refused.wait(30), "the joining server never asked for the room's state"

        released = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            target = f"#{alias}:{host.name}" if by_alias else room_id
            answer = pool.submit(lambda: (second.join(target), released.is_set()))
            proxy.refused.clear()  # the next refusal is the retry, PARTIAL_JOIN_RETRY_S later
            assert proxy.refused.wait(30), "the joining server never asked again for the room's state"
            released.set()
            proxy.refused_prefixes = ()
            joined, answered_after_release = answer.result(timeout=60)
        assert joined == room_id
        assert answered_after_release, "POST /join/{roomIdOrAlias} was answered while the join was completing"
        assert f"Joined {room_id} with its whole state" in guest.process.log(tail=2000)
    finally:
        proxy.close()
