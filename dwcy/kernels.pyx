"""The kernels of the best SIMD level this CPU runs, chosen at import.

The kernel source is compiled once per SIMD level into dwcy._kernels.baseline, .avx2 and .avx512 (setup.py;
a level the compiler could not build is absent). Importing this module picks the best level that was built
and that this CPU and its operating system support, or the one the environment variable ``DWCY_SIMD``
names (``baseline``, ``avx2`` or ``avx512``: for tests and comparisons; a level that was not built or that
the CPU cannot run is an error), then

* re-exports that level's Python entry points (depthwise, pointwise, separable, build_info, max_threads,
  aligned_empty, recycling, depthwise_fast, pointwise_fast, separable_fast, prepare, im2col),
  which dwcy._api calls (recycling: the tests, and users who want the kept output buffers let go), and
* forwards the C-level API of kernels.pxd (``from dwcy.kernels cimport ...``) to that level's functions
  through a table of function pointers copied at import, so other Cython code runs the same level.

This module is compiled for the baseline and holds no kernel. The level stays the same for the life of the
process: a plan packs weights for one level's register tiles.
"""

import importlib
import importlib.util
import os

from cpython.pycapsule cimport PyCapsule_GetPointer

include "_kernels/c_api_table.pxi"

cdef extern from *:
    """
    /* Does this CPU, and its operating system (which must save the wider registers), run a SIMD level?
       The features are those of each level's flags in setup.py (SIMD_LEVELS). */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    /* __builtin_cpu_supports checks the operating system's support too (XGETBV). */
    static int dwcy_cpu_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    static int dwcy_cpu_avx512(void) {
        __builtin_cpu_init();
        return dwcy_cpu_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    }
    #elif defined(_MSC_VER) && defined(_M_X64)
    #include <intrin.h>
    /* Are all the bits of mask set in register reg (0-3: EAX-EDX) of CPUID leaf 1 or 7? */
    static int dwcy_cpuid_has(int leaf, int reg, unsigned int mask) {
        int r[4];
        __cpuid(r, 0);
        if (r[0] < leaf) return 0;
        __cpuidex(r, leaf, 0);
        return ((unsigned int)r[reg] & mask) == mask;
    }
    /* Does the operating system save these register states (XCR0: 0x6 AVX, 0xe6 AVX-512)? */
    static int dwcy_os_saves(unsigned long long mask) {
        return dwcy_cpuid_has(1, 2, 1u << 27) && (_xgetbv(0) & mask) == mask;  /* OSXSAVE, then XCR0 */
    }
    static int dwcy_cpu_avx2(void) {
        return dwcy_os_saves(0x6) && dwcy_cpuid_has(1, 2, (1u << 28) | (1u << 12))  /* AVX, FMA */
            && dwcy_cpuid_has(7, 1, 1u << 5);                                       /* AVX2 */
    }
    static int dwcy_cpu_avx512(void) {
        return dwcy_cpu_avx2() && dwcy_os_saves(0xe6)  /* F, DQ, BW, VL */
            && dwcy_cpuid_has(7, 1, (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31));
    }
    #else
    static int dwcy_cpu_avx2(void) { return 0; }  /* not x86-64: the baseline alone */
    static int dwcy_cpu_avx512(void) { return 0; }
    #endif
    """
    int dwcy_cpu_avx2() noexcept nogil
    int dwcy_cpu_avx512() noexcept nogil


#: The SIMD levels, from the baseline to the best, and what each needs of the CPU.
LEVELS = ("baseline", "avx2", "avx512")
FEATURES = {"baseline": "none", "avx2": "AVX2 and FMA", "avx512": "AVX-512 F, BW, DQ and VL, AVX2 and FMA"}


def cpu_supports(level):
    """Whether this CPU, and its operating system, run the code of a SIMD level (one of LEVELS)."""
    if level not in LEVELS:
        raise ValueError(f"unknown SIMD level {level!r}: expected one of {', '.join(LEVELS)}")
    return level == "baseline" or bool(dwcy_cpu_avx2() if level == "avx2" else dwcy_cpu_avx512())


#: The levels this installation has a kernel module of, and those of them this CPU runs (DWCY_SIMD's choice).
built = tuple(level for level in LEVELS if importlib.util.find_spec("dwcy._kernels." + level) is not None)
usable = tuple(level for level in built if cpu_supports(level))


def _refusal(level, built=built, usable=usable):
    """Why a SIMD level cannot be used here, or None when it can."""
    if level not in LEVELS:
        return f"unknown SIMD level {level!r}: expected one of {', '.join(LEVELS)}"
    if level not in built:
        return (f"this dwcy was built without the {level} kernels (the compiler did not take their flags); "
                f"it has {', '.join(built) or 'none'}")
    if level not in usable:
        return f"this CPU does not support {level} ({FEATURES[level]}); it runs {', '.join(usable) or 'none'}"
    return None


def choose(requested, built=built, usable=usable):
    """The level to use: ``requested`` (DWCY_SIMD's value), or the best usable one when it is empty.

    Raises RuntimeError naming the variable when the requested level cannot be used.
    """
    requested = requested.strip().lower()
    if not requested:
        if not usable:
            raise ImportError("dwcy has no kernel module: the package was not built (pip install .)")
        return usable[len(usable) - 1]  # the best (wraparound is off: no [-1])
    reason = _refusal(requested, built, usable)
    if reason is not None:
        raise RuntimeError(f"DWCY_SIMD={requested}: {reason}")
    return requested


def load(level):
    """The kernel module of a SIMD level (dwcy._kernels.<level>), for tests and comparisons: its depthwise,
    pointwise, separable, build_info and max_threads are those of this module, at that level. Raises
    RuntimeError for a level that was not built or that this CPU cannot run."""
    reason = _refusal(level)
    if reason is not None:
        raise RuntimeError(reason)
    return importlib.import_module("dwcy._kernels." + level)


#: The SIMD level in use.
level = choose(os.environ.get("DWCY_SIMD", ""))
_module = load(level)
depthwise = _module.depthwise
pointwise = _module.pointwise
separable = _module.separable
build_info = _module.build_info
max_threads = _module.max_threads
aligned_empty = _module.aligned_empty
recycling = _module.recycling
im2col = _module.im2col
depthwise_fast = _module.depthwise_fast
pointwise_fast = _module.pointwise_fast
prepare = _module.prepare
separable_fast = _module.separable_fast


# ---------------------------------------------------------------------------- the C-level API of kernels.pxd

cdef KernelTable _table


cdef _use_table(object module):
    global _table
    cdef const KernelTable *table = <const KernelTable *>PyCapsule_GetPointer(module.c_api, KERNEL_TABLE_CAPSULE)
    if table.size != sizeof(KernelTable):
        raise ImportError(f"{module.__name__} is a stale build of another version of dwcy: rebuild dwcy")
    _table = table[0]


_use_table(_module)


# geometry_init is the same at every level: computed here.
cdef int geometry_init(DwGeometry *g, Py_ssize_t n, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c, Py_ssize_t m,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t stride_h, Py_ssize_t stride_w,
                       Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t pad_top, Py_ssize_t pad_bottom,
                       Py_ssize_t pad_left, Py_ssize_t pad_right, int activation) noexcept nogil:
    # The output-size rule of dwcy._args.output_size, in C for callers without Python.
    cdef Py_ssize_t span_h = dilation_h * (kh - 1) + 1, span_w = dilation_w * (kw - 1) + 1
    if (min(n, h, w, c, m) < 1 or min(kh, kw, stride_h, stride_w, dilation_h, dilation_w) < 1
            or min(pad_top, pad_bottom, pad_left, pad_right) < 0 or not ACT_NONE <= activation <= ACT_HARDSWISH
            or h + pad_top + pad_bottom < span_h or w + pad_left + pad_right < span_w):
        return -1
    g.n, g.h, g.w, g.c, g.m = n, h, w, c, m
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw = kh, kw, stride_h, stride_w, dilation_h, dilation_w
    g.pt, g.pl = pad_top, pad_left
    g.oh = (h + pad_top + pad_bottom - span_h) // stride_h + 1
    g.ow = (w + pad_left + pad_right - span_w) // stride_w + 1
    g.activation = activation
    return 0


# The rest of kernels.pxd: the chosen level's functions.

cdef int depthwise_f32(const float *x, const float *weight, const float *bias, float *y, const DwGeometry *g,
                       int num_threads) noexcept nogil:
    return _table.depthwise_f32(x, weight, bias, y, g, num_threads)


cdef int depthwise_f64(const double *x, const double *weight, const double *bias, double *y, const DwGeometry *g,
                       int num_threads) noexcept nogil:
    return _table.depthwise_f64(x, weight, bias, y, g, num_threads)


cdef int pointwise_f32(const float *x, const float *weight, const float *bias, float *y, Py_ssize_t pixels,
                       Py_ssize_t cin, Py_ssize_t cout, int activation, int num_threads) noexcept nogil:
    return _table.pointwise_f32(x, weight, bias, y, pixels, cin, cout, activation, num_threads)


cdef int pointwise_f64(const double *x, const double *weight, const double *bias, double *y, Py_ssize_t pixels,
                       Py_ssize_t cin, Py_ssize_t cout, int activation, int num_threads) noexcept nogil:
    return _table.pointwise_f64(x, weight, bias, y, pixels, cin, cout, activation, num_threads)


cdef int separable_f32(const float *x, const float *dw_weight, const float *dw_bias, const float *pw_weight,
                       const float *pw_bias, float *y, const DwGeometry *g, Py_ssize_t cout, int activation,
                       int num_threads) noexcept nogil:
    return _table.separable_f32(x, dw_weight, dw_bias, pw_weight, pw_bias, y, g, cout, activation, num_threads)


cdef int separable_f64(const double *x, const double *dw_weight, const double *dw_bias, const double *pw_weight,
                       const double *pw_bias, double *y, const DwGeometry *g, Py_ssize_t cout, int activation,
                       int num_threads) noexcept nogil:
    return _table.separable_f64(x, dw_weight, dw_bias, pw_weight, pw_bias, y, g, cout, activation, num_threads)


cdef Plan *depthwise_plan_f32(const float *weight, const float *bias, const DwGeometry *g) noexcept nogil:
    return _table.depthwise_plan_f32(weight, bias, g)


cdef Plan *depthwise_plan_f64(const double *weight, const double *bias, const DwGeometry *g) noexcept nogil:
    return _table.depthwise_plan_f64(weight, bias, g)


cdef int depthwise_run_f32(const Plan *plan, const float *x, float *y, const DwGeometry *g,
                           int num_threads) noexcept nogil:
    return _table.depthwise_run_f32(plan, x, y, g, num_threads)


cdef int depthwise_run_f64(const Plan *plan, const double *x, double *y, const DwGeometry *g,
                           int num_threads) noexcept nogil:
    return _table.depthwise_run_f64(plan, x, y, g, num_threads)


cdef Plan *pointwise_plan_f32(const float *weight, const float *bias, Py_ssize_t cin,
                              Py_ssize_t cout) noexcept nogil:
    return _table.pointwise_plan_f32(weight, bias, cin, cout)


cdef Plan *pointwise_plan_f64(const double *weight, const double *bias, Py_ssize_t cin,
                              Py_ssize_t cout) noexcept nogil:
    return _table.pointwise_plan_f64(weight, bias, cin, cout)


cdef int pointwise_run_f32(const Plan *plan, const float *x, float *y, Py_ssize_t pixels, int activation,
                           int num_threads) noexcept nogil:
    return _table.pointwise_run_f32(plan, x, y, pixels, activation, num_threads)


cdef int pointwise_run_f64(const Plan *plan, const double *x, double *y, Py_ssize_t pixels, int activation,
                           int num_threads) noexcept nogil:
    return _table.pointwise_run_f64(plan, x, y, pixels, activation, num_threads)


cdef Plan *separable_plan_f32(const float *dw_weight, const float *dw_bias, const float *pw_weight,
                              const float *pw_bias, const DwGeometry *g, Py_ssize_t cout) noexcept nogil:
    return _table.separable_plan_f32(dw_weight, dw_bias, pw_weight, pw_bias, g, cout)


cdef Plan *separable_plan_f64(const double *dw_weight, const double *dw_bias, const double *pw_weight,
                              const double *pw_bias, const DwGeometry *g, Py_ssize_t cout) noexcept nogil:
    return _table.separable_plan_f64(dw_weight, dw_bias, pw_weight, pw_bias, g, cout)


cdef int separable_run_f32(const Plan *plan, const float *x, float *y, const DwGeometry *g, int activation,
                           int num_threads) noexcept nogil:
    return _table.separable_run_f32(plan, x, y, g, activation, num_threads)


cdef int separable_run_f64(const Plan *plan, const double *x, double *y, const DwGeometry *g, int activation,
                           int num_threads) noexcept nogil:
    return _table.separable_run_f64(plan, x, y, g, activation, num_threads)


cdef void plan_free(Plan *plan) noexcept nogil:
    _table.plan_free(plan)
