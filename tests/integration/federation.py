"""Real Hexagone processes federating over TLS, for the federation tests.

Each server is named ``localhost:<tls port>`` and serves federation on a TLS
listener whose certificate comes from a throwaway CA that every server trusts.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from federation.request_auth import sign_request
from homeserver.config import read_signing_key
from tests.integration.fedtls import CertificateAuthority
from tests.integration.harness import free_port


@dataclass
class FedServer:
    process: Any  # harness.ServerProcess
    name: str
    tls_port: int
    signing_key: Any
    ca_path: str

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.signing_key.version}"

    def https(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("localhost", self.tls_port, timeout=60,
                                           context=ssl.create_default_context(cafile=self.ca_path))
        try:
            payload = None if body is None else json.dumps(body).encode()
            all_headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=payload, headers={**all_headers, **(headers or {})})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, json.loads(data) if data else None

    def signed(self, method: str, path: str, *, origin: str, key, destination: str | None = None,
               content: Any = None) -> tuple[int, Any]:
        """A request from ``origin`` signed with ``key``, as another server would make it."""
        header = sign_request(key, origin, destination or self.name, method, path, content)
        return self.https(method, path, content, {"Authorization": header})


def start_fed_server(factory, ca: CertificateAuthority, **overrides) -> FedServer:
    """A Hexagone process named ``localhost:<tls port>`` with a TLS federation listener."""
    process = factory(start=False)
    tls_port = free_port(process.port)
    cert, key = ca.issue(f"hs{tls_port}")
    config = process.config
    config["server_name"] = f"localhost:{tls_port}"
    config["listeners"] = config["listeners"] + [{
        "port": tls_port, "tls": True, "type": "http", "x_forwarded": False, "bind_addresses": ["127.0.0.1"],
        "resources": [{"names": ["federation"], "compress": False}]}]
    config.update(tls_certificate_path=cert, tls_private_key_path=key, federation_custom_ca_list=[ca.cert_path],
                  ip_range_whitelist=["127.0.0.0/8"], trusted_key_servers=[], suppress_key_server_warning=True)
    config.update(overrides)
    with open(process.config_path, "w") as f:
        yaml.safe_dump(config, f)
    process.start()
    return FedServer(process, config["server_name"], tls_port,
                     read_signing_key(os.path.join(process.dir, "signing.key")), ca.cert_path)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> CertificateAuthority:
    return CertificateAuthority(str(tmp_path_factory.mktemp("ca")))


@pytest.fixture(scope="module")
def fed(homeserver_factory, ca):
    return lambda **overrides: start_fed_server(homeserver_factory, ca, **overrides)




@pytest.fixture(scope="module")
def home(fed) -> FedServer:
    """The Hexagone server under test (it publishes its room directory over federation)."""
    return fed(allow_public_rooms_over_federation=True)


@pytest.fixture(scope="module", params=["hexagone", "synapse"])
def peer(request, fed, ca, tmp_path_factory):
    """The other server: a second Hexagone, or a real Synapse."""
    if request.param == "hexagone":
        yield fed(allow_public_rooms_over_federation=True)
        return
    from tests.integration.synapse import SynapsePeer, SynapseProcess
    process = SynapseProcess(str(tmp_path_factory.mktemp("synapse")), ca).start()
    yield SynapsePeer(process)
    process.stop()


@pytest.fixture(params=["home_first", "peer_first"])
def pair(request, home, peer):
    """(home, peer) and (peer, home): each test runs in both directions."""
    return (home, peer) if request.param == "home_first" else (peer, home)
