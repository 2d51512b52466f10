"""The one dotted-path splitter of push rule keys and filters' ``event_fields`` (MSC3873, MSC3980)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.dotted_paths import split_dotted_path
from homeserver.events.push_rules import condition_matches
from homeserver.services.filtering import apply_event_fields


@pytest.mark.parametrize("key, parts", [
    ("content.body", ["content", "body"]), ("content.m\\.relates_to", ["content", "m.relates_to"]),
    ("content.m\\\\foo", ["content", "m\\foo"]), ("content.m\\xfoo", ["content", "m\\xfoo"]),
    ("a..b", ["a", "", "b"]), ("a\\\\.b", ["a\\", "b"]), ("a\\", ["a\\"]), ("", [""]),
])
def test_dotted_paths(key, parts):
    assert split_dotted_path(key) == parts


def _escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace(".", "\\.")


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab.\\x"), max_size=6), min_size=1, max_size=4))
def test_escaped_names_split_back(names):
    """Names escaped as the spec says and joined by dots split back to themselves."""
    assert split_dotted_path(".".join(_escape(n) for n in names)) == names


def test_push_rules_and_filters_read_a_key_alike():
    """The same key names the same property for a push rule condition and for ``event_fields``."""
    event = {"content": {"m.x\\y": {"a.b": "hit"}, "m": {"x\\y": {"a": {"b": "miss"}}}}}
    key = "content.m\\.x\\\\y.a\\.b"
    assert condition_matches({"kind": "event_match", "key": key, "pattern": "hit"}, event, None)
    assert apply_event_fields(event, (key,)) == {"content": {"m.x\\y": {"a.b": "hit"}}}
