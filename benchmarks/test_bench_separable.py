"""dwcy.separable_conv2d, fused, vs the same block unfused and vs the NumPy reference, on MobileNetV2's blocks.

``dwcy-unfused`` is dwcy.depthwise_conv2d then dwcy.pointwise_conv2d, the intermediate tensor going through
memory: the ratio to it is what fusing gains; ``dwcy-prepared`` is dwcy.Separable, its weights packed
once. ``extra_info["min_bytes"]`` counts the fused call's traffic (no intermediate). See ``test_bench_depthwise.py``
for how to run and read these benchmarks, and ``fusion_floor.py`` for the most fusing can gain here.
"""

import numpy as np
import pytest

import dwcy
import fusion_floor
from _bench import Implementation, parametrize, prepared
from dwcy._layers import BENCHMARK_LAYERS, unfused_separable_conv2d

IMPLEMENTATIONS = (
    Implementation("dwcy", dwcy.separable_conv2d),
    Implementation("dwcy-prepared", None, prepare=prepared(dwcy.Separable)),
    # A baseline, not a kernel to track: 50 rounds (as the pointwise reference's), no second of calibration.
    Implementation("dwcy-unfused", unfused_separable_conv2d, rounds=50),
    # Up to ~150 ms a call (batch 8, 112x112x96 stride 1), 5-10x dwcy: 5 rounds are enough for that ratio and keep
    # a full run to a few minutes. Its depthwise stage runs on one thread, its matmul on the benchmark's threads.
    Implementation("numpy-reference", dwcy.reference.separable_conv2d, rounds=5),
)


@parametrize(BENCHMARK_LAYERS["separable"], IMPLEMENTATIONS)
def test_separable(measure, problem, threads, implementation):
    measure(implementation, problem, threads)


@pytest.mark.parametrize("block", BENCHMARK_LAYERS["separable"], ids=lambda block: block.name)
def test_fusion_floor_computes_the_block(block):
    """fusion_floor.py's floor runs the block's two stages on a band of rows (or the whole image): its output is the
    block's on that band, and the fixed-cost calls run."""
    band, fixed, bands = fusion_floor.band_calls(block)
    assert bands >= 1
    fixed()
    np.testing.assert_allclose(band(), band.expected(), **block.tolerance(np.float32))


def test_fusion_ceiling_is_a_gain():
    """fusion_floor.py's ceiling: perfect kernels plus the intermediate's traffic, over perfect kernels (> 1)."""
    block = BENCHMARK_LAYERS["separable"][0]
    try:
        assert fusion_floor.ceiling(block, 1, fma_peak=1e12) > 1
    except fusion_floor.roofline.CompilerMissing as error:
        pytest.skip(str(error))
