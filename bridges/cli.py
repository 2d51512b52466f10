"""``hexagone bridge NAME init|run``: write a bridge's config and registration, or run it in the foreground.

Each bridge is a package ``bridges.<name>`` exposing ``network_defaults()`` (its section of the
configuration) and ``make_connector(config)``. Its optional dependencies are imported only when it
runs, and a missing one is a one-line error naming the extra to install.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import os
import sys

import yaml

from bridges.config import BridgeConfigError, load_config, new_config

BRIDGES = {"olvid": "olvid", "oodrive": "bridges", "tixeo": "bridges"}  # bridge name -> the pip extra it needs
# products without a public API: (stand-in class, HTTP adapter class) of their assumed contract
CONTRACTS = {"oodrive": ("OodriveStandin", "HttpOodrive"), "tixeo": ("TixeoStandin", "HttpTixeo")}


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
    if config.encryption and importlib.util.find_spec("nio") is None:
        print("Configuration error: bridge.encryption.allow needs the bridges-e2e extra "
              "(pip install 'hexagone[bridges-e2e]')", file=sys.stderr)
        return 1
    module = _bridge_module(name)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # client libraries log every call at INFO
        for name in ("olvid", "aiohttp.access", "nio", "peewee"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        connector = module.make_connector(config)
    except BridgeConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 1
    from bridges.runtime import run

    return asyncio.run(run(config, connector))


def cmd_standin(name: str, args: argparse.Namespace) -> int:
    """Run the stand-in server of a product's contract on 127.0.0.1."""
    if name not in CONTRACTS:
        print(f"The {name} bridge has no stand-in (its product has a public API).", file=sys.stderr)
        return 1
    from bridges.standin import serve

    standin_class = getattr(importlib.import_module(f"bridges.{name}.standin"), CONTRACTS[name][0])
    standin = standin_class(args.dir, args.client_id, args.client_secret)
    print(f"{name} stand-in on http://127.0.0.1:{args.port} (state in {args.dir})", flush=True)
    return serve(standin.app, args.port)


def cmd_conformance(name: str, args: argparse.Namespace) -> int:
    """Run the product's conformance kit against a server of its contract; 1 if a check fails."""
    if name not in CONTRACTS:
        print(f"The {name} bridge has no conformance kit (its product has a public API).", file=sys.stderr)
        return 1
    from bridges.conformance import run_kit

    adapter_class = getattr(importlib.import_module(f"bridges.{name}.adapter"), CONTRACTS[name][1])
    kit = importlib.import_module(f"bridges.{name}.conformance").KIT
    results = asyncio.run(run_kit(kit, adapter_class(args.url, args.client_id, args.client_secret)))
    for check, failure in results:
        print(f"{'FAIL' if failure else 'ok  '} {check}" + (f": {failure}" if failure else ""))
    return 1 if any(failure for _, failure in results) else 0


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
    standin = sub.add_parser("standin", help="run a stand-in server of the product's contract (oodrive, tixeo)")
    standin.add_argument("--port", type=int, required=True)
    standin.add_argument("--dir", default="standin-data", help="where its state is kept across restarts")
    standin.add_argument("--client-id", default="hexagone-bridge")
    standin.add_argument("--client-secret", default="standin-secret")
    kit = sub.add_parser("conformance", help="check a server of the product's contract (oodrive, tixeo)")
    kit.add_argument("--url", required=True)
    kit.add_argument("--client-id", required=True)
    kit.add_argument("--client-secret", required=True)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return {"init": cmd_init, "run": cmd_run, "standin": cmd_standin, "conformance": cmd_conformance}[args.action](args.name, args)
