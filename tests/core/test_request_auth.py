"""Pure federation transport logic: X-Matrix headers, key responses, server discovery,
server ACLs and outbound IP ranges (no network, no reactor)."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest
from hypothesis import given, strategies as st
from signedjson.key import generate_signing_key, get_verify_key
from unpaddedbase64 import encode_base64

from federation.discovery import (WELL_KNOWN_DEFAULT_CACHE_MS, WELL_KNOWN_MAX_CACHE_MS, WELL_KNOWN_MIN_CACHE_MS,
                                  Route, ServerResolver, SrvRecord, WellKnownResponse, cache_period_ms, order_srv,
                                  parse_well_known)
from federation.keys import MAX_KEY_VALIDITY_MS, KeyLookupError, ServerKeys, keys_from_response
from federation.policy import IpRangeFilter, federation_allowed, server_acl_allows, split_server_name
from federation.request_auth import AuthHeaderError, XMatrix, parse_x_matrix, sign_request, verify_request
from homeserver.config import DEFAULT_IP_RANGE_BLACKLIST
from homeserver.events.signing import sign_json

ORIGIN, DEST = "origin.example", "dest.example:8448"
NOW = 1_700_000_000_000


def run(coro):
    """Drive a coroutine whose awaits all complete at once (our fakes never block)."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise AssertionError("coroutine blocked")


# -- X-Matrix ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def key():
    return generate_signing_key("k1")


def signed(key, method="PUT", uri="/_matrix/federation/v1/send/1", content=None, destination=DEST):
    return parse_x_matrix(sign_request(key, ORIGIN, destination, method, uri, content))


def test_header_round_trip(key):
    content = {"pdus": [], "edus": [{"edu_type": "m.typing", "content": {"typing": True}}]}
    header = sign_request(key, ORIGIN, DEST, "PUT", "/_matrix/federation/v1/send/1?a=b", content)
    assert header.startswith(f'X-Matrix origin="{ORIGIN}",destination="{DEST}",key="ed25519:k1",sig="')
    auth = parse_x_matrix(header)
    assert (auth.origin, auth.destination, auth.key_id) == (ORIGIN, DEST, "ed25519:k1")
    verify_request(auth, get_verify_key(key), "PUT", "/_matrix/federation/v1/send/1?a=b", DEST, content)


def test_signature_is_over_canonical_json_of_the_spec_fields(key):
    """Interoperability: the signature is the one signedjson/sign_json makes over {method, uri, origin,
    destination, content}."""
    obj = {"method": "GET", "uri": "/x", "origin": ORIGIN, "destination": DEST}
    expected = sign_json(obj, ORIGIN, key)["signatures"][ORIGIN]["ed25519:k1"]
    assert signed(key, "GET", "/x").signature == expected


@pytest.mark.parametrize("change", [
    {"method": "POST"}, {"uri": "/_matrix/federation/v1/send/2"}, {"content": {"pdus": [1]}},
    {"destination": "other.example"}, {"content": None},
])
def test_any_change_breaks_the_signature(key, change):
    auth = signed(key, content={"pdus": []})
    args = {"method": "PUT", "uri": "/_matrix/federation/v1/send/1", "destination": DEST,
            "content": {"pdus": []}, **change}
    with pytest.raises(AuthHeaderError):
        verify_request(auth, get_verify_key(key), args["method"], args["uri"], args["destination"], args["content"])


def test_one_byte_of_the_signature_changed_fails(key):
    auth = signed(key)
    sig = auth.signature
    forged = XMatrix(auth.origin, auth.destination, auth.key_id, sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1])
    with pytest.raises(AuthHeaderError):
        verify_request(forged, get_verify_key(key), "PUT", "/_matrix/federation/v1/send/1", DEST)


def test_another_key_fails(key):
    with pytest.raises(AuthHeaderError):
        verify_request(signed(key), get_verify_key(generate_signing_key("k2")), "PUT",
                       "/_matrix/federation/v1/send/1", DEST)


def test_parse_accepts_rfc7235_forms():
    auth = parse_x_matrix('X-Matrix  Origin=origin.example:8448 , KEY="ed25519:a\\"b", sig=abc,'
                          'destination="d.example",unknown="x"')
    assert auth == XMatrix("origin.example:8448", "d.example", 'ed25519:a"b', "abc")
    assert parse_x_matrix('x-matrix origin="o.example",key="ed25519:1",sig="s"').destination is None


@pytest.mark.parametrize("header", [
    None, "", "Bearer abc", "X-Matrix", 'X-Matrix origin="o.example",key="ed25519:1"',
    'X-Matrix origin="o.example",key="ed25519:1",sig="unterminated', 'X-Matrix origin="o.example" key="k" sig="s"',
    'X-Matrix origin="bad host!",key="ed25519:1",sig="s"', 'X-Matrix =x,origin="o.example",key="k",sig="s"',
    'X-Matrix origin="o.example",key="ed25519:1",sig=""',
])
def test_garbled_headers_are_refused(header):
    with pytest.raises(AuthHeaderError):
        parse_x_matrix(header)


def test_bad_base64_signature_fails(key):
    auth = XMatrix(ORIGIN, DEST, "ed25519:k1", "!!not base64!!")
    with pytest.raises(AuthHeaderError):
        verify_request(auth, get_verify_key(key), "GET", "/x", DEST)


# -- key responses ----------------------------------------------------------------------------

def key_response(signing_key, server="remote.example", valid_until=NOW + 3600_000, **extra):
    public = encode_base64(get_verify_key(signing_key).encode())
    body = {"server_name": server, "valid_until_ts": valid_until,
            "verify_keys": {f"ed25519:{signing_key.version}": {"key": public}}, **extra}
    return sign_json(body, server, signing_key)


def test_key_response_gives_keys_with_their_validity(key):
    old = generate_signing_key("old")
    response = key_response(key, old_verify_keys={
        "ed25519:old": {"key": encode_base64(get_verify_key(old).encode()), "expired_ts": NOW - 5}})
    keys = keys_from_response(response, "remote.example", NOW)
    assert keys["ed25519:k1"][0].encode() == get_verify_key(key).encode()
    assert keys["ed25519:k1"][1] == NOW + 3600_000
    assert keys["ed25519:old"][1] == NOW - 5


def test_key_validity_is_capped_at_seven_days(key):
    keys = keys_from_response(key_response(key, valid_until=NOW + 365 * 86400_000), "remote.example", NOW)
    assert keys["ed25519:k1"][1] == NOW + MAX_KEY_VALIDITY_MS


@pytest.mark.parametrize("mutate", [
    lambda r: r.update(server_name="evil.example"),
    lambda r: r.update(valid_until_ts="soon"),
    lambda r: r.update(signatures={}),
    lambda r: r["verify_keys"]["ed25519:k1"].update(key=encode_base64(b"x" * 32)),
    lambda r: r.update(verify_keys={"ed25519:k1": {"key": "%%%"}}),
    lambda r: r.update(valid_until_ts=r["valid_until_ts"] + 1),  # signed content changed
])
def test_invalid_key_responses_are_refused(key, mutate):
    response = json.loads(json.dumps(key_response(key)))
    mutate(response)
    with pytest.raises(KeyLookupError):
        keys_from_response(response, "remote.example", NOW)


def test_key_response_signed_only_by_another_server_is_refused(key):
    body = dict(key_response(key))
    body["signatures"] = sign_json({k: v for k, v in body.items() if k != "signatures"}, "notary.example",
                                   key)["signatures"]
    with pytest.raises(KeyLookupError):
        keys_from_response(body, "remote.example", NOW)


def test_own_key_response_is_self_signed_with_old_keys(key):
    old = generate_signing_key("old")
    own = ServerKeys("me.example", key, {"ed25519:old": (get_verify_key(old), NOW - 1)}, lambda: NOW)
    response = own.key_response()
    assert response["valid_until_ts"] > NOW
    assert response["old_verify_keys"]["ed25519:old"]["expired_ts"] == NOW - 1
    assert set(keys_from_response(response, "me.example", NOW)) == {"ed25519:k1", "ed25519:old"}
    assert own.lookup("ed25519:old")[1] == NOW - 1 and own.lookup("ed25519:nope") is None


# -- discovery --------------------------------------------------------------------------------

class FakeNet:
    """Well-known answers and SRV records by name; records what was asked."""

    def __init__(self, well_known=None, srv=None):
        self.well_known = well_known or {}
        self.srv = srv or {}
        self.asked: list[str] = []
        self.now = NOW

    async def fetch_well_known(self, host):
        self.asked.append(f"wk:{host}")
        answer = self.well_known.get(host)
        if answer is None:
            raise ConnectionRefusedError(host)
        return answer

    async def lookup_srv(self, name):
        self.asked.append(f"srv:{name}")
        return self.srv.get(name, [])

    def resolver(self):
        return ServerResolver(now_ms=lambda: self.now, fetch_well_known=self.fetch_well_known,
                              lookup_srv=self.lookup_srv, rng=random.Random(1))


def ok(body, **headers):
    return WellKnownResponse(200, headers, json.dumps(body).encode())


@pytest.mark.parametrize("server_name, route", [
    ("1.2.3.4", Route("1.2.3.4", "1.2.3.4", [("1.2.3.4", 8448)])),
    ("1.2.3.4:99", Route("1.2.3.4:99", "1.2.3.4", [("1.2.3.4", 99)])),
    ("[2001:db8::1]", Route("[2001:db8::1]", "2001:db8::1", [("2001:db8::1", 8448)])),
    ("[2001:db8::1]:99", Route("[2001:db8::1]:99", "2001:db8::1", [("2001:db8::1", 99)])),
    ("example.org:1234", Route("example.org:1234", "example.org", [("example.org", 1234)])),
])
def test_ip_literals_and_explicit_ports_skip_well_known_and_srv(server_name, route):
    net = FakeNet(well_known={"example.org": ok({"m.server": "elsewhere.org"})})
    assert run(net.resolver().resolve(server_name)) == route
    assert net.asked == []


def test_well_known_delegation_to_host_and_port():
    net = FakeNet(well_known={"example.org": ok({"m.server": "matrix.example.net:443"})})
    assert run(net.resolver().resolve("example.org")) == Route("matrix.example.net:443", "matrix.example.net",
                                                               [("matrix.example.net", 443)])
    assert net.asked == ["wk:example.org"]


def test_well_known_delegation_to_ip_literal():
    net = FakeNet(well_known={"example.org": ok({"m.server": "[2001:db8::5]"})})
    assert run(net.resolver().resolve("example.org")) == Route("[2001:db8::5]", "2001:db8::5",
                                                               [("2001:db8::5", 8448)])


def test_delegated_name_without_port_uses_srv_of_the_delegated_name():
    net = FakeNet(well_known={"example.org": ok({"m.server": "matrix.example.net"})},
                  srv={"_matrix-fed._tcp.matrix.example.net": [SrvRecord(10, 0, 8449, "fed.example.net")]})
    route = run(net.resolver().resolve("example.org"))
    assert route == Route("matrix.example.net", "matrix.example.net", [("fed.example.net", 8449)])
    assert net.asked == ["wk:example.org", "srv:_matrix-fed._tcp.matrix.example.net"]


def test_without_well_known_matrix_fed_srv_comes_first():
    net = FakeNet(srv={"_matrix-fed._tcp.example.org": [SrvRecord(10, 0, 1111, "a.example.org")],
                       "_matrix._tcp.example.org": [SrvRecord(10, 0, 2222, "b.example.org")]})
    assert run(net.resolver().resolve("example.org")) == Route("example.org", "example.org",
                                                               [("a.example.org", 1111)])
    assert net.asked == ["wk:example.org", "srv:_matrix-fed._tcp.example.org"]


def test_deprecated_matrix_srv_then_port_8448():
    net = FakeNet(srv={"_matrix._tcp.example.org": [SrvRecord(10, 0, 2222, "b.example.org")]})
    assert run(net.resolver().resolve("example.org")).targets == [("b.example.org", 2222)]
    assert run(net.resolver().resolve("other.org")) == Route("other.org", "other.org", [("other.org", 8448)])
    assert net.asked[-3:] == ["wk:other.org", "srv:_matrix-fed._tcp.other.org", "srv:_matrix._tcp.other.org"]


@pytest.mark.parametrize("answer", [
    WellKnownResponse(404, {}, b'{"m.server": "x.org"}'), WellKnownResponse(200, {}, b"not json"),
    ok({"m.server": 5}), ok({"other": "x.org"}), ok({"m.server": "bad host:99999"}), ok(["x.org"]),
    WellKnownResponse(200, {}, b'{"m.server": "x.org", "pad": "' + b"x" * 60000 + b'"}'),
])
def test_invalid_well_known_falls_back(answer):
    net = FakeNet(well_known={"example.org": answer})
    assert run(net.resolver().resolve("example.org")).host_header == "example.org"


def test_well_known_is_cached_per_headers_and_errors_back_off():
    net = FakeNet(well_known={"example.org": ok({"m.server": "m.example.org:443"}, **{"cache-control": "max-age=600"})})
    resolver = net.resolver()
    assert run(resolver.delegated_name("example.org")) == "m.example.org:443"
    net.well_known = {}
    net.now += 599_000
    assert run(resolver.delegated_name("example.org")) == "m.example.org:443"
    assert net.asked.count("wk:example.org") == 1
    net.now += 2_000  # expired, and the server is now down: an error, cached 5 minutes
    assert run(resolver.delegated_name("example.org")) == "example.org"
    net.now += 299_000
    run(resolver.delegated_name("example.org"))
    assert net.asked.count("wk:example.org") == 2
    net.now += 2_000  # second failure in a row: cached 10 minutes
    run(resolver.delegated_name("example.org"))
    net.now += 599_000
    run(resolver.delegated_name("example.org"))
    assert net.asked.count("wk:example.org") == 3


@pytest.mark.parametrize("headers, expected", [
    ({}, WELL_KNOWN_DEFAULT_CACHE_MS),
    ({"cache-control": "public, max-age=7200"}, 7200_000),
    ({"cache-control": "max-age=5"}, WELL_KNOWN_MIN_CACHE_MS),
    ({"cache-control": "max-age=999999999"}, WELL_KNOWN_MAX_CACHE_MS),
    ({"cache-control": "no-store"}, WELL_KNOWN_MIN_CACHE_MS),
    ({"expires": "Wed, 15 Nov 2023 01:13:20 GMT"}, 3 * 3600_000),  # NOW + 3 h
    ({"expires": "garbage"}, WELL_KNOWN_MIN_CACHE_MS),
])
def test_cache_period(headers, expected):
    assert cache_period_ms(headers, NOW) == expected


def test_srv_order_by_priority_then_weight():
    records = [SrvRecord(20, 0, 3, "c"), SrvRecord(10, 50, 1, "a"), SrvRecord(10, 50, 2, "b"),
               SrvRecord(5, 0, 9, ".")]
    orders = {tuple(order_srv(records, random.Random(seed))) for seed in range(20)}
    assert orders == {(("a", 1), ("b", 2), ("c", 3)), (("b", 2), ("a", 1), ("c", 3))}
    heavy = [SrvRecord(10, 0, 1, "a"), SrvRecord(10, 1000, 2, "b")]
    assert sum(order_srv(heavy, random.Random(seed))[0] == ("b", 2) for seed in range(20)) == 20
    assert order_srv([SrvRecord(0, 0, 0, ".")], random.Random(0)) == []


def test_parse_well_known():
    assert parse_well_known(b'{"m.server": "a.org:1"}') == "a.org:1"
    assert parse_well_known(b'\xff') is None


# -- policy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("acl, server, allowed", [
    (None, "anything.org", True),
    ({"allow": ["*"]}, "good.org", True),
    ({"allow": ["*"]}, "good.org:8448", True),
    ({}, "good.org", False),  # no allow list: nobody
    ({"allow": ["*"], "deny": ["evil.org"]}, "evil.org", False),
    ({"allow": ["*"], "deny": ["evil.org"]}, "evil.org:1234", False),  # port never considered
    ({"allow": ["*"], "deny": ["evil.org"]}, "sub.evil.org", True),
    ({"allow": ["*"], "deny": ["*.evil.org"]}, "sub.evil.org", False),
    ({"allow": ["*"], "deny": ["EVIL.org"]}, "evil.ORG", False),  # case-insensitive
    ({"allow": ["ser?er.org"]}, "server.org", True),
    ({"allow": ["ser?er.org"]}, "serveer.org", False),
    ({"allow": ["good.org"], "deny": ["good.org"]}, "good.org", False),  # deny wins
    ({"allow": ["*"]}, "1.2.3.4", True),
    ({"allow": ["*"], "allow_ip_literals": False}, "1.2.3.4:80", False),
    ({"allow": ["*"], "allow_ip_literals": False}, "[::1]", False),
    ({"allow": ["*"], "allow_ip_literals": "no"}, "1.2.3.4", True),  # not a boolean: default true
    ({"allow": "*"}, "good.org", False),  # not a list: empty
    ({"allow": [5, "good.org"]}, "good.org", True),
    ({"allow": ["*"], "deny": ["a.b"]}, "axb", True),  # dots are literal
    ({"allow": ["*"]}, "not a server name", False),
])
def test_server_acl(acl, server, allowed):
    assert server_acl_allows(acl, server) is allowed


def test_federation_allow_list():
    assert federation_allowed(None, "any.org")
    assert federation_allowed(["a.org", "b.org:8448"], "b.org:8448")
    assert not federation_allowed(["a.org"], "a.org:8448")
    assert not federation_allowed([], "a.org")


def test_ip_range_filter():
    f = IpRangeFilter(["127.0.0.0/8", "10.0.0.0/8", "::1/128", "fc00::/7"], ["127.0.0.5/32"])
    assert not f.allows("127.0.0.1") and f.allows("127.0.0.5")
    assert not f.allows("10.1.2.3") and f.allows("8.8.8.8")
    assert not f.allows("::1") and not f.allows("fd00::1") and f.allows("2001:db8::1")
    assert not f.allows("::ffff:10.0.0.1")  # IPv4-mapped addresses are checked as IPv4


def test_ip_range_filter_always_refuses_this_host():
    f = IpRangeFilter([])  # even with an empty ip_range_blacklist
    for ip in ("0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0", "2002::1"):
        assert not f.allows(ip), ip
    assert f.allows("8.8.8.8") and f.allows("2001:4860::1")
    assert IpRangeFilter([], ["0.0.0.0/8"]).allows("0.0.0.0")  # ip_range_whitelist still overrides


def test_default_blacklist_matches_synapse():
    f = IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST)
    for ip in ("100.64.0.1", "192.0.0.8", "198.18.0.1", "fe80::1", "fc00::1", "fd12::1", "::ffff:127.0.0.1",
               "::127.0.0.1", "2002:7f00:1::1", "2002:a00:1::", "::ffff:169.254.169.254"):
        assert not f.allows(ip), ip
    assert f.allows("1.1.1.1") and f.allows("2606:4700::1111") and f.allows("::ffff:1.1.1.1")


@given(st.integers(0, 2**32 - 1))
def test_an_ipv4_address_is_judged_alike_in_every_ipv6_form(n):
    f = IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST)
    v4 = ipaddress.IPv4Address(n)
    forms = [f"::ffff:{v4}", f"2002:{n >> 16:x}:{n & 0xFFFF:x}::1"]
    if n > 1:
        forms.append(str(ipaddress.IPv6Address(n)))
    assert all(f.allows(form) == f.allows(str(v4)) for form in forms), (v4, forms)


@pytest.mark.parametrize("name, parts", [
    ("example.org", ("example.org", None)), ("example.org:8448", ("example.org", 8448)),
    ("[::1]:80", ("[::1]", 80)), ("1.2.3.4", ("1.2.3.4", None)),
])
def test_split_server_name(name, parts):
    assert split_server_name(name) == parts


@pytest.mark.parametrize("name", ["", "a.org:", "a.org:0", "a.org:70000", "::1", "[::1", "[zz]", "a b.org",
                                  "[::1]x"])
def test_split_server_name_refuses(name):
    with pytest.raises(ValueError):
        split_server_name(name)


def test_notary_answers_with_the_responses_holding_the_keys_asked_for():
    """A notary query naming key ids gets the stored responses that hold them, not the server's other keys (as
    Synapse; SyTest reads ``server_keys[0]`` as the response for the key it asked for); none named: all."""
    from twisted.internet import defer

    from federation.keys import KeyRing
    from homeserver.storage.server_keys import StoredResponse

    now = 1_000_000_000
    origin_keys = {kid: generate_signing_key(kid) for kid in ("old", "new")}

    def response(kid: str) -> str:
        signed = sign_json({"server_name": "origin.example", "valid_until_ts": now + 86_400_000, "old_verify_keys": {},
                            "verify_keys": {f"ed25519:{kid}": {
                                "key": encode_base64(get_verify_key(origin_keys[kid]).encode())}}},
                           "origin.example", origin_keys[kid])
        return json.dumps(signed)

    class Store:
        async def get_responses(self, server_name):  # newest first
            return [StoredResponse(f"ed25519:{kid}", "origin.example", now, now + 86_400_000, response(kid))
                    for kid in ("new", "old")]

    ring = KeyRing(store=Store(), own=ServerKeys("notary.example", generate_signing_key("n"), {}, lambda: now),
                   client=None, trusted_key_servers=[], now_ms=lambda: now)

    def ask(key_ids):
        result = []
        defer.ensureDeferred(ring.query({"origin.example": (key_ids, 0)})).addCallback(result.append)
        return [list(r["verify_keys"]) for r in result[0]]

    assert ask(["ed25519:old"]) == [["ed25519:old"]]
    assert ask(["ed25519:new"]) == [["ed25519:new"]]
    assert ask([]) == [["ed25519:new"], ["ed25519:old"]]
