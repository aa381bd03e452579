# Fast paths of the Python API: the common call, validated in C.
#
# dwcy._api tries these first. A fast path takes only arguments that are certainly valid and need no
# conversion: C-contiguous, aligned, native ndarrays of one supported dtype and the right number of
# dimensions, the common forms of stride/padding/dilation (ints, strings and pairs of them, whose geometry
# dwcy._args computes and caches, and a memo keeps for the next call: _GeometryMemo), a known activation,
# num_threads None or an int in range, out=None or a plainly valid one. Anything else (and anything the
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


cdef inline bint _apart(object a, object b):
    """Do two C-contiguous arrays (b may be None) occupy disjoint memory? (Exact for contiguous arrays.)"""
    if b is None:
        return True
    cdef char *a0 = <char *>cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef char *b0 = <char *>cnp.PyArray_DATA(<cnp.ndarray>b)
    return a0 + cnp.PyArray_NBYTES(<cnp.ndarray>a) <= b0 or b0 + cnp.PyArray_NBYTES(<cnp.ndarray>b) <= a0


cdef object _fast_out(object out, tuple shape, int type_num, object dtype, tuple inputs):
    """The output array: a new aligned one for out=None, ``out`` itself when it is plainly valid (exactly
    shape and dtype, C-contiguous, aligned, writeable, apart from every input), else None."""
    if out is None:
        return aligned_empty(shape, dtype)
    if not (type(out) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>out) == type_num
            and cnp.PyArray_ISCARRAY(<cnp.ndarray>out) and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>out)
            and out.shape == shape):
        return None
    for a in inputs:
        if not _apart(out, a):
            return None
    return out


cdef inline bint _plain_bias(object bias, int type_num, Py_ssize_t length):
    """None, or a plain 1-D array of ``length`` elements."""
    return bias is None or (_plain(bias, type_num, 1) and cnp.PyArray_DIM(<cnp.ndarray>bias, 0) == length)


cdef bint _plain_argument(object value, int depth=2):
    """An int or a str, or a pair of such, or a pair of pairs: forms dwcy._args caches the geometry of
    (_plain_form, of which this is the common part, checked in C)."""
    if type(value) is int or type(value) is str:
        return True
    return (depth > 0 and type(value) is tuple and len(<tuple>value) == 2
            and _plain_argument((<tuple>value)[0], depth - 1) and _plain_argument((<tuple>value)[1], depth - 1))


# The memo of the function calls (a Prepared has its own).
cdef _GeometryMemo _last_geometry = _GeometryMemo()


cdef tuple _fast_geometry(object x, object weight, int type_num, object stride, object padding, object dilation,
                          str weight_name, DwGeometry *g, Prepared prepared):
    """The geometry of a plain depthwise weight and the common argument forms into *g (its activation 0), and
    the output shape; None for anything else. Remembered in ``prepared``'s memo, or (None) the functions'."""
    cdef int weight_ndim = cnp.PyArray_NDIM(<cnp.ndarray>weight) if type(weight) is cnp.ndarray else 0
    if not ((weight_ndim == 3 or weight_ndim == 4) and _plain(weight, type_num, weight_ndim)):
        return None
    if not (_plain_argument(stride) and _plain_argument(padding) and _plain_argument(dilation)):
        return None
    cdef cnp.npy_intp dims[8]
    memcpy(dims, cnp.PyArray_DIMS(<cnp.ndarray>x), 4 * sizeof(cnp.npy_intp))
    memcpy(dims + 4, cnp.PyArray_DIMS(<cnp.ndarray>weight), weight_ndim * sizeof(cnp.npy_intp))
    dims[7] = dims[7] if weight_ndim == 4 else 0
    cdef _GeometryMemo memo = _last_geometry if prepared is None else prepared.memo
    if (memcmp(dims, memo.dims, sizeof(dims)) == 0 and stride == memo.stride and padding == memo.padding
            and dilation == memo.dilation):
        g[0] = memo.g
        return memo.out_shape
    try:
        geometry = _cached_geometry(x.shape, weight.shape, stride, padding, dilation, weight_name)
    except (TypeError, ValueError, OverflowError):
        return None
    g[0] = _geometry(geometry, 0)
    cdef tuple out_shape = geometry.out_shape  # (a property: Python code, during which another thread may run)
    # From here to the end no Python code runs, so no other thread sees the memo half changed (_GeometryMemo).
    memo.dims[0] = 0  # no match while it changes
    memo.stride, memo.padding, memo.dilation, memo.g, memo.out_shape = stride, padding, dilation, g[0], out_shape
    memcpy(memo.dims, dims, sizeof(dims))
    return out_shape


cdef object _pointwise_shape(Py_ssize_t n, Py_ssize_t h, Py_ssize_t w, Py_ssize_t cout):
    """(n, h, w, cout), or None for an output too large (the full way says so)."""
    if n * h * w >= _args._MAX_ELEMENTS // max(1, cout):
        return None
    return (n, h, w, cout)


def depthwise_fast(x, weight, bias, stride, padding, dilation, activation, num_threads, bint flush, out=None,
                   Prepared prepared=None):
    """dwcy.depthwise_conv2d for plainly valid arguments, or None (see the top of this file); ``prepared``:
    of this weight and bias (dwcy.Depthwise)."""
    cdef int t = _fast_type(x)
    cdef int threads = _fast_threads(num_threads)
    cdef int act = _fast_activation(activation)
    if t < 0 or threads < 0 or act < 0 or not _plain(x, t, 4):
        return None
    cdef DwGeometry g
    shape = _fast_geometry(x, weight, t, stride, padding, dilation, "weight", &g, prepared)
    if shape is None or not _plain_bias(bias, t, g.c * g.m):
        return None
    if out is not None:  # (None: _depthwise_into allocates it)
        out = _fast_out(out, shape, t, x.dtype, (x, weight, bias))
        if out is None:
            return None
    g.activation = act
    return _depthwise_into(x, weight, bias, out, &g, threads, flush, prepared)


def pointwise_fast(x, weight, bias, activation, num_threads, bint flush, out=None, Prepared prepared=None):
    """dwcy.pointwise_conv2d for plainly valid arguments (weight (Cin, Cout)), or None; ``prepared``: of
    this weight and bias (dwcy.Pointwise)."""
    cdef int t = _fast_type(x)
    cdef int threads = _fast_threads(num_threads)
    cdef int act = _fast_activation(activation)
    if t < 0 or threads < 0 or act < 0 or not _plain(x, t, 4) or not _plain(weight, t, 2):
        return None
    cdef Py_ssize_t cout = cnp.PyArray_DIM(<cnp.ndarray>weight, 1)
    if cnp.PyArray_DIM(<cnp.ndarray>weight, 0) != cnp.PyArray_DIM(<cnp.ndarray>x, 3) or not _plain_bias(bias, t, cout):
        return None
    shape = _pointwise_shape(cnp.PyArray_DIM(<cnp.ndarray>x, 0), cnp.PyArray_DIM(<cnp.ndarray>x, 1),
                             cnp.PyArray_DIM(<cnp.ndarray>x, 2), cout)
    y = None if shape is None else _fast_out(out, shape, t, x.dtype, (x, weight, bias))
    if y is not None:
        pointwise(x, weight, bias, y, act, threads, flush, prepared)
    return y


def separable_fast(x, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation, dw_activation,
                   activation, num_threads, bint flush, out=None, Prepared prepared=None):
    """dwcy.separable_conv2d for plainly valid arguments (pointwise weight (C*M, Cout)), or None; ``prepared``:
    of these weights and biases (dwcy.Separable)."""
    cdef int t = _fast_type(x)
    cdef int threads = _fast_threads(num_threads)
    cdef int dw_act = _fast_activation(dw_activation), act = _fast_activation(activation)
    if t < 0 or threads < 0 or dw_act < 0 or act < 0 or not _plain(x, t, 4) or not _plain(pw_weight, t, 2):
        return None
    cdef DwGeometry g
    if _fast_geometry(x, dw_weight, t, stride, padding, dilation, "depthwise_weight", &g, prepared) is None:
        return None
    cdef Py_ssize_t cout = cnp.PyArray_DIM(<cnp.ndarray>pw_weight, 1)
    if (cnp.PyArray_DIM(<cnp.ndarray>pw_weight, 0) != g.c * g.m
            or not _plain_bias(dw_bias, t, g.c * g.m) or not _plain_bias(pw_bias, t, cout)):
        return None
    shape = _pointwise_shape(g.n, g.oh, g.ow, cout)
    y = None if shape is None else _fast_out(out, shape, t, x.dtype, (x, dw_weight, pw_weight, dw_bias, pw_bias))
    if y is not None:
        g.activation = dw_act
        _separable_into(x, dw_weight, dw_bias, pw_weight, pw_bias, y, &g, act, threads, flush, prepared)
    return y
