"""PushStore.add_actions (homeserver/storage/push.py): each event's push actions, kept as one group per event,
are written as one row per notified user, ROWS_PER_INSERT rows at a time (COPY on PostgreSQL from
COPY_FROM_ROWS), and read back per user exactly as EventPushActions.of gives them from memory.

On the database the suite runs on (SQLite, or PostgreSQL per HEXAGONE_TEST_DATABASE).
"""

from __future__ import annotations

import pytest

from homeserver.config import parse_config
from homeserver.storage import push
from homeserver.storage.database import COPY_FROM_ROWS, Database, open_engine
from homeserver.storage.push import EventPushActions, PushStore
from homeserver.storage.schema import apply_migrations
from tests.integration.harness import database_config_for_test
from tests.integration.reactor_thread import on_reactor, reactor  # noqa: F401 (fixture)

NOTIFY = ["notify"]
HIGHLIGHT = ["notify", {"set_tweak": "highlight"}]


@pytest.fixture
def store(reactor, tmp_path):
    config = parse_config({"server_name": "push.example", "database": database_config_for_test(str(tmp_path))},
                          str(tmp_path / "homeserver.yaml"))
    db = Database(open_engine(config.database), reactor=reactor)
    apply_migrations(db, {"push": push.MIGRATIONS})
    yield PushStore(db)
    db.close()


def group(position: int, users: int) -> EventPushActions:
    user_ids = sorted(f"@u{i:05d}:push.example" for i in range(users))
    outcomes = [(True, HIGHLIGHT) if i % 7 == 0 else (False, NOTIFY) for i in range(users)]
    return EventPushActions(position, "!big:push.example", f"$e{position}", "main", 1000 + position, user_ids,
                            outcomes)


@pytest.mark.parametrize("sizes", [[1, COPY_FROM_ROWS - 2], [3, push.ROWS_PER_INSERT - 1, COPY_FROM_ROWS],
                                   [push.ROWS_PER_INSERT + 5]])
def test_every_users_actions_are_stored_as_kept_in_memory(reactor, store, sizes):
    events = [group(10 + i, users) for i, users in enumerate(sizes)]
    on_reactor(reactor, lambda: store.add_actions(events))
    total = on_reactor(reactor, lambda: store.db.run("count", lambda t: t.select_value(
        "SELECT COUNT(*) FROM push_actions")))
    assert total == sum(sizes)
    for user_id in ("@u00000:push.example", "@u00001:push.example", f"@u{max(sizes) - 1:05d}:push.example"):
        stored = on_reactor(reactor, lambda: store.actions_after(user_id, 0, 100, 100))
        assert stored == [a for ev in events if (a := ev.of(user_id)) is not None]
    assert events[0].of("@nobody:push.example") is None


def test_a_failed_batch_stores_nothing(reactor, store):
    events = [group(20, COPY_FROM_ROWS + 1), group(21, 3)]
    events[1].user_ids[2] = None  # a row the table refuses (user_id NOT NULL), after a whole COPY
    with pytest.raises(Exception):
        on_reactor(reactor, lambda: store.add_actions(events))
    assert on_reactor(reactor, lambda: store.db.run("count", lambda t: t.select_value(
        "SELECT COUNT(*) FROM push_actions"))) == 0
