"""The layer shapes dwcy is measured on: MobileNetV2 at 224x224 (DESIGN.md, "Measuring").

This module is the one list of them, shared by ``python -m dwcy bench`` and ``benchmarks/``
(``BENCHMARK_LAYERS``: what both measure, per operation). A layer knows its shape, the keyword arguments that
reproduce it, how to build random inputs for it, how much work it is (flops, bytes) and how close a result
must come to the float64 reference. A separable block is made of a depthwise and a pointwise layer, which keep
the shape rules of their stage.

>>> layer = MOBILENET_V2_DEPTHWISE[1]
>>> layer.name, layer.output_shape(batch=8)
('112x112x96 s2', (8, 56, 56, 96))
>>> block = MOBILENET_V2_SEPARABLE[1]
>>> block.name, block.pointwise.name, block.output_shape(batch=8)
('112x112x96 s2 to 24', '56x56x96 to 24', (8, 56, 56, 24))
"""

import functools
import math
from collections import namedtuple

import numpy as np

from . import _api, _args, reference

__all__ = ["DepthwiseLayer", "PointwiseLayer", "SeparableLayer", "MOBILENET_V2_DEPTHWISE", "MOBILENET_V2_POINTWISE",
           "MOBILENET_V2_SEPARABLE", "BENCHMARK_LAYERS", "flops", "unfused_separable_conv2d", "NetworkLayer",
           "MOBILENET_V2_NETWORK"]

# Allowed distance from the float64 reference, in units of the dtype's eps per term of the sum behind each
# output element. Rounding grows at worst linearly with the number of terms (a 3x3 float32 depthwise result is
# observed ~1.4e-7 relative off); 100 eps per term (~1e-4 for 3x3 float32) leaves room for that and for
# cancellation, while a wrong tap, bias, stride or activation is off by O(1) because the inputs are O(1).
_EPS_PER_TERM = 100


def flops(output_shape, terms):
    """Floating-point operations of a convolution: a multiply and an add per term of each output element.

    ``terms`` is KH*KW for a depthwise layer and Cin for a pointwise one. Bias and activation are not counted,
    as in XNNPACK's and oneDNN's benchmarks, so GFLOP/s figures compare with theirs.
    """
    return 2 * terms * math.prod(output_shape)


def _dims(shape):
    return "x".join(str(d) for d in shape)


def _random(rng, shape, scale, dtype):
    # Drawn in float64 then rounded, so a seed gives the same values (to rounding) in every dtype.
    return (rng.standard_normal(shape) * scale).astype(dtype)


class _Layer:
    """What every layer kind shares; a kind provides ``terms``, ``output_channels``, ``weight_shape``,
    ``input_shape(batch)``, ``output_shape(batch)``, ``keywords`` and ``reference_function``."""

    __slots__ = ()

    def flops(self, batch):
        """Floating-point operations of one call on ``batch`` images (see :func:`flops`)."""
        return flops(self.output_shape(batch), self.terms)

    def min_bytes(self, batch, dtype=np.float32):
        """Bytes a call must move at least: read the input, weights and bias once, write the output once."""
        elements = (math.prod(self.input_shape(batch)) + math.prod(self.weight_shape)
                    + self.output_channels + math.prod(self.output_shape(batch)))
        return elements * np.dtype(dtype).itemsize

    def shape_str(self, batch):
        """``"1x112x112x32 -> 1x56x56x32"``: input and output shapes, NHWC."""
        return f"{_dims(self.input_shape(batch))} -> {_dims(self.output_shape(batch))}"

    def tolerance(self, dtype):
        """``rtol``/``atol`` for ``np.allclose``/``assert_allclose`` of a ``dtype`` result vs :meth:`expected`."""
        rtol = _EPS_PER_TERM * self.terms * float(np.finfo(dtype).eps)
        # The outputs are O(1) (weights are scaled by 1/sqrt(terms)), so atol = rtol covers values near zero.
        return {"rtol": rtol, "atol": rtol}

    def make_inputs(self, batch, dtype=np.float32, seed=0):
        """Random positional arguments for ``batch`` images: ``(x, weight, bias)``, or for a separable block
        ``(x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias)``.

        x is standard normal and the weights are scaled by 1/sqrt(terms), so the outputs are O(1): a ReLU6 after
        them zeroes about half, passes most of the rest and clips a few at 6, exercising every branch.
        """
        rng = np.random.default_rng(seed)
        x = _random(rng, self.input_shape(batch), 1.0, dtype)
        return (x, *self._parameters(rng, dtype))

    def _parameters(self, rng, dtype):
        weight = _random(rng, self.weight_shape, 1 / math.sqrt(self.terms), dtype)
        bias = _random(rng, (self.output_channels,), 0.5, dtype)
        return weight, bias

    def expected(self, inputs):
        """The float64 reference output for ``inputs`` (from :meth:`make_inputs`): what implementations are
        checked against."""
        return self.reference_function(*(a.astype(np.float64) for a in inputs), **self.keywords)


class DepthwiseLayer(_Layer, namedtuple("DepthwiseLayer", "size channels stride kernel activation",
                                        defaults=(3, "relu6"))):
    """A square ``kernel`` x ``kernel`` depthwise layer with 'same' padding on ``size`` x ``size`` images.

    MobileNetV2's are 3x3, each followed by batch norm (folded into the bias) and ReLU6.
    """

    __slots__ = ()
    kind = "depthwise"
    reference_function = staticmethod(reference.depthwise_conv2d)

    @property
    def name(self):
        return f"{self.size}x{self.size}x{self.channels} s{self.stride}"

    @property
    def terms(self):
        return self.kernel * self.kernel

    @property
    def output_channels(self):
        return self.channels

    @property
    def weight_shape(self):
        return (self.kernel, self.kernel, self.channels)

    @property
    def keywords(self):
        """The keyword arguments of ``depthwise_conv2d`` (dwcy's or the reference's) for this layer."""
        return {"stride": self.stride, "padding": "same", "activation": self.activation}

    def input_shape(self, batch):
        return (batch, self.size, self.size, self.channels)

    def output_shape(self, batch):
        geometry = _args.depthwise_geometry(self.input_shape(batch), self.weight_shape, self.stride, "same", 1)
        return geometry.out_shape


class PointwiseLayer(_Layer, namedtuple("PointwiseLayer", "size cin cout activation", defaults=(None,))):
    """A 1x1 convolution from ``cin`` to ``cout`` channels on ``size`` x ``size`` images."""

    __slots__ = ()
    kind = "pointwise"
    reference_function = staticmethod(reference.pointwise_conv2d)

    @property
    def name(self):
        return f"{self.size}x{self.size}x{self.cin} to {self.cout}"

    @property
    def terms(self):
        return self.cin

    @property
    def output_channels(self):
        return self.cout

    @property
    def weight_shape(self):
        return (self.cin, self.cout)

    @property
    def keywords(self):
        """The keyword arguments of ``pointwise_conv2d`` (dwcy's or the reference's) for this layer."""
        return {"activation": self.activation}

    def input_shape(self, batch):
        return (batch, self.size, self.size, self.cin)

    def output_shape(self, batch):
        return (batch, self.size, self.size, self.cout)


class SeparableLayer(_Layer, namedtuple("SeparableLayer", "size channels stride cout depthwise_activation activation",
                                        defaults=("relu6", None))):
    """A separable block: a 3x3 'same' depthwise layer on ``size`` x ``size`` images followed by a 1x1 projection
    to ``cout`` channels, each with a bias.

    MobileNetV2's blocks end so (the projection is its linear bottleneck: no activation after it). The two stages
    are a :class:`DepthwiseLayer` and a :class:`PointwiseLayer`, which own their shape rules.
    """

    __slots__ = ()
    kind = "separable"
    reference_function = staticmethod(reference.separable_conv2d)

    @property
    def depthwise(self):
        return DepthwiseLayer(self.size, self.channels, self.stride, 3, self.depthwise_activation)

    @property
    def pointwise(self):
        return PointwiseLayer(self.depthwise.output_shape(1)[1], self.channels, self.cout, self.activation)

    @property
    def name(self):
        return f"{self.depthwise.name} to {self.cout}"

    @property
    def terms(self):
        # For the tolerance: each output rounds a sum of KH*KW depthwise terms, then one of C pointwise terms.
        return self.depthwise.terms + self.pointwise.terms

    @property
    def output_channels(self):
        return self.cout

    @property
    def keywords(self):
        """The keyword arguments of ``separable_conv2d`` (dwcy's or the reference's) for this block."""
        keywords = dict(self.depthwise.keywords)
        keywords["depthwise_activation"] = keywords.pop("activation")
        return {**keywords, **self.pointwise.keywords}

    def input_shape(self, batch):
        return self.depthwise.input_shape(batch)

    def output_shape(self, batch):
        return self.pointwise.output_shape(batch)

    def flops(self, batch):
        return self.depthwise.flops(batch) + self.pointwise.flops(batch)

    def min_bytes(self, batch, dtype=np.float32):
        """Bytes a fused call must move at least: as its two stages, less the intermediate tensor's write and read."""
        intermediate = math.prod(self.depthwise.output_shape(batch)) * np.dtype(dtype).itemsize
        return self.depthwise.min_bytes(batch, dtype) + self.pointwise.min_bytes(batch, dtype) - 2 * intermediate

    def _parameters(self, rng, dtype):
        (depthwise_weight, depthwise_bias), (pointwise_weight, pointwise_bias) = (
            self.depthwise._parameters(rng, dtype), self.pointwise._parameters(rng, dtype))
        return depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias


def unfused_separable_conv2d(x, depthwise_weight, pointwise_weight, depthwise_bias=None, pointwise_bias=None, *,
                             depthwise_activation=None, activation=None, num_threads=None, **depthwise_keywords):
    """:func:`dwcy.separable_conv2d` as two dwcy calls, the intermediate tensor written to memory and read back:
    what fusing is measured against (``dwcy-unfused`` in ``benchmarks/``, ``unfused`` in ``python -m dwcy``)."""
    mid = _api.depthwise_conv2d(x, depthwise_weight, depthwise_bias, activation=depthwise_activation,
                                num_threads=num_threads, **depthwise_keywords)
    return _api.pointwise_conv2d(mid, pointwise_weight, pointwise_bias, activation=activation, num_threads=num_threads)

def _mobilenet_v2_pointwise(size, cin, cout):
    # In MobileNetV2 the 1x1s that widen (a block's expansion, and the final 320 -> 1280) are followed by ReLU6;
    # those that narrow are the linear bottleneck projections, with no activation.
    return PointwiseLayer(size, cin, cout, "relu6" if cout > cin else None)


#: MobileNetV2's 3x3 'same' depthwise layers, in network order, as (H = W, C, stride); bias and ReLU6.
MOBILENET_V2_DEPTHWISE = tuple(DepthwiseLayer(size, channels, stride) for size, channels, stride in (
    (112, 32, 1), (112, 96, 2), (56, 144, 1), (56, 144, 2), (28, 192, 1),
    (28, 192, 2), (14, 384, 1), (14, 576, 1), (14, 576, 2), (7, 960, 1),
))

#: MobileNetV2's pointwise (1x1) layers, in network order, as (H = W, Cin, Cout); bias, ReLU6 on the widening ones.
MOBILENET_V2_POINTWISE = tuple(_mobilenet_v2_pointwise(size, cin, cout) for size, cin, cout in (
    (112, 32, 16), (112, 16, 96), (56, 96, 24), (56, 24, 144), (56, 144, 24), (28, 144, 32), (28, 32, 192),
    (28, 192, 32), (14, 192, 64), (14, 64, 384), (14, 384, 64), (14, 384, 96), (14, 96, 576), (14, 576, 96),
    (7, 576, 160), (7, 160, 960), (7, 960, 160), (7, 960, 320), (7, 320, 1280),
))

#: MobileNetV2's separable blocks (the depthwise layer and the projection after it), in network order, as
#: (H = W of the depthwise input, C, stride, Cout); ReLU6 after the depthwise stage, none after the projection.
MOBILENET_V2_SEPARABLE = tuple(SeparableLayer(size, channels, stride, cout) for size, channels, stride, cout in (
    (112, 32, 1, 16), (112, 96, 2, 24), (56, 144, 1, 24), (56, 144, 2, 32), (28, 192, 1, 32), (28, 192, 2, 64),
    (14, 384, 1, 64), (14, 384, 1, 96), (14, 576, 1, 96), (14, 576, 2, 160), (7, 960, 1, 160), (7, 960, 1, 320),
))

#: What ``python -m dwcy bench`` and ``benchmarks/`` measure, per operation, in this order. Every pointwise layer
#: has bias and ReLU6 (whatever it has in MobileNetV2), so the fused epilogue is always part of the work; the
#: separable blocks gain one that is not MobileNetV2's, a stride-1 112x112x96 block whose intermediate tensor
#: (4.8 MB in float32 at batch 1) outgrows L2, where fusing should pay most.
BENCHMARK_LAYERS = {
    "depthwise": MOBILENET_V2_DEPTHWISE,
    "pointwise": tuple(layer._replace(activation="relu6") for layer in MOBILENET_V2_POINTWISE),
    "separable": MOBILENET_V2_SEPARABLE + (SeparableLayer(112, 96, 1, 24),),
}


# --- the whole network -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _mobilenet_v2(seed, dtype_name):
    from . import models  # NumPy only, but not needed by the layer lists above

    return models.MobileNetV2.random(seed, np.dtype(dtype_name))


class NetworkLayer(_Layer, namedtuple("NetworkLayer", "size seed", defaults=(224, 0))):
    """The whole MobileNetV2 (:class:`dwcy.models.MobileNetV2`, random weights from ``seed``) on ``size`` x
    ``size`` images, with the interface of the layers above: what ``python -m dwcy`` and
    ``benchmarks/test_bench_mobilenetv2.py`` time as one more "layer".

    ``run`` is the dwcy model and ``run_reference`` the same network built from ``dwcy.reference``; both are
    called as ``run(x, num_threads=...)`` (the reference ignores the threads, as the reference functions do).
    """

    __slots__ = ()
    kind = "network"
    keywords = {}

    def model(self, dtype=np.float32):
        """The network's :class:`dwcy.models.MobileNetV2` in ``dtype`` (built once per dtype)."""
        return _mobilenet_v2(self.seed, np.dtype(dtype).name)

    def run(self, x, num_threads=None):
        return self.model(x.dtype)(x, num_threads=num_threads)

    def run_reference(self, x, num_threads=None):
        return self.model(x.dtype).forward_reference(x)

    reference_function = run_reference

    @property
    def name(self):
        return f"MobileNetV2 {self.size}x{self.size}"

    @property
    def output_channels(self):
        return self.model().num_classes

    @property
    def weight_shape(self):
        # Every parameter as one "weight": min_bytes is then the images, the weights and the logits, read or written
        # once (the activations in between may stay in cache).
        return (sum(a.size for a in self.model().arrays().values()),)

    def input_shape(self, batch):
        return (batch, self.size, self.size, 3)

    def output_shape(self, batch):
        return (batch, self.output_channels)

    def flops(self, batch):
        return batch * self.model().flops(self.size, self.size)

    def tolerance(self, dtype):
        # ~53 layers deep: the float32 logits (O(1)) are observed ~5e-6 off the float64 ones; a wrong layer, stride,
        # padding or skip is off by O(1).
        rtol = 2000 * float(np.finfo(dtype).eps)
        return {"rtol": rtol, "atol": rtol}

    def make_inputs(self, batch, dtype=np.float32, seed=0):
        """``(x,)``: standard normal images (batch, size, size, 3)."""
        return (_random(np.random.default_rng(seed), self.input_shape(batch), 1.0, dtype),)

    def expected(self, inputs):
        """The float64 reference logits, with the weights of the model of x's dtype (rounded to it)."""
        (x,) = inputs
        return self.model(x.dtype).astype(np.float64).forward_reference(x.astype(np.float64))


#: The whole MobileNetV2 at 224x224 (random weights, seed 0), timed as one more "layer".
MOBILENET_V2_NETWORK = NetworkLayer()
