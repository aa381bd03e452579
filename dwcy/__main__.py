"""The command line: ``python -m dwcy [bench] [options]``, ``python -m dwcy profile [options]``, ``... info``.

``bench`` (the default) times dwcy against the NumPy reference on MobileNetV2's depthwise and pointwise layers, its
separable blocks (those also against dwcy's own two calls, unfused) and the whole network
(:class:`dwcy.models.MobileNetV2` against the same network built from ``dwcy.reference``), and against the peers
that are installed (PyTorch, ONNX Runtime; ``--compare`` picks them), and prints a table per section; ``--json``
saves every result, ``--plot`` a bar chart of the speedups. ``profile`` times the network stage by stage with the
same contenders, to show where the time goes and which stages lose to a peer. ``info`` prints the build and
runtime configuration. The pytest-benchmark suite in ``benchmarks/`` measures the same layers at more settings
and saves results; this is the quick look.

The progress bar and the plot use tqdm and matplotlib, the ``cli`` extra (``pip install "dwcy[cli]"``), imported
only when used: without tqdm the progress is printed as plain lines, and ``--plot`` without matplotlib says what
to install. The peers are never required.
"""

import argparse
import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import json
import math
import statistics
import sys
import time
import warnings
from typing import Callable, NamedTuple, Optional

import numpy as np

import dwcy
from dwcy import _args, reference
from dwcy._layers import BENCHMARK_LAYERS, MOBILENET_V2_NETWORK, unfused_separable_conv2d

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # a dependency of dwcy's tests, not of dwcy: without it BLAS keeps its own thread count
    threadpool_limits = None

CLI_EXTRA = 'pip install "dwcy[cli]"'


class Timing(NamedTuple):
    """How long to time each function of one case: ``rounds`` blocks, each of at least ``min_time`` seconds and
    ``min_calls`` calls, after the untimed ``SETTLE``."""

    rounds: int
    min_time: float
    min_calls: int


FULL = Timing(rounds=2, min_time=0.1, min_calls=3)
QUICK = Timing(rounds=1, min_time=0.01, min_calls=3)

# Seconds a function runs untimed before each of its blocks. Idle threads spin after a call: OpenBLAS's for
# ~0.1 s, libgomp's (dwcy's) for milliseconds. With as many threads as cores, a pool that starts while another
# spins waits for scheduler time slices instead of getting the cores: 0.04-ms dwcy calls measured 9 ms on 2 cores
# when alternated call by call with 2-thread BLAS calls.
SETTLE = 0.15


def time_interleaved(functions, timing, settle=None):
    """Median seconds of one call of each of ``functions`` (no arguments), timed in alternating blocks.

    Each round runs every function in turn for one block: untimed for ``settle`` seconds (default ``SETTLE``; at
    least one call), so the threads of the previous function's pool are asleep and the one-off costs (OpenMP
    starting its threads, page faults on fresh buffers) are paid, then timed. Alternating rounds make the noise
    of a shared machine (a busy neighbour, a clock change) hit every function alike, so their ratio holds when
    absolute times drift; the median ignores the calls a neighbour spoiled. (Blocks, not calls, alternate: see
    ``SETTLE``.)
    """
    settle = SETTLE if settle is None else settle
    samples = [[] for _ in functions]
    for _ in range(timing.rounds):
        for function, times in zip(functions, samples):
            settled = time.perf_counter() + settle
            function()  # at least once, however slow
            while time.perf_counter() < settled:
                function()
            started, calls = time.perf_counter(), 0
            while calls < timing.min_calls or time.perf_counter() - started < timing.min_time:
                begin = time.perf_counter()
                function()
                times.append(time.perf_counter() - begin)
                calls += 1
    return [statistics.median(times) for times in samples]


class Contender(NamedTuple):
    label: str  # names its columns
    function: Optional[Callable] = None  # function(*layer.make_inputs(...), num_threads=threads, **layer.keywords)
    prepare: Optional[Callable] = None  # or prepare(layer, inputs, threads) -> a call without arguments (peers)
    peer: bool = False  # another library: a failure or a wrong result is reported, not an error of dwcy's

    def bind(self, layer, inputs, threads, resolved_threads):
        """A call without arguments that runs this contender on ``inputs`` and returns its NHWC result (a peer's
        models are built and its inputs converted here, outside the timed call)."""
        if self.prepare is not None:
            return self.prepare(layer, inputs, resolved_threads)
        return functools.partial(self.function, *inputs, num_threads=threads, **layer.keywords)


class Section(NamedTuple):
    title: str
    layers: tuple  # from dwcy._layers.BENCHMARK_LAYERS, or the network
    contenders: tuple  # dwcy first: the table gives its speedup over each of the others


#: The sections of the table, in order; ``--only`` picks some. The peers' contenders are added at run time.
SECTIONS = {
    "depthwise": Section("depthwise layers", BENCHMARK_LAYERS["depthwise"], (
        Contender("dwcy", dwcy.depthwise_conv2d), Contender("reference", reference.depthwise_conv2d))),
    "pointwise": Section("pointwise layers", BENCHMARK_LAYERS["pointwise"], (
        Contender("dwcy", dwcy.pointwise_conv2d), Contender("reference", reference.pointwise_conv2d))),
    "separable": Section("separable blocks", BENCHMARK_LAYERS["separable"], (
        Contender("dwcy", dwcy.separable_conv2d), Contender("unfused", unfused_separable_conv2d),
        Contender("reference", reference.separable_conv2d))),
    "network": Section("whole network: dwcy.models.MobileNetV2 vs the same network from dwcy.reference",
                       (MOBILENET_V2_NETWORK,), (
        Contender("dwcy", MOBILENET_V2_NETWORK.run), Contender("reference", MOBILENET_V2_NETWORK.run_reference))),
}


class Row(NamedTuple):
    layer: object
    batch: int
    seconds: list  # the median time of a call of each contender; NaN for a peer that failed
    errors: list  # excess_error() of each contender's result (0.0 when it agrees with the float64 reference), or
    #               the message of the exception a peer raised

    @property
    def speedups(self):
        """How many times faster the first contender (dwcy) is than each of the others (NaN where one failed)."""
        return [other / self.seconds[0] for other in self.seconds[1:]]

    def problems(self):
        """What went wrong, per contender: "" when its result agrees with the float64 reference."""
        return [(f"failed ({error})" if isinstance(error, str) else f"off by {error:.3g}" if error != 0 else "")
                for error in self.errors]

    def check(self, contenders):
        """"ok", or which contender is wrong ("WRONG (dwcy off by 0.1)") or failed ("torch failed")."""
        notes = [f"WRONG ({c.label} {problem})" if problem.startswith("off") else f"{c.label} failed"
                 for c, problem in zip(contenders, self.problems()) if problem]
        return "; ".join(notes) or "ok"

    def cells(self, contenders):
        return ([self.layer.name, self.layer.shape_str(self.batch)] + [format_ms(t) for t in self.seconds]
                + [format_speedup(speedup) for speedup in self.speedups] + [self.check(contenders)])


def format_ms(seconds):
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.3f}"


def format_speedup(speedup):
    return "-" if math.isnan(speedup) else f"{speedup:.1f}x" if speedup >= 0.995 else f"{speedup:.2f}x"


def table_header(contenders):
    """The column names of a section's table, and which are right-aligned (the numbers)."""
    header = (["layer", "shape (NHWC)"] + [f"{c.label} ms" for c in contenders]
              + [f"vs {c.label}" for c in contenders[1:]] + ["check"])
    numbers = len(contenders) * 2 - 1
    return header, [False, False] + [True] * numbers + [False]


def excess_error(result, expected, tolerance):
    """The largest error beyond ``tolerance`` (np.allclose's rule): 0.0 when every element is within it, NaN if
    some result is NaN where the reference is not, inf if the shapes differ."""
    if result.shape != expected.shape:
        return float("inf")
    error = np.abs(result - expected)
    bad = ~(error <= tolerance["atol"] + tolerance["rtol"] * np.abs(expected))  # ~(<=): NaN counts as bad
    return float(error[bad].max()) if bad.any() else 0.0


def check_and_time(contenders, calls, expected, tolerance, timing):
    """Check each of ``calls`` (a callable, or the message of why a peer could not be prepared) against
    ``expected``, then time those that ran, interleaved. Returns (seconds, errors) as in :class:`Row`.
    What a peer raises is reported and the rest timed; what dwcy or the reference raises propagates."""
    errors = []
    for index, (contender, call) in enumerate(zip(contenders, calls)):
        if isinstance(call, str):
            errors.append(call)
            continue
        try:
            result = np.asarray(call())
        except Exception as error:
            if not contender.peer:
                raise
            errors.append(f"{type(error).__name__}: {error}")
            calls[index] = None
            continue
        if result.shape != expected.shape and result.size == expected.size:
            result = result.reshape(expected.shape)  # a peer's logits (N, classes) for (N, 1, 1, classes)
        errors.append(excess_error(result, expected, tolerance))
    timed = [call for call in calls if callable(call)]
    medians = iter(time_interleaved(timed, timing))
    return [next(medians) if callable(call) else math.nan for call in calls], errors


def bind_all(contenders, bind):
    """``bind(contender)`` for each; a peer that raises gives its message instead of a call."""
    calls = []
    for contender in contenders:
        try:
            calls.append(bind(contender))
        except Exception as error:
            if not contender.peer:
                raise
            calls.append(f"{type(error).__name__}: {error}")
    return calls


def bench_layer(layer, batch, dtype, threads, contenders, timing, resolved_threads=None):
    """Check every contender against the float64 reference once, then time them all on ``layer``.

    ``threads`` is dwcy's num_threads (None: OpenMP's default); the peers get ``resolved_threads``.
    """
    inputs = layer.make_inputs(batch, dtype)
    resolved = resolved_threads or threads or dwcy.config()["threads"]
    calls = bind_all(contenders, lambda c: c.bind(layer, inputs, threads, resolved))
    seconds, errors = check_and_time(contenders, calls, layer.expected(inputs), layer.tolerance(dtype), timing)
    return Row(layer, batch, seconds, errors)


def format_table(header, rows, right_aligned):
    """A plain-text table with aligned columns, in Markdown's pipe syntax (it renders as a table there too)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        padded = (cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(cells, widths, right_aligned))
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if right else "-" * w for w, right in zip(widths, right_aligned)]
    return "\n".join([line(header), line(rule)] + [line(row) for row in rows])


def common_keywords(layers):
    """The keyword arguments all ``layers`` share, as in a call: "padding='same', activation='relu6'"."""
    first = layers[0].keywords
    return ", ".join(f"{k}={v!r}" for k, v in first.items() if all(layer.keywords[k] == v for layer in layers))


def geometric_means(rows):
    """The geometric mean of dwcy's speedup over each other contender, over the rows where both ran."""
    means = []
    for speedups in zip(*(row.speedups for row in rows)):
        finite = [s for s in speedups if not math.isnan(s)]
        means.append(statistics.geometric_mean(finite) if finite else math.nan)
    return means


# --- progress ------------------------------------------------------------------------------------------------------
class Progress:
    """A progress bar on stderr with tqdm (the ``cli`` extra); without tqdm, a plain line per step."""

    def __init__(self, total, description):
        self.total, self.description, self.count = total, description, 0
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, desc=description, unit="case", file=sys.stderr, leave=False,
                            dynamic_ncols=True)

    @contextlib.contextmanager
    def step(self, label):
        """Around the work of one step called ``label``."""
        self.count += 1
        if self.bar is None:
            print(f"{self.description} [{self.count}/{self.total}] {label}", file=sys.stderr, flush=True)
        else:
            self.bar.set_postfix_str(label)
        yield
        if self.bar is not None:
            self.bar.update(1)

    def write(self, text):
        """Print ``text`` on stdout without breaking the bar."""
        if self.bar is None:
            print(text, flush=True)
        else:
            self.bar.write(text, file=sys.stdout)
            sys.stdout.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --- peers: PyTorch and ONNX Runtime, imported only when compared ---------------------------------------------------
def missing_module(modules):
    """The first of ``modules`` that cannot be imported here (without importing any), or None."""
    for name in modules:
        if name in sys.modules:
            if sys.modules[name] is None:  # blocked (as tests do to simulate an absent package)
                return name
            continue
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def _version(distribution, module):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return getattr(importlib.import_module(module), "__version__", "?")


def _oihw(kind, weight):
    """A dwcy-layout weight as PyTorch's/ONNX's (Cout, Cin/groups, KH, KW), and the groups."""
    if kind == "conv":  # (KH, KW, Cin, Cout)
        return np.ascontiguousarray(weight.transpose(3, 2, 0, 1)), 1
    if kind == "depthwise":  # (KH, KW, C)
        return np.ascontiguousarray(weight.transpose(2, 0, 1)[:, None]), weight.shape[2]
    if kind == "pointwise":  # (Cin, Cout)
        return np.ascontiguousarray(weight.T[:, :, None, None]), 1
    raise ValueError(f"no convolution for a {kind!r} layer")


class _Conv(NamedTuple):
    """One convolution of a benchmark layer for a peer: dwcy's layouts, explicit padding."""

    kind: str
    weight: np.ndarray
    bias: Optional[np.ndarray]
    stride: int
    pads: tuple  # (top, left, bottom, right)
    activation: Optional[str]


def layer_convs(layer, inputs):
    """The convolutions of a depthwise, pointwise or separable benchmark layer, as :class:`_Conv`."""
    if layer.kind == "pointwise":
        _, weight, bias = inputs
        return [_Conv("pointwise", weight, bias, 1, (0, 0, 0, 0), layer.activation)]
    depthwise = layer if layer.kind == "depthwise" else layer.depthwise
    keywords = depthwise.keywords
    g = _args.depthwise_geometry(inputs[0].shape, depthwise.weight_shape, keywords["stride"], keywords["padding"], 1)
    pads = (g.pad_top, g.pad_left, g.pad_bottom, g.pad_right)
    if layer.kind == "depthwise":
        _, weight, bias = inputs
        return [_Conv("depthwise", weight, bias, keywords["stride"], pads, layer.activation)]
    _, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias = inputs
    return [_Conv("depthwise", depthwise_weight, depthwise_bias, keywords["stride"], pads, layer.depthwise_activation),
            _Conv("pointwise", pointwise_weight, pointwise_bias, 1, (0, 0, 0, 0), layer.activation)]


def _stage_of(model, stage_or_none):
    return model.stages if stage_or_none is None else (stage_or_none,)


# PyTorch: eager F.conv2d on channels_last views of the NHWC arrays for layers; for stages and the network, the
# modules traced, frozen and optimized for inference (BatchNorm is folded already), as ../shared/peers does.
def _torch_runner(torch, call, threads):
    get_threads, set_threads = torch.get_num_threads, torch.set_num_threads

    def run():
        if get_threads() != threads:
            set_threads(threads)
        y = call()
        return y.numpy() if y.dim() == 2 else y.numpy().transpose(0, 2, 3, 1)  # channels_last NCHW -> NHWC view

    return run


def _torch_activation(torch, y, activation):
    if activation == "relu6":
        return y.clamp_(0, 6)
    if activation == "relu":
        return y.relu_()
    if activation == "hardswish":
        return torch.nn.functional.hardswish(y, inplace=True)
    return y


def torch_layer(layer, inputs, threads):
    """A call that runs ``layer`` (a benchmark layer, or the network) with PyTorch on ``inputs``."""
    import torch
    import torch.nn.functional as F

    if layer.kind == "network":
        (x,) = inputs
        return torch_stages(layer.model(x.dtype), None, x, threads)
    x, convs = inputs[0], layer_convs(layer, inputs)
    top, left, bottom, right = convs[0].pads
    if (top, left) != (bottom, right):  # PyTorch pads symmetrically only: pad once, here, outside the timed call
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        convs[0] = convs[0]._replace(pads=(0, 0, 0, 0))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # an NCHW view of NHWC memory: channels_last
    prepared = []
    for conv in convs:
        weight, groups = _oihw(conv.kind, conv.weight)
        bias = None if conv.bias is None else torch.from_numpy(conv.bias)
        prepared.append((torch.from_numpy(weight), bias, conv.stride, conv.pads[:2], groups, conv.activation))

    def call():
        y = xt
        for weight, bias, stride, padding, groups, activation in prepared:
            y = _torch_activation(torch, F.conv2d(y, weight, bias, stride, padding, 1, groups), activation)
        return y

    return _torch_runner(torch, call, threads)


def _torch_module(torch, model, stages):
    """``stages`` of a dwcy MobileNetV2 as a torch.nn module (eval mode, the model's dtype)."""
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return x + self.body(x)

    def layer_modules(layers):
        modules = []
        for index, layer in enumerate(layers):
            if layer.kind == "pool":
                modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # then the classifier, a Linear as torchvision's
                continue
            if layer.kind == "pointwise" and index and layers[index - 1].kind == "pool":
                module = nn.Linear(*layer.weight.shape)
                module.weight.data = torch.from_numpy(np.ascontiguousarray(layer.weight.T))
            else:
                weight, groups = _oihw(layer.kind, layer.weight)
                module = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], weight.shape[2:], layer.stride,
                                   layer.padding, groups=groups)
                module.weight.data = torch.from_numpy(weight)
            module.bias.data = torch.from_numpy(layer.bias.copy())
            modules.append(module)
            if layer.activation is not None:
                modules.append({"relu6": nn.ReLU6, "relu": nn.ReLU, "hardswish": nn.Hardswish}[layer.activation]())
        return modules

    blocks = []
    for stage in stages:
        body = nn.Sequential(*layer_modules(stage.layers))
        blocks.append(Residual(body) if stage.residual else body)
    return nn.Sequential(*blocks).eval()


def torch_stages(model, stage, x, threads):
    """A call running ``stage`` of ``model`` (None: the whole network) with PyTorch on the NHWC array ``x``:
    channels_last, traced, frozen and optimized for inference."""
    import torch

    module = _torch_module(torch, model, _stage_of(model, stage)).to(memory_format=torch.channels_last)
    xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    torch.set_num_threads(threads)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(module, xt)))

    def call():
        with torch.no_grad():
            return frozen(xt)

    return _torch_runner(torch, call, threads)


# ONNX Runtime: graphs written with the onnx package. Layers: a depthwise Conv (group=C) on NCHW data transposed
# once beforehand (ONNX Runtime has no NHWC float convolution), a pointwise layer as a Gemm on the NHWC array seen
# as a (N*H*W, Cin) matrix (no layout change). Stages and the network: one NCHW graph. Inputs and outputs bound
# once (IOBinding), as ../shared/peers does.
class _OnnxGraph:
    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []

    def constant(self, array):
        name = f"c{len(self.initializers)}"
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def node(self, op, inputs, **attributes):
        name = f"t{len(self.nodes)}"
        self.nodes.append(self.helper.make_node(op, list(inputs), [name], **attributes))
        return name

    def activation(self, x, activation):
        if activation == "relu6":
            return self.node("Clip", [x, self.constant(np.float32(0)), self.constant(np.float32(6))])
        if activation == "relu":
            return self.node("Relu", [x])
        if activation == "hardswish":
            return self.node("HardSwish", [x])
        return x

    def conv(self, x, kind, weight, bias, stride, pads, activation):
        """An NCHW convolution; ``pads`` (top, left, bottom, right)."""
        weight, groups = _oihw(kind, weight)
        y = self.node("Conv", [x, self.constant(weight), self.constant(bias)], group=groups,
                      kernel_shape=list(weight.shape[2:]), pads=[pads[0], pads[1], pads[2], pads[3]],
                      strides=[stride, stride])
        return self.activation(y, activation)

    def gemm(self, x, weight, bias, activation):
        return self.activation(self.node("Gemm", [x, self.constant(weight), self.constant(bias)]), activation)

    def stage(self, x, stage):
        y = x
        for layer in stage.layers:
            if layer.kind == "pool":
                y = self.node("Flatten", [self.node("GlobalAveragePool", [y])])
            elif layer.kind == "pointwise" and stage.layers[0].kind == "pool":
                y = self.gemm(y, layer.weight, layer.bias, layer.activation)
            else:
                y = self.conv(y, layer.kind, layer.weight, layer.bias, layer.stride, (layer.padding,) * 4,
                              layer.activation)
        return self.node("Add", [y, x]) if stage.residual else y

    def runner(self, output, x_in, y_out, result, threads):
        """A call that runs the graph (input ``x_in``, output ``output`` into ``y_out``) and returns ``result``."""
        import onnxruntime as ort
        from onnx import TensorProto

        helper = self.helper
        graph = helper.make_graph(
            self.nodes, "dwcy", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x_in.shape))],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(y_out.shape))], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        binding = session.io_binding()
        x_value, y_value = ort.OrtValue.ortvalue_from_numpy(x_in), ort.OrtValue.ortvalue_from_numpy(y_out)
        binding.bind_ortvalue_input("X", x_value)
        binding.bind_ortvalue_output(output, y_value)
        run_bound = session.run_with_iobinding

        def run():
            run_bound(binding)
            return result

        run.keep_alive = (session, x_value, y_value, x_in, y_out)
        return run


def _float32_only(x):
    if x.dtype != np.float32:
        raise TypeError(f"onnxruntime is compared on float32 only, not {x.dtype}")


def onnxruntime_layer(layer, inputs, threads):
    """A call that runs ``layer`` (a benchmark layer, or the network) with ONNX Runtime on ``inputs``."""
    x = inputs[0]
    _float32_only(x)
    if layer.kind == "network":
        return onnxruntime_stages(layer.model(x.dtype), None, x, threads)
    graph, convs = _OnnxGraph(), layer_convs(layer, inputs)
    n, h, w, _ = x.shape
    if layer.kind == "pointwise":
        (conv,) = convs
        y = np.empty((n, h, w, conv.weight.shape[1]), np.float32)
        output = graph.gemm("X", conv.weight, conv.bias, conv.activation)
        return graph.runner(output, x.reshape(n * h * w, -1), y.reshape(n * h * w, -1), y, threads)
    y = "X"
    for conv in convs:
        y = graph.conv(y, conv.kind, conv.weight, conv.bias, conv.stride, conv.pads, conv.activation)
    out = np.empty(layer.output_shape(n), np.float32).transpose(0, 3, 1, 2).copy()  # NCHW
    return graph.runner(y, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), out, out.transpose(0, 2, 3, 1), threads)


def onnxruntime_stages(model, stage, x, threads):
    """A call running ``stage`` of ``model`` (None: the whole network) with ONNX Runtime on the NHWC array ``x``
    (transposed to NCHW here)."""
    _float32_only(x)
    graph, y = _OnnxGraph(), "X"
    for each in _stage_of(model, stage):
        y = graph.stage(y, each)
    expected = model.run_stage(stage, x) if stage is not None else model(x)  # only its shape matters
    if expected.ndim == 4 and expected.shape[1:3] != (1, 1):
        out = np.empty(expected.shape, np.float32).transpose(0, 3, 1, 2).copy()
        result = out.transpose(0, 2, 3, 1)
    else:
        out = result = np.empty((x.shape[0], expected[0].size), np.float32)
    return graph.runner(y, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), out, result, threads)


class Peer(NamedTuple):
    name: str
    modules: tuple  # what must import
    distribution: str  # for the version
    prepare_layer: Callable  # (layer, inputs, threads) -> call
    prepare_stage: Callable  # (model, stage, x, threads) -> call
    how: str  # what is timed, for the lines above the tables


PEERS = {
    "torch": Peer("torch", ("torch",), "torch", torch_layer, torch_stages,
                  "PyTorch CPU: layers as eager F.conv2d on channels_last views of the NHWC arrays (a 'same' stride-2 "
                  "input padded beforehand), stages and the network traced, frozen and optimized for inference"),
    "onnxruntime": Peer("onnxruntime", ("onnxruntime", "onnx"), "onnxruntime", onnxruntime_layer,
                        onnxruntime_stages,
                        "ONNX Runtime CPU: depthwise Conv on NCHW copies of the inputs, pointwise Gemm on the NHWC "
                        "matrix, stages and the network as NCHW graphs; IOBinding, all graph optimizations"),
}


def select_peers(args, dtype):
    """The peers to compare (``--compare``, default: every one installed), printing a line for each one asked for
    by name that cannot run here."""
    asked = args.compare
    names = list(PEERS) if asked is None else asked
    chosen = []
    for name in names:
        peer = PEERS[name]
        missing = missing_module(peer.modules)
        if missing is not None:
            if asked is not None:
                what = "" if missing == name else f" needs the {missing} package to build its models, which"
                print(f"dwcy: --compare: {name}{what or ''} is not installed (pip install {missing}); "
                      f"going on without it", file=sys.stderr)
            continue
        if name == "onnxruntime" and dtype != np.float32:
            if asked is not None:
                print(f"dwcy: --compare: onnxruntime is compared on float32 only, not {dtype}; going on without it",
                      file=sys.stderr)
            continue
        chosen.append(peer)
    return chosen


def peer_contenders(peers):
    return tuple(Contender(peer.name, prepare=peer.prepare_layer, peer=True) for peer in peers)


def describe_peers(peers):
    if not peers:
        return f"no peer compared (installed ones are found by themselves: {', '.join(PEERS)}; see --compare)"
    return "\n".join(f"{peer.name} {_version(peer.distribution, peer.modules[0])}: {peer.how}" for peer in peers)


# --- bench ---------------------------------------------------------------------------------------------------------
def describe_run(args, threads, peers, what="its layers, with biases, and the whole network"):
    """The lines above the tables: what is compared, on which build, with which settings."""
    config = dwcy.config()
    default = " (OpenMP's default)" if args.threads is None else ""
    blas = (f"its matmul on BLAS limited to {threads} thread{'s' * (threads > 1)}" if threadpool_limits
            else "its matmul on BLAS's own thread count (install threadpoolctl to limit it)")
    return (
        f"dwcy {config['version']} ({config['simd_level']}) vs dwcy.reference (NumPy, {blas}) "
        f"on MobileNetV2 (224x224): {what}\n"
        f"{describe_peers(peers)}\n"
        f"batch {args.batch}, {args.dtype}, threads {threads}{default}; "
        f"median of calls in alternating blocks{', --quick' if args.quick else ''}"
    )


def section_table(section, rows):
    """The text of one section: its title, the table and dwcy's geometric-mean speedups."""
    keywords = common_keywords(section.layers)
    header, right_aligned = table_header(section.contenders)
    lines = [f"\n## {section.title}{': ' + keywords if keywords else ''}\n",
             format_table(header, [row.cells(section.contenders) for row in rows], right_aligned)]
    if len(rows) > 1:
        means = geometric_means(rows)
        vs = ", ".join(f"{format_speedup(mean)} vs {c.label}" for mean, c in zip(means, section.contenders[1:]))
        lines.append(f"\ngeometric mean speedup of {section.contenders[0].label}: {vs}")
    failures = [f"{c.label} on {row.layer.name}: {error}" for row in rows
                for c, error in zip(section.contenders, row.errors) if isinstance(error, str)]
    lines += [f"  {failure}" for failure in failures[:5]]
    return "\n".join(lines)


def row_record(key, section, row):
    """One row of the table for --json."""
    labels = [c.label for c in section.contenders]
    return {
        "section": key, "kind": row.layer.kind, "layer": row.layer.name, "shape": row.layer.shape_str(row.batch),
        "batch": row.batch, "flops": row.layer.flops(row.batch),
        "seconds": {label: _json_number(t) for label, t in zip(labels, row.seconds)},
        "speedups": {label: _json_number(s) for label, s in zip(labels[1:], row.speedups)},
        "correct": {label: not problem for label, problem in zip(labels, row.problems())},
        "errors": {label: error for label, error in zip(labels, row.errors) if isinstance(error, str)},
    }


def _json_number(value):
    return None if math.isnan(value) else value


def run_settings(args, threads):
    return {"batch": args.batch, "threads": threads, "threads_option": args.threads, "dtype": args.dtype,
            "quick": args.quick}


def write_json(path, document):
    with open(path, "w") as f:
        json.dump(document, f, indent=1, default=str)
        f.write("\n")


def write_plot(path, title, bars):
    """A PNG bar chart: ``bars`` is [(label, {other: dwcy's speedup over it})], one group of bars per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = list(dict.fromkeys(other for _, speedups in bars for other in speedups))
    positions = np.arange(len(bars))
    width = 0.8 / max(len(others), 1)
    figure, axes = plt.subplots(figsize=(max(8.0, 0.3 * len(bars) * max(1, len(others) / 2) + 2), 6))
    for index, other in enumerate(others):
        values = [speedups.get(other, math.nan) for _, speedups in bars]
        axes.bar(positions + (index - (len(others) - 1) / 2) * width, values, width, label=f"vs {other}")
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_ylabel("dwcy speedup (x, log scale; above 1: dwcy faster)")
    axes.set_xticks(positions, [label for label, _ in bars], rotation=90, fontsize=7)
    axes.set_xlim(-0.6, len(bars) - 0.4)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _blas_limit(threads):
    # The references' BLAS gets dwcy's thread count (dwcy itself runs on OpenMP, which this leaves alone).
    return threadpool_limits(limits=threads, user_api="blas") if threadpool_limits else contextlib.nullcontext()


def run_bench(args):
    timing = QUICK if args.quick else FULL
    threads = args.threads or dwcy.config()["threads"]
    dtype = np.dtype(args.dtype)
    peers = select_peers(args, dtype)
    extra = peer_contenders(peers)
    sections = {key: section._replace(contenders=section.contenders + extra) for key, section in SECTIONS.items()
                if key in (args.only or SECTIONS)}
    print(describe_run(args, threads, peers), flush=True)
    progress = Progress(sum(len(section.layers) for section in sections.values()), "bench")
    results = []
    try:
        with _blas_limit(threads):
            for key, section in sections.items():
                rows = []
                for layer in section.layers:
                    with progress.step(f"{key} {layer.name}"):
                        rows.append(bench_layer(layer, args.batch, dtype, args.threads, section.contenders, timing,
                                                threads))
                results.append((key, section, rows))
                progress.write(section_table(section, rows))
    finally:
        progress.close()
    if args.json:
        write_json(args.json, {
            "command": "bench", "dwcy": dwcy.config(), "settings": run_settings(args, threads),
            "peers": {peer.name: _version(peer.distribution, peer.modules[0]) for peer in peers},
            "layers": [row_record(key, section, row) for key, section, rows in results for row in rows],
            "geometric_mean_speedups": {key: {c.label: _json_number(mean)
                                              for c, mean in zip(section.contenders[1:], geometric_means(rows))}
                                        for key, section, rows in results},
        })
        print(f"\nresults written to {args.json}")
    if args.plot:
        bars = [(f"{key}: {row.layer.name}", dict(zip((c.label for c in section.contenders[1:]), row.speedups)))
                for key, section, rows in results for row in rows]
        write_plot(args.plot, f"dwcy speedups, MobileNetV2 224x224, batch {args.batch}, {args.dtype}, "
                              f"{threads} thread{'s' * (threads > 1)}", bars)
        print(f"plot written to {args.plot}")
    wrong = [f"{key} {row.layer.name}" for key, section, rows in results for row in rows
             if any(problem for c, problem in zip(section.contenders, row.problems())
                    if not c.peer)]
    if wrong:
        print(f"\nWRONG: a result disagrees with the float64 reference on {len(wrong)} layer(s): {', '.join(wrong)}")
        return 1
    return 0


# --- profile -------------------------------------------------------------------------------------------------------
class StageCase(NamedTuple):
    """A stage of the network as a row of the profile."""

    name: str
    layers: str  # what it computes, in short
    input_shape: tuple
    output_shape: tuple
    kind: str = "stage"

    def shape_str(self, batch):
        dims = ("x".join(map(str, shape)) for shape in (self.input_shape, self.output_shape))
        return " -> ".join(dims)

    def flops(self, batch):
        return 0


def describe_stage(stage):
    """``"1x1 24->144, dw 3x3 s2, 1x1 144->32, +skip"``."""
    parts = []
    for index, layer in enumerate(stage.layers):
        if layer.kind == "conv":
            k, _, cin, cout = layer.weight.shape
            parts.append(f"conv {k}x{k} s{layer.stride} {cin}->{cout}")
        elif layer.kind == "depthwise":
            k = layer.weight.shape[0]
            parts.append(f"dw {k}x{k} s{layer.stride}")
        elif layer.kind == "pointwise":
            dense = index and stage.layers[index - 1].kind == "pool"
            parts.append(f"{'dense' if dense else '1x1'} {layer.weight.shape[0]}->{layer.weight.shape[1]}")
        else:
            parts.append("avg pool")
    return ", ".join(parts + ["+skip"] * stage.residual)


def run_profile(args):
    timing = QUICK if args.quick else FULL
    threads = args.threads or dwcy.config()["threads"]
    dtype = np.dtype(args.dtype)
    peers = select_peers(args, dtype)
    network = MOBILENET_V2_NETWORK
    model = network.model(dtype)
    exact = model.astype(np.float64)  # the same (rounded) weights, for the float64 reference of every stage
    (x,) = network.make_inputs(args.batch, dtype)
    stage_inputs, y = [], x
    for stage in model.stages:
        stage_inputs.append(y)
        y = model.run_stage(stage, y, num_threads=args.threads)
    contenders = (Contender("dwcy"), Contender("reference")) + peer_contenders(peers)
    print(describe_run(args, threads, peers, "stage by stage, each on its own input (the activations of one "
                                             "batch through the network), then the whole network"), flush=True)
    progress = Progress(len(model.stages) + 1, "profile")
    rows = []
    try:
        with _blas_limit(threads):
            for stage, stage64, inp in zip(model.stages, exact.stages, stage_inputs):
                with progress.step(stage.name):
                    def bind(contender, stage=stage, inp=inp):
                        if contender.label == "dwcy":
                            return functools.partial(model.run_stage, stage, inp, num_threads=args.threads)
                        if contender.label == "reference":
                            return functools.partial(model.reference_stage, stage, inp)
                        return PEERS[contender.label].prepare_stage(model, stage, inp, threads)

                    calls = bind_all(contenders, bind)
                    expected = exact.reference_stage(stage64, inp.astype(np.float64))
                    seconds, errors = check_and_time(contenders, calls, expected, network.tolerance(dtype), timing)
                    case = StageCase(stage.name, describe_stage(stage), inp.shape, expected.shape)
                    rows.append(Row(case, args.batch, seconds, errors))
            with progress.step("whole network"):
                network_contenders = SECTIONS["network"].contenders + peer_contenders(peers)
                whole = bench_layer(network, args.batch, dtype, args.threads, network_contenders, timing, threads)
    finally:
        progress.close()
    print()
    print(profile_table(contenders, rows, whole))
    losses = [(row.layer.name, c.label, speedup) for row in rows
              for c, speedup in zip(contenders[1:], row.speedups) if c.peer and speedup < 1]
    if losses:
        listed = ", ".join(f"{name} ({speedup:.2f}x vs {label})" for name, label, speedup in
                           sorted(losses, key=lambda loss: loss[2]))
        print(f"\nstages where a peer is faster than dwcy (dwcy's speedup below 1), worst first: {listed}")
    elif peers:
        print("\ndwcy is faster than every peer on every stage")
    if args.json:
        labels = [c.label for c in contenders]
        write_json(args.json, {
            "command": "profile", "dwcy": dwcy.config(), "settings": run_settings(args, threads),
            "peers": {peer.name: _version(peer.distribution, peer.modules[0]) for peer in peers},
            "stages": [{"stage": row.layer.name, "layers": row.layer.layers, "shape": row.layer.shape_str(args.batch),
                        "seconds": {label: _json_number(t) for label, t in zip(labels, row.seconds)},
                        "speedups": {label: _json_number(s) for label, s in zip(labels[1:], row.speedups)},
                        "correct": {label: not p for label, p in zip(labels, row.problems())}}
                       for row in rows],
            "network": row_record("network", SECTIONS["network"]._replace(contenders=contenders), whole),
        })
        print(f"\nresults written to {args.json}")
    wrong = [row.layer.name for row in rows + [whole]
             if any(problem for c, problem in zip(contenders, row.problems()) if not c.peer)]
    if wrong:
        print(f"\nWRONG: a result disagrees with the float64 reference on: {', '.join(wrong)}")
        return 1
    return 0


def profile_table(contenders, rows, whole):
    """The profile: a row per stage with dwcy's share of the sum, then the sum and the whole network in one call."""
    total = sum(row.seconds[0] for row in rows)
    header = (["stage", "layers", "shape (NHWC)"] + [f"{c.label} ms" for c in contenders] + ["dwcy share"]
              + [f"vs {c.label}" for c in contenders[1:]] + ["check"])
    right = [False] * 3 + [True] * (2 * len(contenders)) + [False]

    def cells(name, layers, shape, seconds, speedups, check):
        share = f"{seconds[0] / total * 100:.1f}%" if name != "whole network" else ""
        return ([name, layers, shape] + [format_ms(t) for t in seconds] + [share]
                + [format_speedup(s) for s in speedups] + [check])

    lines = [cells(row.layer.name, row.layer.layers, row.layer.shape_str(row.batch), row.seconds, row.speedups,
                   row.check(contenders)) for row in rows]
    sums = [sum(row.seconds[i] for row in rows) for i in range(len(contenders))]
    lines.append(cells("sum of stages", "", "", sums, [s / sums[0] for s in sums[1:]], ""))
    lines.append(cells("whole network", "one call", whole.layer.shape_str(whole.batch), whole.seconds,
                       whole.speedups, whole.check(contenders)))
    return format_table(header, lines, right)


# --- info and the parser -------------------------------------------------------------------------------------------
def run_info(args):  # every command takes the parsed arguments
    dwcy.show_config()
    return 0


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def section_names(text):
    """``--only``'s value: section names, comma-separated."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    return names


def peer_names(text):
    """``--compare``'s value: peer names, comma-separated, or ``none``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return []
    unknown = [name for name in names if name not in PEERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown peer {unknown[0] if unknown else text!r}; choose from "
                                         f"{', '.join(PEERS)} (comma-separated), or none")
    return list(dict.fromkeys(names))


def add_common_options(parser, quick_help):
    parser.add_argument("--batch", type=positive_int, default=1, metavar="N", help="images per call (default: 1)")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="threads of dwcy (num_threads) and of every peer (default: OpenMP's default, i.e. "
                             "OMP_NUM_THREADS or every core); the reference's matmul gets as many BLAS threads, "
                             "the rest of it runs on one")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="dtype of the inputs, weights and outputs (default: float32; ONNX Runtime is compared "
                             "on float32 only)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--compare", type=peer_names, default=None, metavar="PEER[,PEER]",
                        help=f"the other libraries to time beside dwcy, of {', '.join(PEERS)}, or none (default: "
                             "those installed; ONNX Runtime also needs the onnx package). A peer asked for that is "
                             "not installed is named in a one-line message and left out")
    parser.add_argument("--json", metavar="PATH", help="also write every result (each layer's times, speedups and "
                                                       "checks, and the settings) to PATH as JSON")


def add_bench_parser(commands):
    bench = commands.add_parser(
        "bench", help="time dwcy against the NumPy reference and the installed peers on MobileNetV2's layers and "
                      "the whole network (the default)",
        description="Time dwcy against dwcy.reference (NumPy), and against PyTorch and ONNX Runtime when installed, "
                    "on the depthwise and pointwise layers, the separable blocks (also against dwcy's depthwise "
                    "then pointwise calls, unfused) and the whole network of MobileNetV2 (224x224, random weights: "
                    "dwcy.models.MobileNetV2 against the same network built from dwcy.reference); check every "
                    "result against float64, and print a table per section with dwcy's speedups and their "
                    "geometric means. Exits with status 1 if a result of dwcy's is wrong. A progress bar needs "
                    f"tqdm and --plot matplotlib: {CLI_EXTRA}.")
    add_common_options(bench, "time each function on each case in one short block instead of two longer ones: "
                              "~25 s in all instead of ~50 s without peers, noisier")
    bench.add_argument("--only", type=section_names, action="extend", default=None, metavar="SECTION[,SECTION]",
                       help=f"time only these sections, of {', '.join(SECTIONS)} (repeatable; default: all)")
    bench.add_argument("--plot", metavar="PATH", help="also draw dwcy's speedup over each other contender, per "
                                                      f"layer, as a PNG bar chart at PATH (needs matplotlib: "
                                                      f"{CLI_EXTRA})")
    bench.set_defaults(run=run_bench, parser=bench)


def add_profile_parser(commands):
    profile = commands.add_parser(
        "profile", help="time the whole MobileNetV2 stage by stage, to see where the time goes and which stages "
                        "lose to a peer",
        description="Run dwcy.models.MobileNetV2 (224x224, random weights) once, then time each of its 20 stages "
                    "(the stem, the 17 inverted residual blocks, the last 1x1 convolution, pooling and the "
                    "classifier) on its own input with dwcy, the NumPy reference and the installed peers, and the "
                    "whole network in one call; print each stage's times, its share of dwcy's total and dwcy's "
                    "speedups, and name the stages where a peer is faster.")
    add_common_options(profile, "time each stage in one short block per contender instead of two longer ones: "
                                "~10 s instead of ~25 s without peers, noisier")
    profile.set_defaults(run=run_profile, parser=profile, plot=None)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m dwcy",
        description="dwcy: fast CPU kernels for depthwise-separable convolutions. "
                    "With no command, or with only bench's options, runs bench.")
    parser.add_argument("--version", action="version", version=f"dwcy {dwcy.__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_bench_parser(commands)
    add_profile_parser(commands)
    info = commands.add_parser("info", help="print dwcy's build and runtime configuration (dwcy.show_config())",
                               description="Print the version, compiler, flags, SIMD level, OpenMP runtime and "
                                           "default thread count.")
    info.set_defaults(run=run_info)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # bench is the default: `python -m dwcy --quick` means `python -m dwcy bench --quick`. The top-level flags
    # stay with the top-level parser, and so does an unknown word, for argparse to name the valid commands.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "bench")
    args = parser.parse_args(argv)
    if getattr(args, "plot", None) and missing_module(("matplotlib",)):
        args.parser.error(f"--plot needs matplotlib, which is not installed: {CLI_EXTRA}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
