# Shared by every kernel: OpenMP access that compiles without OpenMP, thread counts, activations.
#
# Included (not cimported) so that each per-SIMD-level module compiles its own copy.

import os

from libc.string cimport memcmp, memcpy, memset

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define DWCY_OPENMP 1
    #define DWCY_OPENMP_VERSION _OPENMP
    #else
    #define DWCY_OPENMP 0
    #define DWCY_OPENMP_VERSION 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_get_num_threads(void) { return 1; }
    #endif
    #if defined(__clang__)
    #define DWCY_COMPILER "clang " __clang_version__
    #define DWCY_OPENMP_RUNTIME "libomp (LLVM OpenMP)"
    #elif defined(__GNUC__)
    #define DWCY_COMPILER "gcc " __VERSION__
    #define DWCY_OPENMP_RUNTIME "libgomp (GNU OpenMP)"
    #elif defined(_MSC_VER)
    #define DWCY_COMPILER "msvc"
    #define DWCY_OPENMP_RUNTIME "vcomp (MSVC OpenMP)"
    #else
    #define DWCY_COMPILER "unknown"
    #define DWCY_OPENMP_RUNTIME "unknown"
    #endif
    /* Memory starting on a 64-byte boundary (a cache line, one vector): every buffer the kernels make. */
    #include <stdlib.h>
    #if defined(_MSC_VER)
    #include <malloc.h>
    static inline void *dwcy_malloc64(size_t size) { return _aligned_malloc(size ? size : 1, 64); }
    static inline void dwcy_free64(void *p) { _aligned_free(p); }
    #else
    static inline void *dwcy_malloc64(size_t size) {
        void *p = NULL;
        return posix_memalign(&p, 64, size ? size : 1) == 0 ? p : NULL;
    }
    static inline void dwcy_free64(void *p) { free(p); }
    #endif
    #ifndef DWCY_BUILD_FLAGS
    #define DWCY_BUILD_FLAGS ""
    #endif

    /* Flush subnormals to zero (FTZ: results; DAZ: inputs) in this thread, returning the state to restore. */
    #if defined(__SSE2__) || defined(_M_X64)
    #include <xmmintrin.h>
    #define DWCY_CAN_FLUSH 1
    static inline unsigned int dwcy_fpu_enter(int flush) {
        unsigned int saved = _mm_getcsr();
        if (flush) _mm_setcsr(saved | 0x8040u);  /* MXCSR bits 15 (FTZ) and 6 (DAZ) */
        return saved;
    }
    static inline void dwcy_fpu_exit(int flush, unsigned int saved) { if (flush) _mm_setcsr(saved); }
    #elif defined(__aarch64__)
    #define DWCY_CAN_FLUSH 1
    static inline unsigned int dwcy_fpu_enter(int flush) {
        unsigned long fpcr;
        __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
        if (flush) __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr | (1ul << 24)));  /* FZ */
        return (unsigned int)fpcr;
    }
    static inline void dwcy_fpu_exit(int flush, unsigned int saved) {
        if (flush) __asm__ __volatile__("msr fpcr, %0" : : "r"((unsigned long)saved));
    }
    #else
    #define DWCY_CAN_FLUSH 0
    static inline unsigned int dwcy_fpu_enter(int flush) { (void)flush; return 0; }
    static inline void dwcy_fpu_exit(int flush, unsigned int saved) { (void)flush; (void)saved; }
    #endif
    """
    bint DWCY_OPENMP
    int DWCY_OPENMP_VERSION
    const char *DWCY_COMPILER
    const char *DWCY_OPENMP_RUNTIME
    const char *DWCY_BUILD_FLAGS
    void *dwcy_malloc64(size_t size) noexcept nogil
    void dwcy_free64(void *p) noexcept nogil
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    bint DWCY_CAN_FLUSH
    unsigned int dwcy_fpu_enter(int flush) noexcept nogil
    void dwcy_fpu_exit(int flush, unsigned int saved) noexcept nogil

cdef extern from "microkernels.h":
    const char *DWCY_SIMD_LEVEL


def build_info():
    """What this extension was compiled with (for ``dwcy.show_config``)."""
    return {
        "simd_level": DWCY_SIMD_LEVEL.decode(),
        "compiler": DWCY_COMPILER.decode(),
        "flags": DWCY_BUILD_FLAGS.decode(),
        "openmp": bool(DWCY_OPENMP),
        "openmp_version": DWCY_OPENMP_VERSION,
        "openmp_runtime": DWCY_OPENMP_RUNTIME.decode() if DWCY_OPENMP else None,
        "flush_denormals": bool(DWCY_CAN_FLUSH),
    }


# GNU OpenMP cannot run a parallel region in a child made by fork() once the parent has started its
# thread pool: the child would wait forever for threads that were not copied. A child therefore runs
# every kernel in its own thread (the "spawn" and "forkserver" start methods keep their threads).
cdef bint _in_forked_child = False


def _after_fork_in_child():
    global _in_forked_child
    _in_forked_child = True


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def max_threads():
    """The thread count a call with ``num_threads=None`` would use (OpenMP's current default)."""
    return 1 if _in_forked_child else omp_get_max_threads()


cdef extern from "microkernels.h" nogil:
    int DWCY_MIN_WORK_PER_THREAD
    int DWCY_MIN_WORK_PER_WORKER
    int DWCY_DW_MADD_COST


cdef inline Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t multiple) noexcept nogil:
    """n rounded up to a multiple of ``multiple``."""
    return (n + multiple - 1) // multiple * multiple


cdef inline int _threads_for(int requested, Py_ssize_t work_items, double multiply_adds) noexcept nogil:
    """Threads for a parallel loop: the request (0: OpenMP's default) at most, never more than the work
    items; one (no parallel region) unless there are DWCY_MIN_WORK_PER_THREAD multiply-adds for each of two
    threads (starting and joining a team costs a microsecond or two: small layers run faster on one), and
    then no more than one per DWCY_MIN_WORK_PER_WORKER. A region starts and joins its whole team whatever
    the threads that work in it (_team), so once that is paid, the work is best spread over more of them."""
    if _in_forked_child or multiply_adds < 2.0 * DWCY_MIN_WORK_PER_THREAD:
        return 1
    cdef int n = requested if requested > 0 else omp_get_max_threads()
    if n > work_items:
        n = <int>work_items
    if n > multiply_adds / DWCY_MIN_WORK_PER_WORKER:
        n = <int>(multiply_adds / DWCY_MIN_WORK_PER_WORKER)
    return n if n > 0 else 1


cdef inline int _team(int requested, int workers) noexcept nogil:
    """The OpenMP team of a parallel region whose work takes ``workers`` threads (_threads_for): every
    thread the call may use, the request (0: OpenMP's default) up to OpenMP's default count, however few
    of them the work needs (the others wait at the region's end). GNU OpenMP ends the pool threads a
    smaller team leaves out and starts new ones for a larger team (tens of microseconds each): calls
    whose teams varied in size with their work (a network's layers) paid for that at every switch."""
    cdef int default = omp_get_max_threads()
    cdef int team = requested if 0 < requested < default else default
    return max(team, workers)


cdef inline Py_ssize_t _share(Py_ssize_t items, int workers, int thread) noexcept nogil:
    """Inside a parallel region: where the share of work items [0, items) of team member ``thread``
    begins, the first ``workers`` members (fewer if the team is smaller) taking even contiguous shares,
    as schedule(static) does, the others none. Member t runs [_share(.., t), _share(.., t + 1))."""
    cdef int active = min(workers, omp_get_num_threads())
    return min(thread, active) * items // active
