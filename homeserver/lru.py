"""The one in-memory cache class: a bounded map that evicts the least recently used entries first."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_ABSENT = object()


class LruCache(Generic[K, V]):
    """A map bounded by weight. Eviction policy: after a :meth:`put`, while the total weight of the entries
    exceeds ``max_weight``, the least recently used entry goes (the new one last, should it alone be too
    heavy). :meth:`get` and :meth:`put` make an entry the most recently used; :meth:`peek` and ``in`` do not,
    so a cache read only with :meth:`peek` evicts in insertion order. An entry weighs ``weigh(value)``,
    1 by default (then ``max_weight`` is a number of entries). ``on_evict(key, value)`` is told of each
    entry evicted (not of those :meth:`pop` or :meth:`clear` remove)."""

    def __init__(self, max_weight: int, weigh: Callable[[V], int] | None = None,
                 on_evict: Callable[[K, V], None] | None = None):
        self.max_weight = max_weight
        self._weigh = weigh
        self._on_evict = on_evict
        self._items: OrderedDict[K, V] = OrderedDict()
        self.weight = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` (now the most recently used), or ``default``."""
        value = self._items.get(key, _ABSENT)
        if value is _ABSENT:
            return default
        self._items.move_to_end(key)
        return value

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key``, or ``default``, its place in the eviction order unchanged."""
        return self._items.get(key, default)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used, replacing any value of ``key``, then evict."""
        items = self._items
        if key in items:
            self.weight -= self._weight_of(items.pop(key))
        items[key] = value
        self.weight += self._weight_of(value)
        while self.weight > self.max_weight:
            evicted_key, evicted = items.popitem(last=False)
            self.weight -= self._weight_of(evicted)
            if self._on_evict is not None:
                self._on_evict(evicted_key, evicted)

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove ``key``; its value, or ``default``."""
        if key not in self._items:
            return default
        value = self._items.pop(key)
        self.weight -= self._weight_of(value)
        return value

    def clear(self) -> None:
        self._items.clear()
        self.weight = 0

    def _weight_of(self, value: V) -> int:
        weigh = self._weigh
        return 1 if weigh is None else weigh(value)
