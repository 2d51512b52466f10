"""Start and stop the homeservers under test: Hexagone and Synapse, side by side.

Each server runs as its own process on a free 127.0.0.1 port in a fresh
temporary directory, with the same database kind, the same bcrypt cost, the
same raised rate limits, the same log level and presence left on. Each runs
from a venv of its own run-time dependencies, created here on first use:
Synapse's (``tests/bench/.venv-synapse``, from ``requirements.txt``) and
Hexagone's (``tests/bench/.venv-hexagone``, from ``pyproject.toml``), so
neither meets the other's or the tests' packages.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import yaml

from tests.integration.fedtls import CertificateAuthority
from tests.integration.harness import free_port

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(BENCH_DIR))
SYNAPSE_VENV = os.path.join(BENCH_DIR, ".venv-synapse")
HEXAGONE_VENV = os.path.join(BENCH_DIR, ".venv-hexagone")
PYPROJECT = os.path.join(REPO_ROOT, "pyproject.toml")
REQUIREMENTS = os.path.join(BENCH_DIR, "requirements.txt")

SERVER_NAME = "bench.local"
BCRYPT_ROUNDS = 12  # the same real cost on both sides, never weakened on one
# Federation pairs register thousands of setup users: a lower cost, the same on all four servers.
PAIR_BCRYPT_ROUNDS = 4
LOG_LEVEL = "WARNING"  # both servers log warnings and errors only
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_USER = os.environ.get("BENCH_PGUSER", "postgres")

_RATE = {"per_second": 10000, "burst_count": 10000}
# Applied identically to both homeserver.yaml files (Synapse's key names).
SHARED_CONFIG = {
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "bcrypt_rounds": BCRYPT_ROUNDS,
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "federation_domain_whitelist": None,  # open, as Synapse by default (`hexagone init` writes [], nobody)
    "rc_message": _RATE,
    "rc_registration": _RATE,
    "rc_login": {"address": _RATE, "account": _RATE, "failed_attempts": _RATE},
    "rc_joins": {"local": _RATE, "remote": _RATE},
    "rc_joins_per_room": _RATE,
    "rc_invites": {"per_room": _RATE, "per_user": _RATE, "per_issuer": _RATE},
    "rc_room_creation": _RATE,
    "rc_presence": {"per_user": _RATE},
    "max_upload_size": "200M",  # the media workload's 100 MB download (both servers default to 50M)
}
# Added for the servers of a federation pair (both kinds): federation itself unthrottled too.
PAIR_CONFIG = {
    "bcrypt_rounds": PAIR_BCRYPT_ROUNDS,
    "ip_range_whitelist": ["127.0.0.0/8"],
    "rc_federation": {"window_size": 1000, "sleep_limit": 10000, "sleep_delay": 500, "reject_limit": 10000,
                      "concurrent": 1000},
    "federation_rr_transactions_per_room_per_second": 10000,
}


class ServerError(Exception):
    """A server that could not be set up, started or reached."""


@dataclass
class RunningServer:
    """A started homeserver: where to reach it and which process to measure."""

    label: str
    base_url: str
    process: subprocess.Popen
    workdir: str
    server_name: str = SERVER_NAME
    startup_s: float = 0.0  # from process start to the first answer of /versions

    @property
    def pid(self) -> int:
        return self.process.pid


# -- process measurements (/proc) ------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ServerError(f"no {field} in /proc/{pid}/status")


def rss_mb(pid: int) -> float:
    """Resident set size now (VmRSS)."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size since start or since the last reset_peak_rss (VmHWM)."""
    return _status_kb(pid, "VmHWM") / 1024


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux clear_refs value 5), so a workload gets its own peak."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    """User plus system CPU time of the process, all its threads, so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / _CLOCK_TICKS  # utime, stime


# -- shared setup ----------------------------------------------------------------------


def _listener(port: int, names=("client", "federation"), tls: bool = False) -> dict:
    return {"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": tls,
            "x_forwarded": False, "resources": [{"names": list(names), "compress": False}]}


@dataclass
class Setup:
    """What one server is started with: its name and the settings beyond SHARED_CONFIG."""

    server_name: str = SERVER_NAME
    extra: dict = field(default_factory=dict)

    def config(self, port: int, database: dict) -> dict:
        return SHARED_CONFIG | {"listeners": [_listener(port)]} | self.extra | {"database": database}


def federating_setup(ca, port: int) -> Setup:
    """A server named ``localhost:<tls port>``: client API on ``port``, federation over TLS with a
    certificate from the throwaway ``ca`` that every server of the pair trusts."""
    tls_port = free_port(port)
    cert, key = ca.issue(f"bench{tls_port}")
    extra = PAIR_CONFIG | {
        "listeners": [_listener(port, ("client",)), _listener(tls_port, ("federation",), tls=True)],
        "tls_certificate_path": cert, "tls_private_key_path": key, "federation_custom_ca_list": [ca.cert_path]}
    return Setup(f"localhost:{tls_port}", extra)


def _database_section(kind: str, workdir: str, pg_name: str | None) -> dict:
    if kind == "sqlite":
        return {"name": "sqlite3", "args": {"database": os.path.join(workdir, "homeserver.db")}}
    return {"name": "psycopg2", "args": {"user": PG_USER, "host": PG_HOST, "port": PG_PORT,
                                         "dbname": pg_name, "cp_min": 5, "cp_max": 10}}


def _patch_yaml(path: str, changes: dict) -> None:
    with open(path) as f:
        data = yaml.safe_load(f)
    data.update(changes)
    with open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)


def _run(argv: list[str], **kwargs) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ServerError(f"{' '.join(argv[:4])} failed: {result.stderr[-2000:] or result.stdout[-2000:]}")


def _pg_admin(sql: str) -> None:
    """Run one statement on the maintenance database (CREATE/DROP DATABASE)."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql)


def analyze(name: str) -> None:
    """ANALYZE a database, as PostgreSQL's autovacuum would have after a fill (it is off on some machines here,
    and then the planner knows no table's size: a 100,000-event room looked like 5 rows to it)."""
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=name, autocommit=True) as conn:
        conn.execute("ANALYZE")


def create_database(name: str) -> None:
    """A new empty PostgreSQL database (C collation, as Synapse requires)."""
    _pg_admin(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")


def drop_database(name: str) -> None:
    _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def _postgres_database(label: str) -> Iterator[str]:
    """A fresh database for one server, dropped afterwards."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


# -- the two servers -------------------------------------------------------------------


def prepare_hexagone(workdir: str, port: int, database: dict, setup: Setup) -> list[str]:
    """``hexagone init``, then the shared settings; returns the ``hexagone run`` command."""
    hexagone = [hexagone_python(), "-m", "homeserver.cli"]
    _run(hexagone + ["init", "--server-name", setup.server_name, "--dir", workdir, "--port", str(port)],
         cwd=REPO_ROOT)
    _patch_yaml(os.path.join(workdir, "homeserver.yaml"), setup.config(port, database))
    return hexagone_command(workdir)


def hexagone_command(workdir: str) -> list[str]:
    """``hexagone run`` on the homeserver.yaml of ``workdir``."""
    config = os.path.join(workdir, "homeserver.yaml")
    return [hexagone_python(), "-m", "homeserver.cli", "run", "--config", config, "--log-level", LOG_LEVEL]


def _venv_python(venv: str, label: str, requirements: list[str]) -> str:
    """The interpreter of ``venv`` holding exactly ``requirements``, (re)installed when they changed."""
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".requirements.sha256")
    wanted = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    if os.path.exists(marker):
        with open(marker) as f:
            if f.read() == wanted:
                return python
    print(f"Installing {label} into {venv} (first run only)...", file=sys.stderr, flush=True)
    if not os.path.exists(python):
        _run([sys.executable, "-m", "venv", venv])
    _run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    _run([python, "-m", "pip", "install", "--quiet", *requirements])
    with open(marker, "w") as f:
        f.write(wanted)
    return python


def synapse_python() -> str:
    """The Synapse venv's interpreter, creating or updating the venv when requirements.txt changed."""
    with open(REQUIREMENTS) as f:
        requirements = [line.split("#")[0].strip() for line in f]
    return _venv_python(SYNAPSE_VENV, "Synapse", [r for r in requirements if r])


def hexagone_python() -> str:
    """An interpreter with Hexagone's run-time dependencies only, as a deployment has (the code itself
    comes from the source tree through PYTHONPATH): test-only packages that Twisted would pick up on
    import, such as h2, stay out of the measured server."""
    with open(PYPROJECT, "rb") as f:
        requirements = tomllib.load(f)["project"]["dependencies"]
    return _venv_python(HEXAGONE_VENV, "Hexagone's dependencies", requirements)


def prepare_synapse(workdir: str, port: int, database: dict, setup: Setup) -> list[str]:
    """``--generate-config``, then the shared settings; returns the Synapse command."""
    python = synapse_python()
    config = os.path.join(workdir, "homeserver.yaml")
    _run([python, "-m", "synapse.app.homeserver", "--generate-config", "--server-name", setup.server_name,
          "--config-path", config, "--data-directory", workdir, "--report-stats=no"], cwd=workdir)
    log_config = os.path.join(workdir, f"{setup.server_name}.log.config")
    with open(log_config) as f:
        logging_dict = yaml.safe_load(f)
    logging_dict["root"]["level"] = LOG_LEVEL
    for logger in logging_dict.get("loggers", {}).values():
        logger["level"] = LOG_LEVEL
    with open(log_config, "w") as f:
        yaml.safe_dump(logging_dict, f)
    _patch_yaml(config, setup.config(port, database))
    return synapse_command(workdir)


def synapse_command(workdir: str) -> list[str]:
    """Synapse on the homeserver.yaml of ``workdir``."""
    return [synapse_python(), "-m", "synapse.app.homeserver", "--config-path", os.path.join(workdir, "homeserver.yaml")]


PREPARERS = {"hexagone": prepare_hexagone, "synapse": prepare_synapse}
COMMANDS = {"hexagone": hexagone_command, "synapse": synapse_command}


def _wait_ready(server: RunningServer, log_path: str) -> None:
    """Poll /_matrix/client/versions until it answers 200, the process dies, or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"{server.label} exited with {server.process.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(server.base_url + "/_matrix/client/versions", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ServerError(f"{server.label} did not answer within {START_TIMEOUT_S:.0f}s:\n{_tail(log_path)}")


def _tail(path: str, lines: int = 30) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running(label: str, database_kind: str = "sqlite", *, ca=None, config: dict | None = None
            ) -> Iterator[RunningServer]:
    """A freshly set-up ``label`` server ("hexagone" or "synapse"), stopped and removed on exit;
    with a certificate authority ``ca``, one that federates over TLS (see :func:`federating_setup`);
    ``config`` overrides settings of homeserver.yaml (e.g. real rate limits instead of the raised ones)."""
    workdir = tempfile.mkdtemp(prefix=f"bench-{label}-")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        pg_name = stack.enter_context(_postgres_database(label)) if database_kind == "postgresql" else None
        port = free_port()
        setup = federating_setup(ca, port) if ca is not None else Setup()
        setup.extra.update(config or {})
        argv = PREPARERS[label](workdir, port, _database_section(database_kind, workdir, pg_name), setup)
        yield stack.enter_context(_started(label, argv, workdir, port, setup.server_name))


@contextlib.contextmanager
def _started(label: str, argv: list[str], workdir: str, port: int, server_name: str) -> Iterator[RunningServer]:
    """The server process of ``workdir`` started (log appended to its server.log), stopped on exit."""
    log_path = os.path.join(workdir, "server.log")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if label == "hexagone":
        env["PYTHONPATH"] = REPO_ROOT
    started = time.monotonic()
    with open(log_path, "a") as log:
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        server = RunningServer(label, f"http://127.0.0.1:{port}", process, workdir, server_name)
        _wait_ready(server, log_path)
        server.startup_s = time.monotonic() - started
        yield server
    finally:
        _stop(process)


@contextlib.contextmanager
def kept(label: str, database_kind: str, workdir: str, pg_name: str | None = None, *, config: dict | None = None
         ) -> Iterator[RunningServer]:
    """A ``label`` server whose state outlives it: set up in ``workdir`` (and the new PostgreSQL database
    ``pg_name``) the first time, started again on that work dir and database later (on a new port); stopped on
    exit, nothing removed."""
    path = os.path.join(workdir, "homeserver.yaml")
    port = free_port()
    if os.path.exists(path):
        _patch_yaml(path, {"listeners": [_listener(port)]})
        argv = COMMANDS[label](workdir)
    else:
        os.makedirs(workdir, exist_ok=True)
        if database_kind == "postgresql":
            create_database(pg_name)
        setup = Setup(extra=dict(config or {}))
        argv = PREPARERS[label](workdir, port, _database_section(database_kind, workdir, pg_name), setup)
    with _started(label, argv, workdir, port, SERVER_NAME) as server:
        yield server


@contextlib.contextmanager
def running_pair(label: str, database_kind: str = "sqlite", configs: tuple[dict, dict] = ({}, {})
                 ) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two fresh ``label`` servers federating with each other over TLS on 127.0.0.1 (``configs``: the
    overrides of each, see :func:`running`)."""
    with tempfile.TemporaryDirectory(prefix="bench-ca-") as ca_dir:
        ca = CertificateAuthority(ca_dir)
        with running(label, database_kind, ca=ca, config=configs[0]) as a, \
                running(label, database_kind, ca=ca, config=configs[1]) as b:
            yield a, b


def start_profiler(pid: int, out_path: str) -> subprocess.Popen:
    """py-spy (from the project's venv) sampling every thread of ``pid`` until :func:`stop_profiler`."""
    py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        raise ServerError(f"--profile needs py-spy: {os.path.dirname(sys.executable)}/pip install py-spy")
    profiler = subprocess.Popen([py_spy, "record", "--nonblocking", "--pid", str(pid), "--format", "raw", "--rate", "250",
                                 "--output", out_path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # py-spy attaches before the phase starts
    return profiler


def stop_profiler(profiler: subprocess.Popen) -> None:
    profiler.send_signal(signal.SIGINT)
    profiler.wait(timeout=60)
