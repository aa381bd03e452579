"""dwcy's prepared convolutions (weights packed once) beside its functions and the fastest peers, interleaved.

    python benchmarks/prepared_vs_peers.py --batch 1 --threads 1,2

On MobileNetV2's depthwise layers (3x3, padding 1, bias, ReLU6: ``peers.DW_LAYERS``) and pointwise ones
(``peers.PW_LAYERS``): ``dwcy.Depthwise`` / ``dwcy.Pointwise`` made once, the function on the same arrays, and each
peer's model built once (``peers.depthwise``, ``peers.pointwise``), all timed by ``peers.measure`` (interleaved
rounds). Prints per layer the medians and the prepared object's speed-up over the fastest peer, and its geometric
mean. Needs ``peers.py`` and the peers as ``network_vs_peers.py`` does; run it from outside the checkout's root.
"""

import argparse
import sys

import numpy as np

import dwcy
from network_vs_peers import peers_module

PEERS = ("litert", "onnxruntime", "torch")


def _layers(peers, kind, batch, rng):
    """(name, x, weight, bias, the prepared object, keywords of the function and the peers) per layer."""
    if kind == "depthwise":
        for size, channels, stride in peers.DW_LAYERS:
            x = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
            weight = (rng.standard_normal((3, 3, channels)) / 3).astype(np.float32)
            bias = rng.standard_normal(channels).astype(np.float32)
            keywords = dict(stride=stride, padding=1, activation="relu6")
            yield (f"{size}x{size}x{channels} s{stride}", x, weight, bias, dwcy.Depthwise(weight, bias, **keywords),
                   keywords)
    else:
        for size, cin, cout in peers.PW_LAYERS:
            x = rng.standard_normal((batch, size, size, cin)).astype(np.float32)
            weight = (rng.standard_normal((cin, cout)) / np.sqrt(cin)).astype(np.float32)
            bias = rng.standard_normal(cout).astype(np.float32)
            keywords = dict(activation="relu6")
            yield f"{size}x{size} {cin}->{cout}", x, weight, bias, dwcy.Pointwise(weight, bias, **keywords), keywords


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="1", help="batch sizes, e.g. 1,8")
    parser.add_argument("--threads", default="1", help="thread counts, e.g. 1,2")
    parser.add_argument("--only", default="depthwise,pointwise", help="depthwise, pointwise or both")
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of calls per case (peers.measure)")
    args = parser.parse_args()
    peers, _ = peers_module()
    impls = [i for i in PEERS if i in peers.available()]
    if not impls:
        sys.exit("no peer imports here: install them as ../shared/peers/README.md says")
    function = {"depthwise": dwcy.depthwise_conv2d, "pointwise": dwcy.pointwise_conv2d}
    for kind in args.only.split(","):
        for batch in [int(b) for b in args.batch.split(",")]:
            for threads in [int(t) for t in args.threads.split(",")]:
                print(f"\n{kind}, batch {batch}, {threads} threads: median us of the prepared object, the function, "
                      f"{', '.join(impls)}; the prepared object's speed-up over the fastest peer")
                speedups = []
                for name, x, weight, bias, prepared, keywords in _layers(peers, kind, batch,
                                                                          np.random.default_rng(0)):
                    fns = {"prepared": lambda: prepared(x, num_threads=threads),
                           "function": lambda: function[kind](x, weight, bias, num_threads=threads, **keywords)}
                    for impl in impls:
                        fns[impl] = getattr(peers, kind)(impl, x, weight, bias, num_threads=threads, **keywords)
                    timing = peers.measure(fns, min_time=args.min_time)
                    best = min(impls, key=lambda i: timing[i].median_s)
                    speedups.append(timing[best].median_s / timing["prepared"].median_s)
                    cells = " ".join(f"{timing[n].median_s * 1e6:.1f}" for n in fns)
                    print(f"{name}: {cells}  {speedups[-1]:.2f}x {best}", flush=True)
                print(f"geometric mean: {np.exp(np.mean(np.log(speedups))):.2f}x")


if __name__ == "__main__":
    main()
