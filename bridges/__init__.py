"""Bridges to other networks, each a separate appservice process (``hexagone bridge NAME run``).

The framework (``core.py`` and its helpers) speaks only the appservice and client-server APIs over
HTTP; each bridged product is a package implementing ``connector.Connector``.
"""

import importlib


def network_defaults(name: str) -> dict:
    """The product's section of a new configuration: ``DEFAULTS`` of ``bridges.<name>``, a module that
    imports no optional dependency."""
    return dict(importlib.import_module(f"bridges.{name}").DEFAULTS)
