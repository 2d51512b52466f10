"""Shared pytest setup for the whole suite.

The repository root is importable (``tests.integration.harness``,
``homeserver``) whether or not the package is installed.
"""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
