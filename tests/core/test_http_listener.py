"""The pure parts of a listener's policy: the client address behind trusted proxies, served prefixes."""

from __future__ import annotations

import ipaddress

from hypothesis import given, strategies as st

from homeserver.http.listener import LOOPBACK, forwarded_client, served_prefixes

TRUSTED = tuple(ipaddress.ip_network(n) for n in LOOPBACK + ("10.0.0.0/8",))
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
public_v4 = ipv4.filter(lambda a: not any(ipaddress.ip_address(a) in net for net in TRUSTED))


def test_untrusted_peer_header_is_ignored():
    assert forwarded_client("203.0.113.9", ["1.2.3.4"], TRUSTED) == "203.0.113.9"


def test_trusted_peer_gives_the_right_most_untrusted_address():
    assert forwarded_client("127.0.0.1", ["1.2.3.4"], TRUSTED) == "1.2.3.4"
    # the client wrote "6.6.6.6" itself; the proxy appended what it saw
    assert forwarded_client("127.0.0.1", ["6.6.6.6, 1.2.3.4"], TRUSTED) == "1.2.3.4"
    # a chain of trusted proxies is walked through; headers repeated are one list
    assert forwarded_client("::1", ["6.6.6.6", "1.2.3.4, 10.1.1.1"], TRUSTED) == "1.2.3.4"
    assert forwarded_client("::ffff:127.0.0.1", ["2001:db8::5"], TRUSTED) == "2001:db8::5"


def test_malformed_entries_stop_at_the_last_checked_address():
    assert forwarded_client("127.0.0.1", ["not-an-ip"], TRUSTED) == "127.0.0.1"
    assert forwarded_client("127.0.0.1", ["1.2.3.4, 10.0.0.7, junk"], TRUSTED) == "127.0.0.1"
    assert forwarded_client("127.0.0.1", ["junk, 10.0.0.7"], TRUSTED) == "10.0.0.7"
    assert forwarded_client("127.0.0.1", ["junk, 1.2.3.4"], TRUSTED) == "1.2.3.4"


@given(spoofed=st.lists(st.text(max_size=20).filter(lambda s: "," not in s), max_size=4), client=public_v4,
       proxies=st.lists(st.sampled_from(["127.0.0.1", "10.2.3.4", "::1"]), max_size=3))
def test_what_a_client_writes_never_wins_over_what_the_proxy_saw(spoofed, client, proxies):
    header = ", ".join(spoofed + [client] + proxies)
    assert forwarded_client("127.0.0.1", [header], TRUSTED) == client


@given(peer=public_v4, header=st.text(max_size=60))
def test_an_untrusted_peer_is_always_the_client(peer, header):
    assert forwarded_client(peer, [header], TRUSTED) == peer


def test_served_prefixes_follow_synapse_resource_names():
    client = served_prefixes(["client"])
    assert "/_matrix/client/" in client and "/_synapse/admin/" in client and "/health" in client
    assert not any(p.startswith(("/_matrix/federation", "/_matrix/key")) for p in client)
    assert served_prefixes(["openid"]) == ("/health", "/_matrix/federation/v1/openid/userinfo")
    assert "/_matrix/key/" in served_prefixes(["keys"])
