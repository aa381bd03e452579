"""The whole MobileNetV2 (224x224): dwcy's model beside LiteRT, ONNX Runtime and PyTorch, interleaved.

    python benchmarks/network_vs_peers.py --batch 1,8 --threads 1,16

dwcy runs ``MobileNetV2.from_torch_state_dict`` of the very network the peers run (``peers.mobilenetv2``: the
same torch weights), and its logits are checked against the first peer's. Needs the project's ``peers.py``
(``$DWCY_PEERS_DIR``, else ``../shared/peers`` beside this checkout) and the peers installed beside dwcy (its
README says how); run it from outside the checkout's root. Prints one line per (batch, threads): each median
and dwcy's speed-up over the fastest peer (``peers.measure``: interleaved rounds).
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

import dwcy


def peers_module():
    default = Path(__file__).resolve().parents[1].parent / "shared" / "peers"
    sys.path.insert(0, str(Path(os.environ.get("DWCY_PEERS_DIR") or default)))
    import peers
    import torch_mobilenetv2
    return peers, torch_mobilenetv2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="1", help="batch sizes, e.g. 1,8")
    parser.add_argument("--threads", default="1", help="thread counts, e.g. 1,16")
    args = parser.parse_args()
    peers, nets = peers_module()
    model = dwcy.models.MobileNetV2.from_torch_state_dict(nets.build(0).state_dict())
    impls = [i for i in ("litert", "onnxruntime", "torch") if i in peers.available()]
    if not impls:
        sys.exit("no peer imports here: install them as ../shared/peers/README.md says")
    for batch in [int(b) for b in args.batch.split(",")]:
        for threads in [int(t) for t in args.threads.split(",")]:
            fns, x = {}, None
            for impl in impls:
                fns[impl], x = peers.mobilenetv2(impl, batch=batch, num_threads=threads)
            reference = fns[impls[0]]()
            error = float(np.abs(model(x, num_threads=threads) - reference).max() / np.abs(reference).max())
            fns["dwcy"] = lambda x=x, threads=threads: model(x, num_threads=threads)
            timing = peers.measure(fns)
            best = min(impls, key=lambda i: timing[i].median_s)
            cells = "  ".join(f"{name} {t.median_s * 1e3:.3f} ms" for name, t in timing.items())
            print(f"batch {batch}, {threads} threads: {cells}  | dwcy {timing[best].median_s / timing['dwcy'].median_s:.2f}x "
                  f"{best} (logits' error vs {impls[0]}: {error:.1e})", flush=True)


if __name__ == "__main__":
    main()
