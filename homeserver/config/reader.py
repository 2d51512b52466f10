"""The parser: reads each key of the table (:mod:`homeserver.config.table`) with the parser its
kind names, checks the rules that span keys, warns once about each key it ignores.

A wrong value raises :class:`ConfigError` whose message starts with the key path and never
quotes a secret.
"""

from __future__ import annotations

import dataclasses
import email.utils
import ipaddress
import logging
import os
import re
import urllib.parse
from typing import Any, Iterable

from nacl.signing import VerifyKey
from unpaddedbase64 import decode_base64

from homeserver.config.table import (IMPLEMENTED_TOP_LEVEL_KEYS, KEYS, SILENTLY_IGNORED_KEYS, SYNAPSE_SUBKEYS,
                                     Field, Key)
from homeserver.config.appservices import load_registrations
from homeserver.config.media_backends import (PROVIDER_KEYS, S3_CONFIG_KEYS, S3_PROVIDER_MODULE,
                                              S3_SYNAPSE_ONLY_KEYS, ContentScannerConfig, StorageProviderConfig,
                                              check_s3_config, check_url_blacklist, parse_clamd_address,
                                              raise_problems)
from homeserver.config import workers
from homeserver.config.synapse_keys import SYNAPSE_TOP_LEVEL_KEYS
from homeserver.config.values import (IMPLEMENTED_RESOURCES, SYNAPSE_RESOURCES, ConfigError, DatabaseConfig,
                                      FederationRateLimit, ListenerConfig, MediaRetention, PeerPolicy, PurgeJob,
                                      RateLimit, RetentionConfig, ThumbnailSize, UploadLimit, check_int,
                                      conninfo_quote, expand_resources, is_empty, parse_duration_ms, parse_size,
                                      read_secret_file, validate_server_name)
from homeserver.events.room_versions import CREATABLE_ROOM_VERSIONS, KNOWN_ROOM_VERSIONS

logger = logging.getLogger("homeserver.config")


class Reader:
    """Reads one YAML mapping; ``values`` holds what is parsed so far, by attribute name."""

    def __init__(self, raw: dict, config_path: str):
        self.raw = raw
        self.config_path = os.path.abspath(config_path)
        self.config_dir = os.path.dirname(self.config_path)
        self.values: dict[str, Any] = {}
        self._warned: set[str] = set()

    def parse(self) -> dict[str, Any]:
        """Every key of the table, then the rules spanning keys; returns the values by attribute."""
        sections: dict[str, dict] = {}
        for key in KEYS:
            if "." in key.name:
                top, leaf = key.name.split(".", 1)
                if top not in sections:
                    sections[top] = self.dict_(top)
                    subs = [k.name.split(".", 1)[1] for k in KEYS if k.top == top]
                    self.check_subkeys(sections[top], top, subs, SYNAPSE_SUBKEYS.get(top, ()))
                src = sections[top]
            else:
                src, leaf = self.raw, key.name
            self.values[key.attribute] = getattr(self, f"kind_{key.kind}")(key, src, leaf)
        self.check_registration()
        self.check_listener_tls()
        self.check_url_preview()
        self.check_email()
        self.check_cas()
        self.check_captcha()
        self.values["worker_role"] = workers.worker_role(self.values)
        self.warn_ignored_top_level()
        return self.values

    # -- kinds: (key, mapping holding it, name in that mapping) -> value -------------

    def kind_bool(self, k: Key, src: dict, leaf: str) -> bool:
        return self.bool_(leaf, k.default, src, k.name)

    def kind_int(self, k: Key, src: dict, leaf: str) -> int:
        return self.int_(leaf, k.default, *k.bounds, src, k.name)

    def kind_multiplier(self, k: Key, src: dict, leaf: str) -> float:
        """A number at least 1 (an integer or a decimal)."""
        value = src.get(leaf)
        if value is None:
            return k.default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
            raise ConfigError(f"{k.name}: must be a number at least 1, got {value!r}")
        return float(value)

    def kind_str(self, k: Key, src: dict, leaf: str) -> str | None:
        return self.str_(leaf, k.default, src, k.name)

    def kind_path(self, k: Key, src: dict, leaf: str) -> str | None:
        return self.path_(leaf, k.default, src, k.name)

    def kind_media_store_path(self, k: Key, src: dict, leaf: str) -> str:
        return self.path_(leaf, os.path.join(self.config_dir, "media_store"), src, k.name)

    def kind_str_list(self, k: Key, src: dict, leaf: str) -> list[str]:
        return self.str_list(leaf, list(k.default), src, k.name)

    def kind_path_list(self, k: Key, src: dict, leaf: str) -> list[str]:
        return [self.resolve(p) for p in self.str_list(leaf, list(k.default), src, k.name)]

    def kind_ip_ranges(self, k: Key, src: dict, leaf: str) -> list[str] | None:
        return self.ip_ranges(k.name, None if k.default is None else list(k.default), src, leaf)

    def kind_secret(self, k: Key, src: dict, leaf: str) -> str | None:
        return self.secret(k.name)

    def kind_duration(self, k: Key, src: dict, leaf: str) -> int:
        value = src.get(leaf)
        if value is None:
            return k.default
        ms = parse_duration_ms(value, k.name)
        if k.bounds[0] is not None and ms < k.bounds[0]:
            raise ConfigError(f"{k.name}: must be at least {k.bounds[0]} ms")
        return ms

    def kind_mapping(self, k: Key, src: dict, leaf: str) -> dict:
        """A mapping (empty when unset)."""
        return self.dict_(leaf, src, k.name)

    def kind_section_enabled(self, k: Key, src: dict, leaf: str) -> bool:
        """A section's ``enabled``: true by default once the section is set (non-empty), as Synapse."""
        return bool(src) and self.bool_(leaf, True, src, k.name)

    def kind_cas_server_url(self, k: Key, src: dict, leaf: str) -> str | None:
        """An http(s) URL with a host, no query or fragment; a final / is dropped (paths are appended)."""
        url = self.str_(leaf, None, src, k.name)
        if url is None:
            return None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"{k.name}: must be an http:// or https:// URL without query or fragment, "
                              f"got {url!r}")
        return url.rstrip("/")

    def kind_https_url(self, k: Key, src: dict, leaf: str) -> str:
        """An http(s) URL with a host and no fragment (recaptcha_siteverify_api)."""
        url = self.str_(leaf, k.default, src, k.name)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise ConfigError(f"{k.name}: must be an http:// or https:// URL without fragment, got {url!r}")
        return url

    def kind_cas_protocol_version(self, k: Key, src: dict, leaf: str) -> int | None:
        value = src.get(leaf)
        if value is not None and (isinstance(value, bool) or value not in (1, 2, 3)):
            raise ConfigError(f"{k.name}: unsupported CAS protocol version {value!r} (only 1, 2 and 3 are)")
        return value

    def kind_cas_required_attributes(self, k: Key, src: dict, leaf: str) -> dict[str, str | None]:
        value = self.dict_(leaf, src, k.name)
        for name, required in value.items():
            if not isinstance(name, str) or not (required is None or isinstance(required, str)):
                raise ConfigError(f"{k.name}.{name}: must map an attribute name to a string or null")
        return dict(value)

    def kind_size(self, k: Key, src: dict, leaf: str) -> int:
        value = src.get(leaf)
        return k.default if value is None else parse_size(value, k.name)

    def kind_upload_limits(self, k: Key, src: dict, leaf: str) -> list[UploadLimit]:
        fields = ("time_period", "max_size")
        limits = []
        for path, entry in self.mappings(self._typed(leaf, [], src, k.name, list, "a list of mappings"), k.name,
                                         fields):
            if any(entry.get(f) is None for f in fields):
                raise ConfigError(f"{path}: time_period and max_size are required")
            limits.append(UploadLimit(parse_duration_ms(entry["time_period"], f"{path}.time_period"),
                                      parse_size(entry["max_size"], f"{path}.max_size")))
        return limits

    def kind_thumbnail_sizes(self, k: Key, src: dict, leaf: str) -> list[ThumbnailSize]:
        value = self._typed(leaf, None, src, k.name, list, "a list of mappings")
        if value is None:
            return list(k.default)
        sizes = []
        for path, entry in self.mappings(value, k.name, ("width", "height", "method")):
            method = self.str_("method", "scale", entry, f"{path}.method")
            if method not in ("crop", "scale"):
                raise ConfigError(f"{path}.method: must be crop or scale, got {method!r}")
            sizes.append(ThumbnailSize(self.int_("width", None, 1, 10000, entry, f"{path}.width"),
                                       self.int_("height", None, 1, 10000, entry, f"{path}.height"), method))
            if None in (sizes[-1].width, sizes[-1].height):
                raise ConfigError(f"{path}: width and height are required")
        return sizes

    def kind_media_retention(self, k: Key, src: dict, leaf: str) -> MediaRetention:
        value = self.dict_(leaf, src, k.name)
        fields = ("local_media_lifetime", "remote_media_lifetime")
        self.check_subkeys(value, k.name, fields)
        return MediaRetention(*(None if value.get(f) is None else parse_duration_ms(value[f], f"{k.name}.{f}")
                                for f in fields))

    def kind_verbatim(self, k: Key, src: dict, leaf: str) -> Any:
        """A value checked where it is used (the table's description says where)."""
        value = src.get(leaf)
        return k.default if value is None else value

    def kind_content_scanner(self, k: Key, src: dict, leaf: str) -> ContentScannerConfig | None:
        value = src.get(leaf)
        if value is None:
            return None
        scanner = self.dict_(leaf, src, k.name)
        self.check_subkeys(scanner, k.name, ("clamd", "fail_closed"))
        clamd = scanner.get("clamd")
        try:
            parse_clamd_address(clamd)
        except ValueError as e:
            raise ConfigError(f"{k.name}.clamd: {e}") from None
        return ContentScannerConfig(clamd, self.bool_("fail_closed", True, scanner, f"{k.name}.fail_closed"))

    def kind_media_storage_providers(self, k: Key, src: dict, leaf: str) -> list[StorageProviderConfig]:
        entries = self._typed(leaf, [], src, k.name, list, "a list of provider mappings")
        providers = []
        for i, entry in enumerate(entries):
            path = f"{k.name}[{i}]"
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: must be a mapping with module and config")
            self.check_subkeys(entry, path, PROVIDER_KEYS)
            module = entry.get("module")
            if module != S3_PROVIDER_MODULE:
                raise ConfigError(f"{path}.module: only {S3_PROVIDER_MODULE} (S3, built in) is supported, "
                                  f"got {module!r}")
            config = entry.get("config")
            raise_problems(check_s3_config(config, f"{path}.config"))
            self.check_subkeys(config, f"{path}.config", S3_CONFIG_KEYS, S3_SYNAPSE_ONLY_KEYS)
            flags = {f: self.bool_(f, False, entry, f"{path}.{f}")
                     for f in ("store_local", "store_remote", "store_synchronous")}
            known = {key: v for key, v in config.items() if key in S3_CONFIG_KEYS}
            providers.append(StorageProviderConfig(module, config=known, **flags))
        return providers

    def kind_url_blacklist(self, k: Key, src: dict, leaf: str) -> list[dict]:
        value = src.get(leaf)
        if value is None:
            return list(k.default)
        raise_problems(check_url_blacklist(value, k.name))
        return [dict(rule) for rule in value]

    def kind_ratelimit(self, k: Key, src: dict, leaf: str) -> RateLimit:
        return self.ratelimit(src.get(leaf), k.name, k.default)

    def kind_admin_redaction(self, k: Key, src: dict, leaf: str) -> RateLimit:
        """Synapse's default for ``rc_admin_redaction`` is whatever ``rc_message`` is."""
        return self.ratelimit(src.get(leaf), k.name, self.values["rc_message"])

    def kind_rc_federation(self, k: Key, src: dict, leaf: str) -> FederationRateLimit:
        return self.federation_limit(self.dict_(leaf, src, k.name), k.name, k.default)

    def federation_limit(self, fed: dict, path: str, base: FederationRateLimit) -> FederationRateLimit:
        """An ``rc_federation`` mapping; each field missing from it is ``base``'s."""
        fields = tuple(FederationRateLimit.__dataclass_fields__)
        self.check_subkeys(fed, path, fields)
        return FederationRateLimit(**{f: self.int_(f, getattr(base, f), 0, None, fed, f"{path}.{f}") for f in fields})

    def kind_peer_policy(self, k: Key, src: dict, leaf: str) -> dict[str, PeerPolicy]:
        """``federation_peer_policy``: server name (or ``"*"``, every other peer) -> :class:`PeerPolicy`."""
        out = {}
        for name, entry in self.dict_(leaf, src, k.name).items():
            path = f"{k.name}.{name}"
            if name != "*":
                validate_server_name(name, path)
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: must be a mapping (invite_users, join_rooms, rc_federation)")
            self.check_subkeys(entry, path, ("invite_users", "join_rooms", "rc_federation"))
            limits = entry.get("rc_federation")
            out[name] = PeerPolicy(
                invite_users=self.bool_("invite_users", True, entry, f"{path}.invite_users"),
                join_rooms=self.bool_("join_rooms", True, entry, f"{path}.join_rooms"),
                rc_federation=None if limits is None else self.federation_limit(
                    self.dict_("rc_federation", entry, f"{path}.rc_federation"), f"{path}.rc_federation",
                    self.values["rc_federation"]))
        return out

    def kind_retention(self, k: Key, src: dict, leaf: str) -> RetentionConfig:
        """``retention``: Synapse's message retention (enabled, default_policy, allowed_lifetime_min/max,
        purge_jobs), each lower bound at most its upper bound."""
        section = self.dict_(leaf, src, k.name)
        self.check_subkeys(section, k.name, ("enabled", "default_policy", "allowed_lifetime_min",
                                             "allowed_lifetime_max", "purge_jobs"))
        default = self.dict_("default_policy", section, f"{k.name}.default_policy")
        self.check_subkeys(default, f"{k.name}.default_policy", ("min_lifetime", "max_lifetime"))
        jobs = section.get("purge_jobs")
        if jobs is not None and not isinstance(jobs, list):
            raise ConfigError(f"{k.name}.purge_jobs: must be a list")
        purge_jobs = []
        for i, job in enumerate(jobs or ()):
            path = f"{k.name}.purge_jobs[{i}]"
            if not isinstance(job, dict):
                raise ConfigError(f"{path}: must be a mapping (interval, shortest_max_lifetime, longest_max_lifetime)")
            self.check_subkeys(job, path, ("interval", "shortest_max_lifetime", "longest_max_lifetime"))
            if job.get("interval") is None:
                raise ConfigError(f"{path}.interval: required")
            purge_jobs.append(PurgeJob(*_bounded(job, path, "interval", "shortest_max_lifetime",
                                                 "longest_max_lifetime")))
        config = RetentionConfig(
            self.bool_("enabled", False, section, f"{k.name}.enabled"),
            *_bounded(default, f"{k.name}.default_policy", "min_lifetime", "max_lifetime"),
            *_bounded(section, k.name, "allowed_lifetime_min", "allowed_lifetime_max"))
        return dataclasses.replace(config, purge_jobs=tuple(purge_jobs)) if purge_jobs else config

    def kind_appservices(self, k: Key, src: dict, leaf: str) -> tuple:
        """Each registration file read and checked (:mod:`homeserver.config.appservices`)."""
        paths = [self.resolve(p) for p in self.str_list(leaf, [], src, k.name)]
        return load_registrations(paths, self.values["server_name"], k.name)

    def kind_server_name(self, k: Key, src: dict, leaf: str) -> str:
        return validate_server_name(src.get(leaf), k.name)

    def kind_server_names(self, k: Key, src: dict, leaf: str) -> list[str] | None:
        names = self.str_list(leaf, k.default, src, k.name)
        for i, name in enumerate(names or ()):
            validate_server_name(name, f"{k.name}[{i}]")
        return names

    def kind_public_baseurl(self, k: Key, src: dict, leaf: str) -> str:
        url = self.str_(leaf, None, src, k.name)
        if url is None:
            return f"https://{self.values['server_name']}/"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{k.name}: must be an http:// or https:// URL, got {url!r}")
        return url if url.endswith("/") else url + "/"

    def kind_signing_key_path(self, k: Key, src: dict, leaf: str) -> str:
        default = os.path.join(self.config_dir, f"{self.values['server_name']}.signing.key")
        return self.path_(leaf, default, src, k.name)

    def kind_listeners(self, k: Key, src: dict, leaf: str) -> list[ListenerConfig]:
        """Each listener of type http; the others are ignored with a warning (before their other sub-keys
        are read). None configured: one on 127.0.0.1:8008."""
        value = src.get(leaf)
        if value is None:
            return [ListenerConfig(port=8008, bind_addresses=["127.0.0.1"], type="http", tls=False,
                                   resources=expand_resources(["client", "federation"]), x_forwarded=False)]
        if not isinstance(value, list):
            raise ConfigError(f"{k.name}: must be a list of listener mappings")
        result = []
        for i, item in enumerate(value):
            path = f"{k.name}[{i}]"
            if isinstance(item, dict) and self.listener_ignored(k, item, path):
                continue
            f = self.fields(k, item, path)
            names = ["metrics"] if f["type"] == "metrics" else [name for r in f["resources"] for name in r["names"]]
            result.append(ListenerConfig(
                port=f["port"], bind_addresses=f["bind_addresses"], type="http", tls=f["tls"],
                resources=expand_resources(names),
                x_forwarded=f["x_forwarded"], compress=any(r["compress"] for r in f["resources"]),
                trusted_proxies=tuple(f["trusted_proxies"])))
        if not result:
            raise ConfigError(f"{k.name}: no usable listener; at least one entry with type: http and a port is needed")
        seen: set[tuple[str, int]] = set()
        for lc in result:
            for addr in lc.bind_addresses:
                if (addr, lc.port) in seen:
                    raise ConfigError(f"{k.name}: port {lc.port} on {addr} is configured twice")
                seen.add((addr, lc.port))
        return result

    def kind_worker_listeners(self, k: Key, src: dict, leaf: str) -> list[ListenerConfig]:
        """A worker's listeners, read as ``listeners``; none for a worker that serves nothing."""
        return [] if src.get(leaf) is None else self.kind_listeners(k, src, leaf)

    def kind_worker_app(self, k: Key, src: dict, leaf: str) -> str | None:
        return workers.parse_worker_app(src.get(leaf), k.name)

    def kind_instance_map(self, k: Key, src: dict, leaf: str) -> dict:
        return workers.parse_instance_map(self.dict_(leaf, src, k.name), k.name)

    def kind_stream_writers(self, k: Key, src: dict, leaf: str) -> dict:
        return workers.parse_stream_writers(self.dict_(leaf, src, k.name), k.name)

    def listener_ignored(self, k: Key, item: dict, path: str) -> bool:
        """Whether a listener is of a type (or on a UNIX socket) Hexagone does not serve: warned about."""
        ltype = self.sub(next(f for f in k.items if f.name == "type"), item, path)
        if ltype in ("manhole", "replication"):
            self.warn_once(f"{path}.type", f"{path}.type: {ltype!r} is a Synapse listener type that Hexagone "
                                           "does not implement yet; this listener is ignored")
        elif ltype not in ("http", "metrics"):  # Synapse's metrics listener: the metrics resource alone
            self.warn_once(f"{path}.type", f"{path}.type: unknown listener type {ltype!r} (typo? expected http); "
                                           "this listener is ignored")
        elif item.get("path") is not None:
            self.warn_once(f"{path}.path", f"{path}.path: UNIX socket listeners are a Synapse feature that "
                                           "Hexagone does not implement yet; this listener is ignored")
        else:
            return False
        return True

    def kind_resources(self, k, src: dict, leaf: str) -> list[dict]:
        return self.list_of(k, src, leaf) or []

    def kind_resource_names(self, k, src: dict, leaf: str) -> list[str]:
        """The resource names Hexagone serves; the others are ignored with a warning."""
        names = []
        for j, name in enumerate(self.str_list(leaf, list(k.default), src, k.name)):
            if name in IMPLEMENTED_RESOURCES:
                names.append(name)
            elif name in SYNAPSE_RESOURCES:
                self.warn_once(f"resource:{name}", f"{k.name}[{j}]: resource {name!r} is a Synapse resource that "
                                                   "Hexagone does not implement yet; ignored")
            else:
                self.warn_once(f"resource:{name}", f"{k.name}[{j}]: unknown resource name {name!r} (typo?); ignored")
        return names

    def kind_ip_addresses(self, k, src: dict, leaf: str) -> list[str]:
        addresses = self.str_list(leaf, list(k.default), src, k.name)
        for j, addr in enumerate(addresses):
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise ConfigError(f"{k.name}[{j}]: {addr!r} is not an IP address") from None
        if not addresses:
            raise ConfigError(f"{k.name}: must not be empty")
        return addresses

    def kind_database(self, k: Key, src: dict, leaf: str) -> DatabaseConfig:
        if self.raw.get("databases") is not None:
            self.warn_not_implemented("databases")
        db = self.fields(k, self.dict_(leaf, src, k.name), k.name)
        name, args = db["name"], db["args"]
        if name == "sqlite3":
            dbfile = "homeserver.db" if args["database"] is None else args["database"]
            if not isinstance(dbfile, str) or not dbfile:
                raise ConfigError(f"{k.name}.args.database: must be a file path")
            sqlite_path = dbfile if dbfile == ":memory:" else self.resolve(dbfile)
            return DatabaseConfig("sqlite", sqlite_path, None, *self.pool_sizes(k, args, 1, 1))
        if name in ("psycopg2", "psycopg"):
            return DatabaseConfig("postgresql", None, self.pg_dsn(args), *self.pool_sizes(k, args, 5, 10))
        raise ConfigError(f"{k.name}.name: unknown database engine {name!r}; use sqlite3 or psycopg2")

    def kind_connection_args(self, k, src: dict, leaf: str) -> dict:
        """The declared sub-keys, read; the others as they are (libpq parameters)."""
        args = self.dict_(leaf, src, k.name)
        return {**args, **self.fields(k, args, k.name)}

    def kind_room_version(self, k: Key, src: dict, leaf: str) -> str:
        return self.parse_room_version(k.default)

    def kind_presence(self, k: Key, src: dict, leaf: str) -> bool:
        return self.parse_presence(src)

    def kind_tls_version(self, k: Key, src: dict, leaf: str) -> str:
        return self.parse_minimum_tls_version(k.default)

    def kind_rtc_transports(self, k: Key, src: dict, leaf: str) -> list[dict]:
        """Synapse's matrix_rtc.transports: mappings with a string ``type``; a ``livekit`` one needs its
        ``livekit_service_url``."""
        value = self._typed(leaf, list(k.default), src, k.name, list, "a list of mappings")
        for i, item in enumerate(value):
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                raise ConfigError(f"{k.name}[{i}]: must be a mapping with a string type")
            if item["type"] == "livekit" and not isinstance(item.get("livekit_service_url"), str):
                raise ConfigError(f"{k.name}[{i}]: a livekit transport needs its livekit_service_url")
        return value

    def kind_trusted_key_servers(self, k: Key, src: dict, leaf: str) -> list[dict]:
        """Each as a mapping of the sub-keys set (``accept_keys_insecurely`` only when true)."""
        servers = self.list_of(k, src, leaf)
        if servers is None:
            return [dict(d) for d in k.default]
        return [{name: v for name, v in server.items() if v is not None and v is not False} for server in servers]

    def kind_verify_keys(self, k, src: dict, leaf: str) -> dict[str, str] | None:
        value = src.get(leaf)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(i, str) and isinstance(v, str) for i, v in value.items()):
            raise ConfigError(f"{k.name}: must map key ids (ed25519:...) to unpadded base64 public keys")
        for key_id in value:
            if not key_id.startswith("ed25519:"):
                raise ConfigError(f"{k.name}: unsupported key id {key_id!r} (expected ed25519:...)")
        return dict(value)

    def kind_old_signing_keys(self, k: Key, src: dict, leaf: str) -> dict[str, tuple[VerifyKey, int]]:
        """Synapse's ``old_signing_keys``: key id -> (public key, expired_ts)."""
        value = self._typed(leaf, {}, src, k.name, dict, "a mapping of key ids to {key, expired_ts}")
        out = {}
        for key_id, entry in value.items():
            path = f"{k.name}.{key_id}"
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                raise ConfigError(f"{path}: unsupported key id (expected ed25519:<version>)")
            f = self.fields(k, entry, path)
            out[key_id] = (f["key"], f["expired_ts"])
        return out

    def kind_ed25519_public_key(self, k, src: dict, leaf: str) -> VerifyKey:
        value = self.str_(leaf, None, src, k.name)
        try:
            return VerifyKey(decode_base64(value))
        except Exception:
            raise ConfigError(f"{k.name}: not an unpadded base64 ed25519 public key") from None

    # -- sub-keys (table.Field): read by the same kinds, the item's path in errors ----------

    def sub(self, field: Field, item: dict, path: str) -> Any:
        """One declared sub-key of the mapping ``item`` found at ``path``."""
        at = dataclasses.replace(field, name=f"{path}.{field.name}")
        if field.required and item.get(field.name) is None:
            raise ConfigError(f"{at.name}: is required")
        return getattr(self, f"kind_{field.kind}")(at, item, field.name)

    def fields(self, k, item: Any, path: str) -> dict[str, Any]:
        """Every sub-key ``k.items`` declares, of the mapping ``item`` found at ``path``, by name."""
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: must be a mapping ({', '.join(f.name for f in k.items)})")
        if not k.open:
            self.check_subkeys(item, path, (f.name for f in k.items), k.synapse_items)
        return {f.name: self.sub(f, item, path) for f in k.items}

    def list_of(self, k, src: dict, leaf: str) -> list[dict] | None:
        """A list of mappings, each read by :meth:`fields`; None when absent."""
        value = src.get(leaf)
        if value is None:
            return None
        if not isinstance(value, list):
            raise ConfigError(f"{k.name}: must be a list of mappings ({', '.join(f.name for f in k.items)})")
        return [self.fields(k, item, f"{k.name}[{i}]") for i, item in enumerate(value)]

    # -- rules spanning keys -------------------------------------------------

    def check_registration(self) -> None:
        v = self.values
        if v["enable_registration"] and not (
            v["enable_registration_without_verification"] or v["registration_requires_token"]
            or v["enable_registration_captcha"]
        ):
            raise ConfigError(
                "enable_registration: open registration without any verification "
                "is refused; also set registration_requires_token: true, "
                "enable_registration_captcha: true, or "
                "enable_registration_without_verification: true if you really "
                "want anyone to register"
            )

    def check_url_preview(self) -> None:
        if self.values["url_preview_enabled"] and self.values["url_preview_ip_range_blacklist"] is None:
            raise ConfigError("url_preview_enabled: needs url_preview_ip_range_blacklist (the addresses URL "
                              "previews must never reach, e.g. your private networks)")

    def check_email(self) -> None:
        """Synapse's rules: a set email section needs a valid notif_from; requiring TLS needs enable_tls."""
        v = self.values
        if self.raw.get("email") and not v["email_notif_from"]:
            raise ConfigError("email.notif_from: required when the email section is set")
        if v["email_notif_from"] and "@" not in email.utils.parseaddr(v["email_notif_from"])[1]:
            raise ConfigError("email.notif_from: not an e-mail address")
        if v["email_require_transport_security"] and not v["email_enable_tls"]:
            raise ConfigError("email.require_transport_security: needs email.enable_tls to be true")
        if any(medium != "email" for medium in v["registrations_require_3pid"]):
            raise ConfigError("registrations_require_3pid: only email is supported")
        if v["registrations_require_3pid"] and not v["email_notif_from"]:
            raise ConfigError("registrations_require_3pid: needs the email section (with notif_from)")

    def check_cas(self) -> None:
        """Synapse's rules for cas_config: server_url required once enabled, an alphanumeric prefix."""
        v = self.values
        if not v["cas_config_enabled"]:
            return
        if v["cas_config_server_url"] is None:
            raise ConfigError("cas_config.server_url: is required when cas_config is enabled")
        if not v["cas_config_numeric_ids_prefix"].isalnum():
            raise ConfigError("cas_config.numeric_ids_prefix: only letters and digits are allowed")
        icon = v["cas_config_idp_icon"]
        if icon is not None and not icon.startswith("mxc://"):
            raise ConfigError(f"cas_config.idp_icon: must be an mxc:// URI, got {icon!r}")
        if v["cas_config_service_url"] is not None:
            self.warn_once("cas_config.service_url", "cas_config.service_url is deprecated and ignored: "
                           "the service URL is public_baseurl + _matrix/client/r0/login/cas/ticket")

    def check_captcha(self) -> None:
        """Synapse's rule: enable_registration_captcha needs both reCAPTCHA keys."""
        v = self.values
        if v["enable_registration_captcha"] and not (v["recaptcha_public_key"] and v["recaptcha_private_key"]):
            raise ConfigError("enable_registration_captcha: needs recaptcha_public_key and recaptcha_private_key")

    def check_listener_tls(self) -> None:
        for i, lc in enumerate(self.values["listeners"]):
            if lc.tls and not (self.values["tls_certificate_path"] and self.values["tls_private_key_path"]):
                raise ConfigError(
                    f"listeners[{i}].tls: needs tls_certificate_path and "
                    "tls_private_key_path to be set"
                )

    # -- warnings --------------------------------------------------------

    def warn_once(self, key: str, message: str) -> None:
        """Log ``config <message>`` once per ``key`` (per parse)."""
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning("config %s", message)

    def warn_not_implemented(self, key: str, what: str = "a Synapse option") -> None:
        self.warn_once(
            key, f"{key}: is {what} that Hexagone does not implement yet; ignored"
        )

    def warn_unknown(self, key: str) -> None:
        self.warn_once(
            key, f"{key}: is not a known Hexagone or Synapse option (typo?); ignored"
        )

    def check_subkeys(
        self,
        value: dict,
        path: str,
        implemented: Iterable[str],
        synapse_only: Iterable[str] = (),
    ) -> None:
        implemented = set(implemented)
        synapse_only = set(synapse_only)
        for k in value:
            if k in implemented:
                continue
            sub = f"{path}.{k}"
            if k in synapse_only:
                if not is_empty(value[k]):
                    self.warn_not_implemented(sub)
            else:
                self.warn_unknown(sub)

    # -- typed getters ---------------------------------------------------

    def _get(self, key: str, src: dict | None, path: str | None) -> tuple[Any, str]:
        """The raw value of ``key`` in ``src`` (the whole file by default), and its path for errors."""
        return (self.raw if src is None else src).get(key), path or key

    def _typed(self, key: str, default: Any, src: dict | None, path: str | None, kind: type, what: str) -> Any:
        value, path = self._get(key, src, path)
        if value is None:
            return default
        if not isinstance(value, kind):
            raise ConfigError(f"{path}: must be {what}, got {value!r}")
        return value

    def bool_(self, key: str, default: bool, src: dict | None = None, path: str | None = None) -> bool:
        return self._typed(key, default, src, path, bool, "true or false")

    def str_(self, key: str, default: str | None = None, src: dict | None = None, path: str | None = None) -> str | None:
        return self._typed(key, default, src, path, str, "a string")

    def int_(self, key: str, default: int, lo: int | None = None, hi: int | None = None,
             src: dict | None = None, path: str | None = None) -> int:
        value, path = self._get(key, src, path)
        return default if value is None else check_int(value, path, lo, hi)

    def str_list(self, key: str, default: list[str] | None, src: dict | None = None,
                 path: str | None = None) -> list[str] | None:
        value = self._typed(key, None, src, path, list, "a list of strings")
        if value is None:
            return default
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{path or key}[{i}]: must be a string, got {item!r}")
        return list(value)

    def mappings(self, items: list, path: str, fields: tuple[str, ...]) -> Iterable[tuple[str, dict]]:
        """(path, entry) of each entry of a list of mappings with these sub-keys (others are warned about)."""
        for i, entry in enumerate(items):
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}[{i}]: must be a mapping with {', '.join(fields)}")
            self.check_subkeys(entry, f"{path}[{i}]", fields)
            yield f"{path}[{i}]", entry

    def dict_(self, key: str, src: dict | None = None, path: str | None = None) -> dict:
        return self._typed(key, {}, src, path, dict, "a mapping")

    def path_(self, key: str, default: str | None = None, src: dict | None = None,
              path: str | None = None) -> str | None:
        value = self.str_(key, None, src, path)
        if value is None:
            return default
        if not value.strip():
            raise ConfigError(f"{path or key}: must be a non-empty path")
        return self.resolve(value)

    def resolve(self, p: str) -> str:
        p = os.path.expanduser(p)
        if os.path.isabs(p):
            return os.path.normpath(p)
        return os.path.normpath(os.path.join(self.config_dir, p))

    def secret(self, key: str) -> str | None:
        """``key`` or ``key_path`` (a file holding the secret); an error never quotes the value."""
        if not isinstance(self.raw.get(key), (str, type(None))):
            raise ConfigError(f"{key}: must be a string")
        inline = self.str_(key)
        file_key = f"{key}_path"
        file_path = self.path_(file_key)
        if inline is not None and file_path is not None:
            raise ConfigError(f"{key}: set either {key} or {file_key}, not both")
        if file_path is not None:
            return read_secret_file(file_path, file_key)
        if inline is not None and not inline:
            raise ConfigError(f"{key}: must not be empty (remove the key instead)")
        return inline

    def ratelimit(self, value: Any, path: str, default: RateLimit) -> RateLimit:
        if value is None:
            return default
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: must be a mapping with per_second and burst_count")
        self.check_subkeys(value, path, ("per_second", "burst_count"))
        per_second = value.get("per_second")
        burst = value.get("burst_count")
        if per_second is None:
            per_second = default.per_second
        elif isinstance(per_second, bool) or not isinstance(per_second, (int, float)) or per_second < 0:
            raise ConfigError(f"{path}.per_second: must be a non-negative number, got {per_second!r}")
        if burst is None:
            burst = default.burst_count
        elif isinstance(burst, bool) or not isinstance(burst, (int, float)) or burst < 0:
            raise ConfigError(f"{path}.burst_count: must be a non-negative number, got {burst!r}")
        return RateLimit(per_second=float(per_second), burst_count=int(burst))

    def pool_sizes(self, k: Key, args: dict, dmin: int, dmax: int) -> tuple[int, int]:
        cp_min = dmin if args["cp_min"] is None else args["cp_min"]
        cp_max = dmax if args["cp_max"] is None else args["cp_max"]
        if cp_min > cp_max:
            raise ConfigError(f"{k.name}.args.cp_min: must not exceed cp_max ({cp_min} > {cp_max})")
        return cp_min, cp_max

    def pg_dsn(self, args: dict) -> str:
        params: dict[str, str] = {}
        dbname = args.get("dbname")
        database = args.get("database")
        if dbname is not None and database is not None and dbname != database:
            raise ConfigError(
                "database.args.dbname: conflicts with database.args.database; set only one"
            )
        for key, value in args.items():
            if key.startswith("cp_") or value is None:
                continue
            kpath = f"database.args.{key}"
            if key == "password_file":
                continue
            if key == "database":
                key = "dbname"
            if isinstance(value, bool):
                value = "1" if value else "0"
            if not isinstance(value, (str, int, float)):
                shown = "" if key == "password" else f", got {value!r}"
                raise ConfigError(f"{kpath}: must be a string or number{shown}")
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ConfigError(f"{kpath}: not a valid connection parameter name")
            params[key] = str(value)
        password_file = args.get("password_file")
        if password_file is not None:
            if "password" in params:
                raise ConfigError(
                    "database.args.password_file: set either password or password_file, not both"
                )
            params["password"] = read_secret_file(password_file, "database.args.password_file")
        elif "password" not in params and os.environ.get("PGPASSWORD"):
            params["password"] = os.environ["PGPASSWORD"]
        return " ".join(f"{k}={conninfo_quote(v)}" for k, v in sorted(params.items()))

    def parse_room_version(self, default: str) -> str:
        value = self.raw.get("default_room_version")
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"default_room_version: must be a string such as \"12\", got {value!r}")
        version = str(value)
        if version not in KNOWN_ROOM_VERSIONS:
            raise ConfigError(
                f"default_room_version: unknown room version {version!r} "
                f"(known: {', '.join(KNOWN_ROOM_VERSIONS)})"
            )
        if version not in CREATABLE_ROOM_VERSIONS:
            raise ConfigError(
                f"default_room_version: room version {version!r} is known but "
                f"Hexagone creates rooms only in versions "
                f"{', '.join(CREATABLE_ROOM_VERSIONS)}"
            )
        return version

    def parse_presence(self, presence: dict) -> bool:
        if "enabled" not in presence and self.raw.get("use_presence") is not None:
            # Synapse's older spelling.
            return self.bool_("use_presence", True)
        value = presence.get("enabled")
        if value is None:
            return True
        if value == "untracked":
            self.warn_once(
                "presence.enabled",
                "presence.enabled: 'untracked' presence is a Synapse mode that Hexagone does not "
                "implement yet; presence is treated as enabled",
            )
            return True
        if not isinstance(value, bool):
            raise ConfigError(
                f"presence.enabled: must be true, false or \"untracked\", got {value!r}"
            )
        return value

    def parse_minimum_tls_version(self, default: str) -> str:
        """Synapse's values ("1", "1.1", "1.2", "1.3", also as YAML numbers); below 1.2 means 1.2 here."""
        key = "federation_client_minimum_tls_version"
        value = self.raw.get(key)
        if value is None:
            return default
        text = str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
        if text not in ("1", "1.0", "1.1", "1.2", "1.3"):
            raise ConfigError(f"{key}: must be one of 1, 1.1, 1.2 or 1.3, got {value!r}")
        if text in ("1", "1.0", "1.1"):
            self.warn_once(key, f"{key}: Hexagone never federates over TLS older than 1.2; using 1.2 "
                                f"instead of {text}")
            return "1.2"
        return text

    def ip_ranges(self, key: str, default: list[str] | None, section: dict | None = None,
                  name: str | None = None) -> list[str] | None:
        """A list of CIDR ranges at ``key`` (or at ``name`` of ``section``, reported as ``key``)."""
        ranges = self.str_list(key, default) if section is None else self.str_list(name, default, section, key)
        for i, r in enumerate(ranges or ()):
            try:
                ipaddress.ip_network(r, strict=False)
            except ValueError:
                raise ConfigError(f"{key}[{i}]: {r!r} is not an IP address or CIDR range") from None
        return ranges

    def warn_ignored_top_level(self) -> None:
        for key, value in self.raw.items():
            if key in IMPLEMENTED_TOP_LEVEL_KEYS or key in SILENTLY_IGNORED_KEYS:
                continue
            if not isinstance(key, str):
                self.warn_unknown(str(key))
            elif key in SYNAPSE_TOP_LEVEL_KEYS:
                if not is_empty(value):
                    self.warn_not_implemented(key)
            else:
                self.warn_unknown(key)


def _bounded(src: dict, path: str, *names: str) -> list[int | None]:
    """Durations in ``src`` (None when unset), the last two a lower and an upper bound."""
    values = [None if src.get(n) is None else parse_duration_ms(src[n], f"{path}.{n}") for n in names]
    low, high = values[-2:]
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{path}: {names[-2]} ({low} ms) must not be greater than {names[-1]} ({high} ms)")
    return values
