"""Single sign-on through CAS, end to end (spec v1.19 client-server "Login": ``m.login.sso``,
``GET /login/sso/redirect[/{idpId}]``, ``m.login.token``; the ``m.login.sso`` UIA stage and its fallback page;
Synapse's ``cas_config`` and ``sso`` sections): a real server process, a CAS server stand-in on 127.0.0.1 (its
/login sends the browser back with a ticket, its /proxyValidate answers CAS XML), every hop over real HTTP with
redirects followed by hand, as a browser would."""

from __future__ import annotations

import html
import http.client
import re
import ssl
import threading
import urllib.parse
from http.server import ThreadingHTTPServer

import pytest

from tests.integration.fedtls import CertificateAuthority
from tests.integration.harness import SERVER_NAME, StandInHandler, unique

WHITELISTED = "https://trusted.example/app/"


class CasServer:
    """The stand-in: ``next_user`` is who logs in at /login next; tickets are single-use and bound to the
    service they were issued for, as a real CAS server's."""

    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.next_user: tuple[str, dict[str, list[str]]] = ("nobody", {})
        self.tickets: dict[str, tuple[str, str, dict]] = {}
        self.validations: list[tuple[str, dict]] = []   # (path, query) of each validation request
        self._lock = threading.Lock()
        owner = self

        class Handler(StandInHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/cas/login":
                    owner_ticket = owner.issue(query["service"])
                    self.send_response(302)
                    self.send_header("Location", query["service"] + "&ticket=" + owner_ticket)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif url.path in ("/cas/proxyValidate", "/cas/p3/proxyValidate"):
                    self.answer(200, owner.validate(url.path, query), "text/xml")
                else:
                    self.answer(404, b"not found", "text/plain")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls_context is not None:
            self._server.socket = tls_context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.base_url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def issue(self, service: str) -> str:
        ticket = unique("ST-")
        with self._lock:
            self.tickets[ticket] = (service, *self.next_user)
        return ticket

    def validate(self, path: str, query: dict) -> bytes:
        with self._lock:
            self.validations.append((path, query))
            issued = self.tickets.pop(query.get("ticket", ""), None)
        if issued is None or issued[0] != query.get("service"):
            return (b"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'><cas:authenticationFailure "
                    b"code='INVALID_TICKET'>Ticket not recognized</cas:authenticationFailure></cas:serviceResponse>")
        _, user, attributes = issued
        attrs = "".join(f"<cas:{name}>{html.escape(value)}</cas:{name}>"
                        for name, values in attributes.items() for value in values)
        return (f"<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'><cas:authenticationSuccess>"
                f"<cas:user>{html.escape(user)}</cas:user><cas:attributes>{attrs}</cas:attributes>"
                f"</cas:authenticationSuccess></cas:serviceResponse>").encode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, http.client.HTTPMessage, str]:
    """One GET, redirects not followed: (status, headers, body)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=30, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def sign_on(server, cas: CasServer, user: str, attributes: dict, redirect_url: str = WHITELISTED,
            cas_context: ssl.SSLContext | None = None) -> tuple[int, http.client.HTTPMessage, str]:
    """A browser's trip: /login/sso/redirect, the CAS server's /login (as ``user``), then our ticket URL;
    the ticket URL's answer."""
    cas.next_user = (user, attributes)
    status, headers, _ = get(server.base_url + "/_matrix/client/v3/login/sso/redirect?"
                             + urllib.parse.urlencode({"redirectUrl": redirect_url}))
    assert status == 302, status
    status, headers, _ = get(headers["Location"], cas_context)
    assert status == 302, status
    return get(headers["Location"])


def login_token_of(url: str) -> str:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["loginToken"]


@pytest.fixture(scope="module")
def cas():
    server = CasServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(homeserver_factory, cas):
    hs = homeserver_factory(start=False, sso={"client_whitelist": [WHITELISTED]},
                            cas_config={"enabled": True, "server_url": cas.base_url + "/cas",
                                        "displayname_attribute": "displayName",
                                        "required_attributes": {"group": "staff"}, "idp_name": "Corporate SSO",
                                        "idp_brand": "cas"})
    hs.reconfigure(public_baseurl=hs.base_url + "/")
    return hs.start()


STAFF = {"group": ["staff"], "displayName": ["Alice Liddell"]}


def test_login_advertises_sso_with_its_identity_provider_and_login_tokens(server):
    status, body = server.request("GET", "/login")
    assert status == 200
    flows = {f["type"]: f for f in body["flows"]}
    assert flows["m.login.sso"]["identity_providers"] == [{"id": "cas", "name": "Corporate SSO", "brand": "cas"}]
    assert "m.login.token" in flows and "m.login.cas" in flows and "m.login.password" in flows


def test_redirect_sends_the_browser_to_the_cas_server_with_our_service_url(server, cas):
    client_url = "https://client.example/?p=1"
    service = server.base_url + "/_matrix/client/r0/login/cas/ticket?" + urllib.parse.urlencode(
        {"redirectUrl": client_url})
    expected = cas.base_url + "/cas/login?" + urllib.parse.urlencode({"service": service})
    for path in ("/login/sso/redirect", "/login/sso/redirect/cas", "/login/cas/redirect"):
        status, headers, _ = server.client().exchange("GET", path, params={"redirectUrl": client_url})
        assert (status, headers["Location"]) == (302, expected), path


def test_redirect_errors(server):
    status, body = server.request("GET", "/login/sso/redirect")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = server.request("GET", "/login/sso/redirect/saml", params={"redirectUrl": WHITELISTED})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    for bad in ("javascript:alert(1)", "/relative/path", "https://x.example/\r\nSet-Cookie: a=b", "data:text/html,x"):
        status, body = server.request("GET", "/login/sso/redirect", params={"redirectUrl": bad})
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), bad


def test_first_sign_on_registers_the_user_then_the_login_token_logs_in_once(server, cas):
    name = unique("alice")
    status, headers, _ = sign_on(server, cas, name.upper(), STAFF)
    assert status == 302
    location = headers["Location"]
    assert location.startswith(WHITELISTED + "?loginToken=")
    path, query = cas.validations[-1]
    assert path == "/cas/proxyValidate"
    assert query["service"] == (server.base_url + "/_matrix/client/r0/login/cas/ticket?"
                                + urllib.parse.urlencode({"redirectUrl": WHITELISTED}))
    token = login_token_of(location)
    status, body = server.request("POST", "/login", {"type": "m.login.token", "token": token})
    assert status == 200, body
    user_id = f"@{name}:{SERVER_NAME}"
    assert body["user_id"] == user_id and body["access_token"]
    assert server.request("GET", f"/profile/{user_id}/displayname")[1] == {"displayname": "Alice Liddell"}
    status, body = server.request("POST", "/login", {"type": "m.login.token", "token": token})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")   # single use
    # The next sign-on of the same CAS user (whatever its case) is the same Matrix user.
    status, headers, _ = sign_on(server, cas, name.upper(), STAFF)
    status, body = server.request("POST", "/login", {"type": "m.login.token", "token": login_token_of(
        headers["Location"])})
    assert (status, body["user_id"]) == (200, user_id)


def test_a_client_not_whitelisted_gets_a_confirmation_page(server, cas):
    status, headers, page = sign_on(server, cas, unique("carol"), STAFF, "https://other.example/?p=x")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Location" not in headers
    assert "other.example" in page
    link = html.unescape(re.search(r'href="([^"]+)"', page).group(1))
    assert link.startswith("https://other.example/?p=x&loginToken=")
    status, body = server.request("POST", "/login", {"type": "m.login.token", "token": login_token_of(link)})
    assert status == 200, body


def test_existing_account_of_the_same_name_is_the_cas_users(server, cas):
    bob = server.register(unique("bob"))
    status, headers, _ = sign_on(server, cas, bob.user_id[1:].split(":")[0].upper(), STAFF)
    status, body = server.request("POST", "/login", {"type": "m.login.token", "token": login_token_of(
        headers["Location"])})
    assert (status, body["user_id"]) == (200, bob.user_id)


def test_a_bad_ticket_is_refused_with_a_page_and_no_token(server, cas):
    url = (server.base_url + "/_matrix/client/r0/login/cas/ticket?"
           + urllib.parse.urlencode({"redirectUrl": WHITELISTED, "ticket": "ST-forged"}))
    status, headers, page = get(url)
    assert status == 401 and headers["Content-Type"].startswith("text/html")
    assert "loginToken" not in page and "Location" not in headers
    status, _, _ = get(server.base_url + "/_matrix/client/r0/login/cas/ticket?ticket=ST-x")
    assert status == 400   # neither redirectUrl nor session


def test_a_missing_required_attribute_refuses_the_login_and_registers_no_one(server, cas):
    name = unique("dave")
    status, headers, page = sign_on(server, cas, name, {"group": ["guests"], "displayName": ["Dave"]})
    assert status == 400 and "not authorised" in page and "Location" not in headers
    status, _ = server.request("GET", f"/profile/@{name}:{SERVER_NAME}")
    assert status == 404


def test_uia_with_sso_through_the_fallback_page(server, cas):
    name = unique("erin")
    status, headers, _ = sign_on(server, cas, name, STAFF)
    token = login_token_of(headers["Location"])
    login = server.request("POST", "/login", {"type": "m.login.token", "token": token, "device_id": "OLD"})[1]
    access = login["access_token"]
    status, body = server.request("POST", "/delete_devices", {"devices": ["OLD"]}, access)
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.sso"]}]   # signed on only: no password to offer
    session = body["session"]
    status, _, page = get(server.base_url + "/_matrix/client/v3/auth/m.login.sso/fallback/web?session=" + session)
    assert status == 200
    link = html.unescape(re.search(r'href="([^"]+)"', page).group(1))
    assert link.startswith(cas.base_url + "/cas/login?")
    cas.next_user = (name, STAFF)
    status, headers, _ = get(link)
    status, _, page = get(headers["Location"])
    assert status == 200 and "successful" in page
    status, body = server.request("POST", "/delete_devices", {"devices": ["OLD"], "auth": {"session": session}},
                                  access)
    assert status == 200, body


def test_uia_with_sso_as_another_user_is_forbidden(server, cas):
    name = unique("frank")
    status, headers, _ = sign_on(server, cas, name, STAFF)
    access = server.request("POST", "/login", {"type": "m.login.token", "token": login_token_of(
        headers["Location"])})[1]["access_token"]
    status, body = server.request("POST", "/account/deactivate", {}, access)
    session = body["session"]
    cas.next_user = ("someone-else", STAFF)
    service = server.base_url + "/_matrix/client/r0/login/cas/ticket?session=" + session
    ticket = cas.issue(service)
    status, _, page = get(service + "&ticket=" + ticket)
    assert status == 200 and "another user" in page
    status, body = server.request("POST", "/account/deactivate", {"auth": {"session": session}}, access)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert server.request("GET", "/account/whoami", None, access)[0] == 200


def test_a_post_of_the_sso_stage_does_not_complete_it(server, cas):
    name = unique("gina")
    status, headers, _ = sign_on(server, cas, name, STAFF)
    access = server.request("POST", "/login", {"type": "m.login.token", "token": login_token_of(
        headers["Location"])})[1]["access_token"]
    status, body = server.request("POST", "/account/deactivate", {}, access)
    status, body = server.request("POST", "/account/deactivate",
                                  {"auth": {"type": "m.login.sso", "session": body["session"]}}, access)
    assert status == 401 and body["completed"] == []


def test_cas_over_https_trusting_the_configured_ca(homeserver_factory, tmp_path_factory):
    """https to the CAS server is checked against federation_custom_ca_list; an unknown CA is refused."""
    ca = CertificateAuthority(str(tmp_path_factory.mktemp("cas-ca")))
    cert, key = ca.issue("cas")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=ca.cert_path)
    cas = CasServer(context)
    other_ca = CertificateAuthority(str(tmp_path_factory.mktemp("other-ca")))
    try:
        for trusted, expected in ((ca.cert_path, 302), (other_ca.cert_path, 401)):
            hs = homeserver_factory(start=False, sso={"client_whitelist": [WHITELISTED]},
                                    federation_custom_ca_list=[trusted],
                                    cas_config={"server_url": cas.base_url + "/cas", "protocol_version": 3})
            hs.reconfigure(public_baseurl=hs.base_url + "/")
            hs.start()
            validations = len(cas.validations)
            status, _, _ = sign_on(hs, cas, unique("tls"), {}, cas_context=client_context)
            assert status == expected
            if expected == 302:   # protocol_version 3: validated at /p3/proxyValidate
                assert [v[0] for v in cas.validations[validations:]] == ["/cas/p3/proxyValidate"]
            else:                 # the TLS handshake failed: the CAS server never heard of the ticket
                assert len(cas.validations) == validations
            hs.stop()
    finally:
        cas.close()
