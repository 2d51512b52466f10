"""The three layers, one way (STYLE.md, issue 14): HTTP resources -> services -> storage.

Read from the source's own imports, so a new module is checked the day it is added."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import pathlib
from functools import partial

import pytest

from homeserver.errors import MatrixError
from homeserver.http.router import ApiRequest, Endpoint
from homeserver.requester import Requester

ROOT = pathlib.Path(__file__).resolve().parents[2]
API_DIRS = ("homeserver/api", "federation/api", "media_repo/api")


def _modules(*dirs: str) -> list[pathlib.Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _offending(paths: list[pathlib.Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{p.relative_to(ROOT)} imports {name}" for p in paths for name in sorted(_imports(p))
            if name.startswith(forbidden)]


def test_services_storage_and_the_core_import_nothing_above_them():
    above = ("homeserver.http", "homeserver.api", "federation.api", "homeserver.server", "homeserver.commands")
    assert _offending(_modules("homeserver/services", "homeserver/storage", "homeserver/events"), above) == []
    assert _offending(_modules("homeserver/storage"), ("homeserver.services",)) == []
    media_below_api = [p for p in _modules("media_repo") if "api" not in p.relative_to(ROOT).parts]
    assert _offending(media_below_api, above + ("media_repo.api",)) == []


def test_api_modules_reach_no_storage():
    assert _offending(_modules(*API_DIRS), ("homeserver.storage",)) == []
    for path in _modules(*API_DIRS):
        text = path.read_text()
        for name in ("_store", ".db.", "hs.db", ".client.get_json", ".client.post_json", ".client.put_json"):
            assert name not in text, f"{path.relative_to(ROOT)} uses {name}"


def _api_modules():
    for path in _modules(*API_DIRS):
        if path.name != "__init__.py":
            yield importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))


@pytest.mark.parametrize("module", list(_api_modules()), ids=lambda m: m.__name__)
def test_every_api_module_is_one_table_of_module_level_handlers(module):
    assert not hasattr(module, "register"), "routes are declared in ROUTES, bound by Router.bind"
    assert module.ROUTES and all(isinstance(e, Endpoint) for e in module.ROUTES)
    for endpoint in module.ROUTES:
        handler = endpoint.handler.func if isinstance(endpoint.handler, partial) else endpoint.handler
        assert inspect.iscoroutinefunction(handler), endpoint
        assert getattr(module, handler.__name__) is handler, f"{handler.__name__} is not module-level"
        assert list(inspect.signature(handler).parameters)[:2] == ["hs", "req"], endpoint


def _request(requester: Requester | None, **path_params) -> ApiRequest:
    return ApiRequest(method="GET", path="/", path_params=path_params, args={}, headers={}, body=b"",
                      client_ip="127.0.0.1", requester=requester)


def test_a_handler_runs_on_its_own():
    """No router, no site, no server: a handler is a function of (hs, request)."""
    from homeserver.api import admin
    from homeserver.api.client import account

    alice = Requester("@alice:hs", "DEV", "token")
    assert asyncio.run(account.whoami(None, _request(alice))) == {
        "user_id": "@alice:hs", "is_guest": False, "device_id": "DEV"}
    with pytest.raises(MatrixError) as refused:
        asyncio.run(admin.list_tokens(None, _request(alice)))
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")
