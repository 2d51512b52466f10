"""Homeserver configuration: a YAML file using Synapse's key names and shapes.

An administrator's Synapse ``homeserver.yaml`` should mostly carry over:

* keys we implement (:data:`table.KEYS`, each declared once) are validated; a wrong value raises
  :class:`ConfigError` whose message starts with the key path (``listeners[0].port: ...``);
* Synapse keys we do not implement yet are logged once each (a warning, never a refusal) and ignored;
* keys neither we nor Synapse know are logged once each as a possible typo.

Relative paths are resolved against the directory holding the config file.

Pure: no Twisted, no network, only file reads (secret files, signing key).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from homeserver.config.reader import Reader
from homeserver.config.table import KEYS
from homeserver.config.workers import SINGLE_PROCESS
from homeserver.config.values import (DEFAULT_IP_RANGE_BLACKLIST, ConfigError, DatabaseConfig,
                                      FederationRateLimit, ListenerConfig, RateLimit, check_int,
                                      parse_duration_ms, validate_server_name)

__all__ = [
    "DEFAULT_IP_RANGE_BLACKLIST", "Config", "ConfigError", "DatabaseConfig", "FederationRateLimit",
    "ListenerConfig", "RateLimit", "check_int", "load_config", "parse_config", "parse_duration_ms",
    "read_signing_key", "validate_server_name",
]


def _field(key) -> tuple[str, Any, Any]:
    default = list(key.default) if isinstance(key.default, tuple) else key.default
    if isinstance(default, list):
        return key.attribute, Any, dataclasses.field(default_factory=lambda d=default: list(d),
                                                     repr=not key.secret)
    return key.attribute, Any, dataclasses.field(default=default, repr=not key.secret)


# The parsed configuration: one attribute per key of the table, plus where the file is and the
# mapping as read (it holds secrets: not in repr).
Config = dataclasses.make_dataclass(
    "Config",
    [("config_path", str), ("config_dir", str), *(_field(k) for k in KEYS),
     ("worker_role", Any, dataclasses.field(default=SINGLE_PROCESS)),  # derived from the worker keys
     ("more_config_paths", tuple, dataclasses.field(default=())),  # the files read after config_path
     ("raw", dict, dataclasses.field(default_factory=dict, repr=False))],
    frozen=True,
    namespace={"__module__": __name__},
)


def parse_config(raw: dict, config_path: str) -> Config:
    """Validate an already-parsed YAML mapping; ``config_path`` anchors
    relative paths (its directory) and is recorded in the result."""
    if not isinstance(raw, dict):
        raise ConfigError("config file: the top level must be a mapping of keys to values")
    reader = Reader(raw, config_path)
    values = reader.parse()
    return Config(config_path=reader.config_path, config_dir=reader.config_dir, raw=raw, **values)


def load_config(path: str, *more: str) -> Config:
    """Read, parse and validate the YAML config file at ``path``; each of ``more`` (e.g. a worker's file,
    as Synapse's ``-c homeserver.yaml -c worker.yaml``) overrides its top-level keys. Relative paths are
    resolved against ``path``'s directory."""
    raw = _read_yaml(path)
    for extra in more:
        raw.update(_read_yaml(extra))
    config = parse_config(raw, path)
    return dataclasses.replace(config, more_config_paths=tuple(more)) if more else config


def _read_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"config file: cannot read {path}: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file: {path} is not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("config file: the top level must be a mapping of keys to values")
    return raw


def read_signing_key(path: str):
    """Return the first signing key of a Synapse-format key file."""
    from signedjson.key import read_signing_keys

    try:
        with open(path, encoding="utf-8") as f:
            keys = read_signing_keys(f)
    except OSError as e:
        raise ConfigError(f"signing_key_path: cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # malformed line, bad base64, unknown algorithm
        raise ConfigError(
            f"signing_key_path: {path} is not a valid signing key file "
            f"(expected 'ed25519 <version> <base64 seed>'): {e}"
        ) from None
    if not keys:
        raise ConfigError(f"signing_key_path: {path} contains no key")
    return keys[0]
