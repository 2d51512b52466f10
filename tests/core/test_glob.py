"""The glob matcher of server ACLs and push rules (spec v1.19 appendices "Glob-style matching")."""

from __future__ import annotations

import time
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.glob import glob_matches

WORD = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def reference_full(pattern: str, value: str, case_sensitive: bool = False, single_char: bool = True) -> bool:
    """Naive dynamic programming over (pattern index, value index), ASCII case folded unless ``case_sensitive``."""
    fold = (lambda c: c) if case_sensitive else str.lower

    @lru_cache(maxsize=None)
    def match(p: int, v: int) -> bool:
        if p == len(pattern):
            return v == len(value)
        if pattern[p] == "*":
            return match(p + 1, v) or (v < len(value) and match(p, v + 1))
        if v == len(value):
            return False
        return ((pattern[p] == "?" and single_char) or fold(pattern[p]) == fold(value[v])) and match(p + 1, v + 1)

    return match(0, 0)


def reference_word(pattern: str, value: str, case_sensitive: bool = False, single_char: bool = True) -> bool:
    """Every substring whose start and end are word boundaries, tried whole."""
    starts = [i for i in range(len(value) + 1) if i == 0 or value[i - 1] not in WORD]
    ends = {j for j in range(len(value) + 1) if j == len(value) or value[j] not in WORD}
    return any(reference_full(pattern, value[i:j], case_sensitive, single_char)
               for i in starts for j in ends if j >= i)


@pytest.mark.parametrize("pattern, value, expected", [
    ("*.example.org", "a.b.example.org", True),
    ("*.example.org", "example.org", False),
    ("a*z", "az", True),
    ("a?z", "az", False),
    ("a?z", "abz", True),
    ("a.b", "a.b", True),
    ("a.b", "axb", False),  # only * and ? are special
    ("a+(b)", "A+(B)", True),  # case-insensitive, regex characters literal
    ("[ab]", "a", False),
    ("[ab]", "[AB]", True),
    ("?", "\n", True),
    ("", "", True),
    ("", "a", False),
    ("*", "", True),
    ("**a**", "a", True),
    ("*a*a", "aa", True),
    ("*a*a", "a", False),
    ("ab*ba", "aba", False),  # the first and last segment may not overlap
    ("ab*ba", "abba", True),
])
def test_whole_value(pattern, value, expected):
    assert glob_matches(pattern, value) is expected


@pytest.mark.parametrize("pattern, value, expected", [
    ("ex*ple", "an example here", True),
    ("ex*ple", "examples", False),
    ("ex*ple", "anexample", False),
    ("ex*ple", "example", True),
    ("cake*lie", "the cake is a lie", True),
    ("lie", "belie it", False),
    ("lie", "a lie.", True),
    ("lie*", "a lie_x y", True),  # the star reaches the next boundary
    ("*", "", True),
    ("*", "x", True),
    ("?", "ab", False),
    ("?", "a b", True),
    ("a?", "a .", True),  # the space itself is a character of the match
    ("a?", "a b", False),  # ... and the match ends before a word character
    ("_x", "a_x", False),  # _ is a word character
])
def test_word_bounded_substring(pattern, value, expected):
    assert glob_matches(pattern, value, word_boundary=True) is expected


@pytest.mark.parametrize("pattern, value, expected", [
    ("m.room.*", "m.room.message", True),
    ("m.room.*", "M.ROOM.message", False),  # case-sensitive
    ("a?c", "abc", False),  # ? is literal
    ("a?c", "a?c", True),
    ("[ab]*", "a", False),
    ("[ab]*", "[ab]x", True),
    ("*", "", True),
])
def test_filter_flavour(pattern, value, expected):
    """Event filters (client-server "Filtering"): ``*`` the only wildcard, case-sensitive."""
    assert glob_matches(pattern, value, case_sensitive=True, single_char=False) is expected


_PATTERN = st.text(alphabet="ab?*A_ .", max_size=8)
_VALUE = st.text(alphabet="abAB_ .\n", max_size=10)


@settings(max_examples=1500, deadline=None)
@given(_PATTERN, _VALUE)
def test_whole_value_agrees_with_reference(pattern, value):
    assert glob_matches(pattern, value) is reference_full(pattern, value)


@settings(max_examples=1500, deadline=None)
@given(_PATTERN, _VALUE)
def test_word_bounded_agrees_with_reference(pattern, value):
    assert glob_matches(pattern, value, word_boundary=True) is reference_word(pattern, value)


@settings(max_examples=1500, deadline=None)
@given(_PATTERN, _VALUE, st.booleans(), st.booleans(), st.booleans())
def test_flavours_agree_with_reference(pattern, value, case_sensitive, single_char, word_boundary):
    reference = reference_word if word_boundary else reference_full
    assert glob_matches(pattern, value, word_boundary=word_boundary, case_sensitive=case_sensitive,
                        single_char=single_char) is reference(pattern, value, case_sensitive, single_char)


@pytest.mark.parametrize("pattern", ["*" * 28 + "x", "*a" * 200 + "x", "?*" * 100 + "x", "a*" * 500])
@pytest.mark.parametrize("word_boundary", [False, True])
def test_worst_case_patterns_take_milliseconds(pattern, word_boundary):
    """A backtracking regex took 0.9 s for ``*`` x28 then ``x`` on 8 characters, 12 s on 10."""
    value = "a" * 65536
    started = time.perf_counter()
    assert glob_matches(pattern, value, word_boundary=word_boundary) is (pattern == "a*" * 500)
    assert time.perf_counter() - started < 0.25
