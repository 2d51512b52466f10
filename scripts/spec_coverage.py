#!/usr/bin/env python3
"""Which client-server (or, with ``--api server-server``, server-server) API operations of the Matrix spec
does Hexagone serve?

Reads the spec's OpenAPI files (``data/api/client-server/*.yaml``), lists
every operation (method + path under the file's ``servers`` base path), and
checks it against the route table of a real server built by
``homeserver.server.build_server`` on a throwaway configuration. Prints the
implemented and missing operations per spec file, then a summary line
``implemented N of M operations``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import sys
import tempfile

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_PARAM = re.compile(r"\{[^}]+\}")


def repository_roots() -> list[str]:
    """This checkout and, when it is a git worktree, the main checkout its ``.git`` file points to."""
    roots = [REPO_ROOT]
    dot_git = os.path.join(REPO_ROOT, ".git")
    if os.path.isfile(dot_git):
        with open(dot_git, encoding="utf-8") as f:
            gitdir = os.path.join(REPO_ROOT, f.read().partition("gitdir:")[2].strip())
        commondir = os.path.join(gitdir, "commondir")
        if os.path.isfile(commondir):
            with open(commondir, encoding="utf-8") as f:
                roots.append(os.path.dirname(os.path.normpath(os.path.join(gitdir, f.read().strip()))))
    return roots


def spec_data_candidates() -> list[str]:
    """Where the spec's ``data`` directory may be: ``<repository>/../shared/matrix-spec/data``."""
    return [os.path.normpath(os.path.join(root, "..", "shared", "matrix-spec", "data")) for root in repository_roots()]


def spec_data_dir() -> str | None:
    """The spec's ``data`` directory next to the repository, or None when there is no checkout."""
    return next((d for d in spec_data_candidates() if os.path.isdir(os.path.join(d, "api"))), None)


def find_spec_dir(explicit: str | None, api: str = "client-server") -> str:
    candidates = [explicit] if explicit else [os.path.join(d, "api", api) for d in spec_data_candidates()]
    for candidate in candidates:
        if os.path.isdir(candidate):
            return os.path.abspath(candidate)
    raise SystemExit(f"spec directory not found (tried {', '.join(candidates)}); use --spec-dir")


def base_path(document: dict) -> str:
    """The ``basePath`` default of the file's first server ('' when absent)."""
    for server in document.get("servers") or []:
        variables = server.get("variables") or {}
        if "basePath" in variables:
            return variables["basePath"].get("default", "")
    return ""


def spec_operations(spec_dir: str) -> dict[str, list[tuple[str, str]]]:
    """{spec file name: [(METHOD, full path template), ...]} for every file with paths."""
    result = {}
    for name in sorted(os.listdir(spec_dir)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(spec_dir, name), encoding="utf-8") as f:
            document = yaml.safe_load(f)
        if not isinstance(document, dict) or not document.get("paths"):
            continue
        prefix = base_path(document)
        ops = []
        for path, item in document["paths"].items():
            for method in HTTP_METHODS:
                if isinstance(item, dict) and method in item:
                    ops.append((method.upper(), prefix + path.strip()))  # some keys end in a space
        result[name] = ops
    return result


def build_router():
    """The route table of a real server built on a throwaway config in a temp dir."""
    from twisted.internet import reactor

    from homeserver.cli import main as hexagone
    from homeserver.config import parse_config
    from homeserver.server import build_server

    with tempfile.TemporaryDirectory(prefix="hexagone-coverage-") as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            if hexagone(["init", "--server-name", "coverage.invalid", "--dir", tmp]) != 0:
                raise SystemExit("hexagone init failed")
        logging.disable(logging.WARNING)  # start-up advice (e.g. trusted key servers) is noise here
        try:
            path = os.path.join(tmp, "homeserver.yaml")
            with open(path) as f:
                raw = yaml.safe_load(f)
            raw["url_preview_enabled"] = True  # endpoints of features off by default count once switched on
            hs = build_server(parse_config(raw, path), reactor)
            hs.close()
        finally:
            logging.disable(logging.NOTSET)
    return hs.router


def is_served(router, method: str, template: str) -> bool:
    """Does a request for this operation (parameters filled in) reach a handler?"""
    sample = _PARAM.sub("p4r4m", template)
    route, _ = router.match(method, sample)
    return route is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec-dir", help="the spec's data/api/client-server directory")
    parser.add_argument("--api", choices=("client-server", "server-server"), default="client-server",
                        help="which API of the spec to check (default: client-server)")
    parser.add_argument("--missing-only", action="store_true", help="list only the operations not served")
    args = parser.parse_args(argv)

    operations = spec_operations(find_spec_dir(args.spec_dir, args.api))
    router = build_router()
    every: dict[tuple[str, str], bool] = {}  # one endpoint may be documented in two files
    for name, ops in operations.items():
        marks = [(is_served(router, method, path), method, path) for method, path in ops]
        every.update(((method, path), served) for served, method, path in marks)
        done = sum(1 for served, _, _ in marks if served)
        if args.missing_only and done == len(marks):
            continue
        print(f"{name}: {done}/{len(marks)}")
        for served, method, path in marks:
            if not (args.missing_only and served):
                print(f"  [{'x' if served else ' '}] {method} {path}")
    print(f"implemented {sum(every.values())} of {len(every)} operations")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO_ROOT)
    sys.exit(main())
