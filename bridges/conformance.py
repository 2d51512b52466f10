"""The conformance kits' runner: a kit is a list of named async checks over one adapter; each check
raises AssertionError (or a ProductError) when the adapter does not behave as the contract says.

``hexagone bridge oodrive conformance --url U --client-id I --client-secret S`` runs the Oodrive kit
against the contract's HTTP adapter; a real deployment's own adapter is checked by calling
``run_kit(kit, adapter)`` with it.
"""

from __future__ import annotations

import secrets
from typing import Any, Awaitable, Callable

from bridges.product import ProductError, ProductAdapter

Check = Callable[[Any, dict], Awaitable[None]]


async def run_kit(kit: list[tuple[str, Check]], adapter: Any) -> list[tuple[str, str | None]]:
    """Every check in order, sharing one scratch dict; (name, failure or None) for each."""
    results, scratch = [], {"tag": secrets.token_hex(4)}
    await adapter.open()
    try:
        for name, check in kit:
            try:
                await check(adapter, scratch)
                results.append((name, None))
            except (AssertionError, ProductError, KeyError, TypeError) as e:
                results.append((name, f"{type(e).__name__}: {e}"))
    finally:
        await adapter.close()
    return results


async def all_events(adapter: ProductAdapter, after: str = "") -> list[dict]:
    """The feed from ``after`` to its end, page by page; the ids must increase."""
    items, cursor = [], after
    while True:
        page, following = await adapter.events(cursor)
        if not page:
            break
        items += page
        cursor = following
    ids = [int(item["id"]) for item in items]
    assert ids == sorted(set(ids)), "feed ids do not increase"
    assert not (await adapter.events(cursor))[0], "the feed repeats itself after its last cursor"
    return items
