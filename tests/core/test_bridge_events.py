"""Pure pieces of the bridge framework (bridges/events.py, bridges/config.py, bridges/appservice.py):
commands, reply fallbacks, relay text, MSC2346 bridge info, message status, permissions, configuration."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("aiohttp", reason="the bridges extra is not installed")

from bridges import events as ev  # noqa: E402
from bridges.appservice import valid_events  # noqa: E402
from bridges.config import BridgeConfigError, allows, new_config, parse_config, permission_level  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_bridges_are_clients_and_import_no_server_internals():
    for path in (ROOT / "bridges").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("homeserver", "federation", "media_repo")), f"{path} imports {name}"


@pytest.mark.parametrize("body, management, expected", [
    ("!olvid ping", False, ev.Command("ping", [])),
    ("!olvid bridge 12", False, ev.Command("bridge", ["12"])),
    ("  !olvid   BRIDGE  12 ", False, ev.Command("bridge", ["12"])),
    ("!olvid", False, ev.Command("help", [])),
    ("ping", True, ev.Command("ping", [])),
    ("!olvid ping", True, ev.Command("ping", [])),
    ("ping", False, None),
    ("!olvidping", False, None),
    ("hello !olvid ping", False, None),
])
def test_commands_need_the_prefix_outside_the_management_room(body, management, expected):
    assert ev.parse_command(body, "!olvid", management) == expected


def test_help_lists_every_command_and_the_bridges_own():
    text = ev.help_text("!olvid", {"list": "the discussions"})
    assert all(f"!olvid {name}" in text for name in [*ev.COMMANDS, "list"]) and "the discussions" in text


@pytest.mark.parametrize("body, expected", [
    ("> <@a:x> question\n> more\n\nanswer", "answer"),
    ("> <@a:x> question\n\nanswer\n> not a quote", "answer\n> not a quote"),
    ("plain", "plain"),
    ("> only a quote", ""),
])
def test_reply_fallbacks_are_stripped(body, expected):
    assert ev.strip_reply_fallback(body) == expected


@given(st.text())
def test_text_without_a_leading_quote_is_kept(text):
    if not text.startswith("> "):
        assert ev.strip_reply_fallback(text) == text


def test_message_text_of_a_reply_and_of_an_edit():
    reply = {"body": "> <@a:x> hi\n\nhello", "m.relates_to": {"m.in_reply_to": {"event_id": "$1"}}}
    assert ev.message_text(reply) == "hello" and ev.reply_target(reply) == "$1" and ev.edit_target(reply) is None
    edit = {"body": "* fixed", "m.new_content": {"body": "fixed"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$2"}}
    assert ev.message_text(edit) == "fixed" and ev.edit_target(edit) == "$2"
    assert ev.message_text({"body": 5}) == "" and ev.reply_target({"m.relates_to": "junk"}) is None


def test_relay_text_and_remote_contents():
    assert ev.relay_text("{displayname}: {body}", "Alice", "@a:x", "hi") == "Alice: hi"
    assert ev.relay_text("<{mxid}> {body}", "", "@a:x", "hi") == "<@a:x> hi"
    assert ev.remote_content("hi", "$1") == {"msgtype": "m.text", "body": "hi",
                                             "m.relates_to": {"m.in_reply_to": {"event_id": "$1"}}}
    edit = ev.remote_content("new", edit_of="$1")
    assert edit["m.new_content"]["body"] == "new" and edit["m.relates_to"] == {"rel_type": "m.replace",
                                                                              "event_id": "$1"}
    assert ev.msgtype_for("image/png") == "m.image" and ev.msgtype_for("") == "m.file"


def test_bridge_info_and_message_status():
    state_key, content = ev.bridge_info("olvid", "Olvid", "@bot:x", "7", "Team")
    assert state_key == "net.hexagone.olvid://olvid/7"
    assert content["protocol"] == {"id": "olvid", "displayname": "Olvid"} and content["channel"]["id"] == "7"
    assert ev.message_status("olvid", "$e")["status"] == "SUCCESS"
    failed = ev.message_status("olvid", "$e", "gone", permanent=False)
    assert failed["status"] == "FAIL_RETRIABLE" and failed["error"] == "gone"
    assert failed["m.relates_to"] == {"rel_type": "m.reference", "event_id": "$e"}


def test_permissions_by_user_then_server_then_everyone():
    permissions = {"@boss:a.org": "admin", "a.org": "user", "*": "relay"}
    assert permission_level(permissions, "@boss:a.org") == "admin"
    assert permission_level(permissions, "@x:a.org") == "user"
    assert permission_level(permissions, "@x:b.org") == "relay"
    assert permission_level({}, "@x:b.org") is None
    assert allows(permissions, "@x:a.org", "relay") and not allows(permissions, "@x:a.org", "admin")
    assert not allows({}, "@x:a.org", "relay")


def test_a_new_configuration_parses_and_its_registration_matches_the_ghosts():
    config, registration = new_config("olvid", "http://127.0.0.1:8008", "example.org", "/tmp/b", 29330, {})
    parsed = parse_config("olvid", config)
    assert registration["as_token"] == parsed.as_token and registration["hs_token"] == parsed.hs_token
    regex = registration["namespaces"]["users"][0]["regex"]
    assert re.fullmatch(regex, parsed.ghost_mxid("12")) and not re.fullmatch(regex, "@olvid_1:example.org.evil")
    assert parsed.is_ours(parsed.bot_mxid) and parsed.is_ours("@olvid_3:example.org")
    assert not parsed.is_ours("@alice:example.org")


@pytest.mark.parametrize("path, value, message", [
    (("homeserver", "url"), "ftp://x", "homeserver.url"),
    (("appservice", "port"), 70000, "appservice.port"),
    (("appservice", "port"), True, "appservice.port"),
    (("bridge", "permissions"), {"x.org": "owner"}, "bridge.permissions.x.org"),
    (("bridge", "max_attachment_size"), 0, "bridge.max_attachment_size"),
    (("appservice", "as_token"), None, "appservice.as_token"),
])
def test_a_wrong_value_is_refused_with_its_key(path, value, message):
    config, _ = new_config("olvid", "http://127.0.0.1:8008", "example.org", "/tmp/b", 29330, {})
    config[path[0]][path[1]] = value
    with pytest.raises(BridgeConfigError, match=re.escape(message)):
        parse_config("olvid", config)


def test_malformed_events_are_counted_and_skipped():
    good = {"event_id": "$1", "type": "m.room.message", "room_id": "!r:x", "sender": "@a:x"}
    events, bad = valid_events([good, 5, {"event_id": "$2"}, dict(good, sender=3)])
    assert events == [good] and bad == 3
