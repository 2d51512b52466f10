"""The Tixeo conformance kit: what the bridge relies on, checked against any ``TixeoAPI`` adapter
(it creates meetings whose external reference is ``conformance-<random>``, and ends them)."""

from __future__ import annotations

from bridges.conformance import all_events
from bridges.product import ProductError


def _meeting(scratch: dict, **fields) -> dict:
    return {"name": f"Conformance {scratch['tag']}", "organizer": "@kit:example.org",
            "invitees": ["@kit:example.org", "@other:example.org"], "external_ref": f"conformance-{scratch['tag']}",
            **fields}


async def restricted_meetings_refuse_guest_web_access(api, scratch: dict) -> None:
    try:
        await api.create_meeting(_meeting(scratch, security_profile="restricted", guest_web_access=True))
    except ProductError as e:
        assert e.status == 400, e
        return
    raise AssertionError("a restricted meeting with guest web access was accepted")


async def meetings_are_created_with_a_join_link(api, scratch: dict) -> None:
    meeting = await api.create_meeting(_meeting(scratch, security_profile="restricted", guest_web_access=False))
    assert meeting["join_url"].startswith("https://") and meeting["status"] in ("scheduled", "started")
    assert meeting["security_profile"] == "restricted" and meeting["guest_web_access"] is False
    assert meeting["invitees"] == ["@kit:example.org", "@other:example.org"]
    scratch["meeting"] = meeting


async def meetings_are_found_by_id_and_reference(api, scratch: dict) -> None:
    meeting = scratch["meeting"]
    assert (await api.meeting(meeting["id"]))["join_url"] == meeting["join_url"]
    assert (await api.active_meeting(meeting["external_ref"]))["id"] == meeting["id"]
    assert await api.meeting(f"no-such-meeting-{scratch['tag']}") is None
    assert isinstance(await api.participants(meeting["id"]), list)


async def meetings_end_once(api, scratch: dict) -> None:
    meeting = scratch["meeting"]
    assert (await api.end_meeting(meeting["id"]))["status"] == "ended"
    assert (await api.end_meeting(meeting["id"]))["status"] == "ended"
    assert await api.active_meeting(meeting["external_ref"]) is None


async def the_feed_tells_the_end_once(api, scratch: dict) -> None:
    mine = [e["type"] for e in await all_events(api) if e.get("meeting_id") == scratch["meeting"]["id"]]
    assert mine.count("meeting.ended") == 1 and mine[-1] == "meeting.ended", mine


KIT = [(check.__name__, check) for check in (
    restricted_meetings_refuse_guest_web_access, meetings_are_created_with_a_join_link,
    meetings_are_found_by_id_and_reference, meetings_end_once, the_feed_tells_the_end_once)]
