/*
 * dwcy register tiles: the innermost loops, where the C compiler must keep accumulators in registers.
 *
 * The framework (blocking, threading, borders, packing) is Cython (depthwise.pxi); only the register tiles
 * live here, because gcc's auto-vectorization of the Cython loops does not hold a multi-pixel tile of
 * accumulators in registers. Written with GCC/Clang vector extensions: one "vector" is DWCY_VBYTES bytes
 * (16 floats or 8 doubles), which the compiler splits into two AVX2 or four SSE registers where the target
 * has no 512-bit ones. A plain-C fallback computes the same sums in the same order for other compilers.
 *
 * Names follow XNNPACK's: dwcy_<op>_<dtype>_<tile>. Tile sizes per SIMD level are in one table below.
 *
 * Every routine reads and writes only the elements it is told to: no over-read past a channel tail.
 * Each output element is accumulated in a fixed order (bias, then taps in (kh, kw) order), whatever the
 * caller's blocking or thread count, so results are bitwise reproducible.
 */
#ifndef DWCY_MICROKERNELS_H
#define DWCY_MICROKERNELS_H

#include <stddef.h>
#include <string.h>

/* ---------------------------------------------------------------- the tile table, per SIMD level */
#define DWCY_VBYTES 64
#if defined(__AVX512F__)
#define DWCY_SIMD_LEVEL "avx512"
#define DWCY_DW_PIXELS 8 /* 8 accumulators + weight + input of 32 zmm registers */
#elif defined(__AVX2__)
#define DWCY_SIMD_LEVEL "avx2"
#define DWCY_DW_PIXELS 4 /* each 64-byte vector takes two of the 16 ymm registers */
#elif defined(__SSE2__) || defined(__aarch64__)
#define DWCY_SIMD_LEVEL "sse2"
#define DWCY_DW_PIXELS 2
#else
#define DWCY_SIMD_LEVEL "generic"
#define DWCY_DW_PIXELS 2
#endif

#define DWCY_LANES_F32 ((int)(DWCY_VBYTES / sizeof(float)))
#define DWCY_LANES_F64 ((int)(DWCY_VBYTES / sizeof(double)))

#if (defined(__GNUC__) || defined(__clang__)) && !defined(DWCY_NO_VECTOR_EXTENSIONS)
#define DWCY_VECTOR_EXTENSIONS 1
typedef float dwcy_vf32 __attribute__((vector_size(DWCY_VBYTES)));
typedef double dwcy_vf64 __attribute__((vector_size(DWCY_VBYTES)));
#else
#define DWCY_VECTOR_EXTENSIONS 0
#endif

/*
 * Depthwise tile: NPIX output pixels of one output row x one vector of channels.
 *
 *   x          input at (first valid tap row, first valid tap column of the first pixel, first channel)
 *   row_step   elements between tap rows (dilation_h * W * C)
 *   col_step   elements between tap columns (dilation_w * C)
 *   pix_step   elements between the inputs of neighbouring output pixels (stride_w * C)
 *   w          packed weights at the first valid tap: [KH][KW][LANES], so
 *   w_row_step elements between tap rows of w (KW * LANES); a tap column is LANES further
 *   nkh, nkw   valid taps (the border routines pass fewer than KH, KW)
 *   bias       LANES packed biases (zeros when the call has none)
 *   y, y_pix_step   output of the first pixel, elements between output pixels (C * M)
 */
#if DWCY_VECTOR_EXTENSIONS
#define DWCY_DEFINE_DW_TILE(NAME, T, V, NPIX)                                                                   \
    static inline void NAME(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, ptrdiff_t pix_step,        \
                            const T *w, ptrdiff_t w_row_step, int nkh, int nkw, const T *bias, T *y,       \
                            ptrdiff_t y_pix_step)                                                          \
    {                                                                                                      \
        V acc[NPIX], b, wv, xv;                                                                            \
        memcpy(&b, bias, sizeof(V));                                                                       \
        for (int p = 0; p < NPIX; p++) acc[p] = b;                                                         \
        for (int i = 0; i < nkh; i++) {                                                                    \
            const T *xr = x + i * row_step;                                                                \
            const T *wr = w + i * w_row_step;                                                              \
            for (int j = 0; j < nkw; j++) {                                                                \
                memcpy(&wv, wr + j * (ptrdiff_t)(sizeof(V) / sizeof(T)), sizeof(V));                       \
                const T *xc = xr + j * col_step;                                                           \
                for (int p = 0; p < NPIX; p++) {                                                           \
                    memcpy(&xv, xc + p * pix_step, sizeof(V));                                             \
                    acc[p] += xv * wv;                                                                     \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
        for (int p = 0; p < NPIX; p++) memcpy(y + p * y_pix_step, &acc[p], sizeof(V));                     \
    }
#else
#define DWCY_DEFINE_DW_TILE(NAME, T, V, NPIX)                                                                   \
    static inline void NAME(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, ptrdiff_t pix_step,        \
                            const T *w, ptrdiff_t w_row_step, int nkh, int nkw, const T *bias, T *y,       \
                            ptrdiff_t y_pix_step)                                                          \
    {                                                                                                      \
        const int lanes = DWCY_VBYTES / sizeof(T);                                                         \
        for (int p = 0; p < NPIX; p++)                                                                     \
            dwcy_dw_tail_##T(x + p * pix_step, row_step, col_step, w, w_row_step, nkh, nkw, bias,          \
                             y + p * y_pix_step, lanes);                                                   \
    }
#endif

/*
 * Depthwise channel tail: one output pixel x nc (< LANES) channels, in plain C. Same arguments as the
 * tile; w and bias are still packed LANES wide (the packed buffers are dwcy's own, zero-padded), but x and
 * y are the caller's arrays, so only nc channels of them are touched.
 */
#define DWCY_DEFINE_DW_TAIL(T)                                                                                 \
    static inline void dwcy_dw_tail_##T(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, const T *w,   \
                                        ptrdiff_t w_row_step, int nkh, int nkw, const T *bias, T *y,      \
                                        int nc)                                                           \
    {                                                                                                     \
        const int lanes = DWCY_VBYTES / sizeof(T);                                                        \
        for (int c = 0; c < nc; c++) {                                                                    \
            T acc = bias[c];                                                                              \
            for (int i = 0; i < nkh; i++)                                                                 \
                for (int j = 0; j < nkw; j++)                                                             \
                    acc += x[i * row_step + j * col_step + c] * w[i * w_row_step + j * lanes + c];        \
            y[c] = acc;                                                                                   \
        }                                                                                                 \
    }

DWCY_DEFINE_DW_TAIL(float)
DWCY_DEFINE_DW_TAIL(double)

DWCY_DEFINE_DW_TILE(dwcy_dw_f32_tile, float, dwcy_vf32, DWCY_DW_PIXELS)
DWCY_DEFINE_DW_TILE(dwcy_dw_f32_1x, float, dwcy_vf32, 1)
DWCY_DEFINE_DW_TILE(dwcy_dw_f64_tile, double, dwcy_vf64, DWCY_DW_PIXELS)
DWCY_DEFINE_DW_TILE(dwcy_dw_f64_1x, double, dwcy_vf64, 1)

#endif /* DWCY_MICROKERNELS_H */
