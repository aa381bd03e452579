"""dwcy.Pointwise, dwcy.Depthwise and dwcy.Separable: weights packed once, the functions' results, bit for bit.

Each prepared convolution is checked against its function (pointwise_conv2d, ...) on the same
arguments, which the other tests check against dwcy.reference: with every option, at several thread counts,
through the fast path and the full one, at every SIMD level; and for what it keeps (copies), rejects
(clear errors, ``out`` untouched) and shares (threads).
"""

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dwcy
from _helpers import (DTYPES, LANES, assert_bitwise_equal, assert_rejected, depthwise_inputs, dtype_id,
                      pointwise_inputs, separable_inputs)

pytestmark = pytest.mark.usefixtures("simd_level")

# (n, h, w, cin, cout): a channel tail, K in more than one block (DWCY_GEMM_KC 320), one pixel, and enough
# rows that W is packed ahead rather than tile by tile (pointwise.pxi's _pw_run).
POINTWISE_SHAPES = [(2, 5, 7, 19, 37), (1, 3, 4, 700, 40), (1, 1, 1, 96, 1000), (3, 28, 28, 32, 70)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", POINTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("activation", [None, "relu6", "hardswish"])
def test_pointwise_equals_the_function(rng, dtype, shape, activation):
    n, h, w, cin, cout = shape
    x, weight, bias = pointwise_inputs(rng, dtype, n=n, h=h, w=w, cin=cin, cout=cout, scale=3)
    conv = dwcy.Pointwise(weight, bias, activation=activation)
    expected = dwcy.pointwise_conv2d(x, weight, bias, activation=activation, num_threads=1)
    for threads in (1, 2, 3):
        assert_bitwise_equal(conv(x, num_threads=threads), expected, f"{threads} threads")
    assert_bitwise_equal(conv(np.asfortranarray(x)), expected, "a Fortran-ordered x (the full way)")
    out = np.full(expected.shape, np.nan, dtype)
    assert conv(x, out=out) is out
    assert_bitwise_equal(out, expected, "out=")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_pointwise_variants(rng, dtype):
    x, weight, _ = pointwise_inputs(rng, dtype, four_d=True)
    conv = dwcy.Pointwise(weight)  # (1, 1, Cin, Cout), no bias
    assert_bitwise_equal(conv(x), dwcy.pointwise_conv2d(x, weight))
    assert conv.weight.shape == weight.shape[2:] and conv.bias is None
    assert "Pointwise(19 -> 37" in repr(conv)
    assert_bitwise_equal(conv(x, flush_denormals=True), dwcy.pointwise_conv2d(x, weight, flush_denormals=True))


DEPTHWISE_CASES = [  # (depthwise_inputs keywords, depthwise_conv2d keywords)
    (dict(), dict(padding="same", activation="relu6")),
    (dict(h=20, w=19, c=144), dict(stride=2, padding="same", activation="relu6")),  # blocks at a phase
    (dict(h=12, w=15, c=160, kh=5), dict(padding=2)),
    (dict(c=6, multiplier=2, kh=3, kw=5), dict(padding=((1, 2), (3, 0)), dilation=(2, 1), activation="relu")),
    (dict(c=33, bias=False, multiplier=None), dict(stride=(1, 2))),
]


def _at_offset(values, elements):
    """A copy of ``values`` starting ``elements`` elements past a 64-byte boundary."""
    buffer = np.empty(values.size + 64, values.dtype)
    start = (-buffer.ctypes.data // values.itemsize) % (64 // values.itemsize) + elements
    placed = buffer[start:start + values.size].reshape(values.shape)
    placed[...] = values
    return placed


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", range(len(DEPTHWISE_CASES)))
def test_depthwise_equals_the_function(rng, dtype, case):
    inputs, options = DEPTHWISE_CASES[case]
    x, weight, bias = depthwise_inputs(rng, dtype, scale=3, **inputs)
    conv = dwcy.Depthwise(weight, bias, **options)
    expected = dwcy.depthwise_conv2d(x, weight, bias, **options, num_threads=1)
    for threads in (1, 2, 3):
        assert_bitwise_equal(conv(x, num_threads=threads), expected, f"{threads} threads")
    assert_bitwise_equal(conv(x.astype(x.dtype.newbyteorder(">"))), expected, "big-endian x (the full way)")
    out = np.full(expected.shape, np.nan, dtype)
    assert conv(x, out=out) is out
    assert_bitwise_equal(out, expected, "out=")
    # Inputs at every place in a cache line: the weights packed for each phase, once.
    for offset in range(LANES[dtype]):
        assert_bitwise_equal(conv(_at_offset(x, offset)), expected, f"x {offset} elements into a line")
    y = x[:, 1:, :-2]  # another size
    assert_bitwise_equal(conv(y), dwcy.depthwise_conv2d(y, weight, bias, **options))


def test_depthwise_nan_weights_propagate(rng):
    """A NaN weight times the zero padding is NaN, with the weights packed ahead as per call."""
    x, weight, bias = depthwise_inputs(rng, np.dtype(np.float32), c=20)
    weight[0, 0, 3] = np.nan
    conv = dwcy.Depthwise(weight, bias, padding="same")
    assert_bitwise_equal(conv(x), dwcy.depthwise_conv2d(x, weight, bias, padding="same"))
    assert np.isnan(conv(x)[:, 0, :, 3]).all()


SEPARABLE_CASES = [  # (separable_inputs keywords, separable_conv2d keywords)
    (dict(), dict(padding="same", depthwise_activation="relu6", activation="relu")),
    (dict(h=17, w=16, c=24, cout=40), dict(stride=2, padding="same", depthwise_activation="relu6")),
    (dict(c=6, multiplier=2, kh=5), dict(padding=((1, 2), (3, 0)), dilation=(1, 2))),
    (dict(n=1, h=64, w=64, c=32, cout=48), dict(padding=1, activation="hardswish")),  # fused (a large intermediate)
    (dict(depthwise_bias=False, pointwise_bias=False), dict(stride=(2, 1))),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", range(len(SEPARABLE_CASES)))
def test_separable_equals_the_function(rng, dtype, case):
    inputs, options = SEPARABLE_CASES[case]
    arrays = separable_inputs(rng, dtype, scale=3, **inputs)
    x = arrays.pop("x")
    block = dwcy.Separable(**arrays, **options)
    expected = dwcy.separable_conv2d(x, **arrays, **options, num_threads=1)
    for threads in (1, 2, 3):
        assert_bitwise_equal(block(x, num_threads=threads), expected, f"{threads} threads")
    assert_bitwise_equal(block(x[:, ::-1][:, ::-1]), expected, "a view (the fast path)")
    assert_bitwise_equal(block(x.astype(x.dtype.newbyteorder(">"))), expected, "big-endian x (the full way)")
    out = np.full(expected.shape, np.nan, dtype)
    assert block(x, out=out) is out
    assert_bitwise_equal(out, expected, "out=")
    for offset in (1, LANES[dtype] // 2):  # the depthwise weights packed at other phases
        assert_bitwise_equal(block(_at_offset(x, offset)), expected, f"x {offset} elements into a line")
    # Another image size: padding "same" and the output size follow each input.
    y = x[:, 1:, :-2]
    assert_bitwise_equal(block(y), dwcy.separable_conv2d(y, **arrays, **options))


def test_weights_are_copied_and_read_only(rng):
    x, weight, bias = pointwise_inputs(rng, np.dtype(np.float32))
    conv = dwcy.Pointwise(weight, bias)
    expected = conv(x)
    weight[:] = 0
    bias[:] = 0
    assert_bitwise_equal(conv(x), expected, "after the caller's arrays changed")
    with pytest.raises(ValueError, match="read-only"):
        conv.weight[0, 0] = 1.0
    arrays = separable_inputs(rng, np.dtype(np.float64))
    x = arrays.pop("x")
    block = dwcy.Separable(**arrays)
    expected = block(x)
    for array in arrays.values():
        array[...] = 0
    assert_bitwise_equal(block(x), expected, "after the caller's arrays changed")


def test_threads_share_one(rng):
    x, weight, bias = pointwise_inputs(rng, np.dtype(np.float32), n=4, h=14, w=14, cin=64, cout=96)
    conv = dwcy.Pointwise(weight, bias, activation="relu6")
    expected = conv(x, num_threads=1)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: conv(x, num_threads=1 + i % 2), range(16)))
    for result in results:
        assert_bitwise_equal(result, expected)


def _prepared_and_function(rng, kind, options):
    """A Depthwise or a Separable (``kind``) made with ``options``, and the function it equals, of x alone."""
    dtype = np.dtype(np.float32)
    if kind == "depthwise":
        _, weight, bias = depthwise_inputs(rng, dtype, c=40)
        return (dwcy.Depthwise(weight, bias, **options),
                lambda x: dwcy.depthwise_conv2d(x, weight, bias, **options))
    arrays = separable_inputs(rng, dtype, c=40)
    del arrays["x"]
    return dwcy.Separable(**arrays, **options), lambda x: dwcy.separable_conv2d(x, **arrays, **options)


@pytest.mark.parametrize("kind", ["depthwise", "separable"])
def test_threads_share_one_across_input_shapes(rng, kind):
    """A prepared depthwise stage keeps the geometry of the last input shape it met; calls on other shapes,
    in many threads at once, each get their own."""
    conv, function = _prepared_and_function(rng, kind, dict(stride=2, padding="same"))
    inputs = [rng.standard_normal(shape).astype(np.float32)
              for shape in [(2, 20, 20, 40), (2, 19, 20, 40), (1, 20, 17, 40), (3, 8, 9, 40)]]
    expected = [function(x) for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: (i % 4, conv(inputs[i % 4], num_threads=1 + i % 2)), range(64)))
    for i, result in results:
        assert_bitwise_equal(result, expected[i], f"input {inputs[i].shape}")


@pytest.mark.parametrize("kind", ["depthwise", "separable"])
def test_options_of_other_forms(rng, kind):
    """NumPy integers and lists as options: the calls take the full way, which converts them."""
    conv, function = _prepared_and_function(rng, kind, dict(stride=np.int64(2), padding=[1, 2], dilation=(1, 2)))
    x = rng.standard_normal((2, 12, 13, 40)).astype(np.float32)
    expected = function(x)
    assert_bitwise_equal(conv(x), expected)
    assert_bitwise_equal(conv(x), expected, "again")


@pytest.mark.parametrize("kind", ["depthwise", "separable"])
def test_options_are_kept_as_made(rng, kind):
    """A prepared object keeps its options as they were when it was made: changing the caller's lists afterwards
    changes nothing."""
    stride, padding, dilation = [1, 2], [[1, 2], [0, 1]], [2, 1]
    conv, function = _prepared_and_function(rng, kind, dict(stride=stride, padding=padding, dilation=dilation))
    x = rng.standard_normal((2, 12, 13, 40)).astype(np.float32)
    expected = function(x)
    stride[0], padding[0][0], dilation[0] = 3, -1, 5
    assert_bitwise_equal(conv(x), expected)
    assert (conv.stride, conv.padding, conv.dilation) == ((1, 2), ((1, 2), (0, 1)), (2, 1))


def test_constructors_name_the_weight_a_dtype_must_match(rng):
    """Made without an x, a prepared object's dtype errors name the weight whose dtype the others must share."""
    _, weight, bias = pointwise_inputs(rng, np.dtype(np.float32))
    with pytest.raises(TypeError, match="^bias has dtype float64 but weight has dtype float32"):
        dwcy.Pointwise(weight, bias.astype(np.float64))
    _, weight, bias = depthwise_inputs(rng, np.dtype(np.float32))
    with pytest.raises(TypeError, match="^bias has dtype float64 but weight has dtype float32"):
        dwcy.Depthwise(weight, bias.astype(np.float64))
    arrays = separable_inputs(rng, np.dtype(np.float32))
    del arrays["x"]
    for name in ("pointwise_weight", "depthwise_bias", "pointwise_bias"):
        with pytest.raises(TypeError, match=f"^{name} has dtype float64 but depthwise_weight has dtype float32"):
            dwcy.Separable(**{**arrays, name: arrays[name].astype(np.float64)})


def test_pointwise_errors(rng):
    x, weight, bias = pointwise_inputs(rng, np.dtype(np.float32))
    conv = dwcy.Pointwise(weight, bias)
    assert_rejected(conv, TypeError, "dtype", x.astype(np.float64))
    assert_rejected(conv, ValueError, "input channels", x[..., :-1])
    assert_rejected(conv, ValueError, "4-D", x[0])
    out = np.zeros(x.shape[:3] + (weight.shape[1] + 1,), np.float32)
    assert_rejected(conv, ValueError, "out must have shape", x, out=out)
    assert_rejected(conv, ValueError, "num_threads", x, num_threads=0)
    with pytest.raises(ValueError, match="must be"):
        dwcy.Pointwise(weight[None])
    with pytest.raises(ValueError, match="at least one input channel"):
        dwcy.Pointwise(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="bias must have shape"):
        dwcy.Pointwise(weight, bias[:-1])
    with pytest.raises(TypeError, match="dtype"):
        dwcy.Pointwise(weight.astype(np.int32))
    with pytest.raises(ValueError, match="activation"):
        dwcy.Pointwise(weight, activation="gelu")


def test_depthwise_errors(rng):
    x, weight, bias = depthwise_inputs(rng, np.dtype(np.float32))
    conv = dwcy.Depthwise(weight, bias, stride=2)
    assert_rejected(conv, TypeError, "dtype", x.astype(np.float64))
    assert_rejected(conv, ValueError, "input channels", x[..., :-1])
    assert_rejected(conv, ValueError, "out must have shape", x, out=np.zeros((1, 1, 1, 1), np.float32))
    with pytest.raises(ValueError, match="weight must be"):
        dwcy.Depthwise(weight[0, 0])
    with pytest.raises(ValueError, match="dilation"):
        dwcy.Depthwise(weight, dilation=-1)
    with pytest.raises(ValueError, match="bias must have shape"):
        dwcy.Depthwise(weight, bias[:-1])
    assert "Depthwise(3x3 of 5 channels" in repr(conv)


def test_separable_errors(rng):
    arrays = separable_inputs(rng, np.dtype(np.float32))
    x = arrays.pop("x")
    block = dwcy.Separable(**arrays, stride=2)
    assert_rejected(block, TypeError, "dtype", x.astype(np.float64))
    assert_rejected(block, ValueError, "input channels", x[..., :-1])
    out = np.zeros((1, 1, 1, 1), np.float32)
    assert_rejected(block, ValueError, "out must have shape", x, out=out)
    dw, pw = arrays["depthwise_weight"], arrays["pointwise_weight"]
    with pytest.raises(ValueError, match="depthwise_weight must be"):
        dwcy.Separable(dw[0, 0], pw)
    with pytest.raises(ValueError, match="pointwise_weight has"):
        dwcy.Separable(dw, pw[:-1])
    with pytest.raises(ValueError, match="stride"):
        dwcy.Separable(dw, pw, stride=0)
    with pytest.raises(ValueError, match="padding"):
        dwcy.Separable(dw, pw, padding="full")
    with pytest.raises(ValueError, match="depthwise_activation"):
        dwcy.Separable(dw, pw, depthwise_activation="tanh")
    with pytest.raises(ValueError, match="depthwise_bias must have shape"):
        dwcy.Separable(dw, pw, depthwise_bias=np.zeros(2, np.float32))
    # Valid weights, an image too small for the kernel: the call says so.
    small = dwcy.Separable(dw, pw)
    assert_rejected(small, ValueError, "empty", x[:, :2, :2])


def test_model_runs_with_packed_weights_as_without():
    """MobileNetV2 runs its stages with prepared convolutions; without them (each call packing), the same bits,
    and a pickled model rebuilds them."""
    model = dwcy.models.MobileNetV2.random(0, num_classes=10)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    expected = model(x, num_threads=2)
    prepared = model._prepared
    assert any(isinstance(p, dwcy.Separable) for stage in prepared.values() for p in stage)
    model._prepared = {}
    assert_bitwise_equal(model(x, num_threads=1), expected, "unprepared")
    model._prepared = prepared
    assert_bitwise_equal(pickle.loads(pickle.dumps(model))(x), expected, "unpickled")
