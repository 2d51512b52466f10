"""The pure parts of third-party invites and identity servers: the allow-list of identity servers
(``trusted_third_party_id_servers``), the v2 lookup hash, and which key of an ``m.room.third_party_invite``
signed a proof."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from homeserver.events.auth_rules import third_party_public_keys, third_party_signing_key
from homeserver.services.identity import is_trusted, lookup_hash, trusted_entries


def test_allow_list_entries():
    entries = trusted_entries(["id.example.org", "127.0.0.1:8090", "[::1]:9"], "https://ignored.example")
    assert entries == [("id.example.org", None), ("127.0.0.1", 8090), ("[::1]", 9)]
    assert trusted_entries(None, "https://id.example.org:8443/") == [("id.example.org", 8443)]
    assert trusted_entries(None, "id.example.org") == [("id.example.org", None)]
    assert trusted_entries(None, None) == [] and trusted_entries([], "https://id.example.org") == []
    with pytest.raises(ValueError):
        trusted_entries(None, "https://bad name/")


@pytest.mark.parametrize("name,trusted", [
    ("id.example.org", True), ("id.example.org:443", True), ("ID.Example.org", True),
    ("127.0.0.1:8090", True), ("127.0.0.1:8091", False), ("127.0.0.1", False), ("[::1]:9", True),
    ("evil.example", False), ("id.example.org.evil.example", False), ("id.example.org/x", False),
    ("id.example.org@evil", False), ("", False), (None, False), (8090, False),
])
def test_is_trusted(name, trusted):
    entries = trusted_entries(["id.example.org", "127.0.0.1:8090", "[::1]:9"], None)
    assert is_trusted(entries, name) is trusted


def test_lookup_hash_is_the_specs_example():
    """Identity service API "Client behaviour" of v2 lookups: sha256 of "alice@example.com email matrixrocks"."""
    assert lookup_hash("email", "alice@example.com", "matrixrocks") == "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"


def _key(seed: int) -> SigningKey:
    key = SigningKey(bytes([seed]) * 32)
    key.version, key.alg = "0", "ed25519"
    return key


def test_which_key_signed():
    first, second, other = _key(1), _key(2), _key(3)
    content = {"display_name": "b", "public_key": encode_base64(bytes(first.verify_key)),
               "key_validity_url": "https://id.example.org/isvalid",
               "public_keys": [{"public_key": encode_base64(bytes(second.verify_key)),
                                "key_validity_url": "https://id.example.org/isvalid2"}, "junk", {"no": "key"}]}
    assert [k["public_key"] for k in third_party_public_keys(content)] == [
        encode_base64(bytes(first.verify_key)), encode_base64(bytes(second.verify_key))]
    by_first = sign_json({"mxid": "@b:x", "token": "t"}, "id.example.org", first)
    by_second = sign_json({"mxid": "@b:x", "token": "t"}, "id.example.org", second)
    assert third_party_signing_key(by_first, content)["key_validity_url"] == "https://id.example.org/isvalid"
    assert third_party_signing_key(by_second, content)["key_validity_url"] == "https://id.example.org/isvalid2"
    assert third_party_signing_key(sign_json({"mxid": "@b:x", "token": "t"}, "id", other), content) is None
    tampered = dict(by_first, token="u")
    assert third_party_signing_key(tampered, content) is None
    assert third_party_signing_key({"mxid": "@b:x", "token": "t"}, content) is None
    assert third_party_signing_key(by_first, {"public_keys": "nope"}) is None
