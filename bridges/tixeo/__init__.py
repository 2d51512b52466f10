"""The Tixeo bridge (``hexagone bridge tixeo``, meetings at the signalling level): see bridge.py and
contract.yaml. Needs the ``bridges`` extra only."""

DEFAULTS = {"url": "", "client_id": "", "client_secret": "", "poll_interval_s": 2, "timeout_s": 30,
            "webhook_url": ""}  # as for Oodrive (bridges/oodrive/__init__.py)
