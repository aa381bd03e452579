"""Many calls of each public function leave the process's memory flat: no leak per call, nor per failing call.

Each function is called ``DWCY_LEAK_CALLS`` times (5,000 by default, about a second; ``DWCY_LEAK_CALLS=100000``
for the long run) on small shapes, cycling through every option (dtypes, activations, biases, every padding form,
strides, dilations, multipliers, ``out=``, thread counts, layouts that make dwcy copy its input) and through
calls that raise (bad dtypes, shapes, paddings, activations, thread counts, aliased ``out=``). After a warm-up
(OpenMP's thread pool, NumPy's caches, dwcy's geometry cache), three figures must stay flat:

* tracemalloc's traced memory: Python objects and NumPy buffers (NumPy reports its allocations to tracemalloc);
* the C heap in use (glibc's ``mallinfo2``: ``uordblks + hblkhd``): what the kernels allocate (packed weights,
  per-thread buffers), which tracemalloc does not see;
* the resident set size (``/proc/self/statm``), loosely: it moves with the allocator's own bookkeeping.

Under the sanitizer build the allocator is AddressSanitizer's (its quarantine holds freed memory on purpose): only
tracemalloc is checked there. ``pytest -s`` prints the figures.
"""

import ctypes
import ctypes.util
import gc
import os
import sys
import time
import tracemalloc

import numpy as np
import pytest

import dwcy
from _helpers import LAYOUTS, UNDER_SANITIZER

CALLS = int(os.environ.get("DWCY_LEAK_CALLS", 5000))
WARMUP_ROUNDS = 3  # times through every recipe before the first measurement

# Allowed growth over CALLS calls after the warm-up (absolute, so the long run is the more sensitive one:
# 100,000 calls make a 1-byte-per-call C leak 100 KB and a 1-byte-per-call Python leak 100 KB).
TRACEMALLOC_SLACK = 64 << 10
HEAP_SLACK = 256 << 10
RSS_SLACK = 4 << 20


# ------------------------------------------------------------------------------------------------ figures


def rss_bytes():
    """Resident set size, from /proc/self/statm (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2():
    if UNDER_SANITIZER or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        function = libc.mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError, TypeError):
        return None
    function.restype = _Mallinfo2
    function.argtypes = ()
    return function


_MALLINFO2 = _mallinfo2()


def heap_bytes():
    """Bytes of the C heap in use (glibc: allocated chunks plus mmapped ones); None where unknown."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


def figures():
    gc.collect()
    return {"rss": rss_bytes(), "heap": heap_bytes(), "traced": tracemalloc.get_traced_memory()[0]}


# ------------------------------------------------------------------------------------------------ recipes

REJECTED = (ValueError, TypeError, OverflowError)  # OverflowError: fuzz finding F1, until it is a ValueError


def _layout(rng, values):
    names = sorted(LAYOUTS) + ["plain"] * 4
    name = names[rng.integers(len(names))]
    return values if name == "plain" else LAYOUTS[name](values)


def _depthwise_recipes(rng):
    recipes = []
    paddings = ["valid", "same", 1, (2, 1), ((0, 2), (1, 0))]
    for i in range(48):
        dtype = (np.float32, np.float64)[i % 2]
        multiplier = (None, 1, 2)[i % 3]
        c = (1, 5, 17)[i % 3 if i % 4 else 2]
        kh, kw = (3, 3) if i % 5 else (2, 5)
        x = rng.standard_normal((2, 7, 9, c)).astype(dtype)
        weight = rng.standard_normal((kh, kw, c) if multiplier is None else (kh, kw, c, multiplier)).astype(dtype)
        cm = c * (multiplier or 1)
        bias = rng.standard_normal(cm).astype(dtype) if i % 3 != 1 else None
        kwargs = dict(stride=(1, 2, (1, 2))[i % 3], padding=paddings[i % 5], dilation=(1, 1, 2, (2, 1))[i % 4],
                      activation=dwcy.ACTIVATIONS[i % 4], num_threads=(None, 1, 2)[i % 3])
        if i % 4 == 3:
            kwargs["out"] = np.empty_like(dwcy.depthwise_conv2d(x, weight, bias, **kwargs))
        recipes.append(((_layout(rng, x), _layout(rng, weight), bias), kwargs, None))
    x = rng.standard_normal((1, 6, 6, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4)).astype(np.float32)
    out = np.empty((1, 4, 4, 4), np.float32)
    buffer = np.zeros(300, np.float32)
    aliased_x, aliased_out = buffer[:144].reshape(1, 6, 6, 4), buffer[100:164].reshape(1, 4, 4, 4)
    for args, kwargs in [
        ((x.astype(np.int32), w), {}), ((x, w.astype(np.float64)), {}), ((x.astype(np.float16), w), {}),
        ((x[0], w), {}), ((x, w[..., :3]), {}), ((x, w, np.ones(3, np.float32)), {}),
        ((x, w), dict(padding=-1)), ((x, w), dict(padding="full")), ((x, w), dict(padding=2**62)),
        ((x, w), dict(stride=0)), ((x, w), dict(dilation=(1, 2, 3))), ((x, w), dict(dilation=7)),
        ((x, w), dict(activation="gelu")), ((x, w), dict(num_threads=0)), ((x, w), dict(num_threads="2")),
        ((x, w), dict(out=np.empty((1, 4, 4, 3), np.float32))), ((x, w), dict(out=out.astype(np.float64))),
        ((aliased_x, w), dict(out=aliased_out)), ((x, w), dict(stride=2**63, out=out[:, :1, :1])),
        ((np.zeros((1, 0, 6, 4), np.float32), w), {}), (([[1.0]], w), {}), ((None, w), {}),
    ]:
        recipes.append((args, kwargs, REJECTED))
    return dwcy.depthwise_conv2d, recipes


def _pointwise_recipes(rng):
    recipes = []
    for i in range(48):
        dtype = (np.float32, np.float64)[i % 2]
        cin, cout = (3, 17, 33)[i % 3], (1, 16, 19)[i % 3 if i % 4 else 0]
        x = rng.standard_normal((2, 5, 7, cin)).astype(dtype)
        weight = rng.standard_normal((1, 1, cin, cout) if i % 5 == 0 else (cin, cout)).astype(dtype)
        bias = rng.standard_normal(cout).astype(dtype) if i % 3 != 1 else None
        kwargs = dict(activation=dwcy.ACTIVATIONS[i % 4], num_threads=(None, 1, 2)[i % 3])
        if i % 4 == 3:
            kwargs["out"] = np.empty((2, 5, 7, cout), dtype)
        recipes.append(((_layout(rng, x), _layout(rng, weight), bias), kwargs, None))
    x = rng.standard_normal((1, 4, 4, 8)).astype(np.float32)
    w = rng.standard_normal((8, 5)).astype(np.float32)
    buffer = np.zeros(300, np.float32)
    aliased_x, aliased_out = buffer[:128].reshape(1, 4, 4, 8), buffer[60:140].reshape(1, 4, 4, 5)
    for args, kwargs in [
        ((x.astype(np.complex64), w), {}), ((x, w.astype(np.float64)), {}), ((x, w[:7]), {}),
        ((x, np.ones((2, 1, 8, 5), np.float32)), {}), ((x, w[None]), {}), ((x, w, np.ones(4, np.float32)), {}),
        ((x, w), dict(activation="RELU")), ((x, w), dict(num_threads=-1)), ((x, w), dict(num_threads=1.5)),
        ((x, w), dict(out=np.empty((1, 4, 4, 5), np.float32)[..., ::-1])),
        ((x, w), dict(out=np.empty((1, 4, 4, 5), np.float32).astype(">f4"))),
        ((aliased_x, w), dict(out=aliased_out)), ((x, np.zeros((8, 0), np.float32)), {}), ((x, "w"), {}),
    ]:
        recipes.append((args, kwargs, REJECTED))
    return dwcy.pointwise_conv2d, recipes


def _separable_recipes(rng):
    recipes = []
    paddings = ["valid", "same", 1, (2, 1), ((0, 2), (1, 0))]
    for i in range(48):
        dtype = (np.float32, np.float64)[i % 2]
        multiplier = (None, 1, 2)[i % 3]
        c, cout = (1, 5, 17)[i % 3 if i % 4 else 2], (1, 16, 19)[i % 3]
        x = rng.standard_normal((2, 7, 9, c)).astype(dtype)
        dw = rng.standard_normal((3, 3, c) if multiplier is None else (3, 3, c, multiplier)).astype(dtype)
        cm = c * (multiplier or 1)
        pw = rng.standard_normal((cm, cout)).astype(dtype)
        dw_bias = rng.standard_normal(cm).astype(dtype) if i % 3 != 1 else None
        pw_bias = rng.standard_normal(cout).astype(dtype) if i % 2 else None
        kwargs = dict(stride=(1, 2, (1, 2))[i % 3], padding=paddings[i % 5], dilation=(1, 1, 2, (2, 1))[i % 4],
                      depthwise_activation=dwcy.ACTIVATIONS[i % 4], activation=dwcy.ACTIVATIONS[(i // 4) % 4],
                      num_threads=(None, 1, 2)[i % 3])
        if i % 4 == 3:
            kwargs["out"] = np.empty_like(dwcy.separable_conv2d(x, dw, pw, dw_bias, pw_bias, **kwargs))
        recipes.append(((_layout(rng, x), _layout(rng, dw), _layout(rng, pw), dw_bias, pw_bias), kwargs, None))
    x = rng.standard_normal((1, 6, 6, 4)).astype(np.float32)
    dw = rng.standard_normal((3, 3, 4)).astype(np.float32)
    pw = rng.standard_normal((4, 6)).astype(np.float32)
    for args, kwargs in [
        ((x.astype(np.uint8), dw, pw), {}), ((x, dw, pw.astype(np.float64)), {}), ((x, dw, pw[:3]), {}),
        ((x, dw, pw, np.ones(3, np.float32)), {}), ((x, dw, pw, None, np.ones(5, np.float32)), {}),
        ((x, dw, pw), dict(padding=(1, 2, 3))), ((x, dw, pw), dict(padding=((2**63, 0), (0, 0)))),
        ((x, dw, pw), dict(stride=-2)), ((x, dw, pw), dict(depthwise_activation="swish")),
        ((x, dw, pw), dict(num_threads=[1])), ((x, dw, pw), dict(out=np.empty((1, 4, 4, 5), np.float32))),
        ((x, dw, pw), dict(out=x)), ((x, dw, pw), dict(dilation=2**63)), ((x, dw[:, :, :2], pw), {}),
    ]:
        recipes.append((args, kwargs, REJECTED))
    return dwcy.separable_conv2d, recipes


def _make_and_call(kind, weights, options, inputs):
    """A prepared convolution made, called on each input and dropped: its packed weights are freed with it."""
    conv = kind(*weights, **options)
    for x in inputs:
        conv(x)


def _prepared_recipes(rng):
    """dwcy.Depthwise, Pointwise and Separable, each made at every call and called on inputs at several places
    in a cache line (a depthwise stage packs its weights for each); and some that raise."""
    recipes = []
    for i in range(24):
        dtype = (np.float32, np.float64)[i % 2]
        c = (5, 17, 160)[i % 3]  # 160: channel blocks at a phase
        buffer = rng.standard_normal(2 * 6 * 7 * c + 16).astype(dtype)
        inputs = [buffer[k:k + 2 * 6 * 7 * c].reshape(2, 6, 7, c) for k in (0, 1, 4)]
        dw = rng.standard_normal((3, 3, c)).astype(dtype)
        pw = rng.standard_normal((c, 19)).astype(dtype)
        bias = rng.standard_normal(c).astype(dtype)
        options = dict(padding=("same", 1, "valid")[i % 3], activation=dwcy.ACTIVATIONS[i % 4])
        kind = (dwcy.Depthwise, dwcy.Pointwise, dwcy.Separable)[i % 3]
        if kind is dwcy.Depthwise:
            recipes.append(((kind, (dw, bias), dict(options, stride=(1, 2)[i % 2]), inputs), {}, None))
        elif kind is dwcy.Pointwise:
            recipes.append(((kind, (pw, None), dict(activation=options["activation"]), inputs), {}, None))
        else:
            recipes.append(((kind, (dw, pw, bias), options, inputs), {}, None))
    x = rng.standard_normal((1, 6, 6, 4)).astype(np.float32)
    dw, pw = rng.standard_normal((3, 3, 4)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    for args in [(dwcy.Depthwise, (dw[0],), {}, [x]), (dwcy.Depthwise, (dw,), {}, [x.astype(np.float64)]),
                 (dwcy.Pointwise, (pw,), dict(activation="gelu"), [x]), (dwcy.Pointwise, (pw,), {}, [x[..., :3]]),
                 (dwcy.Separable, (dw, pw[:3]), {}, [x]), (dwcy.Separable, (dw, pw), {}, [x[:, :1, :1]])]:
        recipes.append((args, {}, REJECTED))
    return _make_and_call, recipes


RECIPES = {"depthwise": _depthwise_recipes, "pointwise": _pointwise_recipes, "separable": _separable_recipes,
           "prepared": _prepared_recipes}


def _call(function, recipe):
    args, kwargs, errors = recipe
    if errors is None:
        function(*args, **kwargs)
        return
    try:
        function(*args, **kwargs)
    except errors:
        return
    raise AssertionError(f"{function.__name__}(*{len(args)} args, **{sorted(kwargs)}) did not raise")


def _run(function, recipes, calls):
    for i in range(calls):
        _call(function, recipes[i % len(recipes)])


def _mib(n):
    return "n/a" if n is None else f"{n / 2**20:.2f} MiB"


def _delta(before, after, key):
    if before[key] is None or after[key] is None:
        return None
    return after[key] - before[key]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_many_calls_leave_memory_flat(name):
    function, recipes = RECIPES[name](np.random.default_rng(2024))
    failing = sum(1 for r in recipes if r[2] is not None)
    tracemalloc.start()
    try:
        _run(function, recipes, WARMUP_ROUNDS * len(recipes))
        before = figures()
        start = time.perf_counter()
        _run(function, recipes, CALLS)
        seconds = time.perf_counter() - start
        after = figures()
    finally:
        tracemalloc.stop()
    deltas = {key: _delta(before, after, key) for key in before}
    shown = "; ".join(f"{key} {_mib(before[key])} -> {_mib(after[key])} "
                      f"({'n/a' if deltas[key] is None else f'{deltas[key]:+d} B'})" for key in before)
    print(f"\n{name}: {CALLS} calls ({len(recipes)} recipes, {failing} of them raising) in {seconds:.1f} s; {shown}")
    assert deltas["traced"] <= TRACEMALLOC_SLACK, f"tracemalloc grew by {deltas['traced']} B over {CALLS} calls"
    if deltas["heap"] is not None:
        assert deltas["heap"] <= HEAP_SLACK, f"the C heap grew by {deltas['heap']} B over {CALLS} calls"
    if deltas["rss"] is not None and not UNDER_SANITIZER:
        assert deltas["rss"] <= RSS_SLACK, f"RSS grew by {deltas['rss']} B over {CALLS} calls"


def test_the_leak_check_catches_a_leak():
    # The measurement itself: a leak of 1 KiB per call (Python objects kept alive; C memory never freed) shows.
    kept = []
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    tracemalloc.start()
    try:
        before = figures()
        for _ in range(1000):
            kept.append(np.ones(128))  # 1 KiB of NumPy data
            libc.malloc(1024)  # never freed (1 MiB in all: a deliberate leak in the test process)
        after = figures()
    finally:
        tracemalloc.stop()
    assert after["traced"] - before["traced"] > TRACEMALLOC_SLACK
    if after["heap"] is not None:
        assert after["heap"] - before["heap"] > HEAP_SLACK
