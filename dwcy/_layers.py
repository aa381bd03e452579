"""The layer shapes dwcy is measured on: MobileNetV2 at 224x224 (DESIGN.md, "Measuring").

This module is the one list of them, shared by ``python -m dwcy bench`` and ``benchmarks/``. A layer knows
its shape, the keyword arguments that reproduce it, how to build random inputs for it, how much work it is
(flops, bytes) and how close a result must come to the float64 reference.

>>> layer = MOBILENET_V2_DEPTHWISE[1]
>>> layer.name, layer.output_shape(batch=8)
('112x112x96 s2', (8, 56, 56, 96))
"""

import math
from collections import namedtuple

import numpy as np

from . import reference

__all__ = ["DepthwiseLayer", "PointwiseLayer", "MOBILENET_V2_DEPTHWISE", "MOBILENET_V2_POINTWISE", "flops"]

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
    ``input_shape(batch)`` and ``output_shape(batch)``."""

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
        """Random ``(x, weight, bias)`` for ``batch`` images.

        x is standard normal and the weights are scaled by 1/sqrt(terms), so the outputs are O(1): a ReLU6 after
        them zeroes about half, passes most of the rest and clips a few at 6, exercising every branch.
        """
        rng = np.random.default_rng(seed)
        x = _random(rng, self.input_shape(batch), 1.0, dtype)
        weight = _random(rng, self.weight_shape, 1 / math.sqrt(self.terms), dtype)
        bias = _random(rng, (self.output_channels,), 0.5, dtype)
        return x, weight, bias


class DepthwiseLayer(_Layer, namedtuple("DepthwiseLayer", "size channels stride kernel activation",
                                        defaults=(3, "relu6"))):
    """A square ``kernel`` x ``kernel`` depthwise layer with 'same' padding on ``size`` x ``size`` images.

    MobileNetV2's are 3x3, each followed by batch norm (folded into the bias) and ReLU6.
    """

    __slots__ = ()
    kind = "depthwise"

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
        out = -(-self.size // self.stride)  # 'same' padding: ceil(size / stride)
        return (batch, out, out, self.channels)

    def expected(self, inputs):
        """The float64 reference output for ``inputs = (x, weight, bias)``: what implementations are checked against."""
        return reference.depthwise_conv2d(*(a.astype(np.float64) for a in inputs), **self.keywords)


class PointwiseLayer(_Layer, namedtuple("PointwiseLayer", "size cin cout activation", defaults=(None,))):
    """A 1x1 convolution from ``cin`` to ``cout`` channels on ``size`` x ``size`` images."""

    __slots__ = ()
    kind = "pointwise"

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

    def expected(self, inputs):
        """The float64 reference output for ``inputs = (x, weight, bias)``: what implementations are checked against."""
        return reference.pointwise_conv2d(*(a.astype(np.float64) for a in inputs), **self.keywords)


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
