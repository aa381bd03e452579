# The Python-facing entry points of one kernel build. Each per-SIMD-level module (_native.pyx, ...) is
# this file compiled with its own flags. Callers (dwcy/_api.py) have validated and normalized every
# argument with dwcy._args: arrays are C-contiguous, aligned, native-order and share one dtype.

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange

cnp.import_array()

include "common.pxi"
include "depthwise.pxi"


cdef inline void *_data(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


def depthwise(cnp.ndarray x, cnp.ndarray weight, object bias, cnp.ndarray out, object geometry,
              int activation, int num_threads):
    """Depthwise convolution into ``out`` (N, OH, OW, C*M); geometry is a dwcy._args.DepthwiseGeometry."""
    cdef DwGeometry g
    (g.n, g.h, g.w, g.c, g.m, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw,
     g.pt, _, g.pl, _, g.oh, g.ow) = geometry
    g.activation = activation
    cdef void *xp = _data(x)
    cdef void *wp = _data(weight)
    cdef void *bp = _data(bias)
    cdef void *yp = _data(out)
    cdef int rc
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            rc = _dw_run(<const float *>xp, <const float *>wp, <const float *>bp, <float *>yp, &g, num_threads)
    else:
        with nogil:
            rc = _dw_run(<const double *>xp, <const double *>wp, <const double *>bp, <double *>yp, &g, num_threads)
    if rc != 0:
        raise MemoryError("dwcy: out of memory for the packed weights")
