"""dwcy.pointwise_conv2d vs the NumPy reference on MobileNetV2's pointwise (1x1) layers, each with bias and ReLU6.

The reference is ``x.reshape(-1, Cin) @ w``, plus bias and clip: a BLAS GEMM, which ``measure`` limits to the
benchmark's thread count, as dwcy is. ``dwcy-prepared`` is dwcy.Pointwise, the weights packed once. See
``test_bench_depthwise.py`` for how to run and read these benchmarks.
"""

import dwcy
from _bench import Implementation, parametrize, prepared
from dwcy._layers import BENCHMARK_LAYERS

IMPLEMENTATIONS = (
    Implementation("dwcy", dwcy.pointwise_conv2d),
    Implementation("dwcy-prepared", None, prepare=prepared(dwcy.Pointwise)),
    # About as fast as dwcy (0.05-10 ms a call): 50 rounds pin its median for a ratio near 1, and spare the second
    # of calibration each benchmark costs, which would take a full run of benchmarks/ past five minutes.
    Implementation("numpy-reference", dwcy.reference.pointwise_conv2d, rounds=50),
)


@parametrize(BENCHMARK_LAYERS["pointwise"], IMPLEMENTATIONS)
def test_pointwise(measure, problem, threads, implementation):
    measure(implementation, problem, threads)
