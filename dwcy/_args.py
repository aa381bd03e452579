"""Argument normalization and validation, shared by the kernels' API and the NumPy reference.

This module is the one place for the rules of the contract (DESIGN.md):

* the dtypes (``DTYPES``) and the rule that every array of a call shares one of them;
* the activation names (``ACTIVATIONS``);
* the padding forms and TensorFlow's ``"same"`` rule (``resolve_padding``);
* the output-size rule (``output_size``);
* what an ``out=`` array must be (``check_out``) and what ``num_threads`` may be.

Everything returned here is what the kernels may trust without checking again: C-contiguous, aligned,
native-byte-order arrays of one dtype, and plain Python ints for the geometry.
"""

import functools
import operator
from typing import NamedTuple

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Activation names, in the order of their integer codes in the kernels (``ACTIVATIONS.index(name)``).
ACTIVATIONS = (None, "relu", "relu6", "hardswish")

# Element counts, offsets and every size of the geometry are 64-bit signed integers (``Py_ssize_t``) in the
# kernels: each must stay below this, and so must the products the kernels form from them.
_MAX_ELEMENTS = 2**62


class DepthwiseGeometry(NamedTuple):
    """The resolved shape of one depthwise convolution: every size the kernels need, as plain ints."""

    n: int
    h: int
    w: int
    c: int
    multiplier: int
    kh: int
    kw: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    out_h: int
    out_w: int

    @property
    def out_channels(self):
        return self.c * self.multiplier

    @property
    def out_shape(self):
        return (self.n, self.out_h, self.out_w, self.c * self.multiplier)


class DepthwiseArgs(NamedTuple):
    x: np.ndarray  # (N, H, W, C), C-contiguous
    weight: np.ndarray  # (KH, KW, C*M), C-contiguous: output channel c*M + m
    bias: "np.ndarray | None"  # (C*M,)
    geometry: DepthwiseGeometry
    activation: int  # index into ACTIVATIONS
    out: "np.ndarray | None"  # the caller's out=, checked, or None


class PointwiseArgs(NamedTuple):
    x: np.ndarray  # (N, H, W, Cin), C-contiguous
    weight: np.ndarray  # (Cin, Cout), C-contiguous
    bias: "np.ndarray | None"  # (Cout,)
    activation: int
    out: "np.ndarray | None"


# ---------------------------------------------------------------------------------------------- scalars


def _positive_int(value, name, bounded=True):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if bounded and value >= _MAX_ELEMENTS:
        raise ValueError(f"{name} of {value} is too large (at most 2**62 - 1)")
    return value


def int_pair(value, name):
    """``stride``/``dilation``: an int or a pair ``(h, w)``, each >= 1."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        return _positive_int(value[0], name), _positive_int(value[1], name)
    value = _positive_int(value, name)
    return value, value


def resolve_num_threads(num_threads):
    """``None`` (OpenMP's default, resolved by the kernels) or an int >= 1, a most; capped at 2**16."""
    if num_threads is None:
        return None
    return min(_positive_int(num_threads, "num_threads", bounded=False), 2**16)


def activation_code(activation, name="activation"):
    """The kernels' integer code for an activation name; ValueError naming the known ones otherwise."""
    try:
        return ACTIVATIONS.index(activation)
    except ValueError:
        pass
    known = ", ".join(repr(a) for a in ACTIVATIONS)
    raise ValueError(f"{name} must be one of {known}; got {activation!r}")


# --------------------------------------------------------------------------------------- geometry rules


def output_size(size, kernel, stride, dilation, pad_before, pad_after):
    """Output length along one axis: ``floor((size + pads - dilation*(kernel-1) - 1) / stride) + 1``."""
    span = dilation * (kernel - 1) + 1
    return (size + pad_before + pad_after - span) // stride + 1


def _same_padding(size, kernel, stride, dilation):
    # TensorFlow's rule: OH = ceil(H / stride); the odd pixel of padding goes after (bottom/right).
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _non_negative(value, name="padding"):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must hold ints, got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if value >= _MAX_ELEMENTS:
        raise ValueError(f"{name} of {value} is too large (at most 2**62 - 1)")
    return value


def resolve_padding(padding, in_hw, kernel_hw, stride, dilation):
    """Normalize any of the five padding forms to ``((top, bottom), (left, right))``.

    Forms: ``"valid"``, ``"same"`` (TensorFlow's rule), an int, a pair ``(ph, pw)``,
    or ``((top, bottom), (left, right))``.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            return tuple(_same_padding(*axis) for axis in zip(in_hw, kernel_hw, stride, dilation))
        raise ValueError(f"padding must be 'valid', 'same', an int or pairs of ints; got {padding!r}")
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"padding must be an int, (ph, pw) or ((top, bottom), (left, right)); got {padding!r}")
        pairs = []
        for axis in padding:
            if isinstance(axis, (tuple, list)):
                if len(axis) != 2:
                    raise ValueError(f"padding must be ((top, bottom), (left, right)); got {padding!r}")
                pairs.append((_non_negative(axis[0]), _non_negative(axis[1])))
            else:
                p = _non_negative(axis)
                pairs.append((p, p))
        return tuple(pairs)
    p = _non_negative(padding)
    return (p, p), (p, p)


# ---------------------------------------------------------------------------------------------- arrays


def _check_dtype(dtype, name, expected=None, reference="x"):
    """A TypeError unless ``dtype`` is a supported one, or (``expected``) that of the array named ``reference``."""
    if expected is None:
        if dtype not in DTYPES:
            raise TypeError(f"{name} has dtype {dtype}; dwcy supports float32 and float64")
    elif dtype != expected:
        raise TypeError(
            f"{name} has dtype {dtype} but {reference} has dtype {expected}: x, the weights, bias and out must "
            "share one dtype (float32 or float64)"
        )


def _as_array(a, name, expected_dtype=None, reference="x"):
    """An ndarray of a supported, native-order dtype (or ``expected_dtype``, the dtype of the array named
    ``reference``); no copy when already so."""
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    dtype = a.dtype
    if not dtype.isnative:
        dtype = dtype.newbyteorder("=")
    _check_dtype(dtype, name, expected_dtype, reference)
    return a, dtype


def _kernel_ready(a, dtype):
    """C-contiguous, aligned and native-order: what a kernel reads through a raw pointer."""
    flags = a.flags
    if flags.c_contiguous and flags.aligned and a.dtype == dtype:
        return a
    return np.array(a, dtype=dtype, order="C")


def _shape_str(shape):
    return str(tuple(shape))


def _check_bias(bias, length, dtype, name, reference="x"):
    if bias is None:
        return None
    bias, _ = _as_array(bias, name, dtype, reference)
    if bias.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {_shape_str(bias.shape)}")
    return _kernel_ready(bias, dtype)


def _overlaps(a, b):
    if not np.may_share_memory(a, b):
        return False
    try:
        return np.shares_memory(a, b, max_work=10_000)
    except np.exceptions.TooHardError:
        return True


def check_out(out, shape, dtype, inputs):
    """``out=``: exactly ``shape`` and ``dtype``, C-contiguous, aligned, writeable, sharing no memory with an input."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}; expected {dtype}, the dtype of x")
    if not out.dtype.isnative:
        raise TypeError(f"out has non-native byte order {out.dtype.str}; expected {dtype.str}")
    if out.shape != tuple(shape):
        raise ValueError(f"out must have shape {_shape_str(shape)}, got {_shape_str(out.shape)}")
    flags = out.flags
    if not flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not flags.aligned:
        raise ValueError("out must be aligned to its dtype")
    if not flags.writeable:
        raise ValueError("out must be writeable; got a read-only array")
    for name, arr in inputs:
        if isinstance(arr, np.ndarray) and _overlaps(out, arr):
            raise ValueError(f"out overlaps {name}: it must not share memory with any input")
    return out


def _check_size(shape, name):
    size = 1
    for s in shape:
        size *= s
    if size >= _MAX_ELEMENTS:
        raise ValueError(f"{name} of shape {_shape_str(shape)} is too large ({size} elements)")


def _check_x(x):
    x, dtype = _as_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (N, H, W, C), got {x.ndim}-D with shape {_shape_str(x.shape)}")
    if 0 in x.shape:
        raise ValueError(f"x must have no empty axis, got shape {_shape_str(x.shape)}")
    return x, dtype


# ------------------------------------------------------------------------------------------ operations


def depthwise(x, weight, bias, stride, padding, dilation, activation, out, names=("weight", "bias", "activation"),
              ready=True):
    """Validate and normalize the arguments of ``depthwise_conv2d``.

    ``names``: what the caller calls the weight, the bias and the activation (separable_conv2d's
    ``depthwise_weight``, ...), for the error messages. ``ready=False`` leaves x and the weight as they came
    (not yet copied to kernel-ready arrays): for a caller with checks of its own still to make.
    """
    weight_name, bias_name, activation_name = names
    x, dtype = _check_x(x)
    weight, _ = _as_array(weight, weight_name, dtype)
    geometry = depthwise_geometry(x.shape, weight.shape, stride, padding, dilation, weight_name)
    act = activation_code(activation, activation_name)
    out = check_out(out, geometry.out_shape, dtype, (("x", x), (weight_name, weight), (bias_name, bias)))
    bias = _check_bias(bias, geometry.out_channels, dtype, bias_name)
    if ready:
        x = _kernel_ready(x, dtype)
        weight = _kernel_ready(weight, dtype).reshape(geometry.kh, geometry.kw, geometry.out_channels)
    return DepthwiseArgs(x, weight, bias, geometry, act, out)


def depthwise_geometry(x_shape, weight_shape, stride, padding, dilation, weight_name="weight"):
    """The :class:`DepthwiseGeometry` of a call, or ValueError/TypeError naming what is wrong.

    Networks call the same few geometries again and again, so the common argument forms (ints, strings, and
    pairs of them, _plain_form) are looked up in a cache: validation is most of a small layer's call overhead.
    """
    if _plain_form(stride) and _plain_form(dilation) and _plain_form(padding):
        return _cached_depthwise_geometry(x_shape, weight_shape, stride, padding, dilation, weight_name)
    return _depthwise_geometry(x_shape, weight_shape, stride, padding, dilation, weight_name)


def _plain_form(value):
    """Is ``value`` an int, a str, or a tuple of such (a pair, a pair of pairs)? Then it is hashable, and a cache
    keyed by it tells apart exactly the arguments that give different geometries (bool, float or NumPy
    numbers are not plain: they take the uncached way, which converts or rejects them)."""
    kind = type(value)
    return kind is int or kind is str or (kind is tuple and all(map(_plain_form, value)))


def _depthwise_geometry(x_shape, weight_shape, stride, padding, dilation, weight_name):
    n, h, w, c = x_shape
    if len(weight_shape) == 3:
        multiplier = 1
    elif len(weight_shape) == 4:
        multiplier = weight_shape[3]
    else:
        raise ValueError(
            f"{weight_name} must be (KH, KW, C) or (KH, KW, C, M), got {len(weight_shape)}-D with shape "
            f"{_shape_str(weight_shape)}"
        )
    kh, kw, wc = weight_shape[:3]
    if wc != c:
        raise ValueError(
            f"{weight_name} has {wc} input channels (shape {_shape_str(weight_shape)}) but x has {c} "
            f"(shape {_shape_str(x_shape)})"
        )
    if 0 in weight_shape:
        raise ValueError(f"{weight_name} must have no empty axis, got shape {_shape_str(weight_shape)}")
    stride_hw = int_pair(stride, "stride")
    dilation_hw = int_pair(dilation, "dilation")
    (pt, pb), (pl, pr) = resolve_padding(padding, (h, w), (kh, kw), stride_hw, dilation_hw)
    oh = output_size(h, kh, stride_hw[0], dilation_hw[0], pt, pb)
    ow = output_size(w, kw, stride_hw[1], dilation_hw[1], pl, pr)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"the output would be empty ({oh}x{ow}): the kernel {kh}x{kw} with dilation {dilation_hw} spans more "
            f"than the padded image {h + pt + pb}x{w + pl + pr}"
        )
    geometry = DepthwiseGeometry(n, h, w, c, multiplier, kh, kw, *stride_hw, *dilation_hw, pt, pb, pl, pr, oh, ow)
    _check_size((h + pt + pb, w + pl + pr, c * multiplier), "the padded image")
    _check_size(geometry.out_shape, "the output")
    return geometry


_cached_depthwise_geometry = functools.lru_cache(maxsize=256, typed=True)(_depthwise_geometry)


def pointwise(x, weight, bias, activation, out):
    """Validate and normalize the arguments of ``pointwise_conv2d``."""
    x, dtype = _check_x(x)
    weight = _pointwise_weight(weight, x.shape[3], dtype, "weight")
    cout = weight.shape[1]
    act = activation_code(activation)
    out_shape = x.shape[:3] + (cout,)
    _check_size(out_shape, "the output")
    out = check_out(out, out_shape, dtype, (("x", x), ("weight", weight), ("bias", bias)))
    bias = _check_bias(bias, cout, dtype, "bias")
    return PointwiseArgs(_kernel_ready(x, dtype), _kernel_ready(weight, dtype), bias, act, out)


class SeparableArgs(NamedTuple):
    depthwise: DepthwiseArgs  # its ``out`` is None: the intermediate is never exposed
    pointwise_weight: np.ndarray  # (C*M, Cout), C-contiguous
    pointwise_bias: "np.ndarray | None"  # (Cout,)
    activation: int  # after the pointwise stage; the depthwise one is in ``depthwise.activation``
    out: "np.ndarray | None"

    @property
    def out_shape(self):
        return self.depthwise.geometry.out_shape[:3] + (self.pointwise_weight.shape[1],)


def _pointwise_weight(weight, cin, dtype, name, reference="x"):
    weight, _ = _as_array(weight, name, dtype, reference)
    if weight.ndim == 4:
        if weight.shape[:2] != (1, 1):
            raise ValueError(f"a 4-D {name} must be (1, 1, Cin, Cout), got {_shape_str(weight.shape)}")
        weight = weight.reshape(weight.shape[2:])
    elif weight.ndim != 2:
        raise ValueError(
            f"{name} must be (Cin, Cout) or (1, 1, Cin, Cout), got {weight.ndim}-D with shape {_shape_str(weight.shape)}"
        )
    if weight.shape[0] != cin:
        raise ValueError(f"{name} has {weight.shape[0]} input channels (Cin, shape {_shape_str(weight.shape)}) "
                         f"but its input has {cin}")
    if weight.shape[1] == 0:
        raise ValueError(f"{name} must have at least one output channel, got shape {_shape_str(weight.shape)}")
    return weight


def separable(x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias, stride, padding, dilation,
              depthwise_activation, activation, out, num_threads):
    """Validate and normalize the arguments of ``separable_conv2d`` (all of them, before any work)."""
    resolve_num_threads(num_threads)
    dw = depthwise(x, depthwise_weight, depthwise_bias, stride, padding, dilation, depthwise_activation, None,
                   names=("depthwise_weight", "depthwise_bias", "depthwise_activation"), ready=False)
    dtype = dw.x.dtype.newbyteorder("=")  # x may still be in its own byte order
    pw_weight = _pointwise_weight(pointwise_weight, dw.geometry.out_channels, dtype, "pointwise_weight")
    cout = pw_weight.shape[1]
    act = activation_code(activation, "activation")
    out_shape = dw.geometry.out_shape[:3] + (cout,)
    _check_size(out_shape, "the output")
    inputs = (("x", x), ("depthwise_weight", depthwise_weight), ("pointwise_weight", pointwise_weight),
              ("depthwise_bias", depthwise_bias), ("pointwise_bias", pointwise_bias))
    out = check_out(out, out_shape, dtype, inputs)
    pw_bias = _check_bias(pointwise_bias, cout, dtype, "pointwise_bias")
    # Every check done: now the copies (a large x is copied only for a call that will run).
    g = dw.geometry
    dw = dw._replace(x=_kernel_ready(dw.x, dtype),
                     weight=_kernel_ready(dw.weight, dtype).reshape(g.kh, g.kw, g.out_channels))
    return SeparableArgs(dw, _kernel_ready(pw_weight, dtype), pw_bias, act, out)
