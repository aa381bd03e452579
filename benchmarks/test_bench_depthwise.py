"""dwcy.depthwise_conv2d vs the NumPy reference on MobileNetV2's depthwise layers (DESIGN.md, "Measuring").

One pytest-benchmark group per layer x batch x threads, holding every implementation, so each table compares
them on the same problem in the same run: quote the ratio, not the times. Every result is checked against
the float64 reference. ``extra_info`` holds ``flops`` and ``min_bytes`` for GFLOP/s and GB/s.

    pytest benchmarks/                                     # everything, a few minutes
    pytest benchmarks/test_bench_depthwise.py              # one operation
    pytest benchmarks/ -k "b1 and t1"                      # batch 1, one thread
    pytest benchmarks/ -k "not numpy-reference"            # dwcy alone, for regression tracking
    pytest benchmarks/ --benchmark-autosave                # then later: --benchmark-compare
    pytest benchmarks/ --benchmark-disable                 # CI: each benchmark runs once, results checked

``dwcy-prepared`` is dwcy.Depthwise, the weights packed once. Add a contender (a peer, a new kernel variant) to
``IMPLEMENTATIONS``. The other operations have a module like this one (``test_bench_pointwise.py``,
``test_bench_separable.py``); the layers are ``dwcy._layers``'s ``BENCHMARK_LAYERS``, the batches, thread counts
and parametrization ``_bench.py``'s, the fixtures ``conftest.py``'s.
"""

import dwcy
from _bench import Implementation, parametrize, prepared
from dwcy._layers import BENCHMARK_LAYERS

IMPLEMENTATIONS = (
    Implementation("dwcy", dwcy.depthwise_conv2d),
    Implementation("dwcy-prepared", None, prepare=prepared(dwcy.Depthwise)),
    # The baseline takes up to ~50 ms a call (batch 8); 10 rounds pin its median well enough for a ratio and
    # keep a full run to a couple of minutes. It ignores num_threads (NumPy runs it on one thread).
    Implementation("numpy-reference", dwcy.reference.depthwise_conv2d, rounds=10),
)


@parametrize(BENCHMARK_LAYERS["depthwise"], IMPLEMENTATIONS)
def test_depthwise(measure, problem, threads, implementation):
    measure(implementation, problem, threads)
