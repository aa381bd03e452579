# cython: language_level=3, boundscheck=False, wraparound=False
"""Every function of dwcy.kernels' C-level API, reached through cimport as a downstream package would,
wrapped for tests/test_c_api.py. Arrays come in checked by the test; nothing is checked here."""

from cython cimport floating
from dwcy.kernels cimport *


cdef int _init(DwGeometry *g, tuple a) except -2:
    """geometry_init(g, *a), a = (n, h, w, c, m, kh, kw, sh, sw, dh, dw, pad_top, pad_bottom, pad_left,
    pad_right, activation)."""
    return geometry_init(g, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12],
                         a[13], a[14], a[15])


cdef DwGeometry _geometry(tuple args) except *:
    cdef DwGeometry g
    if _init(&g, args) != 0:
        raise ValueError(f"geometry_init refused {args}")
    return g


def depthwise(floating[:, :, :, ::1] x, floating[:, :, ::1] weight, floating[::1] bias, floating[:, :, :, ::1] y,
              tuple geometry, bint plan, int num_threads):
    """y = depthwise(x), directly or through a plan; geometry: the arguments of geometry_init after g."""
    cdef DwGeometry g = _geometry(geometry)
    cdef Plan *p
    cdef int rc
    with nogil:
        if floating is float:
            if plan:
                p = depthwise_plan_f32(&weight[0, 0, 0], &bias[0], &g)
                rc = depthwise_run_f32(p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], &g, num_threads) if p != NULL else -1
                plan_free(p)
            else:
                rc = depthwise_f32(&x[0, 0, 0, 0], &weight[0, 0, 0], &bias[0], &y[0, 0, 0, 0], &g, num_threads)
        else:
            if plan:
                p = depthwise_plan_f64(&weight[0, 0, 0], &bias[0], &g)
                rc = depthwise_run_f64(p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], &g, num_threads) if p != NULL else -1
                plan_free(p)
            else:
                rc = depthwise_f64(&x[0, 0, 0, 0], &weight[0, 0, 0], &bias[0], &y[0, 0, 0, 0], &g, num_threads)
    return rc


def pointwise(floating[:, ::1] x, floating[:, ::1] weight, floating[::1] bias, floating[:, ::1] y, int activation,
              bint plan, int num_threads):
    """y (pixels, cout) = activation(x @ weight + bias), directly or through a plan."""
    cdef Py_ssize_t pixels = x.shape[0], cin = weight.shape[0], cout = weight.shape[1]
    cdef Plan *p
    cdef int rc
    with nogil:
        if floating is float:
            if plan:
                p = pointwise_plan_f32(&weight[0, 0], &bias[0], cin, cout)
                rc = pointwise_run_f32(p, &x[0, 0], &y[0, 0], pixels, activation, num_threads) if p != NULL else -1
                plan_free(p)
            else:
                rc = pointwise_f32(&x[0, 0], &weight[0, 0], &bias[0], &y[0, 0], pixels, cin, cout, activation,
                                   num_threads)
        else:
            if plan:
                p = pointwise_plan_f64(&weight[0, 0], &bias[0], cin, cout)
                rc = pointwise_run_f64(p, &x[0, 0], &y[0, 0], pixels, activation, num_threads) if p != NULL else -1
                plan_free(p)
            else:
                rc = pointwise_f64(&x[0, 0], &weight[0, 0], &bias[0], &y[0, 0], pixels, cin, cout, activation,
                                   num_threads)
    return rc


def separable(floating[:, :, :, ::1] x, floating[:, :, ::1] dw_weight, floating[::1] dw_bias,
              floating[:, ::1] pw_weight, floating[::1] pw_bias, floating[:, :, :, ::1] y, tuple geometry,
              int activation, bint plan, int num_threads):
    """y = the separable block, directly or through a plan."""
    cdef DwGeometry g = _geometry(geometry)
    cdef Py_ssize_t cout = pw_weight.shape[1]
    cdef Plan *p
    cdef int rc
    with nogil:
        if floating is float:
            if plan:
                p = separable_plan_f32(&dw_weight[0, 0, 0], &dw_bias[0], &pw_weight[0, 0], &pw_bias[0], &g, cout)
                rc = separable_run_f32(p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], &g, activation, num_threads) \
                    if p != NULL else -1
                plan_free(p)
            else:
                rc = separable_f32(&x[0, 0, 0, 0], &dw_weight[0, 0, 0], &dw_bias[0], &pw_weight[0, 0], &pw_bias[0],
                                   &y[0, 0, 0, 0], &g, cout, activation, num_threads)
        else:
            if plan:
                p = separable_plan_f64(&dw_weight[0, 0, 0], &dw_bias[0], &pw_weight[0, 0], &pw_bias[0], &g, cout)
                rc = separable_run_f64(p, &x[0, 0, 0, 0], &y[0, 0, 0, 0], &g, activation, num_threads) \
                    if p != NULL else -1
                plan_free(p)
            else:
                rc = separable_f64(&x[0, 0, 0, 0], &dw_weight[0, 0, 0], &dw_bias[0], &pw_weight[0, 0], &pw_bias[0],
                                   &y[0, 0, 0, 0], &g, cout, activation, num_threads)
    return rc


def output_size(tuple geometry):
    """(oh, ow) from geometry_init, or None when it refuses the arguments."""
    cdef DwGeometry g
    if _init(&g, geometry) != 0:
        return None
    return g.oh, g.ow
