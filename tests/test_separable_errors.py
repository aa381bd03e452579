"""Bad input to dwcy.separable_conv2d: the exception type of DESIGN.md, a message naming the argument as the
caller wrote it (``depthwise_weight``, not ``weight``: separable_conv2d has two weights, two biases and two
activations), and an ``out=`` left untouched (it holds SENTINEL, compared after the call)."""

import functools

import numpy as np
import pytest

import dwcy
from _helpers import LAYOUTS, OVERLAP_OFFSETS, assert_rejected, overlapping

SENTINEL = 1234.5
C, M, COUT = 3, 2, 5
X_SHAPE = (2, 6, 7, C)
OUT_SHAPE = (2, 4, 5, COUT)  # "valid" 3x3 on 6x7
ARGUMENTS = ["x", "depthwise_weight", "pointwise_weight", "depthwise_bias", "pointwise_bias"]
WEIGHTS_AND_BIASES = ARGUMENTS[1:]

rejected = functools.partial(assert_rejected, dwcy.separable_conv2d)


def arrays(dtype=np.float32):
    """Valid arrays of a call, keyed by argument name: a multiplier M = 2, so the pointwise Cin is C*M = 6."""
    rng = np.random.default_rng(0)
    shapes = dict(x=X_SHAPE, depthwise_weight=(3, 3, C, M), pointwise_weight=(C * M, COUT),
                  depthwise_bias=(C * M,), pointwise_bias=(COUT,))
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()}


def sentinel_out(shape=OUT_SHAPE, dtype=np.float32):
    return np.full(shape, SENTINEL, dtype)


def call(dtype=np.float32, **changes):
    """The keyword arguments of a valid call with a sentinel out=, then ``changes``."""
    return {**arrays(dtype), "out": sentinel_out(dtype=dtype), **changes}


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def test_the_valid_call_is_accepted():
    # Every test below changes one thing of this call.
    assert dwcy.separable_conv2d(**call()).shape == OUT_SHAPE


# ------------------------------------------------------------------------------------------------ x


@pytest.mark.parametrize("shape", [(6, 7, C), (1, 2, 6, 7, C)], ids=str)
def test_x_of_wrong_ndim(shape):
    rejected(ValueError, rf"^x\b.*{len(shape)}-D", **call(x=zeros(shape)))


@pytest.mark.parametrize("axis", range(4))
def test_zero_size_axis_of_x(axis):
    shape = list(X_SHAPE)
    shape[axis] = 0
    rejected(ValueError, r"^x must have no empty axis", **call(x=zeros(shape)))


# ------------------------------------------------------------------------------------ depthwise_weight


@pytest.mark.parametrize("shape", [(3, 3), (3,), (3, 3, C, M, 1)], ids=str)
def test_depthwise_weight_of_wrong_ndim(shape):
    rejected(ValueError, rf"^depthwise_weight must be \(KH, KW, C\) or \(KH, KW, C, M\), got {len(shape)}-D",
             **call(depthwise_weight=zeros(shape)))


@pytest.mark.parametrize("shape", [(3, 3, C + 1, M), (3, 3, C - 1), (3, 3, C * M)], ids=str)
def test_depthwise_weight_channel_mismatch(shape):
    rejected(ValueError, rf"^depthwise_weight has {shape[2]} input channels.*x has {C}\b",
             **call(depthwise_weight=zeros(shape)))


@pytest.mark.parametrize("shape", [(0, 3, C), (3, 0, C, M), (3, 3, C, 0)], ids=str)
def test_zero_size_axis_of_depthwise_weight(shape):
    rejected(ValueError, r"^depthwise_weight must have no empty axis", **call(depthwise_weight=zeros(shape)))


# ------------------------------------------------------------------------------------ pointwise_weight


@pytest.mark.parametrize("shape", [(C * M,), (1, C * M, COUT), (1, 1, 1, C * M, COUT)], ids=str)
def test_pointwise_weight_of_wrong_ndim(shape):
    rejected(ValueError, rf"^pointwise_weight must be \(Cin, Cout\) or \(1, 1, Cin, Cout\), got {len(shape)}-D",
             **call(pointwise_weight=zeros(shape)))


@pytest.mark.parametrize("shape", [(3, 3, C * M, COUT), (1, 2, C * M, COUT)], ids=str)
def test_4d_pointwise_weight_not_1x1(shape):
    rejected(ValueError, r"4-D pointwise_weight must be \(1, 1, Cin, Cout\)", **call(pointwise_weight=zeros(shape)))


@pytest.mark.parametrize("shape", [(C, COUT), (C * M + 1, COUT), (1, 1, C, COUT)], ids=str)
def test_pointwise_input_channels_not_c_times_m(shape):
    # The pointwise stage reads the C*M channels of the depthwise one: a (C, Cout) weight forgets M.
    rejected(ValueError, rf"^pointwise_weight has {shape[-2]} input channels.*has {C * M}\b",
             **call(pointwise_weight=zeros(shape)))


@pytest.mark.parametrize("shape", [(C * M, 0), (1, 1, C * M, 0)], ids=str)
def test_no_output_channel(shape):
    rejected(ValueError, r"^pointwise_weight must have at least one output channel",
             **call(pointwise_weight=zeros(shape), pointwise_bias=None))


# ---------------------------------------------------------------------------------------------- biases


@pytest.mark.parametrize("shape", [(C,), (C * M + 1,), (COUT,), (1, C * M), ()], ids=str)
def test_depthwise_bias_of_wrong_shape(shape):
    # (C,): a bias per input channel, forgetting the multiplier; (COUT,): the pointwise bias in its place.
    rejected(ValueError, rf"^depthwise_bias must have shape \({C * M},\)", **call(depthwise_bias=zeros(shape)))


@pytest.mark.parametrize("shape", [(COUT + 1,), (C * M,), (1, COUT), ()], ids=str)
def test_pointwise_bias_of_wrong_shape(shape):
    rejected(ValueError, rf"^pointwise_bias must have shape \({COUT},\)", **call(pointwise_bias=zeros(shape)))


# ---------------------------------------------------------------------------------------------- dtypes

UNSUPPORTED_DTYPES = [np.int32, np.float16, np.complex64, object]


@pytest.mark.parametrize("dtype", UNSUPPORTED_DTYPES, ids=lambda d: np.dtype(d).name)
def test_unsupported_dtype_of_x(dtype):
    rejected(TypeError, rf"^x has dtype {np.dtype(dtype).name}.*float32 and float64",
             **call(x=arrays()["x"].astype(dtype)))


@pytest.mark.parametrize("dtype", UNSUPPORTED_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("argument", WEIGHTS_AND_BIASES)
def test_unsupported_dtype_of_a_weight_or_bias(argument, dtype):
    rejected(TypeError, rf"^{argument} has dtype {np.dtype(dtype).name}",
             **call(**{argument: arrays()[argument].astype(dtype)}))


@pytest.mark.parametrize("x_dtype, other_dtype", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["float32_x", "float64_x"])
@pytest.mark.parametrize("argument", WEIGHTS_AND_BIASES)
def test_mixed_dtypes_of_inputs(argument, x_dtype, other_dtype):
    other, x_name = np.dtype(other_dtype).name, np.dtype(x_dtype).name
    rejected(TypeError, rf"^{argument} has dtype {other} but x has dtype {x_name}",
             **call(x_dtype, **{argument: arrays(x_dtype)[argument].astype(other_dtype)}))


@pytest.mark.parametrize("x_dtype, out_dtype", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["float32_x", "float64_x"])
def test_out_of_another_dtype(x_dtype, out_dtype):
    rejected(TypeError, rf"^out has dtype {np.dtype(out_dtype).name}",
             **call(x_dtype, out=sentinel_out(dtype=out_dtype)))


def test_out_of_non_native_byte_order():
    rejected(TypeError, r"^out has dtype >f4", **call(out=sentinel_out(dtype=">f4")))


# -------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("argument", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (1, 0)], ids=str)
def test_stride_and_dilation_below_1(argument, value):
    rejected(ValueError, rf"^{argument} must be >= 1", **call(**{argument: value}))


@pytest.mark.parametrize("argument", ["stride", "dilation"])
@pytest.mark.parametrize("value", [(1, 2, 3), ()], ids=str)
def test_stride_and_dilation_of_wrong_length(argument, value):
    rejected(ValueError, rf"^{argument} must be an int or a pair", **call(**{argument: value}))


@pytest.mark.parametrize("argument", ["stride", "dilation"])
@pytest.mark.parametrize("value", [1.5, "2", None], ids=str)
def test_stride_and_dilation_not_int(argument, value):
    rejected(TypeError, rf"^{argument} must be an int", **call(**{argument: value}))


@pytest.mark.parametrize(
    "padding, error, match",
    [
        (-1, ValueError, r"^padding must be >= 0"),
        (((0, 0), (-3, 0)), ValueError, r"^padding must be >= 0"),
        ("full", ValueError, r"^padding must be 'valid', 'same'"),
        ((1, 2, 3), ValueError, r"^padding must be"),
        (((1, 2), (3,)), ValueError, r"^padding must be"),
        (1.5, TypeError, r"^padding must hold ints"),
    ],
    ids=["negative", "negative_pairs", "unknown_string", "three_values", "short_pair", "float"],
)
def test_bad_padding(padding, error, match):
    rejected(error, match, **call(padding=padding))


@pytest.mark.parametrize("kwargs", [dict(dilation=4), dict(stride=2, dilation=(1, 5)), dict(dilation=(3, 1))],
                         ids=str)
def test_output_would_be_empty(kwargs):
    rejected(ValueError, r"output would be empty", **call(**kwargs))


# ------------------------------------------------------------------------------------------- activations


@pytest.mark.parametrize("value", ["gelu", "RELU", "", 1], ids=repr)
@pytest.mark.parametrize("argument", ["depthwise_activation", "activation"])
def test_unknown_activation(argument, value):
    # ^: "activation must be ..." must not answer for a bad depthwise_activation.
    rejected(ValueError, rf"^{argument} must be one of None, 'relu', 'relu6', 'hardswish'",
             **call(**{argument: value}))


# ------------------------------------------------------------------------------------------- num_threads


@pytest.mark.parametrize("num_threads", [0, -1])
def test_num_threads_below_1(num_threads):
    rejected(ValueError, r"^num_threads must be >= 1", **call(num_threads=num_threads))


@pytest.mark.parametrize("num_threads", [1.5, "2"], ids=repr)
def test_num_threads_not_int(num_threads):
    rejected(TypeError, r"^num_threads must be an int", **call(num_threads=num_threads))


# ----------------------------------------------------------------------------------------------- out


@pytest.mark.parametrize("shape", [(2, 4, 5, C * M), (2, 6, 7, COUT), (2, 4, 5), (1, 4, 5, COUT)], ids=str)
def test_out_of_wrong_shape(shape):
    # (2, 4, 5, 6): the depthwise stage's output, not the block's.
    rejected(ValueError, r"^out must have shape \(2, 4, 5, 5\)", **call(out=sentinel_out(shape)))


@pytest.mark.parametrize("layout", ["fortran", "sliced", "negative_strides", "transposed_view"])
def test_out_not_c_contiguous(layout):
    rejected(ValueError, r"^out must be C-contiguous", **call(out=LAYOUTS[layout](sentinel_out())))


def test_out_misaligned():
    rejected(ValueError, r"^out must be aligned", **call(out=LAYOUTS["misaligned"](sentinel_out())))


def test_out_read_only():
    out = sentinel_out()
    out.flags.writeable = False
    rejected(ValueError, r"^out must be writeable", **call(out=out))


def test_out_not_an_ndarray():
    rejected(TypeError, r"^out must be a numpy.ndarray", **call(out=sentinel_out().tolist()))


@pytest.mark.parametrize("where", OVERLAP_OFFSETS)
@pytest.mark.parametrize("argument", ARGUMENTS)
def test_out_overlapping_an_input(argument, where):
    # Whatever the kernel wrote there would corrupt an input it still reads.
    args = arrays()
    offset = OVERLAP_OFFSETS[where](args[argument].size)
    buffer, args[argument], out = overlapping(args[argument], OUT_SHAPE, offset, SENTINEL)
    before = buffer.copy()
    rejected(ValueError, rf"^out overlaps {argument}\b", **args, out=out)
    np.testing.assert_array_equal(buffer, before, err_msg="the shared buffer changed")
