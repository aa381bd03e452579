"""Threads, for pointwise_conv2d and separable_conv2d: results bitwise identical at any thread count and under
threadpoolctl limits, huge num_threads capped, and many Python threads calling at once.

dwcy gives a call about one thread per 262144 multiply-adds, so every case here has millions of them:
fewer would run on one thread whatever num_threads says, and prove nothing.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import dwcy
from _helpers import DTYPES, assert_bitwise_equal, dtype_id, pointwise_inputs, separable_inputs

# Every test of this module runs at every SIMD level this CPU supports (conftest.py).
pytestmark = pytest.mark.usefixtures("simd_level")

THREAD_COUNTS = [2, 3, 7, 16, None]

# name: ((N, H, W), Cin, Cout)
POINTWISE_CASES = {
    # 49 pixels make a single block of rows: threads share its 40 panels x 4 register tiles of rows
    # (20M multiply-adds).
    # Cout = 1280 also takes the packed-panel path (rows of the weight 4 KiB or more apart).
    "few_pixels_many_channels": ((1, 7, 7), 320, 1280),
    # 6384 pixels in many row blocks, two panels of output channels: shares that end inside a block
    # (6M multiply-adds).
    "many_pixels_few_channels": ((2, 56, 57), 24, 40),
    # Odd everything: row tails in every block, a partial vector of channels (4.4M multiply-adds).
    "odd_sizes": ((3, 13, 17), 67, 99),
    # One block of rows and two panels: threads share its 2 x 14 (panel, register tile) units, most
    # counts in runs that end inside a panel (4.8M multiply-adds).
    "few_pixels_few_channels": ((1, 14, 14), 384, 64),
}

# name: (x shape, kernel size, multiplier, Cout, keyword arguments)
SEPARABLE_CASES = {
    # Bands of many rows, 3 images (17M multiply-adds).
    "57x31x40_to_70_batch3": ((3, 57, 31, 40), 3, 1, 70, dict(padding="same")),
    # Rows longer than a band's 128 KiB: one row per band (14M).
    "rows_beyond_a_band": ((1, 9, 300, 120), 3, 1, 33, dict(padding="same", activation="relu")),
    # A multiplier, stride 2, a 5x5 kernel (3.2M).
    "5x5_stride2_multiplier2": ((4, 33, 41, 16), 5, 2, 45,
                                dict(padding="same", stride=2, depthwise_activation="relu6")),
    # Few rows (7 work items) with many channels (46M).
    "7x7x960_to_320": ((1, 7, 7, 960), 3, 1, 320, dict(padding="same", activation="hardswish")),
}


def pointwise_case(rng, dtype, name):
    (n, h, w), cin, cout = POINTWISE_CASES[name]
    x, weight, bias = pointwise_inputs(rng, dtype, n=n, h=h, w=w, cin=cin, cout=cout)
    return lambda **kwargs: dwcy.pointwise_conv2d(x, weight, bias, activation="relu6", **kwargs)


def separable_case(rng, dtype, name):
    (n, h, w, c), k, multiplier, cout, case_kwargs = SEPARABLE_CASES[name]
    arrays = separable_inputs(rng, dtype, n=n, h=h, w=w, c=c, kh=k, multiplier=multiplier, cout=cout)
    return lambda **kwargs: dwcy.separable_conv2d(**arrays, **case_kwargs, **kwargs)


CASES = [("pointwise", name) for name in POINTWISE_CASES] + [("separable", name) for name in SEPARABLE_CASES]
CASE_IDS = [f"{function}-{name}" for function, name in CASES]


def make_call(rng, dtype, function, name):
    """A function of keyword arguments (num_threads, out) that runs the case."""
    return (pointwise_case if function == "pointwise" else separable_case)(rng, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("function, name", CASES, ids=CASE_IDS)
def test_bitwise_identical_at_any_thread_count(rng, function, name, dtype):
    call = make_call(rng, dtype, function, name)
    one_thread = call(num_threads=1)
    for num_threads in THREAD_COUNTS:
        assert_bitwise_equal(call(num_threads=num_threads), one_thread, f"num_threads={num_threads}")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("function, name", [CASES[0], CASES[-1]], ids=[CASE_IDS[0], CASE_IDS[-1]])
def test_bitwise_identical_under_threadpool_limits(rng, function, name, dtype):
    call = make_call(rng, dtype, function, name)
    default = call()
    with threadpool_limits(limits=1):
        for num_threads in [None, 1, 3]:
            assert_bitwise_equal(call(num_threads=num_threads), default,
                                 f"num_threads={num_threads} under threadpool_limits(1)")


@pytest.mark.parametrize("num_threads", [2**31, 2**40, 2**63])
@pytest.mark.parametrize("function", ["pointwise", "separable"])
def test_huge_num_threads_is_capped(rng, function, num_threads):
    # An int >= 1 is valid (DESIGN.md); threads are capped at the work items, so it runs like any other count.
    name = "odd_sizes" if function == "pointwise" else "5x5_stride2_multiplier2"
    call = make_call(rng, np.float32, function, name)
    assert_bitwise_equal(call(num_threads=num_threads), call(num_threads=1))


@pytest.mark.parametrize("function", ["pointwise", "separable"])
def test_concurrent_python_threads(function):
    # The GIL is released in the kernels: many Python threads may call at once, each getting its own result.
    names = POINTWISE_CASES if function == "pointwise" else SEPARABLE_CASES
    calls = [make_call(np.random.default_rng(seed), np.float32, function, name) for seed, name in enumerate(names)]
    calls *= 3
    expected = [call(num_threads=1) for call in calls]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda call: call(num_threads=2), calls))
    for y, e in zip(results, expected):
        assert_bitwise_equal(y, e)
