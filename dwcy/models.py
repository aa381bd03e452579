"""MobileNetV2 inference on NHWC NumPy arrays, with dwcy's kernels.

>>> import numpy as np
>>> from dwcy.models import MobileNetV2
>>> model = MobileNetV2.random(seed=0)                  # or .load("weights.npz"), .from_torch_state_dict(sd)
>>> x = np.random.default_rng(0).standard_normal((1, 224, 224, 3), dtype=np.float32)   # NHWC
>>> model(x).shape
(1, 1000)

The network is torchvision's ``mobilenet_v2`` (width 1.0), in inference form: every batch norm folded into the
convolution before it, so each convolution has a bias. In order (``stages``, named as torchvision's modules):

- ``features.0``: the stem, a regular 3x3 stride-2 convolution from 3 to 32 channels, + ReLU6
  (im2col, then ``dwcy.pointwise_conv2d``);
- ``features.1`` ... ``features.17``: inverted residual blocks: a 1x1 expansion + ReLU6 (absent in
  ``features.1``, whose expansion factor is 1), a 3x3 depthwise convolution + ReLU6 (stride 2 in the first block
  of a stage), and a linear 1x1 projection; the depthwise layer and the projection are one
  ``dwcy.separable_conv2d`` call. A block whose stride is 1 and whose input and output widths are equal adds
  its input to its output (the skip connection);
- ``features.18``: a 1x1 convolution to 1280 channels + ReLU6;
- ``classifier``: global average pooling, then a dense layer to the classes: a 1x1 convolution of the pooled
  (N, 1, 1, 1280) features.

Every convolution pads (K - 1) // 2 zeros on each side, as PyTorch does (not TensorFlow's 'same', which pads
stride-2 layers at the bottom/right only): logits match torchvision's for the same weights. Any image size
works; 224x224 is the one the network is trained for. Images are RGB, NHWC, normalized as the weights expect
(torchvision's: ``(rgb / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``).

A model may be called from several threads at once. The logits are bitwise identical whatever ``num_threads``.

Weights file (``save``/``load``, a NumPy ``.npz``): one array per name below, float32 or float64, the layouts
of dwcy's functions (TensorFlow's), batch norm already folded in:

==================================  ======================  ===========================================
name                                shape                   layer
==================================  ======================  ===========================================
``features.0.weight``               (3, 3, 3, 32)           stem, (KH, KW, Cin, Cout)
``features.0.bias``                 (32,)
``features.{i}.expand.weight``      (Cin, hidden)           i = 2..17 (not 1): 1x1 expansion, (Cin, Cout)
``features.{i}.expand.bias``        (hidden,)
``features.{i}.depthwise.weight``   (3, 3, hidden)          i = 1..17: depthwise, (KH, KW, C)
``features.{i}.depthwise.bias``     (hidden,)
``features.{i}.project.weight``     (hidden, Cout)          i = 1..17: 1x1 projection
``features.{i}.project.bias``       (Cout,)
``features.18.weight``              (320, 1280)             last 1x1 convolution
``features.18.bias``                (1280,)
``classifier.weight``               (1280, classes)         dense layer, (in, out): logits = pooled @ W + b
``classifier.bias``                 (classes,)
==================================  ======================  ===========================================

The strides are MobileNetV2's (2 in ``features.0, 2, 4, 7, 14``, 1 elsewhere); the widths are read from the
arrays, so other width multipliers and class counts load too. A file without ``features.{i}.expand.*`` for some
i > 1 is a block without expansion.
"""

import math
import re
import threading
from typing import NamedTuple, Optional

import numpy as np

from . import _api, _args, reference
from .kernels import aligned_empty, im2col, max_threads

__all__ = ["MobileNetV2", "Layer", "Stage", "convert_torch_state_dict", "STRIDES"]

# torchvision's inverted-residual settings: expansion t, output channels c, repeats n, stride s of the first.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))
#: The depthwise strides of the 17 inverted residual blocks, features.1 ... features.17.
STRIDES = tuple(s if i == 0 else 1 for _, _, n, s in _SETTINGS for i in range(n))
_BLOCKS = len(STRIDES)
_HEAD = _BLOCKS + 1  # features.18
_STEM_STRIDE = 2
# Expansion outputs of this size and more are written into a work array kept between calls (one per model and
# calling thread, sized for the largest): glibc's malloc maps allocations above 32 MiB fresh from the kernel on
# every call, and page-faulting in and zeroing the 38.5 MB expansion of features.2 in a pass of 8 images cost ~5 %
# of the network. Smaller ones are allocated per call, which reuses memory that is still in cache.
_SCRATCH_BYTES = 32 << 20
# A batch goes through the network in passes of a few images, whose activations stay in cache (a whole batch's go
# through memory): per thread, as many images as keep the largest activation within this many bytes, at least one.
# At 224x224 (4.8 MB of float32 at most an image: one image a thread), batch 8 ran 1.2x faster in passes of one
# image on one thread than in one pass, and 1.09-1.16x in passes of two on two threads; at 160x160 (two images a
# thread) batch 12 1.11x on one thread, 0.98x on two; at 112x112 (five) 1.0x. The logits are the same, bit for bit.
_PASS_BYTES_PER_THREAD = 6 << 20


class Layer(NamedTuple):
    """One layer of a :class:`Stage`, in dwcy's layouts.

    ``kind`` is ``"conv"`` (a regular KxK convolution, weight (KH, KW, Cin, Cout)), ``"depthwise"`` (weight
    (KH, KW, C)), ``"pointwise"`` (weight (Cin, Cout)) or ``"pool"`` (global average pooling to (N, 1, 1, C);
    no weight). ``padding`` is the zeros on each of the four sides.
    """

    kind: str
    weight: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None
    stride: int = 1
    padding: int = 0
    activation: Optional[str] = None


class Stage(NamedTuple):
    """A named run of layers (``features.3``, ``classifier``), with its skip connection when ``residual``."""

    name: str
    layers: tuple
    residual: bool = False


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return dtype


# --- building the stages from the arrays of the .npz layout -------------------------------------------------------
def _expect_shape(params, name, ndim, fixed=None):
    if name not in params:
        raise ValueError(f"weights: missing array {name!r}")
    array = params[name]
    if array.ndim != ndim or any(f is not None and f != d for f, d in zip(fixed or (), array.shape)):
        want = "(" + ", ".join("?" if f is None else str(f) for f in (fixed or (None,) * ndim)) + ")"
        raise ValueError(f"weights: {name!r} has shape {array.shape}, expected {want}")
    return array


def _layer(params, prefix, kind, cin, **keywords):
    """The Layer of ``prefix.weight``/``prefix.bias``, checking that its input width is ``cin``."""
    if kind == "conv":
        weight = _expect_shape(params, prefix + ".weight", 4, (None, None, cin))
    elif kind == "depthwise":
        weight = _expect_shape(params, prefix + ".weight", 3, (None, None, cin))
    else:
        weight = _expect_shape(params, prefix + ".weight", 2, (cin,))
    bias = _expect_shape(params, prefix + ".bias", 1, (weight.shape[-1],))
    return Layer(kind, weight, bias, **keywords)


def _build_stages(params):
    """The stages of the network whose arrays are ``params`` (the .npz layout), checked for consistency."""
    stem = _layer(params, "features.0", "conv", 3, stride=_STEM_STRIDE, activation="relu6")
    kh, kw = stem.weight.shape[:2]
    if kh != kw or kh % 2 == 0:
        raise ValueError(f"weights: 'features.0.weight' must be an odd square kernel, got {kh}x{kw}")
    stages = [Stage("features.0", (stem._replace(padding=kh // 2),))]
    width = stem.weight.shape[3]
    for index, stride in enumerate(STRIDES, start=1):
        prefix, layers, cin = f"features.{index}", [], width
        if f"{prefix}.expand.weight" in params or f"{prefix}.expand.bias" in params:
            layers.append(_layer(params, prefix + ".expand", "pointwise", width, activation="relu6"))
            width = layers[-1].weight.shape[1]
        depthwise = _layer(params, prefix + ".depthwise", "depthwise", width, stride=stride, activation="relu6")
        k = depthwise.weight.shape[0]
        if depthwise.weight.shape[1] != k or k % 2 == 0:
            raise ValueError(f"weights: {prefix + '.depthwise.weight'!r} must be an odd square kernel, "
                             f"got {depthwise.weight.shape[:2]}")
        layers.append(depthwise._replace(padding=k // 2))
        layers.append(_layer(params, prefix + ".project", "pointwise", width))
        width = layers[-1].weight.shape[1]
        stages.append(Stage(prefix, tuple(layers), residual=stride == 1 and cin == width))
    head = _layer(params, f"features.{_HEAD}", "pointwise", width, activation="relu6")
    stages.append(Stage(f"features.{_HEAD}", (head,)))
    classifier = _layer(params, "classifier", "pointwise", head.weight.shape[1])
    stages.append(Stage("classifier", (Layer("pool"), classifier)))
    known = {f"{layer_prefix}.{part}" for layer_prefix in _layer_prefixes(stages) for part in ("weight", "bias")}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"weights: unexpected array(s) {', '.join(map(repr, unknown))}; "
                         "see dwcy.models for the names of a MobileNetV2")
    return tuple(stages)


def _layer_prefixes(stages):
    """The array-name prefix of every weighted layer, in order, as in the .npz layout."""
    for stage in stages:
        weighted = [layer for layer in stage.layers if layer.weight is not None]
        if stage.name.startswith("features.") and stage.name not in ("features.0", f"features.{_HEAD}"):
            roles = ["expand", "depthwise", "project"][3 - len(weighted):]
            yield from (f"{stage.name}.{role}" for role in roles)
        else:
            yield stage.name


# --- the two forward passes ---------------------------------------------------------------------------------------
def _im2col(x, kernel, stride, padding, threads):
    """(N, OH, OW, K*K*C) patches of ``x`` (N, H, W, C), taps in (kh, kw, c) order, zeros in the padding: a KxK
    convolution becomes a pointwise one with the weight (K, K, Cin, Cout) seen as (K*K*Cin, Cout). On
    ``threads`` threads (the stem at batch 8 on two threads: 3.3 ms with one NumPy copy of a zero-padded
    image, on one thread, of the 25 ms network)."""
    n, h, w, c = x.shape
    out_h = _args.output_size(h, kernel, stride, 1, padding, padding)
    out_w = _args.output_size(w, kernel, stride, 1, padding, padding)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"x: images of {h}x{w} are too small for a {kernel}x{kernel} convolution")
    patches = aligned_empty((n, out_h, out_w, kernel * kernel * c), x.dtype)
    im2col(np.ascontiguousarray(x), kernel, stride, padding, patches, _api._threads(threads))
    return patches


def _run_layer(layer, x, threads, out=None, prepared=None):
    """One layer with dwcy's kernels (a depthwise layer on its own; ``_run_stage`` fuses it with a projection);
    ``out``: where a pointwise layer writes its result; ``prepared``: the layer's dwcy.Pointwise, or None."""
    if layer.kind == "conv":
        kernel = layer.weight.shape[0]
        patches = _im2col(x, kernel, layer.stride, layer.padding, threads)
        return _api.pointwise_conv2d(patches, layer.weight.reshape(-1, layer.weight.shape[3]), layer.bias,
                                     activation=layer.activation, num_threads=threads)
    if layer.kind == "depthwise":
        return _api.depthwise_conv2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                                     activation=layer.activation, num_threads=threads)
    if layer.kind == "pointwise":
        if prepared is not None:
            return prepared(x, out=out, num_threads=threads)
        return _api.pointwise_conv2d(x, layer.weight, layer.bias, activation=layer.activation, out=out,
                                     num_threads=threads)
    if layer.kind == "pool":
        n, h, w, c = x.shape
        return x.reshape(n, h * w, c).mean(axis=1).reshape(n, 1, 1, c)
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def _fuses(layers, i):
    """Does layer i of a stage run fused with the next, as one separable block (a depthwise layer, then a 1x1
    projection)?"""
    return layers[i].kind == "depthwise" and i + 1 < len(layers) and layers[i + 1].kind == "pointwise"


def _prepare_stage(stage):
    """Per layer of a stage, what ``_run_stage`` runs it with, its weights packed once: a dwcy.Separable for a
    depthwise layer and its projection, a dwcy.Pointwise for an expansion (or the head's 1x1), else None."""
    layers, prepared = stage.layers, []
    for i, layer in enumerate(layers):
        if _fuses(layers, i):
            project = layers[i + 1]
            prepared.append(_api.Separable(layer.weight, project.weight, layer.bias, project.bias,
                                           stride=layer.stride, padding=layer.padding,
                                           depthwise_activation=layer.activation, activation=project.activation))
        elif layer.kind == "pointwise" and not (i > 0 and _fuses(layers, i - 1)):
            prepared.append(_api.Pointwise(layer.weight, layer.bias, activation=layer.activation))
        else:
            prepared.append(None)
    return tuple(prepared)


def _run_stage(stage, x, threads, scratch=None, prepared=None):
    """A stage with dwcy: a depthwise layer followed by a 1x1 projection is one separable_conv2d call.

    ``scratch(shape, dtype)``, if given, returns an array to write an expansion's output into (it dies within the
    stage), or None to allocate a fresh one. ``prepared``: the stage's ``_prepare_stage``, whose packed weights
    are used instead of the layers' (the same results, bit for bit).
    """
    y, layers, i = x, stage.layers, 0
    prepared = prepared or (None,) * len(layers)
    while i < len(layers):
        layer = layers[i]
        if layer.kind == "pointwise" and scratch is not None and i + 1 < len(layers):
            y = _run_layer(layer, y, threads, out=scratch(y.shape[:3] + (layer.weight.shape[1],), y.dtype),
                           prepared=prepared[i])
            i += 1
        elif _fuses(layers, i):
            project = layers[i + 1]
            if prepared[i] is not None:
                y = prepared[i](y, num_threads=threads)
            else:
                y = _api.separable_conv2d(y, layer.weight, project.weight, layer.bias, project.bias,
                                          stride=layer.stride, padding=layer.padding,
                                          depthwise_activation=layer.activation, activation=project.activation,
                                          num_threads=threads)
            i += 2
        else:
            y = _run_layer(layer, y, threads, prepared=prepared[i])
            i += 1
    if stage.residual:
        np.add(y, x, out=y)  # y is a fresh array of this stage's
    return y


def _reference_layer(layer, x):
    """One layer with ``dwcy.reference`` only (and NumPy): the slow path the model is tested against."""
    if layer.kind == "conv":
        # A regular convolution is a depthwise one with a channel multiplier of Cout (output channel ci*Cout + co
        # is input channel ci filtered by weight[..., ci, co]), summed over the input channels.
        kh, kw, cin, cout = layer.weight.shape
        taps = reference.depthwise_conv2d(x, layer.weight, stride=layer.stride, padding=layer.padding)
        y = taps.reshape(taps.shape[:3] + (cin, cout)).sum(axis=3) + layer.bias
        return reference.activate(y, layer.activation)
    if layer.kind == "depthwise":
        return reference.depthwise_conv2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                                          activation=layer.activation)
    if layer.kind == "pointwise":
        return reference.pointwise_conv2d(x, layer.weight, layer.bias, activation=layer.activation)
    if layer.kind == "pool":
        return x.mean(axis=(1, 2), keepdims=True)
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def _reference_stage(stage, x):
    y = x
    for layer in stage.layers:
        y = _reference_layer(layer, y)
    return y + x if stage.residual else y


# --- the model ----------------------------------------------------------------------------------------------------
class MobileNetV2:
    """MobileNetV2 inference on NHWC arrays with dwcy's kernels (see the module's documentation).

    Parameters
    ----------
    params : mapping of str to array
        The weights, named and shaped as in the module's table (the ``.npz`` layout), batch norm folded in.
    dtype : float32 or float64, optional
        The dtype of the weights and of the computation; default: that of ``features.0.weight``.
    num_threads : int, optional
        The threads of every kernel call (None: OpenMP's default); ``model(x, num_threads=...)`` overrides it.

    Build one with :meth:`random`, :meth:`load` or :meth:`from_torch_state_dict`; ``model(x)`` runs it.
    """

    def __init__(self, params, *, dtype=None, num_threads=None):
        params = dict(params)
        if dtype is None:
            first = params.get("features.0.weight")
            dtype = first.dtype if isinstance(first, np.ndarray) else np.float32
        self.dtype = _float_dtype(dtype)
        if num_threads is not None:
            _args.resolve_num_threads(num_threads)
        self.num_threads = num_threads
        arrays = {}
        for name, value in params.items():
            array = np.asarray(value)
            if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
                raise TypeError(f"weights: {name!r} has dtype {array.dtype}, expected a real number type")
            arrays[name] = np.ascontiguousarray(array, dtype=self.dtype)
        #: The stages, in order: tuples of :class:`Layer` with the arrays the model computes with.
        self.stages = _build_stages(arrays)
        classifier = self.stages[-1].layers[-1]
        self.num_classes = classifier.weight.shape[1]
        self._local = threading.local()  # per calling thread: the work array of large expansions (_scratch)
        self._prepared = self._prepare()

    # construction
    @classmethod
    def random(cls, seed=0, dtype=np.float32, *, num_classes=1000, num_threads=None):
        """A MobileNetV2 with random weights from ``seed``: He-normal convolutions (so activations stay O(1)
        through the depth of the network), small random biases. A seed gives the same weights (to rounding) in
        float32 and float64."""
        rng = np.random.default_rng(seed)

        def draw(shape, fan_in, gain):
            return rng.standard_normal(shape) * math.sqrt(gain / fan_in)

        params = {}

        def add(prefix, shape, fan_in, gain=2.0):  # gain 2 before a ReLU6 (He), 1 before a linear output
            params[prefix + ".weight"] = draw(shape, fan_in, gain)
            params[prefix + ".bias"] = 0.1 * rng.standard_normal(shape[-1])

        add("features.0", (3, 3, 3, 32), 27)
        width = 32
        index = 1
        for t, c, n, _ in _SETTINGS:
            for _ in range(n):
                hidden = width * t
                if t != 1:
                    add(f"features.{index}.expand", (width, hidden), width)
                add(f"features.{index}.depthwise", (3, 3, hidden), 9)
                add(f"features.{index}.project", (hidden, c), hidden, gain=1.0)
                width, index = c, index + 1
        add(f"features.{_HEAD}", (width, 1280), width)
        add("classifier", (1280, num_classes), 1280, gain=1.0)
        return cls(params, dtype=dtype, num_threads=num_threads)

    @classmethod
    def load(cls, path, *, dtype=None, num_threads=None):
        """The model whose weights :meth:`save` wrote to ``path`` (a ``.npz``; layout in the module's docs).
        ``dtype`` converts them (default: the file's dtype)."""
        with np.load(path, allow_pickle=False) as arrays:
            params = {name: arrays[name] for name in arrays.files}
        return cls(params, dtype=dtype, num_threads=num_threads)

    @classmethod
    def from_torch_state_dict(cls, state_dict, *, eps=1e-5, dtype=np.float32, num_threads=None):
        """The model of a PyTorch ``state_dict`` of torchvision's ``mobilenet_v2`` (``features.0.0.weight``,
        ``features.0.1.running_mean``, ..., ``classifier.1.weight``); see :func:`convert_torch_state_dict`."""
        return cls(convert_torch_state_dict(state_dict, eps=eps), dtype=dtype, num_threads=num_threads)

    def save(self, path):
        """Write the weights to ``path`` (a ``.npz``, uncompressed; NumPy adds the suffix if missing)."""
        np.savez(path, **self.arrays())

    def arrays(self):
        """The weights as ``{name: array}`` in the ``.npz`` layout (the model's own arrays: do not modify)."""
        return {f"{prefix}.{part}": getattr(layer, part)
                for prefix, layer in zip(_layer_prefixes(self.stages),
                                         (layer for stage in self.stages for layer in stage.layers
                                          if layer.weight is not None))
                for part in ("weight", "bias")}

    def astype(self, dtype):
        """The same model computing in ``dtype`` (float32 or float64)."""
        return type(self)(self.arrays(), dtype=dtype, num_threads=self.num_threads)

    # running
    def _input(self, x):
        x = self._floats(x)
        cin = self.stages[0].layers[0].weight.shape[2]
        if x.ndim != 4 or x.shape[3] != cin:
            raise ValueError(f"x: expected shape (N, H, W, {cin}) (NHWC), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"x: expected at least one image, got shape {x.shape}")
        return x

    def _floats(self, x):
        """x as a C-contiguous array of the model's dtype; a TypeError for an array of anything but floats."""
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"x: expected a float array (converted to {self.dtype}), got dtype {x.dtype}")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def __call__(self, x, *, num_threads=None):
        """Logits (N, classes) of the images ``x`` (N, H, W, 3), NHWC, converted to the model's dtype.

        ``num_threads`` overrides the model's; the result is bitwise identical for any thread count. A large
        batch goes through the network a few images at a time, whose activations stay in cache (at 224x224, one
        image per thread). An expansion's output of 32 MiB or more (large images, or many threads) goes to a work
        array that the model keeps for the calling thread until the model is deleted, so that it is not mapped
        in afresh on every call.
        """
        threads = _args.resolve_num_threads(self.num_threads if num_threads is None else num_threads)
        x = self._input(x)
        logits = np.empty((x.shape[0], self.num_classes), self.dtype)
        step = self._images_per_pass(x.shape, threads)
        for start in range(0, x.shape[0], step):
            y = x[start:start + step]
            for stage in self.stages:
                y = self._run_stage(stage, y, threads)
            logits[start:start + step] = y.reshape(y.shape[0], -1)
        return logits

    def _run_stage(self, stage, x, threads):
        return _run_stage(stage, x, threads, self._scratch, self._prepared.get(id(stage)))

    def _scratch(self, shape, dtype):
        """A work array for an expansion's output when it is large (see ``_SCRATCH_BYTES``), else None."""
        size = math.prod(shape)
        if size * dtype.itemsize < _SCRATCH_BYTES:
            return None
        flat = getattr(self._local, "scratch", None)
        if flat is None or flat.size < size or flat.dtype != dtype:
            flat = self._local.scratch = aligned_empty((size,), dtype)
        return flat[:size].reshape(shape)

    def __getstate__(self):  # picklable (for multiprocessing): the work arrays and packed weights are rebuilt
        state = dict(self.__dict__)
        del state["_local"], state["_prepared"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()
        self._prepared = self._prepare()

    def _prepare(self):
        """{id(stage): _prepare_stage(stage)}, the weights of every stage packed once (the classifier's too: one
        image's 1280 -> 1000 took 0.21 ms on one thread, as NumPy's einsum did, and 0.09 ms on two)."""
        return {id(stage): _prepare_stage(stage) for stage in self.stages}

    def forward_reference(self, x, *, num_threads=None):
        """The same logits computed layer by layer with ``dwcy.reference`` (pure NumPy; ``num_threads`` is
        ignored, as there): the slow path the model is checked against and the benchmark's baseline."""
        y = self._input(x)
        for stage in self.stages:
            y = _reference_stage(stage, y)
        return y.reshape(y.shape[0], -1)

    def run_stage(self, stage, x, *, num_threads=None):
        """One stage (an element of ``stages``) on its NHWC input ``x`` (converted to the model's dtype, as
        ``model(x)`` converts its images), as ``model(x)`` runs it."""
        return self._run_stage(stage, self._floats(x), self.num_threads if num_threads is None else num_threads)

    def reference_stage(self, stage, x):
        """One stage with ``dwcy.reference``, as :meth:`forward_reference` runs it."""
        return _reference_stage(stage, x)

    def flops(self, height=224, width=224):
        """Floating-point operations of one image (a multiply and an add per term of every convolution and of the
        classifier; biases, activations, additions and pooling not counted): 0.60 GFLOP at 224x224."""
        # weight.size: output channels x the terms of each output element (KH*KW*Cin, KH*KW or Cin).
        return sum(2 * out_height * out_width * layer.weight.size
                   for layer, out_height, out_width in self._output_sizes(height, width) if layer.weight is not None)

    def _output_sizes(self, height, width):
        """(layer, output height, output width) of every layer, in order, for one image of height x width."""
        for stage in self.stages:
            for layer in stage.layers:
                if layer.kind in ("conv", "depthwise"):
                    k = layer.weight.shape[0]
                    height = (height + 2 * layer.padding - k) // layer.stride + 1
                    width = (width + 2 * layer.padding - k) // layer.stride + 1
                elif layer.kind == "pool":
                    height = width = 1
                yield layer, height, width

    def _images_per_pass(self, shape, threads):
        """How many of the images ``shape`` (N, H, W, C) go through the network together
        (see _PASS_BYTES_PER_THREAD)."""
        largest = max(height * width * layer.weight.shape[-1]
                      for layer, height, width in self._output_sizes(shape[1], shape[2]) if layer.weight is not None)
        threads = max_threads() if threads is None else threads
        return threads * max(1, _PASS_BYTES_PER_THREAD // (max(1, largest) * self.dtype.itemsize))

    def __repr__(self):
        return (f"MobileNetV2({self.num_classes} classes, {self.dtype}, "
                f"{sum(a.size for a in self.arrays().values())} parameters, num_threads={self.num_threads})")


# --- PyTorch (torchvision) checkpoints ----------------------------------------------------------------------------
def _as_float64(value, name):
    if hasattr(value, "detach"):  # a torch.Tensor: no need to import torch to read it
        value = value.detach().cpu().double().numpy()
    array = np.asarray(value, dtype=np.float64)
    return array


def convert_torch_state_dict(state_dict, *, eps=1e-5):
    """The ``.npz``-layout arrays (float64) of a torchvision ``mobilenet_v2`` ``state_dict``, batch norm folded.

    ``state_dict`` maps torchvision's names (``features.0.0.weight``, ``features.0.1.{weight, bias, running_mean,
    running_var}``, ``features.{i}.conv.*``, ``features.18.*``, ``classifier.1.{weight, bias}``; a ``module.``
    prefix, as DataParallel writes, is dropped) to tensors or arrays. Each convolution's weight ``W`` (OIHW) and
    the batch norm after it fold into ``W * gamma / sqrt(var + eps)`` and ``beta - mean * gamma / sqrt(var + eps)``
    (``eps``: BatchNorm2d's, 1e-5 in torchvision), computed in float64, then laid out as dwcy's functions take them.
    Reading tensors needs no ``import torch`` here; torch is only needed to have made them.
    """
    names = list(state_dict)
    if names and all(name.startswith("module.") for name in names):
        state_dict = {name[len("module."):]: value for name, value in state_dict.items()}
    sd = {name: value for name, value in state_dict.items() if not name.endswith("num_batches_tracked")}
    used = set()

    def get(name):
        if name not in sd:
            raise ValueError(f"state_dict: missing {name!r} (expected torchvision's mobilenet_v2 names)")
        used.add(name)
        return _as_float64(sd[name], name)

    def fold(conv, bn):
        weight = get(conv + ".weight")
        if weight.ndim != 4:
            raise ValueError(f"state_dict: {conv + '.weight'!r} has shape {weight.shape}, expected (O, I, KH, KW)")
        gamma, beta, mean, var = (get(f"{bn}.{part}") for part in ("weight", "bias", "running_mean", "running_var"))
        scale = gamma / np.sqrt(var + eps)
        bias = beta - mean * scale
        if conv + ".bias" in sd:  # not in torchvision's, but a convolution with a bias folds as well
            bias = bias + get(conv + ".bias") * scale
        return weight * scale[:, None, None, None], bias

    params = {}
    weight, params["features.0.bias"] = fold("features.0.0", "features.0.1")
    params["features.0.weight"] = weight.transpose(2, 3, 1, 0)  # OIHW -> (KH, KW, Cin, Cout)
    blocks = sorted({int(m.group(1)) for m in map(re.compile(r"features\.(\d+)\.conv\.").match, sd) if m})
    if blocks != list(range(1, _BLOCKS + 1)):
        raise ValueError(f"state_dict: expected inverted residual blocks features.1 ... features.{_BLOCKS}, "
                         f"found {blocks}")
    for index in blocks:
        prefix, conv = f"features.{index}", f"features.{index}.conv"
        expanded = f"{conv}.3.weight" in sd  # t != 1: [expand ConvBNReLU, depthwise ConvBNReLU, project, BN]
        parts = [f"{conv}.0", f"{conv}.1", f"{conv}.2", f"{conv}.3"] if expanded else [None, f"{conv}.0", f"{conv}.1",
                                                                                       f"{conv}.2"]
        if expanded:
            weight, params[prefix + ".expand.bias"] = fold(parts[0] + ".0", parts[0] + ".1")
            params[prefix + ".expand.weight"] = weight[:, :, 0, 0].T
        weight, params[prefix + ".depthwise.bias"] = fold(parts[1] + ".0", parts[1] + ".1")
        if weight.shape[1] != 1:
            raise ValueError(f"state_dict: {parts[1] + '.0.weight'!r} has shape {weight.shape}, expected a depthwise "
                             "convolution's (C, 1, KH, KW)")
        params[prefix + ".depthwise.weight"] = weight[:, 0].transpose(1, 2, 0)  # (C, 1, KH, KW) -> (KH, KW, C)
        weight, params[prefix + ".project.bias"] = fold(parts[2], parts[3])
        params[prefix + ".project.weight"] = weight[:, :, 0, 0].T  # (Cout, Cin, 1, 1) -> (Cin, Cout)
    weight, params[f"features.{_HEAD}.bias"] = fold(f"features.{_HEAD}.0", f"features.{_HEAD}.1")
    params[f"features.{_HEAD}.weight"] = weight[:, :, 0, 0].T
    params["classifier.weight"] = get("classifier.1.weight").T  # nn.Linear's (out, in) -> (in, out)
    params["classifier.bias"] = get("classifier.1.bias")
    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"state_dict: unexpected entries {', '.join(map(repr, unused[:5]))}"
                         f"{' ...' if len(unused) > 5 else ''} (expected torchvision's mobilenet_v2)")
    return {name: np.ascontiguousarray(array) for name, array in params.items()}
