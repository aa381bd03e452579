"""Cliffs: dwcy's depthwise time per output element off the 3x3 path, against the 3x3 stride-1 layer of the same
shape (issue 6 asks for each within 1.5x; peers are up to 10x slower on some).

    python benchmarks/cliffs.py            # MobileNetV2's 56x56x144, 14x14x576 and 112x112x32, batch 1, 1 thread
    python benchmarks/cliffs.py --quick    # shorter timings, noisier

Per layer: kernels 5x5 and 7x7, a 3x3 kernel with dilation 2, a channel multiplier of 2 and C + 5 channels (a
channel tail), each against the plain 3x3 layer, all stride 1, 'same' padding, bias, ReLU6, float32, on arrays as
NumPy allocates them. A variant and its base are timed in alternating blocks (the median of each); the ratio is
the variant's time per output element over the base's (a multiplier of 2 has twice the output elements, and
C + 5 has C + 5 per pixel). Every call writes into an output array of its own, made once by a first call
(``out=``, placed in its cache line as dwcy places a new output): with a new output per call, the allocator's
history (which earlier sizes it kept mapped) moved a ratio by up to 2.5x from one run to the next (page faults
of a fresh mapping cost more than the 14x14x576 layer itself), and with ``np.empty`` outputs where the pages of
output and input happened to lie. Run it with the Python of an environment where dwcy is installed (not with ``python
-m`` from the source root, which would import the uncompiled tree).
"""

import argparse
import statistics
import time

import numpy as np

import dwcy

LAYERS = ((56, 144), (14, 576), (112, 32))  # (H = W, C) of MobileNetV2 layers
VARIANTS = {  # name: (kernel size, dilation, multiplier, extra channels)
    "5x5": (5, 1, 1, 0),
    "7x7": (7, 1, 1, 0),
    "dilation 2": (3, 2, 1, 0),
    "multiplier 2": (3, 1, 2, 0),
    "C + 5": (3, 1, 1, 5),
}


def layer_call(rng, size, channels, kernel=3, dilation=1, multiplier=1, extra=0):
    """(a call of dwcy.depthwise_conv2d on one such layer, into an output array of its own, and the output
    elements it computes); the call's ``arrays`` are its (x, weight, bias)."""
    c = channels + extra
    x = rng.standard_normal((1, size, size, c), dtype=np.float32)
    weight_shape = (kernel, kernel, c) if multiplier == 1 else (kernel, kernel, c, multiplier)
    weight = rng.standard_normal(weight_shape, dtype=np.float32)
    bias = rng.standard_normal(c * multiplier, dtype=np.float32)
    keywords = dict(padding="same", dilation=dilation, activation="relu6", num_threads=1)
    out = dwcy.depthwise_conv2d(x, weight, bias, **keywords)  # where dwcy puts an output (_dw_phase)

    def call():
        return dwcy.depthwise_conv2d(x, weight, bias, out=out, **keywords)

    call.arrays = (x, weight, bias)
    return call, size * size * c * multiplier


def block_seconds(call, calls):
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def compare(base, variant, seconds):
    """Median seconds per call of base and variant, timed in alternating blocks for about ``seconds`` in all."""
    calls = [max(1, int(0.01 / block_seconds(f, 1))) for f in (base, variant)]
    times = ([], [])
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(times[0]) < 5:
        for f, n, t in zip((base, variant), calls, times):
            t.append(block_seconds(f, n))
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings: a first look")
    args = parser.parse_args(argv)
    seconds = 0.3 if args.quick else 1.0
    rng = np.random.default_rng(0)
    print(f"dwcy {dwcy.__version__}: depthwise time per output element over the 3x3 layer's, batch 1, 1 thread")
    print("| layer | " + " | ".join(VARIANTS) + " |")
    print("| --- |" + " ---: |" * len(VARIANTS))
    for size, channels in LAYERS:
        base, base_outputs = layer_call(rng, size, channels)
        ratios = []
        for kernel, dilation, multiplier, extra in VARIANTS.values():
            variant, outputs = layer_call(rng, size, channels, kernel, dilation, multiplier, extra)
            base_s, variant_s = compare(base, variant, seconds)
            ratios.append((variant_s / outputs) / (base_s / base_outputs))
        print(f"| {size}x{size}x{channels} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
