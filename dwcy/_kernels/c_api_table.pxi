# The C-level API of kernels.pxd as a table of function pointers, one per SIMD level: each level module
# fills one with its own functions (level.pxi) and exports it in a capsule; dwcy.kernels copies the table
# of the level it chose at import and forwards every call through it. (geometry_init, the same at every
# level, is dwcy.kernels' own.) Plans hold weights packed for one level's tiles: made and run by one table.

ctypedef struct KernelTable:
    size_t size  # sizeof(KernelTable) in the module that filled it: a stale build of another layout is refused
    int (*depthwise_f32)(const float *, const float *, const float *, float *, const DwGeometry *,
                         int) noexcept nogil
    int (*depthwise_f64)(const double *, const double *, const double *, double *, const DwGeometry *,
                         int) noexcept nogil
    int (*pointwise_f32)(const float *, const float *, const float *, float *, Py_ssize_t, Py_ssize_t,
                         Py_ssize_t, int, int) noexcept nogil
    int (*pointwise_f64)(const double *, const double *, const double *, double *, Py_ssize_t, Py_ssize_t,
                         Py_ssize_t, int, int) noexcept nogil
    int (*separable_f32)(const float *, const float *, const float *, const float *, const float *, float *,
                         const DwGeometry *, Py_ssize_t, int, int) noexcept nogil
    int (*separable_f64)(const double *, const double *, const double *, const double *, const double *,
                         double *, const DwGeometry *, Py_ssize_t, int, int) noexcept nogil
    Plan *(*depthwise_plan_f32)(const float *, const float *, const DwGeometry *) noexcept nogil
    Plan *(*depthwise_plan_f64)(const double *, const double *, const DwGeometry *) noexcept nogil
    int (*depthwise_run_f32)(const Plan *, const float *, float *, const DwGeometry *, int) noexcept nogil
    int (*depthwise_run_f64)(const Plan *, const double *, double *, const DwGeometry *, int) noexcept nogil
    Plan *(*pointwise_plan_f32)(const float *, const float *, Py_ssize_t, Py_ssize_t) noexcept nogil
    Plan *(*pointwise_plan_f64)(const double *, const double *, Py_ssize_t, Py_ssize_t) noexcept nogil
    int (*pointwise_run_f32)(const Plan *, const float *, float *, Py_ssize_t, int, int) noexcept nogil
    int (*pointwise_run_f64)(const Plan *, const double *, double *, Py_ssize_t, int, int) noexcept nogil
    Plan *(*separable_plan_f32)(const float *, const float *, const float *, const float *, const DwGeometry *,
                                Py_ssize_t) noexcept nogil
    Plan *(*separable_plan_f64)(const double *, const double *, const double *, const double *,
                                const DwGeometry *, Py_ssize_t) noexcept nogil
    int (*separable_run_f32)(const Plan *, const float *, float *, const DwGeometry *, int, int) noexcept nogil
    int (*separable_run_f64)(const Plan *, const double *, double *, const DwGeometry *, int, int) noexcept nogil
    void (*plan_free)(Plan *) noexcept nogil

# The name of the capsule a level module exports its table in (its attribute c_api).
cdef const char *KERNEL_TABLE_CAPSULE = "dwcy.kernels.KernelTable"
