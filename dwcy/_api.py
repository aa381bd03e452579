"""The public kernels: validate with dwcy._args, allocate the output, run the compiled kernel."""

import numpy as np

from . import _args
from . import kernels as _kernels  # the SIMD level chosen at import (tests/conftest.py swaps in each level)

__all__ = ["depthwise_conv2d", "pointwise_conv2d", "separable_conv2d", "Depthwise", "Pointwise", "Separable"]


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
    y = _kernels.depthwise_fast(x, weight, bias, stride, padding, dilation, activation, num_threads, flush_denormals,
                                out)
    if y is None:
        y = _depthwise_full(_kernels, None, x, weight, bias, stride, padding, dilation, activation, out, num_threads,
                            flush_denormals)
    return y


def _depthwise_full(kernels, prepared, x, weight, bias, stride, padding, dilation, activation, out, num_threads,
                    flush_denormals):
    """depthwise_conv2d the full way (dwcy._args converts or rejects every argument), with a kernel module (the
    level) and, from a Depthwise, its prepared weights (or None)."""
    threads = _threads(num_threads)
    a = _args.depthwise(x, weight, bias, stride, padding, dilation, activation, out)
    return kernels.depthwise(a.x, a.weight, a.bias, a.out, a.geometry, a.activation, threads, flush_denormals,
                             prepared)


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
    if y is None:  # the full way
        y = _pointwise_full(_kernels, None, x, weight, bias, activation, out, num_threads, flush_denormals)
    return y


def _pointwise_full(kernels, prepared, x, weight, bias, activation, out, num_threads, flush_denormals):
    """pointwise_conv2d the full way, with a kernel module (the level) and, from a Pointwise, its prepared weights
    (or None)."""
    threads = _threads(num_threads)
    a = _args.pointwise(x, weight, bias, activation, out)
    y = kernels.aligned_empty(a.x.shape[:3] + (a.weight.shape[1],), a.x.dtype) if a.out is None else a.out
    kernels.pointwise(a.x, a.weight, a.bias, y, a.activation, threads, flush_denormals, prepared)
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
    if y is None:  # the full way
        y = _separable_full(_kernels, None, x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias,
                            stride, padding, dilation, depthwise_activation, activation, out, num_threads,
                            flush_denormals)
    return y


def _separable_full(kernels, prepared, x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, stride,
                    padding, dilation, depthwise_activation, activation, out, num_threads, flush_denormals):
    """separable_conv2d the full way, with a kernel module (the level) and, from a Separable, its prepared weights
    (or None)."""
    threads = _threads(num_threads)
    a = _args.separable(x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, stride, padding,
                        dilation, depthwise_activation, activation, out, num_threads)
    dw = a.depthwise
    y = kernels.aligned_empty(a.out_shape, dw.x.dtype) if a.out is None else a.out
    kernels.separable(dw.x, dw.weight, dw.bias, a.pointwise_weight, a.pointwise_bias, y, dw.geometry,
                      dw.activation, a.activation, threads, flush_denormals, prepared)
    return y


def _frozen_copy(a, dtype):
    """A C-contiguous, read-only copy of ``a`` (None stays None): weights a prepared convolution owns."""
    if a is None:
        return None
    copy = np.array(a, dtype=dtype, order="C", copy=True)
    copy.setflags(write=False)
    return copy


def _frozen_options(*options):
    """Options (stride, padding, dilation) as a prepared convolution keeps them: lists, at any depth, made
    tuples, which a caller cannot change afterwards."""
    return tuple(_frozen_option(option) for option in options)


def _frozen_option(option):
    return tuple(_frozen_option(part) for part in option) if isinstance(option, (list, tuple)) else option


class Pointwise:
    """A pointwise (1x1) convolution whose weights are packed once, for many calls (an inference loop).

    ``Pointwise(weight, bias, activation="relu6")(x)`` equals ``pointwise_conv2d(x, weight, bias,
    activation="relu6")`` bit for bit, without packing the weights into the kernels' layout on every call
    (XNNPACK's create-then-run). It keeps copies of the weight and bias (changing the arrays passed in later has
    no effect) and is read-only: threads may share one.

    Parameters
    ----------
    weight : array_like, shape (Cin, Cout) or (1, 1, Cin, Cout)
        float32 or float64: the dtype that inputs must have.
    bias : array_like, shape (Cout,), optional
    activation : None, "relu", "relu6" or "hardswish"

    >>> import numpy as np, dwcy
    >>> conv = dwcy.Pointwise(np.ones((4, 8), np.float32), activation="relu")
    >>> conv(np.ones((1, 2, 2, 4), np.float32)).shape
    (1, 2, 2, 8)
    """

    def __init__(self, weight, bias=None, *, activation=None):
        weight, dtype = _args._as_array(weight, "weight")
        weight = _args._pointwise_weight(weight, weight.shape[-2] if weight.ndim in (2, 4) else 0, dtype, "weight")
        if weight.shape[0] == 0:
            raise ValueError(f"weight must have at least one input channel, got shape {weight.shape}")
        _args.activation_code(activation)
        self.weight = _frozen_copy(weight, dtype)
        self.bias = _frozen_copy(_args._check_bias(bias, weight.shape[1], dtype, "bias", "weight"), dtype)
        self.activation = activation
        self._kernels = _kernels  # the level whose tiles the weights are packed for
        self._prepared = _kernels.prepare(self.weight, self.bias)

    def __call__(self, x, *, out=None, num_threads=None, flush_denormals=False):
        """The convolution of x (N, H, W, Cin), of the weight's dtype; ``out``, ``num_threads`` and
        ``flush_denormals`` as in :func:`pointwise_conv2d`. Returns (N, H, W, Cout)."""
        y = self._kernels.pointwise_fast(x, self.weight, self.bias, self.activation, num_threads, flush_denormals,
                                         out, self._prepared)
        if y is None:  # the full way: converts x, or raises the error
            y = _pointwise_full(self._kernels, self._prepared, x, self.weight, self.bias, self.activation, out,
                                num_threads, flush_denormals)
        return y

    def __repr__(self):
        return (f"dwcy.Pointwise({self.weight.shape[0]} -> {self.weight.shape[1]}, {self.weight.dtype}, "
                f"bias={self.bias is not None}, activation={self.activation!r})")


def _depthwise_geometry(weight, stride, padding, dilation, name):
    """The geometry of a depthwise weight on an input just large enough for it: the arguments' rules, checked
    once, when a prepared convolution is made (each call checks its input against them)."""
    if weight.ndim not in (3, 4):
        raise ValueError(f"{name} must be (KH, KW, C) or (KH, KW, C, M), got {weight.ndim}-D with shape "
                         f"{weight.shape}")
    dilation_hw = _args.int_pair(dilation, "dilation")
    span = [max(1, (k - 1) * d + 1) for k, d in zip(weight.shape[:2], dilation_hw)]
    return _args.depthwise_geometry((1, *span, weight.shape[2]), weight.shape, stride, padding, dilation, name)


class Depthwise:
    """A depthwise convolution (:func:`depthwise_conv2d`) whose weights are packed once, for many calls.

    ``Depthwise(weight, bias, stride=2, padding="same", activation="relu6")(x)`` equals
    ``depthwise_conv2d(x, weight, bias, stride=2, padding="same", activation="relu6")`` bit for bit. The weights
    are packed for the place in a cache line where an input starts (its phase: NumPy's arrays start 16 bytes
    into one, dwcy's on one), once for each phase the calls meet. It keeps copies of the weight and bias and
    is read-only: threads may share one.

    Parameters
    ----------
    weight, bias, stride, padding, dilation, activation :
        As in :func:`depthwise_conv2d`; padding "same" is resolved for each input's size.
    """

    def __init__(self, weight, bias=None, *, stride=1, padding="valid", dilation=1, activation=None):
        weight, dtype = _args._as_array(weight, "weight")
        geometry = _depthwise_geometry(weight, stride, padding, dilation, "weight")
        _args.activation_code(activation)
        self.weight = _frozen_copy(weight, dtype)
        self.bias = _frozen_copy(_args._check_bias(bias, geometry.out_channels, dtype, "bias", "weight"), dtype)
        self.stride, self.padding, self.dilation = _frozen_options(stride, padding, dilation)
        self.activation = activation
        self._kernels = _kernels  # the level whose tiles the weights are packed for
        self._prepared = _kernels.prepare(None, None, self.weight, self.bias)

    def __call__(self, x, *, out=None, num_threads=None, flush_denormals=False):
        """The convolution of x (N, H, W, C), of the weight's dtype; ``out``, ``num_threads`` and
        ``flush_denormals`` as in :func:`depthwise_conv2d`. Returns (N, OH, OW, C*M)."""
        y = self._kernels.depthwise_fast(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                         self.activation, num_threads, flush_denormals, out, self._prepared)
        if y is None:  # the full way: converts x, or raises the error
            y = _depthwise_full(self._kernels, self._prepared, x, self.weight, self.bias, self.stride,
                                self.padding, self.dilation, self.activation, out, num_threads, flush_denormals)
        return y

    def __repr__(self):
        kh, kw, c = self.weight.shape[:3]
        return (f"dwcy.Depthwise({kh}x{kw} of {c} channels, {self.weight.dtype}, stride={self.stride!r}, "
                f"padding={self.padding!r}, activation={self.activation!r})")


class Separable:
    """A separable block (:func:`separable_conv2d`) whose weights are packed once, for many calls.

    ``Separable(depthwise_weight, pointwise_weight, ..., stride=2, padding="same")(x)`` equals
    ``separable_conv2d(x, depthwise_weight, pointwise_weight, ..., stride=2, padding="same")`` bit for bit. It
    keeps copies of the weights and biases and is read-only: threads may share one. The depthwise weights are
    packed for each phase of the inputs the calls meet, as in :class:`Depthwise`.

    Parameters
    ----------
    depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, stride, padding, dilation,
    depthwise_activation, activation :
        As in :func:`separable_conv2d`; padding "same" is resolved for each input's size.
    """

    def __init__(self, depthwise_weight, pointwise_weight, depthwise_bias=None, pointwise_bias=None, *, stride=1,
                 padding="valid", dilation=1, depthwise_activation=None, activation=None):
        dw, dtype = _args._as_array(depthwise_weight, "depthwise_weight")
        geometry = _depthwise_geometry(dw, stride, padding, dilation, "depthwise_weight")
        pw = _args._pointwise_weight(pointwise_weight, geometry.out_channels, dtype, "pointwise_weight",
                                     "depthwise_weight")
        _args.activation_code(depthwise_activation, "depthwise_activation")
        _args.activation_code(activation, "activation")
        self.depthwise_weight = _frozen_copy(dw, dtype)
        self.pointwise_weight = _frozen_copy(pw, dtype)
        self.depthwise_bias = _frozen_copy(
            _args._check_bias(depthwise_bias, geometry.out_channels, dtype, "depthwise_bias", "depthwise_weight"),
            dtype)
        self.pointwise_bias = _frozen_copy(
            _args._check_bias(pointwise_bias, pw.shape[1], dtype, "pointwise_bias", "depthwise_weight"), dtype)
        self.stride, self.padding, self.dilation = _frozen_options(stride, padding, dilation)
        self.depthwise_activation, self.activation = depthwise_activation, activation
        self._kernels = _kernels  # the level whose tiles the weights are packed for
        self._prepared = _kernels.prepare(self.pointwise_weight, self.pointwise_bias, self.depthwise_weight,
                                          self.depthwise_bias)

    def __call__(self, x, *, out=None, num_threads=None, flush_denormals=False):
        """The block on x (N, H, W, C), of the weights' dtype; ``out``, ``num_threads`` and ``flush_denormals``
        as in :func:`separable_conv2d`. Returns (N, OH, OW, Cout)."""
        y = self._kernels.separable_fast(x, self.depthwise_weight, self.pointwise_weight, self.depthwise_bias,
                                         self.pointwise_bias, self.stride, self.padding, self.dilation,
                                         self.depthwise_activation, self.activation, num_threads, flush_denormals,
                                         out, self._prepared)
        if y is None:  # the full way: converts x, or raises the error
            y = _separable_full(self._kernels, self._prepared, x, self.depthwise_weight, self.pointwise_weight,
                                self.depthwise_bias, self.pointwise_bias, self.stride, self.padding, self.dilation,
                                self.depthwise_activation, self.activation, out, num_threads, flush_denormals)
        return y

    def __repr__(self):
        kh, kw, c = self.depthwise_weight.shape[:3]
        return (f"dwcy.Separable({kh}x{kw} depthwise of {c} channels -> {self.pointwise_weight.shape[1]}, "
                f"{self.depthwise_weight.dtype}, stride={self.stride!r}, padding={self.padding!r})")
