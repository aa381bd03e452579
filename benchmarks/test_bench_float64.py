"""float64 beside float32: dwcy's depthwise kernels on each MobileNetV2 depthwise layer in both dtypes.

One pytest-benchmark group per layer (``dwcy._layers``'s depthwise ``BENCHMARK_LAYERS``), batch 1, one thread;
the ratio of the medians is the float64 throughput over float32's. ``python benchmarks/float64.py`` prints those
ratios from interleaved timings, the figures to quote::

    pytest benchmarks/test_bench_float64.py --benchmark-only --benchmark-columns=median,iqr,rounds

CI runs it once with ``--benchmark-disable``: every call is checked against the float64 reference.
"""

import numpy as np
import pytest

import float64
from dwcy._layers import BENCHMARK_LAYERS


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda dtype: np.dtype(dtype).name)
@pytest.mark.parametrize("layer", BENCHMARK_LAYERS["depthwise"], ids=lambda layer: layer.name.replace(" ", "-"))
def test_float64(benchmark, layer, dtype):
    call = float64.layer_call(layer, dtype)
    benchmark.group = f"float64 vs float32, depthwise {layer.name}, batch 1, 1 thread"
    result = benchmark(call)
    assert result.dtype == dtype
    np.testing.assert_allclose(result, layer.expected(call.inputs), **layer.tolerance(dtype))
