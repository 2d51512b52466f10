"""The worker keys (docs/workers.md): each process's role, and inconsistent settings refused at start."""

from __future__ import annotations

import hashlib

import pytest

from homeserver.config.workers import shard_owner
from tests.core.test_config import cfg_dir, parse, refused  # noqa: F401 (fixture)

PG = {"name": "psycopg2", "args": {"dbname": "hexagone", "host": "127.0.0.1", "user": "postgres"}}
REDIS = {"enabled": True, "host": "127.0.0.1", "port": 6379}
LISTENER = [{"port": 8083, "type": "http", "resources": [{"names": ["client"]}]}]


def test_single_process_by_default(cfg_dir):
    role = parse(cfg_dir).worker_role
    assert (role.instance, role.is_worker, role.sends_federation, role.replicated) == ("main", False, True, False)


def test_sync_worker(cfg_dir):
    c = parse(cfg_dir, worker_app="synapse.app.generic_worker", worker_name="sync1", database=PG, redis=REDIS,
              worker_listeners=LISTENER, instance_map={"main": {"host": "127.0.0.1", "port": 8008}},
              stream_writers={"events": "main", "typing": ["main"]})
    assert (c.worker_role.instance, c.worker_role.is_worker, c.worker_role.sends_federation) == ("sync1", True, False)
    assert c.worker_listeners[0].port == 8083 and "client" in c.worker_listeners[0].resources
    assert c.instance_map == {"main": ("127.0.0.1", 8008)}


def test_federation_sender_and_main_that_does_not_send(cfg_dir):
    sender = parse(cfg_dir, worker_app="synapse.app.generic_worker", worker_name="fed1", database=PG, redis=REDIS,
                   federation_sender_instances=["fed1"])
    assert sender.worker_role.sends_federation and not sender.worker_listeners
    main = parse(cfg_dir, database=PG, redis=REDIS, federation_sender_instances=["fed1"])
    assert not main.worker_role.sends_federation and main.worker_role.replicated
    legacy = parse(cfg_dir, worker_app="synapse.app.federation_sender", worker_name="fed1", database=PG, redis=REDIS)
    assert legacy.worker_role.sends_federation
    assert not parse(cfg_dir, database=PG, redis=REDIS, send_federation=False).worker_role.sends_federation


def test_several_federation_senders_share_the_destinations_as_synapse_s_do(cfg_dir):
    senders = ["fed1", "fed2", "fed3"]
    roles = [parse(cfg_dir, worker_app="synapse.app.generic_worker", worker_name=name, database=PG, redis=REDIS,
                   federation_sender_instances=senders).worker_role for name in senders]
    main = parse(cfg_dir, database=PG, redis=REDIS, federation_sender_instances=senders).worker_role
    destinations = [f"agency{i}.example" for i in range(300)]
    owners = {d: [r.instance for r in roles if r.sends_federation_to(d)] for d in destinations}
    assert all(len(owner) == 1 for owner in owners.values())  # each destination has exactly one sender
    assert all(100 - 30 < sum(o == [name] for o in owners.values()) < 100 + 30 for name in senders)
    assert not any(main.sends_federation_to(d) for d in destinations)
    # Synapse's choice: SHA-256 of the destination, little-endian, modulo the number of instances
    assert [shard_owner(("a", "b"), d) for d in ("matrix.org", "example.com", "agency0.example")] == [
        ("a", "b")[int.from_bytes(hashlib.sha256(d.encode()).digest(), "little") % 2]
        for d in ("matrix.org", "example.com", "agency0.example")]
    single = parse(cfg_dir, worker_app="synapse.app.generic_worker", worker_name="fed1", database=PG, redis=REDIS,
                   federation_sender_instances=["fed1"]).worker_role
    assert all(single.sends_federation_to(d) for d in destinations)


def test_several_pusher_workers_share_the_users(cfg_dir):
    pushers = ["push1", "push2"]
    roles = [parse(cfg_dir, worker_app="synapse.app.generic_worker", worker_name=name, database=PG, redis=REDIS,
                   pusher_instances=pushers).worker_role for name in pushers]
    users = [f"@user{i}:example.org" for i in range(200)]
    owners = [[r.instance for r in roles if r.sends_pushes_for(u)] for u in users]
    assert all(len(owner) == 1 for owner in owners) and {o[0] for o in owners} == set(pushers)
    assert owners[0] == [shard_owner(tuple(pushers), users[0])]
    assert not any(parse(cfg_dir, database=PG, redis=REDIS, pusher_instances=pushers).worker_role.sends_pushes_for(u)
                   for u in users)


@pytest.mark.parametrize("extra,prefix", [
    ({"worker_app": "synapse.app.generic_worker", "database": PG, "redis": REDIS}, "worker_name:"),
    ({"worker_app": "synapse.app.generic_worker", "worker_name": "w", "redis": REDIS}, "database.name:"),
    ({"worker_app": "synapse.app.generic_worker", "worker_name": "w", "database": PG}, "redis.enabled:"),
    ({"federation_sender_instances": ["fed1"], "database": PG}, "redis.enabled:"),
    ({"federation_sender_instances": ["a", "a"], "database": PG, "redis": REDIS}, "federation_sender_instances:"),
    ({"worker_app": "synapse.app.federation_sender", "worker_name": "c", "federation_sender_instances": ["a", "b"],
      "database": PG, "redis": REDIS}, "federation_sender_instances:"),
    ({"stream_writers": {"events": ["sync1"]}}, "stream_writers.events:"),
    ({"stream_writers": {"nonsense": ["main"]}}, "stream_writers.nonsense:"),
    ({"worker_app": "synapse.app.frontend_proxy"}, "worker_app:"),
    ({"worker_name": "w"}, "worker_name:"),
    ({"instance_map": {"main": {"host": "x"}}}, "instance_map.main:"),
    ({"redis": {"enabled": True, "port": 0}}, "redis.port:"),
])
def test_inconsistent_worker_settings_refused(cfg_dir, extra, prefix):
    refused(cfg_dir, prefix, **extra)


def test_a_worker_file_overrides_the_main_file(cfg_dir):
    import yaml

    from homeserver.config import load_config
    (cfg_dir / "homeserver.yaml").write_text(yaml.safe_dump(
        {"server_name": "example.org", "signing_key_path": "signing.key", "database": PG, "redis": REDIS}))
    (cfg_dir / "sync1.yaml").write_text(yaml.safe_dump(
        {"worker_app": "synapse.app.generic_worker", "worker_name": "sync1", "worker_listeners": LISTENER}))
    c = load_config(str(cfg_dir / "homeserver.yaml"), str(cfg_dir / "sync1.yaml"))
    assert (c.server_name, c.worker_role.instance, c.worker_listeners[0].port) == ("example.org", "sync1", 8083)
    assert c.signing_key_path == str(cfg_dir / "signing.key")  # relative to the first file
    assert c.more_config_paths == (str(cfg_dir / "sync1.yaml"),)


def test_pusher_appservice_and_media_roles(cfg_dir):
    keys = dict(database=PG, redis=REDIS, pusher_instances=["bg1"], notify_appservices_from_worker="bg1",
                enable_media_repo=False, media_instance_running_background_jobs="media1")
    main = parse(cfg_dir, **keys).worker_role
    assert (main.sends_pushes, main.sends_appservices, main.serves_media, main.media_jobs) == (False, False, False,
                                                                                               False)
    bg = parse(cfg_dir, worker_app="synapse.app.generic_worker", worker_name="bg1", **keys).worker_role
    assert (bg.sends_pushes, bg.sends_appservices, bg.serves_media, bg.media_jobs) == (True, True, False, False)
    media = parse(cfg_dir, worker_app="synapse.app.media_repository", worker_name="media1", **keys).worker_role
    assert (media.sends_pushes, media.serves_media, media.media_jobs) == (False, True, True)
    assert not parse(cfg_dir, database=PG, redis=REDIS, start_pushers=False).worker_role.sends_pushes
    assert parse(cfg_dir).worker_role.sends_pushes and parse(cfg_dir).worker_role.media_jobs


@pytest.mark.parametrize("extra,prefix", [
    ({"pusher_instances": ["bg1"], "database": PG}, "redis.enabled:"),
    ({"notify_appservices_from_worker": "as1"}, "redis.enabled:"),
    ({"pusher_instances": ["a", "b", "a"], "database": PG, "redis": REDIS}, "pusher_instances:"),
    ({"worker_app": "synapse.app.pusher", "worker_name": "c", "pusher_instances": ["a", "b"], "database": PG,
      "redis": REDIS}, "pusher_instances:"),
    ({"worker_app": "synapse.app.generic_worker", "worker_name": "fedin1", "database": PG, "redis": REDIS,
      "worker_listeners": [{"port": 8085, "type": "http", "resources": [{"names": ["federation"]}]}]},
     "worker_listeners:"),
])
def test_inconsistent_role_settings_refused(cfg_dir, extra, prefix):
    refused(cfg_dir, prefix, **extra)


def test_an_inbound_federation_worker_with_main_replication_listener(cfg_dir):
    c = parse(cfg_dir, worker_app="synapse.app.generic_worker", worker_name="fedin1", database=PG, redis=REDIS,
              worker_replication_secret="s3cret", instance_map={"main": {"host": "127.0.0.1", "port": 9093}},
              worker_listeners=[{"port": 8085, "type": "http", "resources": [{"names": ["federation"]}]}])
    assert c.worker_replication_secret == "s3cret" and "federation" in c.worker_listeners[0].resources
    main = parse(cfg_dir, listeners=[{"port": 9093, "type": "http", "resources": [{"names": ["replication"]}]}])
    assert "replication" in main.listeners[0].resources
