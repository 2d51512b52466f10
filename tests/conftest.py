"""Shared pytest setup for the whole suite.

The repository root is importable (``tests.integration.harness``,
``homeserver``) whether or not the package is installed.
"""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# Tests that give the same result whatever the database engine: .ci/run runs them in its SQLite pass only
# (its PostgreSQL pass deselects them with -m "not engine_independent"). Everything under these directories
# is, but for a module there that says ``pytestmark = pytest.mark.engine_dependent`` (the bridges' own store);
# elsewhere a module says so itself with ``pytestmark = pytest.mark.engine_independent``.
ENGINE_INDEPENDENT_DIRS = tuple(os.path.join(REPO_ROOT, "tests", d) + os.sep for d in ("core", "bridges"))


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if str(item.path).startswith(ENGINE_INDEPENDENT_DIRS) and item.get_closest_marker("engine_dependent") is None:
            item.add_marker(pytest.mark.engine_independent)
