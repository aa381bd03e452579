# The Python-facing entry points of one kernel build. Each kernel module (dwcy/kernels.pyx, ...) is
# this file compiled with its own flags. Callers (dwcy/_api.py) have validated and normalized every
# argument with dwcy._args: arrays are C-contiguous, aligned, native-order and share one dtype.

import numpy as np

cimport cython
cimport numpy as cnp
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uintptr_t
from cython cimport floating
from cython.parallel cimport parallel

cnp.import_array()

include "common.pxi"
include "depthwise.pxi"
include "pointwise.pxi"
include "separable.pxi"
include "im2col.pxi"


cdef inline void *_data(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef DwGeometry _geometry(object geometry, int activation) except *:
    """A dwcy._args.DepthwiseGeometry as the C struct of the depthwise loops."""
    cdef DwGeometry g
    (g.n, g.h, g.w, g.c, g.m, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw,
     g.pt, _, g.pl, _, g.oh, g.ow) = geometry
    g.activation = activation
    return g


cdef inline Py_ssize_t _x_phase(cnp.ndarray x, const DwGeometry *g) noexcept:
    """_dw_phase of x, a float32 or float64 array."""
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        return _dw_phase(<const float *>cnp.PyArray_DATA(x), g)
    return _dw_phase(<const double *>cnp.PyArray_DATA(x), g)


cpdef depthwise(cnp.ndarray x, cnp.ndarray weight, object bias, object out, object geometry,
                int activation, int num_threads, bint flush=False, Prepared prepared=None):
    """Depthwise convolution into ``out`` (N, OH, OW, C*M), or (out None) into a new array, which it
    returns; geometry is a dwcy._args.DepthwiseGeometry. ``prepared``: of this weight and bias (prepare),
    whose packed weights it reads."""
    cdef DwGeometry g = _geometry(geometry, activation)
    return _depthwise_into(x, weight, bias, out, &g, num_threads, flush, prepared)


cdef object _depthwise_into(cnp.ndarray x, cnp.ndarray weight, object bias, object out, const DwGeometry *g,
                            int num_threads, bint flush, Prepared prepared):
    """depthwise with the geometry as the C struct.

    A new array starts on a 64-byte boundary (aligned_empty), or as far into a cache line as x when the
    kernels read x at a phase (depthwise.pxi's _dw_phase), so that their stores are aligned as their loads
    are (1.15-1.28x on MobileNetV2's layers of 144 channels or more, from NumPy's arrays, than with the
    loads alone aligned)."""
    cdef const DwPacked *packed = _dw_packed(prepared, x, g)
    cdef cnp.npy_intp dims[4]
    if out is None:
        dims[0], dims[1], dims[2], dims[3] = g.n, g.oh, g.ow, g.c * g.m
        out = _aligned_new(4, dims, <cnp.dtype>cnp.PyArray_DESCR(x), _x_phase(x, g) * cnp.PyArray_ITEMSIZE(x))
    cdef void *xp = _data(x)
    cdef void *wp = _data(weight)
    cdef void *bp = _data(bias)
    cdef void *yp = _data(out)
    cdef int rc
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            rc = _dw_run(<const float *>xp, <const float *>wp, <const float *>bp, <float *>yp, g, num_threads, flush,
                         packed)
    else:
        with nogil:
            rc = _dw_run(<const double *>xp, <const double *>wp, <const double *>bp, <double *>yp, g, num_threads,
                         flush, packed)
    if rc != 0:
        raise MemoryError("dwcy: out of memory for the packed weights")
    return out


cdef class _GeometryMemo:
    """The geometry of the last depthwise call a fast path met (fast.pxi's _fast_geometry): most calls repeat
    the one before, and then skip building, hashing and looking up a key, and converting the result to the C
    struct. Read and written with the GIL held and no Python code run in between (plain options compare in
    C), so that threads may share it."""
    cdef cnp.npy_intp dims[8]  # x's (N, H, W, C) and the weight's (KH, KW, C, M), M 0 for a 3-D weight
    cdef object stride, padding, dilation
    cdef DwGeometry g          # their geometry (dwcy._args's) as the C struct (activation 0)
    cdef tuple out_shape       # and its output shape


cdef class Prepared:
    """Weights packed once for this level's tiles, freed with this object: a pointwise stage's (a plan of
    kernels.pxd, c_api.pxi) and a depthwise stage's (packed at each phase of the inputs its calls meet,
    _dw_phase, when a call first meets it). Made by prepare from the weights and biases that the calls given
    it pass too (dwcy.Pointwise, dwcy.Depthwise and dwcy.Separable keep both); calls in many threads may
    share one (a phase's weights are packed with the GIL held). It keeps the geometry of the last input its
    calls met, too: a network's calls of other layers then do not replace it."""
    cdef Plan *plan                 # the pointwise stage, or NULL
    cdef object dw_weight, dw_bias  # the depthwise stage's arrays (KH, KW, C[, M]) and (C*M,), or None
    cdef DwPacked dw_packed[16]     # by phase (< the lanes of a vector, 16 at most); weights NULL: not yet packed
    cdef _GeometryMemo memo

    def __dealloc__(self):
        cdef int phase
        if self.plan != NULL:
            plan_free(self.plan)
        for phase in range(16):
            dwcy_free64(<void *>self.dw_packed[phase].weights)


def prepare(cnp.ndarray weight, object bias, cnp.ndarray dw_weight=None, object dw_bias=None):
    """A Prepared of pointwise weights (Cin, Cout) and bias (Cout,) or None (weight None: no pointwise stage),
    and of depthwise weights (KH, KW, C) or (KH, KW, C, M) and bias (C*M,) or None (dw_weight None: no
    depthwise stage): for pointwise, depthwise or separable(..., prepared=) and the fast paths."""
    cdef Prepared prepared = Prepared.__new__(Prepared)
    prepared.dw_weight, prepared.dw_bias = dw_weight, dw_bias
    prepared.memo = _GeometryMemo()
    if weight is None:
        return prepared
    cdef void *wp = _data(weight)
    cdef void *bp = _data(bias)
    if cnp.PyArray_TYPE(weight) == cnp.NPY_FLOAT:
        prepared.plan = _pointwise_plan(<const float *>wp, <const float *>bp, weight.shape[0], weight.shape[1])
    else:
        prepared.plan = _pointwise_plan(<const double *>wp, <const double *>bp, weight.shape[0], weight.shape[1])
    if prepared.plan == NULL:
        raise MemoryError("dwcy: out of memory for the packed weights")
    return prepared


cdef const GemmWeights *_packed(Prepared prepared) except? NULL:
    """The packed pointwise weights of ``prepared``, or NULL for None."""
    if prepared is None:
        return NULL
    if prepared.plan == NULL:
        raise ValueError("dwcy: this Prepared has no pointwise weights")
    return &prepared.plan.pointwise


cdef const DwPacked *_dw_packed(Prepared prepared, cnp.ndarray x, const DwGeometry *g) except? NULL:
    """The depthwise weights of ``prepared`` packed at the phase of x (_dw_phase), packed now if no call met
    that phase before; NULL for None or a Prepared without a depthwise stage."""
    if prepared is None or prepared.dw_weight is None:
        return NULL
    cdef bint single = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT
    cdef Py_ssize_t phase = _x_phase(x, g)
    cdef DwPacked *packed = &prepared.dw_packed[phase]
    cdef void *wp = _data(prepared.dw_weight)
    cdef void *bp = _data(prepared.dw_bias)
    cdef void *buffer
    if packed.weights == NULL:
        buffer = dwcy_malloc64(_dw_packed_size(g, DWCY_LANES_F32 if single else DWCY_LANES_F64)
                               * cnp.PyArray_ITEMSIZE(x))
        if buffer == NULL:
            raise MemoryError("dwcy: out of memory for the packed weights")
        if single:
            _dw_pack_ahead(<const float *>wp, <const float *>bp, g, phase, <float *>buffer, packed)
        else:
            _dw_pack_ahead(<const double *>wp, <const double *>bp, g, phase, <double *>buffer, packed)
    return packed


cpdef pointwise(cnp.ndarray x, cnp.ndarray weight, object bias, cnp.ndarray out, int activation, int num_threads,
                bint flush=False, Prepared prepared=None):
    """Pointwise convolution of x (N, H, W, Cin) with weight (Cin, Cout) into out (N, H, W, Cout): its panels
    packed for this call, or taken from ``prepared`` (prepare of this weight and bias)."""
    cdef Py_ssize_t k = weight.shape[0], n = weight.shape[1]
    cdef Py_ssize_t pixels = x.shape[0] * x.shape[1] * x.shape[2]
    cdef void *xp = _data(x)
    cdef void *wp = _data(weight)
    cdef void *bp = _data(bias)
    cdef void *yp = _data(out)
    cdef const GemmWeights *gw = _packed(prepared)
    cdef int rc
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            if gw != NULL:
                rc = _pw_run_packed(gw, <const float *>xp, <float *>yp, pixels, activation, num_threads, flush)
            else:
                rc = _pw_run(<const float *>xp, <const float *>wp, <const float *>bp, <float *>yp, pixels, k, n,
                             activation, num_threads, flush)
    else:
        with nogil:
            if gw != NULL:
                rc = _pw_run_packed(gw, <const double *>xp, <double *>yp, pixels, activation, num_threads, flush)
            else:
                rc = _pw_run(<const double *>xp, <const double *>wp, <const double *>bp, <double *>yp, pixels, k,
                             n, activation, num_threads, flush)
    if rc != 0:
        raise MemoryError("dwcy: out of memory for the packed weights")


def im2col(cnp.ndarray x, int kernel, int stride, int padding, cnp.ndarray out, int num_threads):
    """The patches of x (N, H, W, C) into out (N, OH, OW, K*K*C), taps in (kh, kw, c) order, zero where they
    fall in the padding: a KxK convolution of x is then a pointwise one of out. The caller (models.py) gives
    C-contiguous arrays of one float dtype and out of the shape that kernel, stride and padding make; arrays
    that could not be read or written safely raise (TypeError, ValueError). Returns out."""
    cdef int t = cnp.PyArray_TYPE(x)
    if not (t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE) or cnp.PyArray_TYPE(out) != t:
        raise TypeError(f"im2col: x and out must share a dtype, float32 or float64; got {x.dtype} and {out.dtype}")
    if not (x.ndim == 4 and out.ndim == 4 and cnp.PyArray_ISCARRAY_RO(x) and cnp.PyArray_ISCARRAY(out)
            and cnp.PyArray_ISNOTSWAPPED(x) and cnp.PyArray_ISNOTSWAPPED(out)):
        raise ValueError("im2col: x and out must be 4-D, C-contiguous, aligned and native-endian (out writeable)")
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t oh = out.shape[1], ow = out.shape[2]  # (the taps read are checked against h and w)
    if kernel < 1 or stride < 1 or out.shape[0] != n or out.shape[3] != kernel * kernel * c:
        raise ValueError(f"im2col: out of shape {(<object>out).shape} does not hold the {kernel}x{kernel} patches "
                         f"of x of shape {(<object>x).shape}")
    cdef void *xp = _data(x)
    cdef void *yp = _data(out)
    if t == cnp.NPY_FLOAT:
        with nogil:
            _im2col_run(<const float *>xp, n, h, w, c, oh, ow, kernel, stride, padding, <float *>yp, num_threads)
    else:
        with nogil:
            _im2col_run(<const double *>xp, n, h, w, c, oh, ow, kernel, stride, padding, <double *>yp,
                        num_threads)
    return out


def separable(cnp.ndarray x, cnp.ndarray dw_weight, object dw_bias, cnp.ndarray pw_weight, object pw_bias,
              cnp.ndarray out, object geometry, int dw_activation, int activation, int num_threads,
              bint flush=False, Prepared prepared=None):
    """Fused depthwise (geometry, dw_activation) then pointwise (activation) into out (N, OH, OW, Cout), the
    weights packed for this call or taken from ``prepared`` (prepare of these weights and biases)."""
    cdef DwGeometry g = _geometry(geometry, dw_activation)
    _separable_into(x, dw_weight, dw_bias, pw_weight, pw_bias, out, &g, activation, num_threads, flush, prepared)


cdef int _separable_into(cnp.ndarray x, cnp.ndarray dw_weight, object dw_bias, cnp.ndarray pw_weight,
                         object pw_bias, cnp.ndarray out, const DwGeometry *g, int activation, int num_threads,
                         bint flush, Prepared prepared) except -1:
    """separable with the depthwise geometry as the C struct."""
    cdef Py_ssize_t cout = pw_weight.shape[1]
    cdef void *xp = _data(x)
    cdef void *dwp = _data(dw_weight)
    cdef void *dbp = _data(dw_bias)
    cdef void *pwp = _data(pw_weight)
    cdef void *pbp = _data(pw_bias)
    cdef void *yp = _data(out)
    cdef const GemmWeights *gw = _packed(prepared)
    cdef const DwPacked *dw_packed = _dw_packed(prepared, x, g)
    cdef int rc
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        with nogil:
            if gw != NULL:
                rc = _sep_run_packed(<const float *>xp, <const float *>dwp, <const float *>dbp, gw, <float *>yp,
                                     g, activation, num_threads, flush, dw_packed)
            else:
                rc = _sep_run(<const float *>xp, <const float *>dwp, <const float *>dbp, <const float *>pwp,
                              <const float *>pbp, <float *>yp, g, cout, activation, num_threads, flush)
    else:
        with nogil:
            if gw != NULL:
                rc = _sep_run_packed(<const double *>xp, <const double *>dwp, <const double *>dbp, gw,
                                     <double *>yp, g, activation, num_threads, flush, dw_packed)
            else:
                rc = _sep_run(<const double *>xp, <const double *>dwp, <const double *>dbp, <const double *>pwp,
                              <const double *>pbp, <double *>yp, g, cout, activation, num_threads, flush)
    if rc != 0:
        raise MemoryError("dwcy: out of memory for the packed weights and per-thread buffers")
    return 0


cdef extern from "numpy/arrayobject.h":
    # Steals a reference to descr.
    object PyArray_NewFromDescr(type subtype, cnp.dtype descr, int nd, cnp.npy_intp *dims,
                                cnp.npy_intp *strides, void *data, int flags, object obj)


def aligned_empty(tuple shape, cnp.dtype dtype, Py_ssize_t offset=0):
    """np.empty(shape, dtype) whose data start on a 64-byte boundary (a cache line, an AVX-512 vector), or
    ``offset`` bytes past one.

    NumPy's own allocations start 16 bytes past one, which splits every vector load and store of the
    kernels across two cache lines (10-30 % slower). The array is a view of a slightly larger buffer; one of
    at least RECYCLE_MIN_BYTES is reused once no array uses it (_Recycled).
    """
    cdef int i, ndim = len(shape)
    cdef cnp.npy_intp dims[8]
    if ndim > 8:
        raise ValueError("dwcy: at most 8 dimensions")
    for i in range(ndim):
        dims[i] = shape[i]
    return _aligned_new(ndim, dims, dtype, offset)


cdef cnp.ndarray _aligned_new(int ndim, cnp.npy_intp *dims, cnp.dtype dtype, Py_ssize_t offset):
    """aligned_empty of the shape ``dims[:ndim]``."""
    cdef Py_ssize_t i, size = dtype.itemsize
    for i in range(ndim):
        size *= dims[i]
    cdef cnp.npy_intp buf_size = size + 128
    cdef bint recycled = buf_size >= RECYCLE_MIN_BYTES
    cdef cnp.ndarray buf = _take_recycled(buf_size) if recycled else None
    if buf is None:
        buf = cnp.PyArray_EMPTY(1, &buf_size, cnp.NPY_UINT8, 0)
    cdef char *data = <char *>cnp.PyArray_DATA(buf)
    Py_INCREF(dtype)  # PyArray_NewFromDescr steals a reference to the dtype
    cdef cnp.ndarray array = PyArray_NewFromDescr(
        cnp.ndarray, dtype, ndim, dims, NULL, data + (64 - <uintptr_t>data % 64) % 64 + offset % 64,
        cnp.NPY_ARRAY_CARRAY, None)
    cnp.set_array_base(array, _Recycled(buf) if recycled else buf)
    return array


# Large buffers of new arrays are reused. The C library hands a large allocation back to the system when it
# is freed (glibc: above 32 MiB), and the next one comes as fresh pages, each zeroed by the system at its first
# touch, inside the kernels: 8 images of 112x112 16->96 (a 38.5 MB output) took 2.5x as long as into a
# reused array, and np.empty(...).fill(0) of that size 3x. So a buffer of at least RECYCLE_MIN_BYTES is kept
# when no array uses it any more, for the next array of about its size; at most RECYCLE_MAX_BUFFERS of them
# and RECYCLE_MAX_BYTES in all (the oldest dropped first). The GIL guards the list: dwcy does not declare
# itself free-threading compatible.
cdef Py_ssize_t RECYCLE_MIN_BYTES = 32 << 20
cdef Py_ssize_t RECYCLE_MAX_BYTES = 256 << 20
cdef Py_ssize_t RECYCLE_MAX_BUFFERS = 4
cdef list _recycled = []  # uint8 buffers no array uses, oldest first


def recycling(bint drop=False):
    """(RECYCLE_MIN_BYTES, RECYCLE_MAX_BYTES, RECYCLE_MAX_BUFFERS, the sizes of the buffers kept now); with
    ``drop``, first let the kept buffers go (their memory back to the system)."""
    if drop:
        del _recycled[:]
    return RECYCLE_MIN_BYTES, RECYCLE_MAX_BYTES, RECYCLE_MAX_BUFFERS, [cnp.PyArray_NBYTES(b) for b in _recycled]


@cython.final
cdef class _Recycled:
    """The base of a large array of aligned_empty: owns its buffer, and hands it back for reuse when the array
    and every view of it are gone."""
    cdef cnp.ndarray buf

    def __cinit__(self, cnp.ndarray buf):
        self.buf = buf

    def __dealloc__(self):
        if _recycled is None:  # (the module is being torn down)
            return
        _recycled.append(self.buf)
        # Counted without allocating (an allocation may run the garbage collector, and another __dealloc__
        # within this one).
        cdef Py_ssize_t i, kept = 0
        for i in range(len(_recycled)):
            kept += cnp.PyArray_NBYTES(<cnp.ndarray>_recycled[i])
        while _recycled and (len(_recycled) > RECYCLE_MAX_BUFFERS or kept > RECYCLE_MAX_BYTES):
            kept -= cnp.PyArray_NBYTES(<cnp.ndarray>_recycled.pop(0))


cdef cnp.ndarray _take_recycled(Py_ssize_t size):
    """A kept buffer of at least ``size`` bytes and at most a quarter more (the smallest), taken out of the
    list; None if there is none."""
    cdef Py_ssize_t i, best = -1, best_bytes = size + size // 4 + 1, nbytes
    for i in range(len(_recycled)):
        nbytes = cnp.PyArray_NBYTES(_recycled[i])
        if size <= nbytes < best_bytes:
            best, best_bytes = i, nbytes
    return None if best < 0 else _recycled.pop(best)


include "fast.pxi"
