"""Run real Hexagone processes for the integration tests, and talk to them over HTTP.

A :class:`ServerProcess` runs ``hexagone init`` once in its own directory,
adjusts the YAML for testing, then ``hexagone run`` as a subprocess on a free
127.0.0.1 port; it can be stopped (SIGTERM) and started again on the same
directory. :class:`HttpClient` is a tiny raw-HTTP client returning
``(status, json)``; :class:`User` is a logged-in client with a few helpers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_NAME = "test.local"
PASSWORD = "correct horse battery staple"
CLIENT_V3 = "/_matrix/client/v3"
CLIENT_V1 = "/_matrix/client/v1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# Every ratelimit raised so the suite is never throttled (tests of the limits start servers without this).
UNTHROTTLED = {"per_second": 10000, "burst_count": 100000}
UNTHROTTLED_FEDERATION = {"window_size": 1000, "sleep_limit": 10000, "sleep_delay": 500, "reject_limit": 10000,
                          "concurrent": 100}

# Servers alive in this pytest process; conftest attaches their logs to failing tests.
LIVE_SERVERS: list["ServerProcess"] = []

_counter = itertools.count(1)


def unique(prefix: str = "u") -> str:
    """A name unique within this test run (user localparts, aliases, txn ids)."""
    return f"{prefix}{os.getpid()}x{next(_counter)}"


def wait_for(predicate: Callable[[], Any], what: str, deadline_s: float = 20.0) -> Any:
    """The first truthy value of ``predicate()``, asked again every 20 ms (for a condition no request can
    long-poll); fails after ``deadline_s`` naming ``what`` was awaited."""
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_notified(condition: threading.Condition, predicate: Callable[[], Any], failure: Callable[[], str],
                  timeout: float, recheck_s: float | None = None) -> Any:
    """The first truthy value of ``predicate()``, run holding ``condition`` and asked again at each notify
    (and every ``recheck_s`` when given); fails after ``timeout`` with the message ``failure()``."""
    deadline = time.monotonic() + timeout
    with condition:
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(failure())
            condition.wait(left if recheck_s is None else min(left, recheck_s))


class StandInHandler(BaseHTTPRequestHandler):
    """A request handler of a test's own small HTTP server: ``answer`` one body, no access log."""

    def answer(self, status: int, body: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_stand_in(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A small HTTP server on 127.0.0.1 answering with ``handler`` on a thread: its base URL, then stopped."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def free_port(*taken: int) -> int:
    """A port free now on 127.0.0.1, other than ``taken`` (which the OS may hand out again once closed)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def database_config_for_test(tmp_dir: str) -> dict:
    """The Synapse-shaped ``database`` section for a fresh test database.

    SQLite in ``tmp_dir`` by default; when ``HEXAGONE_TEST_DATABASE`` holds a
    ``postgresql://`` URL, ``tests/integration/pg.py: create_test_database()``
    creates a fresh PostgreSQL database and returns its section.
    """
    url = os.environ.get("HEXAGONE_TEST_DATABASE", "")
    if not url.startswith("postgresql://"):
        return {"name": "sqlite3", "args": {"database": os.path.join(tmp_dir, "homeserver.db")}}
    try:
        from tests.integration import pg
    except ImportError:
        raise RuntimeError("HEXAGONE_TEST_DATABASE is a PostgreSQL URL but tests/integration/pg.py "
                           "(create_test_database) does not exist yet")
    return pg.create_test_database()


def database_rows(server: "ServerProcess", sql: str, args: tuple = ()) -> list[tuple]:
    """Run one statement (``?`` placeholders) on a server's own database, SQLite or PostgreSQL; its rows."""
    section = server.config["database"]
    if section["name"] == "sqlite3":
        import sqlite3

        with sqlite3.connect(section["args"]["database"]) as conn:
            return conn.execute(sql, args).fetchall()
    import psycopg

    from tests.integration import pg

    with psycopg.connect(pg.database_url(section["args"]["dbname"])) as conn:
        cursor = conn.execute(sql.replace("?", "%s"), args)
        return cursor.fetchall() if cursor.description else []


def bulk_users(server: "ServerProcess", count: int, prefix: str = "bulk") -> None:
    """``count`` accounts with profiles, written straight into the database (like a migrated server's)."""
    name = server.config["server_name"]
    values = ", ".join(f"('@{prefix}{i:05d}:{name}', 0, 0, 0, {1700000000000 + i})" for i in range(count))
    database_rows(server, f"INSERT INTO users (user_id, admin, deactivated, is_guest, creation_ts) VALUES {values}")
    profiles = ", ".join(f"('@{prefix}{i:05d}:{name}', '{prefix.title()} {i}')" for i in range(count))
    database_rows(server, f"INSERT INTO profiles (user_id, displayname) VALUES {profiles}")


def _unthrottle(section: Any) -> Any:
    if isinstance(section, dict):
        if "per_second" in section or "burst_count" in section:
            return dict(UNTHROTTLED)
        return {k: _unthrottle(v) for k, v in section.items()}
    return section


def configure_for_test(base_dir: str, throttled: bool, overrides: dict) -> dict:
    """Adjust the ``homeserver.yaml`` that ``hexagone init`` wrote in ``base_dir`` for a test server (open
    registration, open federation, cheap bcrypt, the test database, rate limits off unless ``throttled``);
    returns it."""
    config_path = os.path.join(base_dir, "homeserver.yaml")
    with open(config_path) as f:
        config = yaml.safe_load(f)
    config.update(enable_registration=True, enable_registration_without_verification=True,
                  bcrypt_rounds=4, database=database_config_for_test(base_dir))
    config.pop("federation_domain_whitelist", None)  # init closes federation; test servers are open unless told
    if not throttled:
        for key in [k for k in config if k.startswith("rc_") and k != "rc_federation"]:
            config[key] = _unthrottle(config[key])
        config["rc_federation"] = dict(UNTHROTTLED_FEDERATION)
    config.update(overrides)
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f)
    return config


def hexagone_cli(*args: str, cwd: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m homeserver.cli ARGS`` (the real ``hexagone`` command), ``stdin`` as its input."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "homeserver.cli", *args], cwd=cwd, env=env, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


class ServerError(AssertionError):
    """The server did not start or stop as it must."""


class ServerProcess:
    """One homeserver directory and the process serving it (if running)."""

    def __init__(self, base_dir: str, *, throttled: bool = False, env: dict[str, str] | None = None,
                 **overrides: Any):
        """``env``: more environment variables for the process (e.g. ``SSL_CERT_FILE``)."""
        self.dir = str(base_dir)
        self.env = dict(env or {})
        self.port = free_port()
        self.config_path = os.path.join(self.dir, "homeserver.yaml")
        self.log_path = os.path.join(self.dir, "server.log")
        self.process: subprocess.Popen | None = None
        self._init_config(throttled, overrides)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _init_config(self, throttled: bool, overrides: dict) -> None:
        r = hexagone_cli("init", "--server-name", SERVER_NAME, "--dir", self.dir, "--port", str(self.port),
                         cwd=self.dir)
        if r.returncode != 0:
            raise ServerError(f"hexagone init failed:\n{r.stdout}\n{r.stderr}")
        self.config = configure_for_test(self.dir, throttled, overrides)

    def start(self) -> "ServerProcess":
        """``hexagone run``, then wait until it listens and /_matrix/client/versions answers.

        If another process took our port meanwhile, start again on a fresh one.
        """
        for _ in range(3):
            if self._start_once():
                return self
            self._set_port(free_port(*(listener["port"] for listener in self.config["listeners"])))
        raise ServerError(f"no free port after 3 attempts:\n{self.log()}")

    def _set_port(self, port: int) -> None:
        self.port = port
        self.config["listeners"][0]["port"] = port
        self.reconfigure()

    def reconfigure(self, **changes: Any) -> None:
        """Set top-level keys of its ``homeserver.yaml`` (read at the next start) and write it."""
        self.config.update(changes)
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.config, f)

    def _start_once(self) -> bool:
        """False if the port was taken; raises ServerError on any other failure."""
        assert self.process is None, "already running"
        env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **self.env)
        with open(self.log_path, "ab") as log:
            log.write(f"---- hexagone run (port {self.port}) ----\n".encode())
            log.flush()
            log_start = log.tell()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "homeserver.cli", "run", *self.config_arguments()],
                cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        LIVE_SERVERS.append(self)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                LIVE_SERVERS.remove(self)
                if "Address already in use" in self._log_since(log_start):
                    return False
                raise ServerError(f"server exited with {code} while starting:\n{self.log()}")
            # Our own process must have bound the port: another server may answer on it too.
            if f" port {self.port}" in self._log_since(log_start):
                try:
                    if self.client().request("GET", "/_matrix/client/versions", timeout=2)[0] == 200:
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise ServerError(f"server did not answer within {START_TIMEOUT_S}s:\n{self.log()}")

    def config_arguments(self) -> list[str]:
        return ["--config", self.config_path]

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM the process we started; it must exit with status 0 within STOP_TIMEOUT_S."""
        if self.process is None:
            return
        proc, self.process = self.process, None
        LIVE_SERVERS.remove(self)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ServerError(f"server pid {proc.pid} ignored SIGTERM for {STOP_TIMEOUT_S}s:\n{self.log()}")
        if code != 0:
            raise ServerError(f"server pid {proc.pid} exited with status {code} on SIGTERM:\n{self.log()}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
            LIVE_SERVERS.remove(self)

    def log(self, tail: int = 300) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-tail:])
        except OSError:
            return "(no server log)"

    # -- clients ---------------------------------------------------------------------------
    def client(self) -> "HttpClient":
        return HttpClient(self.base_url)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                **kwargs) -> tuple[int, Any]:
        return self.client().request(method, path, body, token, **kwargs)

    def register(self, localpart: str | None = None, password: str = PASSWORD, **extra) -> "User":
        """Register through the m.login.dummy flow (one request, as Synapse accepts) and log in."""
        localpart = localpart or unique()
        body = {"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}, **extra}
        status, resp = self.request("POST", "/register", body)
        assert status == 200, (status, resp)
        return User(self, resp["user_id"], resp["access_token"], resp["device_id"], password)

    def login(self, user_id: str, password: str = PASSWORD, **extra) -> "User":
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
                "password": password, **extra}
        status, resp = self.request("POST", "/login", body)
        assert status == 200, (status, resp)
        return User(self, resp["user_id"], resp["access_token"], resp["device_id"], password)

    def shared_secret_register(self, localpart: str, password: str = PASSWORD, admin: bool = False) -> dict:
        """Synapse's /_synapse/admin/v1/register: nonce, then HMAC-SHA1 over the fields."""
        status, resp = self.request("GET", "/_synapse/admin/v1/register")
        assert status == 200, (status, resp)
        nonce = resp["nonce"]
        mac = hmac.new(self.config["registration_shared_secret"].encode(), digestmod=hashlib.sha1)
        mac.update("\x00".join([nonce, localpart, password, "admin" if admin else "notadmin"]).encode())
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": admin,
                "mac": mac.hexdigest()}
        return dict(zip(("status", "body"), self.request("POST", "/_synapse/admin/v1/register", body)))


class WorkerProcess(ServerProcess):
    """A worker of ``main``, started as Synapse's are: ``hexagone run -c <main's homeserver.yaml> -c
    worker.yaml``, the second file holding only the worker keys, in its own directory, on its own port."""

    def __init__(self, base_dir: str, main: ServerProcess, name: str):
        self.dir = str(base_dir)
        self.port = free_port(main.port)
        self.main_config_path = main.config_path
        self.env = main.env
        self.config_path = os.path.join(self.dir, "worker.yaml")
        self.log_path = os.path.join(self.dir, "server.log")
        self.process = None
        self.worker_keys = {"worker_app": "synapse.app.generic_worker", "worker_name": name,
                            "worker_listeners": [{"port": self.port, "bind_addresses": ["127.0.0.1"],
                                                  "type": "http", "resources": [{"names": ["client"]}]}]}
        self.config = dict(main.config, **self.worker_keys)  # what the worker reads (main's file + its own)
        self.reconfigure()

    def reconfigure(self, **changes: Any) -> None:
        self.worker_keys.update(changes)
        self.config.update(changes)
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self.worker_keys, f)

    def config_arguments(self) -> list[str]:
        return ["--config", self.main_config_path, "--config", self.config_path]

    def _set_port(self, port: int) -> None:
        self.port = port
        self.worker_keys["worker_listeners"][0]["port"] = port
        self.reconfigure()


def register_admin(server: ServerProcess, password: str = PASSWORD) -> "User":
    """A new server admin of ``server`` (shared-secret registration), logged in."""
    localpart = unique("admin")
    assert server.shared_secret_register(localpart, password, admin=True)["status"] == 200
    return server.login(f"@{localpart}:{server.config['server_name']}", password)


class HttpClient:
    """``request(method, path, body=None, token=None) -> (status, json)`` over a fresh connection.

    A path not starting with ``/_`` or ``/.`` is taken relative to ``/_matrix/client/v3``.
    ``body`` may be a JSON value, or ``bytes``/``str`` sent as they are.
    """

    def __init__(self, base_url: str):
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port

    def request(self, method: str, path: str, body: Any = None, token: str | None = None, **kwargs
                ) -> tuple[int, Any]:
        status, _, resp = self.exchange(method, path, body, token, **kwargs)
        return status, resp

    def exchange(self, method: str, path: str, body: Any = None, token: str | None = None, *,
                 params: dict | None = None, headers: dict | None = None,
                 timeout: float = 60) -> tuple[int, http.client.HTTPMessage, Any]:
        """Like ``request``, with the response headers: (status, headers, json)."""
        if not path.startswith(("/_", "/.")):
            path = CLIENT_V3 + path
        if params:
            query = {k: json.dumps(v) if isinstance(v, (dict, list)) else
                     (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None}
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        all_headers = dict(headers or {})
        payload = None
        if body is not None:
            if isinstance(body, (bytes, str)):
                payload = body.encode() if isinstance(body, str) else body
            else:
                payload = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        status, response_headers, raw = self.send(method, path, payload, all_headers, timeout)
        try:
            return status, response_headers, json.loads(raw) if raw else None
        except ValueError:
            return status, response_headers, raw

    def send(self, method: str, path: str, payload: bytes | None, headers: dict,
             timeout: float) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One HTTP exchange: (status, headers, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()


MEGOLM = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


def shared_room(owner: "User", *others: "User", public: bool = False, encrypted: bool = False) -> str:
    """A room of ``owner``'s that each of ``others`` (users of the same server or of others) has joined.

    ``public``: a public_chat room with an alias that each joins (from another server, over federation), the
    owner's /sync having shown each join; otherwise a private_chat room each is invited to and joins once
    their /sync shows the invite. ``encrypted``: Megolm from the start (m.room.encryption in its initial state).
    """
    state = [MEGOLM] if encrypted else []
    if public:
        alias_name = unique("room")
        room_id = owner.create_room(preset="public_chat", room_alias_name=alias_name, initial_state=state)
        alias = f"#{alias_name}:{owner.user_id.split(':', 1)[1]}"
        for other in others:
            assert other.join(alias) == room_id
            owner.timeline_until(room_id, lambda e: e.get("state_key") == other.user_id)
        return room_id
    room_id = owner.create_room(preset="private_chat", initial_state=state)
    for other in others:
        owner.invite(room_id, other)
        other.sync_until(lambda r: room_id in r.get("rooms", {}).get("invite", {}))
        other.join(room_id)
    return room_id


def timeline_events(resp: dict, room_id: str) -> list[dict]:
    """The timeline of joined room ``room_id`` in a /sync answer (Synapse leaves out empty sections)."""
    return resp.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])


def next_timeline(user: "User", room_id: str, since: str, timeout_ms: int = 20_000) -> list[dict]:
    """Long-poll /sync from ``since`` until an answer carries timeline events of ``room_id``; returns them. (An
    answer woken by something else, e.g. a device-list change, is skipped: it could not have carried them.)"""
    while True:
        resp = user.sync(since, timeout_ms)
        events = timeline_events(resp, room_id)
        if events:
            return events
        since = resp["next_batch"]


def q(value: str) -> str:
    """Percent-encode one path segment (room ids, aliases, event ids, user ids)."""
    return urllib.parse.quote(value, safe="")


@dataclass
class User:
    """A logged-in user of one server, with helpers for the common calls."""

    server: ServerProcess
    user_id: str
    token: str
    device_id: str
    password: str = PASSWORD

    def request(self, method: str, path: str, body: Any = None, **kwargs) -> tuple[int, Any]:
        return self.server.request(method, path, body, self.token, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, **kwargs) -> Any:
        """A request that must answer 200; returns its JSON body."""
        status, resp = self.request(method, path, body, **kwargs)
        assert status == 200, (method, path, status, resp)
        return resp

    def create_room(self, **body) -> str:
        return self.ok("POST", "/createRoom", body)["room_id"]

    def send(self, room_id: str, body: str | dict = "hello", event_type: str = "m.room.message",
             txn_id: str | None = None) -> str:
        content = {"msgtype": "m.text", "body": body} if isinstance(body, str) else body
        path = f"/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn_id or unique('txn'))}"
        return self.ok("PUT", path, content)["event_id"]

    def put_state(self, room_id: str, event_type: str, content: dict, state_key: str = "") -> str:
        return self.ok("PUT", f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}", content)["event_id"]

    def state(self, room_id: str, event_type: str, state_key: str = "") -> tuple[int, Any]:
        return self.request("GET", f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}")

    def invite(self, room_id: str, user: "User | str") -> None:
        user_id = user if isinstance(user, str) else user.user_id
        self.ok("POST", f"/rooms/{q(room_id)}/invite", {"user_id": user_id})

    def join(self, room_id_or_alias: str) -> str:
        return self.ok("POST", f"/join/{q(room_id_or_alias)}", {})["room_id"]

    def leave(self, room_id: str) -> None:
        self.ok("POST", f"/rooms/{q(room_id)}/leave", {})

    def sync(self, since: str | None = None, timeout_ms: int = 0, **params) -> dict:
        return self.ok("GET", "/sync", params={"since": since, "timeout": timeout_ms, **params},
                       timeout=timeout_ms / 1000 + 30)

    def sync_until(self, predicate: Callable[[dict], Any], since: str | None = None,
                   deadline_s: float = 15.0, **params) -> tuple[Any, str]:
        """Long-poll /sync until ``predicate(response)`` is truthy; returns (its value, next_batch)."""
        end = time.monotonic() + deadline_s
        while True:
            remaining = end - time.monotonic()
            assert remaining > 0, f"sync condition not met within {deadline_s}s"
            resp = self.sync(since, timeout_ms=int(min(remaining, 5) * 1000), **params)
            found = predicate(resp)
            since = resp["next_batch"]
            if found:
                return found, since

    def timeline_until(self, room_id: str, predicate: Callable[[dict], bool], since: str | None = None,
                       **params) -> tuple[dict, str]:
        """Sync until an event of ``room_id``'s timeline matches; returns (event, next_batch)."""
        return self.sync_until(lambda resp: next((e for e in timeline_events(resp, room_id) if predicate(e)), None),
                               since, **params)

    def messages(self, room_id: str, **params) -> dict:
        return self.ok("GET", f"/rooms/{q(room_id)}/messages", params=params)
