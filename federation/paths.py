"""Building federation request paths."""

from urllib.parse import quote


def segment(value: str) -> str:
    """Percent-encode one path segment (room v3 event ids may contain "/")."""
    return quote(value, safe="")
