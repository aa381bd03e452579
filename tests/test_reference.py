"""dwcy.reference, the oracle of the kernel tests, checked against an independent one: SciPy's correlate2d.

The oracle shares no code with dwcy: padding, dilation, stride, TensorFlow's "same" rule and the
activations are written out here from their definitions, around a plain per-channel 2-D correlation.
"""

import itertools

import numpy as np
import pytest
from scipy.signal import correlate2d

from dwcy import reference
from _helpers import ACTIVATIONS, assert_within_rounding, random_array, reference_magnitude


# ------------------------------------------------------------------------------------ the oracle


def tf_same_padding(size, kernel, stride, dilation):
    """TensorFlow's SAME padding of one axis (GetWindowedOutputSizeVerbose in kernel_shape_util.cc)."""
    output = (size + stride - 1) // stride
    effective_kernel = (kernel - 1) * dilation + 1
    needed = max(0, (output - 1) * stride + effective_kernel - size)
    before = needed // 2
    return before, needed - before


def explicit_padding(padding, hw, khw, stride, dilation):
    """Any of the five padding forms as ((top, bottom), (left, right))."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return tuple(tf_same_padding(*axis) for axis in zip(hw, khw, stride, dilation))
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def dilate(kernel, dilation):
    """Insert dilation-1 zeros between the taps of a 2-D kernel."""
    dh, dw = dilation
    kh, kw = kernel.shape
    dilated = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1))
    dilated[::dh, ::dw] = kernel
    return dilated


ORACLE_ACTIVATIONS = {
    None: lambda y: y,
    "relu": lambda y: np.where(y > 0, y, 0.0),
    "relu6": lambda y: np.where(y > 6, 6.0, np.where(y > 0, y, 0.0)),
    "hardswish": lambda y: y * np.where(y + 3 > 6, 6.0, np.where(y + 3 > 0, y + 3, 0.0)) / 6,
}


def oracle_depthwise(x, weight, bias, stride, pads, dilation, activation):
    """Depthwise convolution from scipy.signal.correlate2d, one (image, channel, multiplier) at a time.

    x (N, H, W, C); weight (KH, KW, C, M); output channel c*M + m; pads ((top, bottom), (left, right)).
    """
    n, _, _, c = x.shape
    multiplier = weight.shape[3]
    sh, sw = stride
    padded = np.pad(x, ((0, 0), *pads, (0, 0)))
    outputs = np.empty((n, c * multiplier), dtype=object)
    for i, ch, m in itertools.product(range(n), range(c), range(multiplier)):
        kernel = dilate(weight[:, :, ch, m], dilation)
        full = correlate2d(padded[i, :, :, ch], kernel, mode="valid")
        outputs[i, ch * multiplier + m] = full[::sh, ::sw]
    y = np.stack([np.stack(list(row), axis=-1) for row in outputs])
    if bias is not None:
        y = y + bias
    return ORACLE_ACTIVATIONS[activation](y)


def check_reference_against_oracle(rng, shape, kernel_hw, multiplier, *, stride=1, padding="valid", dilation=1,
                                   bias=True, activation=None, scale=1.0):
    n, h, w, c = shape
    x = random_array(rng, shape, np.float64, scale)
    weight = random_array(rng, (*kernel_hw, c, multiplier), np.float64)
    b = random_array(rng, (c * multiplier,), np.float64) if bias else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, activation=activation)

    actual = reference.depthwise_conv2d(x, weight, b, **kwargs)
    stride_hw, dilation_hw = pair(stride), pair(dilation)
    pads = explicit_padding(padding, (h, w), kernel_hw, stride_hw, dilation_hw)
    expected = oracle_depthwise(x, weight, b, stride_hw, pads, dilation_hw, activation)
    magnitude = reference_magnitude(reference.depthwise_conv2d, x, weight, b, **kwargs)
    assert_within_rounding(actual, expected, magnitude, kernel_hw[0] * kernel_hw[1])
    return actual


# ------------------------------------------------------------------------------------------ tests

GEOMETRIES = [
    # (H, W), (KH, KW), stride, dilation, padding
    ((7, 8), (3, 3), 1, 1, "valid"),
    ((7, 8), (3, 3), 1, 1, "same"),
    ((9, 10), (2, 4), 1, 1, "same"),  # even kernels: the odd padding pixel goes bottom/right
    ((9, 10), (3, 3), 2, 1, "same"),
    ((10, 9), (4, 3), 2, 1, "same"),
    ((11, 12), (3, 5), 3, 1, "same"),
    ((12, 11), (2, 2), 3, 1, "same"),
    ((8, 9), (3, 3), 1, 2, "same"),  # dilation enters TensorFlow's rule through the effective kernel
    ((9, 8), (3, 2), 2, (2, 3), "same"),
    ((5, 6), (7, 7), 3, 1, "same"),  # kernel larger than the image
    ((8, 9), (3, 3), (1, 2), 1, 1),
    ((8, 9), (3, 3), 2, (2, 1), (2, 1)),
    ((8, 9), (2, 3), (3, 1), 1, ((0, 2), (3, 1))),
    ((6, 7), (5, 5), 1, 1, ((4, 0), (0, 4))),
    ((9, 9), (3, 3), 1, 3, "valid"),
    ((10, 11), (1, 1), 2, 1, "valid"),
    ((4, 4), (2, 2), 5, 1, 1),  # stride larger than the kernel
]


@pytest.mark.parametrize("hw, kernel_hw, stride, dilation, padding", GEOMETRIES)
def test_reference_matches_oracle_geometry(rng, hw, kernel_hw, stride, dilation, padding):
    check_reference_against_oracle(rng, (2, *hw, 3), kernel_hw, 2, stride=stride, padding=padding, dilation=dilation)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("multiplier", [1, 2, 3])
def test_reference_matches_oracle_options(rng, multiplier, bias, activation):
    # Inputs scaled so that outputs spread over every piece of the activations: < -3, [-3, 0], [0, 6], > 6.
    y = check_reference_against_oracle(rng, (2, 7, 6, 3), (3, 2), multiplier, stride=(2, 1), padding="same",
                                       dilation=(1, 2), bias=bias, activation=activation, scale=3.0)
    if activation is None:
        assert (y < -3).any() and (y > 6).any(), "the data does not reach the activations' kinks"


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_same_padding_follows_tensorflow(rng, stride):
    # Every small size, kernel and dilation: "same" is exactly the explicit TensorFlow padding.
    for size, kernel, dilation in itertools.product(range(1, 14), range(1, 8), range(1, 4)):
        x = random_array(rng, (1, size, 2, 1), np.float64)
        weight = random_array(rng, (kernel, 1, 1), np.float64)
        pads = ((tf_same_padding(size, kernel, stride, dilation)), (0, 0))
        same = reference.depthwise_conv2d(x, weight, stride=(stride, 1), dilation=(dilation, 1), padding="same")
        explicit = reference.depthwise_conv2d(x, weight, stride=(stride, 1), dilation=(dilation, 1), padding=pads)
        assert same.shape[1] == -(-size // stride)
        np.testing.assert_array_equal(same, explicit, err_msg=f"H={size} K={kernel} S={stride} D={dilation}")


def test_same_padding_is_asymmetric_bottom_right(rng):
    # H=4, K=2: one padding row in all, and TensorFlow puts it at the bottom: row 3 of the output sees
    # image row 3 and a padding row, not image row 2 and row 3.
    x = random_array(rng, (1, 4, 4, 1), np.float64)
    weight = np.ones((2, 2, 1))
    y = reference.depthwise_conv2d(x, weight, padding="same")
    np.testing.assert_allclose(y[0, 3, 3, 0], x[0, 3, 3, 0])
    np.testing.assert_allclose(y[0, 0, 0, 0], x[0, :2, :2, 0].sum())


def test_reference_activations_keep_nan():
    x = np.array([np.nan, -np.inf, -4.0, -1.0, 0.0, 2.0, 7.0, np.inf]).reshape(1, 1, -1, 1)
    weight = np.ones((1, 1, 1))
    for activation, formula in ORACLE_ACTIVATIONS.items():
        with np.errstate(invalid="ignore"):
            y = reference.depthwise_conv2d(x, weight, activation=activation)
            expected = formula(x)
        expected[np.isnan(x)] = np.nan  # np.where(NaN > 0, ...) picks 0; NumPy's arithmetic keeps NaN
        np.testing.assert_array_equal(y, expected, err_msg=str(activation))


def test_reference_returns_out(rng):
    x = random_array(rng, (1, 5, 5, 2), np.float64)
    weight = random_array(rng, (3, 3, 2), np.float64)
    out = np.empty((1, 3, 3, 2))
    assert reference.depthwise_conv2d(x, weight, out=out) is out
    np.testing.assert_array_equal(out, reference.depthwise_conv2d(x, weight))
