"""Encrypted attachments (spec: "Sending encrypted attachments") as the bridge streams them, checked
against matrix-nio's own implementation both ways."""

from __future__ import annotations

import asyncio
import io
import os

import pytest

pytest.importorskip("nio.crypto.attachments")
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment  # noqa: E402

from bridges.attachments import AttachmentEncryptor, AttachmentError, DecryptingSink  # noqa: E402

pytestmark = pytest.mark.engine_independent


async def _chunks(data: bytes, size: int):
    for at in range(0, len(data), size):
        yield data[at:at + size]


def test_what_the_bridge_encrypts_a_client_decrypts():
    data = os.urandom(300_001)
    secret = AttachmentEncryptor()

    async def ciphertext() -> bytes:
        return b"".join([chunk async for chunk in secret.encrypt(_chunks(data, 65_536))])

    encrypted = asyncio.run(ciphertext())
    info = secret.file_info("mxc://example.org/abc")
    assert info["url"] == "mxc://example.org/abc" and info["v"] == "v2" and encrypted != data
    assert decrypt_attachment(encrypted, info["key"]["k"], info["hashes"]["sha256"], info["iv"]) == data


def test_what_a_client_encrypts_the_bridge_decrypts_and_checks():
    data = os.urandom(200_000)
    encrypted, keys = encrypt_attachment(data)
    sink = io.BytesIO()
    target = DecryptingSink({**keys, "url": "mxc://example.org/x"}, sink)
    for at in range(0, len(encrypted), 7_000):
        target.write(encrypted[at:at + 7_000])
    target.verify()
    assert sink.getvalue() == data

    tampered = DecryptingSink(keys, io.BytesIO())
    tampered.write(encrypted[:-1] + bytes([encrypted[-1] ^ 1]))
    with pytest.raises(AttachmentError, match="does not match its hash"):
        tampered.verify()
    with pytest.raises(AttachmentError, match="malformed"):
        DecryptingSink({**keys, "key": {"k": "short", "alg": "A256CTR"}}, io.BytesIO())
