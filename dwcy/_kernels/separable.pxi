# Separable block, fused: depthwise -> bias -> activation -> pointwise -> bias -> activation.
#
# Work items are bands of output rows of one image. A thread computes a band's depthwise rows (all
# channels) into its own buffer, sized to stay in L2 (DWCY_BAND_BYTES), and hands it straight to the
# pointwise tiles as their A matrix: the intermediate tensor is never allocated, and never travels to
# memory. Both stages run the very routines of depthwise_conv2d and pointwise_conv2d on every pixel, so
# the result equals composing the two functions bit for bit, whatever the bands or the thread count.
#
# When the whole intermediate tensor is small (DWCY_FUSE_MIN_BYTES: it stays in cache anyway), or a band
# is smaller than half the pointwise weights (the small, deep layers), the two stages run one after the
# other on a temporary instead: every band reads all of the pointwise weights again, which would cost
# more than fusing saves.

cdef extern from "microkernels.h" nogil:
    int DWCY_BAND_BYTES
    int DWCY_BAND_MIN_ROWS
    int DWCY_FUSE_MIN_BYTES


cdef inline Py_ssize_t _band_rows(const DwGeometry *g, Py_ssize_t itemsize, int threads) noexcept nogil:
    """Output rows per band: what fits DWCY_BAND_BYTES, or DWCY_BAND_MIN_ROWS if more; fewer when that leaves
    threads without a band."""
    cdef Py_ssize_t row_bytes = g.ow * g.c * g.m * itemsize
    cdef Py_ssize_t rows = max(DWCY_BAND_MIN_ROWS, DWCY_BAND_BYTES // row_bytes)
    cdef Py_ssize_t bands_wanted = (2 * threads + g.n - 1) // g.n  # per image
    rows = min(rows, (g.oh + bands_wanted - 1) // bands_wanted)
    return max(1, rows)


cdef void _sep_bands(const floating *x, const DwGeometry *g, const floating *dw_packed, Py_ssize_t phase,
                     const GemmWeights *gw, floating *y, Py_ssize_t band_rows, Py_ssize_t bands, Py_ssize_t first,
                     Py_ssize_t end, int activation, floating *band, floating *expand_buf, bint weights_finite,
                     bint flush) noexcept nogil:
    """Work items [first, end) in one thread, item = n * bands + band: its depthwise rows into ``band`` (the
    weights packed at this phase), then the pointwise tiles into y."""
    cdef Py_ssize_t item, n, oh0, rows
    cdef int unit_rows = _gemm_unit_rows(gw.k, gw.n, _lanes(x))
    cdef unsigned int fpu = dwcy_fpu_enter(flush)
    for item in range(first, end):
        n = item // bands
        oh0 = (item - n * bands) * band_rows
        rows = min(band_rows, g.oh - oh0)
        _dw_band(x, g, n * g.oh + oh0, rows, dw_packed, band, expand_buf, weights_finite, phase)
        _gemm_rows(gw, band, rows * g.ow, y + (n * g.oh + oh0) * g.ow * gw.n, 0,
                   _gemm_units(gw.panels, rows * g.ow, unit_rows), activation, unit_rows, False)
    dwcy_fpu_exit(flush, fpu)


cdef inline double _sep_work(const DwGeometry *g, Py_ssize_t cout) noexcept nogil:
    """The block's multiply-adds, for _threads_for (a depthwise one counts DWCY_DW_MADD_COST)."""
    return <double>g.n * g.oh * g.ow * g.c * g.m * (g.kh * g.kw * DWCY_DW_MADD_COST + cout)


cdef bint _sep_fuses(const DwGeometry *g, Py_ssize_t cout, Py_ssize_t itemsize, int num_threads,
                     Py_ssize_t *band_rows) noexcept nogil:
    """Does fusing pay here (and with which bands)? It saves writing and reading the intermediate tensor,
    and costs each band a pass over the pointwise weights: worth it for a large intermediate and bands
    larger than half the weights."""
    cdef Py_ssize_t k = g.c * g.m
    cdef Py_ssize_t intermediate = g.n * g.oh * g.ow * k
    cdef int threads = _threads_for(num_threads, g.n * g.oh, _sep_work(g, cout))
    band_rows[0] = _band_rows(g, itemsize, threads)
    return intermediate * itemsize > DWCY_FUSE_MIN_BYTES and 2 * band_rows[0] * g.ow * k >= k * cout


cdef int _sep_run(const floating *x, const floating *dw_weight, const floating *dw_bias,
                  const floating *pw_weight, const floating *pw_bias, floating *y, const DwGeometry *g,
                  Py_ssize_t cout, int activation, int num_threads, bint flush=False) noexcept nogil:
    """The whole separable block into y (N, OH, OW, cout). Returns 0, or -1 when memory runs out.

    Unfused, it is depthwise_conv2d then pointwise_conv2d exactly, each packing its weights its own way."""
    cdef Py_ssize_t band_rows
    cdef floating *block = NULL
    cdef floating *mid
    cdef int rc
    if not _sep_fuses(g, cout, sizeof(floating), num_threads, &band_rows):
        mid = _sep_depthwise_alone(x, dw_weight, dw_bias, g, num_threads, flush, &block)
        rc = -1 if mid == NULL else _pw_run(mid, pw_weight, pw_bias, y, g.n * g.oh * g.ow, g.c * g.m, cout,
                                            activation, num_threads, flush)
        dwcy_free64(block)
        return rc
    cdef floating *packed = <floating *>dwcy_malloc64(_gemm_packed_size(g.c * g.m, cout, _lanes(x))
                                                      * sizeof(floating))
    if packed == NULL:
        return -1
    cdef GemmWeights gw
    _gemm_pack(pw_weight, pw_bias, g.c * g.m, cout, packed, &gw)
    rc = _sep_run_packed(x, dw_weight, dw_bias, &gw, y, g, activation, num_threads, flush)
    dwcy_free64(packed)
    return rc


cdef int _sep_run_packed(const floating *x, const floating *dw_weight, const floating *dw_bias,
                         const GemmWeights *gw, floating *y, const DwGeometry *g, int activation, int num_threads,
                         bint flush=False, const DwPacked *dw_packed_ahead=NULL) noexcept nogil:
    """The separable block with the pointwise weights packed (_gemm_pack); the depthwise ones are packed
    here, once, at the phase of x (_dw_phase), or were (``dw_packed_ahead``, at that phase). 0, or -1 out of
    memory. ``flush``: FTZ/DAZ in every thread, for this call only."""
    cdef Py_ssize_t k = g.c * g.m
    cdef Py_ssize_t band_rows
    if not _sep_fuses(g, gw.n, sizeof(floating), num_threads, &band_rows):
        return _sep_run_unfused(x, dw_weight, dw_bias, gw, y, g, activation, num_threads, flush, dw_packed_ahead)
    cdef int threads
    cdef Py_ssize_t bands = (g.oh + band_rows - 1) // band_rows
    cdef Py_ssize_t items = g.n * bands
    threads = _threads_for(num_threads, items, _sep_work(g, gw.n))
    # The packed depthwise weights; then per thread: the band, the depthwise expansion buffer (multiplier >
    # 1), each 64-byte aligned but the band, which starts as far into its line as x does, for the
    # depthwise tiles' stores to be as aligned as their loads (_dw_phase).
    cdef int lanes = _lanes(x)
    cdef Py_ssize_t phase = _dw_phase(x, g)
    cdef Py_ssize_t dw_size = _dw_packed_size(g, lanes) if dw_packed_ahead == NULL else 0
    cdef Py_ssize_t band_size = _round_up(phase + band_rows * g.ow * k, lanes)
    cdef Py_ssize_t per_thread = band_size + _dw_expand_size(g, sizeof(floating))
    cdef floating *block = <floating *>dwcy_malloc64((dw_size + threads * per_thread) * sizeof(floating))
    if block == NULL:
        return -1
    cdef DwPacked own
    if dw_packed_ahead == NULL:
        _dw_pack_ahead(dw_weight, dw_bias, g, phase, block, &own)
        dw_packed_ahead = &own
    cdef const floating *dw_packed = <const floating *>dw_packed_ahead.weights
    cdef bint finite = dw_packed_ahead.finite
    cdef floating *buffers = block + dw_size
    cdef floating *mine = NULL
    cdef int tid = 0
    if threads == 1:  # in the caller's thread, no OpenMP region
        _sep_bands(x, g, dw_packed, phase, gw, y, band_rows, bands, 0, items, activation, buffers + phase,
                   buffers + band_size, finite, flush)
    else:
        with parallel(num_threads=_team(num_threads, threads)):
            tid = omp_get_thread_num()
            mine = buffers + tid * per_thread
            _sep_bands(x, g, dw_packed, phase, gw, y, band_rows, bands, _share(items, threads, tid),
                       _share(items, threads, tid + 1), activation, mine + phase, mine + band_size, finite, flush)
    dwcy_free64(block)
    return 0


cdef int _sep_run_unfused(const floating *x, const floating *dw_weight, const floating *dw_bias,
                          const GemmWeights *gw, floating *y, const DwGeometry *g, int activation, int num_threads,
                          bint flush, const DwPacked *dw_packed_ahead=NULL) noexcept nogil:
    """Depthwise into a temporary, then pointwise from it (see the top of this file for when)."""
    cdef floating *block = NULL
    cdef floating *mid = _sep_depthwise_alone(x, dw_weight, dw_bias, g, num_threads, flush, &block,
                                              dw_packed_ahead)
    cdef int rc = -1 if mid == NULL else _pw_run_packed(gw, mid, y, g.n * g.oh * g.ow, activation, num_threads,
                                                         flush)
    dwcy_free64(block)
    return rc


cdef floating *_sep_depthwise_alone(const floating *x, const floating *dw_weight, const floating *dw_bias,
                                    const DwGeometry *g, int num_threads, bint flush, floating **block,
                                    const DwPacked *dw_packed_ahead=NULL) noexcept nogil:
    """The unfused depthwise stage into a new temporary (N, OH, OW, C*M), which it returns, or NULL when memory
    runs out; ``*block`` is the allocation to free (dwcy_free64), NULL or not. The temporary starts as far into
    a cache line as x, so that the depthwise tiles' stores are aligned as their loads are (_dw_phase)."""
    block[0] = <floating *>dwcy_malloc64((g.n * g.oh * g.ow * g.c * g.m + _lanes(x)) * sizeof(floating))
    if block[0] == NULL:
        return NULL
    cdef floating *mid = block[0] + _dw_phase(x, g)
    return mid if _dw_run(x, dw_weight, dw_bias, mid, g, num_threads, flush, dw_packed_ahead) == 0 else NULL
