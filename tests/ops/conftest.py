"""Fixtures for the ops tests; the lab itself is in opslab.py."""
from __future__ import annotations

import pytest

from .opslab import OpsLab


@pytest.fixture
def ops_lab(make_netns, cleanup) -> OpsLab:
    return OpsLab(make_netns, cleanup)
