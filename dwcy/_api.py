"""The public kernels: validate with dwcy._args, allocate the output, run the compiled kernel."""

import numpy as np

from . import _args
from . import kernels as _kernels  # the SIMD level chosen at import (tests/conftest.py swaps in each level)

__all__ = ["depthwise_conv2d", "pointwise_conv2d", "separable_conv2d"]


def _threads(num_threads):
    # 0 tells the kernels to use OpenMP's current default (OMP_NUM_THREADS, threadpoolctl limits).
    return 0 if num_threads is None else _args.resolve_num_threads(num_threads)


def depthwise_conv2d(x, weight, bias=None, *, stride=1, padding="valid", dilation=1, activation=None, out=None,
                     num_threads=None, flush_denormals=False):
    """Depthwise 2-D convolution of an NHWC batch: every channel convolved with its own filter.

    Parameters
    ----------
    x : array_like, shape (N, H, W, C)
        Input, float32 or float64 (any layout or byte order; copied once if not C-contiguous native).
    weight : array_like, shape (KH, KW, C) or (KH, KW, C, M)
        Filters; with a channel multiplier M, output channel ``c*M + m`` uses ``weight[..., c, m]``.
    bias : array_like, shape (C*M,), optional
    stride, dilation : int or (int, int)
        Each >= 1.
    padding : "valid", "same", int, (ph, pw) or ((top, bottom), (left, right))
        Zero padding; "same" follows TensorFlow (OH = ceil(H / stride), the odd pixel at the bottom/right).
    activation : None, "relu", "relu6" or "hardswish"
        Applied after the bias. NaN propagates as in NumPy.
    out : ndarray, shape (N, OH, OW, C*M), optional
        C-contiguous, writeable, of x's dtype, sharing no memory with an input. It is returned.
    num_threads : int, optional
        Threads to use; None means OpenMP's default (``OMP_NUM_THREADS``, threadpoolctl limits).
        The result is bitwise identical for any thread count.
    flush_denormals : bool
        Treat subnormal inputs and results as zero during this call only (x86 FTZ/DAZ, Arm FZ; set and
        restored on every thread that runs the call, so nothing leaks into the caller). Subnormal numbers
        (below ~1.2e-38 in float32) make the kernels 50-170x slower on x86.

    Returns
    -------
    ndarray, shape (N, OH, OW, C*M), the dtype of x
    """
    # The common call, validated in C (dwcy/_kernels/fast.pxi); None: the full way.
    y = _kernels.depthwise_fast(x, weight, bias, stride, padding, dilation, activation, num_threads,
                                flush_denormals, out)
    if y is not None:
        return y
    threads = _threads(num_threads)
    a = _args.depthwise(x, weight, bias, stride, padding, dilation, activation, out)
    return _kernels.depthwise(a.x, a.weight, a.bias, a.out, a.geometry, a.activation, threads, flush_denormals)


def pointwise_conv2d(x, weight, bias=None, *, activation=None, out=None, num_threads=None, flush_denormals=False):
    """Pointwise (1x1) convolution of an NHWC batch: ``activation(x.reshape(-1, Cin) @ weight + bias)``.

    Parameters
    ----------
    x : array_like, shape (N, H, W, Cin)
        Input, float32 or float64 (any layout or byte order; copied once if not C-contiguous native).
    weight : array_like, shape (Cin, Cout) or (1, 1, Cin, Cout)
    bias : array_like, shape (Cout,), optional
    activation : None, "relu", "relu6" or "hardswish"
        Applied after the bias. NaN propagates as in NumPy.
    out : ndarray, shape (N, H, W, Cout), optional
        C-contiguous, writeable, of x's dtype, sharing no memory with an input. It is returned.
    num_threads : int, optional
        Threads to use; None means OpenMP's default. The result is bitwise identical for any thread count.
    flush_denormals : bool
        Treat subnormal inputs and results as zero during this call only (x86 FTZ/DAZ, Arm FZ; set and
        restored on every thread that runs the call, so nothing leaks into the caller). Subnormal numbers
        (below ~1.2e-38 in float32) make the kernels 50-170x slower on x86.

    Returns
    -------
    ndarray, shape (N, H, W, Cout), the dtype of x
    """
    y = _kernels.pointwise_fast(x, weight, bias, activation, num_threads, flush_denormals, out)
    if y is not None:
        return y
    threads = _threads(num_threads)
    a = _args.pointwise(x, weight, bias, activation, out)
    y = _kernels.aligned_empty(a.x.shape[:3] + (a.weight.shape[1],), a.x.dtype) if a.out is None else a.out
    _kernels.pointwise(a.x, a.weight, a.bias, y, a.activation, threads, flush_denormals)
    return y


def separable_conv2d(x, depthwise_weight, pointwise_weight, depthwise_bias=None, pointwise_bias=None, *, stride=1,
                     padding="valid", dilation=1, depthwise_activation=None, activation=None, out=None,
                     num_threads=None, flush_denormals=False):
    """The MobileNet block in one fused call: depthwise -> bias -> activation -> pointwise -> bias -> activation.

    Equal to ``pointwise_conv2d(depthwise_conv2d(x, depthwise_weight, depthwise_bias, ...,
    activation=depthwise_activation), pointwise_weight, pointwise_bias, activation=activation)``, bit for
    bit, but computed band by band so the intermediate tensor is never allocated.

    Parameters
    ----------
    x : array_like, shape (N, H, W, C)
    depthwise_weight : array_like, shape (KH, KW, C) or (KH, KW, C, M)
    pointwise_weight : array_like, shape (C*M, Cout) or (1, 1, C*M, Cout)
    depthwise_bias : array_like, shape (C*M,), optional
    pointwise_bias : array_like, shape (Cout,), optional
    stride, padding, dilation :
        Of the depthwise stage, as in :func:`depthwise_conv2d`.
    depthwise_activation, activation : None, "relu", "relu6" or "hardswish"
        After the depthwise and the pointwise stage.
    out : ndarray, shape (N, OH, OW, Cout), optional
    num_threads : int, optional
    flush_denormals : bool
        As in :func:`depthwise_conv2d`.

    Returns
    -------
    ndarray, shape (N, OH, OW, Cout), the dtype of x
    """
    y = _kernels.separable_fast(x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, stride,
                                padding, dilation, depthwise_activation, activation, num_threads, flush_denormals, out)
    if y is not None:
        return y
    threads = _threads(num_threads)
    a = _args.separable(x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, stride, padding,
                        dilation, depthwise_activation, activation, out, num_threads)
    dw = a.depthwise
    y = _kernels.aligned_empty(a.out_shape, dw.x.dtype) if a.out is None else a.out
    _kernels.separable(dw.x, dw.weight, dw.bias, a.pointwise_weight, a.pointwise_bias, y, dw.geometry,
                       dw.activation, a.activation, threads, flush_denormals)
    return y
