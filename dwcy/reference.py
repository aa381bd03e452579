"""Pure-NumPy depthwise, pointwise and separable convolutions: the oracle of the tests and the benchmark baseline.

Same signatures and semantics as the kernels (DESIGN.md), computed in the input's dtype, vectorized over
pixels and channels: a loop over the KH*KW taps of shifted-slice multiply-adds on a zero-padded copy of the
input, the way a good NumPy programmer would write it. ``num_threads`` and ``flush_denormals`` are accepted for
signature parity and ignored: NumPy's element-wise operations run on one thread (a BLAS matmul follows its
own thread pool), and the reference keeps subnormal numbers.
"""

import numpy as np

from . import _args

__all__ = ["depthwise_conv2d", "pointwise_conv2d", "separable_conv2d", "activate"]


def activate(y, activation):
    """Apply ``activation`` (a name of ``_args.ACTIVATIONS``) to ``y`` in place; NaN stays NaN, as in NumPy."""
    code = _args.activation_code(activation)
    name = _args.ACTIVATIONS[code]
    if name == "relu":
        np.maximum(y, 0, out=y)
    elif name == "relu6":
        np.clip(y, 0, 6, out=y)
    elif name == "hardswish":
        y *= np.clip(y + 3, 0, 6)
        y /= 6
    return y


def _finish(acc, bias, activation, out):
    if bias is not None:
        acc += bias
    activate(acc, _args.ACTIVATIONS[activation])
    if out is None:
        return acc
    out[...] = acc
    return out


def depthwise_conv2d(x, weight, bias=None, *, stride=1, padding="valid", dilation=1, activation=None, out=None,
                     num_threads=None, flush_denormals=False):
    """Depthwise 2-D convolution of NHWC ``x`` (pure NumPy); see :func:`dwcy.depthwise_conv2d`."""
    _args.resolve_num_threads(num_threads)
    a = _args.depthwise(x, weight, bias, stride, padding, dilation, activation, out)
    g = a.geometry
    padded = np.zeros((g.n, g.h + g.pad_top + g.pad_bottom, g.w + g.pad_left + g.pad_right, g.c), a.x.dtype)
    padded[:, g.pad_top:g.pad_top + g.h, g.pad_left:g.pad_left + g.w] = a.x
    if g.multiplier > 1:
        padded = np.repeat(padded, g.multiplier, axis=3)  # output channel c*M + m reads input channel c
    acc = np.zeros(g.out_shape, a.x.dtype)
    rows_end = (g.out_h - 1) * g.stride_h + 1
    cols_end = (g.out_w - 1) * g.stride_w + 1
    for i in range(g.kh):
        top = i * g.dilation_h
        for j in range(g.kw):
            left = j * g.dilation_w
            patch = padded[:, top:top + rows_end:g.stride_h, left:left + cols_end:g.stride_w]
            acc += patch * a.weight[i, j]
    return _finish(acc, a.bias, a.activation, a.out)


def pointwise_conv2d(x, weight, bias=None, *, activation=None, out=None, num_threads=None, flush_denormals=False):
    """Pointwise (1x1) convolution of NHWC ``x`` (pure NumPy): ``x.reshape(-1, Cin) @ weight``."""
    _args.resolve_num_threads(num_threads)
    a = _args.pointwise(x, weight, bias, activation, out)
    n, h, w, cin = a.x.shape
    acc = (a.x.reshape(-1, cin) @ a.weight).reshape(n, h, w, a.weight.shape[1])
    return _finish(acc, a.bias, a.activation, a.out)


def separable_conv2d(x, depthwise_weight, pointwise_weight, depthwise_bias=None, pointwise_bias=None, *, stride=1,
                     padding="valid", dilation=1, depthwise_activation=None, activation=None, out=None,
                     num_threads=None, flush_denormals=False):
    """Depthwise -> bias -> activation -> pointwise -> bias -> activation (pure NumPy composition)."""
    _args.separable(x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, stride, padding, dilation,
                    depthwise_activation, activation, out, num_threads)
    mid = depthwise_conv2d(x, depthwise_weight, depthwise_bias, stride=stride, padding=padding, dilation=dilation,
                           activation=depthwise_activation)
    return pointwise_conv2d(mid, pointwise_weight, pointwise_bias, activation=activation, out=out)
