"""dwcy alone at several thread counts: median microseconds per call on the MobileNetV2 layers.

    python benchmarks/thread_scaling.py                           # every layer, batch 1 and 8, threads 1-16
    python benchmarks/thread_scaling.py --threads 1,2 --batch 1 --only depthwise

Run it with an interpreter where dwcy is installed, from outside the checkout's root (there Python would import
the uncompiled source tree). The layers are those of ``python -m dwcy bench`` (``dwcy._layers``), and the whole
network (``dwcy.models.MobileNetV2``, random weights). Each layer's thread counts take turns in 5 rounds of at
least 20 ms of calls each (``python -m dwcy``'s interleaved timer), so noise hits them alike; a cell is the median
of all those calls, and the last column is the best speed-up over one thread. A ``<`` marks a cell more than 10 %
slower than the best before it: dwcy should never get slower with more threads (it picks fewer itself for small
work). Meant for many-core machines.
"""

import argparse
import functools

import dwcy
from dwcy.__main__ import Timing, time_interleaved
from dwcy._layers import BENCHMARK_LAYERS, MOBILENET_V2_NETWORK

FUNCTIONS = {"depthwise": dwcy.depthwise_conv2d, "pointwise": dwcy.pointwise_conv2d,
             "separable": dwcy.separable_conv2d, "network": MOBILENET_V2_NETWORK.run}
LAYERS = {**BENCHMARK_LAYERS, "network": (MOBILENET_V2_NETWORK,)}
# 5 rounds of at least 20 ms of calls. No settling between blocks (python -m dwcy's SETTLE): every block is
# dwcy's own OpenMP pool, and 0.15 s a block would make the 90 rows x 5 thread counts last 6 minutes more.
TIMING = Timing(rounds=5, min_time=0.02, min_calls=5)


def format_row(name, seconds):
    """A table row: each thread count's time, ``<`` where it is 10 % slower than the best of the counts before
    it, and the best speed-up over the first count."""
    cells, best = [], float("inf")
    for s in seconds.values():
        cells.append(f" {s * 1e6:9.1f}{'<' if s > 1.1 * best else ' '}")
        best = min(best, s)
    return f"{name:32s}" + "".join(cells) + f" {next(iter(seconds.values())) / best:7.2f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2,4,8,16", help="thread counts (default: 1,2,4,8,16)")
    parser.add_argument("--batch", default="1,8", help="batch sizes (default: 1,8)")
    parser.add_argument("--only", default=",".join(FUNCTIONS), help="operations (default: %(default)s)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    print(f"dwcy {dwcy.__version__}, float32; median us per call at num_threads =")
    print(f"{'':32s}" + "".join(f" {t:9d} " for t in threads) + "    best")
    for operation in args.only.split(","):
        function = FUNCTIONS[operation]
        for batch in batches:
            for layer in LAYERS[operation]:
                inputs = layer.make_inputs(batch)
                fns = [functools.partial(function, *inputs, num_threads=t, **layer.keywords) for t in threads]
                seconds = dict(zip(threads, time_interleaved(fns, TIMING, settle=0.0)))
                print(format_row(f"{operation[:3]} b{batch} {layer.name}", seconds), flush=True)


if __name__ == "__main__":
    main()
