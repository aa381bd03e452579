"""The depthwise kernel touches exactly its arrays: every output element written, nothing outside read or written.

- channel tails with out= pre-filled with NaN (an element the kernel skips stays NaN) inside a buffer
  whose neighbouring elements are canaries (an element written past out changes one);
- guard pages: x, weight, bias and out placed against an inaccessible page, in a child process, so a
  single element read or written past an array (a vector load over a channel tail, a border row) crashes.
"""

import signal

import numpy as np
import pytest

import _guard
import dwcy
from dwcy import reference
from _helpers import (DTYPES, LANES, assert_canaries_intact, assert_close_to_reference, depthwise_inputs,
                      depthwise_terms, dtype_id, out_between_canaries)

# Every test of this module runs at every SIMD level this CPU supports (conftest.py).
pytestmark = pytest.mark.usefixtures("simd_level")



def channel_tails(dtype):
    """C in {1, w-1, w, w+1, 3w+5} for the SIMD width w of dtype: one vector, +-1, several and a tail."""
    w = LANES[np.dtype(dtype)]
    return [1, w - 1, w, w + 1, 3 * w + 5]


TAIL_CASES = [(dtype, c) for dtype in DTYPES for c in channel_tails(dtype)]


@pytest.mark.parametrize("width", [5, 27], ids=["narrow", "wide"])  # 27: the multi-pixel interior tile runs
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("dtype, c", TAIL_CASES, ids=[f"{dtype_id(d)}-C{c}" for d, c in TAIL_CASES])
def test_channel_tails_write_every_output_and_nothing_else(rng, dtype, c, multiplier, width):
    x, weight, bias = depthwise_inputs(rng, dtype, n=2, h=4, w=width, c=c, multiplier=multiplier)
    kwargs = dict(padding="same", activation="relu6")
    buffer, out = out_between_canaries((2, 4, width, c * multiplier), dtype)

    y = dwcy.depthwise_conv2d(x, weight, bias, out=out, **kwargs)

    assert y is out
    assert not np.isnan(out).any(), f"{np.isnan(out).sum()} output elements never written"
    assert_close_to_reference(y, reference.depthwise_conv2d, x, weight, bias, terms=depthwise_terms(weight), **kwargs)
    assert_canaries_intact(buffer)


@pytest.mark.parametrize("dtype, c", TAIL_CASES, ids=[f"{dtype_id(d)}-C{c}" for d, c in TAIL_CASES])
def test_channel_tails_with_stride_and_dilation(rng, dtype, c):
    x, weight, bias = depthwise_inputs(rng, dtype, n=1, h=9, w=30, c=c, kh=3, kw=5, multiplier=2)
    kwargs = dict(stride=(2, 1), dilation=(1, 2), padding="same")
    buffer, out = out_between_canaries((1, 5, 30, 2 * c), dtype)
    dwcy.depthwise_conv2d(x, weight, bias, out=out, **kwargs)
    assert_close_to_reference(out, reference.depthwise_conv2d, x, weight, bias, terms=depthwise_terms(weight),
                              **kwargs)
    assert_canaries_intact(buffer)


# -------------------------------------------------------------------------------------- guard pages

guard_pages = pytest.mark.skipif(not _guard.SUPPORTED, reason="guard pages need Linux mmap/mprotect")


@guard_pages
@pytest.mark.parametrize("at", _guard.PLACEMENTS)
def test_guard_page_catches_a_read_outside(at):
    # The guard itself: one byte outside a guarded array must kill the child.
    child = _guard.run_child(["--probe", at], timeout=60)
    # A fault kills the child by its signal; under AddressSanitizer (DWCY_SANITIZE), ASan reports it and exits.
    crashed = child.returncode in (-signal.SIGSEGV, -signal.SIGBUS) or "AddressSanitizer: SEGV" in child.stderr
    assert crashed, (child.returncode, child.stderr)


@guard_pages
@pytest.mark.parametrize("at", _guard.PLACEMENTS)
def test_guarded_copy_is_a_plain_copy(rng, at):
    values = rng.standard_normal((2, 3, 5, 17)).astype(np.float32)
    copy = _guard.guarded_copy(values, at)
    np.testing.assert_array_equal(copy, values)
    # C-contiguous, aligned and native: dwcy uses it as it is, so the kernel reads this very memory.
    assert copy.flags.c_contiguous and copy.flags.aligned and copy.dtype.isnative
    page_offset = copy.ctypes.data % _guard.PAGE
    if at == "end":
        assert (page_offset + copy.nbytes) % _guard.PAGE == 0
    else:
        assert page_offset == 0


GUARDED_CASES = {
    # name: (dtype, x shape (N, H, W, C), kernel size, multiplier, keyword arguments)
    "f32_C17_wide": (np.float32, (2, 5, 23, 17), 3, 1, dict(padding="same")),
    "f32_C33_wide": (np.float32, (1, 4, 21, 33), 3, 1, dict(padding="same")),
    "f32_C17_narrow": (np.float32, (2, 3, 5, 17), 3, 1, dict(padding="valid")),
    "f64_C9_wide": (np.float64, (2, 5, 23, 9), 3, 1, dict(padding="same")),
    "f32_C67_multi_vector": (np.float32, (1, 4, 22, 67), 3, 1, dict(padding="same")),  # 4 vectors and a tail
    "f64_C35_multi_vector": (np.float64, (1, 4, 22, 35), 3, 1, dict(padding="same")),
    "f32_C17_multiplier2": (np.float32, (1, 5, 22, 17), 3, 2, dict(padding="same")),
    "f64_C9_multiplier2": (np.float64, (1, 5, 22, 9), 3, 2, dict(padding="same")),
    "f32_C17_bottom_right_same_stride2": (np.float32, (2, 11, 21, 17), 3, 1, dict(padding="same", stride=2)),
    "f32_C17_bottom_right_even_kernel": (np.float32, (1, 11, 23, 17), 4, 1, dict(padding="same", stride=2)),
    "f64_C9_bottom_right_same_stride2": (np.float64, (1, 9, 21, 9), 3, 2, dict(padding="same", stride=2)),
    "f32_C17_5x5_dilated": (np.float32, (1, 9, 25, 17), 5, 1, dict(padding="same", dilation=2)),
    # The 5- and 7-wide tiles of stride 1: pairs of vectors, an odd last block and a masked channel tail; rows
    # of 21 and 19 run the narrow tiles (7 pixels, AVX-512), rows of 24 and 16 the wide ones.
    "f32_C53_7x7": (np.float32, (1, 9, 21, 53), 7, 1, dict(padding="same")),
    "f32_C53_7x7_rows_of_24": (np.float32, (1, 9, 24, 53), 7, 1, dict(padding="same")),
    "f64_C19_5x5_rows_of_16": (np.float64, (1, 7, 16, 19), 5, 1, dict(padding="same")),
    "f32_C33_7x7_image_narrower_than_the_kernel": (np.float32, (1, 3, 4, 33), 7, 1, dict(padding="same")),
    "f64_C19_5x5": (np.float64, (1, 7, 19, 19), 5, 1, dict(padding="same")),
    "f32_C37_3x3_dilation2": (np.float32, (1, 9, 23, 37), 3, 1, dict(padding="same", dilation=2)),
    "f64_C11_3x3_dilation2_image_narrower_than_a_tile": (np.float64, (1, 5, 4, 11), 3, 1,
                                                          dict(padding="same", dilation=(1, 2))),
    # Rows 7 or 11 wide run the 3-wide kernels' narrow tiles (7 pixels, AVX-512).
    "f32_C35_3x3_rows_of_7": (np.float32, (1, 7, 7, 35), 3, 1, dict(padding="same")),
    "f64_C19_3x3_stride2_rows_of_7": (np.float64, (2, 13, 13, 19), 3, 1, dict(padding="same", stride=2)),
    "f32_C48_3x3_rows_of_11": (np.float32, (1, 4, 13, 48), 3, 1, dict(padding="valid")),
    "f32_C1": (np.float32, (1, 3, 21, 1), 3, 1, dict(padding="same")),
    "f32_1x1_image": (np.float32, (1, 1, 1, 17), 3, 1, dict(padding="same")),
    "f64_1x1_image_multiplier2": (np.float64, (1, 1, 1, 9), 3, 2, dict(padding="same", activation="hardswish")),
}


@guard_pages
@pytest.mark.parametrize("name", GUARDED_CASES)
def test_no_access_outside_the_arrays(rng, tmp_path, name):
    dtype, (n, h, w, c), k, multiplier, kwargs = GUARDED_CASES[name]
    x, weight, bias = depthwise_inputs(rng, dtype, n=n, h=h, w=w, c=c, kh=k, multiplier=multiplier)
    expected = dwcy.depthwise_conv2d(x, weight, bias, **kwargs)
    assert_close_to_reference(expected, reference.depthwise_conv2d, x, weight, bias, terms=k * k, **kwargs)

    results = _guard.run_guarded("depthwise_conv2d", dict(x=x, weight=weight, bias=bias), kwargs,
                                 expected.shape, dtype, str(tmp_path))

    for at, result in results.items():
        np.testing.assert_array_equal(result, expected, err_msg=f"arrays against a guard page at their {at}")
