"""Fixtures for the fuzz tests: the integration fixtures (real server processes, their logs on
failure), and two federating Hexagones with a room on one that a user of the other joined."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.conftest import (homeserver, homeserver_factory,  # noqa: F401 (fixtures)
                                        pytest_runtest_makereport, pytest_sessionfinish)
from tests.integration.federation import FedServer, ca, fed  # noqa: F401 (fixtures)
from tests.integration.harness import User, unique


@dataclass
class FederatedRoom:
    home: FedServer  # the server under test
    peer: FedServer  # the server whose key signs the fuzzer's requests
    owner: User  # on home, created the room
    guest: User  # on peer, joined it
    room_id: str
    event_id: str  # a message of owner's

    def signed(self, method: str, path: str, content: Any = None) -> tuple[int, Any]:
        return self.home.signed(method, path, origin=self.peer.name, key=self.peer.signing_key, content=content)


@pytest.fixture(scope="module")
def federated_room(fed) -> FederatedRoom:
    home, peer = fed(allow_public_rooms_over_federation=True), fed()
    owner, guest = home.process.register(), peer.process.register()
    alias_name = unique("fuzz")
    room_id = owner.create_room(preset="public_chat", visibility="public", room_alias_name=alias_name)
    assert guest.join(f"#{alias_name}:{home.name}") == room_id
    return FederatedRoom(home, peer, owner, guest, room_id, owner.send(room_id, "fuzz me"))
