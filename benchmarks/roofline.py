"""This machine's limits for one core, and how close dwcy's depthwise layers come to them (the roofline).

    python benchmarks/roofline.py             # limits, then each MobileNetV2 depthwise layer (batch 1, 1 thread)
    python benchmarks/roofline.py --quick     # a first look (shorter timings, noisier)

Run it with the Python of an environment where dwcy is installed (not from inside the source root with
``python -m``, which would import the uncompiled tree). ``pytest benchmarks/test_bench_roofline.py`` measures the
same and puts the numbers in each benchmark's ``extra_info``.

What is measured, on one core (one thread; the process is not pinned):

- **FP32 FMA peak**: a C loop of independent vector FMAs (``acc = acc * a + b`` on ``FMA_CHAINS`` accumulators, as
  wide as ``-march=native`` allows: 16 floats with AVX-512, 8 with AVX/AVX2, 4 otherwise), enough chains to hide
  the FMA latency on two FMA pipes. FLOP/s = 2 x lanes x chains x iterations / seconds.
- **Copy bandwidth per cache level**: a C loop copying a float32 array into another (vector loads and stores, no
  ``memcpy``: glibc's switches to non-temporal stores on large arrays) over and over; the two arrays together are
  the working set, sized for the level: half the L1d, half the L2, and for the L3 four times the L2 (at most half
  the L3: an L3 is shared by cores, and on a VM by other tenants), and for DRAM twice the L3 (64 MiB to 1 GiB).
  Cache sizes come from Linux's sysfs (``/sys/devices/system/cpu/cpu0/cache``), or typical ones when it is
  missing. Bytes counted = bytes read + bytes written, as for the layers (the write-allocate reads of the
  destination, which the hardware adds, are not counted on either side).
- **Read bandwidth per level** (reported, not used by the roofline): the same arrays summed with independent
  vector accumulators.

Each limit is the best of ``repeats`` timings (noise only ever slows a loop down, so the best is the closest to
what the hardware allows); each timing runs the loop for about ``seconds`` after an untimed warm-up pass that
also faults the pages in. The C file is compiled at run time with the system compiler (``$CC``, else ``cc``)
``-O2 -march=native`` into a temporary folder and loaded with ctypes; without a compiler nothing is measured
(``CompilerMissing``).

The roofline of a depthwise layer (batch 1): ``time_roofline = max(FLOPs / FMA peak, bytes / bandwidth)``, with
``FLOPs`` = 2 x KH x KW per output element (``layer.flops``: bias and activation not counted), ``bytes`` = input +
output + weights + bias (``layer.min_bytes``: each read or written once) and ``bandwidth`` = the copy bandwidth of
the smallest cache level whose capacity holds those bytes (the level the layer lives in when it is called again
and again: its input and weights stay there, and its output reuses the same memory; DRAM beyond the L3), or, where
higher, the copy bandwidth measured at the layer's own working set (a working set just over a level's capacity
still gets much of that level's bandwidth). Right before each layer is timed, the FMA peak and that bandwidth are
measured again (``refine``): the peak used is the best seen so far, so a slow spell of a shared machine while the
limits were measured does not flatter the fractions.
``fraction = time_roofline / dwcy's median time``: 1.0 would be the limit itself. Bias, activation, the output's
allocation and the Python call are dwcy's costs and count against it. Issue 6 asks for at least 0.7.
"""

import argparse
import ctypes
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

FMA_CHAINS = 12  # independent accumulators: >= FMA latency (4) x pipes (2), and with the 2 constants <= 16 registers

C_SOURCE = r"""
#include <stddef.h>

#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif
#define LANES (VBYTES / 4)
typedef float vf __attribute__((vector_size(VBYTES)));

int lanes(void) { return LANES; }

/* acc = acc * a + b on 12 independent vector accumulators: FMAs when the target has them (-ffp-contract=fast,
   GCC's default for GNU C). The sum is returned so nothing is optimized away; it converges to b / (1 - a). */
float fma_loop(long iterations, float seed) {
    /* Starting values the compiler cannot know, so it cannot merge chains. */
    vf a = (vf){0} + 0.999999f, b = (vf){0} + 1e-6f, s0 = (vf){0} + seed;
    vf c0 = s0, c1 = s0 + 0.1f, c2 = s0 + 0.2f, c3 = s0 + 0.3f, c4 = s0 + 0.4f, c5 = s0 + 0.5f;
    vf c6 = s0 + 0.6f, c7 = s0 + 0.7f, c8 = s0 + 0.8f, c9 = s0 + 0.9f, c10 = s0 + 1.0f, c11 = s0 + 1.1f;
    for (long i = 0; i < iterations; i++) {
        c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
        c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
        c8 = c8 * a + b; c9 = c9 * a + b; c10 = c10 * a + b; c11 = c11 * a + b;
    }
    vf s = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11));
    float t = 0;
    for (int k = 0; k < LANES; k++) t += s[k];
    return t;
}

/* dst[i] = src[i], n floats (a multiple of 4 * LANES, both aligned to VBYTES), `passes` times. */
void copy_loop(float *restrict dst, const float *restrict src, size_t n, long passes) {
    for (long p = 0; p < passes; p++) {
        vf *d = (vf *)dst;
        const vf *s = (const vf *)src;
        for (size_t i = 0; i < n / LANES; i += 4) {
            vf x0 = s[i], x1 = s[i + 1], x2 = s[i + 2], x3 = s[i + 3];
            d[i] = x0; d[i + 1] = x1; d[i + 2] = x2; d[i + 3] = x3;
        }
        __asm__ volatile("" ::: "memory");  /* every pass really stores */
    }
}

/* The sum of src's n floats (as copy_loop), `passes` times, on 8 independent accumulators. */
float read_loop(const float *src, size_t n, long passes) {
    vf t = (vf){0};
    for (long p = 0; p < passes; p++) {
        const vf *s = (const vf *)src;
        vf a0 = (vf){0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (size_t i = 0; i < n / LANES; i += 8) {
            a0 += s[i]; a1 += s[i + 1]; a2 += s[i + 2]; a3 += s[i + 3];
            a4 += s[i + 4]; a5 += s[i + 5]; a6 += s[i + 6]; a7 += s[i + 7];
        }
        t += ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
        __asm__ volatile("" ::: "memory");
    }
    float r = 0;
    for (int k = 0; k < LANES; k++) r += t[k];
    return r;
}
"""

CFLAGS = ["-O2", "-march=native", "-fno-tree-loop-distribute-patterns", "-shared", "-fPIC"]


class CompilerMissing(RuntimeError):
    """No C compiler to build the probe loops with (set $CC)."""


class Level(NamedTuple):
    name: str  # "L1", "L2", "L3", "DRAM"
    capacity: int  # bytes a working set may take to live in it (DRAM: unbounded)
    working_set: int  # bytes of the two arrays of its copy loop
    copy_bandwidth: float  # bytes/s, read + written
    read_bandwidth: float  # bytes/s


class Limits(NamedTuple):
    fma_peak: float  # FP32 FLOP/s of one core
    lanes: int  # floats per vector of the probe (16: AVX-512)
    levels: tuple  # of Level, fastest first

    def level_for(self, nbytes):
        """The level a working set of ``nbytes`` lives in: the smallest that holds it."""
        return next(level for level in self.levels if nbytes <= level.capacity)

    def roofline(self, flops, nbytes, bandwidth=0.0):
        """``(seconds, what binds, level, bandwidth used)``: the roofline time of a call with this work. The memory
        side uses the copy bandwidth of the level that holds ``nbytes``, or ``bandwidth`` (one measured at this
        very working set, see :func:`refine`) where that is higher: the stricter roofline."""
        level = self.level_for(nbytes)
        bandwidth = max(level.copy_bandwidth, bandwidth)
        compute, memory = flops / self.fma_peak, nbytes / bandwidth
        return max(compute, memory), ("FMA" if compute >= memory else level.name), level, bandwidth

    def table(self):
        lines = [f"FP32 FMA peak, 1 core: {self.fma_peak / 1e9:.1f} GFLOP/s ({self.lanes} floats per vector)",
                 "| level | capacity | working set | copy GB/s | read GB/s |",
                 "| ----- | -------- | ----------- | --------- | --------- |"]
        for level in self.levels:
            capacity = "-" if math.isinf(level.capacity) else _size(level.capacity)
            lines.append(f"| {level.name} | {capacity} | {_size(level.working_set)} | "
                         f"{level.copy_bandwidth / 1e9:.1f} | {level.read_bandwidth / 1e9:.1f} |")
        return "\n".join(lines)


def _size(nbytes):
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


def cache_sizes():
    """``{1: L1d bytes, 2: L2 bytes, 3: L3 bytes}`` of cpu0 from sysfs; typical sizes where it says nothing."""
    sizes = {1: 32 << 10, 2: 1 << 20, 3: 32 << 20}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and level in sizes and text:
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
            sizes[level] = int(text.rstrip("KMG")) * scale
    return sizes


_library = None


def load_probe():
    """The compiled probe loops (ctypes), built once per process; raises :class:`CompilerMissing`."""
    global _library
    if _library is not None:
        return _library
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        raise CompilerMissing(f"no C compiler ({compiler!r} is not on PATH; set CC) to build the roofline probe")
    folder = Path(tempfile.mkdtemp(prefix="dwcy-roofline-"))
    source, library = folder / "probe.c", folder / "probe.so"
    source.write_text(C_SOURCE)
    command = compiler.split() + CFLAGS + [str(source), "-o", str(library)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        message = getattr(error, "stderr", "") or str(error)
        raise CompilerMissing(f"{' '.join(command)} failed: {message.strip()[:500]}") from None
    lib = ctypes.CDLL(str(library))
    lib.lanes.restype = ctypes.c_int
    lib.fma_loop.restype = ctypes.c_float
    lib.fma_loop.argtypes = [ctypes.c_long, ctypes.c_float]
    lib.copy_loop.restype = None
    lib.copy_loop.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
    lib.read_loop.restype = ctypes.c_float
    lib.read_loop.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
    _library = lib
    return lib


def _aligned(nfloats, alignment=64):
    """A float32 array of ``nfloats`` ones starting on an ``alignment``-byte boundary (its pages faulted in)."""
    raw = np.ones(nfloats + alignment // 4, np.float32)
    start = (-raw.ctypes.data % alignment) // 4
    return raw[start:start + nfloats]


def _best_rate(run, work, seconds, repeats):
    """The best of ``repeats`` timings of ``work`` units per second: each calls ``run(count)``, with ``count``
    calibrated so a call lasts about ``seconds``, after one untimed call."""
    count = 1
    run(count)
    while True:  # calibrate: double until a call takes a tenth of the target, then scale
        start = time.perf_counter()
        run(count)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 10 or count >= 1 << 40:
            break
        count *= 2
    count = max(1, round(count * seconds / max(elapsed, 1e-9)))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run(count)
        best = max(best, work * count / (time.perf_counter() - start))
    return best


def measure_fma_peak(seconds=0.05, repeats=7):
    """FP32 FLOP/s of one core: the best of ``repeats`` runs of the FMA loop of about ``seconds`` each."""
    lib = load_probe()
    return _best_rate(lambda iterations: lib.fma_loop(iterations, 0.5), 2 * lib.lanes() * FMA_CHAINS, seconds,
                      repeats)


def measure_bandwidth(working_set, seconds=0.05, repeats=7):
    """``(copy, read)`` bytes/s of one core on two float32 arrays of ``working_set`` bytes together."""
    lib = load_probe()
    n = max(working_set // 8 // 64 * 64, 64)  # floats per array, a multiple of 4 vectors of 16
    src, dst = _aligned(n), _aligned(n)
    copy = _best_rate(lambda passes: lib.copy_loop(dst.ctypes.data, src.ctypes.data, n, passes), 8 * n, seconds,
                      repeats)
    read = _best_rate(lambda passes: lib.read_loop(src.ctypes.data, n, passes), 4 * n, seconds, repeats)
    return copy, read


def refine(limits, working_set, seconds=0.02, repeats=5):
    """Measure again just before a layer is timed, on a machine whose speed drifts: returns ``(limits with
    fma_peak = the best of the old and a new measurement, copy bandwidth measured at the layer's own working set)``.
    The working set may straddle two levels (2.2 MB beside a 2 MiB L2): that bandwidth is what such a copy gets."""
    peak = measure_fma_peak(seconds, repeats)
    copy, _ = measure_bandwidth(working_set, seconds, repeats)
    return limits._replace(fma_peak=max(limits.fma_peak, peak)), copy


def measure_limits(seconds=0.05, repeats=7, max_working_set=None):
    """Measure :class:`Limits` (see the module's docstring). ``max_working_set`` (bytes) caps every level's arrays:
    only for a smoke test (e.g. ``pytest --benchmark-disable``), whose numbers then mean nothing."""
    lanes = load_probe().lanes()
    fma_peak = measure_fma_peak(seconds, repeats)
    caches = cache_sizes()
    plan = [("L1", caches[1], caches[1] // 2), ("L2", caches[2], caches[2] // 2),
            ("L3", caches[3], min(4 * caches[2], caches[3] // 2)),
            ("DRAM", math.inf, min(max(2 * caches[3], 64 << 20), 1 << 30))]
    levels = []
    for name, capacity, working_set in plan:
        if max_working_set:
            working_set = min(working_set, max_working_set)
        copy, read = measure_bandwidth(working_set, seconds, repeats)
        levels.append(Level(name, capacity, max(working_set // 8 // 64 * 64, 64) * 8, copy, read))
    return Limits(fma_peak, lanes, tuple(levels))


class LayerRoofline(NamedTuple):
    layer: str
    flops: int
    bytes: int
    level: str  # where its working set lives
    bound: str  # "FMA" or the level whose bandwidth binds
    fma_peak: float  # FLOP/s
    bandwidth: float  # bytes/s: the memory limit used
    roofline_s: float
    dwcy_s: float

    @property
    def fraction(self):
        return self.roofline_s / self.dwcy_s


def layer_roofline(limits, layer, batch, dwcy_seconds, bandwidth=0.0, dtype=np.float32):
    """The :class:`LayerRoofline` of ``layer`` (a ``dwcy._layers`` layer) at ``batch``, dwcy taking
    ``dwcy_seconds``; ``bandwidth``: as :meth:`Limits.roofline`'s."""
    flops, nbytes = layer.flops(batch), layer.min_bytes(batch, dtype)
    seconds, bound, level, bandwidth = limits.roofline(flops, nbytes, bandwidth)
    return LayerRoofline(layer.name, flops, nbytes, level.name, bound, limits.fma_peak, bandwidth, seconds,
                         dwcy_seconds)


def roofline_table(rows):
    lines = ["| layer | MFLOP | KiB moved | lives in | GFLOP/s peak | GB/s used | bound | roofline us | dwcy us | "
             "fraction |",
             "| ----- | ----- | --------- | -------- | ------------ | --------- | ----- | ----------- | ------- | "
             "-------- |"]
    for row in rows:
        lines.append(f"| {row.layer} | {row.flops / 1e6:.1f} | {row.bytes / 1024:.0f} | {row.level} | "
                     f"{row.fma_peak / 1e9:.1f} | {row.bandwidth / 1e9:.1f} | {row.bound} | "
                     f"{row.roofline_s * 1e6:.1f} | {row.dwcy_s * 1e6:.1f} | {row.fraction:.2f} |")
    fractions = [row.fraction for row in rows]
    if len(fractions) > 1:
        geometric_mean = math.exp(statistics.fmean(math.log(f) for f in fractions))
        lines.append(f"| geometric mean | | | | | | | | | {geometric_mean:.2f} |")
    return "\n".join(lines)


def time_median(call, seconds, min_calls=5):
    """Median seconds of ``call()`` over about ``seconds`` of calls, after one untimed call."""
    call()
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings: a first look")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    import dwcy
    from dwcy._layers import BENCHMARK_LAYERS

    try:
        limits = measure_limits(seconds=0.02 if args.quick else 0.05, repeats=3 if args.quick else 7)
    except CompilerMissing as error:
        print(f"cannot measure this machine's limits: {error}", file=sys.stderr)
        return 1
    print(limits.table())
    rows = []
    for layer in BENCHMARK_LAYERS["depthwise"]:
        inputs = layer.make_inputs(args.batch, np.float32)
        limits, bandwidth = refine(limits, layer.min_bytes(args.batch, np.float32))
        seconds = time_median(lambda: dwcy.depthwise_conv2d(*inputs, num_threads=1, **layer.keywords),
                              0.1 if args.quick else 0.5)
        rows.append(layer_roofline(limits, layer, args.batch, seconds, bandwidth))
    print(f"\nMobileNetV2 depthwise layers (3x3 'same', bias, ReLU6), batch {args.batch}, 1 thread, float32; "
          f"dwcy {dwcy.__version__} ({dwcy.config().get('simd_level', '?')}):")
    print(roofline_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
