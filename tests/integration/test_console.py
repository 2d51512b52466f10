"""The web console (``/_hexagone/console/``) in a real headless Chromium (Debian's ``chromium``, driven by
Playwright without any browser download): an admin signs in with their Matrix account, sees a federated peer
that is up and a listed one that is down, the users and their devices, the rooms and their access rules, and
the audit trail filtered to a federation refusal, media usage per user with quarantine and release, the users'
reports with one dismissed, and the charts of traffic and federation over time; a non-admin is turned away.
Screenshots are kept under the test's tmp dir; the page load time is measured and printed."""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import pytest

from tests.integration.harness import bulk_users, free_port, register_admin, unique, wait_for
from tests.integration.media_client import upload

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
PASSWORD = "console-Pa55word"
STRANGER = "stranger.gouv.example"


@pytest.fixture(scope="module")
def agencies(fed):
    """Agency B (up), and agency A whose whitelist names B and a server that is down; A has sent to both."""
    b = fed()
    down = f"localhost:{free_port()}"  # listed, but nothing listens there
    a = fed(federation_domain_whitelist=[b.name, down])
    admin = register_admin(a.process, PASSWORD)
    crisis = admin.ok("POST", "/createRoom", {"name": "Cellule de crise", "initial_state": [
        {"type": "im.vector.room.access_rules", "state_key": "", "content": {"rule": "restricted"}}]})["room_id"]
    agent = a.process.register()
    admin.ok("POST", f"/rooms/{crisis}/invite", {"user_id": agent.user_id})
    agent.join(crisis)
    spam = agent.send(crisis, "Achetez maintenant !")
    admin.ok("POST", f"/rooms/{crisis}/report/{spam}", {"reason": "Publicité", "score": -80})
    admin.ok("POST", f"/users/{agent.user_id}/report", {"reason": "Envoie de la publicité"})
    for name, size, kind in (("plan.pdf", 300_000, "application/pdf"), ("photo.png", 40_000, "image/png")):
        status, _ = upload(a.process.base_url, admin.token, b"x" * size, filename=name, content_type=kind)
        assert status == 200
    for peer in (b.name, down):
        admin.ok("PUT", f"/sendToDevice/m.test/{unique()}", {"messages": {f"@agent:{peer}": {"*": {"n": 1}}}})
    status, _ = a.signed("PUT", f"/_matrix/federation/v1/send/{unique('txn')}", origin=STRANGER, key=b.signing_key,
                         content={"origin": STRANGER, "origin_server_ts": int(time.time() * 1000), "pdus": []})
    assert status == 403

    def settled():
        found = {d["destination"]: d for d in
                 admin.ok("GET", "/_synapse/admin/v1/federation/destinations")["destinations"]}
        return (b.name in found and found[b.name]["retry_interval"] == 0 and found[b.name]["queued"] == 0
                and down in found and found[down]["retry_interval"] > 0)
    wait_for(settled, "the transaction to B sent and the one to the down server backing off")
    return a, b, down, admin


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _sign_in(page, base: str, user_id: str, password: str) -> None:
    page.goto(base)
    page.get_by_label("Matrix ID or user name").fill(user_id)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_admin_sees_federation_health_users_rooms_and_audit(agencies, browser, tmp_path_factory):
    a, b, down, admin = agencies
    shots = tmp_path_factory.mktemp("console-screenshots")
    base = f"http://127.0.0.1:{a.process.port}/_hexagone/console/"
    page = browser.new_page(locale="en-GB", viewport={"width": 1280, "height": 800})
    errors = []  # script errors and refusals (a Content-Security-Policy violation is a console error)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    start = time.monotonic()
    page.goto(base)
    nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
    load_ms = json.loads(nav)["loadEventEnd"]
    _sign_in(page, base, admin.user_id, PASSWORD)

    rows = page.locator("#federation-rows tr")
    sync_api.expect(rows).to_have_count(2)
    first_view_ms = (time.monotonic() - start) * 1000
    up_row, down_row = page.locator(f'tr[data-destination="{b.name}"]'), page.locator(f'tr[data-destination="{down}"]')
    sync_api.expect(up_row.locator(".badge.up")).to_have_text("Reachable")
    sync_api.expect(up_row.locator("td").nth(3)).to_have_text(re.compile(r"^\d+ ms$"))  # latency
    sync_api.expect(down_row.locator(".badge.down")).to_have_text("Unreachable")
    sync_api.expect(down_row.get_by_role("button", name=f"Retry now: {down}")).to_be_visible()
    assert _token_in_session_storage_only(page)
    page.screenshot(path=str(shots / "federation.png"), full_page=True)

    page.get_by_role("link", name="Users").click()
    sync_api.expect(page.locator("#users-rows")).to_contain_text(admin.user_id)
    page.get_by_role("button", name=f"Show devices: {admin.user_id}").first.click()
    sync_api.expect(page.get_by_role("list", name=f"Devices of {admin.user_id}")).to_contain_text(admin.device_id)
    page.screenshot(path=str(shots / "users.png"), full_page=True)

    page.get_by_role("link", name="Rooms").click()
    room_row = page.locator("#rooms-rows tr", has_text="Cellule de crise")
    sync_api.expect(room_row).to_contain_text("restricted")
    page.screenshot(path=str(shots / "rooms.png"), full_page=True)

    page.get_by_role("link", name="Media").click()
    media_row = page.locator("#media-rows tr", has_text=admin.user_id)
    sync_api.expect(media_row).to_contain_text("332.0 KiB")
    media_row.get_by_role("button", name=f"Show media: {admin.user_id}").click()
    files = page.get_by_role("list", name=f"Media of {admin.user_id}")
    files.get_by_role("button", name="Quarantine: plan.pdf").click()
    sync_api.expect(files.locator("li", has_text="plan.pdf")).to_contain_text("quarantined")
    page.screenshot(path=str(shots / "media.png"), full_page=True)
    files.get_by_role("button", name="Release: plan.pdf").click()
    sync_api.expect(files.get_by_role("button", name="Quarantine: plan.pdf")).to_be_visible()

    page.get_by_role("link", name="Reports").click()
    reported = page.locator("#event-report-rows tr", has_text="Publicité")
    sync_api.expect(reported).to_contain_text("Cellule de crise")
    sync_api.expect(page.locator("#user-report-rows")).to_contain_text("Envoie de la publicité")
    page.screenshot(path=str(shots / "reports.png"), full_page=True)
    reported.get_by_role("button", name=re.compile("^Dismiss the report of ")).click()
    sync_api.expect(page.locator("#event-report-rows")).to_contain_text("Nothing to show.")

    wait_for(lambda: len(admin.ok("GET", "/_hexagone/admin/v1/traffic")["points"]) >= 3,
             "three intervals of traffic to chart", deadline_s=40)
    page.get_by_role("link", name="Activity").click()
    traffic = page.locator('#chart-traffic polyline[data-series="requests"]')
    sync_api.expect(traffic).to_have_count(1)
    sync_api.expect(page.locator("#chart-traffic svg")).to_have_attribute("aria-label", re.compile(r"^Requests: [1-9]"))
    sync_api.expect(page.locator('#chart-federation polyline[data-series="local_events"]')).to_have_count(1)
    page.screenshot(path=str(shots / "activity.png"), full_page=True)

    page.get_by_role("link", name="Audit trail").click()
    page.get_by_label("Kind").select_option("federation_refused")
    page.get_by_role("button", name="Filter").click()
    refused = page.locator('#audit-rows tr[data-kind="federation_refused"]')
    sync_api.expect(refused.first).to_contain_text(STRANGER)
    sync_api.expect(page.locator('#audit-rows tr:not([data-kind="federation_refused"])')).to_have_count(0)
    page.screenshot(path=str(shots / "audit.png"), full_page=True)

    page.get_by_role("button", name="Français").click()
    sync_api.expect(page.get_by_role("heading", name="Journal d'audit")).to_be_visible()
    page.get_by_role("link", name="Fédération").click()
    sync_api.expect(page.locator(f'tr[data-destination="{down}"] .badge')).to_have_text("Injoignable")
    page.screenshot(path=str(shots / "federation-fr.png"), full_page=True)
    page.get_by_role("link", name="Signalements").click()
    sync_api.expect(page.get_by_role("button", name=f"Classer le signalement de {agent_id(page)}")).to_be_visible()
    page.get_by_role("link", name="Activité").click()
    sync_api.expect(page.locator("#chart-traffic svg")).to_have_attribute("aria-label", re.compile(r"^Requêtes : \d+"))
    page.close()
    assert errors == []
    (shots / "timings.json").write_text(json.dumps({"page_load_ms": load_ms, "sign_in_to_federation_ms": first_view_ms}))
    if os.environ.get("HEXAGONE_SCREENSHOTS_DIR"):  # docs/screenshots, to refresh the README's pictures
        for name in ("federation.png", "audit.png", "media.png", "reports.png", "activity.png"):
            shutil.copy(shots / name, os.path.join(os.environ["HEXAGONE_SCREENSHOTS_DIR"], "console-" + name))
    print(f"\nconsole: page load {load_ms:.0f} ms, sign-in to federation table {first_view_ms:.0f} ms; "
          f"screenshots in {shots}")


def agent_id(page) -> str:
    """The reported user of the Reports page (the fixture's agent)."""
    return page.locator("#user-report-rows tr td").nth(2).inner_text()


def _token_in_session_storage_only(page) -> bool:
    return bool(page.evaluate("sessionStorage.getItem('token')")) and not page.evaluate("localStorage.length")


def test_a_non_admin_is_turned_away_in_french_by_keyboard(agencies, browser):
    a, _b, _down, _admin = agencies
    user = a.process.register(password=PASSWORD)
    page = browser.new_page(locale="fr-FR")
    page.goto(f"http://127.0.0.1:{a.process.port}/_hexagone/console/")
    sync_api.expect(page.get_by_role("heading", name="Connexion avec votre compte d'administration")).to_be_visible()
    # Keyboard only: the page puts the focus in the first field; Tab to the password, Enter to submit.
    sync_api.expect(page.get_by_label("Identifiant Matrix ou nom d'utilisateur")).to_be_focused()
    page.keyboard.type(user.user_id)
    page.keyboard.press("Tab")
    sync_api.expect(page.get_by_label("Mot de passe")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    sync_api.expect(page.get_by_role("alert")).to_have_text("Ce compte n'administre pas ce serveur.")
    assert page.evaluate("sessionStorage.getItem('token')") is None
    sync_api.expect(page.locator("#federation")).to_be_hidden()
    page.close()


def test_console_files_are_static_and_contained(agencies):
    a = agencies[0]
    client = a.process.client()
    status, headers, _ = client.exchange("GET", "/_hexagone/console/")
    assert status == 200 and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    for path in ("/_hexagone/console/../admin/v1/audit", "/_hexagone/console/.env", "/_hexagone/console/x.py"):
        assert client.request("GET", path)[0] == 404, path


def test_console_with_ten_thousand_users(homeserver_factory, browser):
    """Figures: the console's load and its users page on a server of 10,000 accounts (printed)."""
    big = homeserver_factory()
    boss = register_admin(big, PASSWORD)
    bulk_users(big, 10_000)
    page = browser.new_page(locale="en-GB")
    base = f"http://127.0.0.1:{big.port}/_hexagone/console/"
    page.goto(base)
    load_ms = json.loads(page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])"))["loadEventEnd"]
    _sign_in(page, base, boss.user_id, PASSWORD)
    sync_api.expect(page.locator("body[data-loaded]")).to_have_count(1)
    timings = {}
    for label, link, rows in (("users page, first 100 of 10,001", "Users", "#users-rows tr"),
                              ("rooms page", "Rooms", "#rooms-rows tr"), ("media page", "Media", "#media-rows tr")):
        start = time.monotonic()
        page.evaluate("delete document.body.dataset.loaded")
        page.get_by_role("link", name=link).click()
        sync_api.expect(page.locator("body[data-loaded]")).to_have_count(1)
        timings[label] = round((time.monotonic() - start) * 1000)
        assert page.locator(rows).count() >= 1
    page.get_by_role("link", name="Users").click()
    sync_api.expect(page.locator("#users-rows tr")).to_have_count(100)
    start = time.monotonic()
    page.evaluate("delete document.body.dataset.loaded")
    page.get_by_label("User ID or name contains").fill("bulk0999")
    page.get_by_role("button", name="Search").click()
    sync_api.expect(page.locator("body[data-loaded]")).to_have_count(1)
    timings["user search (bulk0999*)"] = round((time.monotonic() - start) * 1000)
    sync_api.expect(page.locator("#users-rows tr")).to_have_count(10)
    page.close()
    print(f"\nconsole with 10,000 users: page load {load_ms:.0f} ms; (ms) {timings}")
    assert max(timings.values()) < 5000
