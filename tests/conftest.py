"""Shared pytest setup: hypothesis profiles, the helper modules on sys.path, per-test random generators.

The helpers themselves live in importable modules next to this file (a conftest is not meant to be
imported): ``_helpers`` (tolerances, reference comparison, memory layouts) and ``_guard`` (guard pages).
"""

import os
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# tests/ has no __init__.py; put it on sys.path whatever pytest's import mode, so test modules can
# `import _helpers` and `import _guard`.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# No example database: it would write .hypothesis/ into the working tree; print_blob reproduces a failure.
_COMMON = dict(deadline=None, database=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=150, **_COMMON)
settings.register_profile("ci", max_examples=150, derandomize=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: reproducible, and different for every test and parameter."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
