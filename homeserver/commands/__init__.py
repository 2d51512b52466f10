"""Administration commands run by ``hexagone`` (homeserver/cli.py) besides serving."""
