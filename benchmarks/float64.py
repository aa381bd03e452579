"""float64 against float32: dwcy's depthwise throughput on MobileNetV2's layers in float64 over its throughput in
float32 (issue 6 asks for at least 0.45; 0.5 is what twice the bytes and half the lanes allow).

    python benchmarks/float64.py            # every MobileNetV2 depthwise layer, batch 1, 1 thread
    python benchmarks/float64.py --quick    # shorter timings, noisier

Per layer: the float32 and float64 calls of ``dwcy._layers``'s layer (bias, ReLU6, 'same' padding) are timed in
alternating blocks (``cliffs.compare``, the median of each), each into an output array of its own, made once
(as in cliffs.py: a new output per call measures the allocator). The ratio is float32's time over float64's:
both do the same multiply-adds. Run it with the Python of an environment where dwcy is installed (not with
``python -m`` from the source root, which would import the uncompiled tree).
"""

import argparse
import math

import numpy as np

import dwcy
from cliffs import compare
from dwcy._layers import BENCHMARK_LAYERS


def layer_call(layer, dtype):
    """A call of dwcy.depthwise_conv2d on ``layer`` in ``dtype``, one image, one thread, into an output of its
    own; the call's ``inputs`` are those of ``layer.make_inputs``."""
    inputs = layer.make_inputs(1, dtype)
    keywords = dict(layer.keywords, num_threads=1)
    out = dwcy.depthwise_conv2d(*inputs, **keywords)

    def call():
        return dwcy.depthwise_conv2d(*inputs, out=out, **keywords)

    call.inputs = inputs
    return call


def ratios(seconds):
    """{layer name: float64 throughput over float32's}, every MobileNetV2 depthwise layer."""
    result = {}
    for layer in BENCHMARK_LAYERS["depthwise"]:
        single, double = compare(layer_call(layer, np.float32), layer_call(layer, np.float64), seconds)
        result[layer.name] = single / double
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings: a first look")
    args = parser.parse_args(argv)
    found = ratios(0.3 if args.quick else 1.0)
    print(f"dwcy {dwcy.__version__}: depthwise float64 throughput over float32's, batch 1, 1 thread")
    print("| layer | float64 / float32 |")
    print("| --- | ---: |")
    for name, ratio in found.items():
        print(f"| {name} | {ratio:.2f} |")
    print(f"| geometric mean | {math.exp(sum(map(math.log, found.values())) / len(found)):.2f} |")


if __name__ == "__main__":
    main()
