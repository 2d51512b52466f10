"""The Matrix spec's OpenAPI files merged into one self-contained document per API, for schemathesis.

The spec (``<repo>/../shared/matrix-spec/data/api/<api>/*.yaml``) holds one OpenAPI 3.1 document per
file, each with its own ``servers`` ``basePath`` variable and ``$ref``s to YAML files elsewhere in the
tree (``definitions/``, ``../../event-schemas/``), some with a JSON pointer. :func:`merged_document`
inlines every reference (a recursive one becomes ``{}``, any value), prefixes each path with its file's
``basePath`` and drops ``servers`` and security declarations (the fuzz tests authenticate themselves).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import yaml

from tests.integration.harness import REPO_ROOT

HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def spec_data_dir() -> str | None:
    """The spec's ``data`` directory as ``scripts/spec_coverage.py`` finds it (``<repository>/../shared/
    matrix-spec/data``, the repository being this checkout or the main one of a git worktree), or None."""
    loader = importlib.util.spec_from_file_location("spec_coverage",
                                                    os.path.join(REPO_ROOT, "scripts", "spec_coverage.py"))
    script = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(script)
    return script.spec_data_dir()


@functools.lru_cache(maxsize=None)
def _load_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _pointer(document: Any, pointer: str) -> Any:
    for part in (p for p in pointer.split("/") if p):
        part = part.replace("~1", "/").replace("~0", "~")
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def _inline(node: Any, path: str, seen: tuple[str, ...]) -> Any:
    """``node`` (read from file ``path``) with every ``$ref`` replaced by the value it names."""
    if isinstance(node, list):
        return [_inline(item, path, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        target_file, _, pointer = ref.partition("#")
        target_path = os.path.normpath(os.path.join(os.path.dirname(path), target_file)) if target_file else path
        key = f"{target_path}#{pointer}"
        if key in seen:
            return {}  # a recursive schema: any value
        target = _inline(_pointer(_load_yaml(target_path), pointer), target_path, seen + (key,))
        siblings = {k: _inline(v, path, seen) for k, v in node.items() if k != "$ref"}
        return {**target, **siblings} if isinstance(target, dict) else target
    return {k: _inline(v, path, seen) for k, v in node.items()}


def _base_path(document: dict) -> str:
    for server in document.get("servers") or []:
        default = ((server.get("variables") or {}).get("basePath") or {}).get("default")
        if default is not None:
            return default
    return ""


def merged_document(api: str, data_dir: str) -> dict:
    """One OpenAPI 3.1 document holding every operation of ``api`` (``client-server``, ``server-server``)."""
    api_dir = os.path.join(data_dir, "api", api)
    paths: dict[str, dict] = {}
    for name in sorted(os.listdir(api_dir)):
        if not name.endswith(".yaml"):
            continue
        file_path = os.path.join(api_dir, name)
        document = _load_yaml(file_path)
        if not isinstance(document, dict) or not document.get("paths"):
            continue
        prefix = _base_path(document)
        for template, item in document["paths"].items():
            item = _inline(item, file_path, ())
            merged = paths.setdefault(prefix + template.strip(), {})  # some keys end in a space
            for method, operation in item.items():
                if method in HTTP_METHODS and method not in merged:
                    operation = {k: v for k, v in operation.items() if k != "security"}
                    operation["x-spec-file"] = name
                    merged[method] = operation
                elif method == "parameters":
                    merged.setdefault("parameters", operation)
    return {"openapi": "3.1.0", "info": {"title": f"Matrix {api} API", "version": "1.0.0"}, "paths": paths}


def operation_count(document: dict) -> int:
    return sum(1 for item in document["paths"].values() for method in item if method in HTTP_METHODS)


def load_schema(api: str):
    """(schemathesis schema, operation count) of ``api``; the test is skipped when the spec is absent."""
    import pytest
    import schemathesis

    data_dir = spec_data_dir()
    if data_dir is None:
        pytest.skip("the Matrix spec checkout (<repo>/../shared/matrix-spec/data) is absent")
    document = merged_document(api, data_dir)
    return schemathesis.openapi.from_dict(document), operation_count(document)
