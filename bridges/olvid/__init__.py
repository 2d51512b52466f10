"""The Olvid bridge (``hexagone bridge olvid``): needs the ``olvid`` extra (``olvid-bot``), imported by
``bridges.olvid.bridge`` only."""

DEFAULTS = {
    "daemon_url": "",  # "": OLVID_DAEMON_URL (or .env), else the client library's localhost:50051
    "client_key": "",  # "": OLVID_CLIENT_KEY (or .env)
    "tls": {},  # {server_certificate} or {root_certificate, certificate_chain, private_key}
    "catch_up_window_s": 86400,  # how far back the first catch-up looks
    "resync_interval_s": 60,  # a catch-up runs this often anyway
}
