"""A small push gateway for the tests (spec v1.19 push gateway API, POST /_matrix/push/v1/notify).

It listens on 127.0.0.1, records each notification with the time it arrived, and answers
``{"rejected": [...]}`` with the pushkeys the test chose to reject.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PushGateway:
    def __init__(self, tls: tuple[str, str] | None = None):
        """``tls``: (certificate chain, private key) files to serve HTTPS instead of HTTP."""
        self.received: list[tuple[float, dict]] = []
        self.rejected: set[str] = set()
        self.failures: dict[str, int] = {}  # pushkey -> how many more notifications to answer with a 503
        self._cond = threading.Condition()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                notification = body["notification"]
                with gateway._cond:
                    gateway.received.append((time.monotonic(), notification))
                    gateway._cond.notify_all()
                keys = [d["pushkey"] for d in notification.get("devices", []) if d["pushkey"] in gateway.rejected]
                raw = json.dumps({"rejected": keys}).encode()
                with gateway._cond:
                    failing = [d["pushkey"] for d in notification["devices"] if gateway.failures.get(d["pushkey"])]
                    for key in failing:
                        gateway.failures[key] -= 1
                self.send_response(404 if self.path != "/_matrix/push/v1/notify" else 503 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                """``/received``: what was recorded, as [[monotonic time, notification], ...] (for a
                gateway run in its own process, see ``main``)."""
                with gateway._cond:
                    raw = json.dumps(gateway.received).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._server.server_address[1]}/_matrix/push/v1/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def for_key(self, pushkey: str) -> list[dict]:
        with self._cond:
            return [n for _, n in self.received if any(d["pushkey"] == pushkey for d in n["devices"])]

    def wait(self, predicate, timeout: float = 30.0):
        """Wait until ``predicate(self)`` is true (re-checked on each notification)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate(self)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("push gateway: condition not reached in time")
                self._cond.wait(left)
            return result

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    """Run a gateway in its own process (benchmarks: it then shares no interpreter lock with the client);
    prints its notify URL on the first line of stdout."""
    gateway = PushGateway()
    print(gateway.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
