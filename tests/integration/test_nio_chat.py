"""Real clients chatting: matrix-nio's AsyncClient against the real server process.

Two and three users register, log in, create a room, invite, join, send and
receive through /sync, as an ordinary Matrix client would.
"""

from __future__ import annotations

import asyncio

import nio

from tests.integration.harness import PASSWORD, unique

DEADLINE_S = 20


async def registered_client(server) -> nio.AsyncClient:
    client = nio.AsyncClient(server.base_url)
    resp = await client.register(unique("nio"), PASSWORD, device_name="nio test")
    assert isinstance(resp, nio.RegisterResponse), resp
    return client


async def logged_in_client(server, user_id: str) -> nio.AsyncClient:
    client = nio.AsyncClient(server.base_url, user_id)
    resp = await client.login(PASSWORD, device_name="second device")
    assert isinstance(resp, nio.LoginResponse), resp
    return client


async def sync_until(client: nio.AsyncClient, predicate) -> object:
    """Long-poll /sync until ``predicate(response)`` is truthy; returns that value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_S
    while loop.time() < end:
        resp = await client.sync(timeout=int(min(5, end - loop.time()) * 1000))
        assert isinstance(resp, nio.SyncResponse), resp
        found = predicate(resp)
        if found:
            return found
    raise AssertionError("sync condition not met in time")


def messages_in(resp: nio.SyncResponse, room_id: str) -> list[nio.RoomMessageText]:
    room = resp.rooms.join.get(room_id)
    if room is None:
        return []
    return [e for e in room.timeline.events if isinstance(e, nio.RoomMessageText)]


async def close_all(*clients: nio.AsyncClient) -> None:
    for client in clients:
        await client.close()


def test_two_users_chat(homeserver):
    async def scenario():
        alice = await registered_client(homeserver)
        bob = await registered_client(homeserver)
        try:
            await alice.sync(timeout=0)
            await bob.sync(timeout=0)
            created = await alice.room_create(name="nio chat", invite=[bob.user_id])
            assert isinstance(created, nio.RoomCreateResponse), created
            room_id = created.room_id

            await sync_until(bob, lambda r: room_id in r.rooms.invite)
            joined = await bob.join(room_id)
            assert isinstance(joined, nio.JoinResponse), joined

            sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi bob"})
            assert isinstance(sent, nio.RoomSendResponse), sent
            received = await sync_until(bob, lambda r: messages_in(r, room_id))
            assert [(m.sender, m.body) for m in received] == [(alice.user_id, "hi bob")]
            assert received[0].event_id == sent.event_id

            await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi alice"})
            received = await sync_until(alice, lambda r: [m for m in messages_in(r, room_id)
                                                          if m.sender == bob.user_id])
            assert [m.body for m in received] == ["hi alice"]
            # nio's room model tracked the membership and name
            assert set(alice.rooms[room_id].users) == {alice.user_id, bob.user_id}
            assert alice.rooms[room_id].name == "nio chat"
        finally:
            await close_all(alice, bob)

    asyncio.run(scenario())


def test_three_users_and_a_second_device(homeserver):
    async def scenario():
        alice, bob, carol = [await registered_client(homeserver) for _ in range(3)]
        clients = [alice, bob, carol]
        try:
            for client in clients:
                await client.sync(timeout=0)
            alias_name = unique("niopub")
            created = await alice.room_create(visibility=nio.RoomVisibility.public, alias=alias_name,
                                              name="Town square")
            assert isinstance(created, nio.RoomCreateResponse), created
            room_id = created.room_id
            assert isinstance(await bob.join(room_id), nio.JoinResponse)
            joined = await carol.join(f"#{alias_name}:test.local")
            assert isinstance(joined, nio.JoinResponse) and joined.room_id == room_id

            for client, text in ((alice, "one"), (bob, "two"), (carol, "three")):
                resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
                assert isinstance(resp, nio.RoomSendResponse), resp

            for client in clients:
                seen: list[str] = []

                def all_three(resp, seen=seen):
                    seen.extend(m.body for m in messages_in(resp, room_id))
                    return len(seen) >= 3 and seen

                assert await sync_until(client, all_three) == ["one", "two", "three"]

            # a second device of bob's gets the history on its first sync
            laptop = await logged_in_client(homeserver, bob.user_id)
            clients.append(laptop)
            first = await laptop.sync(timeout=0)
            assert [m.body for m in messages_in(first, room_id)] == ["one", "two", "three"]

            left = await carol.room_leave(room_id)
            assert isinstance(left, nio.RoomLeaveResponse), left
            members = await alice.joined_members(room_id)
            assert {m.user_id for m in members.members} == {alice.user_id, bob.user_id}
        finally:
            await close_all(*clients)

    asyncio.run(scenario())
