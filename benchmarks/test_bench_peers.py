"""dwcy beside its peers (PyTorch, ONNX Runtime, LiteRT's XNNPACK) on MobileNetV2's depthwise and pointwise layers.

The peers are timed through ``peers.py`` of the project's shared ``peers/`` folder (``peers.depthwise`` and
``peers.pointwise``: each builds the peer's model and converts the inputs to its layout once, then returns the call
that is timed). That folder is not part of dwcy: it is found through the environment variable ``DWCY_PEERS_DIR``,
else at ``<this checkout>/../shared/peers``. Every peer benchmark is skipped, with the reason, when the folder is
missing or the peer does not import here; dwcy is skipped too when no peer imports (it is timed on its own in
``test_bench_depthwise.py`` and ``test_bench_pointwise.py``). The peers live in a virtual environment of their own
(``peers/README.md``), never in dwcy's dependencies; install dwcy there too and run this module with that
environment's pytest::

    /tmp/peers-venv/bin/pip install .                        # dwcy, compiled, beside the peers
    /tmp/peers-venv/bin/pytest benchmarks/test_bench_peers.py -k b1
    DWCY_PEERS_DIR=/elsewhere/peers pytest benchmarks/test_bench_peers.py

The layers are ``dwcy._layers``'s ``BENCHMARK_LAYERS`` (depthwise: 3x3 'same', bias, ReLU6; pointwise: bias,
ReLU6), at batch 1 and 8, one thread; the groups are those of the other modules ("depthwise 03 56x56x144 s1,
batch 1, 1 thread"), so a run of several modules puts the NumPy reference, dwcy and the peers in one table. Every
result is checked against the float64 reference, as dwcy's are.

pytest-benchmark times one benchmark after another, so a burst of noise on a shared machine lands on whichever
ran then. For ratios to quote, use the interleaved timer of ``peers.py`` (``peers.measure``), which prints dwcy's
speed-up over the fastest peer per layer, on the same layers as here::

    P=/tmp/peers-venv/bin/python
    $P ../shared/peers/peers.py depthwise --padding same --activation relu6 --batch 1,8
    $P ../shared/peers/peers.py pointwise --activation relu6 --batch 1,8
"""

import importlib.util
import os
import sys
from pathlib import Path

from _bench import Implementation, parametrize
from dwcy._layers import BENCHMARK_LAYERS

import dwcy

PEERS = ("torch", "onnxruntime", "litert")
BATCHES = (1, 8)
THREADS = (1,)  # the single-core kernels; peers.py's command line has --threads for more


def peers_dir():
    """Where ``peers.py`` lives: ``$DWCY_PEERS_DIR``, else ``../shared/peers`` beside this checkout."""
    default = Path(__file__).resolve().parents[2] / "shared" / "peers"
    return Path(os.environ.get("DWCY_PEERS_DIR") or default)


def load_peers():
    """``(module, None)``, or ``(None, why not)`` when the folder or its ``peers.py`` is missing or fails to load."""
    folder = peers_dir()
    path = folder / "peers.py"
    if not path.is_file():
        return None, (f"no peers.py in {folder} (set DWCY_PEERS_DIR to the shared peers/ folder)")
    if "peers" in sys.modules and Path(getattr(sys.modules["peers"], "__file__", "")).resolve() == path.resolve():
        return sys.modules["peers"], None
    spec = importlib.util.spec_from_file_location("peers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = module  # as `import peers` would: peers.py imports its sibling modules by name
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules["peers"]
        return None, f"{path} does not load: {type(error).__name__}: {error}"
    return module, None


def skip_reasons():
    """``{peer: why it cannot run here}`` for each peer of ``PEERS`` that cannot (importing the peers' libraries,
    which takes a few seconds where they are installed)."""
    peers, why = load_peers()
    if peers is None:
        return {peer: why for peer in PEERS}
    usable = set(peers.available())
    import_error = getattr(peers, "_import_error", lambda peer: "not in peers.available()")
    return {peer: f"{peer} does not import here ({import_error(peer)}); see {peers_dir()}/README.md"
            for peer in PEERS if peer not in usable}


SKIPPED = skip_reasons()


def peer_implementation(peer):
    def prepare(layer, inputs, threads):
        # peers.depthwise(impl, x, weight, bias, stride=, padding=, activation=, num_threads=) and
        # peers.pointwise(impl, x, weight, bias, activation=, num_threads=) take the layer's keywords as they are.
        build = getattr(sys.modules["peers"], layer.kind)
        return build(peer, *inputs, num_threads=threads, **layer.keywords)

    return Implementation(peer, None, prepare=prepare, skip=SKIPPED.get(peer))


def implementations(function):
    alone = "no peer can run here, so dwcy is timed alone, in the module of its operation" if len(SKIPPED) == len(
        PEERS) else None
    return (Implementation("dwcy", function, skip=alone),) + tuple(peer_implementation(peer) for peer in PEERS)


@parametrize(BENCHMARK_LAYERS["depthwise"], implementations(dwcy.depthwise_conv2d), BATCHES, THREADS)
def test_depthwise_peers(measure, problem, threads, implementation):
    measure(implementation, problem, threads)


@parametrize(BENCHMARK_LAYERS["pointwise"], implementations(dwcy.pointwise_conv2d), BATCHES, THREADS)
def test_pointwise_peers(measure, problem, threads, implementation):
    measure(implementation, problem, threads)
