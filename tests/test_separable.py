"""dwcy.separable_conv2d against dwcy.reference.separable_conv2d (in float64), and bit for bit against
dwcy.pointwise_conv2d(dwcy.depthwise_conv2d(...)) with the same arguments: the fused block runs the very
routines of the two functions, band by band, so the kernels promise equality, not closeness.

The fused kernel computes bands of output rows of one image (as many as fit 128 KiB, fewer when threads
would lack bands) into a per-thread buffer, then runs the pointwise tiles on the band's pixels: sizes
here make bands of one row, of many, with tails of pixels and channels.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import dwcy
from dwcy import reference
from _helpers import (
    ACTIVATIONS,
    DTYPES,
    LANES,
    LAYOUTS,
    assert_bitwise_equal,
    assert_canaries_intact,
    assert_close_to_reference,
    dtype_id,
    out_between_canaries,
    padding_forms,
    separable_by_composition,
    separable_inputs,
    separable_terms,
)

# Every test of this module runs at every SIMD level this CPU supports (conftest.py).
pytestmark = pytest.mark.usefixtures("simd_level")

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)


def check_separable(arrays, **kwargs):
    """Run the fused kernel into a fresh array and into a NaN-filled out= between canaries; compare with the
    reference (within rounding) and with the composition of the two kernels (bit for bit)."""
    y = dwcy.separable_conv2d(**arrays, **kwargs)
    x = arrays["x"]
    assert y.dtype == np.dtype(x.dtype).newbyteorder("=")
    assert y.shape[-1] == arrays["pointwise_weight"].shape[-1]
    assert_close_to_reference(y, reference.separable_conv2d,
                              terms=separable_terms(arrays["depthwise_weight"], arrays["pointwise_weight"]),
                              **arrays, **kwargs)
    assert_bitwise_equal(y, separable_by_composition(**arrays, **kwargs),
                         "separable_conv2d differs from pointwise_conv2d(depthwise_conv2d(...))")
    buffer, out = out_between_canaries(y.shape, y.dtype)
    assert dwcy.separable_conv2d(**arrays, out=out, **kwargs) is out
    assert_bitwise_equal(out, y, "out= differs from a fresh result (an element left NaN?)")
    assert_canaries_intact(buffer)
    return y


def channel_counts(dtype):
    """(C, Cout) with tails: C = L + 3 channels (a vector and a tail), Cout = 2L + 3 (a panel and a tail)."""
    lanes = LANES[np.dtype(dtype)]
    return lanes + 3, 2 * lanes + 3


# ------------------------------------------------------------------------------------------ geometry

STRIDES = [1, 2, (2, 1)]
DILATIONS = [1, 2, (1, 2)]
PADDINGS = ["valid", "same", 1, (2, 1), ((0, 3), (2, 1))]


@dtypes
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
@pytest.mark.parametrize("dilation", DILATIONS, ids=str)
@pytest.mark.parametrize("stride", STRIDES, ids=str)
def test_geometry_grid(rng, stride, dilation, padding, multiplier, dtype):
    c, cout = channel_counts(dtype)
    arrays = separable_inputs(rng, dtype, n=2, h=11, w=13, c=c, kh=3, multiplier=multiplier, cout=cout)
    check_separable(arrays, stride=stride, padding=padding, dilation=dilation)


@dtypes
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [(1, 1), (2, 2), (5, 5), (7, 7), (1, 7), (3, 1)],
                         ids=lambda k: "x".join(map(str, k)))
def test_kernel_sizes(rng, kernel, stride, dtype):
    c, cout = channel_counts(dtype)
    arrays = separable_inputs(rng, dtype, n=2, h=12, w=15, c=c, kh=kernel[0], kw=kernel[1], cout=cout)
    check_separable(arrays, stride=stride, padding="same")


@dtypes
def test_depthwise_weight_without_multiplier_axis(rng, dtype):
    c, cout = channel_counts(dtype)
    arrays = separable_inputs(rng, dtype, c=c, multiplier=None, cout=cout)
    y = check_separable(arrays, padding="same")
    arrays["depthwise_weight"] = arrays["depthwise_weight"][..., None]
    assert_bitwise_equal(dwcy.separable_conv2d(**arrays, padding="same"), y)


@dtypes
def test_pointwise_weight_1x1xCinxCout(rng, dtype):
    c, cout = channel_counts(dtype)
    arrays = separable_inputs(rng, dtype, c=c, multiplier=2, cout=cout)
    expected = dwcy.separable_conv2d(**arrays, stride=2, padding="same")
    arrays["pointwise_weight"] = arrays["pointwise_weight"][None, None]
    assert_bitwise_equal(check_separable(arrays, stride=2, padding="same"), expected)


# ------------------------------------------------------------------------------------------- options


@dtypes
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depthwise_activation", ACTIVATIONS)
@pytest.mark.parametrize("biases", ["both", "depthwise", "pointwise", "none"])
def test_options_grid(rng, biases, depthwise_activation, activation, dtype):
    c, cout = channel_counts(dtype)
    # scale=3: both stages see values on every piece of the activations.
    arrays = separable_inputs(rng, dtype, n=2, h=9, w=14, c=c, multiplier=2, cout=cout, scale=3.0,
                              depthwise_bias=biases in ("both", "depthwise"),
                              pointwise_bias=biases in ("both", "pointwise"))
    check_separable(arrays, stride=(1, 2), padding="same", depthwise_activation=depthwise_activation,
                    activation=activation)


# ----------------------------------------------------------------------------------- bands and sizes

# name: (dtype, x shape, (KH, KW), multiplier, Cout, keyword arguments)
SIZES = {
    # 31 pixels x 40 channels a row: bands of several rows whose pixel counts leave row-tile tails.
    "57x31x40_to_70": (np.float32, (1, 57, 31, 40), (3, 3), 1, 70, dict(padding="same")),
    "57x31x40_to_70_batch3": (np.float32, (3, 57, 31, 40), (3, 3), 1, 70, dict(padding="same")),
    "57x31x40_to_70_f64": (np.float64, (1, 57, 31, 40), (3, 3), 1, 70, dict(padding="same")),
    # A row of 300 x 120 float32 is over 128 KiB: bands of a single row.
    "rows_beyond_a_band": (np.float32, (1, 5, 300, 120), (3, 3), 1, 33, dict(padding="same")),
    "rows_beyond_a_band_f64": (np.float64, (2, 4, 150, 120), (3, 3), 1, 17, dict(padding="same")),
    "stride2_multiplier2_5x5": (np.float32, (2, 33, 41, 9), (5, 5), 2, 45, dict(padding="same", stride=2)),
    "multiplier3_dilated_explicit": (np.float64, (2, 15, 17, 13), (3, 3), 3, 29,
                                     dict(padding=((1, 2), (0, 3)), dilation=2, stride=(1, 2))),
    "mobilenet_7x7x960_to_320": (np.float32, (1, 7, 7, 960), (3, 3), 1, 320, dict(padding="same")),
    "1x1_image": (np.float32, (3, 1, 1, 17), (3, 3), 1, 33, dict(padding="same")),
    "one_output_pixel": (np.float64, (2, 5, 5, 7), (5, 5), 2, 9, {}),
    "one_channel_one_output": (np.float32, (2, 9, 10, 1), (3, 3), 1, 1, dict(padding="same")),
}


@pytest.mark.parametrize("name", SIZES)
def test_sizes(rng, name):
    dtype, (n, h, w, c), (kh, kw), multiplier, cout, kwargs = SIZES[name]
    arrays = separable_inputs(rng, dtype, n=n, h=h, w=w, c=c, kh=kh, kw=kw, multiplier=multiplier, cout=cout)
    check_separable(arrays, activation="relu6", depthwise_activation="hardswish", **kwargs)


@st.composite
def separable_configurations(draw):
    """Random valid geometries and options; assume() discards those with an empty output."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 16)), draw(st.integers(1, 24))
    c, multiplier, cout = draw(st.integers(1, 40)), draw(st.integers(1, 3)), draw(st.integers(1, 80))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    forms = padding_forms(*draw(st.tuples(*[st.integers(0, 3)] * 4)))
    padding, pads = forms[draw(st.sampled_from(sorted(forms)))]
    if pads is not None:  # "same" never empties the output
        assume(h + pads[0] + pads[1] >= (kh - 1) * dh + 1)
        assume(w + pads[2] + pads[3] >= (kw - 1) * dw + 1)
    return dict(
        shape=(n, h, w, c), kernel=(kh, kw), multiplier=multiplier, cout=cout,
        kwargs=dict(stride=(sh, sw), dilation=(dh, dw), padding=padding,
                    depthwise_activation=draw(st.sampled_from(ACTIVATIONS)),
                    activation=draw(st.sampled_from(ACTIVATIONS))),
        depthwise_bias=draw(st.booleans()), pointwise_bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=80)
@given(separable_configurations())
def test_random_configurations(config):
    rng = np.random.default_rng(config["seed"])
    n, h, w, c = config["shape"]
    arrays = separable_inputs(rng, config["dtype"], n=n, h=h, w=w, c=c, kh=config["kernel"][0],
                              kw=config["kernel"][1], multiplier=config["multiplier"], cout=config["cout"],
                              depthwise_bias=config["depthwise_bias"], pointwise_bias=config["pointwise_bias"],
                              scale=3.0)
    check_separable(arrays, **config["kwargs"])


# ------------------------------------------------------------------------------------ arguments & out


def test_array_like_inputs(rng):
    arrays = separable_inputs(rng, np.float64, c=3, multiplier=2, cout=5)
    as_lists = {name: value.tolist() for name, value in arrays.items()}
    assert_bitwise_equal(dwcy.separable_conv2d(**as_lists, padding=[1, 2], stride=[2, 1]),
                         dwcy.separable_conv2d(**arrays, padding=(1, 2), stride=(2, 1)))


def test_biases_positional(rng):
    # The signature's order: x, depthwise_weight, pointwise_weight, depthwise_bias, pointwise_bias.
    a = separable_inputs(rng, np.float32, c=5, cout=7)
    assert_bitwise_equal(
        dwcy.separable_conv2d(a["x"], a["depthwise_weight"], a["pointwise_weight"], a["depthwise_bias"],
                              a["pointwise_bias"]),
        dwcy.separable_conv2d(**a),
    )


@dtypes
def test_out_is_returned_and_filled(rng, dtype):
    arrays = separable_inputs(rng, dtype, c=7, multiplier=2, cout=19)
    kwargs = dict(stride=2, padding="same", depthwise_activation="relu6", activation="relu")
    expected = dwcy.separable_conv2d(**arrays, **kwargs)
    out = np.full(expected.shape, np.nan, dtype)
    assert dwcy.separable_conv2d(**arrays, out=out, **kwargs) is out
    assert_bitwise_equal(out, expected)


# ------------------------------------------------------------------------------------------- layouts

ARGUMENTS = ["x", "depthwise_weight", "pointwise_weight", "depthwise_bias", "pointwise_bias"]


@dtypes
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("argument", ARGUMENTS)
def test_input_layouts_give_identical_results(rng, argument, layout, dtype):
    c, cout = channel_counts(dtype)
    arrays = separable_inputs(rng, dtype, n=2, h=9, w=13, c=c, multiplier=2, cout=cout)
    kwargs = dict(stride=(1, 2), padding="same", depthwise_activation="relu", activation="hardswish")
    expected = dwcy.separable_conv2d(**arrays, **kwargs)
    changed = dict(arrays, **{argument: LAYOUTS[layout](arrays[argument])})
    np.testing.assert_array_equal(changed[argument], arrays[argument])  # same values, new layout
    actual = dwcy.separable_conv2d(**changed, **kwargs)
    assert actual.dtype == np.dtype(dtype) and actual.flags.c_contiguous
    assert_bitwise_equal(actual, expected)


@dtypes
def test_every_input_in_an_odd_layout_at_once(rng, dtype):
    arrays = separable_inputs(rng, dtype, c=9, multiplier=2, cout=21)
    expected = dwcy.separable_conv2d(**arrays, padding="same")
    odd = dict(x="big_endian_strided", depthwise_weight="fortran", pointwise_weight="transposed_view",
               depthwise_bias="misaligned", pointwise_bias="negative_strides")
    actual = dwcy.separable_conv2d(**{name: LAYOUTS[odd[name]](value) for name, value in arrays.items()},
                                   padding="same")
    assert_bitwise_equal(actual, expected)


# ------------------------------------------------------------------------------------------ NaN, Inf

SPECIAL_VALUES = [np.nan, np.inf, -np.inf, -7.0, -3.0, -1.5, -0.0, 0.0, 0.5, 3.0, 6.0, 9.0]


@dtypes
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depthwise_activation", ACTIVATIONS)
def test_activations_of_special_values(depthwise_activation, activation, dtype):
    # 1x1 depthwise kernel of ones on one channel, pointwise weight of ones, no biases: every output is
    # exactly activation(depthwise_activation(x)) of one value.
    cout = 3 * LANES[np.dtype(dtype)] + 3
    x = np.resize(np.array(SPECIAL_VALUES, dtype), 2 * 5 * 7).reshape(2, 5, 7, 1)
    y = dwcy.separable_conv2d(x, np.ones((1, 1, 1), dtype), np.ones((1, cout), dtype),
                              depthwise_activation=depthwise_activation, activation=activation)
    with np.errstate(invalid="ignore"):
        middle = reference.activate(x.copy(), depthwise_activation)
        expected = reference.activate(np.broadcast_to(middle, y.shape).copy(), activation)
    np.testing.assert_array_equal(y, expected)  # values, not bits: 0 + -0.0 * 1 is +0.0


@dtypes
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depthwise_activation", ACTIVATIONS)
def test_nan_and_inf_propagate_like_the_reference(rng, depthwise_activation, activation, dtype):
    c, cout = channel_counts(dtype)
    arrays = separable_inputs(rng, dtype, n=2, h=9, w=13, c=c, multiplier=2, cout=cout, scale=3.0)
    x = arrays["x"]
    x[0, 0, 0, -1] = np.nan  # a corner (border code), the tail channel
    x[0, 4, 6, 0] = np.inf  # interior
    x[1, -1, -1, 1] = -np.inf  # the bottom-right corner
    x[1, 4, 0, 2] = np.inf
    arrays["pointwise_bias"][-1] = np.nan  # the last output channel, in a partial vector
    kwargs = dict(padding="same", depthwise_activation=depthwise_activation, activation=activation)
    y = check_separable(arrays, **kwargs)
    assert not np.isfinite(y).all() and np.isfinite(y).any()
