"""pointwise_conv2d and separable_conv2d touch exactly their arrays: nothing outside is read or written.

Every array of a call (x, the weights, the biases and a NaN-filled out) is placed against an inaccessible
page, at its end and then at its start, in a child process (tests/_guard.py): a single element read or
written past an array (a vector load over a channel tail, a row tile past the last pixel) kills the child.
The sizes leave tails everywhere: Cin and Cout that fill no vector, pixel counts 1 to 3 rows past the last
full 12-row tile, panels the kernel packs (rows of the weight 4 KiB or more apart).

(That every element of out is written, and nothing just around it, is checked by every grid test of
test_pointwise.py and test_separable.py: they write into a NaN-filled out between canaries.)
"""

import numpy as np
import pytest

import _guard
import dwcy
from dwcy import reference
from _helpers import (
    assert_bitwise_equal,
    assert_close_to_reference,
    pointwise_inputs,
    pointwise_terms,
    separable_inputs,
    separable_terms,
)

# Every test of this module runs at every SIMD level this CPU supports (conftest.py).
pytestmark = pytest.mark.usefixtures("simd_level")

guard_pages = pytest.mark.skipif(not _guard.SUPPORTED, reason="guard pages need Linux mmap/mprotect")


def assert_guarded_calls_match(function, arrays, kwargs, expected, workdir):
    """Run dwcy.<function> in a child with every array against a guard page; it must live and agree."""
    results = _guard.run_guarded(function, arrays, kwargs, expected.shape, expected.dtype, str(workdir))
    for at, result in results.items():
        assert_bitwise_equal(result, expected, f"arrays against a guard page at their {at}")


# name: (dtype, (N, H, W), Cin, Cout, weight ndim, keyword arguments). Pixel counts as 12k + r: r = 1..3
# take 1-row tiles, r = 4..11 a 4-row tile first. Cout against the 2-vector panels (32 float32, 16 float64).
POINTWISE_CASES = {
    "f32_Cin3_Cout17_pixels13": (np.float32, (1, 1, 13), 3, 17, 2, {}),
    "f32_Cin3_Cout33_pixels14": (np.float32, (1, 2, 7), 3, 33, 2, {}),
    "f32_Cin3_Cout47_pixels15": (np.float32, (1, 3, 5), 3, 47, 2, dict(activation="hardswish")),
    "f32_Cin3_Cout47_pixels15_weight_1x1xCinxCout": (np.float32, (1, 3, 5), 3, 47, 4, {}),
    "f32_Cin17_Cout16_pixels30": (np.float32, (2, 3, 5), 17, 16, 2, dict(activation="relu")),
    "f32_Cin1_Cout1_pixel1": (np.float32, (1, 1, 1), 1, 1, 2, {}),
    "f32_Cin64_Cout47_pixels195": (np.float32, (1, 1, 195), 64, 47, 2, {}),  # two row blocks, each with tails
    "f32_packed_Cin5_Cout1037_pixels27": (np.float32, (3, 3, 3), 5, 1037, 2, {}),
    "f64_Cin3_Cout9_pixels25": (np.float64, (1, 5, 5), 3, 9, 2, {}),
    "f64_Cin3_Cout17_pixels26": (np.float64, (2, 1, 13), 3, 17, 2, dict(activation="relu6")),
    "f64_Cin7_Cout23_pixels39": (np.float64, (3, 1, 13), 7, 23, 2, {}),
    "f64_packed_Cin5_Cout521_pixels15": (np.float64, (1, 3, 5), 5, 521, 2, {}),
}


@guard_pages
@pytest.mark.parametrize("name", POINTWISE_CASES)
def test_pointwise_touches_nothing_outside_its_arrays(rng, tmp_path, name):
    dtype, (n, h, w), cin, cout, weight_ndim, kwargs = POINTWISE_CASES[name]
    x, weight, bias = pointwise_inputs(rng, dtype, n=n, h=h, w=w, cin=cin, cout=cout, four_d=weight_ndim == 4)
    expected = dwcy.pointwise_conv2d(x, weight, bias, **kwargs)
    assert_close_to_reference(expected, reference.pointwise_conv2d, x, weight, bias, terms=pointwise_terms(weight),
                              **kwargs)
    assert_guarded_calls_match("pointwise_conv2d", dict(x=x, weight=weight, bias=bias), kwargs, expected, tmp_path)


# name: (dtype, x shape, kernel size, multiplier, Cout, keyword arguments)
SEPARABLE_CASES = {
    "f32_C3_Cout17": (np.float32, (1, 5, 7, 3), 3, 1, 17, dict(padding="same")),
    "f32_C17_Cout33": (np.float32, (2, 7, 9, 17), 3, 1, 33, dict(padding="same", activation="relu6")),
    "f32_C5_M2_Cout47_stride2_same_odd": (np.float32, (1, 9, 11, 5), 3, 2, 47, dict(padding="same", stride=2)),
    "f32_C3_M3_dilated_explicit": (np.float32, (2, 8, 9, 3), 3, 3, 19,
                                   dict(padding=((0, 2), (1, 0)), dilation=2, depthwise_activation="relu")),
    "f32_1x1_image": (np.float32, (1, 1, 1, 17), 3, 1, 33, dict(padding="same")),
    "f32_rows_beyond_a_band": (np.float32, (1, 3, 300, 120), 3, 1, 17, dict(padding="same")),
    "f64_C9_M2_Cout9_stride2_same_odd": (np.float64, (1, 9, 11, 9), 3, 2, 9, dict(padding="same", stride=2)),
    "f64_C3_Cout23_5x5_valid": (np.float64, (1, 7, 9, 3), 5, 1, 23, dict(activation="hardswish")),
}


@guard_pages
@pytest.mark.parametrize("name", SEPARABLE_CASES)
def test_separable_touches_nothing_outside_its_arrays(rng, tmp_path, name):
    dtype, (n, h, w, c), k, multiplier, cout, kwargs = SEPARABLE_CASES[name]
    arrays = separable_inputs(rng, dtype, n=n, h=h, w=w, c=c, kh=k, multiplier=multiplier, cout=cout)
    expected = dwcy.separable_conv2d(**arrays, **kwargs)
    assert_close_to_reference(expected, reference.separable_conv2d,
                              terms=separable_terms(arrays["depthwise_weight"], arrays["pointwise_weight"]),
                              **arrays, **kwargs)
    assert_guarded_calls_match("separable_conv2d", arrays, kwargs, expected, tmp_path)
