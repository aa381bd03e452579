"""Shared pytest setup: hypothesis profiles, the helper modules on sys.path, per-test random generators, and
the SIMD levels the kernel tests run at.

The helpers themselves live in importable modules next to this file (a conftest is not meant to be
imported): ``_helpers`` (tolerances, reference comparison, memory layouts) and ``_guard`` (guard pages).
"""

import os
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import dwcy
import dwcy._api
import dwcy.kernels

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


# The kernel tests run at every SIMD level this CPU supports; when DWCY_SIMD forces a level, at that one alone.
SIMD_LEVELS = (dwcy.kernels.level,) if os.environ.get("DWCY_SIMD", "").strip() else dwcy.kernels.usable


@pytest.fixture(params=SIMD_LEVELS)
def simd_level(request, monkeypatch):
    """Run the test once per SIMD level (a test module asks with ``pytest.mark.usefixtures("simd_level")``).

    The public functions then call that level's kernel module (dwcy.kernels.load) in this process, and the
    child processes the test starts choose it too (DWCY_SIMD). Yields the level's name.
    """
    level = request.param
    monkeypatch.setattr(dwcy._api, "_kernels", dwcy.kernels.load(level))
    monkeypatch.setenv("DWCY_SIMD", level)
    yield level
