"""Canonical JSON (spec: appendices, "Canonical JSON"; room v6 "Canonical JSON")."""

from __future__ import annotations

import json
from typing import Any

from canonicaljson import encode_canonical_json as _library_encode

from .errors import EventFormatError
from .room_versions import RoomVersion, get_room_version

MIN_CANONICAL_INT = -(2**53) + 1
MAX_CANONICAL_INT = 2**53 - 1

_PLAIN_LEAVES = frozenset((str, bool, type(None)))

def encode_canonical_json(obj: Any, *, may_hold_floats: bool = True) -> bytes:
    """Encode ``obj`` as canonical JSON bytes (appendices: "Canonical JSON"): the one encoder of the tree.

    Keys are sorted by code point, no insignificant whitespace, UTF-8 output: the bytes of the
    ``canonicaljson`` library (a project choice; the property test holds them equal), plus the number
    rule the library lacks: floats with an integral value (e.g. ``1e10``, ``-0.0``) are written as
    integers, as in the spec's example ``{"a": -0, "b": 1e10}`` -> ``{"a":0,"b":10000000000}``, which
    the library alone fails (``10000000000.0``). Other floats are encoded as-is (callers that need
    strictness use :func:`check_canonical_values`). NaN/Infinity are refused.
    ``may_hold_floats=False`` skips the search for integral floats: for events of room versions whose
    number rules refuse every float (an event holding one is rejected anyway).

    Measured by ``tests/bench/bench_primitives.py`` (CPython 3.11, ``timeit``, best of 5), microseconds:

    ===================================  =======  =====================  =============
    input                                default  may_hold_floats=False  canonicaljson
    ===================================  =======  =====================  =============
    event, 1.1 KB                        7.9      6.2                    6.2
    device keys, 0.3 KB                  3.2      2.4                    2.4
    power levels of 2000 users, 70 KB    475      379                    378
    ===================================  =======  =====================  =============

    The float search is what the default costs over the library (the spec's number rule); without it
    the cost is the library's, since the encoding is the library's.
    """
    try:
        return _library_encode(_normalise(obj) if may_hold_floats and _has_float(obj) else obj)
    except (TypeError, ValueError) as e:
        raise EventFormatError(f"cannot encode as canonical JSON: {e}") from e


def _has_float(obj: Any) -> bool:
    """Whether a float is anywhere in ``obj`` (a walk that copies nothing: events rarely hold one).
    Dispatches on exact types first, the common case of decoded JSON; subclasses take ``isinstance``."""
    stack = [obj]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            stack.extend(value.values())
        elif kind in _PLAIN_LEAVES or kind is int:
            continue
        elif kind is list or kind is tuple:
            stack.extend(value)
        elif isinstance(value, float):
            return True
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return False


def _normalise(obj: Any) -> Any:
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        if any(isinstance(v, (float, dict, list, tuple)) for v in obj.values()):
            return {k: _normalise(v) for k, v in obj.items()}
        return obj
    if isinstance(obj, (list, tuple)):
        return [_normalise(v) for v in obj]
    return obj


def check_canonical_values(obj: Any, room_version: RoomVersion | str) -> None:
    """Enforce canonical JSON number rules for v6+ rooms (room v6 "Canonical JSON").

    Floats and integers outside ``[-(2**53)+1, 2**53-1]`` raise ``EventFormatError``.
    Room versions 1-5 are not checked. Non-string keys are always an error.
    """
    rv = get_room_version(room_version)
    if rv.strict_canonical_json and not _canonical_values(obj):
        _raise_first_bad_value(obj)


def _canonical_values(obj: Any) -> bool:
    """Whether ``obj`` holds only strings, booleans, nulls, in-range integers, string-keyed objects and
    arrays: the fast walk, on exact types (:func:`_canonical_value` takes subclasses);
    :func:`_raise_first_bad_value` finds where it fails."""
    stack = [obj]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            for key in value:
                if type(key) is not str and not isinstance(key, str):
                    return False
            stack.extend(value.values())
        elif kind in _PLAIN_LEAVES:
            continue
        elif kind is int:
            if not MIN_CANONICAL_INT <= value <= MAX_CANONICAL_INT:
                return False
        elif kind is list:
            stack.extend(value)
        elif not _canonical_value(value):
            return False
    return True


def _canonical_value(value: Any) -> bool:
    if isinstance(value, (str, bool)) or value is None:
        return True
    if isinstance(value, int):
        return MIN_CANONICAL_INT <= value <= MAX_CANONICAL_INT
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value) and all(_canonical_values(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_canonical_values(v) for v in value)
    return False


def _raise_first_bad_value(obj: Any) -> None:
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            if not MIN_CANONICAL_INT <= value <= MAX_CANONICAL_INT:
                raise EventFormatError(f"integer out of canonical range at {path or '/'}")
        elif isinstance(value, float):
            raise EventFormatError(f"float value not allowed at {path or '/'}")
        elif isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise EventFormatError(f"non-string key at {path or '/'}")
                stack.append((v, f"{path}/{k}"))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                stack.append((v, f"{path}/{i}"))
        else:
            raise EventFormatError(f"value of type {type(value).__name__} at {path or '/'}")


def _reject_constant(name: str) -> Any:
    raise EventFormatError(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise EventFormatError(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def decode_json(data: bytes | str) -> Any:
    """Parse JSON strictly: reject NaN/Infinity and duplicate object keys."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise EventFormatError(f"JSON is not UTF-8: {e}") from e
    try:
        return json.loads(
            data, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
        )
    except json.JSONDecodeError as e:
        raise EventFormatError(f"invalid JSON: {e}") from e
