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
    function: Callable  # function(*layer.make_inputs(...), num_threads=t, **layer.keywords) -> output
    rounds: Optional[int] = None  # see the ``measure`` fixture: None lets pytest-benchmark calibrate


def parametrize(layers, implementations):
    """Decorate a benchmark ``test(measure, problem, threads, implementation)`` to run every implementation on
    every layer (in network order, numbered from 1) at every batch size and thread count."""
    problems = [
        pytest.param((position, layer, batch), id=f"{layer.name.replace(' ', '-')}-b{batch}")
        for position, layer in enumerate(layers, start=1)
        for batch in BATCHES
    ]

    def decorate(test):  # as stacked decorators would: test ids read "<problem>-<threads>-<implementation>"
        test = pytest.mark.parametrize("problem", problems, indirect=True)(test)
        test = pytest.mark.parametrize("threads", THREADS, ids=[f"t{t}" for t in THREADS])(test)
        return pytest.mark.parametrize("implementation", [pytest.param(i, id=i.name) for i in implementations])(test)

    return decorate
