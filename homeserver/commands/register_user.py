"""``hexagone register-user``: create an account in a configured server's database."""

from __future__ import annotations

import sys

from homeserver.errors import MatrixError


def register_user(config, localpart: str, password: str, admin: bool) -> int:
    """``hexagone register-user``: create an account (works whether or not the server is running)."""
    from twisted.internet import defer, task

    from homeserver.server import build_server

    async def main(reactor):
        hs = build_server(config, reactor)
        try:
            user_id = await hs.registration.register(localpart, password, admin=admin)
        except MatrixError as e:
            print(f"Could not register {localpart}: {e.error} ({e.errcode})", file=sys.stderr)
            raise SystemExit(1)
        finally:
            hs.close()
        print(f"Registered {user_id}{' (admin)' if admin else ''}")

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))  # exits the process with main's status
    return 0
