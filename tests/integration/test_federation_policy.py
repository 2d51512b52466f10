"""Closed federation by default, reloaded without a restart, and the per-peer policy, between real servers.

A server configured as ``hexagone init`` writes it (``federation_domain_whitelist: []``) contacts nobody and
refuses everyone; once the peer is listed and the configuration reloaded (SIGHUP or the admin API), they
federate. Every outbound connection a server makes is in its log ("Outbound connection to <name> at ...", from
the federation client's connecting endpoint, the only place outbound federation connects): the tests compare
that set of hosts with the configured peers.
"""

from __future__ import annotations

import re
import signal
import time
from urllib.parse import quote

import yaml

from homeserver.config import load_config
from tests.integration.federation import EventForge, send_transaction
from tests.integration.harness import hexagone_cli, register_admin, shared_room, unique

OUTBOUND = re.compile(r"Outbound connection to (\S+) at ")


def contacted(server) -> set[str]:
    """Every server name the server's federation client has connected to, from its whole log."""
    with open(server.process.log_path, encoding="utf-8", errors="replace") as f:
        return set(OUTBOUND.findall(f.read()))


def rewrite_config(server, **changes) -> None:
    config = server.process.config
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    with open(server.process.config_path, "w") as f:
        yaml.safe_dump(config, f)


def wait_for_log(server, text: str, count: int, deadline_s: float = 20) -> None:
    """Wait until ``text`` has been logged at least ``count`` times."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with open(server.process.log_path, encoding="utf-8", errors="replace") as f:
            if f.read().count(text) >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged {count} times:\n{server.process.log()}")


def sighup_reload(server) -> None:
    before = server.process.log(tail=100000).count("Configuration reloaded")
    server.process.process.send_signal(signal.SIGHUP)
    wait_for_log(server, "Configuration reloaded", before + 1)


def audit(admin, **filters) -> list[dict]:
    args = "&".join(f"{k}={quote(str(v))}" for k, v in filters.items())
    return admin.ok("GET", f"/_hexagone/admin/v1/audit?{args}")["events"]


def public_room(server):
    owner = server.process.register()
    alias = unique("policy")
    room_id = owner.create_room(preset="public_chat", room_alias_name=alias)
    return owner, room_id, f"#{alias}:{server.name}"


def test_init_closes_federation_and_names_no_notary(tmp_path):
    closed, listed = tmp_path / "closed", tmp_path / "listed"
    r = hexagone_cli("init", "--server-name", "a.example", "--dir", str(closed), cwd=str(tmp_path))
    assert r.returncode == 0 and "Federation: with nobody yet" in r.stdout
    r = hexagone_cli("init", "--server-name", "a.example", "--dir", str(listed),
                     "--federate-with", "b.example, c.example:8448", cwd=str(tmp_path))
    assert r.returncode == 0 and "Federation: only with b.example, c.example:8448" in r.stdout, r.stderr
    text = (closed / "homeserver.yaml").read_text()
    assert "\nfederation_domain_whitelist: []\n" in text and "\ntrusted_key_servers: []\n" in text
    assert "To add an agency" in text
    assert load_config(str(closed / "homeserver.yaml")).federation_domain_whitelist == []
    assert load_config(str(closed / "homeserver.yaml")).trusted_key_servers == []
    assert load_config(str(listed / "homeserver.yaml")).federation_domain_whitelist == ["b.example",
                                                                                       "c.example:8448"]
    bad = hexagone_cli("init", "--server-name", "a.example", "--dir", str(tmp_path / "bad"),
                       "--federate-with", "https://b.example", cwd=str(tmp_path))
    assert bad.returncode == 1 and "--federate-with[0]" in bad.stderr


def test_a_closed_server_federates_once_the_peer_is_listed_and_reloaded(fed):
    closed = fed(federation_domain_whitelist=[])  # as `hexagone init` writes it
    peer = fed()
    admin = register_admin(closed.process)
    owner, room_id, alias = public_room(closed)
    visitor = peer.process.register()

    # Closed both ways: the peer's join is refused, our invite of its user is never sent.
    status, body = visitor.request("POST", f"/join/{quote(alias)}", {})
    assert status in (403, 404), body
    status, body = closed.signed("GET", "/_matrix/federation/v1/version", origin=peer.name,
                                 key=peer.signing_key)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = owner.request("POST", f"/rooms/{quote(room_id)}/invite", {"user_id": visitor.user_id})
    assert status >= 400, body
    assert contacted(closed) == set(), "a closed server connected to someone"
    refusals = audit(admin, kind="federation_refused", origin=peer.name)
    assert refusals and refusals[0]["actor"] == peer.name

    # Listed and reloaded with SIGHUP: no restart, the same process federates.
    pid = closed.process.process.pid
    rewrite_config(closed, federation_domain_whitelist=[peer.name])
    sighup_reload(closed)
    assert closed.process.process.pid == pid
    assert visitor.join(alias) == room_id
    owner.timeline_until(room_id, lambda e: e.get("state_key") == visitor.user_id)
    owner.send(room_id, "hello from the closed server")
    visitor.timeline_until(room_id, lambda e: e.get("content", {}).get("body") == "hello from the closed server")
    assert contacted(closed) == {peer.name}
    assert audit(admin, kind="config_reload")[0]["details"]["federation_domain_whitelist"] == [peer.name]

    # Closed again through the admin API: refused at once, nothing sent to the peer any more.
    rewrite_config(closed, federation_domain_whitelist=[])
    assert admin.ok("POST", "/_hexagone/admin/v1/reload", {})["reloaded"]["federation_domain_whitelist"] == []
    status, body = closed.signed("GET", "/_matrix/federation/v1/version", origin=peer.name,
                                 key=peer.signing_key)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert audit(admin, kind="config_reload")[0]["actor"] == admin.user_id


def test_a_wrong_file_is_not_applied_and_the_reload_is_admin_only(fed):
    server = fed(federation_domain_whitelist=[])
    admin, user = register_admin(server.process), server.process.register()
    status, body = user.request("POST", "/_hexagone/admin/v1/reload", {})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    rewrite_config(server, federation_domain_whitelist=["https://not-a-name"])
    status, body = admin.request("POST", "/_hexagone/admin/v1/reload", {})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM") and "federation_domain_whitelist" in body["error"]
    rewrite_config(server, federation_domain_whitelist=[])


def test_peer_policy_refuses_invites_and_joins_until_reloaded(fed):
    guarded = fed()
    peer = fed()
    rewrite_config(guarded, federation_peer_policy={peer.name: {"invite_users": False, "join_rooms": False}})
    sighup_reload(guarded)
    admin = register_admin(guarded.process)
    owner, room_id, alias = public_room(guarded)
    inviter, local = peer.process.register(), guarded.process.register()

    status, body = inviter.request("POST", f"/join/{quote(alias)}", {})
    assert status == 403, body
    peer_room = inviter.create_room(preset="private_chat")
    status, body = inviter.request("POST", f"/rooms/{quote(peer_room)}/invite", {"user_id": local.user_id})
    assert status == 403, body
    reasons = {e["details"]["reason"] for e in audit(admin, kind="federation_refused", origin=peer.name)}
    assert reasons == {"federation_peer_policy: join_rooms is false",
                       "federation_peer_policy: invite_users is false"}

    rewrite_config(guarded, federation_peer_policy={peer.name: {"invite_users": False}})
    sighup_reload(guarded)
    assert inviter.join(alias) == room_id  # joins allowed now, invites still not
    status, body = inviter.request("POST", f"/rooms/{quote(peer_room)}/invite", {"user_id": local.user_id})
    assert status == 403, body


def wait_until(check, deadline_s: float = 30):
    """Poll ``check()`` until it returns something true; return that."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_only_listed_peers_are_contacted_and_an_unlisted_server_is_refused_both_ways(fed):
    """A room on ``peer`` shared by users of ``closed`` (which lists only ``peer``) and of ``outsider``: the
    workload flows through ``peer``; ``closed`` never connects to ``outsider`` and refuses what it sends."""
    peer, outsider = fed(), fed()
    closed = fed(federation_domain_whitelist=[peer.name])
    admin = register_admin(closed.process)
    host, inside, outside = peer.process.register(), closed.process.register(), outsider.process.register()
    alias = unique("shared")
    room_id = host.create_room(preset="public_chat", room_alias_name=alias)
    assert inside.join(f"#{alias}:{peer.name}") == room_id
    inside.send(room_id, "from the closed server")
    host.timeline_until(room_id, lambda e: e.get("content", {}).get("body") == "from the closed server")
    host.send(room_id, "from the peer")
    inside.timeline_until(room_id, lambda e: e.get("content", {}).get("body") == "from the peer")
    # The outsider joins last: ``closed`` cannot check its events (its keys are not to be fetched), so an event
    # after them would have prev events ``closed`` cannot get, and be dropped (as Synapse drops such events).
    assert outside.join(f"#{alias}:{peer.name}") == room_id
    host.timeline_until(room_id, lambda e: e.get("state_key") == outside.user_id)
    outside.send(room_id, "from the outsider")  # its server tries to send it to closed too: refused
    refused = wait_until(lambda: audit(admin, kind="federation_refused", origin=outsider.name))
    assert refused[0]["details"]["reason"] == "not in federation_domain_whitelist"
    assert contacted(closed) == {peer.name}
    destinations = admin.ok("GET", "/_synapse/admin/v1/federation/destinations")["destinations"]
    assert [d["destination"] for d in destinations] == [peer.name]


def test_destinations_show_the_backoff_of_a_peer_that_is_down_and_reset_it(fed):
    home, peer = fed(), fed()
    admin = register_admin(home.process)
    owner, guest = home.process.register(), peer.process.register()
    alias = unique("down")
    room_id = owner.create_room(preset="public_chat", room_alias_name=alias)
    guest.join(f"#{alias}:{home.name}")
    owner.timeline_until(room_id, lambda e: e.get("state_key") == guest.user_id)
    owner.send(room_id, "while the peer is up")  # delivered: the peer is a destination, not backing off
    guest.timeline_until(room_id, lambda e: e.get("content", {}).get("body") == "while the peer is up")
    path = f"/_synapse/admin/v1/federation/destinations/{quote(peer.name)}"
    assert admin.ok("GET", path)["retry_interval"] == 0
    peer.process.stop()
    owner.send(room_id, "while the peer is down")
    failing = wait_until(lambda: (d := admin.ok("GET", path))["retry_interval"] > 0 and d)
    assert failing["failure_ts"] == failing["retry_last_ts"] > 0 and failing["queued"] >= 1
    listed = admin.ok("GET", "/_synapse/admin/v1/federation/destinations?order_by=retry_interval&dir=b")
    assert listed["destinations"][0]["destination"] == peer.name and listed["total"] >= 1
    peer.process.start()
    assert admin.ok("POST", f"{path}/reset_connection", {}) == {}
    guest.timeline_until(room_id, lambda e: e.get("content", {}).get("body") == "while the peer is down")
    wait_until(lambda: admin.ok("GET", path)["retry_interval"] == 0)


def test_forged_events_are_in_the_audit_trail(fed):
    home, attacker = fed(), fed()
    admin = register_admin(home.process)
    owner, mallory = home.process.register(), attacker.process.register()
    room_id = shared_room(owner, mallory, public=True)
    forge = EventForge(home, owner, room_id, attacker, mallory)
    forged = forge.message(mallory.user_id, "tampered after signing", origin_server_ts=1)
    assert "error" in send_transaction(home, attacker, [forged])[forged["_id"]]
    found = wait_until(lambda: audit(admin, kind="event_rejected", target=forged["_id"]))
    assert found[0]["origin"] == attacker.name and "signature" in found[0]["details"]["kind"]
