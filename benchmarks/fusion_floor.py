"""What fusing a separable block can gain on this machine: the fused block against the unfused pair and against
the floor of both, the same two stages on data that stays in L2 (issue 4 asks for 1.3x on the blocks whose
intermediate tensor exceeds L2).

    python benchmarks/fusion_floor.py                 # the benchmarks' blocks, batch 1 and 8, 1 thread
    python benchmarks/fusion_floor.py --quick         # shorter timings, noisier

Per block (3x3 'same' depthwise, bias, ReLU6, then the 1x1 projection with bias), float32, one thread:

- **unfused**: ``dwcy._layers.unfused_separable_conv2d``, the intermediate tensor written and read back;
  **fused**: ``dwcy.separable_conv2d``;
- **floor**: the two stages (``dwcy.Depthwise`` then ``dwcy.Pointwise``: weights packed once, each stage into an
  output of its own) on a band of the first image's rows small enough that its input, intermediate and output
  stay in L2 (``BAND_BYTES`` of intermediate; the fused kernel's bands are smaller still), less the two calls'
  fixed cost (the same kinds of call on one pixel of 16 channels), scaled to the whole batch: what these very
  kernels would take if no byte ever came from farther than L2. A fused call pays at least that, so fusing can
  gain at most ``unfused / floor`` (a generous bound: the floor also leaves out the packing of the weights and the
  calls' own costs);
- **ceiling**: the most fusing could gain with perfect kernels (``ceiling``): both stages at the FMA peak and the
  intermediate's write and read added on top, unoverlapped, at the copy bandwidth of the level that holds it (both
  measured by ``roofline.py``'s probe; no column without a C compiler).

Each time is the median of a block of calls; the blocks of the four alternate, and each figure is its best block's
(noise only ever slows a call down). Run it with the Python of an environment where dwcy is installed (not with
``python -m`` from the source root, which would import the uncompiled tree).
"""

import argparse
import math
import os

import numpy as np

import dwcy
import roofline
from dwcy._layers import BENCHMARK_LAYERS, unfused_separable_conv2d
from roofline import time_median

BAND_BYTES = 256 * 1024  # of intermediate: with the input and output of the band, well within a 1 MiB L2
ROUNDS = 3


def band_calls(block):
    """The floor's calls for ``block``: ``(band, fixed, bands)``: ``band()`` runs both stages on a band of output
    rows of one image, ``fixed()`` the same kinds of call on one pixel of 16 channels (their fixed cost), and
    ``bands`` is the number of such bands in one image. ``band.expected()`` is the float64 reference of the band."""
    x, dw_weight, pw_weight, dw_bias, pw_bias = block.make_inputs(1, np.float32)
    out_h = block.depthwise.output_shape(1)[1]
    rows = max(1, BAND_BYTES * out_h // _intermediate_bytes(block, 1))
    kernel = block.depthwise.kernel
    keywords = dict(block.keywords, padding=((0, 0), (kernel // 2, kernel // 2)))
    if rows < out_h:  # the band's input rows, from the top (no vertical padding)
        x_band = np.ascontiguousarray(x[:, :(rows - 1) * block.stride + kernel])
    else:  # the whole image
        x_band, rows, keywords["padding"] = x, out_h, block.keywords["padding"]
    band = _stages(x_band, dw_weight, pw_weight, dw_bias, pw_bias, **keywords)
    band.expected = lambda: dwcy.reference.separable_conv2d(
        *(a.astype(np.float64) for a in (x_band, dw_weight, pw_weight, dw_bias, pw_bias)), **keywords)
    ones = np.ones(16, np.float32)
    fixed = _stages(np.ones((1, 3, 3, 16), np.float32), np.ones((3, 3, 16), np.float32), np.eye(16, dtype=np.float32),
                    ones, ones, **keywords)
    return band, fixed, out_h / rows


def _stages(x, dw_weight, pw_weight, dw_bias, pw_bias, *, stride, padding, depthwise_activation, activation):
    """A call of the two stages, prepared (dwcy.Depthwise, dwcy.Pointwise), each into an output of its own."""
    depthwise = dwcy.Depthwise(dw_weight, dw_bias, stride=stride, padding=padding, activation=depthwise_activation)
    pointwise = dwcy.Pointwise(pw_weight, pw_bias, activation=activation)
    intermediate = depthwise(x, num_threads=1)
    y = pointwise(intermediate, num_threads=1)

    def call():
        return pointwise(depthwise(x, out=intermediate, num_threads=1), out=y, num_threads=1)
    return call


def measure(block, batch, seconds):
    """``{"unfused", "fused", "floor"}`` seconds of ``block`` on ``batch`` images, one thread (module docstring)."""
    inputs = block.make_inputs(batch, np.float32)
    keywords = dict(block.keywords, num_threads=1)
    band, fixed, bands = band_calls(block)
    calls = {"unfused": lambda: unfused_separable_conv2d(*inputs, **keywords),
             "fused": lambda: dwcy.separable_conv2d(*inputs, **keywords), "band": band, "fixed": fixed}
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(ROUNDS):
        for name, call in calls.items():
            best[name] = min(best[name], time_median(call, seconds))
    floor = (best.pop("band") - best.pop("fixed")) * bands * batch
    return {**best, "floor": floor}


def _intermediate_bytes(block, batch):
    """Bytes of the block's intermediate tensor (float32) on ``batch`` images."""
    return math.prod(block.depthwise.output_shape(batch)) * np.dtype(np.float32).itemsize


def ceiling(block, batch, fma_peak):
    """The most fusing could gain with perfect kernels: both stages at the FMA peak (``fma_peak`` FLOP/s), and
    the unfused pair's intermediate written and read back on top, none of it overlapped, at the copy bandwidth
    of the cache level that holds it (roofline.py's probe): ``(flops time + traffic time) / flops time``."""
    traffic = 2 * _intermediate_bytes(block, batch)
    copy_bandwidth, _ = roofline.measure_bandwidth(traffic)
    flops_time = block.flops(batch) / fma_peak
    return (flops_time + traffic / copy_bandwidth) / flops_time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings: a first look")
    parser.add_argument("--batch", default="1,8", help="batch sizes, e.g. 1,8")
    args = parser.parse_args(argv)
    seconds = 0.05 if args.quick else 0.2
    try:
        fma_peak = roofline.measure_fma_peak()
    except roofline.CompilerMissing as error:
        print(f"no ceiling column: {error}")
        fma_peak = None
    print(f"dwcy {dwcy.__version__}: fused separable blocks against the unfused pair and the floor (us), 1 thread, "
          f"{os.cpu_count()} CPUs")
    print("| block | batch | intermediate | unfused | fused | floor | fused / unfused | unfused / floor | ceiling |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in (int(b) for b in args.batch.split(",")):
        for block in BENCHMARK_LAYERS["separable"]:
            t = measure(block, batch, seconds)
            mib = _intermediate_bytes(block, batch) / 2**20
            most = f"{ceiling(block, batch, fma_peak):.2f}x" if fma_peak else "n/a"
            print(f"| {block.name} | {batch} | {mib:.1f} MiB | {t['unfused'] * 1e6:.0f} | {t['fused'] * 1e6:.0f} | "
                  f"{t['floor'] * 1e6:.0f} | {t['unfused'] / t['fused']:.2f}x | {t['unfused'] / t['floor']:.2f}x | "
                  f"{most} |", flush=True)


if __name__ == "__main__":
    main()
