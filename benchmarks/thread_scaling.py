"""dwcy alone at several thread counts: median microseconds per call on MobileNetV2 layers.

    python benchmarks/thread_scaling.py                    # threads 1,2,4,8,16
    python benchmarks/thread_scaling.py --threads 1,2 --quick

Run it with an interpreter where dwcy is installed, from outside the checkout's root (there Python would import
the uncompiled source tree). Each layer's thread counts take turns in 5 rounds of 40 calls, so noise hits them
alike; a cell is the median of the rounds' medians. Meant for many-core machines, where dwcy should never get
slower with more threads (it picks fewer itself for small work).
"""

import argparse
import time

import numpy as np

import dwcy

DEPTHWISE = [(1, 112, 32, 1), (1, 56, 144, 2), (1, 28, 192, 1), (1, 28, 192, 2), (1, 14, 576, 1), (1, 14, 576, 2),
             (1, 7, 960, 1), (8, 14, 576, 1), (8, 7, 960, 1)]  # (batch, H = W, C, stride)
POINTWISE = [(1, 56, 24, 144), (1, 28, 192, 32), (1, 14, 384, 64), (1, 14, 576, 96), (1, 7, 960, 320),
             (8, 14, 384, 64)]  # (batch, H = W, Cin, Cout)
QUICK = {"depthwise": [DEPTHWISE[2], DEPTHWISE[4], DEPTHWISE[6]], "pointwise": [POINTWISE[2], POINTWISE[4]]}


def median_call(fn, calls):
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def row(name, make, threads, rounds=5, calls=40):
    fns = {t: make(t) for t in threads}
    medians = {t: [] for t in threads}
    for _ in range(rounds):
        for t in threads:
            medians[t].append(median_call(fns[t], calls))
    print(f"{name:26s}" + "".join(f" {np.median(medians[t]) * 1e6:9.1f}" for t in threads), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2,4,8,16", help="thread counts, e.g. 1,2,4")
    parser.add_argument("--quick", action="store_true", help="three depthwise and two pointwise layers")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    print(f"dwcy {dwcy.__version__}, float32, relu6, bias; median us per call at num_threads =")
    print(f"{'':26s}" + "".join(f" {t:9d}" for t in threads))
    for n, h, c, s in QUICK["depthwise"] if args.quick else DEPTHWISE:
        x = rng.standard_normal((n, h, h, c), dtype=np.float32)
        w = rng.standard_normal((3, 3, c), dtype=np.float32)
        b = rng.standard_normal(c, dtype=np.float32)
        row(f"depthwise b{n} {h}x{h}x{c} s{s}", lambda t, x=x, w=w, b=b, s=s: lambda: dwcy.depthwise_conv2d(
            x, w, b, stride=s, padding=1, activation="relu6", num_threads=t), threads)
    for n, h, cin, cout in QUICK["pointwise"] if args.quick else POINTWISE:
        x = rng.standard_normal((n, h, h, cin), dtype=np.float32)
        w = rng.standard_normal((cin, cout), dtype=np.float32)
        b = rng.standard_normal(cout, dtype=np.float32)
        row(f"pointwise b{n} {h}x{h} {cin}->{cout}", lambda t, x=x, w=w, b=b: lambda: dwcy.pointwise_conv2d(
            x, w, b, activation="relu6", num_threads=t), threads)


if __name__ == "__main__":
    main()
