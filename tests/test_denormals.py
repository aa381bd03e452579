"""flush_denormals=True: subnormal numbers count as zero during the call, and only during the call.

Subnormal inputs make the kernels 50-170x slower on x86 (benchmarks/test_bench_denormals.py); the option sets
FTZ/DAZ on every thread that runs the call and restores each thread's state after it.
"""

import numpy as np
import pytest

import dwcy
from _helpers import DTYPES, dtype_id

# Every test of this module runs at every SIMD level this CPU supports (conftest.py).
pytestmark = pytest.mark.usefixtures("simd_level")

if not dwcy.config()["flush_denormals"]:
    pytest.skip("no flush-to-zero control on this platform", allow_module_level=True)

TINY = {np.dtype(np.float32): np.float32(1e-40), np.dtype(np.float64): np.float64(1e-310)}  # subnormal


def _calls(dtype):
    """Each function on a subnormal input (large enough to run on several threads), normal weights."""
    x = np.full((2, 40, 40, 32), TINY[np.dtype(dtype)], dtype)
    dw = np.ones((3, 3, 32), dtype)
    pw = np.ones((32, 24), dtype)
    return {
        "depthwise": lambda **kw: dwcy.depthwise_conv2d(x, dw, padding="same", **kw),
        "pointwise": lambda **kw: dwcy.pointwise_conv2d(x, pw, **kw),
        "separable": lambda **kw: dwcy.separable_conv2d(x, dw, pw, padding="same", **kw),
    }


@pytest.mark.parametrize("function", ["depthwise", "pointwise", "separable"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_flush_zeroes_subnormals_for_the_call_only(function, dtype):
    call = _calls(dtype)[function]
    assert np.all(call(num_threads=2) != 0), "without the option, subnormal sums stay (nonzero)"
    assert np.all(call(num_threads=2, flush_denormals=True) == 0), "with it, subnormal inputs count as zero"
    # The threads that ran the flushed call (the caller's and OpenMP's) are back to their own state:
    assert np.all(call(num_threads=2) != 0)
    assert np.all(call(num_threads=1) != 0)
    tiny = np.full(64, TINY[np.dtype(dtype)], dtype)
    assert np.all(tiny * dtype.type(1) == tiny), "the caller's thread kept flush-to-zero"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_flushed_and_plain_results_agree_on_normal_numbers(rng, dtype):
    x = rng.standard_normal((1, 20, 20, 16)).astype(dtype)
    w = rng.standard_normal((3, 3, 16)).astype(dtype)
    np.testing.assert_array_equal(dwcy.depthwise_conv2d(x, w, padding="same", flush_denormals=True),
                                  dwcy.depthwise_conv2d(x, w, padding="same"))
