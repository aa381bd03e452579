# The C-level API declared in dwcy/kernels.pxd, as one SIMD level implements it: plain-typed wrappers of the
# fused-type kernels, and plans (weights copied or packed once, run many times). A plan keeps the depthwise
# weights as given (each call packs them per thread, at the phase of its input: depthwise.pxi's _dw_phase),
# the pointwise weights packed. dwcy.kernels forwards to the level it
# chose (c_api_table.pxi) and computes geometry_init itself. Nothing is checked here: see kernels.pxd.

cdef int depthwise_f32(const float *x, const float *weight, const float *bias, float *y, const DwGeometry *g,
                       int num_threads) noexcept nogil:
    return _dw_run(x, weight, bias, y, g, num_threads)


cdef int depthwise_f64(const double *x, const double *weight, const double *bias, double *y,
                       const DwGeometry *g, int num_threads) noexcept nogil:
    return _dw_run(x, weight, bias, y, g, num_threads)


cdef int pointwise_f32(const float *x, const float *weight, const float *bias, float *y, Py_ssize_t pixels,
                       Py_ssize_t cin, Py_ssize_t cout, int activation, int num_threads) noexcept nogil:
    return _pw_run(x, weight, bias, y, pixels, cin, cout, activation, num_threads)


cdef int pointwise_f64(const double *x, const double *weight, const double *bias, double *y,
                       Py_ssize_t pixels, Py_ssize_t cin, Py_ssize_t cout, int activation,
                       int num_threads) noexcept nogil:
    return _pw_run(x, weight, bias, y, pixels, cin, cout, activation, num_threads)


cdef int separable_f32(const float *x, const float *dw_weight, const float *dw_bias, const float *pw_weight,
                       const float *pw_bias, float *y, const DwGeometry *g, Py_ssize_t cout, int activation,
                       int num_threads) noexcept nogil:
    return _sep_run(x, dw_weight, dw_bias, pw_weight, pw_bias, y, g, cout, activation, num_threads)


cdef int separable_f64(const double *x, const double *dw_weight, const double *dw_bias,
                       const double *pw_weight, const double *pw_bias, double *y, const DwGeometry *g,
                       Py_ssize_t cout, int activation, int num_threads) noexcept nogil:
    return _sep_run(x, dw_weight, dw_bias, pw_weight, pw_bias, y, g, cout, activation, num_threads)


# ------------------------------------------------------------------------------------------------ plans

cdef inline Py_ssize_t _plan_dw_weights(const DwGeometry *g) noexcept nogil:
    """Elements of a depthwise weight (KH, KW, C*M)."""
    return g.kh * g.kw * g.c * g.m


cdef Plan *_plan_new(const DwGeometry *g, Py_ssize_t cin, Py_ssize_t cout, int itemsize) noexcept nogil:
    """One allocation: the Plan, then (64-byte aligned) the depthwise weights and bias, and the packed
    pointwise weights."""
    cdef int lanes = DWCY_LANES_F32 if itemsize == 4 else DWCY_LANES_F64
    cdef Py_ssize_t header = _round_up(sizeof(Plan), 64)
    cdef Py_ssize_t dw_elements = _round_up(_plan_dw_weights(g) + g.c * g.m, lanes) if g != NULL else 0
    cdef Py_ssize_t pw_elements = _gemm_packed_size(cin, cout, lanes) if cout > 0 else 0
    cdef Plan *plan = <Plan *>dwcy_malloc64(header + (dw_elements + pw_elements) * itemsize)
    if plan == NULL:
        return NULL
    memset(plan, 0, sizeof(Plan))
    plan.itemsize = itemsize
    cdef char *data = <char *>plan + header
    if g != NULL:
        plan.depthwise_shape.kh, plan.depthwise_shape.kw = g.kh, g.kw
        plan.depthwise_shape.c, plan.depthwise_shape.m = g.c, g.m
        plan.depthwise = data
    plan.pointwise.panels_data = data + dw_elements * itemsize  # filled by _gemm_pack
    return plan


cdef Plan *_plan(const floating *dw_weight, const floating *dw_bias, const floating *pw_weight,
                 const floating *pw_bias, const DwGeometry *g, Py_ssize_t cout) noexcept nogil:
    """A plan of a depthwise (g != NULL), a pointwise (cout > 0) stage or both."""
    cdef Py_ssize_t cin = g.c * g.m if g != NULL else 0
    cdef Plan *plan = _plan_new(g, cin, cout, sizeof(floating))
    if plan == NULL:
        return NULL
    cdef floating *dw = <floating *>plan.depthwise
    cdef Py_ssize_t weights
    if g != NULL:  # the weights, then the bias (zeros without one)
        weights = _plan_dw_weights(g)
        memcpy(dw, dw_weight, weights * sizeof(floating))
        if dw_bias != NULL:
            memcpy(dw + weights, dw_bias, g.c * g.m * sizeof(floating))
        else:
            memset(dw + weights, 0, g.c * g.m * sizeof(floating))
    if cout > 0:
        _gemm_pack(pw_weight, pw_bias, cin, cout, <floating *>plan.pointwise.panels_data, &plan.pointwise)
    return plan


cdef Plan *_pointwise_plan(const floating *weight, const floating *bias, Py_ssize_t cin,
                           Py_ssize_t cout) noexcept nogil:
    cdef Plan *plan = _plan_new(NULL, cin, cout, sizeof(floating))
    if plan != NULL:
        _gemm_pack(weight, bias, cin, cout, <floating *>plan.pointwise.panels_data, &plan.pointwise)
    return plan


cdef Plan *depthwise_plan_f32(const float *weight, const float *bias, const DwGeometry *g) noexcept nogil:
    return _plan(weight, bias, <const float *>NULL, <const float *>NULL, g, 0)


cdef Plan *depthwise_plan_f64(const double *weight, const double *bias, const DwGeometry *g) noexcept nogil:
    return _plan(weight, bias, <const double *>NULL, <const double *>NULL, g, 0)


cdef int depthwise_run_f32(const Plan *plan, const float *x, float *y, const DwGeometry *g,
                           int num_threads) noexcept nogil:
    cdef const float *weight = <const float *>plan.depthwise
    return _dw_run(x, weight, weight + _plan_dw_weights(g), y, g, num_threads)


cdef int depthwise_run_f64(const Plan *plan, const double *x, double *y, const DwGeometry *g,
                           int num_threads) noexcept nogil:
    cdef const double *weight = <const double *>plan.depthwise
    return _dw_run(x, weight, weight + _plan_dw_weights(g), y, g, num_threads)


cdef Plan *pointwise_plan_f32(const float *weight, const float *bias, Py_ssize_t cin,
                              Py_ssize_t cout) noexcept nogil:
    return _pointwise_plan(weight, bias, cin, cout)


cdef Plan *pointwise_plan_f64(const double *weight, const double *bias, Py_ssize_t cin,
                              Py_ssize_t cout) noexcept nogil:
    return _pointwise_plan(weight, bias, cin, cout)


cdef int pointwise_run_f32(const Plan *plan, const float *x, float *y, Py_ssize_t pixels, int activation,
                           int num_threads) noexcept nogil:
    return _pw_run_packed(&plan.pointwise, x, y, pixels, activation, num_threads)


cdef int pointwise_run_f64(const Plan *plan, const double *x, double *y, Py_ssize_t pixels, int activation,
                           int num_threads) noexcept nogil:
    return _pw_run_packed(&plan.pointwise, x, y, pixels, activation, num_threads)


cdef Plan *separable_plan_f32(const float *dw_weight, const float *dw_bias, const float *pw_weight,
                              const float *pw_bias, const DwGeometry *g, Py_ssize_t cout) noexcept nogil:
    return _plan(dw_weight, dw_bias, pw_weight, pw_bias, g, cout)


cdef Plan *separable_plan_f64(const double *dw_weight, const double *dw_bias, const double *pw_weight,
                              const double *pw_bias, const DwGeometry *g, Py_ssize_t cout) noexcept nogil:
    return _plan(dw_weight, dw_bias, pw_weight, pw_bias, g, cout)


cdef int separable_run_f32(const Plan *plan, const float *x, float *y, const DwGeometry *g, int activation,
                           int num_threads) noexcept nogil:
    cdef const float *weight = <const float *>plan.depthwise
    return _sep_run_packed(x, weight, weight + _plan_dw_weights(g), &plan.pointwise, y, g, activation, num_threads)


cdef int separable_run_f64(const Plan *plan, const double *x, double *y, const DwGeometry *g, int activation,
                           int num_threads) noexcept nogil:
    cdef const double *weight = <const double *>plan.depthwise
    return _sep_run_packed(x, weight, weight + _plan_dw_weights(g), &plan.pointwise, y, g, activation,
                           num_threads)


cdef void plan_free(Plan *plan) noexcept nogil:
    dwcy_free64(plan)

