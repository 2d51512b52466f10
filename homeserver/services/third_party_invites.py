"""Inviting by third-party identifier (spec v1.19 client-server "Third-party invites", server-server
"Third-party invites").

1. ``POST /rooms/{roomId}/invite`` with ``id_server``, ``id_access_token``, ``medium``, ``address`` (and
   ``invite_3pid`` of ``/createRoom``): the identifier is looked up at the identity server; bound, its user
   gets an ordinary invite; unbound, the invite is stored at the identity server (``store-invite``) and an
   ``m.room.third_party_invite`` state event, keyed by the identity server's token, holds its public keys.
   Whether the inviter may send that event is checked before the identity server is told anything.
2. When the invitee binds the identifier, the identity server calls ``/3pid/onbind`` on the invitee's
   server with the invites, each ``signed`` by it. Each is exchanged for a real invite: by this server when
   it is in the room and the inviter is one of its users, otherwise forwarded to the inviter's server (and
   the room's) with ``PUT /exchange_third_party_invite/{roomId}``. A user may also prove the invite
   themselves: ``/join`` with ``third_party_signed``.
3. The server issuing the invite checks, before writing it, that ``signed`` bears the signature of one of the
   invite's public keys and that the identity server still holds that key valid (``key_validity_url``), as
   Synapse; the room version's auth rules then check the signature again, as every server does.
"""

from __future__ import annotations

import logging

from homeserver.errors import MatrixError, bad_json, forbidden, missing_param, not_found
from homeserver.events.auth_rules import third_party_signing_key
from homeserver.events.identifiers import domain_of, is_valid_user_id
from homeserver.services.identity import IdentityService
from homeserver.services.room_events.heads import RoomHeads
from homeserver.services.room_events.local import EventSpec, LocalAppends

logger = logging.getLogger(__name__)

THIRD_PARTY_INVITE = "m.room.third_party_invite"
INVITE_FIELDS = ("id_server", "id_access_token", "medium", "address")


def invite_fields(body: dict) -> dict:
    """The 3PID invite's four fields, each a string (400 ``M_MISSING_PARAM`` as Synapse, else ``M_BAD_JSON``)."""
    missing = [f for f in INVITE_FIELDS if f not in body]
    if missing:
        raise missing_param(f"{', '.join(missing)} required for a third-party invite")
    if not all(isinstance(body[f], str) for f in INVITE_FIELDS):
        raise bad_json(f"{', '.join(INVITE_FIELDS)} must be strings")
    return {f: body[f] for f in INVITE_FIELDS}


def _signed_fields(signed) -> tuple[str, str]:
    if not isinstance(signed, dict) or not isinstance(signed.get("mxid"), str) \
            or not isinstance(signed.get("token"), str) or not isinstance(signed.get("signatures"), dict):
        raise bad_json("signed needs mxid, token and signatures")
    return signed["mxid"], signed["token"]


class ThirdPartyInvites:
    def __init__(self, *, identity: IdentityService, rooms, room_heads: RoomHeads, appends: LocalAppends,
                 profiles, remote, server_name: str):
        """``rooms``: ``RoomService`` (ordinary invites); ``remote``: ``federation.handlers.remote_queries``'s
        ``RemoteQueries`` (the exchange forwarded to another server)."""
        self._identity = identity
        self._rooms = rooms
        self._heads = room_heads
        self._appends = appends
        self._profiles = profiles
        self._remote = remote
        self.server_name = server_name

    def _is_local(self, user_id: str) -> bool:
        return domain_of(user_id) == self.server_name

    def check_request(self, body: dict) -> dict:
        """A 3PID invite's fields, its identity server trusted: checked before a room is created for it."""
        fields = invite_fields(body)
        self._identity.check_trusted(fields["id_server"])
        return fields

    # -- 1. the invite -------------------------------------------------------------------------
    async def invite(self, room_id: str, sender: str, body: dict) -> None:
        fields = self.check_request(body)
        mxid = await self._identity.lookup(fields["id_server"], fields["id_access_token"], fields["medium"],
                                           fields["address"])
        if mxid is not None and is_valid_user_id(mxid):
            await self._rooms.invite(room_id, sender, mxid)
            return
        # May the sender add an m.room.third_party_invite? Asked before the identity server stores anything.
        probe = EventSpec(sender, THIRD_PARTY_INVITE, {"display_name": "", "public_keys": []}, "probe")
        await self._appends.send(room_id, probe, dry_run=True)
        stored = await self._identity.store_invite(fields["id_server"], fields["id_access_token"],
                                                   await self._invite_details(room_id, sender, fields))
        await self._appends.send(room_id, EventSpec(sender, THIRD_PARTY_INVITE, stored["content"], stored["token"]))

    async def _invite_details(self, room_id: str, sender: str, fields: dict) -> dict:
        """What ``store-invite`` is told, for the identity server's message to the invitee (as Synapse)."""
        async def state(event_type: str, key: str):
            event = await self._heads.current_state_event(room_id, event_type)
            value = event.content.get(key) if event is not None else None
            return value if isinstance(value, str) else ""

        profile = await self._profiles.member_content(sender)
        details = {
            "medium": fields["medium"], "address": fields["address"], "room_id": room_id, "sender": sender,
            "room_alias": await state("m.room.canonical_alias", "alias"),
            "room_avatar_url": await state("m.room.avatar", "url"),
            "room_join_rules": await state("m.room.join_rules", "join_rule"),
            "room_name": await state("m.room.name", "name"),
            "sender_display_name": profile.get("displayname") or "",
            "sender_avatar_url": profile.get("avatar_url") or "",
        }
        room_type = await state("m.room.create", "type")
        if room_type:
            details["room_type"] = room_type
        return details

    # -- 2. the exchange -----------------------------------------------------------------------
    async def exchange(self, sender: str, target: str, room_id: str, signed: dict) -> None:
        """Turn the invite ``signed`` proves into an ``m.room.member`` invite of ``target`` by ``sender``."""
        if self._is_local(sender) and await self._rooms.is_resident(room_id):
            await self.issue(room_id, sender, target, signed)
            return
        destinations = [domain_of(sender)]
        if ":" in room_id and domain_of(room_id) not in destinations:
            destinations.append(domain_of(room_id))
        destinations = [d for d in destinations if d != self.server_name]
        if not destinations:
            raise not_found("This server is not in that room")
        event = {"type": "m.room.member", "room_id": room_id, "sender": sender, "state_key": target,
                 "content": {"membership": "invite", "third_party_invite": {"signed": signed}}}
        await self._remote.exchange_third_party_invite(destinations, room_id, event)

    async def on_bind(self, body: dict) -> None:
        """Server-server ``/3pid/onbind``: each pending invite exchanged; the last failure, if any, is the
        answer (as Synapse), after every invite was tried. Only invites of this server's users are taken:
        the endpoint is unauthenticated, and may not make this server ask others on anyone's behalf."""
        invites = body.get("invites", [])
        if not isinstance(invites, list):
            raise bad_json("invites must be a list")
        failure: MatrixError | None = None
        for invite in invites:
            try:
                if not isinstance(invite, dict):
                    raise bad_json("each invite must be an object")
                mxid, _ = _signed_fields(invite.get("signed"))
                sender, room_id = invite.get("sender"), invite.get("room_id")
                if not is_valid_user_id(sender) or not isinstance(room_id, str) or not room_id.startswith("!"):
                    raise bad_json("each invite needs sender and room_id")
                if invite.get("mxid", mxid) != mxid or not is_valid_user_id(mxid) or not self._is_local(mxid):
                    raise forbidden("The invite is not for a user of this server")
                await self.exchange(sender, mxid, room_id, invite["signed"])
            except MatrixError as e:
                logger.info("Third-party invite of onbind not exchanged: %s", e.error)
                failure = e
        if failure is not None:
            raise failure

    async def join_signed(self, user_id: str, room_id: str, signed) -> None:
        """``/join`` with ``third_party_signed`` (``sender``, ``mxid``, ``token``, ``signatures``): the invite
        exchanged first, then the user joins as invited."""
        mxid, _ = _signed_fields(signed)
        sender = signed.get("sender")
        if mxid != user_id:
            raise forbidden("third_party_signed is for another user")
        if not is_valid_user_id(sender):
            raise bad_json("third_party_signed needs the sender of the invite")
        await self.exchange(sender, user_id, room_id, signed)

    # -- 3. issuing it -------------------------------------------------------------------------
    async def issue(self, room_id: str, sender: str, target: str, signed) -> None:
        """The invite itself, by this server (``sender`` one of its users, the room one it is in)."""
        mxid, token = _signed_fields(signed)
        if mxid != target:
            raise forbidden("signed.mxid is not the invited user")
        invite = await self._heads.current_state_event(room_id, THIRD_PARTY_INVITE, token)
        if invite is None:
            raise forbidden("Could not find invite")
        if invite.sender != sender:
            raise forbidden("The invite was not sent by that user")
        key = third_party_signing_key(signed, invite.content)
        if key is None:
            raise forbidden("No signature of the invite's public keys")
        if "key_validity_url" in key:
            await self._identity.check_key_valid(key["key_validity_url"], key["public_key"])
        display_name = invite.content.get("display_name")
        third_party = {"display_name": display_name if isinstance(display_name, str) else "", "signed": signed}
        await self._rooms.invite(room_id, sender, target, extra={"third_party_invite": third_party})

    async def on_exchange(self, room_id: str, event: dict) -> None:
        """Server-server ``PUT /exchange_third_party_invite/{roomId}``: the partial invite another server
        forwards; issued here when its sender is one of this server's users."""
        if not isinstance(event, dict) or event.get("type") != "m.room.member" or event.get("room_id") != room_id:
            raise bad_json("Expected an m.room.member event of this room")
        sender, target, content = event.get("sender"), event.get("state_key"), event.get("content")
        if not is_valid_user_id(sender) or not is_valid_user_id(target) or not isinstance(content, dict) \
                or content.get("membership") != "invite" or not isinstance(content.get("third_party_invite"), dict):
            raise bad_json("Expected an invite with sender, state_key and content.third_party_invite")
        if not self._is_local(sender):
            raise forbidden("The invite's sender is not a user of this server")
        if not await self._rooms.is_resident(room_id):
            raise not_found("This server is not in that room")
        await self.issue(room_id, sender, target, content["third_party_invite"].get("signed"))
