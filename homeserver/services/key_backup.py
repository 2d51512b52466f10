"""Server-side key backups (spec v1.19 client-server "Server-side key backups").

The backed-up session data is opaque; the server only keeps, per session,
the best copy it was given: a verified key beats an unverified one, then a
lower ``first_message_index``, then a lower ``forwarded_count``.
"""

from __future__ import annotations

from homeserver.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.storage.key_backup import BackupVersion, KeyBackupStore, SessionKey


def _rank(key: SessionKey) -> tuple[bool, int, int]:
    return (not key["is_verified"], key["first_message_index"], key["forwarded_count"])


def is_better(old: SessionKey, new: SessionKey) -> bool:
    """Whether ``new`` replaces ``old`` in a backup."""
    return _rank(new) < _rank(old)


def _parse_version(version: str) -> int:
    """Versions are integers; any other string (``"1²"`` is no integer, nor a number past 64 bits) names no backup."""
    if not (version.isascii() and version.isdigit() and len(version) <= 18):
        raise not_found("Unknown backup version")
    return int(version)


def _version_body(found: BackupVersion, count: int) -> dict:
    return {"version": str(found.version), "algorithm": found.algorithm, "auth_data": found.auth_data,
            "count": count, "etag": str(found.etag)}


def _check_session_key(room_id: str, session_id: str, key) -> SessionKey:
    if not isinstance(key, dict):
        raise bad_json(f"Key for session {session_id} in room {room_id} must be an object")
    for field in ("first_message_index", "forwarded_count"):
        if not isinstance(key.get(field), int) or isinstance(key.get(field), bool) or key[field] < 0:
            raise bad_json(f"{field} must be a non-negative integer (session {session_id} in room {room_id})")
    if not isinstance(key.get("is_verified"), bool):
        raise invalid_param(f"is_verified must be a boolean (session {session_id} in room {room_id})")
    if not isinstance(key.get("session_data"), dict):
        raise bad_json(f"session_data must be an object (session {session_id} in room {room_id})")
    return key


def _check_version_info(body: dict) -> tuple[str, dict]:
    algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
    if not isinstance(algorithm, str) or not algorithm:
        raise bad_json("algorithm must be a string")
    if not isinstance(auth_data, dict):
        raise bad_json("auth_data must be an object")
    return algorithm, auth_data


class KeyBackupService:
    def __init__(self, *, store: KeyBackupStore):
        self._store = store

    # -- versions ----------------------------------------------------------------------
    async def create_version(self, user_id: str, body: dict) -> dict:
        algorithm, auth_data = _check_version_info(body)
        return {"version": str(await self._store.create_version(user_id, algorithm, auth_data))}

    async def get_version(self, user_id: str, version: str | None) -> dict:
        """GET /room_keys/version[/{version}]: the latest version when ``version`` is None."""
        found = await self._store.get_version(user_id, None if version is None else _parse_version(version))
        if found is None:
            raise not_found("No current backup version" if version is None else "Unknown backup version")
        return _version_body(*found)

    async def update_version(self, user_id: str, version: str, body: dict) -> dict:
        """PUT /room_keys/version/{version}: only auth_data changes; the algorithm must stay the same."""
        number = _parse_version(version)
        algorithm, auth_data = _check_version_info(body)
        if "version" in body and body["version"] != version:
            raise invalid_param("Version in body does not match")
        found = await self._store.get_version(user_id, number)
        if found is None:
            raise not_found("Unknown backup version")
        if found[0].algorithm != algorithm:
            raise invalid_param("Algorithm does not match")
        await self._store.update_auth_data(user_id, number, auth_data)
        return {}

    async def delete_version(self, user_id: str, version: str) -> dict:
        if not await self._store.delete_version(user_id, _parse_version(version)):
            raise not_found("Unknown backup version")
        return {}

    # -- keys --------------------------------------------------------------------------
    async def upload_keys(self, user_id: str, version: str, rooms) -> dict:
        """PUT /room_keys/keys[...]: merge into the current version; 403 for an older one."""
        number = _parse_version(version)
        if not isinstance(rooms, dict) or not all(
                isinstance(r, dict) and isinstance(r.get("sessions"), dict) for r in rooms.values()):
            raise bad_json("rooms must map room ids to {sessions: {...}}")
        keys = [(room_id, session_id, _check_session_key(room_id, session_id, key))
                for room_id, room in rooms.items() for session_id, key in room["sessions"].items()]
        outcome = await self._store.upload_keys(user_id, number, keys, is_better)
        if outcome.current != number:
            if not outcome.exists:
                raise not_found("Unknown backup version")
            raise MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version",
                              current_version=str(outcome.current))
        return {"etag": str(outcome.etag), "count": outcome.count}

    async def get_keys(self, user_id: str, version: str, room_id: str | None = None,
                       session_id: str | None = None) -> dict:
        """GET /room_keys/keys[...]: all rooms, one room (possibly empty), or one session (404 if absent)."""
        number = _parse_version(version)
        if await self._store.get_version(user_id, number) is None:
            raise not_found("Unknown backup version")
        found = await self._store.get_keys(user_id, number, room_id, session_id)
        if session_id is not None:
            key = found.get(room_id, {}).get(session_id)
            if key is None:
                raise not_found("No room_keys found")
            return key
        if room_id is not None:
            return {"sessions": found.get(room_id, {})}
        return {"rooms": {r: {"sessions": sessions} for r, sessions in found.items()}}

    async def delete_keys(self, user_id: str, version: str, room_id: str | None = None,
                          session_id: str | None = None) -> dict:
        result = await self._store.delete_keys(user_id, _parse_version(version), room_id, session_id)
        if result is None:
            raise not_found("Unknown backup version")
        return {"etag": str(result[0]), "count": result[1]}
