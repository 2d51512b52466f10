"""Bridges to other networks, each a separate appservice process (``hexagone bridge NAME run``).

The framework (``core.py`` and its helpers) speaks only the appservice and client-server APIs over
HTTP; each bridged product is a package implementing ``connector.Connector``.
"""


def network_defaults(name: str) -> dict:
    """The product's section of a new configuration (no optional dependency is imported)."""
    if name == "olvid":
        return {"daemon_url": "", "client_key": "", "tls": {},  # "": OLVID_DAEMON_URL, OLVID_CLIENT_KEY
                "catch_up_window_s": 86400, "resync_interval_s": 60}
    if name in ("oodrive", "tixeo"):  # the product's URL and the OAuth2 client the bridge authenticates as
        network = {"url": "", "client_id": "", "client_secret": "", "poll_interval_s": 2, "timeout_s": 30,
                   "webhook_url": ""}  # e.g. http://bridge-host:29330/_bridge/webhook; "": polling only
        if name == "oodrive":
            network.update(team_parent_folder="", team_tixeo_bot="")
        return network
    raise KeyError(name)
