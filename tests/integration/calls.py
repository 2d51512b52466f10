"""A 1:1 call between two aiortc peers, each driven by a matrix-nio client (spec client-server "Voice over IP").

The callers signal over Matrix only: ``m.call.invite`` and ``m.call.answer`` carry SDP without candidates,
the candidates go in ``m.call.candidates`` (ending with the empty candidate), the caller picks the answer
with ``m.call.select_answer`` and hangs up with ``m.call.hangup``. ICE is limited to relay candidates, with
the TURN server and credentials each caller's homeserver gave on /voip/turnServer, so every packet goes
through the TURN server. The callee gets a data channel message (and answers it) and audio frames.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import nio
from aiortc import (RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection,
                    RTCSessionDescription)
from aiortc.mediastreams import AudioStreamTrack
from aiortc.sdp import candidate_from_sdp

from tests.integration.harness import unique

VERSION = "1"
END_OF_CANDIDATES = {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}
CALL_DEADLINE_S = 60


def relay_only(turn: dict) -> RTCConfiguration:
    """ICE through the TURN server of a /voip/turnServer answer, relay candidates only."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=turn["uris"], username=turn["username"],
                                                     credential=turn["password"])],
                            iceTransportPolicy=RTCIceTransportPolicy.RELAY)


def split_candidates(sdp: str) -> tuple[str, list[dict]]:
    """The SDP without its candidate lines, and those candidates in m.call.candidates form."""
    kept, candidates, mid, index = [], [], None, -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:"):]
        if line.startswith("a=candidate:"):
            candidates.append({"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": index})
        elif line != "a=end-of-candidates":
            kept.append(line)
    return "\r\n".join(kept) + "\r\n", candidates


async def add_candidates(pc: RTCPeerConnection, candidates: list[dict]) -> None:
    for c in candidates:
        if not c.get("candidate"):
            await pc.addIceCandidate(None)  # the empty candidate: end of candidates
            continue
        candidate = candidate_from_sdp(c["candidate"].split(":", 1)[1])
        candidate.sdpMid, candidate.sdpMLineIndex = c.get("sdpMid"), c.get("sdpMLineIndex")
        await pc.addIceCandidate(candidate)


def nominated_pairs(pc: RTCPeerConnection) -> list[tuple[str, str]]:
    """(local, remote) candidate types of every ICE transport's nominated pair."""
    transports = {t.receiver.transport.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport.transport)
    return [(pair.local_candidate.type, pair.remote_candidate.type)
            for t in transports for pair in t._connection._nominated.values()]


class Signaller:
    """A matrix-nio client in one room: sends call events, and queues the other party's ``m.call.*`` events.

    ``sync`` is the client's sync call (an encrypting client's uploads and queries keys too); call events that
    arrive encrypted are decrypted, retried when their room key comes later."""

    def __init__(self, client: nio.AsyncClient, room_id: str, sync=None):
        self.client = client
        self.room_id = room_id
        self.sent: list[tuple[str, str]] = []  # (type, event id) of each call event sent
        self.events: asyncio.Queue = asyncio.Queue()
        self._sync = sync or (lambda timeout_ms: client.sync(timeout=timeout_ms))
        self._undecrypted: list = []
        self._task: asyncio.Task | None = None

    @classmethod
    def plain(cls, user, room_id: str) -> "Signaller":
        """Signalling as the harness user's own device (its access token)."""
        client = nio.AsyncClient(user.server.base_url, user.user_id, device_id=user.device_id)
        client.access_token = user.token
        return cls(client, room_id)

    async def start(self) -> None:
        first = await self._sync(0)
        assert isinstance(first, nio.SyncResponse), first
        self._task = asyncio.create_task(self._sync_forever())

    async def _sync_forever(self) -> None:
        while True:
            resp = await self._sync(5000)
            if not isinstance(resp, nio.SyncResponse):
                continue
            room = resp.rooms.join.get(self.room_id)
            events = self._decrypted(list(room.timeline.events) if room else [])
            for event in events:
                source = event.source
                if source.get("type", "").startswith("m.call.") and source["sender"] != self.client.user_id:
                    self.events.put_nowait(source)

    def _decrypted(self, events: list) -> list:
        """The events, the undecryptable ones held back until their key arrives."""
        out = []
        for event in self._undecrypted + events:
            if isinstance(event, nio.MegolmEvent):
                try:
                    event = self.client.decrypt_event(event)
                except nio.EncryptionError:
                    if event not in self._undecrypted:
                        self._undecrypted.append(event)
                    continue
                if event in self._undecrypted:
                    self._undecrypted.remove(event)
            out.append(event)
        return out

    async def send(self, event_type: str, content: dict) -> None:
        resp = await self.client.room_send(self.room_id, event_type, content, ignore_unverified_devices=True)
        assert isinstance(resp, nio.RoomSendResponse), resp
        self.sent.append((event_type, resp.event_id))

    async def next(self, *types: str) -> dict:
        while True:
            event = await self.events.get()
            if event["type"] in types:
                return event

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.close()


@dataclass
class CallResult:
    invite_s: float = 0.0  # invite sent -> the callee's /sync has it
    answer_s: float = 0.0  # invite sent -> the caller's /sync has the answer
    data_s: float = 0.0  # invite sent -> the callee has the caller's data channel message
    audio_s: float = 0.0  # invite sent -> the callee has the caller's first audio frame
    reply: str = ""  # what the caller got back on the data channel
    caller_pairs: list = field(default_factory=list)
    callee_pairs: list = field(default_factory=list)
    event_types: list = field(default_factory=list)  # the call events the callee saw, in order
    ice_states: dict = field(default_factory=lambda: {"caller": [], "callee": []})  # each side's ICE states
    candidates_got: dict = field(default_factory=lambda: {"caller": [], "callee": []})  # the other's candidates


def _watched(pc: RTCPeerConnection, side: str, result: CallResult) -> RTCPeerConnection:
    """``pc``, its ICE connection states recorded in ``result`` (told when a call does not complete)."""
    pc.on("iceconnectionstatechange", lambda: result.ice_states[side].append(pc.iceConnectionState))
    return pc


async def _caller(sig: Signaller, turn: dict, call_id: str, result: CallResult, started: list) -> None:
    pc = _watched(RTCPeerConnection(relay_only(turn)), "caller", result)
    try:
        channel = pc.createDataChannel("chat")
        opened, replied = asyncio.Event(), asyncio.Event()
        channel.on("open", opened.set)
        channel.on("message", lambda m: (setattr(result, "reply", m), replied.set()))
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        sdp, candidates = split_candidates(pc.localDescription.sdp)
        assert candidates and all(" typ relay" in c["candidate"] for c in candidates), candidates
        party = unique("party")
        base = {"call_id": call_id, "party_id": party, "version": VERSION}
        started.append(time.monotonic())
        await sig.send("m.call.invite", {**base, "lifetime": 60000, "offer": {"type": "offer", "sdp": sdp}})
        await sig.send("m.call.candidates", {**base, "candidates": candidates + [END_OF_CANDIDATES]})
        answer = await sig.next("m.call.answer")
        result.answer_s = time.monotonic() - started[0]
        await pc.setRemoteDescription(RTCSessionDescription(answer["content"]["answer"]["sdp"], "answer"))
        await sig.send("m.call.select_answer", {**base, "selected_party_id": answer["content"]["party_id"]})
        theirs = await sig.next("m.call.candidates")
        result.candidates_got["caller"] += [c["candidate"] for c in theirs["content"]["candidates"]]
        await add_candidates(pc, theirs["content"]["candidates"])
        await opened.wait()
        channel.send("hello through TURN")
        await replied.wait()
        result.caller_pairs = nominated_pairs(pc)
        await sig.send("m.call.hangup", {**base, "reason": "user_hangup"})
    finally:
        await pc.close()


async def _callee(sig: Signaller, turn: dict, result: CallResult, started: list) -> None:
    pc = _watched(RTCPeerConnection(relay_only(turn)), "callee", result)
    got_data, got_audio = asyncio.Event(), asyncio.Event()

    def on_channel(channel) -> None:
        @channel.on("message")
        def on_message(message) -> None:
            result.data_s = time.monotonic() - started[0]
            result.callee_pairs = nominated_pairs(pc)
            got_data.set()

            async def reply() -> None:  # once audio flows too: the caller hangs up on this reply
                await got_audio.wait()
                channel.send(f"got: {message}")
            asyncio.ensure_future(reply())

    def on_track(track) -> None:
        async def first_frame() -> None:
            await track.recv()
            result.audio_s = time.monotonic() - started[0]
            got_audio.set()
        asyncio.ensure_future(first_frame())

    pc.on("datachannel", on_channel)
    pc.on("track", on_track)
    try:
        invite = await sig.next("m.call.invite")
        result.invite_s = time.monotonic() - started[0]
        result.event_types.append(invite["type"])
        base = {"call_id": invite["content"]["call_id"], "party_id": unique("party"), "version": VERSION}
        await pc.setRemoteDescription(RTCSessionDescription(invite["content"]["offer"]["sdp"], "offer"))
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        sdp, candidates = split_candidates(pc.localDescription.sdp)
        await sig.send("m.call.answer", {**base, "answer": {"type": "answer", "sdp": sdp}})
        await sig.send("m.call.candidates", {**base, "candidates": candidates + [END_OF_CANDIDATES]})
        while True:
            event = await sig.next("m.call.candidates", "m.call.select_answer", "m.call.hangup")
            result.event_types.append(event["type"])
            if event["type"] == "m.call.candidates":
                result.candidates_got["callee"] += [c["candidate"] for c in event["content"]["candidates"]]
                await add_candidates(pc, event["content"]["candidates"])
            elif event["type"] == "m.call.hangup":
                break
        await asyncio.wait_for(asyncio.gather(got_data.wait(), got_audio.wait()), 10)
    finally:
        await pc.close()


async def call(caller: Signaller, callee: Signaller, caller_turn: dict, callee_turn: dict) -> CallResult:
    """Place a call from ``caller`` to ``callee`` and hang up once data and audio went through; closes both."""
    result, started = CallResult(), []
    try:
        await asyncio.gather(caller.start(), callee.start())
        try:
            await asyncio.wait_for(asyncio.gather(_caller(caller, caller_turn, unique("call"), result, started),
                                                  _callee(callee, callee_turn, result, started)), CALL_DEADLINE_S)
        except asyncio.TimeoutError:
            raise AssertionError(f"the call did not complete in {CALL_DEADLINE_S} s: {result}") from None
    finally:
        await asyncio.gather(caller.close(), callee.close())
    return result


async def plain_call(caller_user, callee_user, room_id: str, caller_turn: dict, callee_turn: dict) -> CallResult:
    return await call(Signaller.plain(caller_user, room_id), Signaller.plain(callee_user, room_id),
                      caller_turn, callee_turn)
