# Depthwise convolution, NHWC: the framework loops around the register tiles of microkernels.h.
#
# Work items are one image's output rows and channels, or with several threads and few images, groups
# of channel blocks and bands of rows (_dw_split). A band runs in chunks of channel blocks (a block: one
# vector, LANES channels) when the input (all images) fits in L2, each chunk over all the band's rows, so
# that the input rows consecutive output rows share stay in L1; larger inputs run all blocks row by row,
# reading each row in memory order (_dw_chunk). 3x3 kernels of stride 1 or 2, 5x5 and 7x7 of stride 1 run
# two output rows at a time where all their taps lie in the image (_dw_pairs: each input row loaded once
# for both). In a row:
#
#   kernels 3 wide of stride 1 or 2,    DWCY_DW_PIXELS pixels x DWCY_DW_FIXED_VECTORS vectors a tile from
#   5 or 7 wide of stride 1 (dilation   the left edge on (a last odd block: 1 vector), input loads shared
#   1), 3 wide of stride 1, dilation 2  among taps, padding columns skipped
#   other kernels, interior columns     DWCY_DW_PIXELS pixels x 1 vector a tile, then 4 pixels x 2
#   (every column tap in the image)     vectors for what is left, then single pixels
#   other kernels, borders              1 pixel x 4 vectors a tile, taps clipped to the image
#
# Rows whose taps reach into the top/bottom padding run fewer tap rows (nkh < KH); padding is never
# materialized. The last CO % LANES channels (the tail) run in the fixed-width tiles as one more block, with
# masked loads and stores, and for other kernels through a plain-C routine: either way nothing is read or
# written past the caller's arrays. In the fixed-width tiles, when x does not start on a 64-byte boundary
# (NumPy's arrays start 16 bytes into one), the blocks start `phase` lanes before channel 0, so that every
# load is aligned (_dw_phase); the first block wraps around: its lanes below the phase hold the pixel's last
# channels, loaded and stored apart, masked (no extra block). Weights and bias are packed per call into
# [block][KH][KW][LANES] (zero-padded, at that phase), so the tiles load whole vectors: each thread packs the
# blocks of its own work items, into a copy of its own (_dw_run).
#
# A channel multiplier M > 1 (output channel c*M + m reads input channel c) first expands the input rows
# of consecutive output rows, once, into a per-thread buffer with M copies of each channel
# (_dw_band_expanded); the same loops then run on it as on an M = 1 input with C*M channels. But M = 2 with
# kernels 3 wide of stride 1 or 2, on AVX-512, reads the input itself: its tiles load one input vector for
# two output vectors and permute it into both (_dw_dup2; 1.2-2.3x faster than the copy).
#
# Every tile sums an output element the same way (bias, then the taps in (kh, kw) order, padded taps
# skipped), and which tile computes which element depends on the geometry only: results are bitwise
# identical at any thread count.

cdef extern from "microkernels.h" nogil:
    int DWCY_VBYTES
    int DWCY_DW_PIXELS
    int DWCY_DW_NARROW_PIXELS
    int DWCY_DW_FIXED_VECTORS
    int DWCY_DW_L1_BYTES
    int DWCY_DW_CHUNK_INPUT_BYTES
    int DWCY_DW_EXPAND_BYTES
    int DWCY_DW_ALIGN_MIN_BLOCKS
    int DWCY_LANES_F32
    int DWCY_LANES_F64
    int DWCY_DW_STREAM_BYTES
    bint dwcy_all_finite_f32(const float *values, Py_ssize_t count) noexcept
    bint dwcy_all_finite_f64(const double *values, Py_ssize_t count) noexcept
    void dwcy_prefetch_share(const void *p, Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t bytes, Py_ssize_t part,
                             Py_ssize_t count, Py_ssize_t parts) noexcept
    void dwcy_dw_f32_mx1(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const float *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const float *bias, float *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f32_4x2(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const float *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const float *bias, float *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f32_4x1(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const float *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const float *bias, float *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f32_1x4(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const float *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const float *bias, float *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f32_1x1(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const float *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const float *bias, float *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f64_mx1(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const double *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const double *bias, double *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f64_4x2(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const double *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const double *bias, double *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f64_4x1(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const double *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const double *bias, double *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f64_1x4(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const double *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const double *bias, double *y, Py_ssize_t y_pix_step, int activation) noexcept
    void dwcy_dw_f64_1x1(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, Py_ssize_t pix_step,
                        const double *w, Py_ssize_t w_row_step, Py_ssize_t w_block_step, int nkh, int nkw,
                        const double *bias, double *y, Py_ssize_t y_pix_step, int activation) noexcept
    ctypedef enum RowTile "dwcy_row_tile":
        # Rows whose kernel width and stride have tiles of their own, borders included (_row_tile).
        ROW_GENERAL "DWCY_ROW_GENERAL"
        ROW_K3S1 "DWCY_ROW_K3S1"
        ROW_K3S2 "DWCY_ROW_K3S2"
        ROW_K5S1 "DWCY_ROW_K5S1"
        ROW_K7S1 "DWCY_ROW_K7S1"
        ROW_K3S1D2 "DWCY_ROW_K3S1D2"
    bint dwcy_dw_has_narrow(RowTile kind) noexcept
    bint dwcy_dw_has_dup2(RowTile kind) noexcept
    bint dwcy_dw_has_rows2(RowTile kind) noexcept
    void dwcy_dw_f32_fixed(RowTile kind, int vectors, bint narrow, bint dup2, const float *x, Py_ssize_t row_step,
                          Py_ssize_t col_step,
                          Py_ssize_t iw0, int q_lo, int q_hi, const float *w, Py_ssize_t w_row_step,
                          Py_ssize_t w_block_step, int nkh, const float *bias, float *y, Py_ssize_t y_pix_step,
                          int npix, int lo, int hi, int activation) noexcept
    void dwcy_dw_f64_fixed(RowTile kind, int vectors, bint narrow, bint dup2, const double *x, Py_ssize_t row_step,
                          Py_ssize_t col_step,
                          Py_ssize_t iw0, int q_lo, int q_hi, const double *w, Py_ssize_t w_row_step,
                          Py_ssize_t w_block_step, int nkh, const double *bias, double *y, Py_ssize_t y_pix_step,
                          int npix, int lo, int hi, int activation) noexcept
    int DWCY_DW_ROWS2
    void dwcy_dw_f32_rows2(RowTile kind, bint narrow, const float *x, Py_ssize_t row_step, Py_ssize_t col_step,
                           Py_ssize_t iw0, int q_lo, int q_hi, const float *w, Py_ssize_t w_row_step, const float *bias,
                           float *y, Py_ssize_t y_row_step, Py_ssize_t y_pix_step, int npix, int lo, int hi,
                           int activation) noexcept
    void dwcy_dw_f64_rows2(RowTile kind, bint narrow, const double *x, Py_ssize_t row_step, Py_ssize_t col_step,
                           Py_ssize_t iw0, int q_lo, int q_hi, const double *w, Py_ssize_t w_row_step,
                           const double *bias, double *y, Py_ssize_t y_row_step, Py_ssize_t y_pix_step, int npix,
                           int lo, int hi, int activation) noexcept
    void dwcy_dw_tail_float(const float *x, Py_ssize_t row_step, Py_ssize_t col_step, const float *w,
                            Py_ssize_t w_row_step, int nkh, int nkw, const float *bias, float *y,
                            int nc, int activation) noexcept
    void dwcy_dw_tail_double(const double *x, Py_ssize_t row_step, Py_ssize_t col_step, const double *w,
                             Py_ssize_t w_row_step, int nkh, int nkw, const double *bias, double *y,
                             int nc, int activation) noexcept


ctypedef struct DwPacked:
    # Depthwise weights and bias packed ahead (_dw_pack_weights), for calls whose input has this phase
    # (_dw_phase): kernels.pxi's Prepared keeps one per phase its calls met.
    const void *weights     # float or double, _dw_packed_size elements
    bint finite             # are the weights all finite (_all_finite)


ctypedef struct DwRow:
    # One output row's view of its input: what every tile call of the row shares.
    const void *x           # the first valid tap row, column 0, channel 0 (float or double)
    Py_ssize_t row_step     # elements between tap rows
    Py_ssize_t ci           # elements between input pixels (C, or C*M in an expanded buffer)
    Py_ssize_t kh0, nkh     # valid tap rows
    Py_ssize_t phase        # lanes by which the channel blocks start before channel 0 (_dw_phase)
    bint dup2               # x is the input of a multiplier of 2 itself, not expanded (_dw_dup2)
    const void *ahead       # NULL, or the first input row that the next output row (or pair) reads and this
    Py_ssize_t ahead_rows   # one does not, and how many: fetched as the tiles go (_dw_fetch_ahead)


cdef inline int _lanes(const floating *dummy) noexcept nogil:
    """Elements of one 64-byte vector: 16 floats or 8 doubles (the type of the unused argument picks)."""
    if floating is float:
        return DWCY_LANES_F32
    else:
        return DWCY_LANES_F64


cdef inline RowTile _row_tile(const DwGeometry *g) noexcept nogil:
    if g.dw == 2 and g.kw == 3 and g.sw == 1:
        return ROW_K3S1D2
    if g.dw != 1:
        return ROW_GENERAL
    if g.kw == 3 and g.sw == 1:
        return ROW_K3S1
    if g.kw == 3 and g.sw == 2:
        return ROW_K3S2
    if g.kw == 5 and g.sw == 1:
        return ROW_K5S1
    if g.kw == 7 and g.sw == 1:
        return ROW_K7S1
    return ROW_GENERAL


cdef inline Py_ssize_t _dw_phase(const floating *x, const DwGeometry *g) noexcept nogil:
    """Lanes by which the channel blocks start before channel 0, so that the tiles' loads of x are 64-byte
    aligned: NumPy's arrays start 16 bytes into a cache line, and a vector across two lines costs two reads
    (aligned, MobileNetV2's layers ran 1.2-1.45x faster at batch 1). The first block wraps around: its lanes
    below the phase are the pixel's last channels (microkernels.h: "lo, hi"), so every block stays whole but
    for its masks. Rows with tiles of their own only (_row_tile: their first vector is masked), without a
    multiplier (its expanded rows are aligned), with C a multiple of the lanes (every pixel starts at the same
    place in a line, and the wrapped lanes are whole channels) and at least DWCY_DW_ALIGN_MIN_BLOCKS blocks."""
    cdef int lanes = _lanes(x)
    cdef size_t offset = <uintptr_t>x % DWCY_VBYTES
    if (DWCY_DW_ALIGN_MIN_BLOCKS == 0 or g.m != 1 or _row_tile(g) == ROW_GENERAL or g.c % lanes != 0
            or g.c // lanes < DWCY_DW_ALIGN_MIN_BLOCKS or offset % sizeof(floating) != 0):
        return 0
    return <Py_ssize_t>(offset // sizeof(floating))


cdef inline bint _dw_dup2(const DwGeometry *g) noexcept nogil:
    """Do the rows of a multiplier of 2 run tiles that read the input itself, each input vector permuted into
    the two output vectors of its channels (microkernels.h's _dup2 tiles), rather than a copy of the input
    rows with each channel twice (_dw_band_expanded)? Copying took a third of a 14x14x576 call."""
    return g.m == 2 and dwcy_dw_has_dup2(_row_tile(g))


cdef inline bint _dw_narrow(RowTile kind, const DwGeometry *g) noexcept nogil:
    """Does this row run the narrower tiles (DWCY_DW_NARROW_PIXELS), computing fewer pixels in vain?"""
    cdef Py_ssize_t wide = DWCY_DW_PIXELS, narrow = DWCY_DW_NARROW_PIXELS
    if not dwcy_dw_has_narrow(kind):
        return False
    return (g.ow + narrow - 1) // narrow * narrow < (g.ow + wide - 1) // wide * wide


cdef void _dw_row_fixed(RowTile kind, const DwRow *r, const DwGeometry *g, const floating *wpack,
                        const floating *bpack, floating *y, Py_ssize_t b0, Py_ssize_t b1,
                        bint pair=False) noexcept nogil:
    """One output row of a kernel whose width and stride have a tile of their own (_row_tile), channel blocks
    [b0, b1), the first possibly wrapped around at a phase (_dw_phase) and the last possibly the partial block
    of the channel tail: DWCY_DW_PIXELS pixels a tile from the left edge on, each tile skipping the padding
    columns it meets and storing its real pixels and channels (DWCY_DW_NARROW_PIXELS a tile where they fit the
    row better: _dw_narrow); DWCY_DW_FIXED_VECTORS blocks at a time, the rest one at a time. With ``pair``
    (_dw_pairs; this row and the next with all their tap rows), this row and the next into y and the row
    after it, in two-row tiles of one block."""
    cdef int lanes = _lanes(wpack)
    cdef bint narrow = _dw_narrow(kind, g)
    cdef Py_ssize_t co = g.c * g.m, taps = g.kh * g.kw
    cdef Py_ssize_t pixels = DWCY_DW_NARROW_PIXELS if narrow else DWCY_DW_PIXELS
    cdef Py_ssize_t span = (pixels - 1) * g.sw + (g.kw - 1) * g.dw + 1  # input columns of a tile (DWCY_DW_SPAN)
    cdef Py_ssize_t end = co + r.phase  # the blocks' lanes [phase, end) are the channels (and [0, phase) wrap)
    cdef const floating *x = <const floating *>r.x - r.phase  # block b's first lane, of channel b*lanes - phase
    cdef Py_ssize_t x_block = lanes // 2 if r.dup2 else lanes  # elements of x between blocks
    cdef const floating *w = wpack + r.kh0 * g.kw * lanes
    cdef int most = 1 if pair else DWCY_DW_FIXED_VECTORS
    cdef Py_ssize_t t, ow0, iw0, b
    cdef int q_lo, q_hi, npix, vectors, lo, hi
    for t in range((g.ow + pixels - 1) // pixels):
        ow0 = t * pixels
        iw0 = ow0 * g.sw - g.pl
        q_lo = <int>max(0, min(span, -iw0))
        q_hi = <int>max(q_lo, min(span, g.w - iw0))
        npix = <int>min(pixels, g.ow - ow0)
        b = b0
        while b < b1:
            vectors = most if b + most <= b1 else 1
            if r.ahead != NULL:
                _dw_fetch_ahead(r, g, iw0 + q_lo, q_hi - q_lo, b - b0, vectors, b1 - b0, x)
            lo = <int>r.phase if b == 0 else 0
            hi = <int>min(lanes, end - (b + vectors - 1) * lanes)
            if floating is float:
                if pair:
                    dwcy_dw_f32_rows2(kind, narrow, x + b * x_block, r.row_step, r.ci, iw0, q_lo, q_hi,
                                      w + b * taps * lanes, g.kw * lanes, bpack + b * lanes,
                                      y + ow0 * co + b * lanes - r.phase, g.ow * co, co, npix, lo, hi,
                                      g.activation)
                else:
                    dwcy_dw_f32_fixed(kind, vectors, narrow, r.dup2, x + b * x_block, r.row_step, r.ci, iw0,
                                      q_lo, q_hi, w + b * taps * lanes, g.kw * lanes, taps * lanes, <int>r.nkh,
                                      bpack + b * lanes, y + ow0 * co + b * lanes - r.phase, co, npix, lo, hi,
                                      g.activation)
            else:
                if pair:
                    dwcy_dw_f64_rows2(kind, narrow, x + b * x_block, r.row_step, r.ci, iw0, q_lo, q_hi,
                                      w + b * taps * lanes, g.kw * lanes, bpack + b * lanes,
                                      y + ow0 * co + b * lanes - r.phase, g.ow * co, co, npix, lo, hi,
                                      g.activation)
                else:
                    dwcy_dw_f64_fixed(kind, vectors, narrow, r.dup2, x + b * x_block, r.row_step, r.ci, iw0,
                                      q_lo, q_hi, w + b * taps * lanes, g.kw * lanes, taps * lanes, <int>r.nkh,
                                      bpack + b * lanes, y + ow0 * co + b * lanes - r.phase, co, npix, lo, hi,
                                      g.activation)
            b += vectors


cdef inline void _dw_fetch_ahead(const DwRow *r, const DwGeometry *g, Py_ssize_t iw, Py_ssize_t columns,
                                 Py_ssize_t block, Py_ssize_t count, Py_ssize_t blocks,
                                 const floating *dtype) noexcept nogil:
    """Fetch columns [iw, iw + columns) of the rows r.ahead (the input rows that the next output row or pair will
    read first), as a tile reads those columns of its own rows: the share of channel blocks [block, block +
    count) of ``blocks``, so that each tile over those columns fetches a little. All of them before the first
    tile, the fetches held up the tiles' own loads: 8 images, against that, one thread 112x112x96 stride 2 1.6x
    faster, 56x56x144 1.35x, 112x112x96 1.1x, 112x112x32 1.0x; two threads (whose timings here move between
    phases) 1.5-1.6x, 0.9-1.35x, 1.1x, 0.92x."""
    dwcy_prefetch_share(<const floating *>r.ahead + iw * g.c, r.ahead_rows, g.w * g.c * sizeof(floating),
                        columns * g.c * sizeof(floating), block, count, blocks)


cdef inline bint _dw_pairs(const DwGeometry *g) noexcept nogil:
    """Do consecutive output rows whose taps all lie in the image run two at a time (_dw_row_fixed's pair)?
    For square kernels whose rows have two-row tiles (dwcy_dw_has_rows2: 3x3 of stride 1 or 2, 5x5 and 7x7 of
    stride 1, where this level has them), the same stride each way, dilation 1, no multiplier: MobileNetV2's
    3x3 layers ran 1.0-1.2x faster so than row by row."""
    return (dwcy_dw_has_rows2(_row_tile(g)) and g.kh == g.kw and g.sh == g.sw and g.dh == 1 and g.m == 1)


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


cdef inline void _dw_tile(int pixels, int vectors, const floating *x, Py_ssize_t row_step, Py_ssize_t col_step,
                          Py_ssize_t pix_step, const floating *w, Py_ssize_t w_row_step,
                          Py_ssize_t w_block_step, int nkh, int nkw, const floating *bias, floating *y,
                          Py_ssize_t y_pix_step, int activation) noexcept nogil:
    """The register tile of ``pixels`` x ``vectors``: (DWCY_DW_PIXELS, 1), (4, 2), (4, 1), (1, 4) or (1, 1)."""
    if floating is float:
        if pixels == 4:
            if vectors == 2:
                dwcy_dw_f32_4x2(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                                bias, y, y_pix_step, activation)
            else:
                dwcy_dw_f32_4x1(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                                bias, y, y_pix_step, activation)
        elif pixels == 1:
            if vectors == 4:
                dwcy_dw_f32_1x4(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                                bias, y, y_pix_step, activation)
            else:
                dwcy_dw_f32_1x1(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                                bias, y, y_pix_step, activation)
        else:
            dwcy_dw_f32_mx1(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                            bias, y, y_pix_step, activation)
    else:
        if pixels == 4:
            if vectors == 2:
                dwcy_dw_f64_4x2(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                                bias, y, y_pix_step, activation)
            else:
                dwcy_dw_f64_4x1(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                                bias, y, y_pix_step, activation)
        elif pixels == 1:
            if vectors == 4:
                dwcy_dw_f64_1x4(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                                bias, y, y_pix_step, activation)
            else:
                dwcy_dw_f64_1x1(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                                bias, y, y_pix_step, activation)
        else:
            dwcy_dw_f64_mx1(x, row_step, col_step, pix_step, w, w_row_step, w_block_step, nkh, nkw,
                            bias, y, y_pix_step, activation)


cdef inline Py_ssize_t _dw_lane_channel(Py_ssize_t lane, Py_ssize_t phase, Py_ssize_t channels) noexcept nogil:
    """The channel of a lane of the channel blocks (lane = block * lanes + l) at this phase: ``channels`` or
    more for the zero padding of a channel tail."""
    cdef Py_ssize_t c = lane - phase
    return c + channels if c < 0 else c


cdef inline Py_ssize_t _dw_channel_lane(Py_ssize_t channel, Py_ssize_t phase, Py_ssize_t channels) noexcept nogil:
    """The lane of a channel in the channel blocks at this phase (_dw_lane_channel's inverse)."""
    cdef Py_ssize_t lane = channel + phase
    return lane - channels if lane >= channels else lane


cdef void _dw_pack(const floating *weight, const floating *bias, Py_ssize_t taps, Py_ssize_t channels,
                   int lanes, Py_ssize_t phase, floating *wpack, floating *bpack, Py_ssize_t b0,
                   Py_ssize_t b1) noexcept nogil:
    """Blocks [b0, b1) of weight (taps, channels) -> wpack [block][taps][lanes] and of bias -> bpack
    [block][lanes], lane l of block b holding channel b*lanes + l - phase, or that plus ``channels`` below 0
    (the first block wraps around with a phase: _dw_phase), zero padded (the last block may be partial, a
    channel tail).

    Whole blocks by copies of a size known at compile time (vector moves): a memcpy call per block cost
    more than small images take to convolve. Block by block, so that the writes run in memory order (and the
    reads as ``taps`` streams): tap by tap, with the bias lane by lane, it took a tenth of a 7x7x960 call."""
    cdef Py_ssize_t first = max(b0, 1 if phase > 0 else 0), full = max(first, min(b1, (channels + phase) // lanes))
    cdef Py_ssize_t b, t, l, c
    for b in range(b0, b1):
        if first <= b < full:
            for t in range(taps):
                memcpy(wpack + (b * taps + t) * lanes, weight + t * channels + b * lanes - phase, DWCY_VBYTES)
            if bias != NULL:
                memcpy(bpack + b * lanes, bias + b * lanes - phase, DWCY_VBYTES)
            else:
                memset(bpack + b * lanes, 0, DWCY_VBYTES)
            continue
        for l in range(lanes):  # the wrapped block of a phase, the channel tail
            c = _dw_lane_channel(b * lanes + l, phase, channels)
            for t in range(taps):
                wpack[(b * taps + t) * lanes + l] = weight[t * channels + c] if c < channels else 0
            bpack[b * lanes + l] = bias[c] if bias != NULL and c < channels else 0


cdef void _dw_pixel(const DwRow *r, const DwGeometry *g, Py_ssize_t ow, const floating *wpack,
                    const floating *bpack, floating *y, Py_ssize_t b0, Py_ssize_t b1,
                    bint tail_channels) noexcept nogil:
    """One output pixel, taps clipped to the image: its full channel blocks [b0, b1) and/or its tail."""
    cdef int lanes = _lanes(wpack)
    cdef Py_ssize_t co = g.c * g.m
    cdef Py_ssize_t taps = g.kh * g.kw
    cdef Py_ssize_t blocks = co // lanes
    cdef int tail = <int>(co - blocks * lanes)
    cdef Py_ssize_t kw0, nkw, b = b0
    cdef Py_ssize_t iw0 = ow * g.sw - g.pl
    _tap_range(iw0, g.dw, g.kw, g.w, &kw0, &nkw)
    cdef const floating *x = <const floating *>r.x + ((iw0 + kw0 * g.dw) * r.ci if nkw > 0 else 0)
    cdef const floating *w = wpack + (r.kh0 * g.kw + kw0) * lanes
    cdef int vectors
    y += ow * co
    while b < b1:
        vectors = 4 if b + 4 <= b1 else 1
        _dw_tile(1, vectors, x + b * lanes, r.row_step, g.dw * r.ci, 0, w + b * taps * lanes, g.kw * lanes,
                 taps * lanes, <int>r.nkh, <int>nkw, bpack + b * lanes, y + b * lanes, 0, g.activation)
        b += vectors
    b = blocks
    if tail and tail_channels:  # the last co % lanes channels, in plain C
        if floating is float:
            dwcy_dw_tail_float(x + b * lanes, r.row_step, g.dw * r.ci, w + b * taps * lanes, g.kw * lanes,
                               <int>r.nkh, <int>nkw, bpack + b * lanes, y + b * lanes, tail, g.activation)
        else:
            dwcy_dw_tail_double(x + b * lanes, r.row_step, g.dw * r.ci, w + b * taps * lanes, g.kw * lanes,
                                <int>r.nkh, <int>nkw, bpack + b * lanes, y + b * lanes, tail, g.activation)


cdef void _dw_row(const DwRow *r, const DwGeometry *g, const floating *wpack, const floating *bpack,
                  floating *y, Py_ssize_t b0, Py_ssize_t b1, bint tail) noexcept nogil:
    """One output row, full channel blocks [b0, b1) and, with ``tail``, the channel tail (see the top of
    this file for who computes what)."""
    cdef int lanes = _lanes(wpack)
    cdef Py_ssize_t co = g.c * g.m
    cdef Py_ssize_t taps = g.kh * g.kw
    cdef Py_ssize_t pixels = DWCY_DW_PIXELS
    cdef Py_ssize_t col_step = g.dw * r.ci, pix_step = g.sw * r.ci
    cdef Py_ssize_t first, count, ow_lo, ow_hi, bulk_end, ow, b, t
    cdef int vectors
    tail = tail and co % lanes != 0
    cdef RowTile kind = _row_tile(g)
    if kind != ROW_GENERAL:  # the channel tail is one more, partial block
        _dw_row_fixed(kind, r, g, wpack, bpack, y, b0, b1 + 1 if tail else b1)
        return
    # Interior columns: ow whose first column tap ow*sw - pl lies in [0, W - (KW-1)*dw).
    _tap_range(-g.pl, g.sw, g.ow, g.w - (g.kw - 1) * g.dw, &first, &count)
    ow_lo = min(first, g.ow)
    ow_hi = ow_lo + count
    bulk_end = ow_lo + count // pixels * pixels
    cdef const floating *x = <const floating *>r.x  # the first column tap of ow is x + ow*sw*ci - pl*ci
    cdef const floating *w = wpack + r.kh0 * g.kw * lanes
    for t in range(count // pixels):  # pixel tiles outside, channel blocks inside: memory order
        ow = ow_lo + t * pixels
        for b in range(b0, b1):
            _dw_tile(pixels, 1, x + (ow * pix_step - g.pl * r.ci + b * lanes), r.row_step, col_step, pix_step,
                     w + b * taps * lanes, g.kw * lanes, 0, <int>r.nkh, <int>g.kw, bpack + b * lanes,
                     y + ow * co + b * lanes, co, g.activation)
    ow = bulk_end
    while ow + 4 <= ow_hi:
        b = b0
        while b < b1:
            vectors = 2 if b + 2 <= b1 else 1
            _dw_tile(4, vectors, x + (ow * pix_step - g.pl * r.ci + b * lanes), r.row_step, col_step, pix_step,
                     w + b * taps * lanes, g.kw * lanes, taps * lanes, <int>r.nkh, <int>g.kw,
                     bpack + b * lanes, y + ow * co + b * lanes, co, g.activation)
            b += vectors
        if tail:  # the channel tail of these 4 pixels
            for t in range(ow, ow + 4):
                _dw_pixel(r, g, t, wpack, bpack, y, 0, 0, True)
        ow += 4
    for ow in range(ow, ow_hi):
        _dw_pixel(r, g, ow, wpack, bpack, y, b0, b1, tail)
    for ow in range(ow_lo):
        _dw_pixel(r, g, ow, wpack, bpack, y, b0, b1, tail)
    for ow in range(ow_hi, g.ow):
        _dw_pixel(r, g, ow, wpack, bpack, y, b0, b1, tail)
    if tail:  # the channel tail of the bulk
        for ow in range(ow_lo, bulk_end):
            _dw_pixel(r, g, ow, wpack, bpack, y, 0, 0, True)


cdef void _expand_rows(const floating *image, const DwGeometry *g, Py_ssize_t ih0, Py_ssize_t count,
                       Py_ssize_t gap, floating *buf) noexcept nogil:
    """Copy the rows ih0, ih0 + gap, ... (count of them) of one image into buf, one after the other, each
    channel repeated M times."""
    cdef Py_ssize_t r, i, k
    cdef Py_ssize_t m = g.m, n = g.w * g.c
    cdef const floating *src
    cdef floating *dst
    for r in range(count):
        src = image + (ih0 + r * gap) * n
        dst = buf + r * n * m
        if m == 2:  # the common case, in a loop the compiler vectorizes
            for i in range(n):
                dst[2 * i] = src[i]
                dst[2 * i + 1] = src[i]
            continue
        for i in range(n):
            for k in range(m):
                dst[i * m + k] = src[i]


cdef inline Py_ssize_t _dw_expand_band(const DwGeometry *g, Py_ssize_t itemsize) noexcept nogil:
    """With a multiplier: output rows whose input rows are expanded in one go (DWCY_DW_EXPAND_BYTES at
    most), so that consecutive output rows share them; 0 when one output row's span of input rows does not
    fit (large dilations): then each output row expands just its own tap rows."""
    cdef Py_ssize_t span = (g.kh - 1) * g.dh + 1
    cdef Py_ssize_t fit = DWCY_DW_EXPAND_BYTES // max(1, g.w * g.c * g.m * itemsize)  # input rows
    if fit < span:
        return 0
    return (fit - span) // g.sh + 1


cdef inline Py_ssize_t _dw_expand_size(const DwGeometry *g, Py_ssize_t itemsize) noexcept nogil:
    """Elements of the per-thread buffer of M-times expanded input rows (0 without a multiplier), rounded
    up to 16 (64 bytes of floats) so that each thread's buffer starts on a 64-byte boundary."""
    if g.m == 1 or _dw_dup2(g):
        return 0
    cdef Py_ssize_t band = _dw_expand_band(g, itemsize)
    cdef Py_ssize_t rows = min(g.h, (band - 1) * g.sh + (g.kh - 1) * g.dh + 1) if band > 0 else g.kh
    return _round_up(rows * g.w * g.c * g.m, 16)


cdef inline bint _all_finite(const floating *values, Py_ssize_t count) noexcept nogil:
    """Are all these values finite (microkernels.h's dwcy_all_finite_*)?"""
    if floating is float:
        return dwcy_all_finite_f32(values, count)
    else:
        return dwcy_all_finite_f64(values, count)


cdef void _dw_poison_padded_taps(const DwRow *r, const DwGeometry *g, const floating *wpack,
                                 floating *yrow) noexcept nogil:
    """NaN where a padded tap meets a NaN or infinite weight: zero padding times NaN or Inf is NaN, as in the
    reference (and XNNPACK), though the tiles skip padded taps. Runs only for weights that are not all finite."""
    cdef int lanes = _lanes(wpack)
    cdef Py_ssize_t co = g.c * g.m, taps = g.kh * g.kw
    cdef Py_ssize_t ow, ch, i, j, kw0, nkw, p
    cdef floating v
    for ow in range(g.ow):
        _tap_range(ow * g.sw - g.pl, g.dw, g.kw, g.w, &kw0, &nkw)
        if r.nkh == g.kh and nkw == g.kw:
            continue
        for ch in range(co):
            for i in range(g.kh):
                for j in range(g.kw):
                    if r.kh0 <= i < r.kh0 + r.nkh and kw0 <= j < kw0 + nkw:
                        continue
                    p = _dw_channel_lane(ch, r.phase, co)
                    v = wpack[((p // lanes) * taps + i * g.kw + j) * lanes + p % lanes]
                    if v - v != 0:
                        yrow[ow * co + ch] = 0 * v  # NaN


cdef inline bint _dw_row_full(const DwGeometry *g, Py_ssize_t item) noexcept nogil:
    """Do all the tap rows of output row ``item`` = n * out_h + oh lie in the image?"""
    cdef Py_ssize_t ih_start = (item % g.oh) * g.sh - g.pt
    return ih_start >= 0 and ih_start + (g.kh - 1) * g.dh < g.h


cdef void _dw_row_input(const floating *x, const DwGeometry *g, Py_ssize_t item, floating *expand_buf,
                        Py_ssize_t expanded_from, Py_ssize_t phase, DwRow *r) noexcept nogil:
    """The input of output row ``item`` = n * out_h + oh, read by channel blocks of this phase (_dw_phase).
    With a multiplier, its rows are in expand_buf: the image's rows from ``expanded_from`` on, or
    (expanded_from < 0) expanded here, its tap rows only."""
    cdef Py_ssize_t n = item // g.oh
    cdef Py_ssize_t oh = item - n * g.oh
    cdef Py_ssize_t ih_start = oh * g.sh - g.pt
    _tap_range(ih_start, g.dh, g.kh, g.h, &r.kh0, &r.nkh)
    cdef const floating *image = x + n * g.h * g.w * g.c
    cdef Py_ssize_t ih0 = ih_start + r.kh0 * g.dh
    cdef Py_ssize_t row = g.w * g.c * g.m  # elements of an expanded row
    r.phase = phase
    r.dup2 = _dw_dup2(g)
    r.ahead = NULL
    r.ahead_rows = 0
    if g.m == 1 or r.dup2:
        r.x = image + (ih0 * g.w * g.c if r.nkh > 0 else 0)
        r.row_step = g.dh * g.w * g.c
        r.ci = g.c
        return
    r.ci = g.c * g.m
    if expanded_from >= 0:
        r.x = expand_buf + ((ih0 - expanded_from) * row if r.nkh > 0 else 0)
        r.row_step = g.dh * row
    else:
        _expand_rows(image, g, ih0, r.nkh, g.dh, expand_buf)
        r.x = expand_buf
        r.row_step = row


cdef inline bint _dw_input_in_l2(const DwGeometry *g, Py_ssize_t itemsize, Py_ssize_t images) noexcept nogil:
    """Does the input of ``images`` images fit in L2 (DWCY_DW_CHUNK_INPUT_BYTES)? Then slices of its rows (a
    chunk or a group of channel blocks) come from L2; those of a larger one would stream from L3 or memory far
    slower than whole rows."""
    return images * g.h * g.w * g.c * itemsize <= DWCY_DW_CHUNK_INPUT_BYTES


cdef inline Py_ssize_t _dw_chunk(const DwGeometry *g, int lanes, Py_ssize_t itemsize) noexcept nogil:
    """Channel blocks a band of rows runs at a time. When the whole input (every image) fits in L2
    (DWCY_DW_CHUNK_INPUT_BYTES): as many as keep the input rows that consecutive output rows (or pairs of rows:
    _dw_pairs) share in L1 (DWCY_DW_L1_BYTES), so that each input line comes from L2 once per block, not once
    per output row. Otherwise all of them: each row is then read in memory order, which streams from L3 or
    memory far better than one chunk's slice of it (8 images of 28x28x192 or 14x14x576: 1.03-1.1x, of
    14x14x384 0.97-1.0x). All of them with a multiplier too (rows are expanded per row)."""
    cdef Py_ssize_t blocks = (g.c * g.m) // lanes
    if g.m > 1 or not _dw_input_in_l2(g, itemsize, g.n):
        return max(1, blocks)
    cdef Py_ssize_t rows = (g.kh - 1) * g.dh + 1 + (g.sh if _dw_pairs(g) else 0)  # (a pair's)
    cdef Py_ssize_t span = rows * g.w * lanes * itemsize  # bytes of one block
    return max(DWCY_DW_FIXED_VECTORS, min(blocks, DWCY_DW_L1_BYTES // max(1, span)))


cdef inline Py_ssize_t _dw_part(Py_ssize_t first, Py_ssize_t end, Py_ssize_t parts, Py_ssize_t i) noexcept nogil:
    """Where part i of ``parts`` even parts of the channel blocks [first, end) begins (i = parts: end): in
    whole tiles of DWCY_DW_FIXED_VECTORS vectors, so that no part leaves a tile a vector short."""
    cdef Py_ssize_t step = DWCY_DW_FIXED_VECTORS
    if i >= parts:
        return end
    return first + i * ((end - first) // step) // parts * step


cdef inline bint _dw_streams(const DwGeometry *g, Py_ssize_t itemsize) noexcept nogil:
    """Are the input and output together so large (DWCY_DW_STREAM_BYTES) that the input comes from memory, and
    the tiles had better fetch the rows of the next output row (or pair) as they go?"""
    return g.n * (g.h * g.w * g.c + g.oh * g.ow * g.c * g.m) * itemsize >= DWCY_DW_STREAM_BYTES


cdef void _dw_set_ahead(const floating *x, const DwGeometry *g, Py_ssize_t item, Py_ssize_t rows,
                        DwRow *r) noexcept nogil:
    """r.ahead: the input rows that the ``rows`` output rows after the ``rows`` from ``item`` on read and these
    do not (within the image)."""
    cdef Py_ssize_t n = item // g.oh
    cdef Py_ssize_t oh = item - n * g.oh
    cdef Py_ssize_t last = (oh + rows - 1) * g.sh - g.pt + (g.kh - 1) * g.dh  # the last row these read
    cdef Py_ssize_t first = max(last + 1, 0)
    cdef Py_ssize_t end = min(last + rows * g.sh, g.h - 1) + 1
    r.ahead_rows = max(0, end - first)
    r.ahead = x + (n * g.h + first) * g.w * g.c if r.ahead_rows > 0 else NULL


cdef void _dw_band(const floating *x, const DwGeometry *g, Py_ssize_t item0, Py_ssize_t rows,
                   const floating *wpack, floating *y, floating *expand_buf, bint weights_finite, Py_ssize_t phase,
                   Py_ssize_t group=0, Py_ssize_t groups=1) noexcept nogil:
    """Output rows item0 .. item0+rows-1 (item = n * out_h + oh, all of one image) into y, the channels of
    ``group`` of ``groups`` even groups of channel blocks (the last with the channel tail), the weights and
    bias packed for this phase (_dw_phase) in ``wpack``: a chunk of channel blocks (_dw_chunk) over all the
    rows, then the next chunk."""
    cdef const floating *bpack = _dw_packed_bias(wpack, g)
    cdef int lanes = _lanes(x)
    cdef Py_ssize_t row_size = g.ow * g.c * g.m
    cdef Py_ssize_t blocks = _dw_split_blocks(g, lanes)
    cdef Py_ssize_t first = _dw_part(0, blocks, groups, group), end = _dw_part(0, blocks, groups, group + 1)
    cdef Py_ssize_t chunk = _dw_chunk(g, lanes, sizeof(floating))
    cdef Py_ssize_t chunks = max(1, (end - first + chunk - 1) // chunk)
    cdef Py_ssize_t c, i, b0, b1
    cdef bint pairs = _dw_pairs(g), tail
    cdef bint streaming = g.m == 1 and _dw_streams(g, sizeof(floating))
    cdef DwRow r
    if g.m > 1 and not _dw_dup2(g):  # (one group: the expanded rows serve all channels)
        _dw_band_expanded(x, g, item0, rows, wpack, bpack, y, expand_buf)
    else:
        for c in range(chunks):
            b0 = _dw_part(first, end, chunks, c)
            b1 = _dw_part(first, end, chunks, c + 1)
            tail = c == chunks - 1 and group == groups - 1 and (g.c * g.m) % lanes != 0
            i = 0
            while i < rows:
                _dw_row_input(x, g, item0 + i, expand_buf, -1, phase, &r)
                if (pairs and i + 1 < rows and _dw_row_full(g, item0 + i)
                        and _dw_row_full(g, item0 + i + 1)):
                    if streaming:
                        _dw_set_ahead(x, g, item0 + i, 2, &r)
                    _dw_row_fixed(_row_tile(g), &r, g, wpack, bpack, y + i * row_size, b0,
                                  b1 + 1 if tail else b1, True)
                    i += 2
                else:
                    if streaming:
                        _dw_set_ahead(x, g, item0 + i, 1, &r)
                    _dw_row(&r, g, wpack, bpack, y + i * row_size, b0, b1, tail)
                    i += 1
    if not weights_finite and group == groups - 1:
        for i in range(rows):
            _dw_row_input(x, g, item0 + i, expand_buf, -1, phase, &r)
            _dw_poison_padded_taps(&r, g, wpack, y + i * row_size)


cdef void _dw_band_expanded(const floating *x, const DwGeometry *g, Py_ssize_t item0, Py_ssize_t rows,
                            const floating *wpack, const floating *bpack, floating *y,
                            floating *expand_buf) noexcept nogil:
    """_dw_band with a multiplier: the input rows of _dw_expand_band output rows expanded at a time."""
    cdef Py_ssize_t row_size = g.ow * g.c * g.m, blocks = (g.c * g.m) // _lanes(x)
    cdef Py_ssize_t band = _dw_expand_band(g, sizeof(floating))
    cdef Py_ssize_t n = item0 // g.oh
    cdef Py_ssize_t i, s0, count, oh0, first, end
    cdef DwRow r
    if band == 0:
        for i in range(rows):
            _dw_row_input(x, g, item0 + i, expand_buf, -1, 0, &r)
            _dw_row(&r, g, wpack, bpack, y + i * row_size, 0, blocks, True)
        return
    cdef Py_ssize_t k
    for k in range((rows + band - 1) // band):
        s0 = k * band
        count = min(band, rows - s0)
        oh0 = item0 + s0 - n * g.oh
        first = max(0, oh0 * g.sh - g.pt)  # the input rows these output rows read: [first, end)
        end = min(g.h, (oh0 + count - 1) * g.sh - g.pt + (g.kh - 1) * g.dh + 1)
        if end > first:
            _expand_rows(x + n * g.h * g.w * g.c, g, first, end - first, 1, expand_buf)
        for i in range(s0, s0 + count):
            _dw_row_input(x, g, item0 + i, expand_buf, first, 0, &r)
            _dw_row(&r, g, wpack, bpack, y + i * row_size, 0, blocks, True)


cdef inline Py_ssize_t _dw_blocks(const DwGeometry *g, int lanes) noexcept nogil:
    """Channel blocks of one vector, the last possibly partial (a channel tail). At any phase (_dw_phase):
    with one, the first block wraps around (its lanes below the phase hold the last channels)."""
    return (g.c * g.m + lanes - 1) // lanes


cdef inline Py_ssize_t _dw_split_blocks(const DwGeometry *g, int lanes) noexcept nogil:
    """The blocks that work items and chunks split among them (_dw_part): all but the partial block of a
    channel tail, which goes with the last."""
    return (g.c * g.m) // lanes


cdef inline Py_ssize_t _dw_packed_size(const DwGeometry *g, int lanes) noexcept nogil:
    """Elements of the packed weights [block][KH][KW][lanes] followed by the packed bias [block][lanes]."""
    return _dw_blocks(g, lanes) * (g.kh * g.kw + 1) * lanes


cdef inline const floating *_dw_packed_bias(const floating *packed, const DwGeometry *g) noexcept nogil:
    cdef int lanes = _lanes(packed)
    return packed + _dw_blocks(g, lanes) * g.kh * g.kw * lanes


cdef void _dw_pack_weights(const floating *weight, const floating *bias, const DwGeometry *g, Py_ssize_t phase,
                           floating *packed) noexcept nogil:
    """Pack weight (KH, KW, C*M) and bias (C*M,) or NULL into ``packed`` (_dw_packed_size elements)."""
    _dw_pack_blocks(weight, bias, g, phase, packed, 0, _dw_blocks(g, _lanes(weight)))


cdef inline void _dw_pack_blocks(const floating *weight, const floating *bias, const DwGeometry *g,
                                 Py_ssize_t phase, floating *packed, Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """_dw_pack_weights for the channel blocks [b0, b1) only."""
    _dw_pack(weight, bias, g.kh * g.kw, g.c * g.m, _lanes(weight), phase, packed,
             <floating *>_dw_packed_bias(packed, g), b0, b1)


cdef void _dw_pack_ahead(const floating *weight, const floating *bias, const DwGeometry *g, Py_ssize_t phase,
                         floating *buffer, DwPacked *packed) noexcept nogil:
    """Pack weight and bias at this phase into ``buffer`` (_dw_packed_size elements) and describe them, with the
    weights' finiteness, in ``packed``: what _dw_run and _sep_run_packed read instead of packing their own."""
    _dw_pack_weights(weight, bias, g, phase, buffer)
    packed.weights = buffer
    packed.finite = _all_finite(weight, g.kh * g.kw * g.c * g.m)


cdef void _dw_pack_groups(const floating *weight, const floating *bias, const DwGeometry *g, Py_ssize_t phase,
                          floating *packed, Py_ssize_t groups, Py_ssize_t first, Py_ssize_t end) noexcept nogil:
    """Pack into ``packed`` the channel blocks that work items [first, end) read (_dw_split): those of
    their groups (item % groups; the last group's include the partial block of the tail), or all blocks
    when the items cover every group."""
    cdef int lanes = _lanes(weight)
    cdef Py_ssize_t whole = _dw_split_blocks(g, lanes), blocks = _dw_blocks(g, lanes), item, group
    if end - first >= groups:
        _dw_pack_blocks(weight, bias, g, phase, packed, 0, blocks)
        return
    for item in range(first, end):  # fewer items than groups: distinct groups
        group = item % groups
        _dw_pack_blocks(weight, bias, g, phase, packed, _dw_part(0, whole, groups, group),
                        _dw_part(0, whole, groups, group + 1) if group + 1 < groups else blocks)


cdef inline bint _dw_blocks_own_lines(const floating *y, const DwGeometry *g, Py_ssize_t phase) noexcept nogil:
    """Does each channel block of y, at this phase (_dw_phase), start a cache line? Those of a new output do (it
    starts as far into a line as x: kernels.pxi); not those of an ``out=`` elsewhere in a line, nor those of a
    channel tail (its pixels start at different places in a line)."""
    return (g.c * g.m) % _lanes(y) == 0 and (<uintptr_t>y - <uintptr_t>(phase * sizeof(floating))) % DWCY_VBYTES == 0


cdef inline Py_ssize_t _dw_items_most(const DwGeometry *g, int lanes) noexcept nogil:
    """The most work items _dw_split can make (bands of one row, groups of one tile of DWCY_DW_FIXED_VECTORS
    blocks): the threads a call may take (_threads_for). Not the rows alone: on 16 threads, a 7-row output ran
    in groups on 6 threads (the work allowed no more) 1.1x faster than in rows on 7, each thread reading three
    input rows for one output row."""
    return g.n * g.oh * max(1, _dw_split_blocks(g, lanes) // DWCY_DW_FIXED_VECTORS)


cdef inline Py_ssize_t _dw_band_start(const DwGeometry *g, Py_ssize_t bands, Py_ssize_t band) noexcept nogil:
    """The first output row of band ``band`` of ``bands`` (band = bands: out_h): rows shared as evenly as they
    go, so that threads taking even runs of bands get even work (bands of whole ceil(out_h / bands) rows split
    56x56x144 stride 2's 28 rows 16 : 12 on two threads)."""
    return band * g.oh // bands


cdef void _dw_split(const DwGeometry *g, int lanes, Py_ssize_t itemsize, int threads, bint weights_finite,
                    bint own_lines, Py_ssize_t *bands, Py_ssize_t *groups) noexcept nogil:
    """Work items: bands of output rows x groups of channel blocks (_dw_band). One image's rows and channels
    a work item, or with several threads and few images, one or four items a thread (below): bands of rows,
    so that each thread works on the rows (pixels) that the layer before, split by rows as well
    (pointwise.pxi's _pw_threads_take_rows), left in its core's cache, and leaves its own rows there for the
    next. Groups of channels first where rows are too few to share evenly (_dw_rows_uneven), for an image
    whose input fits in L2 (each group reads its own slice of every row, and keeps the rows consecutive output
    rows share in cache): on two threads, a 7-row output ran 1.15x faster in groups than in bands of 4 and 3
    rows, but MobileNetV2's 14x14 blocks 1.2x slower (each thread read half of its input from the other
    core's cache). One group with a multiplier (its expanded rows serve all channels) or with weights that
    are not all finite (the NaNs of their padded taps go in after all of a row's channels). And one group
    where threads would run groups of the same rows while their blocks share lines of y (not ``own_lines``:
    _dw_blocks_own_lines): on two threads, bands ran 14x14x384 1.7x faster than groups so into an ``out=`` at
    the start of a line from an x 16 bytes into one, and 14x14x389 (a channel tail) 1.5x.

    One work item a thread where that makes as many items as threads (or a multiple), else four a thread,
    which keeps the threads even where items are not: every item's edge breaks a pair of rows (_dw_pairs) and
    a chunk's reuse of input rows in L1 (_dw_chunk), and on two threads, one item each ran the 14x14 and 7x7
    layers 1.08-1.34x faster than four each (batch 1; the 28x28 to 112x112 ones 1.0-1.08x)."""
    _dw_split_for(g, lanes, itemsize, threads, threads, weights_finite, own_lines, bands, groups)
    if (g.n * bands[0] * groups[0]) % threads != 0:
        _dw_split_for(g, lanes, itemsize, threads, 4 * threads, weights_finite, own_lines, bands, groups)


cdef inline void _dw_split_for(const DwGeometry *g, int lanes, Py_ssize_t itemsize, int threads, Py_ssize_t want,
                               bint weights_finite, bint own_lines, Py_ssize_t *bands,
                               Py_ssize_t *groups) noexcept nogil:
    """_dw_split's bands and groups for about ``want`` work items in all."""
    cdef Py_ssize_t blocks = (g.c * g.m) // lanes
    cdef Py_ssize_t grp = 1
    if (g.n < want and g.m == 1 and weights_finite and _dw_input_in_l2(g, itemsize, 1)
            and _dw_rows_uneven(g, threads)):
        grp = max(1, min(blocks // DWCY_DW_FIXED_VECTORS, (want + g.n - 1) // g.n))
    if grp > 1 and not own_lines and (g.n * _dw_bands(g, want, grp)) % threads != 0:  # (else whole bands each)
        grp = 1
    bands[0] = _dw_bands(g, want, grp)
    groups[0] = grp


cdef inline bint _dw_rows_uneven(const DwGeometry *g, int threads) noexcept nogil:
    """Would bands of rows leave the threads uneven work? When the output rows, fewer than 8 a thread, do not
    divide among them (7 rows on two threads; 14 do)."""
    cdef Py_ssize_t rows = g.n * g.oh
    return rows % threads != 0 and rows < 8 * threads


cdef inline Py_ssize_t _dw_bands(const DwGeometry *g, Py_ssize_t want, Py_ssize_t groups) noexcept nogil:
    """Bands of output rows per image (at most out_h) for ``want`` work items in all, with ``groups`` groups
    of channel blocks an image (_dw_split)."""
    if g.n * groups >= want:
        return 1
    return min(g.oh, (want + g.n * groups - 1) // (g.n * groups))


cdef enum:
    DW_STACK_BYTES = 4096  # _dw_run's buffers up to this size are on the stack


cdef int _dw_run(const floating *x, const floating *weight, const floating *bias, floating *y,
                 const DwGeometry *g, int num_threads, bint flush=False, const DwPacked *packed=NULL) noexcept nogil:
    """The whole depthwise convolution. Returns 0, or -1 when memory runs out (nothing written then).
    ``flush``: subnormal inputs and results are zero (FTZ and DAZ) in every thread, for this call only.
    ``packed``: the weights packed ahead, at the phase of x (else NULL), which all threads then read.

    Each thread packs the weights and bias of the channel blocks it runs into a copy of its own
    (_dw_pack_groups), at the phase that aligns the loads of x (_dw_phase): no serial prologue, no wait for
    another thread, and the packed blocks are in the cache of the core that reads them. (Packed once by
    the caller's thread, they were read from another core's cache, and written back there by the next
    call: a 7x7x960 layer ran no faster on two threads than on one.)
    """
    cdef Py_ssize_t row_size = g.ow * g.c * g.m
    cdef int threads = _threads_for(num_threads, _dw_items_most(g, _lanes(x)),
                                    <double>g.n * g.oh * row_size * g.kh * g.kw * DWCY_DW_MADD_COST)
    cdef DwWork work
    work.phase = _dw_phase(x, g)
    work.packed = packed.weights if packed != NULL else NULL
    work.finite = packed.finite if packed != NULL else _all_finite(weight, g.kh * g.kw * g.c * g.m)
    _dw_split(g, _lanes(x), sizeof(floating), threads, work.finite, _dw_blocks_own_lines(y, g, work.phase),
              &work.bands, &work.groups)
    cdef Py_ssize_t items = g.n * work.bands * work.groups
    threads = <int>min(threads, items)
    # Per thread: its packed weights (unless packed ahead), then its expansion buffer (multiplier), 64-byte
    # aligned.
    cdef Py_ssize_t pack_size = _dw_packed_size(g, _lanes(x)) if packed == NULL else 0
    cdef Py_ssize_t per_thread = pack_size + _dw_expand_size(g, sizeof(floating))
    # Small ones on this thread's stack: a tiny call then allocates nothing (posix_memalign took ~15 % of a
    # 1x4x4x16 call).
    cdef size_t buffer_bytes = threads * per_thread * sizeof(floating)
    cdef char on_stack[DW_STACK_BYTES + 64]
    cdef bint on_heap = buffer_bytes > DW_STACK_BYTES
    cdef floating *buffers = <floating *>(on_stack + (64 - <uintptr_t>on_stack % 64) % 64)
    if on_heap:
        buffers = <floating *>dwcy_malloc64(buffer_bytes)
        if buffers == NULL:
            return -1
    cdef int tid = 0
    cdef floating *mine = NULL
    if threads == 1:  # in the caller's thread, no OpenMP region
        _dw_items(x, weight, bias, y, g, &work, buffers, pack_size, 0, items, flush)
    else:
        with parallel(num_threads=_team(num_threads, threads)):
            tid = omp_get_thread_num()
            mine = buffers + tid * per_thread
            _dw_items(x, weight, bias, y, g, &work, mine, pack_size, _share(items, threads, tid),
                      _share(items, threads, tid + 1), flush)
    if on_heap:
        dwcy_free64(buffers)
    return 0


ctypedef struct DwWork:
    # How _dw_run splits a call into work items: item = (n * bands + band) * groups + group.
    Py_ssize_t bands              # bands of output rows per image (_dw_band_start)
    Py_ssize_t groups             # groups of channel blocks
    bint finite                   # are the weights all finite (_dw_band)
    Py_ssize_t phase              # of the channel blocks (_dw_phase)
    const void *packed            # the weights packed ahead at that phase, or NULL: each thread packs its own


cdef void _dw_items(const floating *x, const floating *weight, const floating *bias, floating *y,
                    const DwGeometry *g, const DwWork *work, floating *buffer, Py_ssize_t pack_size,
                    Py_ssize_t first, Py_ssize_t end, bint flush) noexcept nogil:
    """Work items [first, end), in one thread: the blocks they read packed into ``buffer`` first (pack_size
    elements; none when work.packed has them); the rest of ``buffer`` is the expansion buffer (multiplier)."""
    cdef Py_ssize_t row_size = g.ow * g.c * g.m
    cdef Py_ssize_t item, band, n, oh0, oh1
    cdef const floating *wpack = <const floating *>work.packed if work.packed != NULL else buffer
    if first >= end:
        return
    if work.packed == NULL:
        _dw_pack_groups(weight, bias, g, work.phase, buffer, work.groups, first, end)
    cdef unsigned int fpu = dwcy_fpu_enter(flush)
    for item in range(first, end):
        band = item // work.groups
        n = band // work.bands
        oh0 = _dw_band_start(g, work.bands, band - n * work.bands)
        oh1 = _dw_band_start(g, work.bands, band - n * work.bands + 1)
        _dw_band(x, g, n * g.oh + oh0, oh1 - oh0, wpack, y + (n * g.oh + oh0) * row_size,
                 buffer + pack_size, work.finite, work.phase, item % work.groups, work.groups)
    dwcy_fpu_exit(flush, fpu)
