"""The bridge's mapping store on SQLite, and on PostgreSQL when HEXAGONE_TEST_DATABASE names one."""

from __future__ import annotations

import asyncio

import pytest

from bridges.store import Portal, Store
from tests.bridges.conftest import bridge_database, postgresql_configured


pytestmark = pytest.mark.engine_dependent  # its PostgreSQL half runs in the PostgreSQL pass


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "postgresql" and not postgresql_configured():
        pytest.skip("HEXAGONE_TEST_DATABASE does not name a PostgreSQL database")
    with bridge_database(str(tmp_path), request.param == "postgresql") as url:
        yield url


def test_mappings_transactions_and_cursors_survive_a_reopen(store_url):
    async def scenario():
        store = Store(store_url)
        await store.open()
        await store.add_portal(Portal("7", "!r:x", "Team", True))
        await store.add_message("!r:x", "$e1", "I1")
        await store.add_message("!r:x", "$e1", "I1")  # a retry: no error, no second row
        await store.add_message("!r:x", "$r1", "I1:3", "reaction")
        assert await store.accept_transaction("t1", [{"event_id": "$a"}, {"event_id": "$b"}])
        assert not await store.accept_transaction("t1", [{"event_id": "$a"}])
        assert await store.accept_transaction("t2", [{"event_id": "$a"}, {"event_id": "$c"}])  # $a once
        pending = await store.pending_events()
        assert [e["event_id"] for _, e in pending] == ["$a", "$b", "$c"]
        await store.event_done(pending[0][0])
        await store.set_cursor("c", "1")
        await store.set_cursor("c", "2")
        await store.save_ghost("3", "@g_3:x", "Bob", "k1")
        await store.save_ghost("3", "@g_3:x", "Bob B", "k2")
        await store.close()

        store = Store(store_url)
        await store.open()
        assert await store.portal_by_room("!r:x") == Portal("7", "!r:x", "Team", True)
        await store.update_portal("7", relay=False, title="Team 2")
        assert await store.portal_by_remote("7") == Portal("7", "!r:x", "Team 2", False)
        assert await store.event_for("I1") == ("!r:x", "$e1")
        assert await store.remote_for("!r:x", "$r1") == ("reaction", "I1:3")
        assert [e["event_id"] for _, e in await store.pending_events()] == ["$b", "$c"]
        assert await store.cursor("c") == "2" and await store.cursor("none") is None
        assert await store.ghost("3") == ("@g_3:x", "Bob B", "k2")
        await store.forget_remote("I1", "message")
        assert await store.event_for("I1") is None
        await store.remove_portal("!r:x")
        assert await store.portals() == []
        await store.close()

    asyncio.run(scenario())


def test_a_lost_postgresql_connection_is_replaced(store_url):
    if not store_url.startswith("postgresql://"):
        pytest.skip("PostgreSQL only")
    import psycopg

    async def scenario():
        store = Store(store_url)
        await store.open()
        await store.set_cursor("c", "1")
        with psycopg.connect(store_url, autocommit=True) as admin:  # what a PostgreSQL restart does to it
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert await store.cursor("c") == "1"
        await store.close()

    asyncio.run(scenario())
