"""Listener ``resources`` and ``x_forwarded`` on a real process (Synapse's listener configuration).

A listener serves only the path prefixes of the resources it names (404 ``M_UNRECOGNIZED`` elsewhere,
``/health`` everywhere); behind a trusted proxy, the rate limiters see the address in X-Forwarded-For.
"""

from __future__ import annotations

import http.client

import pytest

from tests.integration.harness import HttpClient, free_port, unique

LISTENER = {"type": "http", "tls": False, "bind_addresses": ["127.0.0.1"]}


def _listener(port: int, *names: str, **extra) -> dict:
    return dict(LISTENER, port=port, resources=[{"names": list(names)}], **extra)


@pytest.fixture(scope="module")
def split_server(homeserver_factory):
    """Listeners: client only (the harness's port), federation only, openid only."""
    server = homeserver_factory(start=False)
    fed_port = free_port(server.port)
    openid_port = free_port(server.port, fed_port)
    server.config["listeners"] = [_listener(server.port, "client"), _listener(fed_port, "federation"),
                                  _listener(openid_port, "openid")]
    server._set_port(server.port)
    server.start()
    return server, HttpClient(f"http://127.0.0.1:{fed_port}"), HttpClient(f"http://127.0.0.1:{openid_port}")


def _health(port: int) -> tuple[int, bytes]:
    """GET /health (HttpClient would put the path under /_matrix/client/v3)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _unrecognized(answer) -> bool:
    status, body = answer
    return status == 404 and isinstance(body, dict) and body.get("errcode") == "M_UNRECOGNIZED"


def test_a_client_listener_serves_no_federation_or_keys(split_server):
    server, _fed, _openid = split_server
    client = server.client()
    assert client.request("GET", "/_matrix/client/versions")[0] == 200
    assert _health(server.port) == (200, b"OK")
    alice = server.register()
    assert alice.ok("GET", "/account/whoami")["user_id"] == alice.user_id
    for path in ("/_matrix/federation/v1/version", "/_matrix/key/v2/server",
                 "/_matrix/federation/v1/openid/userinfo?access_token=x"):
        assert _unrecognized(client.request("GET", path)), path
    assert _unrecognized(client.request("PUT", f"/_matrix/federation/v1/send/{unique()}", {"pdus": []}))


def test_a_federation_listener_serves_no_client_api(split_server):
    _server, fed, _openid = split_server
    assert fed.request("GET", "/_matrix/federation/v1/version")[0] == 200
    assert fed.request("GET", "/_matrix/key/v2/server")[0] == 200
    assert _health(fed.port) == (200, b"OK")
    for method, path in (("GET", "/_matrix/client/versions"), ("POST", "/_matrix/client/v3/login"),
                         ("GET", "/_synapse/admin/v1/register"), ("GET", "/.well-known/matrix/client")):
        assert _unrecognized(fed.request(method, path, {} if method == "POST" else None)), path


def test_an_openid_listener_serves_userinfo_only(split_server):
    _server, _fed, openid = split_server
    status, body = openid.request("GET", "/_matrix/federation/v1/openid/userinfo", params={"access_token": "x"})
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN", (status, body)
    assert _unrecognized(openid.request("GET", "/_matrix/federation/v1/version"))
    assert _unrecognized(openid.request("GET", "/_matrix/key/v2/server"))


def _failed_login(client: HttpClient, forwarded_for: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": unique("nobody")},
            "password": "wrong"}
    return client.request("POST", "/login", body, headers=headers)[0]


@pytest.fixture(scope="module")
def proxied_server(homeserver_factory):
    """Synapse's default login limits; one listener behind a trusted proxy (loopback), one whose
    trusted proxies do not include us."""
    server = homeserver_factory(start=False, throttled=True)
    other = free_port(server.port)
    server.config["listeners"] = [_listener(server.port, "client", x_forwarded=True),
                                  _listener(other, "client", x_forwarded=True, trusted_proxies=["10.0.0.0/8"])]
    server._set_port(server.port)
    server.start()
    burst = server.config.get("rc_login", {}).get("address", {}).get("burst_count", 5)
    return server, HttpClient(f"http://127.0.0.1:{other}"), int(burst)


def test_forwarded_clients_have_their_own_login_limits(proxied_server):
    server, _untrusted, burst = proxied_server
    client = server.client()
    # the proxy appends what it saw: what the client wrote on the left is not believed
    statuses = [_failed_login(client, f"{unique('spoof')}, 198.51.100.1") for _ in range(burst + 1)]
    assert statuses == [403] * burst + [429], statuses
    assert _failed_login(client, "198.51.100.2") == 403
    assert _failed_login(client, "127.0.0.1, 198.51.100.1") == 429


def test_an_untrusted_peer_cannot_choose_its_address(proxied_server):
    _server, untrusted, burst = proxied_server
    statuses = [_failed_login(untrusted, f"203.0.113.{i}") for i in range(burst + 1)]
    assert statuses == [403] * burst + [429], statuses
