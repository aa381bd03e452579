"""Outputs and buffers start on a 64-byte boundary: a cache line, one AVX-512 vector.

NumPy's own allocations start 16 bytes past one, which splits every vector load and store of the
kernels across two cache lines (10-30 % slower); dwcy allocates its outputs aligned, and the arrays
are plain C-contiguous, writeable arrays all the same. A depthwise input that starts inside a line is
read at a phase (the channel blocks start that far before channel 0, the first one wrapped around: its
first lanes are the pixel's last channels) and its new output starts as far into its line: at every
offset, the result is the aligned input's, bit for bit, and nothing outside out= is written.
"""

import gc

import numpy as np
import pytest

import dwcy
from dwcy.kernels import aligned_empty, recycling

from dwcy import reference
from _helpers import (DTYPES, LANES, assert_canaries_intact, assert_close_to_reference, depthwise_inputs,
                      depthwise_terms, dtype_id, out_between_canaries, pointwise_inputs, separable_inputs)

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)


def assert_aligned_output(y, shape, dtype):
    assert y.shape == shape and y.dtype == dtype
    assert y.ctypes.data % 64 == 0
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned


@dtypes
@pytest.mark.parametrize("c", [1, 5, 16, 37])
def test_depthwise_output_is_aligned(rng, dtype, c):
    x, weight, bias = depthwise_inputs(rng, dtype, n=1, h=6, w=7, c=c)
    # (from an aligned input: one inside a line may be read at a phase, its output as far into a line)
    y = dwcy.depthwise_conv2d(at_offset(x, 0), weight, bias, padding="same")
    assert_aligned_output(y, (1, 6, 7, c), dtype)


@dtypes
@pytest.mark.parametrize("cout", [1, 3, 32, 41])
def test_pointwise_output_is_aligned(rng, dtype, cout):
    x, weight, bias = pointwise_inputs(rng, dtype, n=1, h=3, w=5, cin=7, cout=cout)
    y = dwcy.pointwise_conv2d(x, weight, bias)
    assert_aligned_output(y, (1, 3, 5, cout), dtype)


@dtypes
def test_separable_output_is_aligned(rng, dtype):
    y = dwcy.separable_conv2d(**separable_inputs(rng, dtype, n=1, h=6, w=5, c=3, cout=9), padding="same")
    assert_aligned_output(y, (1, 6, 5, 9), dtype)


def at_offset(values, offset):
    """A copy of ``values`` that starts ``offset`` bytes past a 64-byte boundary."""
    copy = aligned_empty(values.shape, values.dtype, offset)
    copy[...] = values
    assert copy.ctypes.data % 64 == offset
    return copy


# (H, W, C, kernel, stride, dilation): every kind of fixed-width tile, with C a multiple of 16 channels and
# enough of them for the phase (DWCY_DW_ALIGN_MIN_BLOCKS), and a layer with too few (never at a phase).
PHASED_LAYERS = {
    "3x3": (7, 19, 128, 3, 1, 1), "3x3_stride2": (9, 18, 144, 3, 2, 1), "5x5": (8, 11, 128, 5, 1, 1),
    "7x7": (9, 10, 160, 7, 1, 1), "3x3_dilation2": (9, 12, 128, 3, 1, 2), "3x3_1x1_image": (1, 1, 256, 3, 1, 1),
    "3x3_C48": (6, 9, 48, 3, 1, 1), "3x3_C32": (6, 9, 32, 3, 1, 1), "3x3_C16": (6, 9, 16, 3, 1, 1),
    # Rows that the wide tiles (8 pixels) cover with fewer pixels in vain than the narrow ones (7): the widths
    # above run the narrow tiles, on AVX-512.
    "5x5_rows_of_16": (8, 16, 128, 5, 1, 1), "7x7_rows_of_24": (5, 24, 160, 7, 1, 1),
    "3x3_dilation2_rows_of_16": (9, 16, 128, 3, 1, 2),
}


@dtypes
@pytest.mark.parametrize("layer", PHASED_LAYERS)
def test_depthwise_at_every_input_offset(rng, simd_level, dtype, layer):
    h, w, c, k, stride, dilation = PHASED_LAYERS[layer]
    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=h, w=w, c=c, kh=k)
    kwargs = dict(stride=stride, dilation=dilation, padding="same", activation="relu6")
    expected = dwcy.depthwise_conv2d(at_offset(x, 0), weight, bias, **kwargs)
    assert_close_to_reference(expected, reference.depthwise_conv2d, x, weight, bias, terms=depthwise_terms(weight),
                              **kwargs)
    for offset in range(0, 64, dtype.itemsize):
        xo = at_offset(x, offset)
        y = dwcy.depthwise_conv2d(xo, weight, bias, **kwargs)
        # At the phase (AVX-512, DWCY_DW_ALIGN_MIN_BLOCKS = 3 blocks or more), or aligned when there is none.
        assert y.ctypes.data % 64 == (offset if simd_level == "avx512" and c // LANES[dtype] >= 3 else 0)
        np.testing.assert_array_equal(y, expected, err_msg=f"x {offset} bytes into a line")
        for threads in (1, 3):  # out= anywhere in a line (here: another offset), NaN where never written
            buffer, out = out_between_canaries(expected.shape, dtype)
            dwcy.depthwise_conv2d(xo, weight, bias, out=out, num_threads=threads, **kwargs)
            np.testing.assert_array_equal(out, expected, err_msg=f"x {offset} bytes into a line, out=")
            assert_canaries_intact(buffer)


@dtypes
@pytest.mark.parametrize("layer", ["3x3", "3x3_stride2", "7x7"])
def test_depthwise_non_finite_weights_at_every_input_offset(rng, simd_level, dtype, layer):
    """A NaN or Inf weight times the zero padding is NaN, as in the reference, in every channel: at a phase,
    the first and last channels share the first block (its lanes below the phase are the last channels)."""
    h, w, c, k, stride, dilation = PHASED_LAYERS[layer]
    x, weight, bias = depthwise_inputs(rng, dtype, n=1, h=h, w=w, c=c, kh=k)
    weight[0, 0, [0, 5, c // 2, c - 1]] = np.nan
    weight[-1, -1, [1, c - 2]] = np.inf  # one infinite term per output: never Inf - Inf
    kwargs = dict(stride=stride, dilation=dilation, padding="same")
    with np.errstate(invalid="ignore"):
        expected = np.isnan(reference.depthwise_conv2d(x, weight, bias, **kwargs))
    assert expected[..., [0, 1, c - 2, c - 1]].any(axis=(0, 1, 2)).all()
    for offset in range(0, 64, dtype.itemsize):
        y = dwcy.depthwise_conv2d(at_offset(x, offset), weight, bias, **kwargs)
        np.testing.assert_array_equal(np.isnan(y), expected, err_msg=f"x {offset} bytes into a line")


@pytest.mark.usefixtures("simd_level")
@dtypes
@pytest.mark.parametrize("h", [6, 48], ids=["unfused", "fused"])  # 48x48x160: an intermediate over 1 MB
def test_separable_at_input_offsets(rng, dtype, h):
    arrays = separable_inputs(rng, dtype, n=1, h=h, w=h, c=160, cout=24)
    x = arrays.pop("x")
    kwargs = dict(padding="same", activation="relu6", depthwise_activation="relu")
    expected = dwcy.separable_conv2d(at_offset(x, 0), **arrays, **kwargs)
    for offset in (16, 48, 64 - dtype.itemsize):
        for threads in (1, 2):
            y = dwcy.separable_conv2d(at_offset(x, offset), **arrays, num_threads=threads, **kwargs)
            np.testing.assert_array_equal(y, expected, err_msg=f"x {offset} bytes into a line")


@pytest.mark.parametrize("offset", [0, 16, 40])
def test_aligned_empty_at_an_offset(offset):
    a = aligned_empty((3, 5), np.dtype(np.float64), offset)
    assert a.ctypes.data % 64 == offset and a.flags.c_contiguous and a.flags.writeable
    a[...] = 7
    np.testing.assert_array_equal(a, 7)


@pytest.mark.parametrize("shape", [(), (0,), (1,), (3, 5, 7), (2, 1, 1, 1, 9), (4097,)])
@pytest.mark.parametrize("dtype", ["float32", "float64", ">f8", "int16", "complex128"])
def test_aligned_empty(shape, dtype):
    dtype = np.dtype(dtype)
    a = aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.ctypes.data % 64 == 0
    assert a.flags.c_contiguous and a.flags.writeable
    values = np.arange(a.size).reshape(shape).astype(dtype)
    a[...] = values
    gc.collect()  # the view keeps its buffer alive
    np.testing.assert_array_equal(a, values)


def test_aligned_empty_rejects_bad_arguments():
    with pytest.raises(TypeError):
        aligned_empty([3, 4], np.dtype(np.float32))  # a list, not a tuple
    with pytest.raises(ValueError):
        aligned_empty((1,) * 9, np.dtype(np.float32))
    with pytest.raises(ValueError):
        aligned_empty((-1,), np.dtype(np.float32))


@pytest.fixture
def no_kept_buffers():
    """No large buffer kept for reuse before or after a test (recycling(drop=True)): tests see only their own."""
    gc.collect()
    recycling(drop=True)
    yield
    gc.collect()
    recycling(drop=True)


def big(offset=0):
    """A new array just at the size whose buffer is reused (RECYCLE_MIN_BYTES)."""
    return aligned_empty((recycling()[0] // 4,), np.dtype(np.float32), offset)


@pytest.mark.usefixtures("no_kept_buffers")
def test_a_large_buffer_is_reused_once_no_array_uses_it():
    a = big()
    data = a.ctypes.data
    view = a[5:]
    del a
    b = big()  # the view keeps the first buffer in use
    assert b.ctypes.data != data and not np.shares_memory(b, view)
    del view
    c = big()
    assert c.ctypes.data == data
    assert not np.shares_memory(b, c)
    c[...] = 1  # reused memory is a plain writeable array
    b[...] = 2
    assert (c == 1).all() and (b == 2).all()


@pytest.mark.usefixtures("no_kept_buffers")
def test_reuse_keeps_alignment_and_offset():
    a = big(16)
    data = a.ctypes.data
    del a
    b = big(40)
    assert b.ctypes.data % 64 == 40 and b.ctypes.data - 24 == data


@pytest.mark.usefixtures("no_kept_buffers")
def test_kept_buffers_are_bounded_and_can_be_dropped():
    minimum, most_bytes, most_buffers, _ = recycling()
    sizes = [minimum // 4 + 1000 * i for i in range(most_buffers + 3)]  # each a little larger: no reuse
    arrays = [aligned_empty((n,), np.dtype(np.float32)) for n in sizes]
    del arrays
    kept = recycling()[3]
    assert 0 < len(kept) <= most_buffers and sum(kept) <= most_bytes
    assert recycling(drop=True)[3] == []


@pytest.mark.usefixtures("no_kept_buffers")
def test_a_buffer_far_larger_than_asked_is_not_taken():
    a = aligned_empty((recycling()[0],), np.dtype(np.float32))  # 4x the minimum
    data = a.ctypes.data
    del a
    b = big()
    assert b.ctypes.data != data


def test_small_arrays_own_a_plain_numpy_buffer():
    a = aligned_empty((1000,), np.dtype(np.float32))
    assert type(a.base) is np.ndarray
