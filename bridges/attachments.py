"""Encrypted attachments (spec v1.19: "Sending encrypted attachments"): AES-256-CTR over the stream,
the SHA-256 of the ciphertext checked before the plaintext is used. Needs pycryptodome (with the
``bridges-e2e`` extra), so it is only imported for encrypted rooms.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import AsyncIterator

from Crypto.Cipher import AES
from Crypto.Util import Counter


def _b64(data: bytes, *, urlsafe: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode().rstrip("=")


def _unb64(text: str) -> bytes:
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


class AttachmentError(Exception):
    """An encrypted attachment that cannot be decrypted (bad key, its hash does not match)."""


class AttachmentEncryptor:
    """One attachment encrypted as it streams (spec: "Sending encrypted attachments": AES-256-CTR,
    the SHA-256 of the ciphertext, ``v2``); ``file_info(mxc)`` is the event's ``file`` object."""

    def __init__(self):
        self._key, iv = os.urandom(32), os.urandom(8) + b"\0" * 8  # the counter half starts at zero
        self._iv = iv
        self._cipher = AES.new(self._key, AES.MODE_CTR, counter=Counter.new(64, prefix=iv[:8], initial_value=0))
        self._sha = hashlib.sha256()

    async def encrypt(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            out = self._cipher.encrypt(chunk)
            self._sha.update(out)
            yield out

    def file_info(self, mxc: str) -> dict:
        return {"v": "v2", "url": mxc, "iv": _b64(self._iv),
                "hashes": {"sha256": _b64(self._sha.digest())},
                "key": {"kty": "oct", "alg": "A256CTR", "ext": True, "key_ops": ["encrypt", "decrypt"],
                        "k": _b64(self._key, urlsafe=True)}}


class DecryptingSink:
    """A binary sink that decrypts an attachment's ciphertext into ``sink``; ``verify()`` at the end
    checks the ciphertext's SHA-256 (the plaintext must not be used before)."""

    def __init__(self, file_info: dict, sink):
        try:
            key, iv = _unb64(file_info["key"]["k"]), _unb64(file_info["iv"])
            self._expected = _unb64(file_info["hashes"]["sha256"])
            if len(key) != 32 or len(iv) != 16 or file_info["key"].get("alg") != "A256CTR":
                raise ValueError("not an A256CTR key")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise AttachmentError(f"malformed encrypted attachment ({e})") from None
        counter = Counter.new(64, prefix=iv[:8], initial_value=int.from_bytes(iv[8:], "big"))
        self._cipher = AES.new(key, AES.MODE_CTR, counter=counter)
        self._sha = hashlib.sha256()
        self._sink = sink

    def write(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        self._sink.write(self._cipher.decrypt(chunk))

    def verify(self) -> None:
        if self._sha.digest() != self._expected:
            raise AttachmentError("the encrypted attachment does not match its hash")
