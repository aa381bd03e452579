"""Cliffs: the depthwise kernels and options off the 3x3 path beside the 3x3 layer of the same shape.

One pytest-benchmark group per MobileNetV2 layer shape (``cliffs.LAYERS``), holding the 3x3 stride-1 layer and
each variant of ``cliffs.VARIANTS`` (5x5, 7x7, dilation 2, multiplier 2, C + 5 channels), batch 1, one thread.
Compare times per output element (``extra_info["outputs"]``); ``python benchmarks/cliffs.py`` prints those ratios
from interleaved timings, the figures to quote::

    pytest benchmarks/test_bench_cliffs.py --benchmark-only --benchmark-columns=median,iqr,rounds

CI runs it once with ``--benchmark-disable``: every call is checked against dwcy.reference.
"""

import numpy as np
import pytest

import cliffs
from dwcy import reference

CASES = {"3x3": (3, 1, 1, 0), **cliffs.VARIANTS}


@pytest.mark.parametrize("variant", CASES)
@pytest.mark.parametrize("layer", cliffs.LAYERS, ids=lambda layer: "{0}x{0}x{1}".format(*layer))
def test_cliff(benchmark, layer, variant):
    size, channels = layer
    kernel, dilation, multiplier, extra = CASES[variant]
    call, outputs = cliffs.layer_call(np.random.default_rng(0), size, channels, kernel, dilation, multiplier, extra)
    benchmark.group = f"cliffs {size}x{size}x{channels}, batch 1, 1 thread"
    benchmark.extra_info["outputs"] = outputs
    result = benchmark(call)
    x, weight, bias = call.arrays
    expected = reference.depthwise_conv2d(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64),
                                          padding="same", dilation=dilation, activation="relu6")
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4 * kernel * kernel)
