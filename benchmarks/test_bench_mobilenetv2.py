"""The whole MobileNetV2 (dwcy.models.MobileNetV2, 224x224, random weights) vs the same network built from
dwcy.reference, at batch 1 and 8, one thread and every core.

The network is one more "layer" of the harness (``dwcy._layers.MOBILENET_V2_NETWORK``): one pytest-benchmark group
per batch x threads, the result checked against the float64 reference network. ``extra_info["flops"]`` is 0.60 GFLOP
per image. See ``test_bench_depthwise.py`` for how to run and read these benchmarks; ``python -m dwcy profile``
splits the network's time by stage, against the peers too.

    pytest benchmarks/test_bench_mobilenetv2.py -k "b1 and t1"
"""

from _bench import Implementation, parametrize
from dwcy._layers import MOBILENET_V2_NETWORK

IMPLEMENTATIONS = (
    Implementation("dwcy", MOBILENET_V2_NETWORK.run),
    # ~50 ms a call at batch 1 and ~0.5 s at batch 8 (its matmuls on the benchmark's BLAS threads, the rest on one):
    # 5 rounds give its ratio to dwcy, ~6-8x, without seconds of calibration.
    Implementation("numpy-reference", MOBILENET_V2_NETWORK.run_reference, rounds=5),
)


@parametrize((MOBILENET_V2_NETWORK,), IMPLEMENTATIONS)
def test_mobilenetv2(measure, problem, threads, implementation):
    measure(implementation, problem, threads)
