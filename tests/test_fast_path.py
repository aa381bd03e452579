"""The fast paths of the Python API (dwcy/_kernels/fast.pxi): the common call validated in C.

A fast path takes only plainly valid arguments and returns None for anything else, which then goes the
full way through dwcy._args (conversions, errors). Both ways must give the same bits.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dwcy
from dwcy import kernels

from _helpers import DTYPES, depthwise_inputs, dtype_id, pointwise_inputs, separable_inputs

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)


@dtypes
@pytest.mark.parametrize("multiplier", [None, 2])
@pytest.mark.parametrize("padding", ["same", "VALID", 1])
def test_depthwise_fast_path_equals_full_way(rng, dtype, multiplier, padding):
    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=9, w=11, c=19, multiplier=multiplier)
    for b in (bias, None):
        fast = kernels.depthwise_fast(x, weight, b, 2, padding, 1, "relu6", 2, False)
        assert fast is not None and fast.ctypes.data % 64 == 0
        args = dwcy._args.depthwise(x, weight, b, 2, padding, 1, "relu6", None)
        full = np.empty_like(fast)
        kernels.depthwise(args.x, args.weight, args.bias, full, args.geometry, args.activation, 2, False)
        np.testing.assert_array_equal(fast, full)
        np.testing.assert_array_equal(
            dwcy.depthwise_conv2d(x, weight, b, stride=2, padding=padding, activation="relu6", num_threads=2), full)


@dtypes
def test_pointwise_fast_path_equals_full_way(rng, dtype):
    x, weight, bias = pointwise_inputs(rng, dtype, n=2, h=3, w=5, cin=19, cout=37)
    for b in (bias, None):
        fast = kernels.pointwise_fast(x, weight, b, "hardswish", None, False)
        assert fast is not None and fast.ctypes.data % 64 == 0
        args = dwcy._args.pointwise(x, weight, b, "hardswish", None)
        full = np.empty_like(fast)
        kernels.pointwise(args.x, args.weight, args.bias, full, args.activation, 0, False)
        np.testing.assert_array_equal(fast, full)


@dtypes
@pytest.mark.parametrize("multiplier", [None, 2])
def test_separable_fast_path_equals_full_way(rng, dtype, multiplier):
    a = separable_inputs(rng, dtype, n=2, h=9, w=11, c=5, multiplier=multiplier, cout=21)
    fast = kernels.separable_fast(a["x"], a["depthwise_weight"], a["pointwise_weight"], a["depthwise_bias"],
                                  a["pointwise_bias"], 1, "same", 1, "relu6", None, None, False)
    assert fast is not None and fast.ctypes.data % 64 == 0
    s = dwcy._args.separable(a["x"], a["depthwise_weight"], a["pointwise_weight"], a["depthwise_bias"],
                             a["pointwise_bias"], 1, "same", 1, "relu6", None, None, None)
    full = np.empty_like(fast)
    kernels.separable(s.depthwise.x, s.depthwise.weight, s.depthwise.bias, s.pointwise_weight, s.pointwise_bias,
                      full, s.depthwise.geometry, s.depthwise.activation, s.activation, 0, False)
    np.testing.assert_array_equal(fast, full)
    np.testing.assert_array_equal(dwcy.separable_conv2d(**a, padding="same", depthwise_activation="relu6"), full)


@dtypes
def test_fast_path_writes_a_plain_out_and_declines_any_other(rng, dtype):
    x, weight, bias = depthwise_inputs(rng, dtype, n=1, h=6, w=7, c=5)
    expected = dwcy.depthwise_conv2d(x, weight, bias, padding="same")

    def fast(out):
        return kernels.depthwise_fast(x, weight, bias, 1, "same", 1, None, None, False, out)

    out = np.full(expected.shape, np.nan, dtype)
    assert fast(out) is out
    np.testing.assert_array_equal(out, expected)
    big = np.zeros((2,) + expected.shape[1:], dtype)
    for declined in (
        np.zeros(expected.shape, np.float16),                      # another dtype
        np.zeros(expected.shape, np.dtype(dtype).newbyteorder()),  # byte-swapped
        np.zeros((1, 6, 7, 6), dtype)[..., :5],                    # not contiguous
        np.zeros((1, 6, 7, 4), dtype),                             # another shape
        big[1:],                                                   # fine: contiguous, apart from the inputs
    ):
        result = fast(declined)
        assert (result is declined) if declined.base is big else result is None
    aliased = np.zeros(x.size + 64, dtype)
    x_in = aliased[:x.size].reshape(x.shape)
    x_in[...] = x
    out = aliased[16:16 + expected.size].reshape(expected.shape)  # overlaps x: the full way raises
    assert kernels.depthwise_fast(x_in, weight, bias, 1, "same", 1, None, None, False, out) is None
    with pytest.raises(ValueError, match="overlaps"):
        dwcy.depthwise_conv2d(x_in, weight, bias, padding="same", out=out)


def _depthwise_arguments(rng):
    x, weight, bias = depthwise_inputs(rng, np.float32, n=1, h=6, w=6, c=5)
    return dict(x=x, weight=weight, bias=bias, stride=1, padding="same", dilation=1, activation=None,
                num_threads=None, flush=False)


@pytest.mark.parametrize(
    "change",
    [
        {"x": "list"},
        {"x": "big-endian"},
        {"x": "strided"},
        {"x": "float16"},
        {"weight": "float64"},
        {"weight": "2-D"},
        {"bias": "list"},
        {"bias": "wrong length"},
        {"stride": (1, 1.0)},
        {"stride": True},
        {"dilation": (1, True)},
        {"padding": [1, 1]},
        {"padding": "bogus"},
        {"padding": -1},
        {"dilation": 0},
        {"activation": "gelu"},
        {"activation": ["relu"]},
        {"num_threads": 0},
        {"num_threads": 1.0},
        {"num_threads": 2**17},
    ],
    ids=str,
)
def test_depthwise_fast_path_declines_what_it_does_not_take(rng, change):
    args = _depthwise_arguments(rng)
    ((name, value),) = change.items()
    converted = {
        "list": lambda a: a.tolist(),
        "big-endian": lambda a: a.astype(">f4"),
        "strided": lambda a: np.repeat(a, 2, axis=2)[:, :, ::2],
        "float16": lambda a: a.astype(np.float16),
        "float64": lambda a: a.astype(np.float64),
        "2-D": lambda a: a.reshape(a.shape[0], -1),
        "wrong length": lambda a: np.append(a, a),
    }
    args[name] = converted[value](args[name]) if isinstance(value, str) and value in converted else value
    assert kernels.depthwise_fast(*args.values()) is None


def test_fast_path_takes_the_plain_call(rng):
    args = _depthwise_arguments(rng)
    assert kernels.depthwise_fast(*args.values()) is not None
    # Pairs (and pairs of pairs) of ints too, as peers' wrappers and Keras-style code pass them.
    pairs = dict(args, stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2))
    fast = kernels.depthwise_fast(*pairs.values())
    assert fast is not None
    full = dwcy.depthwise_conv2d(args["x"], args["weight"], args["bias"], stride=[2, 1], padding=[[1, 0], [2, 1]],
                                 dilation=[1, 2])  # lists: the full way
    np.testing.assert_array_equal(fast, full)
    x, weight, bias = pointwise_inputs(rng, np.float32)
    assert kernels.pointwise_fast(x, weight, bias, None, None, False) is not None
    assert kernels.pointwise_fast(x, weight[None, None], bias, None, None, False) is None  # (1, 1, Cin, Cout)
    assert kernels.pointwise_fast(x, weight[:-1], bias, None, None, False) is None  # Cin mismatch


def _full_way_depthwise(x, weight, **options):
    """depthwise_conv2d through dwcy._args (never the fast path's memo of the last geometry)."""
    args = dwcy._args.depthwise(x, weight, None, options.get("stride", 1), options.get("padding", "valid"),
                                options.get("dilation", 1), None, None)
    return kernels.depthwise(args.x, args.weight, args.bias, None, args.geometry, args.activation, 1, False)


def test_calls_that_differ_from_the_last_get_their_own_geometry(rng):
    """The fast path keeps the last call's geometry: calls that differ from it in anything (x's or the weight's
    shape, stride, padding, dilation), one after the other and in many threads at once, each get their own."""
    x = rng.standard_normal((2, 9, 11, 19)).astype(np.float32)
    wide = rng.standard_normal((2, 9, 12, 19)).astype(np.float32)
    w3, w5 = (rng.standard_normal((k, k, 19)).astype(np.float32) for k in (3, 5))
    calls = [(x, w3, {}), (x, w3, dict(stride=2)), (x, w3, dict(padding=1)), (x, w3, dict(padding="same")),
             (x, w3, dict(padding="same", dilation=2)), (x, w3, dict(stride=(1, 2))), (wide, w3, {}),
             (x, w3[..., None], {}), (x, np.repeat(w3[..., None], 2, axis=3), {}), (x, w5, dict(padding=(2, 1)))]
    expected = [_full_way_depthwise(*call[:2], **call[2]) for call in calls]
    for _ in range(2):
        for (a, w, options), want in zip(calls, expected):
            np.testing.assert_array_equal(dwcy.depthwise_conv2d(a, w, **options, num_threads=1), want, str(options))
    with ThreadPoolExecutor(4) as pool:
        results = pool.map(lambda i: (i, dwcy.depthwise_conv2d(calls[i][0], calls[i][1], **calls[i][2])),
                           [i % len(calls) for i in range(200)])
        for i, result in results:
            np.testing.assert_array_equal(result, expected[i], str(calls[i][2]))


def test_a_call_that_interrupts_the_memo_update_leaves_it_whole(monkeypatch):
    """Another thread may run while a call reads its new geometry (Python code: the output shape is a property);
    the memo of the last geometry must then hold one call's geometry, not x's shape with the other's output
    (which once made the next call on x write past the end of its ``out``). The other thread is a call made
    from inside that property."""
    small, large = np.ones((1, 8, 8, 4), np.float32), np.ones((1, 12, 12, 4), np.float32)
    weight = np.ones((3, 3, 4), np.float32)
    prepared = dwcy.Depthwise(weight)
    for call in (lambda x, **kw: dwcy.depthwise_conv2d(x, weight, **kw), prepared):
        call(small), call(large)  # both geometries in dwcy._args' cache: the interruption comes at the memo
        out_shape = dwcy._args.DepthwiseGeometry.out_shape
        armed = [True]

        def interrupted(geometry):
            if armed.pop() if armed else False:
                call(large)  # what a second thread may do at this moment
            return out_shape.fget(geometry)
        monkeypatch.setattr(dwcy._args.DepthwiseGeometry, "out_shape", property(interrupted))
        call(small)
        monkeypatch.setattr(dwcy._args.DepthwiseGeometry, "out_shape", out_shape)
        buffer = np.full(6 * 6 * 4 + 1024, -1, np.float32)
        out = buffer[:6 * 6 * 4].reshape(1, 6, 6, 4)
        assert call(small, out=out) is out and call(small).shape == (1, 6, 6, 4)
        assert (buffer[out.size:] == -1).all()
        np.testing.assert_array_equal(out, 9)
