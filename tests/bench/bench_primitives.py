"""Micro-benchmark of the one canonical JSON and the one JSON signing against the canonicaljson and
signedjson libraries, and of the one cache class (the figures in ``homeserver/events/canonical_json.py``
and ``homeserver/events/signing.py``).

Inputs: an event of ~1.1 KB, a device keys object, a power levels event of 2000 users (~70 KB).

    python tests/bench/bench_primitives.py
"""

from __future__ import annotations

import copy
import os
import sys
import timeit

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import canonicaljson  # noqa: E402
import signedjson.sign  # noqa: E402
from signedjson.key import decode_signing_key_base64, get_verify_key  # noqa: E402

from homeserver.events import signing  # noqa: E402
from homeserver.events.canonical_json import encode_canonical_json  # noqa: E402
from homeserver.lru import LruCache  # noqa: E402

KEY = decode_signing_key_base64("ed25519", "1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
VERIFY_KEY = get_verify_key(KEY)
EVENT = {"type": "m.room.message", "room_id": "!abcdefghijkl:example.org", "sender": "@alice:example.org",
         "origin_server_ts": 1700000000000, "depth": 42,
         "content": {"msgtype": "m.text", "body": "héllo wörld " * 40,
                     "m.mentions": {"user_ids": ["@bob:example.org"]}},
         "prev_events": ["$" + "a" * 43], "auth_events": ["$" + c * 43 for c in "bcd"],
         "hashes": {"sha256": "x" * 43}, "unsigned": {"age_ts": 1}}
DEVICE_KEYS = {"user_id": "@alice:example.org", "device_id": "JLAFKJWSCS",
               "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
               "keys": {"curve25519:JLAFKJWSCS": "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI",
                        "ed25519:JLAFKJWSCS": "lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI"}}
POWER_LEVELS = {"type": "m.room.power_levels", "room_id": "!abcdefghijkl:example.org",
                "sender": "@alice:example.org", "state_key": "", "origin_server_ts": 1700000000000, "depth": 7,
                "content": {"users": {f"@user{i}:server{i % 50}.example.org": i % 100 for i in range(2000)},
                            "events": {"m.room.name": 50}, "ban": 50},
                "prev_events": [], "auth_events": []}


def best_us(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    for name, obj, number in (("event", EVENT, 2000), ("device keys", DEVICE_KEYS, 2000),
                              ("power levels", POWER_LEVELS, 20)):
        assert encode_canonical_json(obj) == canonicaljson.encode_canonical_json(obj)
        size = len(encode_canonical_json(obj))
        print(f"{name} ({size} bytes), microseconds:")
        print(f"  encode: ours {best_us(lambda: encode_canonical_json(obj), number):.1f}, "
              f"ours may_hold_floats=False "
              f"{best_us(lambda: encode_canonical_json(obj, may_hold_floats=False), number):.1f}, "
              f"canonicaljson {best_us(lambda: canonicaljson.encode_canonical_json(obj), number):.1f}")
        signed = signing.sign_json(obj, "example.org", KEY)
        ours_sign = best_us(lambda: signing.sign_json(obj, "example.org", KEY), number)
        library_sign = best_us(lambda: signedjson.sign.sign_json(copy.copy(obj), "example.org", KEY), number)
        print(f"  sign: ours {ours_sign:.1f}, signedjson {library_sign:.1f}")
        ours_verify = best_us(lambda: signing.verify_signed_json(signed, "example.org", lambda *_: VERIFY_KEY), number)
        library_verify = best_us(lambda: signedjson.sign.verify_signed_json(signed, "example.org", VERIFY_KEY),
                                 number)
        print(f"  verify: ours {ours_verify:.1f}, signedjson {library_verify:.1f}")
    cache: LruCache[str, str] = LruCache(50_000)
    for i in range(60_000):
        cache.put(f"$e{i}", "x")
    keys = iter(range(10**9))
    print(f"LruCache of 50,000 events, nanoseconds: "
          f"get (hit) {best_us(lambda: cache.get('$e59999'), 200_000) * 1e3:.0f}, "
          f"get (miss) {best_us(lambda: cache.get('$none'), 200_000) * 1e3:.0f}, "
          f"put (evicting) {best_us(lambda: cache.put(f'$n{next(keys)}', 'x'), 200_000) * 1e3:.0f}")


if __name__ == "__main__":
    main()
