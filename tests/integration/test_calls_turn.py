"""1:1 calls through a real coturn with the TURN credentials Hexagone issues (issue 17).

Two aiortc peers, each driven by a matrix-nio client, call each other over Matrix with ICE limited to relay
candidates: data and audio flow through coturn, on one server and between two federated Hexagones. coturn
refuses a wrong or expired credential, and accepts Synapse's static ``turn_username``/``turn_password``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.coturn import Coturn, coturn_available

pytestmark = pytest.mark.skipif(not coturn_available(), reason="coturn (turnserver) is not installed")

aioice = pytest.importorskip("aioice")
from aioice import stun, turn as aioice_turn  # noqa: E402

from tests.integration.calls import Signaller, call, plain_call  # noqa: E402
from tests.integration.harness import next_timeline, shared_room  # noqa: E402
from tests.integration.test_e2ee import NioDevice, assert_stored_encrypted  # noqa: E402

SECRET = "coturn-test-secret"


@pytest.fixture(scope="module")
def coturn(tmp_path_factory):
    server = Coturn(tmp_path_factory.mktemp("coturn"), secret=SECRET).start()
    yield server
    server.stop()


def turn_config(coturn: Coturn, **extra) -> dict:
    return {"turn_uris": [coturn.uri], "turn_shared_secret": SECRET, **extra}


@pytest.fixture(scope="module")
def server(homeserver_factory, coturn):
    return homeserver_factory(**turn_config(coturn))


def turn_of(user) -> dict:
    creds = user.ok("GET", "/voip/turnServer")
    assert set(creds) == {"username", "password", "uris", "ttl"}, creds
    return creds


async def allocate(coturn: Coturn, username: str, password: str) -> None:
    """One TURN allocation on coturn (raises stun.TransactionFailed if refused)."""
    transport, _ = await aioice_turn.create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", coturn.port),
                                                          username=username, password=password)
    transport.close()


def refused(coturn: Coturn, username: str, password: str) -> int:
    """The STUN error code coturn answers an ALLOCATE with these credentials."""
    with pytest.raises(stun.TransactionFailed) as failure:
        asyncio.run(allocate(coturn, username, password))
    return failure.value.response.attributes["ERROR-CODE"][0]


def report(label: str, result) -> None:
    print(f"\n{label}: call set-up (invite sent -> data through TURN) {result.data_s * 1000:.0f} ms, "
          f"-> first audio frame {result.audio_s * 1000:.0f} ms (invite at the callee {result.invite_s * 1000:.0f} ms, "
          f"answer at the caller {result.answer_s * 1000:.0f} ms)")


def check_relayed(result, coturn: Coturn, *turns: dict) -> None:
    assert result.reply == "got: hello through TURN"
    # Each side sends from its relay allocation; the other's address is its relay candidate, or the same relayed
    # address learned first from the check it sent (peer-reflexive) when that check beat its m.call.candidates.
    for pairs in (result.caller_pairs, result.callee_pairs):
        assert pairs and all(local == "relay" and remote in ("relay", "prflx") for local, remote in pairs), pairs
    assert result.event_types[0] == "m.call.invite" and result.event_types[-1] == "m.call.hangup"
    assert {"m.call.candidates", "m.call.select_answer"} <= set(result.event_types)
    for creds in turns:  # each caller's allocation on coturn received the other's packets
        assert coturn.allocations(creds["username"]) >= 1, coturn.log()[-3000:]
        assert coturn.relayed_bytes(creds["username"]) > 0, coturn.log()[-3000:]


def test_turn_credentials_are_accepted_by_coturn_and_wrong_or_expired_ones_refused(homeserver_factory, coturn):
    short = homeserver_factory(**turn_config(coturn, turn_user_lifetime="1s"))
    alice = short.register()
    creds = turn_of(alice)
    assert creds["uris"] == [coturn.uri] and creds["ttl"] == 1
    expiry = int(creds["username"].split(":", 1)[0])
    asyncio.run(allocate(coturn, creds["username"], creds["password"]))
    assert coturn.allocations(creds["username"]) == 1
    assert refused(coturn, creds["username"], creds["password"][:-4] + "AAA=") == 401
    while time.time() < expiry + 2:  # past the credential's expiry on coturn's clock (whole seconds, ticking)
        time.sleep(0.1)
    assert refused(coturn, creds["username"], creds["password"]) == 401


def test_static_turn_credentials(homeserver_factory, tmp_path_factory):
    static = Coturn(tmp_path_factory.mktemp("coturn-static"), static=("caller", "static-pass")).start()
    try:
        hs = homeserver_factory(turn_uris=[static.uri], turn_username="caller", turn_password="static-pass")
        creds = turn_of(hs.register())
        assert (creds["username"], creds["password"]) == ("caller", "static-pass")
        asyncio.run(allocate(static, creds["username"], creds["password"]))
        assert static.allocations("caller") == 1
        assert refused(static, "caller", "wrong") == 401
    finally:
        static.stop()


CALLS_MEASURED = 5


def calls_measured(label: str, caller, callee, coturn: Coturn) -> None:
    """CALLS_MEASURED calls in one room, each checked; prints the median and maximum set-up times."""
    room = shared_room(caller, callee)
    turns = turn_of(caller), turn_of(callee)
    results = []
    for _ in range(CALLS_MEASURED):
        results.append(asyncio.run(plain_call(caller, callee, room, *turns)))
        check_relayed(results[-1], coturn, *turns)
    for what, name in (("invite_s", "invite at the callee"), ("data_s", "data through TURN at the callee"),
                       ("audio_s", "first audio frame at the callee")):
        values = sorted(getattr(r, what) * 1000 for r in results)
        print(f"\n{label}: invite sent -> {name}, over {len(values)} calls: "
              f"median {statistics.median(values):.0f} ms, max {values[-1]:.0f} ms", end="")
    print()


def test_calls_on_one_server_flow_through_turn(server, coturn):
    calls_measured("one server", server.register(), server.register(), coturn)


def test_calls_between_two_federated_servers_flow_through_turn(fed, coturn):
    home, other = fed(**turn_config(coturn)), fed(**turn_config(coturn))
    caller, callee = home.process.register(), other.process.register()
    turns = turn_of(caller), turn_of(callee)
    assert turns[0]["username"].endswith(":" + caller.user_id) and turns[1]["username"].endswith(callee.user_id)
    calls_measured("two federated Hexagones", caller, callee, coturn)


def test_calls_between_hexagone_and_synapse_flow_through_turn(fed, ca, coturn, tmp_path_factory):
    """Each caller gets its TURN credentials from its own server (Synapse mints them from the same secret)."""
    from tests.integration.synapse import SynapseProcess
    home = fed(**turn_config(coturn))
    synapse = SynapseProcess(str(tmp_path_factory.mktemp("synapse-turn")), ca, extra=turn_config(coturn)).start()
    try:
        ours, theirs = home.process.register(), synapse.register()
        for label, caller, callee in (("Hexagone -> Synapse", ours, theirs), ("Synapse -> Hexagone", theirs, ours)):
            room = shared_room(caller, callee)
            turns = turn_of(caller), turn_of(callee)
            result = asyncio.run(plain_call(caller, callee, room, *turns))
            report(label, result)
            check_relayed(result, coturn, *turns)
    finally:
        synapse.stop()


@pytest.mark.parametrize("where", ["one server", "two federated Hexagones"])
def test_a_call_in_an_encrypted_room_flows_through_turn(where, server, fed, coturn, tmp_path):
    """The call events go Megolm-encrypted (the server stores m.room.encrypted only); each side decrypts them."""
    a = b = server
    if where != "one server":
        a, b = fed(**turn_config(coturn)).process, fed(**turn_config(coturn)).process
    caller, callee = a.register(), b.register()
    room = shared_room(caller, callee, encrypted=True)
    turns = turn_of(caller), turn_of(callee)

    async def scenario():
        ours = await NioDevice(a, caller.user_id, tmp_path / "caller").login()
        theirs = await NioDevice(b, callee.user_id, tmp_path / "callee").login()
        for device, other in ((ours, theirs), (theirs, ours)):
            await device.sync_until(lambda r: other.client.device_id in device.device_ids_of(other.client.user_id))
        sigs = Signaller(ours.client, room, ours.sync), Signaller(theirs.client, room, theirs.sync)
        return await call(*sigs, *turns), sigs[0].sent + sigs[1].sent

    result, sent = asyncio.run(scenario())
    report(f"encrypted, {where}", result)
    check_relayed(result, coturn, *turns)
    assert {t for t, _ in sent} >= {"m.call.invite", "m.call.answer", "m.call.candidates", "m.call.hangup"}
    for _, event_id in sent:
        assert_stored_encrypted(caller, room, event_id, "m.call")


def test_reject_and_negotiate_reach_the_other_party_in_one_long_poll(server):
    """The call events with no media of their own: a callee rejecting, a renegotiation mid-call."""
    caller, callee = server.register(), server.register()
    room = shared_room(caller, callee)
    base = {"call_id": "c1", "version": "1"}
    for sender, receiver, event_type, content in (
            (caller, callee, "m.call.invite", {"party_id": "p1", "lifetime": 60000,
                                               "offer": {"type": "offer", "sdp": "v=0\r\n"}}),
            (callee, caller, "m.call.reject", {"party_id": "p2"}),
            (caller, callee, "m.call.negotiate", {"party_id": "p1", "lifetime": 10000,
                                                  "description": {"type": "offer", "sdp": "v=0\r\n"}})):
        since = receiver.sync()["next_batch"]
        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(next_timeline, receiver, room, since)
            event_id = sender.send(room, {**base, **content}, event_type=event_type)
            got = [e for e in poll.result() if e["event_id"] == event_id]
        assert got and got[0]["type"] == event_type and got[0]["content"]["call_id"] == "c1"
