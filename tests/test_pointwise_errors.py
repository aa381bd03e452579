"""Bad input to dwcy.pointwise_conv2d: the exception type of DESIGN.md, a message naming the argument, and an
``out=`` left untouched whenever one was passed (it holds SENTINEL, compared after the call)."""

import functools

import numpy as np
import pytest

import dwcy
from _helpers import LAYOUTS, OVERLAP_OFFSETS, assert_rejected, overlapping, strided_x_sharing_out

SENTINEL = 1234.5
CIN, COUT = 3, 4
X_SHAPE = (2, 4, 5, CIN)
OUT_SHAPE = (2, 4, 5, COUT)

rejected = functools.partial(assert_rejected, dwcy.pointwise_conv2d)


def arrays(dtype=np.float32):
    """Valid (x, weight, bias)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(X_SHAPE).astype(dtype)
    weight = rng.standard_normal((CIN, COUT)).astype(dtype)
    bias = rng.standard_normal(COUT).astype(dtype)
    return x, weight, bias


def sentinel_out(shape=OUT_SHAPE, dtype=np.float32):
    return np.full(shape, SENTINEL, dtype)


def test_the_valid_arguments_are_accepted():
    # Every test below changes one thing of this call.
    assert dwcy.pointwise_conv2d(*arrays(), out=sentinel_out()).shape == OUT_SHAPE


# ------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("shape", [(4, 5, 3), (1, 2, 4, 5, 3), (3,)], ids=str)
def test_x_of_wrong_ndim(shape):
    _, weight, bias = arrays()
    rejected(ValueError, rf"^x\b.*{len(shape)}-D", np.zeros(shape, np.float32), weight, bias)


@pytest.mark.parametrize("axis", range(4))
def test_zero_size_axis_of_x(axis):
    _, weight, bias = arrays()
    shape = list(X_SHAPE)
    shape[axis] = 0
    rejected(ValueError, r"^x must have no empty axis", np.zeros(shape, np.float32), weight, bias)


@pytest.mark.parametrize("shape", [(CIN,), (1, CIN, COUT), (CIN, COUT, 1), (1, 1, 1, CIN, COUT)], ids=str)
def test_weight_of_wrong_ndim(shape):
    x, _, bias = arrays()
    rejected(ValueError, rf"^weight must be \(Cin, Cout\) or \(1, 1, Cin, Cout\), got {len(shape)}-D", x,
             np.zeros(shape, np.float32), bias, out=sentinel_out())


@pytest.mark.parametrize("shape", [(3, 3, CIN, COUT), (1, 3, CIN, COUT), (2, 1, CIN, COUT), (CIN, COUT, 1, 1)],
                         ids=str)
def test_4d_weight_not_1x1(shape):
    # A 4-D weight is a 1x1 kernel in Keras's (KH, KW, Cin, Cout): a 3x3 one is no pointwise weight.
    x, _, bias = arrays()
    rejected(ValueError, r"4-D weight must be \(1, 1, Cin, Cout\)", x, np.zeros(shape, np.float32), bias,
             out=sentinel_out())


@pytest.mark.parametrize("weight_shape", [(CIN + 1, COUT), (CIN - 1, COUT), (1, COUT), (0, COUT),
                                          (1, 1, CIN + 2, COUT)], ids=str)
def test_input_channel_mismatch(weight_shape):
    x, _, bias = arrays()
    weight_cin = weight_shape[-2]
    rejected(ValueError, rf"^weight has {weight_cin} input channels.*has {CIN}\b", x,
             np.zeros(weight_shape, np.float32), bias, out=sentinel_out())


@pytest.mark.parametrize("weight_shape", [(CIN, 0), (1, 1, CIN, 0)], ids=str)
def test_no_output_channel(weight_shape):
    x, _, _ = arrays()
    rejected(ValueError, r"^weight must have at least one output channel", x, np.zeros(weight_shape, np.float32))


@pytest.mark.parametrize("bias_shape", [(COUT + 1,), (COUT - 1,), (CIN,), (1, COUT), (COUT, 1), ()], ids=str)
def test_bias_of_wrong_shape(bias_shape):
    x, weight, _ = arrays()
    rejected(ValueError, rf"^bias must have shape \({COUT},\)", x, weight, np.zeros(bias_shape, np.float32),
             out=sentinel_out())


# ------------------------------------------------------------------------------------------- dtypes

UNSUPPORTED_DTYPES = [np.int32, np.float16, np.complex64, np.longdouble, object]


@pytest.mark.parametrize("dtype", UNSUPPORTED_DTYPES, ids=lambda d: np.dtype(d).name)
def test_unsupported_dtype_of_x(dtype):
    x, weight, bias = arrays()
    # The message names the dtype received and the ones supported.
    rejected(TypeError, rf"^x has dtype {np.dtype(dtype).name}.*float32 and float64", x.astype(dtype), weight,
             bias)


@pytest.mark.parametrize("dtype", UNSUPPORTED_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("argument", ["weight", "bias"])
def test_unsupported_dtype_of_weight_or_bias(argument, dtype):
    x, weight, bias = arrays()
    args = dict(weight=weight, bias=bias)
    args[argument] = args[argument].astype(dtype)
    rejected(TypeError, rf"^{argument} has dtype {np.dtype(dtype).name}", x, **args, out=sentinel_out())


@pytest.mark.parametrize("x_dtype, other_dtype", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["float32_x", "float64_x"])
@pytest.mark.parametrize("argument", ["weight", "bias"])
def test_mixed_dtypes_of_inputs(argument, x_dtype, other_dtype):
    x, weight, bias = arrays(x_dtype)
    args = dict(weight=weight, bias=bias)
    args[argument] = args[argument].astype(other_dtype)
    other, x_name = np.dtype(other_dtype).name, np.dtype(x_dtype).name
    rejected(TypeError, rf"^{argument} has dtype {other} but x has dtype {x_name}", x, **args,
             out=sentinel_out(dtype=x_dtype))


@pytest.mark.parametrize("x_dtype, out_dtype", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["float32_x", "float64_x"])
def test_out_of_another_dtype(x_dtype, out_dtype):
    rejected(TypeError, rf"^out has dtype {np.dtype(out_dtype).name}", *arrays(x_dtype),
             out=sentinel_out(dtype=out_dtype))


def test_out_of_non_native_byte_order():
    rejected(TypeError, r"^out has dtype >f4", *arrays(), out=sentinel_out(dtype=">f4"))


# ----------------------------------------------------------------------------------------------- out


@pytest.mark.parametrize("shape", [(2, 4, 5, COUT + 1), (2, 4, 5, CIN), (1, 4, 5, COUT), (2, 5, 4, COUT),
                                   (2, 4, 5), (2, 4, 5, COUT, 1), (40, COUT)], ids=str)
def test_out_of_wrong_shape(shape):
    rejected(ValueError, r"^out must have shape \(2, 4, 5, 4\)", *arrays(), out=sentinel_out(shape))


@pytest.mark.parametrize("layout", ["fortran", "sliced", "negative_strides", "transposed_view"])
def test_out_not_c_contiguous(layout):
    rejected(ValueError, r"^out must be C-contiguous", *arrays(), out=LAYOUTS[layout](sentinel_out()))


def test_out_misaligned():
    rejected(ValueError, r"^out must be aligned", *arrays(), out=LAYOUTS["misaligned"](sentinel_out()))


def test_out_read_only():
    out = sentinel_out()
    out.flags.writeable = False
    rejected(ValueError, r"^out must be writeable", *arrays(), out=out)


@pytest.mark.parametrize("out", [[0.0] * 4, 3.0, "out"], ids=repr)
def test_out_not_an_ndarray(out):
    rejected(TypeError, r"^out must be a numpy.ndarray", *arrays(), out=out)


@pytest.mark.parametrize("where", OVERLAP_OFFSETS)
@pytest.mark.parametrize("argument, weight_ndim", [("x", 2), ("weight", 2), ("weight", 4), ("bias", 2)],
                         ids=["x", "weight", "weight_4d", "bias"])
def test_out_overlapping_an_input(argument, weight_ndim, where):
    # Whatever the kernel wrote there would corrupt an input it still reads.
    x, weight, bias = arrays()
    args = dict(x=x, weight=weight if weight_ndim == 2 else weight[None, None], bias=bias)
    offset = OVERLAP_OFFSETS[where](args[argument].size)
    buffer, args[argument], out = overlapping(args[argument], OUT_SHAPE, offset, SENTINEL)
    before = buffer.copy()
    rejected(ValueError, rf"^out overlaps {argument}\b", **args, out=out)
    np.testing.assert_array_equal(buffer, before, err_msg="the shared buffer changed")


def test_out_is_x():
    # Cin == Cout: x has the output's shape, and writing in place would be tempting. It is refused.
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 6)).astype(np.float32)
    before = x.copy()
    rejected(ValueError, r"^out overlaps x", x, np.eye(6, dtype=np.float32), out=x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("layout", ["sliced", "negative_strides"])
def test_out_overlapping_a_strided_x(layout):
    # A non-contiguous x is copied for the kernel; the overlap with the caller's x still counts.
    x, weight, bias = arrays()
    buffer, strided, out = strided_x_sharing_out(x, OUT_SHAPE, layout, SENTINEL)
    before = buffer.copy()
    rejected(ValueError, r"^out overlaps x", strided, weight, bias, out=out)
    np.testing.assert_array_equal(buffer, before)


# ------------------------------------------------------------------------------- activation, threads


@pytest.mark.parametrize("activation", ["gelu", "RELU", "none", "", "relu ", 1, True], ids=repr)
def test_unknown_activation(activation):
    rejected(ValueError, r"^activation must be one of None, 'relu', 'relu6', 'hardswish'", *arrays(),
             activation=activation, out=sentinel_out())


@pytest.mark.parametrize("num_threads", [0, -1, -2**40])
def test_num_threads_below_1(num_threads):
    rejected(ValueError, r"^num_threads must be >= 1", *arrays(), num_threads=num_threads, out=sentinel_out())


@pytest.mark.parametrize("num_threads", [1.5, 2.0, "2", [2]], ids=repr)
def test_num_threads_not_int(num_threads):
    rejected(TypeError, r"^num_threads must be an int", *arrays(), num_threads=num_threads, out=sentinel_out())


@pytest.mark.parametrize(
    "bad",
    [
        dict(activation="gelu"),
        dict(num_threads=0),
        dict(bias=np.zeros(COUT + 1, np.float32)),
        dict(bias=np.zeros(COUT, np.float64)),
        dict(weight=np.zeros((CIN, COUT), np.float64)),
        dict(weight=np.zeros((CIN + 1, COUT), np.float32)),
    ],
    ids=lambda bad: ",".join(bad),
)
def test_errors_in_other_arguments_leave_a_valid_out_untouched(bad):
    x, weight, bias = arrays()
    args = dict(weight=weight, bias=bias, out=sentinel_out())
    args.update(bad)
    rejected((ValueError, TypeError), rf"^{next(iter(bad))}", x, **args)
