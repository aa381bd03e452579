"""Index and offset arithmetic never overflows: arrays of more than 2**31 elements and 2**32 bytes, and shapes too
large for 64-bit sizes.

* Always run (fast): shapes whose output or padded image would have 2**62 elements or more raise ValueError before
  anything is allocated (tracemalloc sees less than a megabyte). Huge inputs are zero-stride broadcast views,
  which cost no memory: a validation that copied or allocated first would ask for exabytes.
* Opt-in (``DWCY_HUGE_TESTS=1``, marked slow; up to ~13 GB each, one at a time): each kernel on real arrays of
  more than 2**31 elements (input or output) and more than 2**32 bytes, run in a child process (an overflow
  can crash). Inputs hold a pattern ``a[n] + b[h] + c[w] + d[c]`` of random eighths (an element read from the
  wrong place shows), and the result is compared with ``dwcy.reference`` on small slices: the first and last
  rows or pixels and those around element 2**31 and byte 2**32 of every big array, plus a few random ones.

    python tests/test_huge_tensors.py CASE     # the child: one case of HUGE_CASES, prints a JSON summary
"""

import json
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import dwcy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _helpers import UNDER_SANITIZER, assert_within_rounding  # noqa: E402

HUGE_ENABLED = os.environ.get("DWCY_HUGE_TESTS") == "1"


# AddressSanitizer aborts the process on a request for more memory than it supports (allocation-size-too-big)
# instead of returning NULL (NumPy's MemoryError), unless ASAN_OPTIONS has allocator_may_return_null=1.
needs_memory_error = pytest.mark.skipif(
    UNDER_SANITIZER and "allocator_may_return_null=1" not in os.environ.get("ASAN_OPTIONS", ""),
    reason="asks NumPy for exabytes: AddressSanitizer aborts instead of a MemoryError")


# ------------------------------------------------------------------------------- overflow: fast, always


def huge_view(shape, dtype=np.float32):
    """A read-only array of ``shape`` that takes one element of memory (zero strides)."""
    return np.broadcast_to(np.ones((), dtype), shape)


def _assert_value_error_without_allocating(call, match):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match):
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated before the ValueError"


F32 = np.float32
X60 = (2**20, 2**20, 2**20, 1)  # 2**60 elements: the largest float32 broadcast NumPy allows (2**62 bytes)

OVERFLOWS = {
    # depthwise: the output (N*OH*OW*C*M) or the padded image (Hp*Wp*C*M) reaches 2**62 elements.
    "depthwise multiplier": lambda: dwcy.depthwise_conv2d(huge_view(X60), np.ones((1, 1, 1, 16), F32)),
    "depthwise multiplier 4": lambda: dwcy.depthwise_conv2d(huge_view(X60), np.ones((1, 1, 1, 4), F32)),
    "depthwise batch and padding": lambda: dwcy.depthwise_conv2d(huge_view((2**30, 4, 4, 1)),
                                                                 np.ones((1, 1, 1), F32), padding=2**15),
    "depthwise padding 2**62": lambda: dwcy.depthwise_conv2d(np.ones((1, 3, 3, 2), F32), np.ones((3, 3, 2), F32),
                                                             padding=2**62),
    "depthwise padding top 2**63": lambda: dwcy.depthwise_conv2d(np.ones((1, 3, 3, 2), F32), np.ones((3, 3, 2), F32),
                                                                 padding=((2**63, 0), (0, 0))),
    "depthwise padding 2**31 x 2**31": lambda: dwcy.depthwise_conv2d(np.ones((1, 3, 3, 2), F32),
                                                                     np.ones((3, 3, 2), F32), padding=(2**31, 2**31)),
    "depthwise huge channels and padding": lambda: dwcy.depthwise_conv2d(
        huge_view((1, 1, 1, 2**40)), huge_view((1, 1, 2**40)), padding=2**11),
    # a kernel larger than any image, or a dilation whose span overflows 64 bits: an empty output
    "depthwise kernel 2**40 taps": lambda: dwcy.depthwise_conv2d(np.ones((1, 3, 3, 2), F32),
                                                                 huge_view((2**40, 1, 2))),
    "depthwise dilation 2**62": lambda: dwcy.depthwise_conv2d(np.ones((1, 3, 3, 2), F32), np.ones((3, 3, 2), F32),
                                                              dilation=2**62),
    "depthwise dilation 2**64 stride 2**62": lambda: dwcy.depthwise_conv2d(
        np.ones((1, 3, 3, 2), F32), np.ones((3, 3, 2), F32), dilation=2**64, stride=2**62, padding="same"),
    # pointwise: N*H*W*Cout reaches 2**62
    "pointwise cout": lambda: dwcy.pointwise_conv2d(huge_view(X60), np.ones((1, 4), F32)),
    "pointwise pixels": lambda: dwcy.pointwise_conv2d(huge_view((2**16, 2**16, 2**16, 1)),
                                                      np.ones((1, 2**16), F32)),
    "pointwise huge cout": lambda: dwcy.pointwise_conv2d(np.ones((1, 1, 4, 1), F32), huge_view((1, 2**60))),
    # separable: the depthwise stage (multiplier, padding) or the pointwise output
    "separable multiplier": lambda: dwcy.separable_conv2d(huge_view(X60), np.ones((1, 1, 1, 16), F32),
                                                          np.ones((16, 1), F32)),
    "separable padding": lambda: dwcy.separable_conv2d(np.ones((1, 3, 3, 2), F32), np.ones((3, 3, 2), F32),
                                                       np.ones((2, 3), F32), padding=((0, 0), (2**62, 2**62))),
    "separable padding batch": lambda: dwcy.separable_conv2d(huge_view((2**30, 4, 4, 1)), np.ones((1, 1, 1), F32),
                                                             np.ones((1, 1), F32), padding=2**15),
}


@pytest.mark.parametrize("case", sorted(OVERFLOWS))
def test_overflowing_shapes_raise_before_allocating(case):
    _assert_value_error_without_allocating(OVERFLOWS[case], "too large|empty")


# F2 (found here): separable_conv2d copied a non-contiguous x in its depthwise stage before it looked at the
# output size: a MemoryError after trying to allocate that copy, not the ValueError of the contract.
@needs_memory_error
@pytest.mark.parametrize("cout", [4, 16, 2**20])
def test_separable_output_overflow_raises_before_copying_x(cout):
    _assert_value_error_without_allocating(
        lambda: dwcy.separable_conv2d(huge_view(X60), np.ones((1, 1, 1), F32), huge_view((1, cout))), "too large")


@needs_memory_error
def test_overflow_checks_accept_the_largest_shapes_that_fit():
    # The same huge views with an output below 2**62 elements get past validation: they fail only when NumPy is
    # asked for the memory (MemoryError, or NumPy's ValueError for more than it can address), never earlier.
    for call in (lambda: dwcy.pointwise_conv2d(huge_view((2**20, 2**20, 2**20, 2)), np.ones((2, 1), F32)),
                 lambda: dwcy.depthwise_conv2d(huge_view(X60), np.ones((1, 1, 1, 2), F32))):
        with pytest.raises((MemoryError, ValueError)) as excinfo:
            call()
        assert "too large" not in str(excinfo.value)


# ------------------------------------------------------------------------------- huge arrays: opt-in


class Pattern:
    """x[n, h, w, c] = a[n] + b[h] + c[w] + d[c], random eighths in [-2, 2]: filled in one pass, exact in float32."""

    def __init__(self, shape, seed):
        rng = np.random.default_rng(seed)
        self.parts = [rng.integers(-16, 17, size).astype(np.float32) / 8 for size in shape]

    def fill(self, x, rows=256):
        a, b, c, d = self.parts
        for n in range(x.shape[0]):
            for r0 in range(0, x.shape[1], rows):
                r1 = min(r0 + rows, x.shape[1])
                block = x[n, r0:r1]
                np.add(b[r0:r1, None, None], c[None, :, None], out=block)
                block += (a[n] + d)[None, None, :]

    def rows(self, n, r0, r1):
        a, b, c, d = self.parts
        return (a[n] + b[r0:r1, None, None] + c[None, :, None] + d[None, None, :])[None]


def _weights(rng, shape):
    return (rng.integers(-8, 9, shape) / 8).astype(np.float32)


def _geometry_rows(out_row0, out_row1, h, kh, stride, pad_top):
    """Input rows [i0, i1) and (top, bottom) zero padding that make output rows [out_row0, out_row1)."""
    start = out_row0 * stride - pad_top
    stop = (out_row1 - 1) * stride - pad_top + kh  # exclusive
    return max(start, 0), min(stop, h), max(-start, 0), max(stop - h, 0)


def _same_pad(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _rows_to_check(out_shape, big_arrays, rng, extra=3):
    """(n, row) of the output to check: the first and last, those around element 2**31 and byte 2**32 of each big
    array (given as (shape, itemsize, output row of an array row)), and ``extra`` random ones."""
    n_out, oh = out_shape[0], out_shape[1]
    rows = {(0, 0), (n_out - 1, oh - 1)}
    for shape, itemsize, to_output_row in big_arrays:
        row_elements = int(np.prod(shape[2:]))
        for element in (2**31, 2**32 // itemsize, int(np.prod(shape)) - 1):
            if element < int(np.prod(shape)):
                n, rest = divmod(element, shape[1] * row_elements)
                row = min(to_output_row(rest // row_elements), oh - 1)
                rows |= {(min(n, n_out - 1), row), (min(n, n_out - 1), max(row - 1, 0))}
    for _ in range(extra):
        rows.add((int(rng.integers(n_out)), int(rng.integers(oh))))
    return sorted(rows)


def _check_rows(y, expected_fn, rows, terms):
    checked = 0
    for n, row in rows:
        expected, magnitude = expected_fn(n, row)
        assert_within_rounding(y[n:n + 1, row:row + 1], expected, magnitude, terms, y.dtype)
        checked += expected.size
    return checked


def _spatial_case(x_shape, kh, stride, multiplier, cout):
    """Depthwise (cout None) or separable with 'same' padding on a patterned float32 x: run, then spot-check."""
    rng = np.random.default_rng(8)
    n, h, w, c = x_shape
    pattern = Pattern(x_shape, 9)
    t = time.perf_counter()
    x = np.empty(x_shape, np.float32)
    pattern.fill(x)
    fill_s = time.perf_counter() - t
    dw = _weights(rng, (kh, kh, c, multiplier))
    dw_bias = _weights(rng, (c * multiplier,))
    pad_top, _ = _same_pad(h, kh, stride)
    pad_left, pad_right = _same_pad(w, kh, stride)
    kwargs = dict(stride=stride, padding="same", depthwise_activation="relu6") if cout else \
        dict(stride=stride, padding="same", activation="relu6")
    t = time.perf_counter()
    if cout:
        pw, pw_bias = _weights(rng, (c * multiplier, cout)), _weights(rng, (cout,))
        y = dwcy.separable_conv2d(x, dw, pw, dw_bias, pw_bias, **kwargs)
    else:
        y = dwcy.depthwise_conv2d(x, dw, dw_bias, **kwargs)
    call_s = time.perf_counter() - t

    def expected(n_index, row):
        i0, i1, top, bottom = _geometry_rows(row, row + 1, h, kh, stride, pad_top)
        piece = pattern.rows(n_index, i0, i1).astype(np.float64)
        padding = ((top, bottom), (pad_left, pad_right))
        args = (piece, dw.astype(np.float64)) + ((pw.astype(np.float64),) if cout else ()) + \
            (dw_bias.astype(np.float64),) + ((pw_bias.astype(np.float64),) if cout else ())
        function = dwcy.reference.separable_conv2d if cout else dwcy.reference.depthwise_conv2d
        value = function(*args, stride=stride, padding=padding, **kwargs_no_padding)
        magnitude = function(*(np.abs(a) for a in args), stride=stride, padding=padding)
        return value, magnitude

    kwargs_no_padding = {k: v for k, v in kwargs.items() if k not in ("stride", "padding")}
    big = [(x_shape, 4, lambda r: (r + pad_top) // stride), (y.shape, 4, lambda r: r)]
    rows = _rows_to_check(y.shape, big, rng)
    terms = kh * kh + (1 + c * multiplier if cout else 0)
    t = time.perf_counter()
    checked = _check_rows(y, expected, rows, terms)
    return dict(x_shape=x_shape, x_elements=x.size, x_bytes=x.nbytes, out_shape=y.shape, out_elements=y.size,
                out_bytes=y.nbytes, fill_s=round(fill_s, 1), call_s=round(call_s, 1),
                check_s=round(time.perf_counter() - t, 1), rows_checked=len(rows), elements_checked=checked)


def _pointwise_case(x_shape, cout):
    rng = np.random.default_rng(10)
    pattern = Pattern(x_shape, 11)
    t = time.perf_counter()
    x = np.empty(x_shape, np.float32)
    pattern.fill(x)
    fill_s = time.perf_counter() - t
    cin = x_shape[3]
    weight, bias = _weights(rng, (cin, cout)), _weights(rng, (cout,))
    t = time.perf_counter()
    y = dwcy.pointwise_conv2d(x, weight, bias, activation="hardswish")
    call_s = time.perf_counter() - t
    rows = _rows_to_check(y.shape, [(x_shape, 4, lambda r: r), (y.shape, 4, lambda r: r)], rng)
    w64, b64 = weight.astype(np.float64), bias.astype(np.float64)

    def expected(n, row):
        piece = pattern.rows(n, row, row + 1).astype(np.float64)
        value = dwcy.reference.pointwise_conv2d(piece, w64, b64, activation="hardswish")
        return value, dwcy.reference.pointwise_conv2d(np.abs(piece), np.abs(w64), np.abs(b64))

    t = time.perf_counter()
    checked = _check_rows(y, expected, rows, cin)
    return dict(x_shape=x_shape, x_elements=x.size, x_bytes=x.nbytes, out_shape=y.shape, out_elements=y.size,
                out_bytes=y.nbytes, fill_s=round(fill_s, 1), call_s=round(call_s, 1),
                check_s=round(time.perf_counter() - t, 1), rows_checked=len(rows), elements_checked=checked)


#: name -> (GB of memory it needs, the child's function). Every case has one array of more than 2**31 elements
#: and more than 2**32 bytes; the shapes put element 2**31 and byte 2**32 in the middle of an axis.
HUGE_CASES = {
    # x: 46341**2 = 2,147,488,281 elements (8.6 GB); out 23171**2 (2.1 GB)
    "depthwise_big_input": (11.0, lambda: _spatial_case((1, 46341, 46341, 1), 3, 2, 1, None)),
    # out: 23171**2 * 4 = 2,147,580,964 elements (8.6 GB), multiplier 4; x 2.1 GB
    "depthwise_big_output": (11.0, lambda: _spatial_case((1, 23171, 23171, 1), 3, 1, 4, None)),
    # x: 2 * 1024 * 1024 * 1040 = 2,181,038,080 elements (8.7 GB) over N, H, W and C
    "pointwise_big_input": (9.5, lambda: _pointwise_case((2, 1024, 1024, 1040), 8)),
    # out: the same count of elements over N, H, W and Cout
    "pointwise_big_output": (9.5, lambda: _pointwise_case((2, 1024, 1024, 8), 1040)),
    # x: 2 * 12000 * 23000 * 4 = 2,208,000,000 elements (8.8 GB); out (2, 6000, 11500, 8): 4.4 GB (> 2**32 bytes)
    "separable": (13.9, lambda: _spatial_case((2, 12000, 23000, 4), 3, 2, 1, 8)),
}


def _available_gb():
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


@pytest.mark.slow
@pytest.mark.skipif(not HUGE_ENABLED, reason="huge tensors (up to ~14 GB each, minutes): set DWCY_HUGE_TESTS=1")
@pytest.mark.parametrize("case", list(HUGE_CASES))
def test_huge_tensor(case, tmp_path):
    need, _ = HUGE_CASES[case]
    available = _available_gb()
    if available is not None and available < need + 1:
        pytest.skip(f"{case} needs about {need:g} GB; {available:.1f} GB available")
    child = subprocess.run([sys.executable, os.path.abspath(__file__), case], capture_output=True, text=True,
                           timeout=3600, cwd=tmp_path, env=dict(os.environ, PYTHONFAULTHANDLER="1"))
    assert child.returncode == 0, (
        f"the child running {case} exited with {child.returncode} (negative: killed by that signal)\n"
        f"--- stdout ---\n{child.stdout}\n--- stderr ---\n{child.stderr}")
    print(f"\n{child.stdout.strip().splitlines()[-1]}")


def _child(case):
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    start = time.perf_counter()
    summary = HUGE_CASES[case][1]()
    summary.update(case=case, total_s=round(time.perf_counter() - start, 1),
                   peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                   threads=dwcy.config().get("threads"), simd=dwcy.config().get("simd_level"))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
