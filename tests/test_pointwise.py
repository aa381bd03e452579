"""dwcy.pointwise_conv2d against dwcy.reference.pointwise_conv2d (in float64): channel and pixel tails,
options, layouts, NaN and Inf.

The kernel is a GEMM (pixels x Cin) @ (Cin x Cout) in register tiles: MR pixel rows (12 with AVX-512),
then 4-row and 1-row tiles for the rest of a block of rows; NR = 2 vectors of output channels (32 float32,
16 float64), then a one-vector tile, then a partial vector computed into scratch. Sizes here are chosen
around those edges, in units of LANES so that they follow the dtype.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

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
    pointwise_inputs,
    pointwise_terms,
)

# Every test of this module runs at every SIMD level this CPU supports (conftest.py).
pytestmark = pytest.mark.usefixtures("simd_level")

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)


def check_pointwise(x, weight, bias=None, **kwargs):
    """Run the kernel twice, into a fresh array and into a NaN-filled out= between canaries; both must agree
    bit for bit, every element of out must be written, nothing around it; compare with the reference."""
    y = dwcy.pointwise_conv2d(x, weight, bias, **kwargs)
    assert y.dtype == np.dtype(x.dtype).newbyteorder("=")
    assert y.shape == x.shape[:3] + (weight.shape[-1],)
    assert_close_to_reference(y, reference.pointwise_conv2d, x, weight, bias, terms=pointwise_terms(weight),
                              **kwargs)
    buffer, out = out_between_canaries(y.shape, y.dtype)
    assert dwcy.pointwise_conv2d(x, weight, bias, out=out, **kwargs) is out
    assert_bitwise_equal(out, y, "out= differs from a fresh result (an element left NaN?)")
    assert_canaries_intact(buffer)
    return y


def output_channels(dtype):
    """Cout around the tiles' edges, for the vector width L of dtype (a panel is 2L wide)."""
    L = LANES[np.dtype(dtype)]
    return {
        "1": 1,  # a lone partial vector
        "L-1": L - 1,
        "L": L,  # one vector, no partial
        "L+1": L + 1,  # one vector and a partial one
        "2L-1": 2 * L - 1,
        "2L": 2 * L,  # exactly one panel
        "2L+1": 2 * L + 1,  # a panel and a 1-channel partial vector
        "3L": 3 * L,  # a panel and a vector
        "3L+3": 3 * L + 3,  # a panel, a vector and a partial one
        "4L+3": 4 * L + 3,  # two panels and a partial vector
        "5L+7": 5 * L + 7,
    }


COUT_CASES = [(dtype, name) for dtype in DTYPES for name in output_channels(dtype)]


# ------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("cin", [1, 19])
@pytest.mark.parametrize("dtype, cout_name", COUT_CASES, ids=[f"{dtype_id(d)}-Cout_{n}" for d, n in COUT_CASES])
def test_output_channel_tails(rng, dtype, cout_name, cin):
    cout = output_channels(dtype)[cout_name]
    # 70 pixels = 5 x 12 + 4 + 4 + 1 + 1: every row tile meets every column tile.
    x, weight, bias = pointwise_inputs(rng, dtype, n=2, h=5, w=7, cin=cin, cout=cout)
    check_pointwise(x, weight, bias)


@dtypes
@pytest.mark.parametrize("cin", [1, 2, 3, 7, 16, 17, 64, 100, 257])
def test_input_channels(rng, cin, dtype):
    # The tiles sum all of Cin in one pass; any Cin, as small as 1, as odd as 257.
    x, weight, bias = pointwise_inputs(rng, dtype, n=2, h=5, w=7, cin=cin, cout=3 * LANES[np.dtype(dtype)] + 3)
    check_pointwise(x, weight, bias)


# (N, H, W): pixel counts 14k + r for every kind of remainder (the rows left below the 14-row tiles go in
# tiles of 7 rows while more than 4 are left, then of 4: 49 is a 7x7 image's), and counts that cross the
# row blocks the threads take (at most 192 rows each, split evenly: so blocks have tails too).
PIXEL_SHAPES = [
    (1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 2, 2), (1, 1, 5), (1, 2, 3), (1, 1, 7), (1, 1, 11), (1, 3, 4),
    (1, 1, 13), (1, 1, 14), (1, 3, 5), (1, 1, 16), (1, 1, 17), (2, 3, 4), (1, 5, 5), (3, 3, 3), (1, 1, 31),
    (1, 7, 7), (3, 7, 9), (1, 1, 193), (2, 13, 17), (1, 7, 143),
]


@dtypes
@pytest.mark.parametrize("shape", PIXEL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_pixel_counts(rng, shape, dtype):
    n, h, w = shape
    x, weight, bias = pointwise_inputs(rng, dtype, n=n, h=h, w=w, cin=19, cout=3 * LANES[np.dtype(dtype)] + 3)
    check_pointwise(x, weight, bias)


@dtypes
@pytest.mark.parametrize(
    "cin, cout, shape",
    [
        (1000, 1000, (1, 2, 3)),
        (1, 1000, (1, 3, 5)),
        (1000, 1, (1, 5, 9)),
        (999, 997, (1, 1, 7)),
        # Rows of W 4096 bytes or more apart (Cout >= 1024 float32, >= 512 float64): panels are packed first.
        (320, 1280, (1, 7, 7)),
        (37, 1037, (2, 3, 5)),
        (29, 600, (1, 5, 5)),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_wide_and_deep_channels(rng, cin, cout, shape, dtype):
    n, h, w = shape
    x, weight, bias = pointwise_inputs(rng, dtype, n=n, h=h, w=w, cin=cin, cout=cout)
    check_pointwise(x, weight, bias)


@dtypes
@pytest.mark.parametrize(
    "cin, cout_name, shape",
    [
        (100, "L+1", (1, 149, 149)),  # a vector and a partial one
        (100, "L", (1, 149, 149)),  # one vector: MR rows as groups of MR1
        (7, "L", (1, 613, 499)),  # a short K: tiles fetch many tiles ahead
        (16, "3L+3", (1, 333, 397)),  # W in L1: row tile by row tile (A read once, in order: no fetching)
    ],
)
def test_input_streamed_from_memory(rng, cin, cout_name, shape, dtype):
    # An input of 8 MiB or more (DWCY_STREAM_BYTES, here in float32 and float64) comes from memory: the
    # tiles that read it panel by panel fetch the rows of a tile ahead as they run; the last tiles' fetches
    # point past the input. Pixel counts that fill no whole tile at the end.
    n, h, w = shape
    cout = output_channels(dtype)[cout_name]
    x, weight, bias = pointwise_inputs(rng, dtype, n=n, h=h, w=w, cin=cin, cout=cout)
    assert x.nbytes >= 8 * 1024 * 1024
    y = check_pointwise(x, weight, bias, activation="relu6")
    np.testing.assert_array_equal(dwcy.pointwise_conv2d(x, weight, bias, activation="relu6", num_threads=2), y)


@dtypes
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_weights_packed_as_used_equal_weights_packed_ahead(rng, dtype, threads):
    # A large W (over 512 KB) and one image of 7x7 pixels: one block of rows, so each thread packs the
    # panels it uses as it goes; in a batch of 64 images W is packed ahead. Every output element is the
    # same sum either way, bit for bit.
    x, weight, bias = pointwise_inputs(rng, dtype, n=64, h=7, w=7, cin=600, cout=330)
    batch = dwcy.pointwise_conv2d(x, weight, bias, activation="relu6", num_threads=threads)
    single = dwcy.pointwise_conv2d(x[:1], weight, bias, activation="relu6", num_threads=threads)
    np.testing.assert_array_equal(single, batch[:1])
    check_pointwise(x[:1], weight, bias, activation="relu6")


# ----------------------------------------------------------------------------------------- options


@dtypes
@pytest.mark.parametrize("weight_ndim", [2, 4])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_options_grid(rng, activation, bias, weight_ndim, dtype):
    # scale=3: outputs spread over every piece of the activations.
    x, weight, b = pointwise_inputs(rng, dtype, n=3, h=5, w=7, cin=23, cout=2 * LANES[np.dtype(dtype)] + 5,
                                    bias=bias, four_d=weight_ndim == 4, scale=3.0)
    check_pointwise(x, weight, b, activation=activation)


@st.composite
def pointwise_configurations(draw):
    """Cin and Cout from 1 to 1000 (small ones often: they are where the tails are), any pixel count,
    kept to a few million multiply-adds so that an example runs in milliseconds."""
    channels = st.one_of(st.integers(1, 70), st.integers(1, 1000))
    cin, cout = draw(channels), draw(channels)
    most_pixels = max(1, min(600, 3_000_000 // (cin * cout)))
    n, h = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    w = draw(st.integers(1, max(1, most_pixels // (n * h))))
    return dict(
        shape=(n, h, w), cin=cin, cout=cout, bias=draw(st.booleans()), four_d=draw(st.booleans()),
        activation=draw(st.sampled_from(ACTIVATIONS)), dtype=draw(st.sampled_from(DTYPES)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=100)
@given(pointwise_configurations())
def test_random_configurations(config):
    rng = np.random.default_rng(config["seed"])
    n, h, w = config["shape"]
    x, weight, bias = pointwise_inputs(rng, config["dtype"], n=n, h=h, w=w, cin=config["cin"], cout=config["cout"],
                                       bias=config["bias"], four_d=config["four_d"], scale=3.0)
    check_pointwise(x, weight, bias, activation=config["activation"])


# ------------------------------------------------------------------------------------ arguments & out


@dtypes
def test_weight_1x1xCinxCout_equals_CinxCout(rng, dtype):
    x, weight, bias = pointwise_inputs(rng, dtype, cin=21, cout=45)
    assert_bitwise_equal(dwcy.pointwise_conv2d(x, weight, bias, activation="relu"),
                         dwcy.pointwise_conv2d(x, weight[None, None], bias, activation="relu"))


def test_array_like_inputs(rng):
    x, weight, bias = pointwise_inputs(rng, np.float64, cin=5, cout=9)
    assert_bitwise_equal(dwcy.pointwise_conv2d(x.tolist(), weight.tolist(), bias.tolist()),
                         dwcy.pointwise_conv2d(x, weight, bias))


@dtypes
def test_out_is_returned_and_filled(rng, dtype):
    x, weight, bias = pointwise_inputs(rng, dtype, n=2, h=5, w=7, cin=19, cout=53)
    expected = dwcy.pointwise_conv2d(x, weight, bias, activation="relu6")
    out = np.full(expected.shape, np.nan, dtype)
    y = dwcy.pointwise_conv2d(x, weight, bias, activation="relu6", out=out)
    assert y is out
    assert_bitwise_equal(out, expected)


# ------------------------------------------------------------------------------------------- layouts


def pointwise_layout_case(rng, dtype, argument, layout, weight_ndim):
    """(arrays in the usual layout, the same with ``argument`` in ``layout``)."""
    x, weight, bias = pointwise_inputs(rng, dtype, n=2, h=5, w=7, cin=19, cout=2 * LANES[np.dtype(dtype)] + 3,
                                       four_d=weight_ndim == 4)
    originals = dict(x=x, weight=weight, bias=bias)
    changed = dict(originals, **{argument: LAYOUTS[layout](originals[argument])})
    np.testing.assert_array_equal(changed[argument], originals[argument])  # same values, new layout
    return originals, changed


@dtypes
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("argument, weight_ndim", [("x", 2), ("weight", 2), ("weight", 4), ("bias", 2)],
                         ids=["x", "weight", "weight_4d", "bias"])
def test_input_layouts_give_identical_results(rng, argument, weight_ndim, layout, dtype):
    # The kernel reads a C-contiguous, aligned, native copy of anything else: the result must not move a bit.
    originals, changed = pointwise_layout_case(rng, dtype, argument, layout, weight_ndim)
    expected = dwcy.pointwise_conv2d(**originals, activation="hardswish")
    actual = dwcy.pointwise_conv2d(**changed, activation="hardswish")
    assert actual.dtype == np.dtype(dtype) and actual.flags.c_contiguous
    assert_bitwise_equal(actual, expected)


@dtypes
def test_every_input_in_an_odd_layout_at_once(rng, dtype):
    x, weight, bias = pointwise_inputs(rng, dtype, n=2, h=5, w=7, cin=19, cout=37)
    expected = dwcy.pointwise_conv2d(x, weight, bias)
    actual = dwcy.pointwise_conv2d(LAYOUTS["big_endian_strided"](x), LAYOUTS["transposed_view"](weight),
                                   LAYOUTS["misaligned"](bias))
    assert_bitwise_equal(actual, expected)


# ------------------------------------------------------------------------------------------ NaN, Inf

SPECIAL_VALUES = [np.nan, np.inf, -np.inf, -7.0, -3.0, -1.5, -0.0, 0.0, 0.5, 3.0, 6.0, 9.0]


@dtypes
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activations_of_special_values(activation, dtype):
    # Cin = 1, a weight of ones and no bias: every output channel is exactly 0 + x * 1, so each output is
    # the activation of one value, computed by every row tile (70 pixels) and column tile (Cout = 3L + 3).
    cout = 3 * LANES[np.dtype(dtype)] + 3
    x = np.resize(np.array(SPECIAL_VALUES, dtype), 70).reshape(2, 5, 7, 1)
    y = dwcy.pointwise_conv2d(x, np.ones((1, cout), dtype), activation=activation)
    with np.errstate(invalid="ignore"):
        expected = reference.activate(np.broadcast_to(x, y.shape).copy(), activation)
    np.testing.assert_array_equal(y, expected)  # values, not bits: 0 + -0.0 * 1 is +0.0


@dtypes
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_and_inf_propagate_like_the_reference(rng, activation, dtype):
    cout = 3 * LANES[np.dtype(dtype)] + 3
    x, weight, bias = pointwise_inputs(rng, dtype, n=2, h=5, w=7, cin=19, cout=cout, scale=3.0)
    special = rng.random(x.shape) < 0.005
    x[special] = rng.choice([np.nan, np.inf, -np.inf], special.sum())
    x[0, 0, 0, -1] = np.inf  # the first pixel (a 12-row tile), the last (a 1-row tile)
    x[-1, -1, -1, 0] = -np.inf
    bias[-1] = np.nan  # the last output channel, in the partial vector
    y = dwcy.pointwise_conv2d(x, weight, bias, activation=activation)
    # NaN and Inf at the reference's positions (with the same signs), finite values within rounding.
    expected = assert_close_to_reference(y, reference.pointwise_conv2d, x, weight, bias, terms=19,
                                         activation=activation)
    assert np.isnan(expected).any() and np.isfinite(expected).any()
