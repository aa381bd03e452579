"""What every benchmark module shares (a conftest is not meant to be imported): the batch sizes and thread counts
each layer is measured at, the record of an implementation, and the parametrization over all of them."""

import os
from typing import Callable, NamedTuple, Optional

import pytest

BATCHES = (1, 8)
# One thread, and every core: the single-core kernel and how it scales. A set: a one-core machine has one case.
THREADS = tuple(sorted({1, os.cpu_count() or 1}))


class Implementation(NamedTuple):
    name: str
    function: Optional[Callable]  # function(*layer.make_inputs(...), num_threads=t, **layer.keywords) -> output
    rounds: Optional[int] = None  # see the ``measure`` fixture: None lets pytest-benchmark calibrate
    # Or prepare(layer, inputs, threads) -> a call without arguments that returns the output: for a contender that
    # builds something once, outside the timed call (a peer's model, its inputs in its own layout).
    prepare: Optional[Callable] = None
    # Why this implementation cannot run here (a peer that does not import): its benchmarks are then skipped with
    # this reason, before the (module-scoped) problem is built.
    skip: Optional[str] = None


def prepared(cls):
    """The ``prepare`` of a dwcy-prepared contender: ``cls`` (dwcy.Depthwise, dwcy.Pointwise or dwcy.Separable)
    made from the layer's weights and options before the timed calls, which then pass x alone."""

    def prepare(layer, inputs, threads):
        x, *weights = inputs
        conv = cls(*weights, **layer.keywords)
        return lambda: conv(x, num_threads=threads)

    return prepare


def parametrize(layers, implementations, batches=BATCHES, threads=THREADS):
    """Decorate a benchmark ``test(measure, problem, threads, implementation)`` to run every implementation on
    every layer (in network order, numbered from 1) at every batch size and thread count (by default ``BATCHES``
    and ``THREADS``)."""
    problems = [
        pytest.param((position, layer, batch), id=f"{layer.name.replace(' ', '-')}-b{batch}")
        for position, layer in enumerate(layers, start=1)
        for batch in batches
    ]
    contenders = [pytest.param(i, id=i.name, marks=[pytest.mark.skip(reason=i.skip)] if i.skip else [])
                  for i in implementations]

    def decorate(test):  # as stacked decorators would: test ids read "<problem>-<threads>-<implementation>"
        test = pytest.mark.parametrize("problem", problems, indirect=True)(test)
        test = pytest.mark.parametrize("threads", threads, ids=[f"t{t}" for t in threads])(test)
        return pytest.mark.parametrize("implementation", contenders)(test)

    return decorate
