"""Throughput of dwcy called from several Python threads at once, each call on one OpenMP thread.

The GIL is released for the whole kernel, so W Python threads should come close to W times the throughput
of one on W free cores (issue: "2 Python threads each calling with num_threads=1 get close to 2x the
throughput of one"). One group per layer: the same 16 calls run by 1 and by 2 Python threads; the ratio
of the two medians is the scaling. Each Python thread writes into an output of its own (out=), allocated
once: a fresh 2 MB output per call in a worker thread costs page faults that have nothing to do with dwcy.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dwcy
from dwcy._layers import MOBILENET_V2_DEPTHWISE, MOBILENET_V2_POINTWISE

CALLS = 16
LAYERS = [MOBILENET_V2_DEPTHWISE[2], MOBILENET_V2_DEPTHWISE[7], MOBILENET_V2_POINTWISE[10]]


@pytest.fixture(scope="module", params=LAYERS, ids=lambda layer: f"{layer.kind}-{layer.name.replace(' ', '-')}")
def layer_call(request):
    layer = request.param
    function = dwcy.depthwise_conv2d if layer.kind == "depthwise" else dwcy.pointwise_conv2d
    inputs = layer.make_inputs(1, np.float32)
    local = threading.local()

    def call(_):
        if not hasattr(local, "out"):
            local.out = np.empty(layer.output_shape(1), np.float32)
        return function(*inputs, num_threads=1, out=local.out, **layer.keywords)

    return layer, call


@pytest.mark.parametrize("python_threads", [1, 2])
def test_python_threads(benchmark, layer_call, python_threads):
    layer, call = layer_call
    benchmark.group = f"python threads: {layer.kind} {layer.name}, {CALLS} calls with num_threads=1"
    benchmark.extra_info.update(python_threads=python_threads, calls=CALLS, flops=CALLS * layer.flops(1))
    with ThreadPoolExecutor(max_workers=python_threads) as pool:
        results = benchmark(lambda: list(pool.map(call, range(CALLS))))
    assert len(results) == CALLS and all(np.array_equal(r, results[0]) for r in results)
