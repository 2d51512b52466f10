"""``hexagone bridge NAME init|run``: write a bridge's config and registration, or run it in the foreground.

Each bridge is a package ``bridges.<name>`` exposing ``network_defaults()`` (its section of the
configuration) and ``make_connector(config)``. Its optional dependencies are imported only when it
runs, and a missing one is a one-line error naming the extra to install.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys

import yaml

from bridges.config import BridgeConfigError, load_config, new_config

BRIDGES = {"olvid": "olvid"}  # bridge name -> the pip extra it needs


def _bridge_module(name: str):
    """The bridge's package (and the framework's runtime), or SystemExit with what to install."""
    try:
        importlib.import_module("bridges.runtime")  # aiohttp
        return importlib.import_module(f"bridges.{name}.bridge")
    except ImportError as e:
        raise SystemExit(f"The {name} bridge needs a missing module ({e.name}): "
                         f"pip install 'hexagone[{BRIDGES[name]}]'") from None


def cmd_init(name: str, args: argparse.Namespace) -> int:
    directory = os.path.abspath(args.dir)
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, f) for f in ("config.yaml", "registration.yaml")]
    for path in paths:
        if os.path.exists(path):
            print(f"Refusing to overwrite {path}", file=sys.stderr)
            return 1
    from bridges import network_defaults

    config, registration = new_config(name, args.homeserver, args.domain, directory, args.port,
                                      network_defaults(name))
    for path, doc in zip(paths, (config, registration)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
    print(f"Wrote {paths[0]} and {paths[1]}.\nList {paths[1]} in the homeserver's app_service_config_files, "
          f"fill in the '{name}:' section of {paths[0]}, then run: hexagone bridge {name} run --config {paths[0]}")
    return 0


def cmd_run(name: str, args: argparse.Namespace) -> int:
    try:
        config = load_config(name, args.config)
    except BridgeConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 1
    module = _bridge_module(name)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # client libraries log every call at INFO
        for name in ("olvid", "aiohttp.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        connector = module.make_connector(config)
    except BridgeConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 1
    from bridges.runtime import run

    return asyncio.run(run(config, connector))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hexagone bridge", description="Run a bridge to another network")
    parser.add_argument("name", choices=sorted(BRIDGES))
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="write DIR/config.yaml and DIR/registration.yaml")
    init.add_argument("--homeserver", required=True, help="client-server API URL, e.g. http://127.0.0.1:8008")
    init.add_argument("--domain", required=True, help="the homeserver's server name")
    init.add_argument("--dir", required=True, help="directory for the two files and the bridge's database")
    init.add_argument("--port", type=int, default=29330, help="port the bridge listens on (default 29330)")
    run = sub.add_parser("run", help="run the bridge in the foreground")
    run.add_argument("--config", "-c", required=True, help="path to the bridge's config.yaml")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return (cmd_init if args.action == "init" else cmd_run)(args.name, args)
