"""How close dwcy's depthwise layers come to this machine's roofline (issue 6: at least 70 %).

First this module measures the machine's limits for one core with ``roofline.py`` (a small C probe compiled at
run time: the FP32 FMA peak, and the copy bandwidth of L1, L2, L3 and DRAM; its docstring says exactly what and
how; skipped, with the reason, where there is no C compiler). Then it times ``dwcy.depthwise_conv2d`` on each
MobileNetV2 depthwise layer of ``dwcy._layers.BENCHMARK_LAYERS`` (3x3 'same', bias, ReLU6), batch 1, one thread,
in the same groups as ``test_bench_depthwise.py``, and gives each benchmark, in ``extra_info``:

- ``roofline_s``: ``max(FLOPs / FMA peak, bytes moved / bandwidth of the level that holds them)``, bytes moved =
  input + output + weights + bias; ``roofline_bound``: what binds ("FMA", "L2", ...); ``roofline_level``: where
  the working set lives; ``fma_peak`` (FLOP/s) and ``bandwidth`` (bytes/s): the limits used. Right before each
  layer, the FMA peak and the copy bandwidth at the layer's own working set are measured again
  (``roofline.refine``): the peak is the best seen so far in the run, the bandwidth the level's or that one,
  whichever is higher;
- ``roofline_fraction``: ``roofline_s`` / dwcy's median time (1.0 = at the limit).

At the end of the run the limits and a table of the fractions are printed. ``python benchmarks/roofline.py``
prints the same table without pytest. Nothing here asserts a time; with ``--benchmark-disable`` the limits are
measured for a moment on small arrays (a smoke test: their numbers mean nothing and no fraction is computed).

    pytest benchmarks/test_bench_roofline.py
    pytest benchmarks/test_bench_roofline.py --benchmark-json=roofline.json   # extra_info saved with the times
"""

import math

import numpy as np
import pytest

import dwcy
import roofline
from _bench import Implementation, parametrize
from dwcy._layers import BENCHMARK_LAYERS


class _Report:
    """A pytest plugin, registered by the ``limits`` fixture, that prints the limits and the fractions at the end."""

    def __init__(self, limits):
        self.limits, self.rows = limits, []

    def pytest_terminal_summary(self, terminalreporter):
        if not self.rows:
            return
        write = terminalreporter.write_line
        terminalreporter.section("roofline (benchmarks/test_bench_roofline.py)")
        for line in self.limits.table().splitlines():
            write(line)
        write("")
        write(f"MobileNetV2 depthwise layers, 1 thread, float32, dwcy {dwcy.__version__} "
              f"({dwcy.config().get('simd_level', '?')}); dwcy us = pytest-benchmark's median:")
        for line in roofline.roofline_table(self.rows).splitlines():
            write(line)


@pytest.fixture(scope="module")
def report(request):
    """Measure this machine's limits (once per run) and register the reporter that prints the results."""
    smoke = request.config.getoption("benchmark_disable", False)
    try:
        limits = (roofline.measure_limits(seconds=0.001, repeats=1, max_working_set=1 << 20) if smoke
                  else roofline.measure_limits())
    except roofline.CompilerMissing as error:
        pytest.skip(f"the machine's limits cannot be measured: {error}")
    reporter = _Report(limits)
    reporter.refine_timing = (0.001, 1) if smoke else (0.02, 5)  # roofline.refine's seconds and repeats
    request.config.pluginmanager.register(reporter, f"dwcy-roofline-{id(reporter)}")
    return reporter


@parametrize(BENCHMARK_LAYERS["depthwise"], (Implementation("dwcy", dwcy.depthwise_conv2d),), batches=(1,),
             threads=(1,))
def test_depthwise_roofline(report, measure, benchmark, problem, threads, implementation):
    layer, batch = problem.layer, problem.batch
    flops, nbytes = layer.flops(batch), layer.min_bytes(batch, np.float32)
    report.limits, measured = roofline.refine(report.limits, nbytes, *report.refine_timing)
    seconds, bound, level, bandwidth = report.limits.roofline(flops, nbytes, measured)
    benchmark.extra_info.update(roofline_s=seconds, roofline_bound=bound, roofline_level=level.name,
                                fma_peak=report.limits.fma_peak, bandwidth=bandwidth)
    measure(implementation, problem, threads)
    assert seconds > 0 and math.isfinite(seconds)
    if benchmark.stats is not None:  # None with --benchmark-disable: one untimed call
        row = roofline.layer_roofline(report.limits, layer, batch, benchmark.stats.stats.median, measured)
        benchmark.extra_info["roofline_fraction"] = row.fraction
        report.rows.append(row)
