"""The pure parts of single sign-on through CAS: the CAS protocol's service response, Synapse's mapping of
usernames to localparts, the client's redirectUrl, the cas_config checks, and the CAS client's one origin."""

from __future__ import annotations

import pytest

from federation.origin_client import OnlyOrigin, OriginUnreachable
from federation.tls import ClientTlsPolicy
from homeserver.config import ConfigError, parse_config
from homeserver.errors import MatrixError
from homeserver.services.cas import CasError, missing_requirement, parse_cas_response, username_to_localpart
from homeserver.services.sso import check_redirect_url, display_url, with_login_token

SUCCESS = b"""<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'>
  <cas:authenticationSuccess>
    <cas:user>Alice</cas:user>
    <cas:attributes><cas:group>staff</cas:group><cas:group>admins</cas:group><cas:mail>a@x</cas:mail>
    </cas:attributes>
  </cas:authenticationSuccess>
</cas:serviceResponse>"""


def test_a_success_names_the_user_and_every_value_of_each_attribute():
    response = parse_cas_response(SUCCESS)
    assert response.username == "Alice"
    assert response.attributes == {"group": ["staff", "admins"], "mail": ["a@x"]}


@pytest.mark.parametrize("body, error", [
    (b"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'><cas:authenticationFailure code='INVALID_TICKET'>"
     b"no</cas:authenticationFailure></cas:serviceResponse>", "unsuccessful_response"),
    (b"<other/>", "missing_service_response"),
    (b"not xml at all", "invalid_response"),
    (b"<cas:serviceResponse xmlns:cas='x'><cas:authenticationSuccess><cas:attributes/></cas:authenticationSuccess>"
     b"</cas:serviceResponse>", "no_user"),
    (b"<!DOCTYPE r [<!ENTITY a 'aaaa'>]><cas:serviceResponse xmlns:cas='x'><cas:authenticationSuccess><cas:user>&a;"
     b"</cas:user></cas:authenticationSuccess></cas:serviceResponse>", "invalid_response"),
])
def test_anything_but_a_success_is_refused(body, error):
    with pytest.raises(CasError) as e:
        parse_cas_response(body)
    assert e.value.error == error


def test_required_attributes_as_synapse():
    attributes = {"group": ["staff", "admins"], "mail": ["a@x"]}
    assert missing_requirement(attributes, {"group": "admins", "mail": None}) is None
    assert missing_requirement(attributes, {"group": "guests"}) == "group"
    assert missing_requirement(attributes, {"phone": None}) == "phone"


@pytest.mark.parametrize("username, localpart", [
    ("cas_user!", "cas_user=21"), ("Alice", "alice"), ("_hidden", "=5fhidden"), ("a=b", "a=3db"),
    ("jean.dupont+x/y-z", "jean.dupont+x/y-z"), ("zoé", "zo=c3=a9"), ("a b", "a=20b"),
])
def test_usernames_map_to_localparts_as_synapse(username, localpart):
    assert username_to_localpart(username) == localpart


def test_the_login_token_joins_the_clients_own_query():
    assert with_login_token("https://c.example/p?x=1&y=#frag", "syl_T") == \
        "https://c.example/p?x=1&y=&loginToken=syl_T#frag"
    assert with_login_token("io.element.app:/callback", "T") == "io.element.app:/callback?loginToken=T"
    assert display_url("https://c.example/p?x=1") == "c.example"
    assert display_url("myapp://cb/p?loginToken=secret") == "myapp://cb/p"


@pytest.mark.parametrize("url", ["https://app.example/", "io.element.app:/callback", "http://127.0.0.1:8080/x?a=b"])
def test_client_urls_accepted(url):
    assert check_redirect_url(url) == url


@pytest.mark.parametrize("url, errcode", [
    (None, "M_MISSING_PARAM"), ("", "M_MISSING_PARAM"), ("/relative", "M_INVALID_PARAM"),
    ("javascript:alert(1)", "M_INVALID_PARAM"), ("JavaScript:alert(1)", "M_INVALID_PARAM"),
    ("data:text/html,x", "M_INVALID_PARAM"), ("https://a.example/\r\nX: y", "M_INVALID_PARAM"),
    ("https://a.example/ x", "M_INVALID_PARAM"), ("https://a.example/" + "x" * 3000, "M_INVALID_PARAM"),
])
def test_client_urls_refused(url, errcode):
    with pytest.raises(MatrixError) as e:
        check_redirect_url(url)
    assert (e.value.status, e.value.errcode) == (400, errcode)


BASE = {"server_name": "example.org", "signing_key_path": "/dev/null", "listeners": [{"port": 8008}]}


def test_cas_config_as_synapse():
    assert parse_config(dict(BASE), "/tmp/h.yaml").cas_config_enabled is False
    assert parse_config(dict(BASE, cas_config={"enabled": False}), "/tmp/h.yaml").cas_config_enabled is False
    config = parse_config(dict(BASE, cas_config={"server_url": "https://cas.example/cas/"}), "/tmp/h.yaml")
    assert (config.cas_config_enabled, config.cas_config_server_url, config.cas_config_idp_name) == \
        (True, "https://cas.example/cas", "CAS")


@pytest.mark.parametrize("section, message", [
    ({"enabled": True}, "cas_config.server_url: is required"),
    ({"server_url": "ftp://cas.example"}, "cas_config.server_url: must be an http"),
    ({"server_url": "https://cas.example/?a=b"}, "cas_config.server_url: must be an http"),
    ({"server_url": "https://cas.example", "protocol_version": 4}, "cas_config.protocol_version: unsupported"),
    ({"server_url": "https://cas.example", "required_attributes": {"a": 1}},
     "cas_config.required_attributes.a: must map"),
    ({"server_url": "https://cas.example", "required_attributes": ["a"]}, "cas_config.required_attributes: must be"),
    ({"server_url": "https://cas.example", "numeric_ids_prefix": "u-"}, "cas_config.numeric_ids_prefix: only"),
    ({"server_url": "https://cas.example", "idp_icon": "https://x/icon.png"}, "cas_config.idp_icon: must be an mxc"),
    ({"server_url": "https://cas.example", "enable_registration": "yes"}, "cas_config.enable_registration: must"),
])
def test_cas_config_errors_name_their_key(section, message):
    with pytest.raises(ConfigError) as e:
        parse_config(dict(BASE, cas_config=section), "/tmp/h.yaml")
    assert str(e.value).startswith(message), str(e.value)


class _Uri:
    def __init__(self, scheme: bytes, host: bytes, port: int):
        self.scheme, self.host, self.port = scheme, host, port


def test_the_cas_client_connects_to_the_cas_server_only():
    factory = OnlyOrigin(None, ("https", "cas.example", 443), ClientTlsPolicy())
    assert factory.endpointForURI(_Uri(b"https", b"CAS.example", 443)) is not None
    for other in (_Uri(b"https", b"evil.example", 443), _Uri(b"http", b"cas.example", 443),
                  _Uri(b"https", b"cas.example", 8443)):
        with pytest.raises(OriginUnreachable):
            factory.endpointForURI(other)
