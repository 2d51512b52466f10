"""The Olvid bridge (``hexagone bridge olvid``): needs the ``olvid`` extra (``olvid-bot``), imported by
``bridges.olvid.bridge`` only."""
