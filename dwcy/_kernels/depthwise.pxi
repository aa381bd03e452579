# Depthwise convolution, NHWC: the framework loops around the register tiles of microkernels.h.
#
# Work is split into output rows (n, oh): the work items of a static prange, so each thread takes a
# contiguous band of rows whose input rows stay in its caches. Within a row, for each block of LANES
# output channels (one 64-byte vector), the output pixels fall in three column ranges:
#
#   [0, ow_lo)        left border: some taps fall in the left padding; one pixel at a time, fewer taps
#   [ow_lo, ow_hi)    interior: every column tap is inside the image; DWCY_DW_PIXELS pixels per tile
#   [ow_hi, out_w)    right border, like the left
#
# Rows whose taps reach into the top/bottom padding simply run fewer tap rows (nkh < KH); padding is
# never materialized. The last CO % LANES channels (the tail) go through a plain-C routine that touches
# only those channels, so nothing is read or written past the caller's arrays. Weights and bias are
# packed once per call into [block][KH][KW][LANES] (zero-padded), so the tiles load whole vectors.
#
# A channel multiplier M > 1 (output channel c*M + m reads input channel c) first expands the input
# rows a row needs into a per-thread buffer with M copies of each channel; the same loops then run on it
# as on an M = 1 input with C*M channels.
#
# Each output element is computed by the same routine with the same operation order whatever the
# number of threads, so results are bitwise identical at any thread count.

cdef extern from "microkernels.h" nogil:
    int DWCY_DW_PIXELS
    int DWCY_LANES_F32
    int DWCY_LANES_F64
    void dwcy_dw_f32_tile(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                          const float *w, Py_ssize_t w_row_step, int nkh, int nkw, const float *bias,
                          float *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f32_1x(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const float *w, Py_ssize_t w_row_step, int nkh, int nkw, const float *bias,
                        float *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_tail_float(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, const float *w,
                            Py_ssize_t w_row_step, int nkh, int nkw, const float *bias, float *y,
                            int nc, int activation) noexcept
    void dwcy_dw_f64_tile(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                          const double *w, Py_ssize_t w_row_step, int nkh, int nkw, const double *bias,
                          double *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f64_1x(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const double *w, Py_ssize_t w_row_step, int nkh, int nkw, const double *bias,
                        double *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_tail_double(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, const double *w,
                             Py_ssize_t w_row_step, int nkh, int nkw, const double *bias, double *y,
                             int nc, int activation) noexcept


ctypedef struct DwGeometry:
    Py_ssize_t n, h, w, c, m          # input (N, H, W, C) and channel multiplier M
    Py_ssize_t kh, kw                 # kernel
    Py_ssize_t sh, sw, dh, dw         # stride, dilation
    Py_ssize_t pt, pl                 # top and left padding (bottom/right follow from out_h/out_w)
    Py_ssize_t oh, ow                 # output rows and columns
    int activation


cdef inline int _lanes(const floating *dummy) noexcept nogil:
    """Elements of one 64-byte vector: 16 floats or 8 doubles (the type of the unused argument picks)."""
    if floating is float:
        return DWCY_LANES_F32
    else:
        return DWCY_LANES_F64


cdef inline void _tap_range(Py_ssize_t start, Py_ssize_t step, Py_ssize_t taps, Py_ssize_t size,
                            Py_ssize_t *first, Py_ssize_t *count) noexcept nogil:
    """The taps k in [0, taps) whose position start + k*step lies in [0, size): [first, first + count).

    Comparisons and divisions of non-negative numbers only (cdivision truncates toward zero).
    """
    cdef Py_ssize_t lo = 0, hi = taps
    if start < 0:
        lo = (-start + step - 1) // step
    if start + (taps - 1) * step > size - 1:
        hi = (size - 1 - start) // step + 1 if size - 1 - start >= 0 else 0
    if hi < lo:
        hi = lo
    first[0] = lo
    count[0] = hi - lo


cdef void _dw_pack(const floating *weight, const floating *bias, Py_ssize_t taps, Py_ssize_t channels,
                   int lanes, floating *wpack, floating *bpack) noexcept nogil:
    """weight (taps, channels) -> wpack [block][taps][lanes]; bias -> bpack [block][lanes]; zero padded."""
    cdef Py_ssize_t blocks = (channels + lanes - 1) // lanes
    cdef Py_ssize_t b, t, l, ch
    memset(wpack, 0, blocks * taps * lanes * sizeof(floating))
    memset(bpack, 0, blocks * lanes * sizeof(floating))
    for b in range(blocks):
        for l in range(min(lanes, channels - b * lanes)):
            ch = b * lanes + l
            if bias != NULL:
                bpack[b * lanes + l] = bias[ch]
            for t in range(taps):
                wpack[(b * taps + t) * lanes + l] = weight[t * channels + ch]


cdef inline void _dw_pixel(const floating *x, Py_ssize_t row_step, Py_ssize_t ci, const DwGeometry *g,
                           Py_ssize_t ow, const floating *w, Py_ssize_t kh0, Py_ssize_t nkh,
                           const floating *bias, floating *y, Py_ssize_t co, int nc, int lanes) noexcept nogil:
    """One output pixel of one channel block, taps clipped to the image (border columns and tails).

    x is the first valid tap row at column 0 of the block's first channel; w the block's packed weights.
    """
    cdef Py_ssize_t kw0, nkw
    cdef Py_ssize_t iw0 = ow * g.sw - g.pl
    _tap_range(iw0, g.dw, g.kw, g.w, &kw0, &nkw)
    cdef const floating *xp = x + (iw0 + kw0 * g.dw) * ci if nkw > 0 else x
    cdef const floating *wp = w + (kh0 * g.kw + kw0) * lanes
    cdef floating *yp = y + ow * co
    if nc < lanes:
        if floating is float:
            dwcy_dw_tail_float(xp, row_step, g.dw * ci, wp, g.kw * lanes, <int>nkh, <int>nkw, bias, yp, nc, g.activation)
        else:
            dwcy_dw_tail_double(xp, row_step, g.dw * ci, wp, g.kw * lanes, <int>nkh, <int>nkw, bias, yp, nc, g.activation)
    elif floating is float:
        dwcy_dw_f32_1x(xp, row_step, g.dw * ci, 0, wp, g.kw * lanes, <int>nkh, <int>nkw, bias, yp, 0, g.activation)
    else:
        dwcy_dw_f64_1x(xp, row_step, g.dw * ci, 0, wp, g.kw * lanes, <int>nkh, <int>nkw, bias, yp, 0, g.activation)


cdef void _dw_row(const floating *x, Py_ssize_t row_step, Py_ssize_t ci, const DwGeometry *g,
                  Py_ssize_t kh0, Py_ssize_t nkh, const floating *wpack, const floating *bpack,
                  floating *y) noexcept nogil:
    """One output row, all channels. x: the first valid tap row (column 0, channel 0); ci: its channel count."""
    cdef int lanes = _lanes(y)
    cdef Py_ssize_t co = g.c * g.m
    cdef Py_ssize_t taps = g.kh * g.kw
    cdef Py_ssize_t full_blocks = co // lanes
    cdef int tail = <int>(co - full_blocks * lanes)
    cdef Py_ssize_t col_step = g.dw * ci, pix_step = g.sw * ci
    cdef int pixels = DWCY_DW_PIXELS
    cdef Py_ssize_t b, ow, ow_lo, ow_hi, kw0, nkw
    cdef const floating *w
    cdef const floating *xb
    cdef const floating *xi
    # Interior columns: ow whose first column tap ow*sw - pl lies in [0, W - (KW-1)*dw).
    _tap_range(-g.pl, g.sw, g.ow, g.w - (g.kw - 1) * g.dw, &kw0, &nkw)
    ow_lo = min(kw0, g.ow)
    ow_hi = ow_lo + nkw
    for b in range(full_blocks + (1 if tail else 0)):
        w = wpack + b * taps * lanes
        xb = x + b * lanes
        if b == full_blocks:  # the channel tail: one pixel at a time, nc < lanes
            for ow in range(g.ow):
                _dw_pixel(xb, row_step, ci, g, ow, w, kh0, nkh, bpack + b * lanes, y + b * lanes, co, tail, lanes)
            break
        for ow in range(ow_lo):
            _dw_pixel(xb, row_step, ci, g, ow, w, kh0, nkh, bpack + b * lanes, y + b * lanes, co, lanes, lanes)
        ow = ow_lo
        xi = xb + (ow_lo * g.sw - g.pl) * ci
        w = w + kh0 * g.kw * lanes
        while ow + pixels <= ow_hi:
            if floating is float:
                dwcy_dw_f32_tile(xi, row_step, col_step, pix_step, w, g.kw * lanes, <int>nkh, <int>g.kw,
                                 bpack + b * lanes, y + ow * co + b * lanes, co, g.activation)
            else:
                dwcy_dw_f64_tile(xi, row_step, col_step, pix_step, w, g.kw * lanes, <int>nkh, <int>g.kw,
                                 bpack + b * lanes, y + ow * co + b * lanes, co, g.activation)
            ow += pixels
            xi += pixels * pix_step
        while ow < ow_hi:
            if floating is float:
                dwcy_dw_f32_1x(xi, row_step, col_step, 0, w, g.kw * lanes, <int>nkh, <int>g.kw,
                               bpack + b * lanes, y + ow * co + b * lanes, 0, g.activation)
            else:
                dwcy_dw_f64_1x(xi, row_step, col_step, 0, w, g.kw * lanes, <int>nkh, <int>g.kw,
                               bpack + b * lanes, y + ow * co + b * lanes, 0, g.activation)
            ow += 1
            xi += pix_step
        w = wpack + b * taps * lanes
        for ow in range(ow_hi, g.ow):
            _dw_pixel(xb, row_step, ci, g, ow, w, kh0, nkh, bpack + b * lanes, y + b * lanes, co, lanes, lanes)


cdef void _expand_rows(const floating *x, const DwGeometry *g, Py_ssize_t ih0, Py_ssize_t nkh,
                       floating *buf) noexcept nogil:
    """Copy the nkh tap rows ih0, ih0 + dh, ... of one image into buf, each channel repeated M times."""
    cdef Py_ssize_t r, iw, ch, k
    cdef Py_ssize_t m = g.m
    cdef const floating *src
    cdef floating *dst
    for r in range(nkh):
        src = x + (ih0 + r * g.dh) * g.w * g.c
        dst = buf + r * g.w * g.c * m
        for iw in range(g.w * g.c):
            for k in range(m):
                dst[iw * m + k] = src[iw]


cdef void _dw_output_row(const floating *x, const DwGeometry *g, Py_ssize_t item, const floating *wpack,
                         const floating *bpack, floating *yrow, floating *expand_buf) noexcept nogil:
    """Output row ``item`` = n * out_h + oh (all channels) into yrow."""
    cdef Py_ssize_t n = item // g.oh
    cdef Py_ssize_t oh = item - n * g.oh
    cdef Py_ssize_t kh0, nkh
    cdef Py_ssize_t ih_start = oh * g.sh - g.pt
    _tap_range(ih_start, g.dh, g.kh, g.h, &kh0, &nkh)
    cdef const floating *image = x + n * g.h * g.w * g.c
    cdef Py_ssize_t ih0 = ih_start + kh0 * g.dh
    if g.m == 1:
        _dw_row(image + (ih0 * g.w * g.c if nkh > 0 else 0), g.dh * g.w * g.c, g.c, g, kh0, nkh,
                wpack, bpack, yrow)
    else:
        _expand_rows(image, g, ih0, nkh, expand_buf)
        _dw_row(expand_buf, g.w * g.c * g.m, g.c * g.m, g, kh0, nkh, wpack, bpack, yrow)


cdef inline Py_ssize_t _dw_blocks(const DwGeometry *g, int lanes) noexcept nogil:
    """Channel blocks of one vector (the last one possibly partial)."""
    return (g.c * g.m + lanes - 1) // lanes


cdef inline Py_ssize_t _dw_expand_size(const DwGeometry *g) noexcept nogil:
    """Elements of the per-thread buffer of M-times expanded input rows (0 without a multiplier)."""
    return g.kh * g.w * g.c * g.m if g.m > 1 else 0


cdef floating *_dw_pack_alloc(const floating *weight, const floating *bias, const DwGeometry *g,
                              Py_ssize_t extra) noexcept nogil:
    """malloc the packed weights, then the packed bias, then ``extra`` elements; NULL when out of memory."""
    cdef int lanes = _lanes(weight)
    cdef Py_ssize_t taps = g.kh * g.kw
    cdef Py_ssize_t blocks = _dw_blocks(g, lanes)
    cdef floating *wpack = <floating *>malloc((blocks * (taps + 1) * lanes + extra) * sizeof(floating))
    if wpack != NULL:
        _dw_pack(weight, bias, taps, g.c * g.m, lanes, wpack, wpack + blocks * taps * lanes)
    return wpack


cdef int _dw_run(const floating *x, const floating *weight, const floating *bias, floating *y,
                 const DwGeometry *g, int num_threads) noexcept nogil:
    """The whole depthwise convolution. Returns 0, or -1 when memory runs out (nothing written then)."""
    cdef int lanes = _lanes(y)
    cdef Py_ssize_t row_size = g.ow * g.c * g.m
    cdef Py_ssize_t blocks = _dw_blocks(g, lanes)
    cdef Py_ssize_t items = g.n * g.oh
    cdef int threads = _threads_for(num_threads, items)
    cdef Py_ssize_t expand_size = _dw_expand_size(g)
    cdef Py_ssize_t item
    cdef floating *wpack = _dw_pack_alloc(weight, bias, g, threads * expand_size)
    if wpack == NULL:
        return -1
    cdef floating *bpack = wpack + blocks * g.kh * g.kw * lanes
    cdef floating *expand_bufs = bpack + blocks * lanes
    if threads == 1:  # in the caller's thread, no OpenMP region
        for item in range(items):
            _dw_output_row(x, g, item, wpack, bpack, y + item * row_size, expand_bufs)
    else:
        for item in prange(items, num_threads=threads, schedule="static"):
            _dw_output_row(x, g, item, wpack, bpack, y + item * row_size,
                           expand_bufs + omp_get_thread_num() * expand_size)
    free(wpack)
    return 0
