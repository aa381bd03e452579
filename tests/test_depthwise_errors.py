"""Bad input to dwcy.depthwise_conv2d: the exception type of DESIGN.md, a message naming the argument, and an
``out=`` left untouched whenever one was passed."""

import numpy as np
import pytest

import dwcy
from _helpers import LAYOUTS, strided_x_sharing_out

SENTINEL = 1234.5
X_SHAPE = (2, 8, 8, 3)
WEIGHT_SHAPE = (3, 3, 3)
OUT_SHAPE = (2, 6, 6, 3)  # "valid" 3x3 on 8x8


def arrays(dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(X_SHAPE).astype(dtype)
    weight = rng.standard_normal(WEIGHT_SHAPE).astype(dtype)
    bias = rng.standard_normal(WEIGHT_SHAPE[2]).astype(dtype)
    return x, weight, bias


def sentinel_out(shape=OUT_SHAPE, dtype=np.float32):
    return np.full(shape, SENTINEL, dtype)


def assert_rejected(error, match, x, weight, bias=None, **kwargs):
    """depthwise_conv2d(...) raises ``error`` matching ``match``; an ``out`` passed keeps its sentinel."""
    out = kwargs.get("out")
    before = out.copy() if isinstance(out, np.ndarray) else None
    with pytest.raises(error, match=match) as excinfo:
        dwcy.depthwise_conv2d(x, weight, bias, **kwargs)
    if before is not None:
        np.testing.assert_array_equal(out, before, err_msg="out was written before the error")
    return excinfo


# ------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", [(8, 8, 3), (1, 2, 8, 8, 3), (3,)], ids=str)
def test_x_of_wrong_ndim(shape):
    _, weight, _ = arrays()
    x = np.zeros(shape, np.float32)
    assert_rejected(ValueError, rf"^x\b.*{len(shape)}-D", x, weight)


@pytest.mark.parametrize("shape", [(3, 3), (3, 3, 3, 1, 1), (3,)], ids=str)
def test_weight_of_wrong_ndim(shape):
    x, _, _ = arrays()
    assert_rejected(ValueError, rf"^weight\b.*{len(shape)}-D", x, np.zeros(shape, np.float32))


@pytest.mark.parametrize("weight_shape", [(3, 3, 4), (3, 3, 2, 1), (3, 3, 1)], ids=str)
def test_channel_mismatch(weight_shape):
    x, _, _ = arrays()
    assert_rejected(ValueError, rf"^weight has {weight_shape[2]} input channels.*x has 3",
                    x, np.zeros(weight_shape, np.float32))


@pytest.mark.parametrize(
    "weight_shape, bias_shape",
    [((3, 3, 3), (4,)), ((3, 3, 3), (2,)), ((3, 3, 3), (1, 3)), ((3, 3, 3), ()), ((3, 3, 3, 2), (3,))],
    ids=str,
)
def test_bias_of_wrong_shape(weight_shape, bias_shape):
    x, _, _ = arrays()
    weight = np.zeros(weight_shape, np.float32)
    assert_rejected(ValueError, r"^bias must have shape", x, weight, np.zeros(bias_shape, np.float32),
                    out=sentinel_out(OUT_SHAPE[:3] + (3 * (weight.shape[3] if weight.ndim == 4 else 1),)))


@pytest.mark.parametrize("axis", range(4))
def test_zero_size_axis_of_x(axis):
    _, weight, _ = arrays()
    shape = list(X_SHAPE)
    shape[axis] = 0
    assert_rejected(ValueError, r"^x must have no empty axis", np.zeros(shape, np.float32), weight)


@pytest.mark.parametrize("shape", [(0, 3, 3), (3, 0, 3), (3, 3, 3, 0)], ids=str)
def test_zero_size_axis_of_weight(shape):
    x, _, _ = arrays()
    assert_rejected(ValueError, r"^weight must have no empty axis", x, np.zeros(shape, np.float32))


@pytest.mark.parametrize(
    "x_hw, kernel, kwargs",
    [
        ((5, 5), 7, {}),
        ((6, 6), 3, dict(dilation=3)),  # a dilated span of 7
        ((2, 2), 5, dict(padding=1)),  # padded to 4x4
        ((9, 3), 4, dict(padding=((0, 0), (0, 0)))),  # too narrow only
    ],
    ids=["kernel_7_on_5", "dilated_span_7_on_6", "kernel_5_on_padded_4", "too_narrow"],
)
def test_output_would_be_empty(x_hw, kernel, kwargs):
    x = np.zeros((1, *x_hw, 2), np.float32)
    assert_rejected(ValueError, r"output would be empty.*kernel", x, np.zeros((kernel, kernel, 2), np.float32),
                    **kwargs)


# ------------------------------------------------------------------------------------------- dtypes

UNSUPPORTED_DTYPES = [np.int32, np.float16, np.complex64, object]


@pytest.mark.parametrize("dtype", UNSUPPORTED_DTYPES, ids=lambda d: np.dtype(d).name)
def test_unsupported_dtype_of_x(dtype):
    x, weight, _ = arrays()
    name = np.dtype(dtype).name
    # The message names the dtype received and the ones supported.
    assert_rejected(TypeError, rf"^x has dtype {name}.*float32 and float64", x.astype(dtype), weight)


@pytest.mark.parametrize("dtype", UNSUPPORTED_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("argument", ["weight", "bias"])
def test_unsupported_dtype_of_weight_or_bias(argument, dtype):
    x, weight, bias = arrays()
    args = dict(weight=weight, bias=bias)
    args[argument] = args[argument].astype(dtype)
    assert_rejected(TypeError, rf"^{argument} has dtype {np.dtype(dtype).name}", x, args["weight"], args["bias"],
                    out=sentinel_out())


@pytest.mark.parametrize("x_dtype, other_dtype", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["float32_x", "float64_x"])
@pytest.mark.parametrize("argument", ["weight", "bias"])
def test_mixed_dtypes_of_inputs(argument, x_dtype, other_dtype):
    x, weight, bias = arrays(x_dtype)
    args = dict(weight=weight, bias=bias)
    args[argument] = args[argument].astype(other_dtype)
    other, x_name = np.dtype(other_dtype).name, np.dtype(x_dtype).name
    assert_rejected(TypeError, rf"^{argument} has dtype {other} but x has dtype {x_name}", x, args["weight"],
                    args["bias"], out=sentinel_out(dtype=x_dtype))


@pytest.mark.parametrize("x_dtype, out_dtype", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["float32_x", "float64_x"])
def test_out_of_another_dtype(x_dtype, out_dtype):
    x, weight, bias = arrays(x_dtype)
    assert_rejected(TypeError, rf"^out has dtype {np.dtype(out_dtype).name}", x, weight, bias,
                    out=sentinel_out(dtype=out_dtype))


def test_out_of_non_native_byte_order():
    x, weight, bias = arrays()
    assert_rejected(TypeError, r"^out has dtype >f4", x, weight, bias, out=sentinel_out(dtype=">f4"))


# ----------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("argument", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (1, 0), (-2, 1)], ids=str)
def test_stride_and_dilation_below_1(argument, value):
    x, weight, bias = arrays()
    assert_rejected(ValueError, rf"^{argument} must be >= 1", x, weight, bias, out=sentinel_out(),
                    **{argument: value})


@pytest.mark.parametrize("argument", ["stride", "dilation"])
@pytest.mark.parametrize("value", [(1, 2, 3), (1,), ()], ids=str)
def test_stride_and_dilation_of_wrong_length(argument, value):
    x, weight, bias = arrays()
    assert_rejected(ValueError, rf"^{argument} must be an int or a pair", x, weight, bias, out=sentinel_out(),
                    **{argument: value})


@pytest.mark.parametrize("argument", ["stride", "dilation"])
@pytest.mark.parametrize("value", [1.5, "2", None, (1, 2.0)], ids=str)
def test_stride_and_dilation_not_int(argument, value):
    x, weight, bias = arrays()
    assert_rejected(TypeError, rf"^{argument} must be an int", x, weight, bias, out=sentinel_out(),
                    **{argument: value})


@pytest.mark.parametrize("padding", [-1, (1, -1), ((0, -1), (0, 0)), ((0, 0), (-3, 0))], ids=str)
def test_negative_padding(padding):
    x, weight, bias = arrays()
    assert_rejected(ValueError, r"^padding must be >= 0", x, weight, bias, padding=padding)


@pytest.mark.parametrize("padding", ["full", "causal", "", "same "], ids=repr)
def test_unknown_padding_string(padding):
    x, weight, bias = arrays()
    assert_rejected(ValueError, r"^padding must be 'valid', 'same'", x, weight, bias, padding=padding)


@pytest.mark.parametrize(
    "padding", [(1, 2, 3), [1], (), ((1, 2), (3,)), ((1, 2), (3, 4), (5, 6)), ((1, 2, 3), (1, 1))], ids=str
)
def test_padding_tuple_of_wrong_form(padding):
    x, weight, bias = arrays()
    assert_rejected(ValueError, r"^padding must be", x, weight, bias, padding=padding)


@pytest.mark.parametrize("padding", [1.5, None, (1.5, 1), ((1, 2), (3, "4"))], ids=str)
def test_padding_not_int(padding):
    x, weight, bias = arrays()
    assert_rejected(TypeError, r"^padding must hold ints", x, weight, bias, padding=padding)


@pytest.mark.parametrize("activation", ["gelu", "RELU", "none", "", 1, True], ids=repr)
def test_unknown_activation(activation):
    x, weight, bias = arrays()
    assert_rejected(ValueError, r"^activation must be one of None, 'relu', 'relu6', 'hardswish'", x, weight, bias,
                    activation=activation, out=sentinel_out())


# --------------------------------------------------------------------------------------- num_threads


@pytest.mark.parametrize("num_threads", [0, -1])
def test_num_threads_below_1(num_threads):
    x, weight, bias = arrays()
    assert_rejected(ValueError, r"^num_threads must be >= 1", x, weight, bias, num_threads=num_threads,
                    out=sentinel_out())


@pytest.mark.parametrize("num_threads", [1.5, 2.0, "2", [2]], ids=repr)
def test_num_threads_not_int(num_threads):
    x, weight, bias = arrays()
    assert_rejected(TypeError, r"^num_threads must be an int", x, weight, bias, num_threads=num_threads,
                    out=sentinel_out())


@pytest.mark.parametrize("num_threads", [2**31, 2**63])
def test_num_threads_beyond_a_c_int(num_threads):
    # An int >= 1 is valid (DESIGN.md) and threads are capped at the work items: either it runs, or it
    # is refused with a ValueError naming num_threads. An OverflowError about "int" names nothing.
    x, weight, bias = arrays()
    out = sentinel_out()
    try:
        y = dwcy.depthwise_conv2d(x, weight, bias, num_threads=num_threads, out=out)
    except ValueError as error:
        assert "num_threads" in str(error)
        np.testing.assert_array_equal(out, sentinel_out())
    else:
        np.testing.assert_array_equal(y, dwcy.depthwise_conv2d(x, weight, bias, num_threads=1))


# ----------------------------------------------------------------------------------------------- out


@pytest.mark.parametrize("shape", [(2, 6, 6, 4), (2, 8, 8, 3), (1, 6, 6, 3), (2, 6, 6), (2, 6, 6, 3, 1)], ids=str)
def test_out_of_wrong_shape(shape):
    x, weight, bias = arrays()
    assert_rejected(ValueError, r"^out must have shape \(2, 6, 6, 3\)", x, weight, bias, out=sentinel_out(shape))


def test_out_fortran_ordered():
    x, weight, bias = arrays()
    out = np.asfortranarray(sentinel_out())
    assert_rejected(ValueError, r"^out must be C-contiguous", x, weight, bias, out=out)


@pytest.mark.parametrize("layout", ["sliced", "negative_strides", "transposed_view"])
def test_out_not_contiguous(layout):
    x, weight, bias = arrays()
    out = LAYOUTS[layout](sentinel_out())
    assert_rejected(ValueError, r"^out must be C-contiguous", x, weight, bias, out=out)


def test_out_misaligned():
    x, weight, bias = arrays()
    assert_rejected(ValueError, r"^out must be aligned", x, weight, bias, out=LAYOUTS["misaligned"](sentinel_out()))


def test_out_read_only():
    x, weight, bias = arrays()
    out = sentinel_out()
    out.flags.writeable = False
    assert_rejected(ValueError, r"^out must be writeable", x, weight, bias, out=out)


@pytest.mark.parametrize("out", [[0.0] * 4, 3.0, "out"], ids=repr)
def test_out_not_an_ndarray(out):
    x, weight, bias = arrays()
    assert_rejected(TypeError, r"^out must be a numpy.ndarray", x, weight, bias, out=out)


def shared_buffer(first, second, offset):
    """A sentinel-filled buffer holding two C-contiguous arrays of the given shapes, ``offset`` elements apart."""
    size = max(np.prod(first), offset + np.prod(second))
    buffer = np.full(size, SENTINEL, np.float32)
    return buffer, buffer[:np.prod(first)].reshape(first), buffer[offset:offset + np.prod(second)].reshape(second)


@pytest.mark.parametrize("offset", [0, 100, int(np.prod(X_SHAPE)) - 1])
def test_out_overlapping_x(offset):
    _, weight, bias = arrays()
    buffer, x, out = shared_buffer(X_SHAPE, OUT_SHAPE, offset)
    x[...] = arrays()[0]
    before = buffer.copy()
    assert_rejected(ValueError, r"^out overlaps x", x, weight, bias, out=out)
    np.testing.assert_array_equal(buffer, before)


def test_out_is_x():
    # A 1x1 "valid" convolution has x's shape: writing in place would be tempting, and is refused.
    x, _, bias = arrays()
    assert_rejected(ValueError, r"^out overlaps x", x, np.ones((1, 1, 3), np.float32), bias, out=x)
    np.testing.assert_array_equal(x, arrays()[0])


@pytest.mark.parametrize("layout", ["sliced", "negative_strides"])
def test_out_overlapping_a_strided_x(layout):
    # A non-contiguous x is copied for the kernel; the overlap with the caller's x still counts.
    x, weight, bias = arrays()
    buffer, strided, out = strided_x_sharing_out(x, OUT_SHAPE, layout, SENTINEL)
    before = buffer.copy()
    assert_rejected(ValueError, r"^out overlaps x", strided, weight, bias, out=out)
    np.testing.assert_array_equal(buffer, before)


def test_out_overlapping_weight():
    x, _, bias = arrays()
    buffer, weight, out = shared_buffer(WEIGHT_SHAPE, OUT_SHAPE, 10)
    weight[...] = arrays()[1]
    before = buffer.copy()
    assert_rejected(ValueError, r"^out overlaps weight", x, weight, bias, out=out)
    np.testing.assert_array_equal(buffer, before)


def test_out_overlapping_bias():
    x, weight, _ = arrays()
    buffer, bias, out = shared_buffer((3,), OUT_SHAPE, 2)
    before = buffer.copy()
    assert_rejected(ValueError, r"^out overlaps bias", x, weight, bias, out=out)
    np.testing.assert_array_equal(buffer, before)


def test_out_overlapping_a_strided_bias():
    # As for x: the caller's bias shares memory with out, whether or not dwcy copies it for the kernel.
    x, weight, _ = arrays()
    buffer = np.full(np.prod(OUT_SHAPE), SENTINEL, np.float32)
    out = buffer.reshape(OUT_SHAPE)
    bias = buffer[5:11:2]  # 3 elements, stride 2, inside out
    before = buffer.copy()
    assert_rejected(ValueError, r"^out overlaps bias", x, weight, bias, out=out)
    np.testing.assert_array_equal(buffer, before)


@pytest.mark.parametrize(
    "bad",
    [
        dict(activation="gelu"),
        dict(num_threads=0),
        dict(stride=0),
        dict(padding=-1),
        dict(padding="full"),
        dict(bias=np.zeros(4, np.float32)),
        dict(weight=np.zeros((3, 3, 3), np.float64)),
    ],
    ids=lambda bad: ",".join(bad),
)
def test_errors_in_other_arguments_leave_a_valid_out_untouched(bad):
    x, weight, bias = arrays()
    args = dict(weight=weight, bias=bias, out=sentinel_out())
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=rf"^{next(iter(bad))}"):
        dwcy.depthwise_conv2d(x, **args)
    np.testing.assert_array_equal(args["out"], sentinel_out())
