"""Canonical JSON (spec: appendices, "Canonical JSON"; room v6 "Canonical JSON")."""

from __future__ import annotations

import json
from typing import Any

from .errors import EventFormatError
from .room_versions import RoomVersion, get_room_version

MIN_CANONICAL_INT = -(2**53) + 1
MAX_CANONICAL_INT = 2**53 - 1

_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    sort_keys=True,
    allow_nan=False,
)


def encode_canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON bytes (appendices: "Canonical JSON").

    Keys are sorted by code point, no insignificant whitespace, UTF-8 output.
    Floats with an integral value (e.g. ``1e10``, ``-0.0``) are written as integers,
    as in the spec's examples; other floats are encoded as-is (callers that
    need strictness use :func:`check_canonical_values`). NaN/Infinity are refused.
    """
    try:
        return _ENCODER.encode(_normalise(obj) if _has_float(obj) else obj).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise EventFormatError(f"cannot encode as canonical JSON: {e}") from e


def _has_float(obj: Any) -> bool:
    """Whether a float is anywhere in ``obj`` (a walk that copies nothing: events rarely hold one)."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, float):
            return True
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
    if not rv.strict_canonical_json:
        return
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
