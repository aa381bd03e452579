"""dwcy.depthwise_conv2d against dwcy.reference.depthwise_conv2d (in float64): geometry, options, layouts."""

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import dwcy
from dwcy import reference
from dwcy.kernels import aligned_empty
from _helpers import (
    ACTIVATIONS,
    DTYPES,
    LANES,
    LAYOUTS,
    TOLERANCE_PER_TERM,
    assert_bitwise_equal,
    assert_close_to_reference,
    depthwise_inputs,
    depthwise_terms,
    dtype_id,
    padding_forms,
    reference_magnitude,
)

# Every test of this module runs at every SIMD level this CPU supports (conftest.py).
pytestmark = pytest.mark.usefixtures("simd_level")

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)


def check_depthwise(x, weight, bias=None, **kwargs):
    """Run the kernel, compare it with the reference, return the kernel's result."""
    y = dwcy.depthwise_conv2d(x, weight, bias, **kwargs)
    assert y.dtype == np.dtype(x.dtype).newbyteorder("=")
    assert_close_to_reference(y, reference.depthwise_conv2d, x, weight, bias, terms=depthwise_terms(weight),
                               **kwargs)
    return y


def pair(value):
    return (value, value) if isinstance(value, int) else value


# ------------------------------------------------------------------------------------------ geometry

KERNEL_SIZES = [1, 2, 3, 5, 7, 11]
STRIDES = [1, 2, 3, (1, 2)]
DILATIONS = [1, 2, (2, 1)]
PADDINGS = ["valid", "same", 1, (2, 1), ((0, 3), (2, 1))]


@dtypes
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
@pytest.mark.parametrize("dilation", DILATIONS, ids=str)
@pytest.mark.parametrize("stride", STRIDES, ids=str)
@pytest.mark.parametrize("kernel_size", KERNEL_SIZES)
def test_geometry_grid(rng, kernel_size, stride, dilation, padding, dtype):
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    span_h, span_w = (kernel_size - 1) * dh + 1, (kernel_size - 1) * dw + 1
    # A few output rows; at least 9 interior output columns, so the multi-pixel interior tile runs
    # (8 pixels with AVX-512, fewer elsewhere) next to single-pixel leftovers and the borders.
    h = span_h + 2 * sh + 1
    w = max(20, span_w + 9 * sw + 1)
    # Four full vectors of channels and a tail of 3: the multi-vector tiles, the one-vector ones and the tail.
    c = 4 * LANES[dtype] + 3
    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=h, w=w, c=c, kh=kernel_size, multiplier=None)
    check_depthwise(x, weight, bias, stride=stride, padding=padding, dilation=dilation)


@dtypes
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("multiplier", [1, 2, 3])
@pytest.mark.parametrize(
    "geometry",
    [
        dict(kh=3, kw=3, stride=2, padding="same", dilation=1),
        dict(kh=5, kw=5, stride=(1, 2), padding=((1, 2), (0, 3)), dilation=(2, 1)),
    ],
    ids=["3x3_s2_same", "5x5_s12_d21_explicit"],
)
def test_options_grid(rng, geometry, multiplier, bias, activation, dtype):
    geometry = dict(geometry)
    kh, kw = geometry.pop("kh"), geometry.pop("kw")
    # scale=3: outputs spread over every piece of the activations (< -3, [-3, 0], [0, 6], > 6).
    x, weight, b = depthwise_inputs(rng, dtype, n=3, h=11, w=26, c=7, kh=kh, kw=kw, multiplier=multiplier,
                                    bias=bias, scale=3.0)
    check_depthwise(x, weight, b, activation=activation, **geometry)


@st.composite
def depthwise_configurations(draw):
    """Random valid geometries and options; assume() discards those with an empty output."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 24)), draw(st.integers(1, 30))
    c, multiplier = draw(st.integers(1, 40)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    forms = padding_forms(*draw(st.tuples(*[st.integers(0, 4)] * 4)))
    padding, pads = forms[draw(st.sampled_from(sorted(forms)))]
    if pads is not None:  # "same" never empties the output
        assume(h + pads[0] + pads[1] >= (kh - 1) * dh + 1)
        assume(w + pads[2] + pads[3] >= (kw - 1) * dw + 1)
    return dict(
        shape=(n, h, w, c), kernel=(kh, kw), multiplier=multiplier, stride=(sh, sw), dilation=(dh, dw),
        padding=padding, bias=draw(st.booleans()), activation=draw(st.sampled_from(ACTIVATIONS)),
        dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**32 - 1)),
    )


@given(depthwise_configurations())
def test_random_configurations(config):
    rng = np.random.default_rng(config["seed"])
    n, h, w, c = config["shape"]
    x, weight, bias = depthwise_inputs(rng, config["dtype"], n=n, h=h, w=w, c=c, kh=config["kernel"][0],
                                       kw=config["kernel"][1], multiplier=config["multiplier"],
                                       bias=config["bias"], scale=3.0)
    check_depthwise(x, weight, bias, stride=config["stride"], padding=config["padding"],
                    dilation=config["dilation"], activation=config["activation"])


# ------------------------------------------------------------------------------------------ edge tiles


@dtypes
@pytest.mark.parametrize("symmetric", [False, True], ids=["same", "symmetric"])
@pytest.mark.parametrize("out_w", [7, 8, 14, 16])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_rows_of_one_or_two_tiles(rng, kernel_size, dilation, stride, out_w, symmetric, dtype):
    """Rows whose every tile meets padding: a tile as wide as the row (7 or 8 pixels with AVX-512: both
    edges) or two (a left edge, then a right one), with 'same' padding or the same number of columns on
    both sides: the tiles that know their skipped columns at compile time (microkernels.h)."""
    c = 2 * LANES[dtype]  # whole vectors: those tiles (the channel tails' test their columns: the grid above)
    x, weight, bias = depthwise_inputs(rng, dtype, n=1, h=5, w=out_w * stride, c=c, kh=kernel_size,
                                       multiplier=None)
    padding = (kernel_size - 1) * dilation // 2 if symmetric else "same"
    y = check_depthwise(x, weight, bias, stride=stride, dilation=dilation, padding=padding)
    assert y.shape[2] == out_w


@dtypes
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "phase"])
@pytest.mark.parametrize("c_extra", [0, 5], ids=["whole", "tail"])
@pytest.mark.parametrize("kernel, stride", [(3, 1), (3, 2), (5, 1), (7, 1)])
def test_row_pairs_equal_single_rows(rng, kernel, stride, c_extra, offset, dtype):
    """3x3 kernels of stride 1 or 2, 5x5 and 7x7 of stride 1 run two output rows at a time where their taps all
    lie in the image (depthwise.pxi's _dw_pairs), one at a time elsewhere. Dropping the top ``stride`` input
    rows shifts which rows pair with which: every row computed both ways must agree to the bit, at a phase (x
    off a 64-byte boundary) and with a channel tail too (masked tiles)."""
    c = 3 * LANES[dtype] + c_extra
    values, weight, bias = depthwise_inputs(rng, dtype, n=2, h=16, w=20, c=c, kh=kernel, multiplier=None)
    x = aligned_empty(values.shape, values.dtype, offset * dtype.itemsize)  # (offset: elements past a line)
    x[...] = values
    kwargs = dict(stride=stride, padding=kernel // 2, activation="relu6")
    y = check_depthwise(x, weight, bias, **kwargs)
    shifted = check_depthwise(x[:, stride:], weight, bias, **kwargs)  # its row j is y's row j + 1
    rows, top = shifted.shape[1], kernel // 2  # (its rows above ``top`` read padding where y's read x)
    assert_bitwise_equal(shifted[:, top:rows - 1], y[:, top + 1:rows])


@dtypes
@pytest.mark.parametrize(
    "kernel, stride, dilation, c_extra",
    [(3, 1, 1, 0), (3, 2, 1, 0), (3, 1, 2, 0), (5, 1, 1, 5), (4, 3, 1, 0)],
    ids=["3x3", "3x3_stride2", "3x3_dilation2", "5x5_tail", "4x4_stride3"],
)
def test_input_streamed_from_memory(rng, kernel, stride, dilation, c_extra, dtype):
    """An input and output of 20 MiB or more together (DWCY_DW_STREAM_BYTES): the input comes from memory, and
    as the tiles run, they fetch the input rows that the next output row (or pair) reads first, up to each
    image's last row. Results as ever, bit for bit at any thread count, with pairs and single rows, a channel
    tail, at a phase (NumPy's offset)."""
    c = 9 * LANES[dtype] + c_extra
    values, weight, bias = depthwise_inputs(rng, dtype, n=5, h=61, w=131, c=c, kh=kernel, multiplier=None)
    x = aligned_empty(values.shape, values.dtype, 16)
    x[...] = values
    kwargs = dict(stride=stride, dilation=dilation, padding="same", activation="relu6")
    y = check_depthwise(x, weight, bias, num_threads=1, **kwargs)
    assert x.nbytes + y.nbytes >= 20 * 1024 * 1024
    assert_bitwise_equal(dwcy.depthwise_conv2d(x, weight, bias, num_threads=3, **kwargs), y)


# ----------------------------------------------------------------------------------------- edge sizes

EDGE_CASES = {
    # name: (x shape, kernel (KH, KW), keyword arguments, expected output (OH, OW))
    "1x1_image_1x1_kernel": ((2, 1, 1, 5), (1, 1), {}, (1, 1)),
    "1x1_image_3x3_same": ((2, 1, 1, 5), (3, 3), dict(padding="same"), (1, 1)),
    "1x1_image_3x3_same_stride2": ((1, 1, 1, 17), (3, 3), dict(padding="same", stride=2), (1, 1)),
    "kernel_equals_image": ((3, 7, 7, 5), (7, 7), {}, (1, 1)),
    "kernel_equals_wide_image": ((1, 3, 25, 5), (3, 25), {}, (1, 1)),
    "stride_larger_than_kernel": ((2, 11, 23, 5), (2, 2), dict(stride=4), (3, 6)),
    "huge_stride": ((1, 7, 7, 5), (3, 3), dict(stride=100), (1, 1)),
    "huge_stride_same": ((1, 7, 7, 5), (3, 3), dict(stride=100, padding="same"), (1, 1)),
    "kernel_larger_than_image_padded": ((2, 3, 4, 5), (9, 9), dict(padding=4), (3, 4)),
    "kernel_larger_than_image_same": ((1, 2, 3, 5), (7, 7), dict(padding="same"), (2, 3)),
    "only_padding_rows": ((1, 2, 21, 5), (3, 3), dict(padding=((4, 4), (1, 1))), (8, 21)),
    "one_channel": ((2, 9, 24, 1), (3, 3), dict(padding="same"), (9, 24)),
    "batch_of_1": ((1, 9, 9, 5), (3, 3), {}, (7, 7)),
    "batch_of_5": ((5, 9, 9, 5), (3, 3), dict(padding="same", stride=2), (5, 5)),
}


@dtypes
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_sizes(rng, name, multiplier, dtype):
    shape, (kh, kw), kwargs, out_hw = EDGE_CASES[name]
    n, h, w, c = shape
    x, weight, bias = depthwise_inputs(rng, dtype, n=n, h=h, w=w, c=c, kh=kh, kw=kw, multiplier=multiplier)
    y = check_depthwise(x, weight, bias, **kwargs)
    assert y.shape == (n, *out_hw, c * multiplier)


# ------------------------------------------------------------------------------------ arguments & out


@pytest.mark.parametrize(
    "shape, kernel, stride, dilation, multiplier",
    [
        # Rows wide enough that one output row's span of input rows, expanded, overflows the kernels'
        # expansion buffer (DWCY_DW_EXPAND_BYTES, 512 KB; float64): each output row expands its own tap rows.
        ((1, 12, 128, 64), 3, 1, 3, 2),  # 7 rows of 128 KB
        ((1, 9, 96, 48), 3, 1, 2, 3),  # 5 rows of 108 KB
        # Narrow rows: the input rows of many output rows are expanded in one go, and shared.
        ((2, 40, 9, 5), 3, 1, 1, 2),
        ((1, 41, 11, 3), 5, 3, 2, 3),
        ((1, 30, 9, 4), 3, (2, 1), (1, 3), 4),
    ],
    ids=str,
)
def test_multiplier_expansion_bands(rng, shape, kernel, stride, dilation, multiplier):
    n, h, w, c = shape
    x, weight, bias = depthwise_inputs(rng, np.dtype(np.float64), n=n, h=h, w=w, c=c, kh=kernel,
                                       multiplier=multiplier)
    for padding in ("same", "valid"):
        check_depthwise(x, weight, bias, stride=stride, dilation=dilation, padding=padding)
        for threads in (1, 2, 3):
            np.testing.assert_array_equal(
                dwcy.depthwise_conv2d(x, weight, bias, stride=stride, dilation=dilation, padding=padding,
                                      num_threads=threads),
                dwcy.depthwise_conv2d(x, weight, bias, stride=stride, dilation=dilation, padding=padding,
                                      num_threads=1))

@dtypes
def test_weight_without_multiplier_axis_equals_multiplier_1(rng, dtype):
    x, weight, bias = depthwise_inputs(rng, dtype, h=8, w=21, c=19, multiplier=None)
    np.testing.assert_array_equal(
        dwcy.depthwise_conv2d(x, weight, bias, padding="same"),
        dwcy.depthwise_conv2d(x, weight[..., None], bias, padding="same"),
    )


def test_padding_string_is_case_insensitive(rng):
    x, weight, bias = depthwise_inputs(rng, np.float32)
    np.testing.assert_array_equal(dwcy.depthwise_conv2d(x, weight, padding="SAME"),
                                  dwcy.depthwise_conv2d(x, weight, padding="same"))


def test_array_like_inputs(rng):
    x, weight, bias = depthwise_inputs(rng, np.float64, multiplier=2)
    expected = dwcy.depthwise_conv2d(x, weight, bias, padding=1)
    actual = dwcy.depthwise_conv2d(x.tolist(), weight.tolist(), bias.tolist(), padding=[1, 1])
    np.testing.assert_array_equal(actual, expected)


@dtypes
def test_out_is_returned_and_filled(rng, dtype):
    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=9, w=22, c=19, multiplier=2)
    expected = dwcy.depthwise_conv2d(x, weight, bias, stride=2, padding="same", activation="relu6")
    out = np.full(expected.shape, np.nan, dtype)
    y = dwcy.depthwise_conv2d(x, weight, bias, stride=2, padding="same", activation="relu6", out=out)
    assert y is out
    np.testing.assert_array_equal(out, expected)


# ------------------------------------------------------------------------------------------- layouts


@dtypes
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("argument", ["x", "weight", "bias"])
def test_input_layouts_give_identical_results(rng, argument, layout, dtype):
    # The kernels read a C-contiguous, aligned, native copy of anything else: the result must not move a bit.
    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=9, w=21, c=19, multiplier=2)
    kwargs = dict(stride=(1, 2), padding="same", activation="hardswish")
    expected = dwcy.depthwise_conv2d(x, weight, bias, **kwargs)
    originals = dict(x=x, weight=weight, bias=bias)
    arrays = dict(originals, **{argument: LAYOUTS[layout](originals[argument])})
    np.testing.assert_array_equal(arrays[argument], originals[argument])  # same values, new layout
    actual = dwcy.depthwise_conv2d(arrays["x"], arrays["weight"], arrays["bias"], **kwargs)
    assert actual.dtype == np.dtype(dtype) and actual.flags.c_contiguous
    np.testing.assert_array_equal(actual, expected)


@dtypes
def test_every_input_in_an_odd_layout_at_once(rng, dtype):
    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=9, w=21, c=19, multiplier=2)
    expected = dwcy.depthwise_conv2d(x, weight, bias, padding="same")
    actual = dwcy.depthwise_conv2d(LAYOUTS["big_endian_strided"](x), LAYOUTS["misaligned"](weight),
                                   LAYOUTS["negative_strides"](bias), padding="same")
    np.testing.assert_array_equal(actual, expected)


# ------------------------------------------------------------------------------------------ NaN, Inf

SPECIAL_VALUES = [np.nan, np.inf, -np.inf, -7.0, -3.0, -1.5, -0.0, 0.0, 0.5, 3.0, 6.0, 9.0]


def numpy_activation(y, activation):
    """The activations as NumPy arithmetic computes them (DESIGN.md): NaN stays NaN."""
    if activation == "relu":
        return np.maximum(y, 0)
    if activation == "relu6":
        return np.clip(y, 0, 6)
    if activation == "hardswish":
        return y * np.clip(y + 3, 0, 6) / 6
    return y


@dtypes
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activations_of_special_values(activation, dtype):
    # A 1x1 kernel of ones and no bias passes x through exactly: the output is the activation of each value.
    # 21 columns and 19 channels: values land in interior tiles, single pixels and channel tails alike.
    x = np.resize(np.array(SPECIAL_VALUES, dtype), 2 * 3 * 21 * 19).reshape(2, 3, 21, 19)
    y = dwcy.depthwise_conv2d(x, np.ones((1, 1, 19), dtype), activation=activation)
    with np.errstate(invalid="ignore"):
        expected = numpy_activation(x, activation)
    np.testing.assert_array_equal(y, expected)


@dtypes
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_and_inf_propagate_like_the_reference(rng, activation, multiplier, dtype):
    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=7, w=23, c=19, multiplier=multiplier, scale=3.0)
    special = rng.random(x.shape) < 0.02
    x[special] = rng.choice([np.nan, np.inf, -np.inf], special.sum())
    _, h, w, c = x.shape
    x[:, ::h - 1, ::w - 1, ::c - 1] = np.nan  # corner pixels (border code paths), first and last (tail) channels
    kwargs = dict(padding="same", activation=activation)

    y = dwcy.depthwise_conv2d(x, weight, bias, **kwargs)
    with np.errstate(invalid="ignore"):
        expected = reference.depthwise_conv2d(x.astype(np.float64), weight.astype(np.float64),
                                              bias.astype(np.float64), **kwargs)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg="NaN positions differ")
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected), err_msg="+Inf positions differ")
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(expected), err_msg="-Inf positions differ")
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    magnitude = reference_magnitude(reference.depthwise_conv2d, x, weight, bias, **kwargs)
    largest = magnitude[np.isfinite(magnitude)].max()
    atol = TOLERANCE_PER_TERM[np.dtype(dtype)] * (depthwise_terms(weight) + 1) * largest  # see _helpers.py
    np.testing.assert_allclose(y, expected, rtol=0, atol=atol, equal_nan=True)
