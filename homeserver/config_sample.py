"""Writing a new ``homeserver.yaml`` (``hexagone init``): every key of the table
(:data:`homeserver.config.table.KEYS`) with its description, in Synapse's shapes."""

from __future__ import annotations

import os
import dataclasses
import json
import secrets
import string
import urllib.parse
from typing import Any

import yaml

from homeserver.config import ConfigError, RateLimit, check_int, validate_server_name
from homeserver.config.table import KEYS, Field, Key, SampleContext

def generate_signing_key_version() -> str:
    """A key id version in Synapse's style: ``a_`` plus 4 random characters."""
    alphabet = string.ascii_letters + string.digits
    return "a_" + "".join(secrets.choice(alphabet) for _ in range(4))


# ---------------------------------------------------------------------------
# Config generation
# ---------------------------------------------------------------------------


def database_from_url(url: str | None, config_dir: str) -> tuple[str, dict]:
    """(name, args) in Synapse's shape from a database URL or SQLite path."""
    if not url:
        return "sqlite3", {"database": os.path.join(config_dir, "homeserver.db")}
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        args: dict[str, Any] = {}
        if parts.username:
            args["user"] = urllib.parse.unquote(parts.username)
        if parts.password is not None:
            args["password"] = urllib.parse.unquote(parts.password)
        dbname = urllib.parse.unquote(parts.path.lstrip("/"))
        if dbname:
            args["dbname"] = dbname
        if parts.hostname:
            args["host"] = urllib.parse.unquote(parts.hostname)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"database: invalid port in database URL {url!r}") from None
        if port:
            args["port"] = port
        for k, v in urllib.parse.parse_qsl(parts.query):
            args[k] = v
        args.setdefault("cp_min", 5)
        args.setdefault("cp_max", 10)
        return "psycopg2", args
    if parts.scheme == "sqlite":
        # sqlite:///abs/path -> /abs/path ; sqlite://rel/path -> rel/path
        path = urllib.parse.unquote(url[len("sqlite://"):]) if url.startswith("sqlite://") \
            else urllib.parse.unquote(url[len("sqlite:"):])
        if not path:
            raise ConfigError(f"database: no file path in database URL {url!r}")
        if path.startswith("/"):
            path = "/" + path.lstrip("/")  # sqlite:///abs and sqlite:////abs
        return "sqlite3", {"database": os.path.abspath(path)}
    if parts.scheme and len(parts.scheme) > 1:  # not a Windows drive letter
        raise ConfigError(
            f"database: unsupported database URL {url!r}; use postgresql://user:pw@host:port/db, "
            "sqlite:///path/to/file.db or a plain file path"
        )
    return "sqlite3", {"database": os.path.abspath(url)}


_HEADER = """\
# Hexagone homeserver configuration.
#
# Keys and value shapes follow Synapse's homeserver.yaml, so most of a Synapse
# configuration carries over. Synapse options Hexagone does not implement yet
# are logged as warnings at start and ignored; unknown keys are logged as
# possible typos. A wrong value for an implemented option refuses to start,
# naming the key. Relative paths are relative to this file's directory.
#
# Durations accept Synapse's suffixes: ms, s, m, h, d, w, y (a bare number is
# milliseconds). Sizes accept K, M, G, T (a bare number is bytes).
"""


def _plain(value: Any) -> Any:
    """A table value as YAML data (rate limits as their mapping, tuples as lists)."""
    if isinstance(value, RateLimit):
        return {"per_second": value.per_second, "burst_count": value.burst_count}
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _field_docs(fields: tuple[Field, ...], indent: str, depth: int = 1) -> str:
    """A comment line (or more) per declared sub-key: its description, then whether it is required or
    its default; nested sub-keys below their key, indented further."""
    out = []
    for f in fields:
        pad = f"{indent}#{'  ' * depth} "
        note = " Required." if f.required else (
            "" if f.default in (None, ()) else f" Default: {json.dumps(_plain(f.default))}.")
        first, *rest = (f.doc + note).splitlines()
        out.append(f"{pad}{f.name}: {first}\n" + "".join(f"{pad}  {line}\n" for line in rest))
        out.append(_field_docs(f.items, indent, depth + 1))
    return "".join(out)


def _render(key: Key, ctx: SampleContext, indent: str) -> str:
    """``# description`` lines, then the key with its sample value (commented out if optional)."""
    leaf = key.name.split(".", 1)[-1]
    value = _plain(key.sample(ctx) if key.sample else key.default)
    text = yaml.safe_dump({leaf: value}, default_flow_style=False, sort_keys=False, width=100)
    if isinstance(value, list) and value:  # indent a block sequence under its key
        first, _, rest = text.partition("\n")
        text = first + "\n" + "".join(f"  {line}\n" for line in rest.splitlines())
    prefix = indent + ("#" if key.commented else "")
    doc = "".join(f"{indent}# {line}\n" for line in key.doc.splitlines())
    if key.items:
        doc += f"{indent}# Sub-keys:\n" + _field_docs(key.items, indent)
    return doc + "".join(f"{prefix}{line}\n" for line in text.splitlines())


def generate_config_yaml(
    server_name: str,
    config_dir: str,
    port: int = 8008,
    database_url: str | None = None,
    *,
    placeholder_secret: str | None = None,
    federate_with: tuple[str, ...] = (),
) -> str:
    """A complete, commented homeserver.yaml in Synapse's shape, generated from the key table; it
    federates with ``federate_with`` only (none by default) and trusts no key notary.

    Fresh random secrets are generated unless ``placeholder_secret`` is given
    (used for the checked-in sample).
    """
    validate_server_name(server_name)
    check_int(port, "port", 1, 65535)
    config_dir = os.path.abspath(config_dir)
    db_name, db_args = database_from_url(database_url, config_dir)
    for i, peer in enumerate(federate_with):
        validate_server_name(peer, f"--federate-with[{i}]")
    ctx = SampleContext(
        server_name, config_dir, port, db_name, db_args,
        lambda: placeholder_secret if placeholder_secret is not None else secrets.token_urlsafe(32),
        tuple(federate_with),
    )
    parts, section, group = [_HEADER], None, None
    for key in KEYS:
        if key.section != section:
            section = key.section
            parts.append(f"\n## {section} ##\n")
        if "." in key.name:
            if key.top != group:
                parts.append(f"\n# {key.top} (its keys below)\n{key.top}:\n")
            group = key.top
            parts.append(_render(key, ctx, "  "))
        else:
            group = None
            parts.append("\n" + _render(key, ctx, ""))
    return "".join(parts)
