"""Dot-separated property paths: push rule condition keys (client-server "Conditions", MSC3873, spec
v1.7) and filters' ``event_fields`` (client-server "Filtering", MSC3980, spec v1.8) share one syntax."""

from __future__ import annotations


def split_dotted_path(path: str) -> list[str]:
    """The property names of ``path``: ``.`` separates them, ``\\.`` is a literal dot, ``\\\\`` a literal
    backslash, and a backslash before anything else (or at the end) is itself."""
    parts, current, i = [], "", 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current += path[i + 1]
            i += 2
            continue
        if ch == ".":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts
