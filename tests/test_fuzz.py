"""Fuzzing the public API (tests/fuzz.py) for a fixed wall time, and the regression tests of what it found.

``DWCY_FUZZ_SECONDS`` sets the fuzzing time. By default it is 40 s under the sanitizer build (where a fuzzed
out-of-bounds access or undefined behaviour is reported) and 20 s otherwise: about a minute in all for
``.ci/run``, which runs the tests once plain and once under ASan+UBSan. ``DWCY_FUZZ_SEED`` fixes the seed
(printed with any failure); longer runs: ``python tests/fuzz.py --seconds 600``.
"""

import os
import tracemalloc

import numpy as np
import pytest

import dwcy
import fuzz
from _helpers import UNDER_SANITIZER


def test_fuzz_public_api():
    seconds = float(os.environ.get("DWCY_FUZZ_SECONDS", 40 if UNDER_SANITIZER else 20))
    seed = os.environ.get("DWCY_FUZZ_SEED")
    stats = fuzz.run(seconds, None if seed is None else int(seed))
    print(f"fuzz seed {stats.seed}: {stats.summary()}")
    if stats.findings:
        key, text = stats.findings[0]
        others = "".join(f"\n  {k}" for k, _ in stats.findings[1:])
        pytest.fail(f"{len(stats.findings)} finding(s), seed {stats.seed}; the first: {key}{others}\n{text}",
                    pytrace=False)
    # The fuzzer exercised what it is meant to (a time so short that it ran nothing says nothing).
    if seconds >= 5:
        assert stats.by_kind["valid"] > 0 and stats.by_kind["invalid"] > 0 and stats.by_kind["chaos"] > 0
        assert all(count > 0 for count in stats.by_function.values())


# ------------------------------------------------------------------------------- the fuzzer's oracle


def test_oracle_flags_an_invalid_call_that_returns():
    # The checks themselves: a call marked invalid that dwcy accepts is a finding, as is a valid one it refuses.
    x, w = np.ones((1, 4, 4, 2), np.float32), np.ones((3, 3, 2), np.float32)
    call = fuzz.Call("depthwise", [x, w], {}, "invalid", mutations=["none really"])
    with pytest.raises(fuzz.Finding, match="returned instead of raising"):
        fuzz.check(call)
    call = fuzz.Call("depthwise", [x, w[:, :, :1]], {}, "valid", dtype=np.dtype(np.float32), terms=9,
                     out_shape=(1, 2, 2, 2))
    with pytest.raises(fuzz.Finding, match="a valid call raised ValueError"):
        fuzz.check(call)


def test_oracle_flags_out_written_by_a_failing_call(monkeypatch):
    x, w = np.ones((1, 4, 4, 2), np.float32), np.ones((3, 3, 2), np.float32)
    out = np.zeros((1, 2, 2, 2), np.float32)

    def writes_then_raises(x, weight, *, out=None, **kwargs):
        out[...] = 1
        raise ValueError("too late")

    monkeypatch.setitem(fuzz.FUNCTIONS, "depthwise", (writes_then_raises, fuzz.reference.depthwise_conv2d))
    call = fuzz.Call("depthwise", [x, w], {"out": out, "activation": "gelu"}, "invalid", mutations=["activation"])
    with pytest.raises(fuzz.Finding, match="out= was modified"):
        fuzz.check(call)


# ----------------------------------------------------------------------------------- regression tests
#
# F1 (found by the fuzzer): a stride or dilation of 2**63 or more passed dwcy._args (Python ints are unbounded)
# and reached the Py_ssize_t fields of the kernels' geometry: OverflowError, not the promised ValueError.

HUGE = [2**63, 2**64, 2**100]


@pytest.mark.parametrize("argument, huge", [("stride", 2**63), ("stride", 2**100), ("stride_h", 2**64),
                                            ("dilation_1tap", 2**63), ("dilation_w_1tap", 2**64)])
@pytest.mark.parametrize("function", ["depthwise", "separable"])
def test_huge_stride_or_dilation_raises_value_error(function, argument, huge):
    x = np.ones((1, 5, 5, 3), np.float32)
    weight = np.ones((3, 1, 3) if argument == "dilation_w_1tap" else (1, 1, 3), np.float32)
    value = {"stride": huge, "stride_h": (huge, 1), "dilation_1tap": huge, "dilation_w_1tap": (1, huge)}[argument]
    name = "stride" if argument.startswith("stride") else "dilation"
    if function == "depthwise":
        out_shape = {"stride": (1, 1, 1, 3), "stride_h": (1, 1, 5, 3), "dilation_1tap": (1, 5, 5, 3),
                     "dilation_w_1tap": (1, 3, 5, 3)}[argument]
        out = np.full(out_shape, 7, np.float32)
        before = out.copy()
        with pytest.raises(ValueError, match=name):
            dwcy.depthwise_conv2d(x, weight, **{name: value}, out=out)
    else:
        before = out = None
        with pytest.raises(ValueError, match=name):
            dwcy.separable_conv2d(x, weight, np.ones((3, 2), np.float32), **{name: value})
    if out is not None:
        np.testing.assert_array_equal(out, before)


# F3 (found by the fuzzer): with a NaN or Inf depthwise weight, the reference multiplies the zero padding by it
# (NaN) where the kernels skipped padded taps; the kernels now give NaN there too, as XNNPACK does.

@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("function", ["depthwise", "separable"])
def test_non_finite_weight_with_padding_matches_reference(function, bad):
    x = np.ones((1, 3, 3, 1), np.float32)
    weight = np.ones((3, 3, 1), np.float32)
    weight[0, 0, 0] = bad
    with np.errstate(invalid="ignore"):
        if function == "depthwise":
            actual = dwcy.depthwise_conv2d(x, weight, padding="same")
            expected = dwcy.reference.depthwise_conv2d(x, weight, padding="same")
        else:
            pw = np.ones((1, 2), np.float32)
            actual = dwcy.separable_conv2d(x, weight, pw, padding="same")
            expected = dwcy.reference.separable_conv2d(x, weight, pw, padding="same")
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN positions differ")


def test_huge_dilation_with_several_taps_is_refused():
    # With more than one tap, a huge dilation spans more than the image: a ValueError, whichever check sees it.
    x, weight = np.ones((1, 5, 5, 3), np.float32), np.ones((3, 3, 3), np.float32)
    for huge in HUGE:
        with pytest.raises(ValueError, match="empty|too large"):
            dwcy.depthwise_conv2d(x, weight, dilation=(1, huge))


@pytest.mark.parametrize("padding", fuzz.OVERFLOW_PADDINGS, ids=str)
@pytest.mark.parametrize("function", ["depthwise", "separable"])
def test_overflowing_padding_raises_before_allocating(function, padding):
    x = np.ones((1, 5, 5, 3), np.float32)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="too large"):
            if function == "depthwise":
                dwcy.depthwise_conv2d(x, np.ones((3, 3, 3), np.float32), padding=padding)
            else:
                dwcy.separable_conv2d(x, np.ones((3, 3, 3), np.float32), np.ones((3, 2), np.float32),
                                      padding=padding)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated before the ValueError"


@pytest.mark.parametrize("num_threads", [2**16, 2**62, 2**200, np.uint8(3), True])
def test_large_or_odd_thread_counts_are_accepted(num_threads):
    # Huge counts are capped (at most one thread per work item), never an error or a crash.
    x, w = np.ones((2, 6, 6, 3), np.float32), np.ones((3, 3, 3), np.float32)
    expected = dwcy.depthwise_conv2d(x, w, padding="same", num_threads=1)
    np.testing.assert_array_equal(dwcy.depthwise_conv2d(x, w, padding="same", num_threads=num_threads), expected)
