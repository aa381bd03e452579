"""dwcy's kernels as C functions, for other Cython code: ``from dwcy.kernels cimport ...``.

Nothing here is checked. The Python API (dwcy.depthwise_conv2d, ...) validates its arguments; these functions
trust theirs, as BLAS does. The caller guarantees:

* every array is C-contiguous (NHWC for images), aligned to its element type, of the function's dtype
  (``_f32``: float, ``_f64``: double), and exactly as large as the geometry says;
* outputs share no memory with inputs;
* a ``DwGeometry`` is filled by ``geometry_init`` (or holds the same values it would), and a plan is used
  with geometries of the kernel size, channels and multiplier it was made for;
* ``bias`` pointers may be NULL (no bias); ``activation`` is one of the ``ACT_*`` codes.

Functions returning int return 0, or -1 when memory for packed weights or per-thread buffers could not be
allocated (nothing is written then); plan functions return NULL then.

Threading: ``num_threads`` is the most threads a call uses; 0 means OpenMP's current default
(``OMP_NUM_THREADS``, threadpoolctl limits). Small work uses fewer threads by itself, and ``1`` runs the
whole call in the caller's thread with no OpenMP region at all: the right choice inside your own parallel
loop. Results are bitwise identical whatever the thread count. All functions are ``noexcept nogil``: call
them with or without the GIL, from any thread. In a child process made by fork(), calls run single-threaded
(GNU OpenMP cannot run a parallel region there once the parent has used one).

Pack once, run many (what XNNPACK's create/setup/run and oneDNN's reorders give): ``*_plan_*`` packs the
pointwise weights and biases into the kernels' layout and copies the depthwise ones (the caller's weights may
be freed; the depthwise ones are packed per call, as depthwise_conv2d packs them, for the place in a cache
line where that call's input starts), ``*_run_*`` runs on any input with the plan, ``plan_free`` releases it. A plan is read-only during runs: many threads may run
the same plan at once.

Example (a separable block in a nogil loop, see examples/extending/)::

    from dwcy.kernels cimport DwGeometry, Plan, geometry_init, separable_plan_f32, separable_run_f32, \\
        plan_free, ACT_RELU6, ACT_NONE

    cdef DwGeometry g
    geometry_init(&g, n, h, w, c, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, ACT_RELU6)   # 3x3, stride 1, pad 1
    cdef Plan *plan = separable_plan_f32(dw_weight, dw_bias, pw_weight, pw_bias, &g, cout)
    with nogil:
        for i in range(count):
            separable_run_f32(plan, images[i], outputs[i], &g, ACT_NONE, 1)
    plan_free(plan)
"""

cdef extern from "dwcy_activations.h" nogil:  # in dwcy.get_include()
    # Activation codes, as the index of the name in dwcy.ACTIVATIONS.
    enum:
        ACT_NONE "DWCY_ACT_NONE"
        ACT_RELU "DWCY_ACT_RELU"
        ACT_RELU6 "DWCY_ACT_RELU6"
        ACT_HARDSWISH "DWCY_ACT_HARDSWISH"


ctypedef struct DwGeometry:
    # The shape of a depthwise convolution (of the depthwise stage of a separable block).
    Py_ssize_t n, h, w, c, m          # input (N, H, W, C) and channel multiplier M: C*M output channels
    Py_ssize_t kh, kw                 # kernel height and width
    Py_ssize_t sh, sw, dh, dw         # stride and dilation, height and width
    Py_ssize_t pt, pl                 # zero padding at the top and on the left
    Py_ssize_t oh, ow                 # output height and width (geometry_init computes them)
    int activation                    # ACT_* after the bias


ctypedef struct GemmWeights:
    # Pointwise weights and bias packed for the kernels (part of a Plan; its fields are the kernels' own).
    Py_ssize_t k, n                   # Cin, Cout
    Py_ssize_t nr, panels             # panel width and count
    Py_ssize_t kc                     # the length of a block of K
    const void *panels_data           # the packed panels
    const void *bias                  # the padded bias


ctypedef struct Plan:
    # Packed weights of one operation: made by a *_plan_* function, freed by plan_free.
    int itemsize                      # 4 (float32) or 8 (float64)
    DwGeometry depthwise_shape        # kh, kw, c, m of the depthwise stage (all 0 without one)
    const void *depthwise             # the depthwise weights and bias (copies), or NULL
    GemmWeights pointwise             # the packed pointwise weights (k == 0 without a pointwise stage)


cdef int geometry_init(DwGeometry *g, Py_ssize_t n, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c, Py_ssize_t m,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t stride_h, Py_ssize_t stride_w,
                       Py_ssize_t dilation_h, Py_ssize_t dilation_w, Py_ssize_t pad_top, Py_ssize_t pad_bottom,
                       Py_ssize_t pad_left, Py_ssize_t pad_right, int activation) noexcept nogil
    # Fill g, computing the output size; -1 (g untouched) if a size is < 1 or a padding < 0.

cdef int depthwise_f32(const float *x, const float *weight, const float *bias, float *y, const DwGeometry *g,
                       int num_threads) noexcept nogil
cdef int depthwise_f64(const double *x, const double *weight, const double *bias, double *y,
                       const DwGeometry *g, int num_threads) noexcept nogil
    # y (N, OH, OW, C*M) = depthwise(x (N, H, W, C), weight (KH, KW, C*M), bias (C*M,) or NULL)

cdef int pointwise_f32(const float *x, const float *weight, const float *bias, float *y, Py_ssize_t pixels,
                       Py_ssize_t cin, Py_ssize_t cout, int activation, int num_threads) noexcept nogil
cdef int pointwise_f64(const double *x, const double *weight, const double *bias, double *y,
                       Py_ssize_t pixels, Py_ssize_t cin, Py_ssize_t cout, int activation,
                       int num_threads) noexcept nogil
    # y (pixels, cout) = activation(x (pixels, cin) @ weight (cin, cout) + bias (cout,) or NULL)

cdef int separable_f32(const float *x, const float *dw_weight, const float *dw_bias, const float *pw_weight,
                       const float *pw_bias, float *y, const DwGeometry *g, Py_ssize_t cout, int activation,
                       int num_threads) noexcept nogil
cdef int separable_f64(const double *x, const double *dw_weight, const double *dw_bias,
                       const double *pw_weight, const double *pw_bias, double *y, const DwGeometry *g,
                       Py_ssize_t cout, int activation, int num_threads) noexcept nogil
    # y (N, OH, OW, cout): depthwise (g, g.activation), then pointwise (C*M -> cout, activation), fused

cdef Plan *depthwise_plan_f32(const float *weight, const float *bias, const DwGeometry *g) noexcept nogil
cdef Plan *depthwise_plan_f64(const double *weight, const double *bias, const DwGeometry *g) noexcept nogil
cdef int depthwise_run_f32(const Plan *plan, const float *x, float *y, const DwGeometry *g,
                           int num_threads) noexcept nogil
cdef int depthwise_run_f64(const Plan *plan, const double *x, double *y, const DwGeometry *g,
                           int num_threads) noexcept nogil

cdef Plan *pointwise_plan_f32(const float *weight, const float *bias, Py_ssize_t cin,
                              Py_ssize_t cout) noexcept nogil
cdef Plan *pointwise_plan_f64(const double *weight, const double *bias, Py_ssize_t cin,
                              Py_ssize_t cout) noexcept nogil
cdef int pointwise_run_f32(const Plan *plan, const float *x, float *y, Py_ssize_t pixels, int activation,
                           int num_threads) noexcept nogil
cdef int pointwise_run_f64(const Plan *plan, const double *x, double *y, Py_ssize_t pixels, int activation,
                           int num_threads) noexcept nogil

cdef Plan *separable_plan_f32(const float *dw_weight, const float *dw_bias, const float *pw_weight,
                              const float *pw_bias, const DwGeometry *g, Py_ssize_t cout) noexcept nogil
cdef Plan *separable_plan_f64(const double *dw_weight, const double *dw_bias, const double *pw_weight,
                              const double *pw_bias, const DwGeometry *g, Py_ssize_t cout) noexcept nogil
cdef int separable_run_f32(const Plan *plan, const float *x, float *y, const DwGeometry *g, int activation,
                           int num_threads) noexcept nogil
cdef int separable_run_f64(const Plan *plan, const double *x, double *y, const DwGeometry *g, int activation,
                           int num_threads) noexcept nogil

cdef void plan_free(Plan *plan) noexcept nogil
