"""PushService reads the push rules of a room's members together, with a store that holds its reads until the
test lets them go: readers of the same users while a read is under way (the first messages to a big room after
a start) wait for it and find them cached, rather than reading every member's rules again."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock

from homeserver.services.push import PushService

USERS = [f"@u{i}:test.local" for i in range(5)]


class RulesStore:
    """PushStore.get_rules_of: nobody has rules of their own; each read waits until the test releases it."""

    def __init__(self):
        self.reads: list[tuple[list[str], Deferred]] = []

    async def get_rules_of(self, user_ids):
        release: Deferred = Deferred()
        self.reads.append((list(user_ids), release))
        await release
        return {u: ({}, {}) for u in user_ids}


def service(store: RulesStore, memoize: bool = True) -> PushService:
    heads = SimpleNamespace(stream=SimpleNamespace(current=lambda: 0))
    return PushService(store=store, room_heads=heads, event_store=None, account_data=None, serializer=None,
                       read_positions=None, server_name="test.local", clock=Clock(), memoize=memoize)


def test_readers_of_the_same_members_read_them_once():
    store = RulesStore()
    push = service(store)
    first = ensureDeferred(push._rules_of(USERS))
    second = ensureDeferred(push._rules_of(USERS[2:] + ["@new:test.local"]))
    # The second reader reads at once only whom the first is not reading, and waits for the rest.
    assert [ids for ids, _ in store.reads] == [USERS, ["@new:test.local"]]
    store.reads[1][1].callback(None)
    assert not second.called
    store.reads[0][1].callback(None)
    assert set(first.result) == set(USERS) and set(second.result) == set(USERS[2:]) | {"@new:test.local"}
    assert second.result[USERS[3]] is first.result[USERS[3]]
    assert first.result[USERS[0]][2] is first.result[USERS[1]][2]  # the same rules compiled once
    third = ensureDeferred(push._rules_of(USERS + ["@new:test.local"]))
    assert len(store.reads) == 2 and third.result == {**first.result, **second.result}  # all cached


def test_readers_of_other_members_do_not_wait_for_each_other():
    """Joins to a room each bring a user whose rules are not cached: their reads overlap."""
    store = RulesStore()
    push = service(store)
    first = ensureDeferred(push._rules_of(USERS[:2]))
    second = ensureDeferred(push._rules_of(USERS[2:]))
    assert [ids for ids, _ in store.reads] == [USERS[:2], USERS[2:]]
    store.reads[1][1].callback(None)
    assert set(second.result) == set(USERS[2:]) and not first.called


def test_a_read_begun_before_a_rule_changed_is_neither_joined_nor_kept():
    store = RulesStore()
    push = service(store)
    first = ensureDeferred(push._rules_of(USERS))
    push._rule_reads.invalidate()  # what a rule change does, besides forgetting the user's cached rules
    second = ensureDeferred(push._rules_of(USERS))
    assert len(store.reads) == 2  # not joined
    store.reads[0][1].callback(None)
    assert set(first.result) == set(USERS) and not second.called
    store.reads[1][1].callback(None)
    assert set(second.result) == set(USERS)

    store = RulesStore()
    push = service(store)
    ensureDeferred(push._rules_of(USERS))
    push._rule_reads.invalidate()
    store.reads[0][1].callback(None)
    ensureDeferred(push._rules_of(USERS))
    assert len(store.reads) == 2  # not kept: read again


def test_a_worker_that_keeps_no_rules_reads_them_each_time():
    store = RulesStore()
    push = service(store, memoize=False)
    first = ensureDeferred(push._rules_of(USERS))
    store.reads[0][1].callback(None)
    second = ensureDeferred(push._rules_of(USERS))
    store.reads[1][1].callback(None)
    assert len(store.reads) == 2 and set(first.result) == set(second.result) == set(USERS)
