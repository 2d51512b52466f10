"""E-mail end to end (spec v1.19 client-server "Adding Account Administrative Contact Information", e-mail
registration and password reset; Synapse's ``email`` section and e-mail pushers): real Hexagone processes
mailing through an SMTP server on 127.0.0.1 (aiosmtpd); the tests read the mails and follow their links."""

from __future__ import annotations

import contextlib
import os
import ssl
import time
import urllib.parse

import pytest

from tests.integration.fedtls import CertificateAuthority
from tests.integration.harness import PASSWORD, unique
from tests.integration.smtpserver import Mail, MailSink
from tests.integration.test_accounts import password_auth

NOTIF_DELAY_S = 2
SMTP_PASSWORD = "smtp-s3cret-never-logged"


@pytest.fixture(scope="module")
def sink():
    s = MailSink()
    yield s
    s.close()


def email_config(port: int, **extra) -> dict:
    return {"smtp_host": "127.0.0.1", "smtp_port": port, "notif_from": "Hexagone <noreply@example.org>",
            "app_name": "Hexagone", **extra}


def started(factory, email: dict, env: dict | None = None):
    """A server whose public_baseurl is its own address (the links it mails point at it)."""
    server = factory(start=False, email=email)
    server.reconfigure(public_baseurl=server.base_url + "/")
    with _environment(env or {}):
        return server.start()


@contextlib.contextmanager
def _environment(env: dict):
    """``env`` set while the server process starts (it inherits it), then restored."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def server(homeserver_factory, sink):
    return started(homeserver_factory, email_config(sink.port, enable_notifs=True,
                                                    notif_delay_before_mail=f"{NOTIF_DELAY_S}s",
                                                    client_base_url="https://client.example.org"))


def follow(server, link: str, method: str = "GET", body: bytes | None = None):
    """Follow a mailed link on the server (its path and query): (status, body)."""
    parts = urllib.parse.urlsplit(link)
    assert server.base_url + "/" == f"{parts.scheme}://{parts.netloc}/"
    status, _, raw = server.client().exchange(
        method, parts.path + "?" + parts.query, body,
        headers={"Content-Type": "application/x-www-form-urlencoded"} if body is not None else None)
    return status, raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def request_token(server, path: str, address: str, secret: str, attempt: int = 1, token: str | None = None):
    return server.request("POST", path, {"client_secret": secret, "email": address, "send_attempt": attempt},
                          token)


def validated_session(server, sink, path: str, address: str, token: str | None = None) -> dict:
    """requestToken, then the link of the mail followed: the creds of a validated session."""
    secret = unique("secret")
    before = len(sink.to(address))
    status, resp = request_token(server, path, address, secret, token=token)
    assert status == 200, resp
    mail = sink.wait_for(address, before + 1)[-1]
    status, page = follow(server, mail.links()[0])
    assert status == 200 and "validated" in page, page
    return {"sid": resp["sid"], "client_secret": secret}


def add_email(server, sink, user, address: str) -> None:
    creds = validated_session(server, sink, "/account/3pid/email/requestToken", address, user.token)
    status, challenge = user.request("POST", "/account/3pid/add", creds)
    assert status == 401 and challenge["flows"] == [{"stages": ["m.login.password"]}], challenge
    user.ok("POST", "/account/3pid/add", dict(creds, auth=password_auth(user, challenge["session"])))


def test_add_list_and_delete_an_address(server, sink):
    alice, bob = server.register(), server.register()
    address = unique("alice") + "@example.org"
    secret = unique("secret")
    status, first = request_token(server, "/account/3pid/email/requestToken", address.upper(), secret)
    assert status == 200 and first["sid"]
    mail = sink.wait_for(address)[0]
    assert mail.subject == "[test.local] Validate your email" and "Hexagone" in mail.message["From"]
    # the same attempt again: the same session, no second mail
    assert request_token(server, "/account/3pid/email/requestToken", address, secret)[1]["sid"] == first["sid"]
    creds = {"sid": first["sid"], "client_secret": secret}
    # not validated yet: nothing can be added
    status, challenge = alice.request("POST", "/account/3pid/add", creds)
    status, err = alice.request("POST", "/account/3pid/add",
                                dict(creds, auth=password_auth(alice, challenge["session"])))
    assert (status, err["errcode"]) == (400, "M_THREEPID_AUTH_FAILED")
    link = mail.links()[0]
    assert "/_matrix/client/unstable/add_threepid/email/submit_token?" in link
    assert follow(server, link.replace("token=", "token=x"))[0] == 400  # a wrong token validates nothing
    assert follow(server, link)[0] == 200
    status, challenge = alice.request("POST", "/account/3pid/add", creds)
    alice.ok("POST", "/account/3pid/add", dict(creds, auth=password_auth(alice, challenge["session"])))
    # spec "Identifier types": m.id.thirdparty logs in by the address
    for identifier in ({"identifier": {"type": "m.id.thirdparty", "medium": "email", "address": address.upper()}},
                       {"medium": "email", "address": address}):
        status, resp = server.request("POST", "/login",
                                      {"type": "m.login.password", "password": PASSWORD, **identifier})
        assert status == 200 and resp["user_id"] == alice.user_id, resp
    status, err = server.request("POST", "/login", {"type": "m.login.password", "password": PASSWORD, "identifier": {
        "type": "m.id.thirdparty", "medium": "email", "address": "nobody@example.org"}})
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    threepids = alice.ok("GET", "/account/3pid")["threepids"]
    assert [(t["medium"], t["address"]) for t in threepids] == [("email", address)]
    assert threepids[0]["validated_at"] <= threepids[0]["added_at"]
    assert len(sink.to(address)) == 1
    # the address is taken now
    status, err = request_token(server, "/account/3pid/email/requestToken", address, unique("s"), token=bob.token)
    assert (status, err["errcode"]) == (400, "M_THREEPID_IN_USE")
    status, err = request_token(server, "/register/email/requestToken", address, unique("s"))
    assert (status, err["errcode"]) == (400, "M_THREEPID_IN_USE")
    # no identity server is configured: nothing to bind to, nothing to unbind from
    status, err = alice.request("POST", "/account/3pid/bind", dict(creds, id_server="id.example.org",
                                                                    id_access_token="x"))
    assert (status, err["errcode"]) == (400, "M_SERVER_NOT_TRUSTED")
    assert alice.ok("POST", "/account/3pid/unbind", {"medium": "email", "address": address}) == {
        "id_server_unbind_result": "no-support"}
    alice.ok("POST", "/account/3pid/delete", {"medium": "email", "address": address})
    assert alice.ok("GET", "/account/3pid")["threepids"] == []


def test_bad_requests_and_phone_numbers(server):
    status, err = server.request("POST", "/account/3pid/msisdn/requestToken",
                                 {"client_secret": "abc", "country": "FR", "phone_number": "0600000000",
                                  "send_attempt": 1})
    assert (status, err["errcode"]) == (400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    for body, errcode in [({"email": "x@example.org", "send_attempt": 1}, "M_INVALID_PARAM"),
                          ({"client_secret": "a b", "email": "x@example.org", "send_attempt": 1}, "M_INVALID_PARAM"),
                          ({"client_secret": "abc", "email": "not-an-address", "send_attempt": 1}, "M_INVALID_PARAM"),
                          ({"client_secret": "abc", "email": "x@example.org"}, "M_MISSING_PARAM")]:
        status, err = server.request("POST", "/register/email/requestToken", body)
        assert (status, err["errcode"]) == (400, errcode), body
    status, err = server.request("POST", "/account/password/email/requestToken",
                                 {"client_secret": "abc", "email": unique("nobody") + "@example.org",
                                  "send_attempt": 1})
    assert (status, err["errcode"]) == (400, "M_THREEPID_NOT_FOUND")


def test_register_with_an_email_address_gets_an_email_pusher(server, sink):
    localpart = unique("carol")
    status, challenge = server.request("POST", "/register", {"username": localpart, "password": PASSWORD})
    assert status == 401 and {"stages": ["m.login.email.identity"]} in challenge["flows"], challenge
    address = unique("carol") + "@example.org"
    creds = validated_session(server, sink, "/register/email/requestToken", address)
    assert "/_matrix/client/unstable/registration/email/submit_token?" in sink.to(address)[0].links()[0]
    # a client's next_link: the link redirects there once the address is validated
    other, secret = unique("carol") + "@example.org", unique("secret")
    status, resp = server.request("POST", "/register/email/requestToken", {
        "client_secret": secret, "email": other, "send_attempt": 1, "next_link": "https://client.example.org/done"})
    parts = urllib.parse.urlsplit(sink.wait_for(other)[0].links()[0])
    status, headers, _ = server.client().exchange("GET", parts.path + "?" + parts.query)
    assert (status, headers["Location"]) == (302, "https://client.example.org/done")
    status, resp = server.request("POST", "/register", {
        "username": localpart, "password": PASSWORD,
        "auth": {"type": "m.login.email.identity", "session": challenge["session"], "threepid_creds": creds}})
    assert status == 200, resp
    token = resp["access_token"]
    status, threepids = server.request("GET", "/account/3pid", token=token)
    assert [t["address"] for t in threepids["threepids"]] == [address]
    # notif_for_new_users (true by default) with enable_notifs: an e-mail pusher for the address
    status, pushers = server.request("GET", "/pushers", token=token)
    assert [(p["kind"], p["app_id"], p["pushkey"]) for p in pushers["pushers"]] == [("email", "m.email", address)]
    # the session is used up
    dave = unique("dave")
    status, again = server.request("POST", "/register", {"username": dave, "password": PASSWORD})
    status, err = server.request("POST", "/register", {
        "username": dave, "password": PASSWORD,
        "auth": {"type": "m.login.email.identity", "session": again["session"], "threepid_creds": creds}})
    assert status == 401 and err["errcode"] == "M_UNAUTHORIZED"


def test_password_reset_by_email_logs_out_every_device(server, sink):
    user = server.register()
    other_device = server.login(user.user_id)
    address = unique("forgetful") + "@example.org"
    add_email(server, sink, user, address)
    secret = unique("secret")
    status, resp = request_token(server, "/account/password/email/requestToken", address, secret)
    assert status == 200, resp
    creds = {"sid": resp["sid"], "client_secret": secret}
    mail = sink.wait_for(address, 2)[-1]
    assert mail.subject == "[test.local] Password reset"
    link = mail.links()[0]
    assert "/_synapse/client/password_reset/email/submit_token?" in link
    new_password = "a brand new password"
    reset = {"new_password": new_password, "auth": {"type": "m.login.email.identity", "threepid_creds": creds}}
    # the link's page only asks for a confirmation: until it is given, the session proves nothing
    status, page = follow(server, link)
    assert status == 200 and "<form" in page
    status, err = server.request("POST", "/account/password", reset)
    assert status == 401 and err["errcode"] == "M_UNAUTHORIZED", err
    query = urllib.parse.urlsplit(link).query
    status, page = follow(server, link.split("?")[0], "POST", query.encode())
    assert status == 200 and "validated" in page
    status, resp = server.request("POST", "/account/password", reset)
    assert status == 200, resp
    for device in (user, other_device):
        status, err = device.request("GET", "/account/whoami")
        assert (status, err["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert server.login(user.user_id, new_password).user_id == user.user_id
    status, err = server.request("POST", "/login", {"type": "m.login.password", "password": PASSWORD,
                                                    "identifier": {"type": "m.id.user", "user": user.user_id}})
    assert status == 403


def test_email_pusher_mails_unread_messages_after_the_delay_and_unsubscribes(server, sink):
    alice, bob = server.register(), server.register()
    address = unique("bob") + "@example.org"
    pusher = {"kind": "email", "app_id": "m.email", "pushkey": address, "app_display_name": "Email",
              "device_display_name": address, "lang": "en", "data": {"brand": "Agence"}}
    status, err = bob.request("POST", "/pushers/set", pusher)
    assert (status, err["errcode"]) == (400, "M_THREEPID_NOT_FOUND")  # not one of bob's addresses yet
    add_email(server, sink, bob, address)
    bob.ok("POST", "/pushers/set", pusher)
    room = alice.create_room(preset="private_chat", invite=[bob.user_id], name="Salle des cartes")
    bob.join(room)
    read = alice.send(room, "this one bob reads at once")
    bob.ok("POST", f"/rooms/{room}/receipt/m.read/{read}", {})
    sent_at = time.time()
    alice.send(room, "first unread message")
    alice.send(room, "second unread message")
    mail: Mail = sink.wait_for(address, 2)[-1]  # the first was the validation mail
    assert mail.received_at - sent_at >= NOTIF_DELAY_S - 0.1
    alice_name = alice.user_id[1:].split(":")[0]  # her display name
    assert mail.subject == f"[Agence] You have messages on Agence from {alice_name}..."  # Synapse's wording
    assert f"Salle des cartes\n  {alice_name}: first unread message" in mail.text
    assert "first unread message" in mail.text and "second unread message" in mail.text
    assert "bob reads at once" not in mail.text
    assert f"https://client.example.org/#/room/{room}" in mail.text
    unsubscribe = [link for link in mail.links() if "/_synapse/client/unsubscribe?" in link][0]
    assert mail.message["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert follow(server, unsubscribe.replace("access_token=", "access_token=0"))[0] == 400
    assert [p["kind"] for p in bob.ok("GET", "/pushers")["pushers"]] == ["email"]
    assert follow(server, unsubscribe, "POST", b"List-Unsubscribe=One-Click")[0] == 200  # RFC 8058
    assert bob.ok("GET", "/pushers")["pushers"] == []


@pytest.fixture(scope="module")
def tls_sink(tmp_path_factory):
    ca = CertificateAuthority(str(tmp_path_factory.mktemp("smtp-ca")))
    cert, key = ca.issue("smtp")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    s = MailSink(tls_context=context, logins={"hexagone": SMTP_PASSWORD})
    s.ca_path = ca.cert_path
    yield s
    s.close()


def test_starttls_and_login_when_transport_security_is_required(homeserver_factory, tls_sink, sink):
    # The SMTP server's certificate is checked against the trust store the process is given (SSL_CERT_FILE).
    secure = started(homeserver_factory, email_config(tls_sink.port, require_transport_security=True,
                                                      smtp_user="hexagone", smtp_pass=SMTP_PASSWORD),
                     env={"SSL_CERT_FILE": tls_sink.ca_path})
    address = unique("secure") + "@example.org"
    status, resp = request_token(secure, "/register/email/requestToken", address, unique("secret"))
    assert status == 200, resp
    mail = tls_sink.wait_for(address)[0]
    assert mail.tls and mail.login == "hexagone" and tls_sink.failed_logins == 0
    # a server offering no STARTTLS gets no mail at all
    secure.stop()
    secure.reconfigure(email=email_config(sink.port, require_transport_security=True))
    with _environment({"SSL_CERT_FILE": tls_sink.ca_path}):
        secure.start()
    address, secret = unique("plain") + "@example.org", unique("secret")
    for _ in range(2):  # the same send_attempt again: tried again, as no mail went out
        status, err = request_token(secure, "/register/email/requestToken", address, secret)
        assert (status, err["errcode"]) == (500, "M_UNKNOWN")
    assert sink.to(address) == []
    assert secure.log(tail=100_000).count(f"Validation mail to {address} not sent") == 2
    assert SMTP_PASSWORD not in secure.log(tail=100_000)


def test_deactivation_frees_the_address(server, sink):
    user = server.register()
    address = unique("leaving") + "@example.org"
    add_email(server, sink, user, address)
    status, challenge = user.request("POST", "/account/deactivate", {})
    user.ok("POST", "/account/deactivate", {"auth": password_auth(user, challenge["session"])})
    status, resp = request_token(server, "/register/email/requestToken", address, unique("secret"))
    assert status == 200, resp


def test_required_email_and_validation_mails_rate_limited(homeserver_factory, sink):
    # Synapse's registrations_require_3pid and rc_3pid_validation (5 mails, then one per 5 min, per client IP)
    strict = homeserver_factory(start=False, throttled=True, email=email_config(sink.port),
                                registrations_require_3pid=["email"])
    strict.reconfigure(public_baseurl=strict.base_url + "/")
    strict.start()
    status, challenge = strict.request("POST", "/register", {"username": unique("eve"), "password": PASSWORD,
                                                             "auth": {"type": "m.login.dummy"}})
    assert status == 401 and challenge["flows"] == [{"stages": ["m.login.email.identity"]}], challenge
    statuses = [request_token(strict, "/register/email/requestToken", unique("eve") + "@example.org",
                              unique("secret"))[0] for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_smtp_server_without_esmtp(homeserver_factory):
    """An SMTP server that refuses EHLO (RFC 821 only, as SyTest's) is greeted with HELO and gets the mail."""
    old_sink = MailSink(esmtp=False)
    try:
        plain = started(homeserver_factory, email_config(old_sink.port, enable_tls=False))
        address = unique("helo") + "@example.org"
        status, resp = request_token(plain, "/register/email/requestToken", address, unique("secret"))
        assert status == 200, resp
        mail = old_sink.wait_for(address)[0]
        assert mail.links() and not mail.tls
    finally:
        old_sink.close()
