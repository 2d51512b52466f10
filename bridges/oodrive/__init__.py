"""The Oodrive bridge (``hexagone bridge oodrive``, documents): see bridge.py and contract.yaml. Needs the
``bridges`` extra only."""

DEFAULTS = {
    "url": "", "client_id": "", "client_secret": "",  # the product's API and the OAuth2 client of the bridge
    "poll_interval_s": 2, "timeout_s": 30,
    "webhook_url": "",  # e.g. http://bridge-host:29330/_bridge/webhook; "": polling only
    "team_parent_folder": "",  # where !hexagone team creates folders ("": the teamspace's root)
    "team_tixeo_bot": "",  # the Tixeo bridge's bot, invited to team rooms and asked to !tixeo meet
    "team_olvid_bot": "",  # the Olvid bridge's bot, invited with --olvid and asked to !olvid bridge
}
