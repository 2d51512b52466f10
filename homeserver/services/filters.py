"""Stored filters (spec v1.19 client-server "Filtering": POST/GET /user/{userId}/filter)."""

from __future__ import annotations

from homeserver.errors import not_found
from homeserver.services.filtering import SyncFilter
from homeserver.storage.filters import FilterStore


class FilterService:
    def __init__(self, *, store: FilterStore, timeline_cap: int):
        self._store = store
        self._timeline_cap = timeline_cap  # Synapse's filter_timeline_limit

    async def add(self, user_id: str, definition: dict) -> int:
        """A new filter of the user's; it is validated before it is stored."""
        SyncFilter.parse(definition)
        return await self._store.add_filter(user_id, definition)

    async def get(self, user_id: str, filter_id: int) -> dict:
        """The definition of one of the user's filters (404 M_NOT_FOUND if there is none)."""
        definition = await self._store.get_filter(user_id, filter_id)
        if definition is None:
            raise not_found("No such filter")
        return definition

    async def sync_filter(self, user_id: str, definition: dict | None = None, filter_id: int | None = None
                          ) -> SyncFilter:
        """The filter of a /sync: given inline, or one of the user's stored filters."""
        if filter_id is not None:
            definition = await self.get(user_id, filter_id)
        return SyncFilter.parse(definition, self._timeline_cap)
