"""Numerical helpers shared by the kernel tests: depthwise, pointwise and separable.

Every kernel is checked the same way: run it, run its ``dwcy.reference`` twin on float64 copies of the
same arguments, and compare element by element within a rounding bound (``assert_close_to_reference``).
"""

import numpy as np
import pytest

import dwcy

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ACTIVATIONS = (None, "relu", "relu6", "hardswish")

# SIMD lanes of one 64-byte vector: the channel block of the kernels, so C = LANES +- 1 hits a channel tail.
LANES = {np.dtype(np.float32): 16, np.dtype(np.float64): 8}

# Tolerance, per term of a sum and per unit of magnitude, keyed by dtype.
#
# An output element is a sum of `terms` products plus a bias, then an activation. Summing n terms in
# floating point errs by at most about n * (eps / 2) * sum(|term_i|) (Higham's gamma_n bound), whatever
# the order of the sum, so different blockings, FMA contraction and the reference's own order all fit
# under it. Allowed per element: TOLERANCE_PER_TERM * (terms + 1) * sum(|term_i|), with 4 eps per term:
#   1/2 eps  the kernel's sum (plus one rounding of the result to the output dtype),
#   1/2 eps  the reference's sum (it matters for float64, where the reference rounds as much as the kernel),
#   x 1.5    hardswish's largest slope, which amplifies an error that enters it,
#   + 3 eps  hardswish's own three roundings (add, multiply, divide),
# and a margin of about 2. An error beyond it is a wrong tap, weight, bias or channel, not rounding.
TOLERANCE_PER_TERM = {dtype: 4 * np.finfo(dtype).eps for dtype in DTYPES}


def dtype_id(dtype):
    """A short pytest id for a dtype: 'float32'."""
    return np.dtype(dtype).name


def random_array(rng, shape, dtype, scale=1.0):
    """Standard normal values times ``scale``, rounded to ``dtype``."""
    return (rng.standard_normal(shape) * scale).astype(dtype)


def as_float64(value):
    """A float64 copy of an array (any byte order or layout); anything else as it is."""
    return value.astype(np.float64) if isinstance(value, np.ndarray) else value


def _reference_arguments(args, kwargs, transform=as_float64):
    args = [transform(a) for a in args]
    kwargs = {name: transform(value) for name, value in kwargs.items() if name != "out"}
    return args, kwargs


def reference_magnitude(reference_fn, *args, **kwargs):
    """sum(|term_i|) of every output element: the reference run on absolute values, without activations.

    For a composition (separable) it is the magnitude of the composition of absolute values, an upper
    bound of every intermediate sum's magnitude.
    """

    def absolute(value):
        return np.abs(as_float64(value)) if isinstance(value, np.ndarray) else value

    args, kwargs = _reference_arguments(args, kwargs, absolute)
    for name in kwargs:
        if name.endswith("activation"):
            kwargs[name] = None
    with np.errstate(invalid="ignore", over="ignore"):
        return reference_fn(*args, **kwargs)


def assert_within_rounding(actual, expected, magnitude, terms, dtype=None):
    """``actual`` equals ``expected`` up to the rounding of ``terms``-term sums of size ``magnitude``.

    NaN and +-Inf must sit at the same positions in both (and be of the same sign); every finite element
    must lie within TOLERANCE_PER_TERM[dtype] * (terms + 1) * magnitude of the expected one.
    """
    dtype = np.dtype(actual.dtype if dtype is None else dtype)
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN positions differ")
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(np.isinf(actual), infinite, err_msg="Inf positions differ")
    np.testing.assert_array_equal(actual[infinite], expected[infinite], err_msg="Inf signs differ")

    finite = np.isfinite(expected)
    tolerance = TOLERANCE_PER_TERM[dtype] * (terms + 1) * np.asarray(magnitude, np.float64)
    with np.errstate(invalid="ignore"):  # Inf - Inf where both are Inf: compared above, masked below
        error = np.abs(actual.astype(np.float64) - expected)
    bad = finite & ~(error <= tolerance)
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, error - tolerance, -np.inf)), bad.shape)
        raise AssertionError(
            f"{bad.sum()} of {bad.size} elements differ beyond rounding; the worst at {tuple(map(int, worst))}: "
            f"got {actual[worst]!r}, expected {expected[worst]!r}, tolerance {tolerance[worst]:.3g} "
            f"({terms} terms, magnitude {float(np.asarray(magnitude)[worst]):.3g}, {dtype})"
        )


def assert_close_to_reference(actual, reference_fn, *args, terms, **kwargs):
    """Compare a kernel's result with ``reference_fn(*args, **kwargs)`` computed in float64.

    ``args``/``kwargs`` are the ones the kernel was called with (``out`` is ignored); ``terms`` is the
    number of products summed into one output element (KH*KW for depthwise, Cin for pointwise). Returns
    the float64 expected result.
    """
    assert actual.dtype in DTYPES and actual.dtype.isnative, f"result dtype {actual.dtype}"
    assert actual.flags.c_contiguous, "the result must be C-contiguous"
    ref_args, ref_kwargs = _reference_arguments(args, kwargs)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf inputs are compared, not warned about
        expected = reference_fn(*ref_args, **ref_kwargs)
    magnitude = reference_magnitude(reference_fn, *args, **kwargs)
    assert_within_rounding(actual, expected, magnitude, terms, actual.dtype)
    return expected


def strided_x_sharing_out(x, out_shape, layout, fill):
    """x copied into a non-contiguous view of one buffer whose start is also an ``out`` of out_shape, for the
    overlap checks (the kernel would get a contiguous copy of x; the overlap with the caller's x still counts).

    ``layout``: "sliced" (every other element) or "negative_strides". Returns (buffer, strided x, out).
    """
    buffer = np.full(2 * x.size, fill, x.dtype)
    out = buffer[:int(np.prod(out_shape))].reshape(out_shape)
    views = {"sliced": buffer[1::2], "negative_strides": buffer[x.size - 1::-1]}  # x.size elements each
    strided = views[layout].reshape(x.shape)
    assert not strided.flags.c_contiguous
    strided[...] = x
    return buffer, strided, out


def sentinel_filled(shape, dtype, value=np.nan):
    """An output buffer pre-filled with ``value``: any element a kernel fails to write keeps it."""
    return np.full(shape, value, dtype)


# ------------------------------------------------------------------------------------- memory layouts


def _misaligned(values):
    # One byte past an aligned start: no float32/float64 element is aligned to its size.
    buffer = bytearray(values.nbytes + 1)
    array = np.ndarray(values.shape, values.dtype, buffer=buffer, offset=1)
    array[...] = values
    assert not array.flags.aligned
    return array


def _read_only(values):
    array = values.copy()
    array.flags.writeable = False
    return array


def _sliced(values):
    # Every other element of a twice-as-long last axis: strided, not contiguous.
    wide = np.zeros(values.shape[:-1] + (2 * values.shape[-1],), values.dtype)
    wide[..., ::2] = values
    return wide[..., ::2]


def _negative_strides(values):
    flip = (slice(None, None, -1),) * values.ndim
    return np.ascontiguousarray(values[flip])[flip]


def _transposed_view(values):
    return np.ascontiguousarray(values.T).T


def _big_endian(values):
    return values.astype(values.dtype.newbyteorder(">"))


def _big_endian_strided(values):
    return _sliced(_big_endian(values))


#: name -> function returning an array equal to its argument with another memory layout.
LAYOUTS = {
    "fortran": np.asfortranarray,
    "transposed_view": _transposed_view,
    "sliced": _sliced,
    "negative_strides": _negative_strides,
    "read_only": _read_only,
    "misaligned": _misaligned,
    "big_endian": _big_endian,
    "big_endian_strided": _big_endian_strided,
}


# ------------------------------------------------------------------------------------------ depthwise


def depthwise_inputs(rng, dtype, *, n=2, h=9, w=9, c=5, kh=3, kw=None, multiplier=1, bias=True, scale=1.0):
    """Random (x, weight, bias) of a depthwise convolution; weight is (KH, KW, C) when multiplier is None."""
    kw = kh if kw is None else kw
    x = random_array(rng, (n, h, w, c), dtype, scale)
    weight_shape = (kh, kw, c) if multiplier is None else (kh, kw, c, multiplier)
    weight = random_array(rng, weight_shape, dtype)
    out_channels = c * (multiplier or 1)
    b = random_array(rng, (out_channels,), dtype) if bias else None
    return x, weight, b


def depthwise_terms(weight):
    """Products summed into one depthwise output element: KH*KW."""
    return weight.shape[0] * weight.shape[1]


# ------------------------------------------------------------------------------------------ pointwise


def pointwise_inputs(rng, dtype, *, n=2, h=5, w=7, cin=19, cout=37, bias=True, four_d=False, scale=1.0):
    """Random (x, weight, bias) of a pointwise convolution; weight is (1, 1, Cin, Cout) when four_d."""
    x = random_array(rng, (n, h, w, cin), dtype, scale)
    # 1/sqrt(Cin): the outputs stay about as large as x whatever Cin, so that with scale=3 they spread
    # over every piece of the activations (< -3, [-3, 0], [0, 6], > 6).
    weight = random_array(rng, (1, 1, cin, cout) if four_d else (cin, cout), dtype, 1 / np.sqrt(cin))
    b = random_array(rng, (cout,), dtype) if bias else None
    return x, weight, b


def pointwise_terms(weight):
    """Products summed into one pointwise output element: Cin (weight is (Cin, Cout) or (1, 1, Cin, Cout))."""
    return weight.shape[-2]


# ------------------------------------------------------------------------------------------ separable


def separable_inputs(rng, dtype, *, n=2, h=9, w=11, c=5, kh=3, kw=None, multiplier=1, cout=37,
                     depthwise_bias=True, pointwise_bias=True, scale=1.0):
    """Random arrays of a separable block, as a dict keyed by the argument names of separable_conv2d.

    The depthwise weight is (KH, KW, C) when multiplier is None; the pointwise weight is (C*M, Cout).
    Absent biases are None.
    """
    x, depthwise_weight, dw_bias = depthwise_inputs(rng, dtype, n=n, h=h, w=w, c=c, kh=kh, kw=kw,
                                                    multiplier=multiplier, bias=depthwise_bias, scale=scale)
    # 1/sqrt(KH*KW) here and 1/sqrt(Cin) in the pointwise weight: each stage's result stays about as large
    # as its input, so that with scale=3 both activations see values on every piece of them.
    depthwise_weight = (depthwise_weight / np.sqrt(depthwise_terms(depthwise_weight))).astype(dtype)
    cin = c * (multiplier or 1)
    pointwise_weight = random_array(rng, (cin, cout), dtype, 1 / np.sqrt(cin))
    pw_bias = random_array(rng, (cout,), dtype) if pointwise_bias else None
    return dict(x=x, depthwise_weight=depthwise_weight, pointwise_weight=pointwise_weight,
                depthwise_bias=dw_bias, pointwise_bias=pw_bias)


def separable_terms(depthwise_weight, pointwise_weight):
    """The rounding budget of a separable block, in terms: KH*KW + 1 + Cin.

    The depthwise result errs by its KH*KW-term bound (plus its bias); the pointwise sum carries those
    errors, weighted by |pointwise_weight|, and adds its own Cin-term bound. Against the magnitude of
    the composition of absolute values (reference_magnitude) the two bounds add up.
    """
    return depthwise_terms(depthwise_weight) + 1 + pointwise_terms(pointwise_weight)


# ---------------------------------------------------------------------------------------- out buffers

CANARY = 7777.0
CANARY_ELEMENTS = 64  # a whole 64-byte vector of float32 on each side


def out_between_canaries(shape, dtype):
    """(buffer, out): a NaN-filled C-contiguous ``out`` whose CANARY_ELEMENTS neighbours on either side
    in ``buffer`` hold CANARY. An element never written keeps its NaN; one written past out changes a canary."""
    size = int(np.prod(shape))
    buffer = np.full(size + 2 * CANARY_ELEMENTS, CANARY, dtype)
    out = buffer[CANARY_ELEMENTS:CANARY_ELEMENTS + size].reshape(shape)
    out[...] = np.nan
    return buffer, out


def assert_canaries_intact(buffer):
    np.testing.assert_array_equal(buffer[:CANARY_ELEMENTS], CANARY, err_msg="written before out")
    np.testing.assert_array_equal(buffer[-CANARY_ELEMENTS:], CANARY, err_msg="written after out")


#: where an out= may start in the buffer of an input of ``size`` elements: at its first element, inside it,
#: at its last one (see ``overlapping``).
OVERLAP_OFFSETS = {"start": lambda size: 0, "inside": lambda size: size // 2, "last": lambda size: size - 1}


def overlapping(values, out_shape, offset, fill):
    """(buffer, copy of ``values``, out): one ``fill``-filled buffer holding a C-contiguous copy of ``values``
    at its start and a C-contiguous ``out`` of ``out_shape`` ``offset`` elements further: they share memory
    whenever ``offset`` is less than ``values.size``."""
    out_size = int(np.prod(out_shape))
    buffer = np.full(max(values.size, offset + out_size), fill, values.dtype)
    copy = buffer[:values.size].reshape(values.shape)
    copy[...] = values
    return buffer, copy, buffer[offset:offset + out_size].reshape(out_shape)


def assert_rejected(function, error, match, *args, **kwargs):
    """``function(*args, **kwargs)`` raises ``error`` whose message matches ``match`` (re.search), and an
    ``out=`` ndarray passed keeps its contents (DESIGN.md: bad input leaves out untouched)."""
    out = kwargs.get("out")
    before = out.copy() if isinstance(out, np.ndarray) else None
    with pytest.raises(error, match=match) as excinfo:
        function(*args, **kwargs)
    if before is not None:
        np.testing.assert_array_equal(out, before, err_msg="out was written before the error")
    return excinfo


def assert_bitwise_equal(actual, expected, err_msg=""):
    """Same dtype, shape and bits (NaN payloads and the sign of zero included), not merely equal values."""
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype}, expected {expected.dtype}. {err_msg}"
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}. {err_msg}"
    bits = np.dtype(f"u{actual.dtype.itemsize}")
    differ = np.ascontiguousarray(actual).view(bits) != np.ascontiguousarray(expected).view(bits)
    if differ.any():
        first = tuple(int(i) for i in np.argwhere(differ)[0])
        raise AssertionError(f"{differ.sum()} of {differ.size} elements differ in their bits; the first at {first}: "
                             f"{actual[first]!r} != {expected[first]!r}. {err_msg}")


def padding_forms(top, bottom, left, right):
    """form -> (padding argument, the (top, bottom, left, right) it means; None for "same")."""
    return {
        "valid": ("valid", (0, 0, 0, 0)),
        "same": ("same", None),
        "int": (top, (top,) * 4),
        "pair": ((top, left), (top, top, left, left)),
        "pairs": (((top, bottom), (left, right)), (top, bottom, left, right)),
    }


def separable_by_composition(x, depthwise_weight, pointwise_weight, depthwise_bias=None, pointwise_bias=None, *,
                             stride=1, padding="valid", dilation=1, depthwise_activation=None, activation=None,
                             num_threads=None):
    """dwcy.pointwise_conv2d(dwcy.depthwise_conv2d(...)): what dwcy.separable_conv2d equals bit for bit."""
    middle = dwcy.depthwise_conv2d(x, depthwise_weight, depthwise_bias, stride=stride, padding=padding,
                                   dilation=dilation, activation=depthwise_activation, num_threads=num_threads)
    return dwcy.pointwise_conv2d(middle, pointwise_weight, pointwise_bias, activation=activation,
                                 num_threads=num_threads)


def _under_sanitizer():
    """Is AddressSanitizer's runtime loaded (a DWCY_SANITIZE build run with LD_PRELOAD, as in .ci/run)?"""
    try:
        with open("/proc/self/maps") as maps:
            return "libasan" in maps.read()
    except OSError:
        return False


UNDER_SANITIZER = _under_sanitizer()
