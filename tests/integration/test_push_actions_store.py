"""PushStore (homeserver/storage/push.py) for big rooms. add_actions: each event's push actions, kept as one
group per event, are written as one row per notified user, ROWS_PER_INSERT rows at a time (COPY on PostgreSQL
from COPY_FROM_ROWS), and read back per user exactly as EventPushActions.of gives them from memory.
get_rules_of: the rules of many users read together, each user's as get_rules reads them alone.

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


def test_the_rules_of_many_users_are_each_users_own(reactor, store):
    users = [f"@u{i:04d}:push.example" for i in range(1200)]  # three statements' worth
    mine = {"rule_id": "hello", "enabled": True, "pattern": "hello", "actions": ["notify"]}
    for user_id in (users[3], users[777]):
        on_reactor(reactor, lambda: store.replace_kind(user_id, "content", [mine, dict(mine, rule_id="bye",
                                                                                        pattern="bye")]))
        on_reactor(reactor, lambda: store.change_default(user_id, "override", ".m.rule.suppress_notices",
                                                         enabled=False))
    on_reactor(reactor, lambda: store.change_default(users[1199], "underride", ".m.rule.message",
                                                     actions=["dont_notify"]))
    together = on_reactor(reactor, lambda: store.get_rules_of(users))
    assert set(together) == set(users)
    for user_id in (users[0], users[3], users[500], users[777], users[1199]):
        assert together[user_id] == on_reactor(reactor, lambda: store.get_rules(user_id))
    own, defaults = together[users[777]]
    assert [r["rule_id"] for r in own["content"]] == ["hello", "bye"]  # most important first
    assert defaults == {("override", ".m.rule.suppress_notices"): {"enabled": False}}
    assert together[users[1199]] == ({}, {("underride", ".m.rule.message"): {"actions": ["dont_notify"]}})
    assert together[users[500]] == ({}, {})
