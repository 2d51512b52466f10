"""The one cache class (homeserver/lru.py): its eviction policy."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.http.router import Requester
from homeserver.lru import LruCache
from homeserver.services.auth import TokenCache


def test_least_recently_used_goes_first():
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2


def test_peek_and_in_leave_the_order_alone():
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert "a" in cache and cache.peek("a") == 1
    cache.put("c", 3)
    assert "a" not in cache and cache.peek("b") == 2


def test_put_replaces_and_refreshes():
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert cache.peek("a") == 10 and "b" not in cache


def test_weighted_entries_evict_until_under_the_bound():
    cache: LruCache[str, bytes] = LruCache(10, len)
    cache.put("a", b"xxxx")
    cache.put("b", b"xxxx")
    cache.put("c", b"xxxx")
    assert "a" not in cache and cache.weight == 8
    cache.put("d", b"x" * 11)  # heavier than the bound alone: it goes too, last
    assert len(cache) == 0 and cache.weight == 0


def test_pop_and_clear():
    cache: LruCache[str, bytes] = LruCache(10, len)
    cache.put("a", b"xx")
    assert cache.pop("a") == b"xx" and cache.pop("a", b"") == b"" and cache.weight == 0
    cache.put("b", b"x")
    cache.clear()
    assert len(cache) == 0 and cache.weight == 0 and cache.get("b") is None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=5),
       st.lists(st.tuples(st.sampled_from(["get", "peek", "put", "pop"]), st.integers(0, 7)), max_size=60))
def test_same_as_a_reference_model(size, ops):
    """Against a list kept in recency order: same contents after any sequence of operations."""
    cache: LruCache[int, int] = LruCache(size)
    model: list[tuple[int, int]] = []  # least recently used first
    for step, (op, key) in enumerate(ops):
        found = [kv for kv in model if kv[0] == key]
        if op == "put":
            model = [kv for kv in model if kv[0] != key] + [(key, step)]
            model = model[-size:]
            cache.put(key, step)
        elif op == "pop":
            model = [kv for kv in model if kv[0] != key]
            assert cache.pop(key) == (found[0][1] if found else None)
        else:
            assert getattr(cache, op)(key) == (found[0][1] if found else None)
            if op == "get" and found:
                model = [kv for kv in model if kv[0] != key] + found
        assert [k for k, _ in model] == list(cache._items) and cache.weight == len(model)


def test_on_evict_is_told_of_evictions_only():
    evicted = []
    cache: LruCache[str, int] = LruCache(1, on_evict=lambda k, v: evicted.append((k, v)))
    cache.put("a", 1)
    cache.put("a", 2)  # a replacement, not an eviction
    cache.pop("a")
    cache.put("b", 3)
    cache.put("c", 4)
    assert evicted == [("b", 3)]


def test_token_cache_evicts_least_recently_used_and_keeps_its_user_index():
    """services.auth.TokenCache on LruCache: an evicted token leaves the user's index too, so a later
    ``forget`` of that user still works."""

    class SmallTokenCache(TokenCache):
        MAX_TOKENS = 2

    cache = SmallTokenCache()
    for token in ("t1", "t2"):
        cache.put(Requester("@a:x", token.upper(), token), cache.generation)
    assert cache.get("t1").device_id == "T1"  # t2 is now the least recently used
    cache.put(Requester("@b:x", "B", "t3"), cache.generation)
    assert cache.get("t2") is None and cache.get("t1") is not None and cache.get("t3") is not None
    cache.forget("@a:x", {"T2"})  # the evicted device: nothing to drop, no error
    cache.forget("@a:x", {"T1"})
    assert cache.get("t1") is None and cache.get("t3") is not None
    cache.forget("@b:x")
    assert cache.get("t3") is None
