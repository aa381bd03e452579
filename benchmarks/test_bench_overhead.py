"""Per-call overhead of the Python API: each kernel on a tiny layer, one thread.

The layer (1x4x4x16, 3x3 depthwise with padding "same", 16 -> 16 pointwise, biases, relu6) is a few hundred
multiply-adds: its kernel runs in well under 0.1 us, so the time of a call is what the API costs around it
(checking the arguments, allocating the output, dispatching). Issue 6 asks at most 2 us for depthwise_conv2d
and 1 us through a prepared dwcy.Depthwise. One group per kernel: the function, the prepared object, and the
NumPy reference for scale::

    pytest benchmarks/test_bench_overhead.py --benchmark-only --benchmark-columns=median,iqr,rounds

CI runs it once with ``--benchmark-disable``; every result is checked against the reference.
"""

import numpy as np
import pytest

import dwcy

DTYPE = np.float32
SHAPE = (1, 4, 4, 16)
OPTIONS = dict(padding="same", activation="relu6")  # of the depthwise calls; the separable ones are spelled below


def _arrays():
    rng = np.random.default_rng(0)
    c = SHAPE[3]
    x, dw, db, pw, pb = (rng.standard_normal(s).astype(DTYPE) for s in (SHAPE, (3, 3, c), (c,), (c, c), (c,)))
    return x, dw, db, pw, pb


def _calls(kernel):
    """{implementation: call without arguments} of one kernel, and the expected result."""
    x, dw, db, pw, pb = _arrays()
    ref = dwcy.reference
    if kernel == "depthwise":
        conv = dwcy.Depthwise(dw, db, **OPTIONS)
        calls = {"dwcy": lambda: dwcy.depthwise_conv2d(x, dw, db, **OPTIONS, num_threads=1),
                 "dwcy-prepared": lambda: conv(x, num_threads=1),
                 "numpy-reference": lambda: ref.depthwise_conv2d(x, dw, db, **OPTIONS)}
    elif kernel == "pointwise":
        conv = dwcy.Pointwise(pw, pb, activation="relu6")
        calls = {"dwcy": lambda: dwcy.pointwise_conv2d(x, pw, pb, activation="relu6", num_threads=1),
                 "dwcy-prepared": lambda: conv(x, num_threads=1),
                 "numpy-reference": lambda: ref.pointwise_conv2d(x, pw, pb, activation="relu6")}
    else:
        options = dict(padding="same", depthwise_activation="relu6", activation="relu6")
        block = dwcy.Separable(dw, pw, db, pb, **options)
        calls = {"dwcy": lambda: dwcy.separable_conv2d(x, dw, pw, db, pb, **options, num_threads=1),
                 "dwcy-prepared": lambda: block(x, num_threads=1),
                 "numpy-reference": lambda: ref.separable_conv2d(x, dw, pw, db, pb, **options)}
    return calls, calls["numpy-reference"]()


@pytest.mark.parametrize("implementation", ["dwcy", "dwcy-prepared", "numpy-reference"])
@pytest.mark.parametrize("kernel", ["depthwise", "pointwise", "separable"])
def test_overhead(benchmark, kernel, implementation):
    calls, expected = _calls(kernel)
    benchmark.group = f"overhead {kernel} {'x'.join(map(str, SHAPE))}, 1 thread"
    # 1000 calls per timed round: a timer read per call would add ~10 % to these times.
    result = benchmark.pedantic(calls[implementation], iterations=1000, rounds=20, warmup_rounds=1)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)
