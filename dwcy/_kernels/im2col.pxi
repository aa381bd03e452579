# The patches of a KxK convolution (models.py's stem, 3x3 stride 2 on RGB images): im2col, so that a
# pointwise GEMM computes the convolution. Rows of output pixels are shared among threads.


cdef inline void _copy_values(floating *dst, const floating *src, Py_ssize_t count) noexcept nogil:
    """memcpy of ``count`` values, inlined for a 3x3 kernel on 3 channels (9 values: the RGB stem): a library
    memcpy call for each tap row of each pixel took three quarters of the stem's im2col."""
    if count == 9:
        memcpy(dst, src, 9 * sizeof(floating))
    else:
        memcpy(dst, src, count * sizeof(floating))


cdef void _im2col_rows(const floating *x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c, Py_ssize_t oh,
                       Py_ssize_t ow, int kernel, int stride, int padding, Py_ssize_t first, Py_ssize_t end,
                       floating *out) noexcept nogil:
    """Output rows [first, end) (row = n * oh + output row) of im2col (see kernels.pxi): per pixel, a tap
    row's K*C values copied at once where the row lies inside the image, zeros for the padding."""
    cdef Py_ssize_t run = kernel * c  # the values of one tap row of one patch
    cdef Py_ssize_t row, n, r, col, kh, kw, ih, iw0
    cdef const floating *image
    cdef floating *dst
    for row in range(first, end):
        n = row // oh
        r = row - n * oh
        image = x + n * h * w * c
        dst = out + row * ow * kernel * run
        for col in range(ow):
            iw0 = col * stride - padding
            for kh in range(kernel):
                ih = r * stride - padding + kh
                if ih < 0 or ih >= h:
                    memset(dst, 0, run * sizeof(floating))
                elif 0 <= iw0 and iw0 + kernel <= w:
                    _copy_values(dst, image + (ih * w + iw0) * c, run)
                else:
                    for kw in range(kernel):
                        if 0 <= iw0 + kw < w:
                            memcpy(dst + kw * c, image + (ih * w + iw0 + kw) * c, c * sizeof(floating))
                        else:
                            memset(dst + kw * c, 0, c * sizeof(floating))
                dst += run


cdef void _im2col_run(const floating *x, Py_ssize_t n, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c,
                      Py_ssize_t oh, Py_ssize_t ow, int kernel, int stride, int padding, floating *out,
                      int num_threads) noexcept nogil:
    """All rows of im2col, shared out in even runs (a copy counts as two multiply-adds for _threads_for)."""
    cdef Py_ssize_t rows = n * oh
    cdef int threads = _threads_for(num_threads, rows, 2.0 * rows * ow * kernel * kernel * c)
    cdef int tid = 0
    if threads == 1:
        _im2col_rows(x, h, w, c, oh, ow, kernel, stride, padding, 0, rows, out)
        return
    with parallel(num_threads=_team(num_threads, threads)):
        tid = omp_get_thread_num()
        _im2col_rows(x, h, w, c, oh, ow, kernel, stride, padding, _share(rows, threads, tid),
                     _share(rows, threads, tid + 1), out)
