"""Outputs and buffers start on a 64-byte boundary: a cache line, one AVX-512 vector.

NumPy's own allocations start 16 bytes past one, which splits every vector load and store of the
kernels across two cache lines (10-30 % slower); dwcy allocates its outputs aligned, and the arrays
are plain C-contiguous, writeable arrays all the same.
"""

import gc

import numpy as np
import pytest

import dwcy
from dwcy.kernels import aligned_empty

from _helpers import DTYPES, depthwise_inputs, dtype_id, pointwise_inputs, separable_inputs

dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)


def assert_aligned_output(y, shape, dtype):
    assert y.shape == shape and y.dtype == dtype
    assert y.ctypes.data % 64 == 0
    assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned


@dtypes
@pytest.mark.parametrize("c", [1, 5, 16, 37])
def test_depthwise_output_is_aligned(rng, dtype, c):
    x, weight, bias = depthwise_inputs(rng, dtype, n=1, h=6, w=7, c=c)
    y = dwcy.depthwise_conv2d(x, weight, bias, padding="same")
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
