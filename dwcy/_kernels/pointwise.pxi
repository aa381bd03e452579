# Pointwise (1x1) convolution, NHWC: a GEMM C (pixels x Cout) = A (pixels x Cin) @ W (Cin x Cout),
# the framework loops around the register tiles dwcy_gemm_* (MR pixels x NR channels).
#
# The loop nest is BLIS's. Each output element is bias + its K products summed in order (partial sums
# carried in the output between blocks of K round exactly as in registers), and bias and activation are
# fused into the tiles:
#
#   for each block of rows (pixels)            (sized for L2)
#     for each block of K (DWCY_GEMM_KC)        (A's block of rows x KC stays in L2)
#       for each NR-wide panel of W             (the panel's block, KC x NR, stays in L1 over the rows)
#         for each MR-row tile of the block     (A rows stream through L1)
#           register tile over the KC; bias first, activation last, store
#
# A W small enough to stay in L1 whole (DWCY_GEMM_L1_W_BYTES: the expansions of the large layers, 16->96,
# 24->144, 32->192) swaps the two inner loops: each tile passes over every panel, so that A and C pass once,
# in memory order (_gemm_rows_by_tile). A short K (DWCY_GEMM_SHORT_K) takes tiles of MR1 rows, not MR
# (_gemm_unit_rows), and there one call covers a row tile's panels.
#
# An A too large for the caches (DWCY_STREAM_BYTES: a batch's input) is fetched ahead by the tiles that
# read it first, panel by panel (_gemm_streams).
#
# Threads share the (block, panel, tile) units in even, contiguous runs (_pw_run_packed, _gemm_rows).
#
# W is packed once per call (or once for good, through the C-level API) into contiguous, zero-padded
# blocks of panels (KC x NR): read in place, a panel's rows would lie Cout elements apart, which maps
# them onto a few sets of L1 (and, for a wide W, one page each). A W read by a single block of rows is
# packed a panel block at a time instead, as the tiles need it, mostly by the first tile that reads it
# (_pw_run, _gemm_rows). Rows that do not fill an MR-row tile take 4-row tiles, the last of which reads
# and stores only the rows that exist; a last panel of one vector or less takes one-vector tiles, and the
# tiles store only the panel's columns (a masked store for the last vector): nothing outside the caller's
# arrays is touched.
#
# Each output element is bias + the sum over K in order by the same tile, however rows and panels are
# split among threads: results are bitwise identical at any thread count.

cdef extern from "microkernels.h" nogil:
    int DWCY_GEMM_MR
    int DWCY_GEMM_MR1
    int DWCY_GEMM_SHORT_K
    int DWCY_STREAM_BYTES
    void dwcy_gemm_f32_mr1x2_panels(Py_ssize_t, const float *, Py_ssize_t, const float *, const float *, float *,
                                    Py_ssize_t, int, int) noexcept
    void dwcy_gemm_f64_mr1x2_panels(Py_ssize_t, const double *, Py_ssize_t, const double *, const double *,
                                    double *, Py_ssize_t, int, int) noexcept
    void dwcy_gemm_f32_mr1x2(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t, const float *,
                             float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_mr1x2_packing(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t,
                                     const float *, float *, Py_ssize_t, int, int, int, int, float *) noexcept
    void dwcy_gemm_f64_mr1x2(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t, const double *,
                             double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_mr1x2_packing(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                     const double *, double *, Py_ssize_t, int, int, int, int, double *) noexcept
    int DWCY_GEMM_BLOCK_BYTES
    int DWCY_GEMM_MAX_TILES
    int DWCY_GEMM_KC
    int DWCY_GEMM_L1_W_BYTES
    void dwcy_pack_panel_f32(const float *w, Py_ssize_t k, Py_ssize_t ldw, int cols, float *panel) noexcept
    void dwcy_pack_panel_f64(const double *w, Py_ssize_t k, Py_ssize_t ldw, int cols, double *panel) noexcept
    void dwcy_gemm_f32_mrx2(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t, const float *,
                            float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_4x2(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t, const float *,
                           float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_mrx1(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t, const float *,
                            float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_4x1(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t, const float *,
                           float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_mrx2_packing(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t, const float *,
                                    float *, Py_ssize_t, int, int, int, int, float *) noexcept
    void dwcy_gemm_f32_4x2_packing(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t, const float *,
                                   float *, Py_ssize_t, int, int, int, int, float *) noexcept
    void dwcy_gemm_f64_mrx2_packing(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                    const double *, double *, Py_ssize_t, int, int, int, int, double *) noexcept
    void dwcy_gemm_f64_4x2_packing(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                   const double *, double *, Py_ssize_t, int, int, int, int, double *) noexcept
    void dwcy_gemm_f32_mrx2_prefetching(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t,
                                        const float *, float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_mr1x2_prefetching(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t,
                                         const float *, float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_4x2_prefetching(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t,
                                       const float *, float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_mrx2_prefetching(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                        const double *, double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_mr1x2_prefetching(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                         const double *, double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_4x2_prefetching(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                       const double *, double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_mrx2_streaming(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t,
                                      const float *, float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_mr1x2_streaming(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t,
                                       const float *, float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f32_mrx1_streaming(Py_ssize_t, const float *, Py_ssize_t, const float *, Py_ssize_t,
                                      const float *, float *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_mrx2_streaming(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                      const double *, double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_mr1x2_streaming(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                       const double *, double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_mrx1_streaming(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t,
                                      const double *, double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_mrx2(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t, const double *,
                            double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_4x2(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t, const double *,
                           double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_mrx1(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t, const double *,
                            double *, Py_ssize_t, int, int, int, int) noexcept
    void dwcy_gemm_f64_4x1(Py_ssize_t, const double *, Py_ssize_t, const double *, Py_ssize_t, const double *,
                           double *, Py_ssize_t, int, int, int, int) noexcept


cdef inline Py_ssize_t _gemm_kc(Py_ssize_t k) noexcept nogil:
    """The length of a block of K: K split evenly into the fewest blocks of at most DWCY_GEMM_KC."""
    cdef Py_ssize_t blocks = (k + DWCY_GEMM_KC - 1) // DWCY_GEMM_KC
    return (k + blocks - 1) // blocks


cdef inline Py_ssize_t _gemm_packed_size(Py_ssize_t k, Py_ssize_t n, int lanes) noexcept nogil:
    """Elements of packed weights and bias: (k + 1) rows of every panel."""
    return (k + 1) * _gemm_padded_n(n, lanes)


cdef inline const floating *_gemm_panel(const GemmWeights *gw, Py_ssize_t k0, Py_ssize_t p,
                                        const floating *dtype) noexcept nogil:
    """Panel p's block of K starting at k0 (kc x nr, or shorter for the last block)."""
    cdef Py_ssize_t kcb = min(gw.kc, gw.k - k0)
    return <const floating *>gw.panels_data + k0 * gw.panels * gw.nr + p * kcb * gw.nr


cdef inline Py_ssize_t _gemm_panels(Py_ssize_t n, int lanes) noexcept nogil:
    """Panels (NR = 2 vectors wide) of n output channels."""
    return (n + 2 * lanes - 1) // (2 * lanes)


cdef inline Py_ssize_t _gemm_padded_n(Py_ssize_t n, int lanes) noexcept nogil:
    """n rounded up to whole panels."""
    return _gemm_panels(n, lanes) * 2 * lanes


cdef void _gemm_describe(Py_ssize_t k, Py_ssize_t n, int lanes, void *panels_data, void *bias,
                         GemmWeights *gw) noexcept nogil:
    """Fill gw for weights (k, n): the panel width and count, the block of K, where panels and bias go."""
    gw.k = k
    gw.n = n
    gw.nr = 2 * lanes
    gw.panels = _gemm_panels(n, lanes)
    gw.kc = _gemm_kc(k)
    gw.panels_data = panels_data
    gw.bias = bias


cdef void _gemm_pack_bias(const floating *bias, const GemmWeights *gw, floating *padded) noexcept nogil:
    """The bias (n,) or NULL, zero-padded to whole panels."""
    memset(padded, 0, gw.panels * gw.nr * sizeof(floating))
    if bias != NULL:
        memcpy(padded, bias, gw.n * sizeof(floating))


cdef void _gemm_pack(const floating *weight, const floating *bias, Py_ssize_t k, Py_ssize_t n,
                     floating *packed, GemmWeights *gw) noexcept nogil:
    """Pack weight (k, n) and bias (n,) or NULL into ``packed`` (_gemm_packed_size elements); fill gw."""
    _gemm_describe(k, n, _lanes(weight), packed, packed + k * _gemm_padded_n(n, _lanes(weight)), gw)
    _gemm_pack_panels(weight, gw)
    _gemm_pack_bias(bias, gw, <floating *>gw.bias)


cdef void _gemm_pack_panels(const floating *weight, const GemmWeights *gw) noexcept nogil:
    """Pack weight (gw.k, gw.n) into the panels at gw.panels_data (k x padded n elements)."""
    cdef Py_ssize_t p, k0 = 0, kcb, n = gw.n
    while k0 < gw.k:
        kcb = min(gw.kc, gw.k - k0)
        for p in range(gw.panels):
            _pack_panel(weight + k0 * n, kcb, n, p * gw.nr, min(gw.nr, n - p * gw.nr), gw.nr,
                        <floating *>_gemm_panel(gw, k0, p, weight))
        k0 += kcb


cdef void _pack_panel(const floating *weight, Py_ssize_t k, Py_ssize_t n, Py_ssize_t col, Py_ssize_t cols,
                      Py_ssize_t nr, floating *panel) noexcept nogil:
    """panel (k, nr) = weight[:, col:col + cols], zero-padded: contiguous for the tiles, whatever n is."""
    if floating is float:
        dwcy_pack_panel_f32(weight + col, k, n, <int>cols, panel)
    else:
        dwcy_pack_panel_f64(weight + col, k, n, <int>cols, panel)


cdef inline void _tile(int mr, int rows, bint two_vectors, Py_ssize_t k, const floating *a, Py_ssize_t lda,
                       const floating *b, Py_ssize_t ldb, const floating *bias, floating *c, Py_ssize_t ldc,
                       int last_cols, bint first, int activation, floating *packing,
                       bint prefetching, bint streaming) noexcept nogil:
    """The register tile of mr (DWCY_GEMM_MR, DWCY_GEMM_MR1 or 4) rows, ``rows`` of them real, x one or two
    vectors (one vector: MR rows as groups of MR1, or 4); ``packing``: NULL, or where it copies the panel's
    rows it reads; else, with ``prefetching``, it fetches the packed panel's rows ahead (two vectors only for
    both); else, with ``streaming``, the rows of A of a tile ahead (MR or MR1 rows only; microkernels.h)."""
    if packing != NULL:
        if floating is float:
            if mr == DWCY_GEMM_MR:
                dwcy_gemm_f32_mrx2_packing(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation, packing)
            elif mr == DWCY_GEMM_MR1:
                dwcy_gemm_f32_mr1x2_packing(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation, packing)
            else:
                dwcy_gemm_f32_4x2_packing(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation, packing)
        elif mr == DWCY_GEMM_MR:
            dwcy_gemm_f64_mrx2_packing(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation, packing)
        elif mr == DWCY_GEMM_MR1:
            dwcy_gemm_f64_mr1x2_packing(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation, packing)
        else:
            dwcy_gemm_f64_4x2_packing(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation, packing)
        return
    if prefetching and two_vectors:
        if floating is float:
            if mr == DWCY_GEMM_MR:
                dwcy_gemm_f32_mrx2_prefetching(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
            elif mr == DWCY_GEMM_MR1:
                dwcy_gemm_f32_mr1x2_prefetching(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
            else:
                dwcy_gemm_f32_4x2_prefetching(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        elif mr == DWCY_GEMM_MR:
            dwcy_gemm_f64_mrx2_prefetching(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        elif mr == DWCY_GEMM_MR1:
            dwcy_gemm_f64_mr1x2_prefetching(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        else:
            dwcy_gemm_f64_4x2_prefetching(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        return
    if streaming and mr != 4:
        if floating is float:
            if not two_vectors:  # (MR rows as groups of MR1)
                dwcy_gemm_f32_mrx1_streaming(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
            elif mr == DWCY_GEMM_MR:
                dwcy_gemm_f32_mrx2_streaming(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
            else:
                dwcy_gemm_f32_mr1x2_streaming(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        elif not two_vectors:
            dwcy_gemm_f64_mrx1_streaming(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        elif mr == DWCY_GEMM_MR:
            dwcy_gemm_f64_mrx2_streaming(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        else:
            dwcy_gemm_f64_mr1x2_streaming(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        return
    if floating is float:
        if two_vectors:
            if mr == DWCY_GEMM_MR:
                dwcy_gemm_f32_mrx2(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
            elif mr == DWCY_GEMM_MR1:
                dwcy_gemm_f32_mr1x2(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
            else:
                dwcy_gemm_f32_4x2(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        elif mr == DWCY_GEMM_MR or mr == DWCY_GEMM_MR1:  # (MR rows as groups of MR1)
            dwcy_gemm_f32_mrx1(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        else:
            dwcy_gemm_f32_4x1(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
    else:
        if two_vectors:
            if mr == DWCY_GEMM_MR:
                dwcy_gemm_f64_mrx2(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
            elif mr == DWCY_GEMM_MR1:
                dwcy_gemm_f64_mr1x2(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
            else:
                dwcy_gemm_f64_4x2(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        elif mr == DWCY_GEMM_MR or mr == DWCY_GEMM_MR1:  # (MR rows as groups of MR1)
            dwcy_gemm_f64_mrx1(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)
        else:
            dwcy_gemm_f64_4x1(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation)


cdef inline void _gemm_cols(Py_ssize_t k, const floating *a, Py_ssize_t lda, Py_ssize_t rows, const floating *b,
                            Py_ssize_t ldb, const floating *bias, floating *c, Py_ssize_t ldc, int cols, bint first,
                            int activation, int mr, bint streaming, floating *packing=NULL,
                            bint prefetching=False) noexcept nogil:
    """c[:rows, :cols] for cols <= 2 vectors, over all rows of a: mr (_gemm_unit_rows or 4) rows a tile, then
    what is left in tiles of DWCY_GEMM_MR1 rows while more than 4 are, then of 4. With ``packing``, b is a
    whole panel of the caller's weight: the first tile copies it there as it reads it, and the others read
    the copy. With ``prefetching``, b is a packed panel, maybe cold: the first tile fetches it ahead. With
    ``streaming`` (_gemm_streams), each tile fetches the rows of A of a tile DWCY_GEMM_STREAM_AHEAD bytes on."""
    cdef int lanes = _lanes(a)
    cdef bint two_vectors = cols > lanes
    cdef int last_cols = cols - lanes if two_vectors else cols
    cdef Py_ssize_t i = 0
    cdef int tile_rows
    while i < rows:
        tile_rows = mr if i + mr <= rows else DWCY_GEMM_MR1 if rows - i > 4 else 4
        _tile(tile_rows, <int>min(tile_rows, rows - i), two_vectors, k, a + i * lda, lda, b, ldb, bias,
              c + i * ldc, ldc, last_cols, first, activation, packing, prefetching, streaming)
        if packing != NULL:  # packed now: the other tiles read the copy
            b, ldb, packing = packing, 2 * lanes, NULL
        prefetching = False  # the panel is in L1 now
        i += tile_rows


cdef inline int _gemm_unit_rows(Py_ssize_t k, Py_ssize_t n, int lanes) noexcept nogil:
    """Rows of the register tiles of a layer of k input and n output channels: DWCY_GEMM_MR, or DWCY_GEMM_MR1
    for a short K (DWCY_GEMM_SHORT_K) and tiles of two vectors (those of one run MR rows as groups of MR1
    anyway: as units of MR1, 112x112 32->16 ran 0.97-0.98x as fast)."""
    return DWCY_GEMM_MR1 if k <= DWCY_GEMM_SHORT_K and n > lanes else DWCY_GEMM_MR


cdef inline Py_ssize_t _gemm_units(Py_ssize_t panels, Py_ssize_t rows, int unit_rows) noexcept nogil:
    """Units of work of ``rows`` rows (_gemm_rows): every panel x every tile of unit_rows rows."""
    return panels * ((rows + unit_rows - 1) // unit_rows)


cdef inline bint _gemm_w_in_l1(Py_ssize_t k, Py_ssize_t n, int lanes, Py_ssize_t itemsize) noexcept nogil:
    """Do W's packed panels, two or more, all stay in L1 while the tiles pass (DWCY_GEMM_L1_W_BYTES)? Then
    the tiles run row tile by row tile, each over every panel (_gemm_rows_by_tile), not panel by panel."""
    return _gemm_panels(n, lanes) > 1 and k * _gemm_padded_n(n, lanes) * itemsize <= DWCY_GEMM_L1_W_BYTES


cdef inline bint _gemm_streams(Py_ssize_t pixels, Py_ssize_t k, Py_ssize_t itemsize) noexcept nogil:
    """Is A (pixels x k) so large (DWCY_STREAM_BYTES) that it comes from memory, and the tiles that read
    it panel by panel (_gemm_rows) had better fetch it ahead? (A layer's input is the output of the layer
    before, in cache when it fits there.) Row tile by row tile (_gemm_rows_by_tile), the tiles read A once, in
    order, and the hardware prefetchers keep up: fetched ahead, 8 images of 112x112 16->96 ran 1.05-1.19x
    slower."""
    return pixels * k * itemsize >= DWCY_STREAM_BYTES


cdef void _gemm_rows_by_tile(const GemmWeights *gw, const floating *a, Py_ssize_t rows, floating *c,
                             Py_ssize_t first, Py_ssize_t end, int activation, int unit_rows) noexcept nogil:
    """_gemm_rows for a packed W that stays in L1 (_gemm_w_in_l1: one block of K), unit u being panel
    u % panels of tile u // panels: each tile's rows of A are read once, and its rows of C written whole, in
    memory order. Panel by panel, a 112x112 16->96 layer wrote every row of C in three passes of two cache
    lines, and ran slower than the stores stream."""
    cdef Py_ssize_t k = gw.k, n = gw.n, nr = gw.nr, panels = gw.panels
    cdef Py_ssize_t t, p, p1, whole, row0, col, tile_rows
    end = min(end, _gemm_units(panels, rows, unit_rows))
    if first >= end:
        return
    for t in range(first // panels, (end - 1) // panels + 1):
        row0 = t * unit_rows
        tile_rows = min(unit_rows, rows - row0)
        p = max(first - t * panels, 0)
        p1 = min(end - t * panels, panels)
        if unit_rows == DWCY_GEMM_MR1 and tile_rows == unit_rows:  # its whole panels in one call
            whole = min(p1, n // nr) - p
            if whole > 0:
                if floating is float:
                    dwcy_gemm_f32_mr1x2_panels(k, a + row0 * k, k, _gemm_panel(gw, 0, p, a),
                                               <const floating *>gw.bias + p * nr, c + row0 * n + p * nr, n,
                                               <int>whole, activation)
                else:
                    dwcy_gemm_f64_mr1x2_panels(k, a + row0 * k, k, _gemm_panel(gw, 0, p, a),
                                               <const floating *>gw.bias + p * nr, c + row0 * n + p * nr, n,
                                               <int>whole, activation)
                p += whole
        for p in range(p, p1):
            col = p * nr
            _gemm_cols(k, a + row0 * k, k, tile_rows, _gemm_panel(gw, 0, p, a), nr, <const floating *>gw.bias + col,
                       c + row0 * n + col, n, <int>min(nr, n - col), True, activation, unit_rows, False)


cdef void _gemm_rows(const GemmWeights *gw, const floating *a, Py_ssize_t rows, floating *c,
                     Py_ssize_t first, Py_ssize_t end, int activation, int unit_rows, bint streaming,
                     const floating *weight=NULL, floating *panel=NULL) noexcept nogil:
    """Units [first, end) of c[:rows] = activation(a @ W + bias), a (rows, k) and c (rows, n) row-major.
    Unit u is tile u % tiles of panel u // tiles (tiles of unit_rows rows, _gemm_unit_rows or 4: tiles =
    ceil(rows / unit_rows); _gemm_units in all): a run of units is a run of one panel's tiles, then the
    next panel's. Tiles of either height sum each output element alike (bias, then k in order).

    K is taken in blocks (the tiles carry the partial sums over in c); the tiles read whole vectors from
    the packed panels and store only the panel's columns. With ``weight`` (k, n) (and gw.panels_data
    NULL), each block of a panel is packed into ``panel`` (kc x nr) as its tiles need it: by the first tile,
    which reads it in place (the copy then costs next to nothing: those loads are the tile's own, and they
    overlap its FMAs; a copy loop before the tiles, once kept for W's rows a page or more apart, ran 7x7
    320->1280 1.09-1.15x slower at two threads, 1.04x at one with W cold), or, for a last panel narrower
    than nr, by a copy loop that pads it with zeros.

    With ``streaming`` (_gemm_streams), the tiles of the first panel, which read the rows of A first, fetch
    them ahead (DWCY_GEMM_STREAM_AHEAD).
    """
    cdef Py_ssize_t k = gw.k, n = gw.n, nr = gw.nr, mr = unit_rows
    cdef Py_ssize_t tiles = (rows + mr - 1) // mr
    cdef Py_ssize_t p, col, kcb, row0, row1, k0 = 0
    cdef const floating *b
    cdef int act
    cdef bint cold
    end = min(end, _gemm_units(gw.panels, rows, unit_rows))
    if first >= end:
        return
    while k0 < k:
        kcb = min(gw.kc, k - k0)
        act = activation if k0 + kcb == k else 0  # the activation after the whole sum only
        for p in range(first // tiles, (end - 1) // tiles + 1):
            col = p * nr
            row0 = max(first - p * tiles, 0) * mr
            row1 = min(min(end - p * tiles, tiles) * mr, rows)
            cold = streaming and p == first // tiles
            if weight != NULL and n - col >= nr:
                _gemm_cols(kcb, a + row0 * k + k0, k, row1 - row0, weight + k0 * n + col, n,
                           <const floating *>gw.bias + col, c + row0 * n + col, n, <int>nr, k0 == 0, act, unit_rows,
                           cold, panel)
                continue
            if weight != NULL:
                _pack_panel(weight + k0 * n, kcb, n, col, min(nr, n - col), nr, panel)
                b = panel
            else:
                b = _gemm_panel(gw, k0, p, a)
            _gemm_cols(kcb, a + row0 * k + k0, k, row1 - row0, b, nr, <const floating *>gw.bias + col,
                       c + row0 * n + col, n, <int>min(nr, n - col), k0 == 0, act, unit_rows, cold, NULL,
                       weight == NULL)
        k0 += kcb


cdef inline Py_ssize_t _gemm_block_rows(Py_ssize_t rows, Py_ssize_t k, Py_ssize_t itemsize) noexcept nogil:
    """Rows per work item: MR-row tiles whose A rows (one block of K of them) fit DWCY_GEMM_BLOCK_BYTES,
    at most DWCY_GEMM_MAX_TILES, the rows shared evenly among the fewest such blocks (no sliver of a block
    that would pack every panel for a row or two)."""
    cdef Py_ssize_t mr = DWCY_GEMM_MR
    cdef Py_ssize_t most = DWCY_GEMM_BLOCK_BYTES // (_gemm_kc(k) * itemsize * mr)
    most = max(1, min(most, DWCY_GEMM_MAX_TILES)) * mr
    cdef Py_ssize_t blocks = (rows + most - 1) // most
    cdef Py_ssize_t share = (rows + blocks - 1) // blocks
    return (share + mr - 1) // mr * mr


cdef int _pw_run(const floating *x, const floating *weight, const floating *bias, floating *y,
                 Py_ssize_t pixels, Py_ssize_t k, Py_ssize_t n, int activation, int num_threads,
                 bint flush=False) noexcept nogil:
    """y (pixels, n) = activation(x (pixels, k) @ weight (k, n) + bias). Returns 0, or -1 out of memory.

    With at most two blocks of rows per thread (small images), W is packed a panel block at a time as the
    tiles use it, by each thread, mostly inside the first tile that reads it, into a buffer that stays in
    L1 (_gemm_rows): each block packs the panels again, but no thread packs all of W (for a 960 x 320 W:
    1.2 MB written and read back, a sixth of the call) while the others wait, and then read it from its
    core's cache (a 28x28 layer on two threads: 20 % of the time). With more blocks, W is packed once,
    ahead.
    """
    cdef int lanes = _lanes(x)
    cdef GemmWeights gw
    cdef floating *packed
    cdef int rc
    cdef PwWork work
    cdef int threads = _pw_split(pixels, k, n, lanes, sizeof(floating), num_threads, &work)
    if work.items // work.units <= 2 * threads:
        packed = <floating *>dwcy_malloc64(_gemm_padded_n(n, lanes) * sizeof(floating))  # the bias only
        if packed == NULL:
            return -1
        _gemm_describe(k, n, lanes, NULL, packed, &gw)
        _gemm_pack_bias(bias, &gw, packed)
        rc = _pw_run_packed(&gw, x, y, pixels, activation, num_threads, flush, weight)
    else:
        packed = <floating *>dwcy_malloc64(_gemm_packed_size(k, n, lanes) * sizeof(floating))
        if packed == NULL:
            return -1
        _gemm_pack(weight, bias, k, n, packed, &gw)
        rc = _pw_run_packed(&gw, x, y, pixels, activation, num_threads, flush)
    dwcy_free64(packed)
    return rc


cdef int _pw_run_packed(const GemmWeights *gw, const floating *x, floating *y, Py_ssize_t pixels,
                        int activation, int num_threads, bint flush=False,
                        const floating *weight=NULL) noexcept nogil:
    """y (pixels, n) = activation(x (pixels, k) @ W + bias), W and bias packed in gw, or (``weight``) W as
    it is, its panels packed as they are used (_gemm_rows); ``flush``: FTZ/DAZ. 0, or -1 out of memory.

    Work items: the units (panel x MR-row tile, _gemm_rows) of every block of rows, block by block; each
    thread takes an even, contiguous share of them. So the work divides evenly whatever the shape: a
    14x14 layer of 3 panels once ran as 3 items on 2 threads, one thread doing twice the other's work.
    """
    cdef PwWork work
    cdef int threads = _pw_split(pixels, gw.k, gw.n, _lanes(x), sizeof(floating), num_threads, &work)
    cdef Py_ssize_t panel_size = 0  # per thread: a panel's block, or with work.by_tile all of W
    if weight != NULL:
        panel_size = gw.k * gw.panels * gw.nr if work.by_tile else gw.kc * gw.nr
    cdef floating *panels = NULL
    if weight != NULL:
        panels = <floating *>dwcy_malloc64(threads * panel_size * sizeof(floating))
        if panels == NULL:
            return -1
    cdef int tid = 0
    if threads == 1:
        _pw_items(gw, x, y, pixels, &work, 0, work.items, activation, weight, panels, flush)
    else:
        with parallel(num_threads=_team(num_threads, threads)):
            tid = omp_get_thread_num()
            _pw_items(gw, x, y, pixels, &work, _share(work.items, threads, tid),
                      _share(work.items, threads, tid + 1), activation, weight, panels + tid * panel_size, flush)
    dwcy_free64(panels)
    return 0


ctypedef struct PwWork:
    # How _pw_run_packed splits a call: item = block * units + unit (_gemm_rows' units of a block of rows).
    Py_ssize_t block_rows   # rows of a block
    int unit_rows           # rows of a unit's tile: _gemm_unit_rows, or MR1 or 4 when those units are too few
    Py_ssize_t units        # units of a block (the last block's extra ones are empty)
    Py_ssize_t items        # in all
    bint by_tile            # units tile by tile (_gemm_rows_by_tile), not panel by panel (_gemm_rows)
    bint streaming          # A comes from memory: the tiles fetch it ahead (_gemm_streams; panel by panel only)


cdef inline int _pw_split(Py_ssize_t pixels, Py_ssize_t k, Py_ssize_t n, int lanes, Py_ssize_t itemsize,
                          int num_threads, PwWork *work) noexcept nogil:
    """The work items of a pointwise call (_pw_run_packed); returns the threads they take. Units of MR1-row
    tiles, else of 4-row ones, when MR-row ones would not give each thread four (a 7x7 layer's 4 row tiles x
    5 panels on 16 threads: a few threads did two units, all the others waited for them; but a 4-row tile
    loads six vectors for eight FMAs, and runs far below the FMA peak). Blocks of rows as many as the
    threads, or a multiple, where the threads are to take rows (_pw_threads_take_rows)."""
    cdef double multiply_adds = <double>pixels * k * n
    cdef int threads
    cdef Py_ssize_t blocks
    work.block_rows = _gemm_block_rows(pixels, k, itemsize)
    work.unit_rows = _gemm_unit_rows(k, n, lanes)
    work.by_tile = _gemm_w_in_l1(k, n, lanes, itemsize)
    work.streaming = not work.by_tile and _gemm_streams(pixels, k, itemsize)
    while True:
        _pw_count_items(pixels, n, lanes, work)
        threads = _threads_for(num_threads, work.items, multiply_adds)
        if work.unit_rows <= 4 or work.items >= 4 * threads:
            break
        work.unit_rows = DWCY_GEMM_MR1 if work.unit_rows > DWCY_GEMM_MR1 else 4
    blocks = (pixels + work.block_rows - 1) // work.block_rows
    if threads > 1 and blocks % threads != 0 and _pw_threads_take_rows(pixels, k, n):
        blocks = _round_up(blocks, threads)
        work.block_rows = _round_up((pixels + blocks - 1) // blocks, work.unit_rows)
        _pw_count_items(pixels, n, lanes, work)
    return threads


cdef inline void _pw_count_items(Py_ssize_t pixels, Py_ssize_t n, int lanes, PwWork *work) noexcept nogil:
    """work.units and work.items, from its block_rows and unit_rows."""
    work.units = _gemm_units(_gemm_panels(n, lanes), work.block_rows, work.unit_rows)
    work.items = (pixels + work.block_rows - 1) // work.block_rows * work.units


cdef inline bint _pw_threads_take_rows(Py_ssize_t pixels, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    """Do the threads share the rows (pixels) out, each reading all of W, rather than W's panels, each reading
    all of A? Rows when W is no larger than A and C together. In a network, A was written by the threads of
    the layer before, split by rows as well (depthwise.pxi's bands), and C is read by the next: a thread that
    reads all of A pulls most of it from the other cores' caches. On two threads, MobileNetV2's 14x14 blocks
    (expansion, depthwise, projection) ran 1.4-1.5x faster with rows than with panels (a single block of
    rows, split by panels, read at one thread's speed what the depthwise layer had just written); its 7x7
    layers, whose W is far larger than A and C, keep panels."""
    return k * n <= pixels * (k + n)


cdef void _pw_items(const GemmWeights *gw, const floating *x, floating *y, Py_ssize_t pixels,
                    const PwWork *work, Py_ssize_t first, Py_ssize_t end, int activation,
                    const floating *weight, floating *panel, bint flush) noexcept nogil:
    """Work items [first, end) (PwWork), in one thread (``flush``: FTZ/DAZ while they run)."""
    cdef Py_ssize_t block, row0, units = work.units
    cdef GemmWeights mine
    if first >= end:
        return
    if work.by_tile and weight != NULL:  # all of W, packed into this thread's buffer (it stays in L1)
        mine = gw[0]
        mine.panels_data = panel
        _gemm_pack_panels(weight, &mine)
        gw = &mine
    cdef unsigned int fpu = dwcy_fpu_enter(flush)
    for block in range(first // units, (end - 1) // units + 1):
        row0 = block * work.block_rows
        if work.by_tile:
            _gemm_rows_by_tile(gw, x + row0 * gw.k, min(work.block_rows, pixels - row0), y + row0 * gw.n,
                               max(first - block * units, 0), min(end - block * units, units), activation,
                               work.unit_rows)
        else:
            _gemm_rows(gw, x + row0 * gw.k, min(work.block_rows, pixels - row0), y + row0 * gw.n,
                       max(first - block * units, 0), min(end - block * units, units), activation,
                       work.unit_rows, work.streaming, weight, panel)
    dwcy_fpu_exit(flush, fpu)
