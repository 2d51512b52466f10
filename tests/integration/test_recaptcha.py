"""The m.login.recaptcha stage of user-interactive auth, end to end (spec v1.19 client-server "Authentication
types", "Google ReCaptcha"; its "Fallback" page; Synapse's enable_registration_captcha, recaptcha_* keys): a
real server process and a siteverify stand-in on 127.0.0.1, every hop over real HTTP."""

from __future__ import annotations

import threading
import urllib.parse

import pytest

from tests.integration.harness import StandInHandler, http_stand_in, unique

PUBLIC_KEY, PRIVATE_KEY = "the-site-key", "the-secret-key"
GOOD = "an-answer-google-accepts"
SITEVERIFY_PATH = "/recaptcha/api/siteverify"


class Siteverify:
    """The stand-in's record of what it was asked: (path, form) of each request, under a lock."""

    def __init__(self):
        self.asked: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def forms(self) -> list[dict]:
        with self.lock:
            return [form for _, form in self.asked]


def siteverify_handler(record: Siteverify, redirect_to: str | None = None):
    class Handler(StandInHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            form = dict(urllib.parse.parse_qsl(body))
            form["content-type"] = self.headers.get("Content-Type")
            with record.lock:
                record.asked.append((self.path, form))
            if redirect_to is not None:   # a siteverify API that sends us elsewhere: not followed
                self.send_response(302)
                self.send_header("Location", redirect_to + SITEVERIFY_PATH)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            ok = self.path == SITEVERIFY_PATH and form.get("secret") == PRIVATE_KEY and form.get("response") == GOOD
            self.answer(200, b'{"success": true}' if ok else b'{"success": false, "error-codes": ["x"]}',
                        "application/json")
    return Handler


@pytest.fixture(scope="module")
def siteverify():
    record = Siteverify()
    with http_stand_in(siteverify_handler(record)) as url:
        record.url = url + SITEVERIFY_PATH
        yield record


@pytest.fixture(scope="module")
def captcha_server(homeserver_factory, siteverify):
    return homeserver_factory(enable_registration_captcha=True, recaptcha_public_key=PUBLIC_KEY,
                              recaptcha_private_key=PRIVATE_KEY, recaptcha_siteverify_api=siteverify.url)


@pytest.fixture(scope="module")
def key_only_server(homeserver_factory, siteverify):
    """A private key without enable_registration_captcha (SyTest's set-up)."""
    return homeserver_factory(recaptcha_public_key=PUBLIC_KEY, recaptcha_private_key=PRIVATE_KEY,
                              recaptcha_siteverify_api=siteverify.url)


def start_registration(server, name: str) -> dict:
    status, body = server.request("POST", "/register", {"username": name, "password": "pw-" + name})
    assert status == 401, body
    return body


def test_registration_flows_start_with_the_captcha_and_give_the_public_key(captcha_server):
    body = start_registration(captcha_server, unique("reg"))
    assert body["flows"] == [{"stages": ["m.login.recaptcha", "m.login.dummy"]}]
    assert body["params"] == {"m.login.recaptcha": {"public_key": PUBLIC_KEY}}
    assert body["completed"] == []


def test_a_refused_answer_leaves_the_stage_to_do_then_a_good_one_completes_it(captcha_server, siteverify):
    name = unique("reg")
    session = start_registration(captcha_server, name)["session"]
    # Registering without the captcha is not possible.
    status, body = captcha_server.request("POST", "/register", {"auth": {"type": "m.login.dummy",
                                                                         "session": session}})
    assert (status, body["completed"]) == (401, ["m.login.dummy"])
    asked = len(siteverify.forms())
    status, body = captcha_server.request("POST", "/register", {"auth": {
        "type": "m.login.recaptcha", "response": "a-wrong-answer", "session": session}})
    assert status == 401 and body["errcode"] == "M_UNAUTHORIZED", body
    assert "m.login.recaptcha" not in body["completed"]
    form = siteverify.forms()[asked]
    assert form == {"secret": PRIVATE_KEY, "response": "a-wrong-answer", "remoteip": "127.0.0.1",
                    "content-type": "application/x-www-form-urlencoded"}
    status, body = captcha_server.request("POST", "/register", {"auth": {"type": "m.login.recaptcha",
                                                                         "session": session}})
    assert (status, body["errcode"]) == (401, "M_CAPTCHA_NEEDED"), body   # no response: siteverify not asked
    assert len(siteverify.forms()) == asked + 1
    status, body = captcha_server.request("POST", "/register", {"auth": {
        "type": "m.login.recaptcha", "response": GOOD, "session": session}})
    assert status == 200, body   # m.login.dummy was done already: the flow is complete
    assert body["user_id"].startswith(f"@{name}:")


def test_a_private_key_alone_makes_the_stage_checkable_outside_the_flows(key_only_server, siteverify):
    """SyTest "Register with a recaptcha": not in any flow, yet checked and marked completed (as Synapse)."""
    body = start_registration(key_only_server, unique("reg"))
    assert body["flows"] == [{"stages": ["m.login.dummy"]}] and body["params"] == {}
    status, body = key_only_server.request("POST", "/register", {
        "username": unique("reg"), "password": "secret", "auth": {"type": "m.login.recaptcha", "response": GOOD}})
    assert (status, body["completed"]) == (401, ["m.login.recaptcha"]), body


def test_without_a_private_key_the_stage_is_not_offered(homeserver):
    status, body = homeserver.request("POST", "/register", {
        "username": unique("reg"), "password": "secret", "auth": {"type": "m.login.recaptcha", "response": GOOD}})
    assert status == 401 and body["errcode"] == "M_UNRECOGNIZED" and body["completed"] == [], body
    status, _, _ = homeserver.client().exchange("GET", "/auth/m.login.recaptcha/fallback/web",
                                                params={"session": "x"})
    assert status == 404


def test_the_secret_goes_to_the_siteverify_url_only_and_redirects_are_not_followed(homeserver_factory):
    elsewhere = Siteverify()
    redirecting = Siteverify()
    with http_stand_in(siteverify_handler(elsewhere)) as other_url, \
            http_stand_in(siteverify_handler(redirecting, redirect_to=other_url)) as url:
        server = homeserver_factory(recaptcha_public_key=PUBLIC_KEY, recaptcha_private_key=PRIVATE_KEY,
                                    recaptcha_siteverify_api=url + SITEVERIFY_PATH)
        status, body = server.request("POST", "/register", {
            "username": unique("reg"), "password": "secret", "auth": {"type": "m.login.recaptcha",
                                                                      "response": GOOD}})
        assert status == 401 and body["errcode"] == "M_UNAUTHORIZED" and body["completed"] == [], body
        assert [path for path, _ in redirecting.asked] == [SITEVERIFY_PATH]
        assert elsewhere.asked == []
        server.stop()


def test_the_fallback_page_completes_the_stage_without_inline_script(captcha_server, siteverify):
    name = unique("reg")
    session = start_registration(captcha_server, name)["session"]
    path = "/_matrix/client/v3/auth/m.login.recaptcha/fallback/web"
    status, headers, page = captcha_server.client().exchange("GET", path, params={"session": session})
    page = page.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "script-src http://127.0.0.1:" in policy and "'unsafe-inline'" not in policy.split("script-src")[1] \
        .split(";")[0] and "form-action 'self'" in policy
    assert f'data-sitekey="{PUBLIC_KEY}"' in page and f'value="{session}"' in page
    assert "<script>" not in page and '<script src="http://127.0.0.1:' in page
    # A refused answer shows the captcha again; the stage is not done.
    form = {"session": session, "g-recaptcha-response": "wrong"}
    status, _, page = captcha_server.client().exchange(
        "POST", path, urllib.parse.urlencode(form), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401 and b'class="g-recaptcha"' in page
    form["g-recaptcha-response"] = GOOD
    status, _, page = captcha_server.client().exchange(
        "POST", path, urllib.parse.urlencode(form), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and b"Authentication successful" in page
    assert siteverify.forms()[-1]["response"] == GOOD
    status, body = captcha_server.request("POST", "/register", {"auth": {"type": "m.login.dummy",
                                                                         "session": session}})
    assert status == 200 and body["user_id"].startswith(f"@{name}:"), body
    # An unknown session: a 400 page, nothing asked.
    asked = len(siteverify.forms())
    form = {"session": "not-a-session", "g-recaptcha-response": GOOD}
    status, _, _ = captcha_server.client().exchange(
        "POST", path, urllib.parse.urlencode(form), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and len(siteverify.forms()) == asked
