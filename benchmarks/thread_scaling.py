"""dwcy alone at several thread counts: median microseconds per call on the MobileNetV2 layers.

    python benchmarks/thread_scaling.py                           # every layer, batch 1 and 8, threads 1-16
    python benchmarks/thread_scaling.py --threads 1,2 --batch 1 --only depthwise

Run it with an interpreter where dwcy is installed, from outside the checkout's root (there Python would import
the uncompiled source tree). The layers are those of ``python -m dwcy bench`` (``dwcy._layers``), and the whole
network (``dwcy.models.MobileNetV2``, random weights). Each layer's thread counts take turns in 5 rounds of at
least 20 ms of calls each, so noise hits them alike; a cell is the median of the rounds' medians, and the last
column is the best speed-up over one thread. A ``<`` marks a cell more than 10 % slower than the best before
it: dwcy should never get slower with more threads (it picks fewer itself for small work). Meant for many-core
machines.
"""

import argparse
import functools
import time

import numpy as np

import dwcy
from dwcy._layers import BENCHMARK_LAYERS, MOBILENET_V2_NETWORK

FUNCTIONS = {"depthwise": dwcy.depthwise_conv2d, "pointwise": dwcy.pointwise_conv2d,
             "separable": dwcy.separable_conv2d, "network": MOBILENET_V2_NETWORK.run}
LAYERS = {**BENCHMARK_LAYERS, "network": (MOBILENET_V2_NETWORK,)}
ROUND_SECONDS = 0.02


def round_median(fn, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def calls_per_round(fn):
    """Enough calls for ROUND_SECONDS, at least 5 (fn is called once first, untimed, to warm up)."""
    fn()
    start = time.perf_counter()
    fn()
    return max(5, int(ROUND_SECONDS / max(time.perf_counter() - start, 1e-7)))


def medians(fns, rounds=5):
    """{threads: median of the rounds' median call times}, the thread counts taking turns in each round."""
    calls = {t: calls_per_round(fn) for t, fn in fns.items()}
    per_round = {t: [] for t in fns}
    for _ in range(rounds):
        for t, fn in fns.items():
            per_round[t].append(round_median(fn, calls[t]))
    return {t: float(np.median(m)) for t, m in per_round.items()}


def format_row(name, seconds):
    cells, previous = [], None
    for s in seconds.values():
        slower = previous is not None and s > 1.1 * previous
        cells.append(f" {s * 1e6:9.1f}{'<' if slower else ' '}")
        previous = s if previous is None else min(previous, s)
    speedup = seconds[next(iter(seconds))] / min(seconds.values())
    return f"{name:32s}" + "".join(cells) + f" {speedup:7.2f}x"


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
                fns = {t: functools.partial(function, *inputs, num_threads=t, **layer.keywords) for t in threads}
                print(format_row(f"{operation[:3]} b{batch} {layer.name}", medians(fns)), flush=True)


if __name__ == "__main__":
    main()
