"""Configuration of the media repository's backends: the antivirus (``content_scanner``), the storage
providers (``media_storage_providers``, S3) and the URL previews' ``url_preview_url_blacklist``.

Pure: value objects and checks, no Twisted, no network. Each check returns or raises with the key path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from homeserver.config.values import ConfigError

# The module name Synapse admins use for synapse-s3-storage-provider; its S3 backend is built in here.
S3_PROVIDER_MODULE = "s3_storage_provider.S3StorageProviderBackend"
S3_CONFIG_KEYS = ("bucket", "endpoint_url", "region_name", "access_key_id", "secret_access_key", "prefix",
                  "storage_class")
# Options of that module not implemented here (a warning, not a refusal).
S3_SYNAPSE_ONLY_KEYS = ("threadpool_size", "sse_customer_key", "sse_customer_algo", "ec2_instance_profile",
                        "session_token", "extra_args", "proxies")
PROVIDER_KEYS = ("module", "store_local", "store_remote", "store_synchronous", "config")
URL_PARTS = ("scheme", "netloc", "path", "query", "fragment", "username", "password", "hostname", "port")


@dataclass(frozen=True)
class ContentScannerConfig:
    """``content_scanner``: clamd's address and whether an unreachable scanner refuses media (Hexagone's key)."""

    clamd: str
    fail_closed: bool = True


@dataclass(frozen=True)
class StorageProviderConfig:
    """One ``media_storage_providers`` entry, in Synapse's shape (its flags default to false, as there)."""

    module: str
    config: dict = field(default_factory=dict, repr=False)  # holds the secret key
    store_local: bool = False
    store_remote: bool = False
    store_synchronous: bool = False


def parse_clamd_address(address: Any) -> tuple[str, str, int]:
    """``tcp://HOST:PORT`` -> ("tcp", HOST, PORT); ``unix:PATH`` (or ``unix://PATH``) -> ("unix", PATH, 0).

    Raises ``ValueError`` with the reason for anything else.
    """
    if not isinstance(address, str):
        raise ValueError("must be a string: tcp://HOST:PORT or unix:PATH")
    if address.startswith("unix:"):
        path = address[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ValueError(f"unix:PATH needs an absolute socket path, got {address!r}")
        return "unix", path, 0
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError(f"expected tcp://HOST:PORT or unix:PATH, got {address!r}")
    return "tcp", parts.hostname, port


def check_s3_config(config: Any, path: str) -> list[str]:
    """Problems of an S3 provider's ``config`` mapping, each starting with its key path (empty when fine).
    Keys outside :data:`S3_CONFIG_KEYS` are not problems here (the reader warns about them)."""
    if not isinstance(config, dict):
        return [f"{path}: must be a mapping with at least bucket"]
    problems = []
    if not isinstance(config.get("bucket"), str) or not config["bucket"]:
        problems.append(f"{path}.bucket: must be the name of the bucket")
    for k in S3_CONFIG_KEYS[1:]:
        if config.get(k) is not None and not isinstance(config[k], str):
            problems.append(f"{path}.{k}: must be a string")
    if (config.get("access_key_id") is None) != (config.get("secret_access_key") is None):
        problems.append(f"{path}: set both access_key_id and secret_access_key, or neither "
                        "(then boto3 finds credentials in its environment)")
    return problems


def check_url_blacklist(value: Any, path: str) -> list[str]:
    """Problems of a ``url_preview_url_blacklist`` value, each starting with its key path."""
    if not isinstance(value, list):
        return [f"{path}: must be a list of mappings from URL parts ({', '.join(URL_PARTS)}) to patterns"]
    problems = []
    for i, rule in enumerate(value):
        if not isinstance(rule, dict) or not rule:
            problems.append(f"{path}[{i}]: must be a non-empty mapping of URL parts to patterns")
            continue
        for part, pattern in rule.items():
            if part not in URL_PARTS:
                problems.append(f"{path}[{i}].{part}: not a URL part ({', '.join(URL_PARTS)})")
            elif not isinstance(pattern, str):
                problems.append(f"{path}[{i}].{part}: must be a string")
            elif pattern.startswith("^"):
                try:
                    re.compile(pattern)
                except re.error as e:
                    problems.append(f"{path}[{i}].{part}: not a regular expression: {e}")
    return problems


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise ConfigError("; ".join(problems))
