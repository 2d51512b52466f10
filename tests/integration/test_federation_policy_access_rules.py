"""Room access rules (Tchap's im.vector.room.access_rules) between real servers: ``home`` counts ``internal``
as an internal agency and ``external`` as not. The restricted rule holds against local and remote users alike
(local invites, federated joins), a direct room holds two people, the rule only moves from restricted to
unrestricted, and each refusal is in the audit trail."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.integration.harness import register_admin, unique, wait_for

RULES = "im.vector.room.access_rules"


@pytest.fixture(scope="module")
def servers(fed):
    internal, external = fed(), fed()
    home = fed(room_access_rules={"internal_servers": [internal.name]})
    return home, internal, external


def restricted_room(owner, rule="restricted"):
    alias = unique("rules")
    room_id = owner.create_room(preset="public_chat", room_alias_name=alias,
                                initial_state=[{"type": RULES, "state_key": "", "content": {"rule": rule}}])
    return room_id, f"#{alias}:{owner.server.config['server_name']}"


def test_a_restricted_room_takes_internal_users_only_local_or_remote(servers):
    home, internal, external = servers
    admin = register_admin(home.process)
    owner, colleague = home.process.register(), internal.process.register()
    outsider = external.process.register()
    room_id, alias = restricted_room(owner)

    assert colleague.join(alias) == room_id  # an internal agency's user, over federation
    status, body = outsider.request("POST", f"/join/{quote(alias)}", {})
    assert status == 403, body  # a federated join from outside
    status, body = owner.request("POST", f"/rooms/{quote(room_id)}/invite", {"user_id": outsider.user_id})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")  # a local invite of an outsider
    denied = admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=access_rule_denied&target={quote(room_id)}")["events"]
    assert {e["details"]["target"] for e in denied} == {outsider.user_id}
    assert {e["origin"] for e in denied} == {external.name, None}

    # restricted -> unrestricted is allowed, and lets the outsider in; there is no way back
    owner.put_state(room_id, RULES, {"rule": "unrestricted"})
    assert outsider.join(alias) == room_id
    status, body = owner.request("PUT", f"/rooms/{quote(room_id)}/state/{RULES}", {"rule": "restricted"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = owner.request("PUT", f"/rooms/{quote(room_id)}/state/{RULES}", {"rule": "direct"})
    assert status == 403, body


def test_a_direct_room_holds_two_people(servers):
    home, internal, _external = servers
    owner, friend, third = home.process.register(), internal.process.register(), home.process.register()
    room_id, _alias = restricted_room(owner, "direct")
    owner.invite(room_id, friend)
    status, body = owner.request("POST", f"/rooms/{quote(room_id)}/invite", {"user_id": third.user_id})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = third.request("POST", f"/join/{quote(room_id)}", {})
    assert status == 403, body


def test_rooms_of_a_server_without_the_setting_are_not_affected(servers):
    _home, _internal, external = servers
    owner, visitor = external.process.register(), external.process.register()
    room_id, alias = restricted_room(owner)
    assert visitor.join(alias) == room_id


def test_an_invite_relayed_in_a_transaction_is_held_to_the_rules(servers):
    """An internal server (without the setting) invites an outsider into home's restricted room: the invite
    reaches home in a /send transaction, which rejects it as it would a direct /invite."""
    home, internal, external = servers
    admin = register_admin(home.process)
    owner, colleague, outsider = home.process.register(), internal.process.register(), external.process.register()
    room_id, alias = restricted_room(owner)
    assert colleague.join(alias) == room_id
    colleague.invite(room_id, outsider)  # internal has no rules of its own: it sends the invite on
    wait_for(lambda: admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=access_rule_denied&target={quote(room_id)}")
             ["events"], "home refusing the relayed invite")
    (denied,) = admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=access_rule_denied&target={quote(room_id)}")["events"]
    assert (denied["origin"], denied["details"]["target"], denied["actor"]) == (internal.name, outsider.user_id,
                                                                                colleague.user_id)
    rejected = admin.ok("GET", f"/_hexagone/admin/v1/audit?kind=event_rejected&actor={quote(internal.name)}")["events"]
    assert [e["details"]["kind"] for e in rejected] == ["access_rules"]
    assert owner.state(room_id, "m.room.member", outsider.user_id)[0] == 404  # not in home's view of the room
