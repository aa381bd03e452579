# Fast paths of the Python API: the common call, validated in C.
#
# dwcy._api tries these first. A fast path takes only arguments that are certainly valid and need no
# conversion: C-contiguous, aligned, native ndarrays of one supported dtype and the right number of
# dimensions, the common forms of stride/padding/dilation (whose geometry dwcy._args computes and caches),
# a known activation, num_threads None or an int in range, out=None. Anything else (and anything the
# geometry rejects) returns None, and the call goes the full way through dwcy._args, which converts what
# it can and raises the errors. So the rules stay in dwcy._args, and a fast path is an accept-list only.

from dwcy import _args

cdef dict _ACTIVATION_CODES = {name: code for code, name in enumerate(_args.ACTIVATIONS)}
cdef object _cached_geometry = _args._cached_depthwise_geometry


cdef inline bint _plain(object a, int type_num, int ndim):
    """A C-contiguous, aligned, native-order ndarray of this dtype and dimension count, with no empty axis."""
    return (type(a) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>a) == type_num
            and cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>a)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a) and cnp.PyArray_SIZE(<cnp.ndarray>a) > 0)


cdef inline int _fast_type(object x) noexcept:
    """x's NumPy type number when it is float32 or float64, else -1."""
    if type(x) is not cnp.ndarray:
        return -1
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    return t if t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE else -1


cdef inline int _fast_threads(object num_threads) noexcept:
    """The kernels' thread count (0: OpenMP's default) for None or an int in [1, 2**16]; -1 otherwise."""
    if num_threads is None:
        return 0
    if type(num_threads) is int and 1 <= <object>num_threads <= 65536:
        return <int>num_threads
    return -1


cdef inline int _fast_activation(object activation) noexcept:
    """The activation's code for None or a known name; -1 otherwise."""
    if activation is not None and type(activation) is not str:
        return -1
    return _ACTIVATION_CODES.get(activation, -1)


def depthwise_fast(x, weight, bias, stride, padding, dilation, activation, num_threads, bint flush):
    """dwcy.depthwise_conv2d(..., out=None) for plainly valid arguments, or None (see the top of this file)."""
    cdef int t = _fast_type(x)
    cdef int threads = _fast_threads(num_threads)
    cdef int act = _fast_activation(activation)
    if t < 0 or threads < 0 or act < 0 or not _plain(x, t, 4):
        return None
    if not (_plain(weight, t, 3) or _plain(weight, t, 4)) or (bias is not None and not _plain(bias, t, 1)):
        return None
    if not (type(stride) is int and type(dilation) is int and (type(padding) is str or type(padding) is int)):
        return None
    try:
        geometry = _cached_geometry(x.shape, weight.shape, stride, padding, dilation, "weight")
    except (TypeError, ValueError, OverflowError):
        return None
    if bias is not None and cnp.PyArray_DIM(<cnp.ndarray>bias, 0) != geometry.out_channels:
        return None
    y = aligned_empty(geometry.out_shape, x.dtype)
    depthwise(x, weight, bias, y, geometry, act, threads, flush)
    return y


def pointwise_fast(x, weight, bias, activation, num_threads, bint flush):
    """dwcy.pointwise_conv2d(..., out=None) for plainly valid arguments (weight (Cin, Cout)), or None."""
    cdef int t = _fast_type(x)
    cdef int threads = _fast_threads(num_threads)
    cdef int act = _fast_activation(activation)
    if t < 0 or threads < 0 or act < 0 or not _plain(x, t, 4) or not _plain(weight, t, 2):
        return None
    cdef Py_ssize_t cin = cnp.PyArray_DIM(<cnp.ndarray>x, 3), cout = cnp.PyArray_DIM(<cnp.ndarray>weight, 1)
    if cnp.PyArray_DIM(<cnp.ndarray>weight, 0) != cin:
        return None
    if bias is not None and not (_plain(bias, t, 1) and cnp.PyArray_DIM(<cnp.ndarray>bias, 0) == cout):
        return None
    shape = (cnp.PyArray_DIM(<cnp.ndarray>x, 0), cnp.PyArray_DIM(<cnp.ndarray>x, 1),
             cnp.PyArray_DIM(<cnp.ndarray>x, 2), cout)
    if cnp.PyArray_DIM(<cnp.ndarray>x, 0) * cnp.PyArray_DIM(<cnp.ndarray>x, 1) * cnp.PyArray_DIM(<cnp.ndarray>x, 2) \
            >= _args._MAX_ELEMENTS // max(1, cout):
        return None  # (the full way says the output is too large)
    y = aligned_empty(shape, x.dtype)
    pointwise(x, weight, bias, y, act, threads, flush)
    return y
