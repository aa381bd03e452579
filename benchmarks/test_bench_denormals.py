"""Subnormal (denormal) inputs vs normal ones, for each kernel: the slowdown x86 microcode assists cause.

x86 CPUs handle a subnormal operand or result of a multiply or add with a microcode assist unless the FPU
runs with flush-to-zero (FTZ) and denormals-are-zero (DAZ), which dwcy sets only when a call asks for it
(``flush_denormals=True``, for that call only). This benchmark measures what subnormals cost, and what the
option wins back: each kernel on one MobileNetV2-sized layer, one thread, float32, with

* ``normal``: x ~ N(0, 1), weights ~ N(0, 1/fan_in);
* ``subnormal``: the same weights, x scaled to ~1e-40 (float32's subnormals are below 1.2e-38): every product,
  partial sum and output is subnormal, the worst case;
* ``all-subnormal``: x and weights ~1e-40: products underflow (1e-80) to zero, which is an assist of its own;
* ``subnormal-flushed``: ``subnormal`` with ``flush_denormals=True`` (the inputs count as zero).

No bias and no activation (a bias of ~1 would lift every sum out of the subnormal range). The three variants of a
kernel are one pytest-benchmark group, side by side; the slowdown is the ratio of their medians::

    pytest benchmarks/test_bench_denormals.py --benchmark-only --benchmark-columns=median,iqr,rounds

CI runs it once with ``--benchmark-disable`` to check that it works (and that subnormal results are right: no
kernel flushes them unless asked to).
"""

import functools

import numpy as np
import pytest

import dwcy

DTYPE = np.float32
SUBNORMAL_SCALE = 1e-40  # about 2**-133: 16 of float32's 24 significand bits are left
TINY = np.finfo(DTYPE).tiny  # the smallest normal float32, 1.18e-38

# MobileNetV2 layers (DESIGN.md): depthwise (56, 144, stride 1), pointwise (28, 144 -> 32), and the block of
# the depthwise (28, 192, stride 1) and the pointwise (28, 192 -> 32) as one separable call.
LAYERS = {
    "depthwise": dict(x=(1, 56, 56, 144), depthwise=(3, 3, 144)),
    "pointwise": dict(x=(1, 28, 28, 144), pointwise=(144, 32)),
    "separable": dict(x=(1, 28, 28, 192), depthwise=(3, 3, 192), pointwise=(192, 32)),
}
VARIANTS = ("normal", "subnormal", "all-subnormal", "subnormal-flushed")


def make_problem(kernel, variant, seed=0):
    """(function, args, kwargs, terms) of one kernel and variant."""
    rng = np.random.default_rng(seed)
    layer = LAYERS[kernel]
    x = rng.standard_normal(layer["x"])
    weights = []
    for name in ("depthwise", "pointwise"):
        if name in layer:
            shape = layer[name]
            fan_in = shape[0] * shape[1] if name == "depthwise" else shape[0]
            weights.append(rng.standard_normal(shape) / np.sqrt(fan_in))
    if variant != "normal":
        x = x * SUBNORMAL_SCALE
    if variant == "all-subnormal":
        weights = [w * SUBNORMAL_SCALE for w in weights]
    args = [x.astype(DTYPE)] + [w.astype(DTYPE) for w in weights]
    function = {"depthwise": dwcy.depthwise_conv2d, "pointwise": dwcy.pointwise_conv2d,
                "separable": dwcy.separable_conv2d}[kernel]
    kwargs = dict(num_threads=1, flush_denormals=variant.endswith("flushed"))
    if kernel != "pointwise":
        kwargs["padding"] = "same"
    return function, args, kwargs


def check(kernel, variant, args, kwargs, result):
    """The result matches the reference in float64, with subnormal rounding (absolute, 2**-149 a step) allowed;
    flushed inputs give zeros."""
    if kwargs["flush_denormals"]:
        assert (result == 0).all(), "flushed subnormal inputs must count as zero"
        return
    reference = getattr(dwcy.reference, f"{kernel}_conv2d")
    expected = reference(*(a.astype(np.float64) for a in args), **kwargs)
    magnitude = reference(*(np.abs(a.astype(np.float64)) for a in args), **kwargs)
    terms = sum(int(np.prod(a.shape[:-1])) for a in args[1:])  # KH*KW (+ Cin): the sums' lengths
    eps = np.finfo(DTYPE).eps
    smallest = np.finfo(DTYPE).smallest_subnormal
    tolerance = 4 * eps * (terms + 1) * magnitude + 2 * (terms + 1) * smallest
    error = np.abs(result.astype(np.float64) - expected)
    assert (error <= tolerance).all(), f"{kernel} {variant}: max error {error.max():.3g}"
    if variant == "subnormal":
        # The case is what it claims: the outputs are subnormal, and not flushed to zero.
        nonzero = np.abs(result[result != 0])
        assert nonzero.size > 0.9 * result.size, "subnormal results were flushed to zero"
        assert (nonzero < TINY).mean() > 0.99, "the outputs are not in the subnormal range"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kernel", list(LAYERS))
def test_denormals(benchmark, kernel, variant):
    function, args, kwargs = make_problem(kernel, variant)
    benchmark.group = f"denormals {kernel} {tuple(LAYERS[kernel]['x'])}, float32, 1 thread"
    benchmark.extra_info.update(kernel=kernel, variant=variant)
    result = benchmark(functools.partial(function, *args, **kwargs))
    check(kernel, variant, args, kwargs, result)
