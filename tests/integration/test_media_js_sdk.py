"""matrix-js-sdk against a real server's content repository (spec v1.19 "Content repository", issue 15's
client proof): a Node script (``js/media_js_sdk.mjs``) logs in, reads the media config, uploads with
``uploadContent`` and fetches the download and thumbnail URLs the SDK's ``mxcUrlToHttp`` builds for
authenticated media.

The SDK comes from the npm registry into ``tests/integration/.cache/`` (ignored by git), installed once and
reused; without Node 20+ and npm, or when the registry cannot be reached, the module is skipped, saying why.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess

import pytest
from PIL import Image

from tests.integration.harness import PASSWORD

JS_SDK_VERSION = "37.5.0"  # the last release that runs on Node 20 (later ones need Node 22)
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache", f"matrix-js-sdk-{JS_SDK_VERSION}")
SCRIPT = os.path.join(HERE, "js", "media_js_sdk.mjs")
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120


def _node_major() -> int:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


@pytest.fixture(scope="module")
def js_sdk() -> str:
    """The directory holding node_modules/matrix-js-sdk and a copy of the script (an ES module resolves its
    imports from its own directory)."""
    if _node_major() < 20 or shutil.which("npm") is None:
        pytest.skip("Node 20+ and npm are needed for the matrix-js-sdk check")
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time, whoever runs the module
        if not os.path.exists(os.path.join(CACHE, "node_modules", "matrix-js-sdk", "package.json")):
            try:
                result = subprocess.run(
                    ["npm", "install", "--prefix", CACHE, "--no-audit", "--no-fund", "--loglevel=error",
                     f"matrix-js-sdk@{JS_SDK_VERSION}"], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.skip(f"npm could not install matrix-js-sdk within {INSTALL_TIMEOUT_S} s")
            if result.returncode != 0:
                pytest.skip(f"npm could not install matrix-js-sdk: {result.stderr.strip()[-500:]}")
    shutil.copy(SCRIPT, os.path.join(CACHE, os.path.basename(SCRIPT)))
    return CACHE


@pytest.fixture(scope="module")
def server(homeserver_factory):
    return homeserver_factory()


def _png() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((640, 480), 50).convert("RGB").save(out, "PNG")
    return out.getvalue()


def test_js_sdk_uploads_downloads_and_thumbnails(server, js_sdk, tmp_path):
    user = server.register()
    image = _png()
    (tmp_path / "photo.png").write_bytes(image)
    env = {**os.environ, "BASE_URL": server.base_url, "USER_ID": user.user_id, "PASSWORD": PASSWORD,
           "IMAGE_PATH": str(tmp_path / "photo.png")}
    result = subprocess.run(["node", os.path.join(js_sdk, os.path.basename(SCRIPT))], cwd=js_sdk, env=env,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["user_id"] == user.user_id
    assert seen["upload_size"] > 0
    assert seen["content_uri"].startswith("mxc://test.local/")
    media = seen["content_uri"].removeprefix("mxc://")
    # The SDK builds the authenticated URLs of spec v1.11+, and they serve the file and a thumbnail.
    assert seen["download_url"] == f"{server.base_url}/_matrix/client/v1/media/download/{media}?allow_redirect=true"
    assert seen["thumbnail_url"].startswith(f"{server.base_url}/_matrix/client/v1/media/thumbnail/{media}?")
    assert seen["download"] == {"status": 200, "type": "image/png", "sha256": hashlib.sha256(image).hexdigest()}
    assert seen["thumbnail"]["status"] == 200 and seen["thumbnail"]["type"] == "image/png"
    assert seen["thumbnail"]["png"] and 0 < seen["thumbnail"]["length"] < len(image)
    # Without the access token the SDK's URL is refused (authenticated media).
    assert seen["anonymous"]["status"] == 401
    assert json.loads(seen["anonymous"]["body"])["errcode"] == "M_MISSING_TOKEN"
