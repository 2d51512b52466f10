"""Worker keys (Synapse's "Workers" configuration): which process this is and what it runs.

Hexagone's processes share one PostgreSQL database and tell each other of their writes over
Redis pub/sub (``homeserver/replication/``). Every stream has one writer, the main process;
workers serve reads (``/sync``, client reads), inbound federation (the events they receive are
persisted by main, over its replication listener), media, or send the federation queue, the
push notifications or the application services' transactions.

Pure: reads the values the table's parsers produced and derives the role, or refuses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from homeserver.config.values import ConfigError

MAIN = "main"  # the main process's instance name (Synapse's)
MAIN_APPS = (None, "synapse.app.homeserver", "hexagone.main")
WORKER_APPS = ("synapse.app.generic_worker", "synapse.app.federation_sender", "synapse.app.client_reader",
               "synapse.app.media_repository", "synapse.app.pusher", "synapse.app.appservice", "hexagone.worker")
# Synapse's stream names; Hexagone's writer of each is the main process.
STREAMS = ("events", "typing", "to_device", "account_data", "receipts", "presence", "push_rules",
           "device_lists", "un_partial_stated_event")


def shard_owner(instances: tuple[str, ...], key: str) -> str:
    """The instance of ``instances`` that handles ``key`` (a destination server): Synapse's sharding, the
    SHA-256 of the key read as a little-endian integer, modulo the number of instances."""
    return instances[int.from_bytes(hashlib.sha256(key.encode("utf8")).digest(), "little") % len(instances)]


@dataclass(frozen=True)
class WorkerRole:
    """What this process does, derived from the worker keys."""

    instance: str  # "main", or the worker_name
    is_worker: bool
    sends_federation: bool  # transmits the federation queue
    replicated: bool  # talks to the other processes over Redis
    serves_media: bool = True  # binds the media routes (enable_media_repo)
    media_jobs: bool = True  # runs the media background jobs (media_instance_running_background_jobs)
    sends_pushes: bool = True  # runs the pushers (pusher_instances, start_pushers)
    sends_appservices: bool = True  # sends the appservice transactions (notify_appservices_from_worker)
    federation_senders: tuple[str, ...] = ()  # several: they share the destinations (federation_sender_instances)
    pushers: tuple[str, ...] = ()  # several: they share the users (pusher_instances)

    def sends_federation_to(self, destination: str) -> bool:
        """Whether this process transmits the federation queue of ``destination``."""
        return self.sends_federation and (len(self.federation_senders) < 2
                                          or shard_owner(self.federation_senders, destination) == self.instance)

    def sends_pushes_for(self, user_id: str) -> bool:
        """Whether this process runs the pushers of ``user_id``."""
        return self.sends_pushes and (len(self.pushers) < 2 or shard_owner(self.pushers, user_id) == self.instance)


SINGLE_PROCESS = WorkerRole(instance=MAIN, is_worker=False, sends_federation=True, replicated=False)


def parse_worker_app(value, path: str) -> str | None:
    if value not in MAIN_APPS + WORKER_APPS:
        raise ConfigError(f"{path}: unknown worker_app {value!r}; use one of "
                          f"{', '.join(a for a in MAIN_APPS + WORKER_APPS if a)}")
    return value


def parse_instance_map(value: dict, path: str) -> dict[str, tuple[str, int]]:
    """``{name: {host, port}}``; kept to describe the deployment (Hexagone's processes talk over Redis)."""
    result = {}
    for name, entry in value.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("host"), str) \
                or not isinstance(entry.get("port"), int) or isinstance(entry.get("port"), bool):
            raise ConfigError(f"{path}.{name}: must be a mapping with host (a string) and port (a number)")
        result[str(name)] = (entry["host"], entry["port"])
    return result


def parse_stream_writers(value: dict, path: str) -> dict[str, list[str]]:
    """``{stream: [instance, ...]}``; every stream's writer is the main process (refused otherwise)."""
    result = {}
    for stream, writers in value.items():
        if stream not in STREAMS:
            raise ConfigError(f"{path}.{stream}: unknown stream; known: {', '.join(STREAMS)}")
        writers = [writers] if isinstance(writers, str) else writers
        if not isinstance(writers, list) or not all(isinstance(w, str) for w in writers):
            raise ConfigError(f"{path}.{stream}: must be an instance name or a list of them")
        if writers != [MAIN]:
            raise ConfigError(f"{path}.{stream}: only the main process writes streams in Hexagone "
                              f"(stream_writers.{stream}: [main]); workers serve reads and send federation")
        result[stream] = writers
    return result


def worker_role(v: dict) -> WorkerRole:
    """The role of this process, after the rules spanning the worker keys (else ConfigError)."""
    app, name, senders = v["worker_app"], v["worker_name"], v["federation_sender_instances"]
    pushers, appservices = v["pusher_instances"], v["notify_appservices_from_worker"]
    is_worker = app in WORKER_APPS
    if is_worker and not name:
        raise ConfigError(f"worker_name: required with worker_app: {app}")
    if not is_worker and name not in (None, MAIN):
        raise ConfigError("worker_name: set without a worker_app naming a worker (e.g. synapse.app.generic_worker)")
    for key, names in (("federation_sender_instances", senders), ("pusher_instances", pushers)):
        if len(set(names)) < len(names):
            raise ConfigError(f"{key}: names an instance twice")
    for own_app, key, names in (("synapse.app.federation_sender", "federation_sender_instances", senders),
                                ("synapse.app.pusher", "pusher_instances", pushers)):
        if app == own_app and names and name not in names:
            raise ConfigError(f"{key}: does not name this worker ({own_app}) {name}")
    instance = name if is_worker else MAIN
    main_sends = v["send_federation"] and not senders
    sends = (not is_worker and main_sends) or (is_worker and (
        name in senders or app == "synapse.app.federation_sender"))
    main_pushes = v["start_pushers"] and not pushers
    pushes = (not is_worker and main_pushes) or (is_worker and (name in pushers or app == "synapse.app.pusher"))
    main_notifies = appservices in (None, MAIN)
    notifies = (not is_worker and main_notifies) or (is_worker and (
        appservices == name or app == "synapse.app.appservice"))
    media_jobs = instance == (v["media_instance_running_background_jobs"] or MAIN)
    serves_media = v["enable_media_repo"] or app == "synapse.app.media_repository"
    replicated = is_worker or not main_sends or not main_pushes or not main_notifies or v["redis_enabled"]
    if replicated:
        if not v["redis_enabled"]:
            why = "workers" if is_worker else "a federation, push or appservice sender worker"
            raise ConfigError(f"redis.enabled: must be true with {why} (processes tell each other of their "
                              "writes over Redis)")
        if v["database"].engine != "postgresql":
            raise ConfigError("database.name: several processes need PostgreSQL (psycopg2); SQLite is "
                              "one process's database")
    if is_worker and v["instance_map"] and MAIN not in v["instance_map"]:
        raise ConfigError("instance_map: must name main when it names workers")
    if is_worker and any("federation" in listener.resources for listener in v["worker_listeners"]) and (
            not v["instance_map"] or MAIN not in v["instance_map"] or not v["worker_replication_secret"]):
        raise ConfigError("worker_listeners: a worker serving federation needs instance_map.main (main's "
                          "replication listener) and worker_replication_secret: main persists the events it receives")
    return WorkerRole(instance=instance, is_worker=is_worker, sends_federation=sends, replicated=replicated,
                      serves_media=serves_media, media_jobs=media_jobs, sends_pushes=pushes,
                      sends_appservices=notifies, federation_senders=tuple(senders),
                      pushers=tuple(pushers))
