"""The integration fixtures (real server processes, their logs on failure) for the fuzz tests."""

from tests.integration.conftest import (homeserver, homeserver_factory,  # noqa: F401 (fixtures)
                                        pytest_runtest_makereport, pytest_sessionfinish)
