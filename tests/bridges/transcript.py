"""Pictures of a bridge flow for the README (docs/screenshots): what a matrix-nio user saw in a room (its
decrypted timeline) drawn as a small chat page, and the web console's rooms, shot by Debian's chromium."""

from __future__ import annotations

import html
import os
import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
STYLE = """body{font:15px system-ui,sans-serif;margin:0;background:#f4f5f7;color:#17191c}
header{background:#0b3d91;color:#fff;padding:12px 20px;font-weight:600}header small{font-weight:400;opacity:.8}
ol{list-style:none;margin:0;padding:12px 20px}li{background:#fff;border-radius:8px;margin:8px 0;padding:8px 12px;
box-shadow:0 1px 2px #0002}.who{font-weight:600;color:#0b3d91}.notice .body{color:#555}.lock{float:right;color:#2a7}
.file{display:inline-block;border:1px solid #ccd;border-radius:6px;padding:4px 10px;margin-top:4px;background:#f8f9fb}
.state{background:none;box-shadow:none;color:#666;font-size:13px;padding:2px 12px}"""


def _line(event: dict, encrypted: bool, names: dict[str, str]) -> str:
    content = event.get("content") or {}
    who = html.escape(names.get(event.get("sender", ""), event.get("sender", "")))
    lock = '<span class="lock" title="end-to-end encrypted">end-to-end encrypted</span>' if encrypted else ""
    if event.get("type") == "im.vector.modular.widgets" and content.get("url"):
        return f'<li class="state">{who} added the widget “{html.escape(content.get("name", ""))}”</li>'
    if event.get("type") != "m.room.message":
        return ""
    body = html.escape(content.get("body", ""))
    if content.get("msgtype") in ("m.file", "m.image", "m.video", "m.audio"):
        size = (content.get("info") or {}).get("size", 0)
        body = f'<span class="file">{body} · {size:,} bytes</span>'
    kind = "notice" if content.get("msgtype") == "m.notice" else ""
    return f'<li class="{kind}">{lock}<div class="who">{who}</div><div class="body">{body}</div></li>'


def chat_page(title: str, subtitle: str, events: list[dict], encrypted_ids: set[str],
              everything: list[dict] = ()) -> str:
    """``events`` drawn as a chat; the display names come from the member events of ``everything`` too."""
    names = {e["state_key"]: e["content"]["displayname"] for e in [*everything, *events]
             if e.get("type") == "m.room.member"
             and isinstance((e.get("content") or {}).get("displayname"), str)}
    lines = "".join(_line(e, e.get("event_id") in encrypted_ids, names) for e in events)
    return (f"<!doctype html><meta charset=utf-8><style>{STYLE}</style><header>{html.escape(title)} "
            f"<small>{html.escape(subtitle)}</small></header><ol>{lines}</ol>")


def shoot(pages: dict[str, str], console: tuple[str, str, str] | None, out_dir: str) -> list[str]:
    """Each ``name: html`` page, and the console's rooms (``(url, user, password)``) as PNGs in ``out_dir``."""
    from playwright.sync_api import expect, sync_playwright

    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(locale="en-GB", viewport={"width": 900, "height": 400})
        for name, content in pages.items():
            page.set_content(content)
            written.append(os.path.join(out_dir, name))
            page.screenshot(path=written[-1], full_page=True)
        if console is not None:
            url, user, password = console
            page.set_viewport_size({"width": 1280, "height": 600})
            page.goto(url)
            page.get_by_label("Matrix ID or user name").fill(user)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("link", name="Rooms").click()
            expect(page.locator("#rooms-rows")).to_contain_text("m.megolm.v1.aes-sha2")
            written.append(os.path.join(out_dir, "team-room-console.png"))
            page.screenshot(path=written[-1], full_page=True)
        browser.close()
    return written
