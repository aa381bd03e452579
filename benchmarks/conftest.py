"""The harness of the benchmarks: layer problems built once per module, and one fixture that times and checks.

A benchmark module lists what it measures; this file knows how. To add an operation, write a module like
``test_bench_depthwise.py`` with its layers (from ``dwcy._layers``) and its implementations; nothing here changes.
What the modules share besides fixtures lives in ``_bench.py``.
"""

import functools
import os
import sys
from typing import NamedTuple

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import dwcy

# benchmarks/ has no __init__.py; put it on sys.path whatever pytest's import mode, so modules can `import _bench`.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# DESIGN.md measures float32, the dtype of the networks dwcy serves.
DTYPE = np.float32


class Problem(NamedTuple):
    """One layer at one batch size: its inputs and the float64 output every implementation must match."""

    position: int  # in the network, from 1: orders the groups of pytest-benchmark's table as in the network
    layer: object  # a dwcy._layers layer
    batch: int
    inputs: tuple  # layer.make_inputs(batch, DTYPE): the positional arguments of every implementation
    expected: np.ndarray  # float64

    def group(self, threads):
        """The pytest-benchmark group: one per problem and thread count, holding every implementation."""
        plural = "" if threads == 1 else "s"
        return (f"{self.layer.kind} {self.position:02d} {self.layer.name}, "
                f"batch {self.batch}, {threads} thread{plural}")


@pytest.fixture(scope="module")
def problem(request):
    """The :class:`Problem` of ``request.param = (position, layer, batch)``; parametrize with ``indirect=True``.

    Module-scoped, so pytest runs every benchmark of one problem in a row and builds its inputs (and the float64
    reference, which costs more than a dwcy call) once, outside any timed call, keeping one problem in memory.
    """
    position, layer, batch = request.param
    inputs = layer.make_inputs(batch, DTYPE)
    return Problem(position, layer, batch, inputs, layer.expected(inputs))


@pytest.fixture
def measure(benchmark):
    """``measure(implementation, problem, threads)``: time one call and check what it returned.

    ``implementation`` has a ``name``, a ``function`` called as ``function(*problem.inputs, num_threads=threads,
    **layer.keywords)`` (or ``prepare``, which returns the call: see ``_bench.Implementation``), and ``rounds``: None to let pytest-benchmark calibrate (up to --benchmark-max-time), or
    exactly that many rounds after one warm-up, for a baseline: its ratio to dwcy needs a few samples, not the
    second of calibration (and many rounds of a slow call) that each calibrated benchmark costs.
    BLAS (the NumPy references' matmul) is limited to ``threads`` too, with threadpoolctl, entered once around
    all the calls rather than in each timed one.

    With ``--benchmark-disable`` (CI) the call runs once and is still checked.
    """

    def run(implementation, problem, threads):
        layer, batch = problem.layer, problem.batch
        benchmark.group = problem.group(threads)
        benchmark.extra_info.update(
            layer=layer.name, batch=batch, threads=threads, dtype=np.dtype(DTYPE).name,
            # Divide by the median time for GFLOP/s and GB/s.
            flops=layer.flops(batch), min_bytes=layer.min_bytes(batch, DTYPE),
        )
        if implementation.prepare is not None:
            call = implementation.prepare(layer, problem.inputs, threads)
        else:
            call = functools.partial(implementation.function, *problem.inputs, num_threads=threads,
                                     **layer.keywords)
        with threadpool_limits(limits=threads, user_api="blas"):
            if implementation.rounds is None:
                result = benchmark(call)
            else:
                result = benchmark.pedantic(call, rounds=implementation.rounds, warmup_rounds=1)
        np.testing.assert_allclose(result, problem.expected, **layer.tolerance(DTYPE),
                                   err_msg=f"{implementation.name} on {benchmark.group}")
        return result

    return run


def pytest_benchmark_update_machine_info(config, machine_info):
    # Saved runs (--benchmark-autosave) then record which build was measured: SIMD level, compiler, OpenMP.
    machine_info["dwcy"] = dwcy.config()
