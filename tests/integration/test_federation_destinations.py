"""Which servers a local room event is sent to (server-server "Sending events"; Synapse's federation sender):
the servers in the room before it; for a membership event, also the target's server when that user was joined
(a leave, kick or ban) or when it rescinds their invite. Not an invite itself: it goes by PUT /invite, and the
invitee's server, not in the room, does not track it (SyTest's fake server fails on such a PDU).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from tests.integration.federation import FederationProxy


def sent_pdus(proxy: FederationProxy) -> list[dict]:
    """The PDUs the proxied server was sent in /send transactions."""
    return [pdu for method, path, body in list(proxy.forwarded)
            if method == "PUT" and path.startswith("/_matrix/federation/v1/send/")
            for pdu in json.loads(body).get("pdus", [])]


def test_invites_and_rescinded_invites_reach_the_invitee_server_only_as_they_should(fed, ca, home):
    proxy = FederationProxy(ca)
    try:
        guest = fed(name_port=proxy.port)  # every request to it passes through the proxy
        proxy.target_port = guest.tls_port
        owner = home.process.register()
        invitee, rescinded = guest.process.register(), guest.process.register()
        room_id = owner.create_room(preset="private_chat")
        owner.invite(room_id, invitee)
        owner.invite(room_id, rescinded)
        owner.ok("POST", f"/rooms/{quote(room_id)}/kick", {"user_id": rescinded.user_id})  # no guest user joined yet
        invitee.join(room_id)
        owner.send(room_id, "after the invites")
        invitee.timeline_until(room_id, lambda e: e.get("content", {}).get("body") == "after the invites")
        members = [(p["state_key"], p["content"]["membership"]) for p in sent_pdus(proxy)
                   if p["type"] == "m.room.member"]
        # the invites went by PUT /invite only; the rescinding leave by /send though no guest user was in the room
        # (the queue is in order, so it came before the message the invitee has seen)
        assert (invitee.user_id, "invite") not in members and (rescinded.user_id, "invite") not in members
        assert (rescinded.user_id, "leave") in members
        assert any(path.startswith("/_matrix/federation/v2/invite/") for _, path, _ in proxy.forwarded)
    finally:
        proxy.close()
