"""The ``hexagone`` command line.

Subcommands are registered in :data:`SUBCOMMANDS` (name -> (add_arguments,
handler)); a handler takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from homeserver.config import ConfigError, load_config, parse_config
from homeserver.config_sample import generate_config_yaml, generate_signing_key_version
from homeserver.storage.database import DatabaseSetupError

CONFIG_FILENAME = "homeserver.yaml"
SIGNING_KEY_FILENAME = "signing.key"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _error(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load(paths: str | list[str]):
    """load_config, turning ConfigError into None after printing it."""
    try:
        return load_config(*([paths] if isinstance(paths, str) else paths))
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return None


def _write_new_file(path: str, content: str, mode: int = 0o600) -> None:
    """Create ``path`` exclusively (never overwrite) with ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(content)


# ---------------------------------------------------------------------------
# init
# ---------------------------------------------------------------------------


def _init_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server-name", required=True,
                   help="public domain of the server, e.g. example.org (cannot change later)")
    p.add_argument("--dir", required=True,
                   help="directory for homeserver.yaml, signing.key and data (created if missing)")
    p.add_argument("--port", type=int, default=8008, help="HTTP listener port (default 8008)")
    p.add_argument("--database", default=None, metavar="URL",
                   help="postgresql://user:pw@host:port/db, sqlite:///path or a file path "
                        "(default: SQLite in --dir)")
    p.add_argument("--federate-with", default="", metavar="NAMES",
                   help="comma-separated server names of the agencies to federate with "
                        "(default: none; federation_domain_whitelist in homeserver.yaml)")


def cmd_init(args: argparse.Namespace) -> int:
    from signedjson.key import generate_signing_key, write_signing_keys

    config_dir = os.path.abspath(args.dir)
    config_path = os.path.join(config_dir, CONFIG_FILENAME)
    key_path = os.path.join(config_dir, SIGNING_KEY_FILENAME)

    if os.path.exists(key_path):
        return _error(
            f"Refusing to overwrite the existing signing key {key_path}: it is this "
            "server's identity. Move it away first if you really want a new one."
        )
    if os.path.exists(config_path):
        return _error(f"Refusing to overwrite the existing configuration {config_path}.")
    peers = tuple(n.strip() for n in args.federate_with.split(",") if n.strip())

    try:
        text = generate_config_yaml(
            args.server_name, config_dir, port=args.port, database_url=args.database,
            federate_with=peers,
        )
        # Validate what we are about to write (server name, port, database URL).
        import yaml

        parse_config(yaml.safe_load(text), config_path)
    except ConfigError as e:
        return _error(f"Configuration error: {e}")

    try:
        os.makedirs(config_dir, exist_ok=True)
        key = generate_signing_key(generate_signing_key_version())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write_signing_keys(f, [key])
        try:
            _write_new_file(config_path, text)
        except OSError:
            os.unlink(key_path)  # keep init all-or-nothing
            raise
    except FileExistsError as e:
        return _error(f"Refusing to overwrite {e.filename}.")
    except OSError as e:
        return _error(f"Cannot write to {config_dir}: {e.strerror or e}")

    print(f"Wrote {config_path}")
    print(f"Wrote {key_path} (signing key ed25519:{key.version}; back it up, keep it private)")
    print(f"Federation: only with {', '.join(peers)}" if peers else
          "Federation: with nobody yet (federation_domain_whitelist: []); list the agencies there, then reload "
          "with kill -HUP or POST /_hexagone/admin/v1/reload")
    print()
    print("Review the configuration, then start the server with:")
    print(f"  hexagone run --config {config_path}")
    print("and create a first admin account with:")
    print(f"  hexagone register-user --config {config_path} --user admin --password-file - --admin")
    return 0


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, action="append",
                   help="path to homeserver.yaml; again for a file whose keys override it (a worker's, "
                        "docs/workers.md)")
    p.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                   help="log level when log_config is not set (default INFO)")


def cmd_run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    config = _load(args.config)
    if config is None:
        return 1
    from homeserver.server import run_server

    return run_server(config)


# ---------------------------------------------------------------------------
# register-user
# ---------------------------------------------------------------------------


def _register_user_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, help="path to homeserver.yaml")
    p.add_argument("--user", "-u", required=True,
                   help="localpart (alice) or full user ID (@alice:example.org)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--password-file", metavar="FILE",
                        help="read the password from FILE's first line ('-': standard input)")
    source.add_argument("--password", "-p",
                        help="the new user's password (other local users can read it in the process list: "
                             "prefer --password-file)")
    p.add_argument("--admin", action="store_true", help="make the user a server admin")


def cmd_register_user(args: argparse.Namespace) -> int:
    _setup_logging("WARNING")
    config = _load(args.config)
    if config is None:
        return 1
    localpart = args.user
    if localpart.startswith("@"):
        local, sep, server = localpart[1:].partition(":")
        if sep and server != config.server_name:
            return _error(
                f"User ID {args.user} is not on this server ({config.server_name})."
            )
        localpart = local
    if not localpart:
        return _error("--user must not be empty.")
    password = args.password
    if args.password_file is not None:
        try:
            if args.password_file == "-":
                password = sys.stdin.readline()
            else:
                with open(args.password_file, encoding="utf-8") as f:
                    password = f.readline()
        except OSError as e:
            return _error(f"Cannot read {args.password_file}: {e.strerror or e}")
        password = password.rstrip("\r\n")
    if not password:
        return _error("The password must not be empty.")
    from homeserver.commands.register_user import register_user

    return register_user(config, localpart, password, args.admin)


# ---------------------------------------------------------------------------
# port-db
# ---------------------------------------------------------------------------


def _port_db_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, help="path to homeserver.yaml (its database is the source)")
    p.add_argument("--to", required=True, metavar="URL",
                   help="the new PostgreSQL database: postgresql://user:pw@host:port/db")
    p.add_argument("--batch-size", type=int, default=5000, help="rows per transaction (default 5000)")


def cmd_port_db(args: argparse.Namespace) -> int:
    _setup_logging("WARNING")
    config = _load(args.config)
    if config is None:
        return 1
    if not args.to.startswith(("postgresql://", "postgres://")):
        return _error("--to must be a postgresql:// URL")
    if args.batch_size < 1:
        return _error("--batch-size must be at least 1")
    from homeserver.commands.port_db import PortError, port_database

    try:
        return port_database(config, args.to, args.batch_size)
    except PortError as e:
        return _error(str(e))
    except KeyboardInterrupt:
        print("Interrupted. Run the same command again to continue where it stopped.", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------
# bridge (a separate appservice process: see bridges/cli.py)
# ---------------------------------------------------------------------------


def _bridge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bridge_args", nargs=argparse.REMAINDER, metavar="NAME init|run ...",
                   help="see: hexagone bridge --help")


def cmd_bridge(args: argparse.Namespace) -> int:
    from bridges.cli import main as bridge_main

    return bridge_main(args.bridge_args)


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace], int]

SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "init": ("write a new homeserver.yaml and signing key", _init_arguments, cmd_init),
    "run": ("run the homeserver", _run_arguments, cmd_run),
    "register-user": ("create a user account", _register_user_arguments, cmd_register_user),
    "port-db": ("copy this server's SQLite database into PostgreSQL", _port_db_arguments, cmd_port_db),
    "bridge": ("run or set up a bridge to another network (hexagone bridge NAME init|run)", _bridge_arguments,
               cmd_bridge),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hexagone", description="Hexagone Matrix homeserver")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, add_arguments, _handler) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _help, _add, handler = SUBCOMMANDS[args.command]
    try:
        return handler(args)
    except ConfigError as e:
        # e.g. read_signing_key failing inside run_server
        print(f"Configuration error: {e}", file=sys.stderr)
        return 1
    except DatabaseSetupError as e:
        print(f"Database error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
