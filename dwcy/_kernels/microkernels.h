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
#include <stdint.h>
#include <string.h>

/* The tiles are written with GCC/Clang vector extensions; other compilers (MSVC), or a build with
 * DWCY_NO_VECTOR_EXTENSIONS defined (setup.py's DWCY_PLAIN_C=1, which tests this path with gcc), get the
 * plain-C fallback of each tile, and no tile that exists only as vector code (DWCY_DW_DUP2, DWCY_DW_ROWS2). */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(DWCY_NO_VECTOR_EXTENSIONS)
#define DWCY_VECTOR_EXTENSIONS 1
#else
#define DWCY_VECTOR_EXTENSIONS 0
#endif

/* ---------------------------------------------------------------- the tile table, per SIMD level */
#define DWCY_VBYTES 64
/*
 * DWCY_DW_PIXELS   depthwise: output pixels per tile (one vector of channels each)
 * DWCY_DW_NARROW_PIXELS
 *                  depthwise, the kernels with tiles of their own: a second, narrower tile width, for rows whose
 *                  width it divides with fewer pixels computed in vain (7 for 7, 14, 28: 1/8 fewer); 0: none
 * DWCY_DW_FIXED_VECTORS
 *                  depthwise, kernels 3, 5 or 7 wide with tiles of their own: vectors of channels per tile (1 or 2)
 * DWCY_DW_L1_BYTES depthwise: a chunk of channel blocks runs over a band of rows when the input rows that
 *                  consecutive output rows share, for that chunk, fit in this many bytes (in L1)
 * DWCY_DW_CHUNK_INPUT_BYTES
 *                  depthwise: chunks of channel blocks only for images of at most this many bytes (in L2)
 * DWCY_DW_EXPAND_BYTES
 *                  depthwise with a channel multiplier: the input rows of consecutive output rows are
 *                  expanded (each channel repeated M times) into a per-thread buffer of about this size
 *                  (a band of output rows whose input rows fit; rows of a band's edge are expanded again by
 *                  the next: at 256 KB, 14x14x576 and 7x7x960 rows fit 3 at a time, each expanded 3 times;
 *                  512 KB ran multiplier layers 1.02-1.76x faster, 1 MB slowed 28x28x192 stride 2 to 0.86x)
 * DWCY_DW_ALIGN_MIN_BLOCKS
 *                  depthwise: channel blocks a layer needs for its tiles to start their blocks on the
 *                  input's 64-byte boundaries (depthwise.pxi's _dw_phase); 0: never
 * DWCY_DW_DUP2     depthwise, channel multiplier 2, kernels 3 wide of stride 1 or 2: 1 when the tiles read the
 *                  input itself, each loaded vector permuted into the two output vectors of its channels (the
 *                  _dup2 tiles), instead of a copy with each channel twice (DWCY_DW_EXPAND_BYTES); 0: the copy
 * DWCY_DW_ROWS2    depthwise, 3x3 of stride 1 or 2, 5x5 and 7x7 of stride 1: 1 when two output rows whose taps
 *                  all lie in the image run together, one vector a tile (the _rows2 tiles: their input rows
 *                  and weights are loaded once for both), instead of one row at a time; 0: one at a time
 * DWCY_GEMM_MR     pointwise: rows (pixels) per register tile
 *                  (x 2 vectors of output channels: NR = 2 * lanes)
 * DWCY_GEMM_MR1    pointwise: rows of the one-vector tile, which runs MR rows as groups of this many (the
 *                  pointers of 14 rows of A spill from x86-64's 16 general registers: with one vector, the
 *                  k loop's loads, not its FMAs, bound it)
 * DWCY_GEMM_SHORT_K
 *                  pointwise: layers of at most this many input channels, in tiles of two vectors, run tiles of
 *                  DWCY_GEMM_MR1 rows, not DWCY_GEMM_MR: a tile's work besides its K steps (set-up, activation,
 *                  stores) weighs more at a short K, and a 14-row tile spills its row pointers. On Zen 5, 16->96
 *                  ran 1.06-1.09x faster so, 24->144 and 32->192 1.04-1.06x; a K of 96 to 160 no faster (a
 *                  longer K reads each weight panel for fewer rows)
 * DWCY_GEMM_BLOCK_BYTES, DWCY_GEMM_MAX_TILES
 *                  pointwise: a work item's rows of A fill at most this many bytes (to stay in L2
 *                  while every panel of W passes over them), and at most this many MR-row tiles
 * DWCY_GEMM_KC     pointwise: the most input channels in a block of K (K is split evenly into blocks),
 *                  so that a panel's block (KC x NR) stays in L1
 * DWCY_GEMM_L1_W_BYTES
 *                  pointwise: a W whose packed panels fill at most this many bytes stays in L1 while every
 *                  row tile passes over all its panels: A and C then pass once each, in memory order
 * DWCY_GEMM_PACK_PREFETCH
 *                  pointwise, a single block of rows: rows of W prefetched ahead by the first tile over a
 *                  panel's block, which reads W in place and packs the block as it goes (pointwise.pxi's
 *                  _gemm_rows): in a network, W comes cold from L3 or memory, and its rows, Cout apart,
 *                  defeat the hardware prefetchers
 * DWCY_GEMM_PANEL_PREFETCH
 *                  pointwise: rows of a packed panel (of NR values: 8 KB) the first tile over it fetches ahead: in
 *                  a network the panels come cold from L3 or memory, and the hardware prefetchers, which stop
 *                  at each page, left MobileNetV2's stages 1.22-1.29x slower there than one by one (1.09-1.13x
 *                  now); the tiles that follow find the panel in cache, and would pay for the prefetches (2 %)
 * DWCY_MIN_WORK_PER_THREAD
 *                  multiply-adds each of two threads must have for a call to open a parallel region (its
 *                  team starts and joins in ~1-2 us), counted as pointwise ones: a depthwise multiply-add
 *                  counts DWCY_DW_MADD_COST of them (it loads its input and weight for one use only, and
 *                  runs about that many times slower)
 * DWCY_MIN_WORK_PER_WORKER
 *                  and once a region is open, the multiply-adds each thread that works in it must have (its
 *                  whole team starts and joins anyway: common.pxi's _team)
 * DWCY_DW_STREAM_BYTES
 *                  depthwise: a layer whose input and output together reach this many bytes does not stay in
 *                  L3 (32 MiB, shared) from one call to the next, nor in a network from one layer to the next:
 *                  its input comes from memory (depthwise.pxi's _dw_streams), and the tiles of an output row
 *                  (or pair) fetch the input rows that the next one reads first, at the columns they read, each
 *                  tile a share (_dw_fetch_ahead). On Zen 5, 8 images, one thread, against no fetching:
 *                  56x56x144 (28.9 MB) 1.3x faster, 112x112x32 (25.7 MB) 1.05-1.1x; but fetched from L3, one
 *                  image of 112x112x96 stride 2 (6 MB) ran 1.4x slower, 8 of 56x56x144 stride 2 (18 MB) 1.1x
 *                  on one thread and 1.3x on two (the hardware's prefetchers keep up with L3 alone).
 * DWCY_STREAM_BYTES
 *                  pointwise: an input of at least this many bytes comes from memory, not a cache: the tiles
 *                  that read A panel by panel (pointwise.pxi's _gemm_streams) fetch ahead the rows of the tile
 *                  DWCY_GEMM_STREAM_AHEAD bytes of A on (at least the next tile's): a tile's 7 or 14 rows are as
 *                  many streams, too many for the hardware prefetchers, and a tile of a short K runs in less
 *                  time than memory takes to answer (8 images, against no fetching: one thread, 112x112 32->16
 *                  1.10x, 56x56 96->24 1.05x, 144->24 1.24x; two threads 0.99x, 1.01x, 1.05x; the next tile
 *                  alone: 32->16 0.92x and 0.94x)
 * DWCY_GEMM_STREAM_AHEAD
 *                  (DWCY_STREAM_BYTES)
 * DWCY_BAND_BYTES  separable: a band of depthwise output rows fills at most this many bytes
 * DWCY_BAND_MIN_ROWS
 *                  separable: but has at least this many rows (of the image's): 8 images of 112x112x96 -> 24
 *                  (43 KB a row, 2 rows in DWCY_BAND_BYTES) ran 6.3-6.8 ms in bands of 2 rows, 4.3-4.5 in
 *                  bands of 4, against 5.6-5.8 unfused (one thread; the other blocks alike either way). The
 *                  depthwise rows' fetching ahead makes the difference: without it, 8.4 ms either way
 * DWCY_FUSE_MIN_BYTES
 *                  separable: below this many bytes of intermediate tensor, the stages run unfused
 */
#define DWCY_DW_L1_BYTES (32 * 1024)
#define DWCY_DW_CHUNK_INPUT_BYTES (1024 * 1024)
#define DWCY_DW_EXPAND_BYTES (512 * 1024)
#define DWCY_GEMM_BLOCK_BYTES (256 * 1024)
#define DWCY_GEMM_MAX_TILES 16
#define DWCY_GEMM_KC 320
#define DWCY_GEMM_L1_W_BYTES (32 * 1024)
#define DWCY_GEMM_PACK_PREFETCH 16
#define DWCY_GEMM_PANEL_PREFETCH 64
#define DWCY_DW_STREAM_BYTES (20 * 1024 * 1024)
#define DWCY_STREAM_BYTES (8 * 1024 * 1024)
#define DWCY_GEMM_STREAM_AHEAD 4096
#define DWCY_BAND_BYTES (128 * 1024)
#define DWCY_BAND_MIN_ROWS 4
#define DWCY_FUSE_MIN_BYTES (1024 * 1024)
#define DWCY_MIN_WORK_PER_THREAD 262144
#define DWCY_MIN_WORK_PER_WORKER 65536
#define DWCY_DW_MADD_COST 4
#if defined(__AVX512F__)
#define DWCY_SIMD_LEVEL "avx512"
#define DWCY_DW_PIXELS 8 /* 8 accumulators + weight + input of 32 zmm registers */
#define DWCY_DW_NARROW_PIXELS 7
#define DWCY_DW_FIXED_VECTORS 2 /* 8 x 2 accumulators + up to 7 x 2 weights + 2 inputs of 32 */
/* At a phase, from NumPy's arrays (16 bytes into a line), one image, Zen 5: 56x56x144, 112x112x96 stride 2 and
 * 28x28x192 stride 2 ran 1.1-1.25x faster; but 16 channels (1 block) 0.9x, and 32 (2 blocks) 0.82x, and on 8
 * images of 112x112x32, whose rows come from memory, 0.56-0.65x (0.8 -> 1.4 ms) */
#define DWCY_DW_ALIGN_MIN_BLOCKS 3
#define DWCY_DW_DUP2 DWCY_VECTOR_EXTENSIONS
#define DWCY_DW_ROWS2 DWCY_VECTOR_EXTENSIONS
#define DWCY_GEMM_MR 14  /* 14 x 2 accumulators + 2 weight vectors + a broadcast of 32 zmm */
#define DWCY_GEMM_MR1 7
#define DWCY_GEMM_SHORT_K 64
#elif defined(__AVX2__)
#define DWCY_SIMD_LEVEL "avx2"
#define DWCY_DW_PIXELS 4 /* each 64-byte vector takes two of the 16 ymm registers */
#define DWCY_DW_NARROW_PIXELS 0
#define DWCY_DW_FIXED_VECTORS 1
#define DWCY_DW_ALIGN_MIN_BLOCKS 0 /* masked loads and stores are loops of lanes */
#define DWCY_DW_DUP2 0
#define DWCY_DW_ROWS2 0
#define DWCY_GEMM_MR 3   /* 3 x 2 x 2 ymm accumulators + 4 for the weights of 16 ymm */
#define DWCY_GEMM_MR1 3
#define DWCY_GEMM_SHORT_K 0
#elif defined(__SSE2__) || defined(__aarch64__)
#define DWCY_SIMD_LEVEL "sse2"
#define DWCY_DW_PIXELS 2
#define DWCY_DW_NARROW_PIXELS 0
#define DWCY_DW_FIXED_VECTORS 1
#define DWCY_DW_ALIGN_MIN_BLOCKS 0
#define DWCY_DW_DUP2 0
#define DWCY_DW_ROWS2 0
#define DWCY_GEMM_MR 1
#define DWCY_GEMM_MR1 1
#define DWCY_GEMM_SHORT_K 0
#else
#define DWCY_SIMD_LEVEL "generic"
#define DWCY_DW_PIXELS 2
#define DWCY_DW_NARROW_PIXELS 0
#define DWCY_DW_FIXED_VECTORS 1
#define DWCY_DW_ALIGN_MIN_BLOCKS 0
#define DWCY_DW_DUP2 0
#define DWCY_DW_ROWS2 0
#define DWCY_GEMM_MR 1
#define DWCY_GEMM_MR1 1
#define DWCY_GEMM_SHORT_K 0
#endif

#define DWCY_LANES_F32 ((int)(DWCY_VBYTES / sizeof(float)))
#define DWCY_LANES_F64 ((int)(DWCY_VBYTES / sizeof(double)))

#if DWCY_VECTOR_EXTENSIONS
typedef float dwcy_vf32 __attribute__((vector_size(DWCY_VBYTES)));
typedef double dwcy_vf64 __attribute__((vector_size(DWCY_VBYTES)));
typedef int dwcy_vi32 __attribute__((vector_size(DWCY_VBYTES)));
typedef long long dwcy_vi64 __attribute__((vector_size(DWCY_VBYTES)));
#endif

/* Fetch the cache line at p into the cache (a hint: nothing where the compiler has no way to say it). */
#if defined(__GNUC__) || defined(__clang__)
#define DWCY_PREFETCH(p) __builtin_prefetch(p)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define DWCY_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define DWCY_PREFETCH(p) ((void)(p))
#endif

/*
 * x * y + acc in scalar code, the same in every tile: gcc contracted some of the plain-C tiles' sums into FMAs
 * and not others (DWCY_PLAIN_C=1, avx2, float64: the same rows summed by two tiles differed in the last bit).
 * With GCC or Clang on a target with fused multiply-adds (__FP_FAST_FMA), an explicit FMA, as the vector code's
 * x * y + acc is contracted there; elsewhere two roundings, never contracted (MSVC: fp_contract off, which
 * /fp:precise only became by default in Visual Studio 2022).
 */
#if defined(__FP_FAST_FMAF) || defined(__FP_FAST_FMA)
#include <math.h>
#define DWCY_MADD_float(x, y, acc) fmaf(x, y, acc)
#define DWCY_MADD_double(x, y, acc) fma(x, y, acc)
#else
#if defined(_MSC_VER)
#pragma fp_contract(off)
#endif
#define DWCY_MADD_float(x, y, acc) ((x) * (y) + (acc))
#define DWCY_MADD_double(x, y, acc) ((x) * (y) + (acc))
#endif

/* Fully unroll a loop over a tile's pixels, rows or vectors, so that its accumulators live in registers. */
#if defined(__clang__)
#define DWCY_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define DWCY_UNROLL _Pragma("GCC unroll 32")
#else
#define DWCY_UNROLL
#endif

/*
 * A scalar broadcast to every lane. With AVX-512 the intrinsic becomes a broadcast load (or an FMA's
 * {1to16} memory operand); the generic form costs a shuffle, which on Intel competes with the FMAs.
 */
#if DWCY_VECTOR_EXTENSIONS && defined(__AVX512F__)
#include <immintrin.h>
#define DWCY_BROADCAST_float(s) ((dwcy_vf32)_mm512_set1_ps(s))
#define DWCY_BROADCAST_double(s) ((dwcy_vf64)_mm512_set1_pd(s))
#elif DWCY_VECTOR_EXTENSIONS
#define DWCY_BROADCAST_float(s) ((dwcy_vf32){0} + (s))
#define DWCY_BROADCAST_double(s) ((dwcy_vf64){0} + (s))
#endif

/*
 * Activations (codes: the index of the name in dwcy._args.ACTIVATIONS), applied after the bias.
 * NaN stays NaN, as in NumPy (np.maximum, np.clip): a comparison with NaN is false, so it keeps its value;
 * never fmax or `x > 0 ? x : 0`. Hardswish is x * clip(x + 3, 0, 6) / 6 in the reference's order.
 */
#include "dwcy_activations.h"

#define DWCY_DEFINE_ACTIVATION(T)                                                                            \
    static inline T dwcy_clip_##T(T v, T hi)                                                            \
    {                                                                                                   \
        v = v < 0 ? 0 : v;                                                                              \
        return v > hi ? hi : v;                                                                         \
    }                                                                                                   \
    static inline T dwcy_activate_##T(T v, int activation)                                              \
    {                                                                                                   \
        switch (activation) {                                                                           \
        case DWCY_ACT_RELU: return v < 0 ? 0 : v;                                                       \
        case DWCY_ACT_RELU6: return dwcy_clip_##T(v, 6);                                                \
        case DWCY_ACT_HARDSWISH: return v * dwcy_clip_##T(v + 3, 6) / 6;                                \
        default: return v;                                                                              \
        }                                                                                               \
    }
DWCY_DEFINE_ACTIVATION(float)
DWCY_DEFINE_ACTIVATION(double)

#if DWCY_VECTOR_EXTENSIONS
/*
 * The same, on vectors in place (through a pointer: 64-byte vectors passed by value would change the
 * ABI where the target lacks 512-bit registers). max(0, v) and min(6, v): with AVX-512 one instruction
 * each (x86's max(a, b) and min(a, b) return b when either is NaN: v, as b, stays NaN); elsewhere a
 * comparison gives an all-ones lane mask, which selects by bitwise and/or.
 */
#if defined(__AVX512F__)
#define DWCY_VMAX0_dwcy_vf32(p) (*(p) = (dwcy_vf32)_mm512_max_ps(_mm512_setzero_ps(), (__m512)(*(p))))
#define DWCY_VMIN6_dwcy_vf32(p) (*(p) = (dwcy_vf32)_mm512_min_ps(_mm512_set1_ps(6), (__m512)(*(p))))
#define DWCY_VMAX0_dwcy_vf64(p) (*(p) = (dwcy_vf64)_mm512_max_pd(_mm512_setzero_pd(), (__m512d)(*(p))))
#define DWCY_VMIN6_dwcy_vf64(p) (*(p) = (dwcy_vf64)_mm512_min_pd(_mm512_set1_pd(6), (__m512d)(*(p))))
#else
#define DWCY_VMAX0_dwcy_vf32(p) dwcy_vmax0_dwcy_vf32(p)
#define DWCY_VMIN6_dwcy_vf32(p) dwcy_vmin6_dwcy_vf32(p)
#define DWCY_VMAX0_dwcy_vf64(p) dwcy_vmax0_dwcy_vf64(p)
#define DWCY_VMIN6_dwcy_vf64(p) dwcy_vmin6_dwcy_vf64(p)
#endif
#define DWCY_DEFINE_VECTOR_ACTIVATION(V, IV)                                                                 \
    static inline void dwcy_vmax0_##V(V *v)                                                             \
    {                                                                                                   \
        const V zero = {0};                                                                             \
        *v = (V)((IV)*v & ~(IV)(*v < zero));                                                            \
    }                                                                                                   \
    static inline void dwcy_vmin6_##V(V *v)                                                             \
    {                                                                                                   \
        const V hi = (V){0} + 6;                                                                        \
        IV above = *v > hi;                                                                             \
        *v = (V)(((IV)*v & ~above) | ((IV)hi & above));                                                 \
    }                                                                                                   \
    /* The activation of n vectors: one switch, then a loop the tiles unroll (n is a constant there). */ \
    static inline __attribute__((always_inline)) void dwcy_vactivate_##V(V *v, int n, int activation)   \
    {                                                                                                   \
        V t;                                                                                            \
        switch (activation) {                                                                           \
        case DWCY_ACT_RELU:                                                                             \
            DWCY_UNROLL for (int i = 0; i < n; i++) DWCY_VMAX0_##V(&v[i]);                               \
            break;                                                                                      \
        case DWCY_ACT_RELU6:                                                                            \
            DWCY_UNROLL for (int i = 0; i < n; i++) {                                                   \
                DWCY_VMAX0_##V(&v[i]);                                                                   \
                DWCY_VMIN6_##V(&v[i]);                                                                   \
            }                                                                                           \
            break;                                                                                      \
        case DWCY_ACT_HARDSWISH:                                                                        \
            DWCY_UNROLL for (int i = 0; i < n; i++) {                                                   \
                t = v[i] + 3;                                                                           \
                DWCY_VMAX0_##V(&t);                                                                      \
                DWCY_VMIN6_##V(&t);                                                                      \
                v[i] = v[i] * t / 6;                                                                    \
            }                                                                                           \
            break;                                                                                      \
        default: break;                                                                                 \
        }                                                                                               \
    }
DWCY_DEFINE_VECTOR_ACTIVATION(dwcy_vf32, dwcy_vi32)
DWCY_DEFINE_VECTOR_ACTIVATION(dwcy_vf64, dwcy_vi64)
#endif

#if DWCY_VECTOR_EXTENSIONS
/*
 * Load or store the lanes of a vector whose bits are set in `mask` (bit l: lane l): a channel tail or head,
 * a row's last partial panel. Lanes left out load as zero (or, merging, keep their value) and are never
 * touched in memory: AVX-512 masks suppress any fault in them, so a vector may start before an array or run
 * past its end.
 */
#define DWCY_LANES_BELOW(n) ((1u << (n)) - 1u) /* lanes [0, n), n <= 16 */
#if defined(__AVX512F__)
static inline void dwcy_store_float(float *dst, const dwcy_vf32 *v, unsigned mask)
{
    _mm512_mask_storeu_ps(dst, (__mmask16)mask, (__m512)*v);
}
static inline void dwcy_store_double(double *dst, const dwcy_vf64 *v, unsigned mask)
{
    _mm512_mask_storeu_pd(dst, (__mmask8)mask, (__m512d)*v);
}
static inline void dwcy_load_float(dwcy_vf32 *v, const float *src, unsigned mask)
{
    *v = (dwcy_vf32)_mm512_maskz_loadu_ps((__mmask16)mask, src);
}
static inline void dwcy_load_double(dwcy_vf64 *v, const double *src, unsigned mask)
{
    *v = (dwcy_vf64)_mm512_maskz_loadu_pd((__mmask8)mask, src);
}
static inline void dwcy_load_merge_float(dwcy_vf32 *v, const float *src, unsigned mask)
{
    *v = (dwcy_vf32)_mm512_mask_loadu_ps((__m512)*v, (__mmask16)mask, src);
}
static inline void dwcy_load_merge_double(dwcy_vf64 *v, const double *src, unsigned mask)
{
    *v = (dwcy_vf64)_mm512_mask_loadu_pd((__m512d)*v, (__mmask8)mask, src);
}
#else
static inline void dwcy_store_float(float *dst, const dwcy_vf32 *v, unsigned mask)
{
    for (int l = 0; l < DWCY_LANES_F32; l++)
        if (mask >> l & 1u) dst[l] = (*v)[l];
}
static inline void dwcy_store_double(double *dst, const dwcy_vf64 *v, unsigned mask)
{
    for (int l = 0; l < DWCY_LANES_F64; l++)
        if (mask >> l & 1u) dst[l] = (*v)[l];
}
static inline void dwcy_load_merge_float(dwcy_vf32 *v, const float *src, unsigned mask)
{
    for (int l = 0; l < DWCY_LANES_F32; l++)
        if (mask >> l & 1u) (*v)[l] = src[l];
}
static inline void dwcy_load_merge_double(dwcy_vf64 *v, const double *src, unsigned mask)
{
    for (int l = 0; l < DWCY_LANES_F64; l++)
        if (mask >> l & 1u) (*v)[l] = src[l];
}
static inline void dwcy_load_float(dwcy_vf32 *v, const float *src, unsigned mask)
{
    *v = (dwcy_vf32){0};
    dwcy_load_merge_float(v, src, mask);
}
static inline void dwcy_load_double(dwcy_vf64 *v, const double *src, unsigned mask)
{
    *v = (dwcy_vf64){0};
    dwcy_load_merge_double(v, src, mask);
}
#endif
#endif

/*
 * Depthwise tile: NPIX output pixels of one output row x NVEC vectors of channels, accumulators in
 * registers across all taps. More pixels reuse each weight load; more vectors give a single pixel
 * (a border, a row's last pixels) independent accumulations instead of one long chain of dependent FMAs.
 *
 *   x          input at (first valid tap row, first valid tap column of the first pixel, first channel)
 *   row_step   elements between tap rows (dilation_h * W * C)
 *   col_step   elements between tap columns (dilation_w * C)
 *   pix_step   elements between the inputs of neighbouring output pixels (stride_w * C)
 *   w          packed weights of the first vector at its first valid tap: [block][KH][KW][LANES], so
 *   w_row_step elements between tap rows of w (KW * LANES), a tap column being LANES further, and
 *   w_block_step    elements between the weights of neighbouring vectors (KH * KW * LANES)
 *   nkh, nkw   valid taps (the border routines pass fewer than KH, KW)
 *   bias       NVEC * LANES packed biases (zeros when the call has none)
 *   y, y_pix_step   output of the first pixel, elements between output pixels (C * M)
 *   activation      applied in registers before the store
 */
#if DWCY_VECTOR_EXTENSIONS
#define DWCY_DEFINE_DW_TILE(NAME, T, V, NPIX, NVEC)                                                             \
    static inline void NAME(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, ptrdiff_t pix_step,        \
                            const T *w, ptrdiff_t w_row_step, ptrdiff_t w_block_step, int nkh, int nkw,    \
                            const T *bias, T *y, ptrdiff_t y_pix_step, int activation)                     \
    {                                                                                                      \
        const int lanes = (int)(sizeof(V) / sizeof(T));                                                    \
        V acc[NPIX][NVEC], wv[NVEC], xv;                                                                   \
        DWCY_UNROLL for (int v = 0; v < NVEC; v++) {                                                           \
            memcpy(&wv[v], bias + v * lanes, sizeof(V));                                                   \
            DWCY_UNROLL for (int p = 0; p < NPIX; p++) acc[p][v] = wv[v];                                      \
        }                                                                                                  \
        for (int i = 0; i < nkh; i++) {                                                                    \
            for (int j = 0; j < nkw; j++) {                                                                \
                const T *xc = x + i * row_step + j * col_step;                                             \
                DWCY_UNROLL for (int v = 0; v < NVEC; v++)                                                     \
                    memcpy(&wv[v], w + v * w_block_step + i * w_row_step + j * lanes, sizeof(V));          \
                DWCY_UNROLL for (int p = 0; p < NPIX; p++)                                                     \
                    DWCY_UNROLL for (int v = 0; v < NVEC; v++) {                                               \
                        memcpy(&xv, xc + p * pix_step + v * lanes, sizeof(V));                             \
                        acc[p][v] += xv * wv[v];                                                           \
                    }                                                                                      \
            }                                                                                              \
        }                                                                                                  \
        dwcy_vactivate_##V(&acc[0][0], NPIX * NVEC, activation);                                           \
        DWCY_UNROLL for (int p = 0; p < NPIX; p++)                                                             \
            DWCY_UNROLL for (int v = 0; v < NVEC; v++)                                                         \
                memcpy(y + p * y_pix_step + v * lanes, &acc[p][v], sizeof(V));                             \
    }
#else
#define DWCY_DEFINE_DW_TILE(NAME, T, V, NPIX, NVEC)                                                             \
    static inline void NAME(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, ptrdiff_t pix_step,        \
                            const T *w, ptrdiff_t w_row_step, ptrdiff_t w_block_step, int nkh, int nkw,    \
                            const T *bias, T *y, ptrdiff_t y_pix_step, int activation)                     \
    {                                                                                                      \
        const int lanes = DWCY_VBYTES / sizeof(T);                                                         \
        for (int p = 0; p < NPIX; p++)                                                                     \
            for (int v = 0; v < NVEC; v++)                                                                 \
                dwcy_dw_tail_##T(x + p * pix_step + v * lanes, row_step, col_step, w + v * w_block_step,   \
                                 w_row_step, nkh, nkw, bias + v * lanes, y + p * y_pix_step + v * lanes,   \
                                 lanes, activation);                                                       \
    }
#endif

/*
 * Depthwise tile with the kernel width, stride and dilation known at compile time (KW taps, stride SW,
 * dilation DW): DWCY_DW_PIXELS pixels x NVEC vectors anywhere in a row, borders included. Each input vector
 * of a tap row is loaded once and used by every (pixel, tap) pair that needs it: DWCY_DW_SPAN loads per tap
 * row instead of NPIX * KW (10 instead of 24 for 3x3 stride 1). Two vectors (DWCY_DW_FIXED_VECTORS) give
 * twice the independent accumulations for the same loop: a pixel's 9 dependent FMAs no longer bound it.
 *
 *   x          input row of the first valid tap row, at column 0 and the tile's first channel
 *   row_step   elements between tap rows; col_step: between input columns (C)
 *   iw0        input column of the first pixel's first tap (negative in the left padding)
 *   q_lo, q_hi the tile's input columns iw0 + q with q in [q_lo, q_hi) lie in the image; the others are
 *              padding, never read, their taps skipped
 *   w          packed weights of the first valid tap row, tap column 0 ([KW][LANES] per row, rows
 *              w_row_step apart); nkh valid tap rows; w_block_step: elements between the weights of
 *              neighbouring vectors (KH * KW * LANES)
 *   npix       pixels to store (<= NPIX): a row's last tile computes NPIX, stores the real ones
 *   lo, hi     the lanes to load and store: [lo, LANES) of the first vector and [0, hi) of the last (of
 *              the same one with one vector): the channel head and tail, with masked loads and stores. A
 *              row whose input is not 64-byte aligned starts its first vector lo lanes before channel 0
 *              (depthwise.pxi's phase), so that all its loads are aligned; that vector's lanes [0, lo) are
 *              then the pixel's last lo channels, one pixel on (col_step further in x, y_pix_step in y): it
 *              wraps around the pixel's channels, so that the phase costs no extra vector
 *
 * Pixel p sums bias, then its valid taps in (kh, kw) order: the sums of the general tile, bit for bit.
 */
/* The input columns of a tile's tap row: pixel p's tap j reads column p * SW + j * DW. */
#define DWCY_DW_SPAN(NPIX, KW, SW, DW) (((NPIX) - 1) * (SW) + ((KW) - 1) * (DW) + 1)
#if DWCY_VECTOR_EXTENSIONS
/* One tap row i of the tile below: the loads of the input columns not SKIPped, and their FMAs. */
#define DWCY_LOAD_WHOLE(T, v, dst, src) memcpy(&(dst), (src), sizeof(dst))
#define DWCY_LOAD_MASKED(T, v, dst, src, next)                                                               \
    do {                                                                                                     \
        dwcy_load_##T(&(dst), (src), mask[v]);                                                               \
        if ((v) == 0) dwcy_load_merge_##T(&(dst), (next), wrapmask);                                         \
    } while (0)
#if DWCY_DW_DUP2
/* Multiplier 2 from the input itself: the lanes inmask of the input vector at the first vector's source hold
 * the channels of both output vectors, each channel twice over: its lower half (0, 0, 1, 1, ...) is vector 0,
 * its upper half vector 1. */
#define DWCY_LOAD_DUP2(T, v, dst, src, next)                                                                 \
    do {                                                                                                     \
        if ((v) == 0) dwcy_load_##T(&xin, (src), inmask);                                                    \
        (dst) = (v) == 0 ? dwcy_dup_lo_##T(xin) : dwcy_dup_hi_##T(xin);                                      \
    } while (0)
static inline dwcy_vf32 dwcy_dup_lo_float(dwcy_vf32 v)
{
    return (dwcy_vf32)_mm512_permutexvar_ps(_mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0), (__m512)v);
}
static inline dwcy_vf32 dwcy_dup_hi_float(dwcy_vf32 v)
{
    return (dwcy_vf32)_mm512_permutexvar_ps(_mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8,
                                                             8), (__m512)v);
}
static inline dwcy_vf64 dwcy_dup_lo_double(dwcy_vf64 v)
{
    return (dwcy_vf64)_mm512_permutexvar_pd(_mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0), (__m512d)v);
}
static inline dwcy_vf64 dwcy_dup_hi_double(dwcy_vf64 v)
{
    return (dwcy_vf64)_mm512_permutexvar_pd(_mm512_set_epi64(7, 7, 6, 6, 5, 5, 4, 4), (__m512d)v);
}
#endif
#define DWCY_DW_FIXED_TAP_ROW(T, V, NPIX, NVEC, KW, SW, DW, SKIP, MASKED_V, LOAD)                               \
    {                                                                                                          \
        const T *xr = x + i * row_step + iw0 * col_step;                                                       \
        DWCY_UNROLL for (int j = 0; j < KW; j++)                                                               \
            DWCY_UNROLL for (int v = 0; v < NVEC; v++)                                                         \
                memcpy(&wv[j][v], w + v * w_block_step + i * w_row_step + j * lanes, sizeof(V));               \
        DWCY_UNROLL for (int q = 0; q < DWCY_DW_SPAN(NPIX, KW, SW, DW); q++) {                                  \
            if (SKIP) continue;                                                                                \
            DWCY_UNROLL for (int v = 0; v < NVEC; v++) {                                                       \
                if (MASKED_V(v)) LOAD(T, v, xv[v], xr + q * col_step + v * lanes, xr + (q + 1) * col_step);    \
                else DWCY_LOAD_WHOLE(T, v, xv[v], xr + q * col_step + v * lanes);                              \
            }                                                                                                  \
            DWCY_UNROLL for (int p = 0; p < NPIX; p++) {                                                       \
                const int d = q - p * SW, j = d / DW;                                                          \
                if (d >= 0 && d % DW == 0 && j < KW)                                                           \
                    DWCY_UNROLL for (int v = 0; v < NVEC; v++) acc[p][v] += xv[v] * wv[j][v];                  \
            }                                                                                                  \
        }                                                                                                      \
    }
/*
 * The tiles of one body, which differ in the vectors they load and store masked (MASKED_V(v): is vector v
 * masked?), the others whole: NAME, none (lo = 0, hi = LANES); NAME_head, the first (any lo: a phase's
 * wrapped block; the others whole, hi = LANES); NAME_masked, the last (any hi: a channel tail; with one
 * vector any lo and hi, with two lo = 0). Masked vectors cost: their loads are not operands of the FMAs, and
 * a wrapped one takes two (in L1, a 7-pixel, 2-vector tile of stride 2 ran 1.5x slower with both masked, 1.6x
 * with the first wrapped, 1.1x with the last masked).
 */
#define DWCY_DW_MASKED_NONE(v) 0
#define DWCY_DW_MASKED_FIRST(v) ((v) == 0)
#define DWCY_DW_MASKED_LAST(v) ((v) == nvec - 1) /* (nvec: the body's NVEC) */
#define DWCY_DW_MASKED_ALL(v) 1
#define DWCY_DEFINE_DW_TILE_FIXED(NAME, T, V, NPIX, NVEC, KW, SW, DW)                                           \
    DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME, T, V, NPIX, NVEC, KW, SW, DW, DWCY_DW_MASKED_NONE, DWCY_LOAD_MASKED)   \
    DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME##_head, T, V, NPIX, NVEC, KW, SW, DW, DWCY_DW_MASKED_FIRST,             \
                                   DWCY_LOAD_MASKED)                                                           \
    DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME##_masked, T, V, NPIX, NVEC, KW, SW, DW, DWCY_DW_MASKED_LAST,            \
                                   DWCY_LOAD_MASKED)
/* NAME_dup2: multiplier 2, x the input at the channels of the first output vector, lanes [0, hi) of the last
 * stored (masked loads and stores: lo = 0). */
#define DWCY_DEFINE_DW_TILE_DUP2(NAME, T, V, NPIX, NVEC, KW, SW, DW)                                            \
    DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME##_dup2, T, V, NPIX, NVEC, KW, SW, DW, DWCY_DW_MASKED_ALL, DWCY_LOAD_DUP2)
#define DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME, T, V, NPIX, NVEC, KW, SW, DW, MASKED_V, MASKED_LOAD)               \
    static inline void NAME(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, ptrdiff_t iw0, int q_lo,    \
                            int q_hi, const T *w, ptrdiff_t w_row_step, ptrdiff_t w_block_step, int nkh,    \
                            const T *bias, T *y, ptrdiff_t y_pix_step, int npix, int lo, int hi, int activation) \
    {                                                                                                      \
        const int lanes = (int)(sizeof(V) / sizeof(T)), nvec = NVEC;                                       \
        V acc[NPIX][NVEC], wv[KW][NVEC], xv[NVEC];                                                         \
        unsigned mask[NVEC];                                                                               \
        DWCY_UNROLL for (int v = 0; v < NVEC; v++)                                                         \
            mask[v] = (v == 0 ? ~DWCY_LANES_BELOW(lo) : ~0u) & (v == NVEC - 1 ? DWCY_LANES_BELOW(hi) : ~0u); \
        const unsigned wrapmask = DWCY_LANES_BELOW(lo); /* the first vector's lanes one pixel on */        \
        /* (the _dup2 tiles: the input lanes of the output lanes [0, hi) of the last vector) */             \
        const unsigned inmask = DWCY_LANES_BELOW((NVEC - 1) * lanes / 2 + (hi + 1) / 2);                   \
        V xin;                                                                                             \
        (void)mask, (void)wrapmask, (void)inmask, (void)xin, (void)nvec;                                   \
        DWCY_UNROLL for (int v = 0; v < NVEC; v++) {                                                       \
            memcpy(&xv[v], bias + v * lanes, sizeof(V));                                                   \
            DWCY_UNROLL for (int p = 0; p < NPIX; p++) acc[p][v] = xv[v];                                  \
        }                                                                                                  \
        /* Input column q feeds pixel p through tap j = (q - p*SW) / DW. Taps accumulate in order: for a */\
        /* pixel p, q runs up through its taps j = 0, 1, ... as q grows. Which columns to skip is known */  \
        /* at compile time for interior tiles and for tiles that meet the padding of 'same' (half the */    \
        /* kernel's span) on either side or both (every tile of a 7-pixel row): testing each column took */ \
        /* 3x3 stride-2 tiles 20 % longer. Any other tile tests them, as do all those of a channel tail */ \
        /* (rarely hot: left out, they build faster). */                                                   \
        const int span = DWCY_DW_SPAN(NPIX, KW, SW, DW), cut_r = span - q_hi; /* (cut_l: q_lo) */          \
        const int pad = (KW - 1) * DW / 2, edges = !MASKED_V(NVEC - 1);                                    \
        if (q_lo == 0 && cut_r == 0)                                                                       \
            for (int i = 0; i < nkh; i++)                                                                  \
                DWCY_DW_FIXED_TAP_ROW(T, V, NPIX, NVEC, KW, SW, DW, 0, MASKED_V, MASKED_LOAD)              \
        else if (edges && q_lo == 0 && cut_r == pad)                                                       \
            for (int i = 0; i < nkh; i++)                                                                  \
                DWCY_DW_FIXED_TAP_ROW(T, V, NPIX, NVEC, KW, SW, DW, q >= span - pad, MASKED_V, MASKED_LOAD) \
        else if (edges && q_lo == pad && cut_r == 0)                                                       \
            for (int i = 0; i < nkh; i++)                                                                  \
                DWCY_DW_FIXED_TAP_ROW(T, V, NPIX, NVEC, KW, SW, DW, q < pad, MASKED_V, MASKED_LOAD)        \
        else if (edges && q_lo == pad && cut_r == pad)                                                     \
            for (int i = 0; i < nkh; i++)                                                                  \
                DWCY_DW_FIXED_TAP_ROW(T, V, NPIX, NVEC, KW, SW, DW, q < pad || q >= span - pad, MASKED_V,   \
                                      MASKED_LOAD)                                                         \
        else                                                                                               \
            for (int i = 0; i < nkh; i++)                                                                  \
                DWCY_DW_FIXED_TAP_ROW(T, V, NPIX, NVEC, KW, SW, DW, q < q_lo || q >= q_hi, MASKED_V,        \
                                      MASKED_LOAD)                                                         \
        dwcy_vactivate_##V(&acc[0][0], NPIX * NVEC, activation);                                           \
        DWCY_UNROLL for (int p = 0; p < NPIX; p++) {                                                       \
            if (p >= npix) break;                                                                          \
            DWCY_UNROLL for (int v = 0; v < NVEC; v++) {                                                   \
                if (MASKED_V(v))                                                                           \
                    dwcy_store_##T(y + p * y_pix_step + v * lanes, &acc[p][v], mask[v]);                   \
                else                                                                                       \
                    memcpy(y + p * y_pix_step + v * lanes, &acc[p][v], sizeof(V));                         \
            }                                                                                              \
            if (MASKED_V(0) && lo > 0) dwcy_store_##T(y + (p + 1) * y_pix_step, &acc[p][0], wrapmask);     \
        }                                                                                                  \
    }
/*
 * Two output rows at once, KxK kernels of stride S (3x3 of stride 1 or 2, 5x5 and 7x7 of stride 1; dilation 1)
 * (DWCY_DW_ROWS2): NPIX pixels x 1 vector of each of two consecutive rows whose K tap rows all lie in the image
 * (row 1's are row 0's, S on). Their S + K input rows are read once for both (input row i feeds row r through
 * tap row i - r*S), and each weight is loaded once for both rows (a 3x3 kernel's at the start, a larger one's
 * as its input row comes): 2 x NPIX accumulators + 9 weights (3x3) or 2 x K (at most 14) + 1 input of the 32
 * registers. The arguments are the one-row tile's of one vector, nkh = K and no w_block_step, with y_row_step
 * (the elements between the two output rows); NAME takes whole vectors (lo = 0, hi = LANES), NAME_masked any lo
 * and hi (the one-row tiles' masks). Each pixel sums bias, then its taps in (kh, kw) order, padded columns
 * skipped: the one-row tile's sums, bit for bit.
 */
/* Tap rows of weights a tile holds in registers: all three of a 3x3 kernel; the last S + 1 read of a larger one
 * (tap row i - S, which row 1 needs with row 0's tap row i, up to i). */
#define DWCY_DW_ROWS2_HELD(K, S) ((K) == 3 ? 3 : (S) + 1)
#define DWCY_DW_ROWS2_TAP_ROWS(T, V, NPIX, K, S, MASKED, SKIP)                                                   \
    DWCY_UNROLL for (int i = 0; i < (S) + (K); i++) {                                                          \
        const T *xr = x + i * row_step + iw0 * col_step;                                                       \
        if ((K) > 3) { /* (3x3: all nine weights loaded once, at the top) */                                   \
            /* No load is hoisted above this, to the tile's top (gcc hoisted all 49 7x7 weights, and spilled) */ \
            __asm__ __volatile__("" ::: "memory");                                                             \
            if (i < (K)) /* tap row i's weights, in place of tap row i - S - 1's (no longer needed) */        \
                DWCY_UNROLL for (int j = 0; j < (K); j++)                                                      \
                    memcpy(&wv[i % DWCY_DW_ROWS2_HELD(K, S)][j], w + i * w_row_step + j * lanes, sizeof(V));   \
        }                                                                                                      \
        DWCY_UNROLL for (int q = 0; q < DWCY_DW_SPAN(NPIX, K, S, 1); q++) {                                    \
            if (SKIP) continue;                                                                                \
            V xv;                                                                                              \
            if (MASKED) DWCY_LOAD_MASKED(T, 0, xv, xr + q * col_step, xr + (q + 1) * col_step);                \
            else memcpy(&xv, xr + q * col_step, sizeof(V));                                                    \
            DWCY_UNROLL for (int r = 0; r < 2; r++)                                                            \
                DWCY_UNROLL for (int p = 0; p < NPIX; p++) {                                                   \
                    const int kh = i - r * (S), j = q - p * (S);                                               \
                    if (kh >= 0 && kh < (K) && j >= 0 && j < (K))                                              \
                        acc[r][p] += xv * wv[kh % DWCY_DW_ROWS2_HELD(K, S)][j];                                \
                }                                                                                              \
        }                                                                                                      \
    }
#define DWCY_DEFINE_DW_TILE_ROWS2(NAME, T, V, NPIX, K, S)                                                       \
    DWCY_DEFINE_DW_TILE_ROWS2_BODY(NAME, T, V, NPIX, K, S, 0)                                                   \
    DWCY_DEFINE_DW_TILE_ROWS2_BODY(NAME##_masked, T, V, NPIX, K, S, 1)
#define DWCY_DEFINE_DW_TILE_ROWS2_BODY(NAME, T, V, NPIX, K, S, MASKED)                                          \
    static inline void NAME(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, ptrdiff_t iw0, int q_lo,    \
                            int q_hi, const T *w, ptrdiff_t w_row_step, const T *bias, T *y,               \
                            ptrdiff_t y_row_step, ptrdiff_t y_pix_step, int npix, int lo, int hi,          \
                            int activation)                                                                \
    {                                                                                                      \
        const int lanes = (int)(sizeof(V) / sizeof(T));                                                    \
        const unsigned mask[1] = {~DWCY_LANES_BELOW(lo) & DWCY_LANES_BELOW(hi)};                           \
        const unsigned wrapmask = DWCY_LANES_BELOW(lo); /* the lanes one pixel on (a phase's wrap) */      \
        V acc[2][NPIX], wv[DWCY_DW_ROWS2_HELD(K, S)][K], b; /* the weights of the tap rows held */         \
        (void)mask, (void)wrapmask;                                                                        \
        memcpy(&b, bias, sizeof(V));                                                                       \
        DWCY_UNROLL for (int r = 0; r < 2; r++) DWCY_UNROLL for (int p = 0; p < NPIX; p++) acc[r][p] = b;  \
        if ((K) == 3)                                                                                      \
            DWCY_UNROLL for (int i = 0; i < 3; i++)                                                        \
                DWCY_UNROLL for (int j = 0; j < 3; j++)                                                    \
                    memcpy(&wv[i][j], w + i * w_row_step + j * lanes, sizeof(V));                          \
        /* The columns to skip, known at compile time for the interior and the padding of 'same' (as in */ \
        /* the one-row tile). */                                                                           \
        const int span = DWCY_DW_SPAN(NPIX, K, S, 1), cut_r = span - q_hi, pad = ((K) - 1) / 2;            \
        if (q_lo == 0 && cut_r == 0) DWCY_DW_ROWS2_TAP_ROWS(T, V, NPIX, K, S, MASKED, 0)                    \
        else if (q_lo == 0 && cut_r == pad) DWCY_DW_ROWS2_TAP_ROWS(T, V, NPIX, K, S, MASKED, q >= span - pad) \
        else if (q_lo == pad && cut_r == 0) DWCY_DW_ROWS2_TAP_ROWS(T, V, NPIX, K, S, MASKED, q < pad)        \
        else if (q_lo == pad && cut_r == pad)                                                              \
            DWCY_DW_ROWS2_TAP_ROWS(T, V, NPIX, K, S, MASKED, q < pad || q >= span - pad)                   \
        else DWCY_DW_ROWS2_TAP_ROWS(T, V, NPIX, K, S, MASKED, q < q_lo || q >= q_hi)                         \
        dwcy_vactivate_##V(&acc[0][0], 2 * NPIX, activation);                                              \
        DWCY_UNROLL for (int r = 0; r < 2; r++)                                                            \
            DWCY_UNROLL for (int p = 0; p < NPIX; p++) {                                                   \
                if (p >= npix) break;                                                                      \
                T *dst = y + r * y_row_step + p * y_pix_step;                                              \
                if (!(MASKED)) {                                                                           \
                    memcpy(dst, &acc[r][p], sizeof(V));                                                    \
                    continue;                                                                              \
                }                                                                                          \
                dwcy_store_##T(dst, &acc[r][p], mask[0]);                                                  \
                if (lo > 0) dwcy_store_##T(dst + y_pix_step, &acc[r][p], wrapmask);                        \
            }                                                                                              \
    }
#else
#define DWCY_DEFINE_DW_TILE_FIXED(NAME, T, V, NPIX, NVEC, KW, SW, DW)                                           \
    DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME, T, V, NPIX, NVEC, KW, SW, DW)                                          \
    DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME##_head, T, V, NPIX, NVEC, KW, SW, DW)                                   \
    DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME##_masked, T, V, NPIX, NVEC, KW, SW, DW)
#define DWCY_DEFINE_DW_TILE_FIXED_BODY(NAME, T, V, NPIX, NVEC, KW, SW, DW)                                      \
    static inline void NAME(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, ptrdiff_t iw0, int q_lo,    \
                            int q_hi, const T *w, ptrdiff_t w_row_step, ptrdiff_t w_block_step, int nkh,    \
                            const T *bias, T *y, ptrdiff_t y_pix_step, int npix, int lo, int hi, int activation) \
    {                                                                                                      \
        const int lanes = (int)(DWCY_VBYTES / sizeof(T));                                                  \
        for (int v = 0; v < NVEC; v++)                                                                     \
            for (int p = 0; p < npix; p++) {                                                               \
                /* pixel p's taps j whose columns q = p * SW + j * DW lie in [q_lo, q_hi): a run [j0, j1) */ \
                int j0 = 0, j1 = KW;                                                                       \
                while (j0 < KW && p * SW + j0 * DW < q_lo) j0++;                                           \
                while (j1 > j0 && p * SW + (j1 - 1) * DW >= q_hi) j1--;                                    \
                const T *xp = x + (iw0 + p * SW + j0 * DW) * col_step + v * lanes;                         \
                const T *wp = w + v * w_block_step + j0 * lanes;                                           \
                T *yp = y + p * y_pix_step + v * lanes;                                                    \
                const int l0 = v == 0 ? lo : 0, l1 = v == NVEC - 1 ? hi : lanes;                           \
                dwcy_dw_tail_##T(xp + l0, row_step, DW * col_step, wp + l0, w_row_step, nkh, j1 - j0,      \
                                 bias + v * lanes + l0, yp + l0, l1 - l0, activation);                     \
                if (v == 0 && lo > 0) /* the wrapped lanes [0, lo): the pixel's last channels, one on */   \
                    dwcy_dw_tail_##T(xp + col_step, row_step, DW * col_step, wp, w_row_step, nkh, j1 - j0, \
                                     bias, yp + y_pix_step, lo, activation);                               \
            }                                                                                              \
    }
#endif

/*
 * Depthwise channel tail: one output pixel x nc (<= LANES) channels, in plain C (the plain-C tiles are made of
 * it). Same arguments as the tile; w and bias are still packed LANES wide (the packed buffers are dwcy's own,
 * zero-padded), but x and y are the caller's arrays, so only nc channels of them are touched. Many channels
 * are the innermost loop, which compilers vectorize: with the channels outermost, the plain-C tiles ran
 * 32x slower than the vector ones on 56x56x144 (gcc, avx512), 12-14x now.
 */
#define DWCY_DEFINE_DW_TAIL(T)                                                                                 \
    static inline void dwcy_dw_tail_##T(const T *x, ptrdiff_t row_step, ptrdiff_t col_step, const T *w,   \
                                        ptrdiff_t w_row_step, int nkh, int nkw, const T *bias, T *y,      \
                                        int nc, int activation)                                           \
    {                                                                                                     \
        const int lanes = DWCY_VBYTES / sizeof(T);                                                        \
        if (nc < lanes / 2) { /* a few channels: each in a register over all its taps */                  \
            for (int c = 0; c < nc; c++) {                                                                \
                T sum = bias[c];                                                                          \
                for (int i = 0; i < nkh; i++)                                                             \
                    for (int j = 0; j < nkw; j++)                                                         \
                        sum = DWCY_MADD_##T(x[i * row_step + j * col_step + c],                           \
                                            w[i * w_row_step + j * lanes + c], sum);                      \
                y[c] = dwcy_activate_##T(sum, activation);                                                \
            }                                                                                             \
            return;                                                                                       \
        }                                                                                                 \
        T acc[DWCY_VBYTES / sizeof(T)]; /* many channels: the innermost loop, vectorized */               \
        for (int c = 0; c < nc; c++) acc[c] = bias[c];                                                    \
        for (int i = 0; i < nkh; i++)                                                                     \
            for (int j = 0; j < nkw; j++) {                                                               \
                const T *xs = x + i * row_step + j * col_step, *ws = w + i * w_row_step + j * lanes;      \
                for (int c = 0; c < nc; c++) acc[c] = DWCY_MADD_##T(xs[c], ws[c], acc[c]);                \
            }                                                                                             \
        for (int c = 0; c < nc; c++) y[c] = dwcy_activate_##T(acc[c], activation);                        \
    }

DWCY_DEFINE_DW_TAIL(float)
DWCY_DEFINE_DW_TAIL(double)

/*
 * The depthwise tiles: kernels 3 wide of stride 1 or 2, 5 or 7 wide of stride 1, and 3 wide of stride 1
 * and (column) dilation 2 run whole rows,
 * borders included, with their own tiles (above; with two vectors, 7 wide holds 16 accumulators and 14
 * weights in the 32 registers, and runs 1.06-1.22x faster than with one). Other kernels: DWCY_DW_PIXELS
 * pixels x 1 vector for the bulk of a row's interior; 4 pixels x 2 or 1 vectors for what is left of it;
 * 1 pixel x 4 or 1 vectors for single pixels (borders, the last).
 */
#define DWCY_DEFINE_DW_TILES(SUFFIX, T, V)                                                                      \
    DWCY_DEFINE_DW_TILE(dwcy_dw_##SUFFIX##_mx1, T, V, DWCY_DW_PIXELS, 1)                                       \
    DWCY_DEFINE_DW_TILE(dwcy_dw_##SUFFIX##_4x2, T, V, 4, 2)                                                    \
    DWCY_DEFINE_DW_TILE(dwcy_dw_##SUFFIX##_4x1, T, V, 4, 1)                                                    \
    DWCY_DEFINE_DW_TILE(dwcy_dw_##SUFFIX##_1x4, T, V, 1, 4)                                                    \
    DWCY_DEFINE_DW_TILE(dwcy_dw_##SUFFIX##_1x1, T, V, 1, 1)                                                    \
    DWCY_DEFINE_DW_K3_TILES(DWCY_DEFINE_DW_TILE_FIXED, SUFFIX, T, V, DWCY_DW_PIXELS, )                         \
    DWCY_DEFINE_DW_WIDER_TILES(SUFFIX, T, V, DWCY_DW_PIXELS, )                                                  \
    DWCY_DEFINE_DW_NARROW_TILES(SUFFIX, T, V)                                                                   \
    DWCY_DEFINE_DW_DUP2_TILES(SUFFIX, T, V)
/* The tiles of the 3-wide kernels of stride 1 and 2, of one and two vectors, made by DEFINE (their NAME):
 * k3s1W, k3s1Wx2, k3s2W, k3s2Wx2 (W: nothing, or n for the narrower ones). */
#define DWCY_DEFINE_DW_K3_TILES(DEFINE, SUFFIX, T, V, NPIX, W)                                                  \
    DEFINE(dwcy_dw_##SUFFIX##_k3s1##W, T, V, NPIX, 1, 3, 1, 1)                                                  \
    DEFINE(dwcy_dw_##SUFFIX##_k3s1##W##x2, T, V, NPIX, 2, 3, 1, 1)                                              \
    DEFINE(dwcy_dw_##SUFFIX##_k3s2##W, T, V, NPIX, 1, 3, 2, 1)                                                  \
    DEFINE(dwcy_dw_##SUFFIX##_k3s2##W##x2, T, V, NPIX, 2, 3, 2, 1)
/* The tiles of the other fixed kernels (5 and 7 wide, 3 wide of dilation 2; stride 1), of one and two vectors:
 * k5s1W, k5s1Wx2, k7s1W, k7s1Wx2, k3s1d2W, k3s1d2Wx2. */
#define DWCY_DEFINE_DW_WIDER_TILES(SUFFIX, T, V, NPIX, W)                                                       \
    DWCY_DEFINE_DW_TILE_FIXED(dwcy_dw_##SUFFIX##_k5s1##W, T, V, NPIX, 1, 5, 1, 1)                               \
    DWCY_DEFINE_DW_TILE_FIXED(dwcy_dw_##SUFFIX##_k5s1##W##x2, T, V, NPIX, 2, 5, 1, 1)                           \
    DWCY_DEFINE_DW_TILE_FIXED(dwcy_dw_##SUFFIX##_k7s1##W, T, V, NPIX, 1, 7, 1, 1)                               \
    DWCY_DEFINE_DW_TILE_FIXED(dwcy_dw_##SUFFIX##_k7s1##W##x2, T, V, NPIX, 2, 7, 1, 1)                           \
    DWCY_DEFINE_DW_TILE_FIXED(dwcy_dw_##SUFFIX##_k3s1d2##W, T, V, NPIX, 1, 3, 1, 2)                             \
    DWCY_DEFINE_DW_TILE_FIXED(dwcy_dw_##SUFFIX##_k3s1d2##W##x2, T, V, NPIX, 2, 3, 1, 2)
/* The narrower tiles of every fixed kernel (DWCY_DW_NARROW_PIXELS): k3s1n, k3s2n, k5s1n, k7s1n, k3s1d2n. */
#if DWCY_DW_NARROW_PIXELS
#define DWCY_DEFINE_DW_NARROW_TILES(SUFFIX, T, V)                                                                \
    DWCY_DEFINE_DW_K3_TILES(DWCY_DEFINE_DW_TILE_FIXED, SUFFIX, T, V, DWCY_DW_NARROW_PIXELS, n)                 \
    DWCY_DEFINE_DW_WIDER_TILES(SUFFIX, T, V, DWCY_DW_NARROW_PIXELS, n)
#else
#define DWCY_DEFINE_DW_NARROW_TILES(SUFFIX, T, V)
#endif
/* The multiplier-2 tiles of the 3-wide kernels (DWCY_DW_DUP2), of both widths: k3s1_dup2, ..., k3s2nx2_dup2. */
#if DWCY_DW_DUP2
#define DWCY_DEFINE_DW_DUP2_TILES(SUFFIX, T, V)                                                                  \
    DWCY_DEFINE_DW_K3_TILES(DWCY_DEFINE_DW_TILE_DUP2, SUFFIX, T, V, DWCY_DW_PIXELS, )                          \
    DWCY_DEFINE_DW_K3_TILES(DWCY_DEFINE_DW_TILE_DUP2, SUFFIX, T, V, DWCY_DW_NARROW_PIXELS, n)
#else
#define DWCY_DEFINE_DW_DUP2_TILES(SUFFIX, T, V)
#endif
DWCY_DEFINE_DW_TILES(f32, float, dwcy_vf32)
DWCY_DEFINE_DW_TILES(f64, double, dwcy_vf64)

/*
 * Rows whose kernel width and stride have a fixed-width tile (depthwise.pxi's _row_tile picks the kind), and
 * the tile of a kind of 1 or 2 vectors, of DWCY_DW_PIXELS pixels or (narrow) DWCY_DW_NARROW_PIXELS, reading an
 * input of a multiplier of 2 itself (dup2) or not: dwcy_dw_<dtype>_fixed(kind, vectors, narrow, dup2,
 * <the tile's arguments>).
 */
typedef enum {
    DWCY_ROW_GENERAL, DWCY_ROW_K3S1, DWCY_ROW_K3S2, DWCY_ROW_K5S1, DWCY_ROW_K7S1, DWCY_ROW_K3S1D2
} dwcy_row_tile;
#define DWCY_DW_FIXED_ARGS x, row_step, col_step, iw0, q_lo, q_hi, w, w_row_step, w_block_step, nkh, bias, y, \
                           y_pix_step, npix, lo, hi, activation
/* A tile of two vectors (TILE##x2) or of one, of whole vectors or masked: two vectors with a head (lo > 0,
 * the first block of a phase) have a whole second one (a phase only where channels fill whole blocks). */
#define DWCY_DW_FIXED_CALL(TILE)                                                                              \
    do {                                                                                                      \
        if (two && whole) TILE##x2(DWCY_DW_FIXED_ARGS);                                                       \
        else if (two && lo > 0) TILE##x2_head(DWCY_DW_FIXED_ARGS);                                            \
        else if (two) TILE##x2_masked(DWCY_DW_FIXED_ARGS);                                                    \
        else if (whole) TILE(DWCY_DW_FIXED_ARGS);                                                             \
        else TILE##_masked(DWCY_DW_FIXED_ARGS);                                                               \
    } while (0)
/* Are all `n` values from v on finite? NaN and +-Inf are the values whose exponent bits are all ones: with those
 * bits kept and the lowest of them added once more, they alone carry into the sign bit. Integer and, add and or
 * only, in two independent vector accumulators: a float compare per value, as gcc vectorized it from
 * depthwise.pxi, took half a microsecond for a 3x3 weight of 960 channels, 7 % of a 7x7x960 call. */
#define DWCY_ALL_FINITE(NAME, T, U, EXPONENT, LOWEST)                                                           \
    static inline int NAME(const T *v, ptrdiff_t n)                                                           \
    {                                                                                                         \
        U bad = 0;                                                                                            \
        ptrdiff_t i = 0;                                                                                      \
        DWCY_ALL_FINITE_VECTORS(U, EXPONENT, LOWEST)                                                          \
        for (; i < n; i++) {                                                                                  \
            U u;                                                                                              \
            memcpy(&u, v + i, sizeof u);                                                                      \
            bad |= (u & EXPONENT) + LOWEST;                                                                   \
        }                                                                                                     \
        return !(bad >> (8 * sizeof(U) - 1));                                                                 \
    }
#if DWCY_VECTOR_EXTENSIONS
#define DWCY_ALL_FINITE_VECTORS(U, EXPONENT, LOWEST)                                                           \
    typedef U vector __attribute__((vector_size(DWCY_VBYTES)));                                               \
    const ptrdiff_t lanes = DWCY_VBYTES / sizeof(U);                                                          \
    vector bad0 = {0}, bad1 = {0};                                                                            \
    for (; i + 2 * lanes <= n; i += 2 * lanes) {                                                              \
        vector a, b;                                                                                          \
        memcpy(&a, v + i, DWCY_VBYTES);                                                                       \
        memcpy(&b, v + i + lanes, DWCY_VBYTES);                                                               \
        bad0 |= (a & EXPONENT) + LOWEST;                                                                      \
        bad1 |= (b & EXPONENT) + LOWEST;                                                                      \
    }                                                                                                         \
    bad0 |= bad1;                                                                                             \
    for (ptrdiff_t l = 0; l < lanes; l++) bad |= bad0[l];
#else
#define DWCY_ALL_FINITE_VECTORS(U, EXPONENT, LOWEST)
#endif
DWCY_ALL_FINITE(dwcy_all_finite_f32, float, uint32_t, 0x7f800000u, 0x00800000u)
DWCY_ALL_FINITE(dwcy_all_finite_f64, double, uint64_t, 0x7ff0000000000000u, 0x0010000000000000u)

/* Fetch share [part, part + count) of `parts` even shares of the `bytes` from p on, and as much of each of the
 * `rows` - 1 rows after it (`stride` bytes apart), into the cache, a line at a time (depthwise.pxi's
 * _dw_fetch_ahead). */
static inline void dwcy_prefetch_share(const void *p, ptrdiff_t rows, ptrdiff_t stride, ptrdiff_t bytes,
                                       ptrdiff_t part, ptrdiff_t count, ptrdiff_t parts)
{
    const ptrdiff_t lo = bytes * part / parts / 64 * 64;
    const ptrdiff_t hi = part + count >= parts ? bytes : bytes * (part + count) / parts / 64 * 64;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const char *row = (const char *)p + r * stride;
        for (ptrdiff_t offset = lo; offset < hi; offset += 64) DWCY_PREFETCH(row + offset);
    }
#if defined(__GNUC__)
    /* A side effect the compiler sees: to gcc, a function that only prefetches has none, and gcc 12 dropped
     * every call to a caller of this one (_dw_fetch_ahead) that it did not inline. */
    __asm__ __volatile__("");
#endif
}

/* Every row kind has narrow tiles (TILE##n) where this level has them; the 3-wide kernels of stride 1 and 2
 * have multiplier-2 tiles (TILE##_dup2) too: theirs is the dispatcher's DWCY_DW_FIXED_CASE_DUP2. */
static inline int dwcy_dw_has_narrow(dwcy_row_tile kind)
{
    return DWCY_DW_NARROW_PIXELS > 0 && kind != DWCY_ROW_GENERAL;
}
static inline int dwcy_dw_has_dup2(dwcy_row_tile kind)
{
    return DWCY_DW_DUP2 && (kind == DWCY_ROW_K3S1 || kind == DWCY_ROW_K3S2);
}
#if DWCY_DW_DUP2
#define DWCY_DW_DUP2_CALL(TILE)                                                                               \
    do {                                                                                                      \
        if (two) TILE##x2_dup2(DWCY_DW_FIXED_ARGS);                                                           \
        else TILE##_dup2(DWCY_DW_FIXED_ARGS);                                                                 \
    } while (0)
#else
#define DWCY_DW_DUP2_CALL(TILE) do { } while (0)
#endif
/* A row kind's case: its tiles, narrow ones (TILE##n) where this level has them, and (_DUP2) multiplier-2
 * ones. */
#if DWCY_DW_NARROW_PIXELS
#define DWCY_DW_FIXED_CASE(KIND, TILE)                                                                         \
    case KIND:                                                                                                \
        if (narrow) DWCY_DW_FIXED_CALL(TILE##n);                                                              \
        else DWCY_DW_FIXED_CALL(TILE);                                                                        \
        break;
#define DWCY_DW_FIXED_CASE_DUP2(KIND, TILE)                                                                    \
    case KIND:                                                                                                \
        if (dup2 && narrow) DWCY_DW_DUP2_CALL(TILE##n);                                                       \
        else if (dup2) DWCY_DW_DUP2_CALL(TILE);                                                               \
        else if (narrow) DWCY_DW_FIXED_CALL(TILE##n);                                                         \
        else DWCY_DW_FIXED_CALL(TILE);                                                                        \
        break;
#else
#define DWCY_DW_FIXED_CASE(KIND, TILE)                                                                         \
    case KIND: DWCY_DW_FIXED_CALL(TILE); break;
#define DWCY_DW_FIXED_CASE_DUP2(KIND, TILE) DWCY_DW_FIXED_CASE(KIND, TILE)
#endif
#define DWCY_DEFINE_DW_FIXED(SUFFIX, T)                                                                        \
    static inline void dwcy_dw_##SUFFIX##_fixed(dwcy_row_tile kind, int vectors, int narrow, int dup2,       \
                                                const T *x,                                                   \
                                                ptrdiff_t row_step,                                           \
                                                ptrdiff_t col_step, ptrdiff_t iw0, int q_lo, int q_hi,        \
                                                const T *w, ptrdiff_t w_row_step, ptrdiff_t w_block_step,     \
                                                int nkh, const T *bias, T *y, ptrdiff_t y_pix_step, int npix, \
                                                int lo, int hi, int activation)                               \
    {                                                                                                         \
        const int two = vectors == 2, whole = lo == 0 && hi == (int)(DWCY_VBYTES / sizeof(T));                \
        (void)narrow, (void)dup2;                                                                             \
        switch (kind) {                                                                                       \
            DWCY_DW_FIXED_CASE_DUP2(DWCY_ROW_K3S1, dwcy_dw_##SUFFIX##_k3s1)                                   \
            DWCY_DW_FIXED_CASE_DUP2(DWCY_ROW_K3S2, dwcy_dw_##SUFFIX##_k3s2)                                   \
            DWCY_DW_FIXED_CASE(DWCY_ROW_K5S1, dwcy_dw_##SUFFIX##_k5s1)                                        \
            DWCY_DW_FIXED_CASE(DWCY_ROW_K7S1, dwcy_dw_##SUFFIX##_k7s1)                                        \
            DWCY_DW_FIXED_CASE(DWCY_ROW_K3S1D2, dwcy_dw_##SUFFIX##_k3s1d2)                                    \
        default: break;                                                                                       \
        }                                                                                                     \
    }
DWCY_DEFINE_DW_FIXED(f32, float)
DWCY_DEFINE_DW_FIXED(f64, double)

/* The two-row tiles of each row kind that has them (dwcy_dw_has_rows2), of both widths, and
 * dwcy_dw_<dtype>_rows2(kind, narrow, <their arguments>), which picks one. */
#define DWCY_DW_ROWS2_PARAMS(T)                                                                                \
    const T *x, ptrdiff_t row_step, ptrdiff_t col_step, ptrdiff_t iw0, int q_lo, int q_hi, const T *w,         \
        ptrdiff_t w_row_step, const T *bias, T *y, ptrdiff_t y_row_step, ptrdiff_t y_pix_step, int npix,       \
        int lo, int hi, int activation
#define DWCY_DW_ROWS2_ARGS x, row_step, col_step, iw0, q_lo, q_hi, w, w_row_step, bias, y, y_row_step, y_pix_step, \
                           npix, lo, hi, activation
static inline int dwcy_dw_has_rows2(dwcy_row_tile kind)
{
    return DWCY_DW_ROWS2 && (kind == DWCY_ROW_K3S1 || kind == DWCY_ROW_K3S2 || kind == DWCY_ROW_K5S1
                             || kind == DWCY_ROW_K7S1);
}
#if DWCY_DW_ROWS2
#define DWCY_DEFINE_DW_ROWS2_KIND(SUFFIX, T, V, KS, K, S)                                                      \
    DWCY_DEFINE_DW_TILE_ROWS2(dwcy_dw_##SUFFIX##_##KS##_rows2, T, V, DWCY_DW_PIXELS, K, S)                     \
    DWCY_DEFINE_DW_TILE_ROWS2(dwcy_dw_##SUFFIX##_##KS##n_rows2, T, V, DWCY_DW_NARROW_PIXELS, K, S)
#define DWCY_DW_ROWS2_CASE(KIND, TILE)                                                                         \
    case KIND:                                                                                                 \
        if (narrow && whole) TILE##n_rows2(DWCY_DW_ROWS2_ARGS);                                                \
        else if (narrow) TILE##n_rows2_masked(DWCY_DW_ROWS2_ARGS);                                             \
        else if (whole) TILE##_rows2(DWCY_DW_ROWS2_ARGS);                                                      \
        else TILE##_rows2_masked(DWCY_DW_ROWS2_ARGS);                                                          \
        break;
#define DWCY_DEFINE_DW_ROWS2(SUFFIX, T, V)                                                                     \
    DWCY_DEFINE_DW_ROWS2_KIND(SUFFIX, T, V, k3s1, 3, 1)                                                        \
    DWCY_DEFINE_DW_ROWS2_KIND(SUFFIX, T, V, k3s2, 3, 2)                                                        \
    DWCY_DEFINE_DW_ROWS2_KIND(SUFFIX, T, V, k5s1, 5, 1)                                                        \
    DWCY_DEFINE_DW_ROWS2_KIND(SUFFIX, T, V, k7s1, 7, 1)                                                        \
    static inline void dwcy_dw_##SUFFIX##_rows2(dwcy_row_tile kind, int narrow, DWCY_DW_ROWS2_PARAMS(T))      \
    {                                                                                                          \
        const int whole = lo == 0 && hi == (int)(DWCY_VBYTES / sizeof(T));                                     \
        switch (kind) {                                                                                        \
            DWCY_DW_ROWS2_CASE(DWCY_ROW_K3S1, dwcy_dw_##SUFFIX##_k3s1)                                         \
            DWCY_DW_ROWS2_CASE(DWCY_ROW_K3S2, dwcy_dw_##SUFFIX##_k3s2)                                         \
            DWCY_DW_ROWS2_CASE(DWCY_ROW_K5S1, dwcy_dw_##SUFFIX##_k5s1)                                         \
            DWCY_DW_ROWS2_CASE(DWCY_ROW_K7S1, dwcy_dw_##SUFFIX##_k7s1)                                         \
        default: break;                                                                                        \
        }                                                                                                      \
    }
#else /* never called (dwcy_dw_has_rows2) */
#define DWCY_DEFINE_DW_ROWS2(SUFFIX, T, V)                                                                     \
    static inline void dwcy_dw_##SUFFIX##_rows2(dwcy_row_tile kind, int narrow, DWCY_DW_ROWS2_PARAMS(T))      \
    {                                                                                                          \
        (void)kind, (void)narrow, (void)x, (void)row_step, (void)col_step, (void)iw0, (void)q_lo, (void)q_hi;  \
        (void)w, (void)w_row_step, (void)bias, (void)y, (void)y_row_step, (void)y_pix_step, (void)npix;        \
        (void)lo, (void)hi, (void)activation;                                                                  \
    }
#endif
DWCY_DEFINE_DW_ROWS2(f32, float, dwcy_vf32)
DWCY_DEFINE_DW_ROWS2(f64, double, dwcy_vf64)

/*
 * Pointwise (GEMM) tile: MR rows (pixels) x NR = NV * lanes output channels, over the whole K, so each
 * output is bias + sum over k in order, whatever the blocking around it.
 *
 *   k          input channels of this block of K
 *   a, lda     first row of A (pixels x K, row-major) and the elements between its rows
 *   b, ldb     first row of the weights' panel (K x NR) and the elements between its rows
 *   bias       NR biases
 *   c, ldc     the output tile and the elements between its rows
 *   rows       rows to compute (<= MR): a tile at the bottom of a block computes fewer
 *   last_cols  columns of the last vector to load and store (lanes, or fewer for a row's last panel)
 *   first      start from the bias (the first block of K), else from the partial sums in c
 *   activation applied in registers before the store (DWCY_ACT_NONE except after the last block of K)
 *   packing    NULL, or where to copy the panel's rows as they are read (k x NV vectors, contiguous): the
 *              first tile over a panel read in place (b, ldb: the caller's weight) packs it for the others
 *   prefetching     the first tile over a packed panel: it fetches the panel's rows DWCY_GEMM_PANEL_PREFETCH
 *              ahead (and, past its last row, the next panel's first: packed panels are contiguous)
 *   streaming  A comes from memory (DWCY_STREAM_BYTES): the tile fetches the MR rows of A of a tile
 *              DWCY_GEMM_STREAM_AHEAD bytes of A ahead (at least the next), a line of each every 64 bytes of K
 */
/* A tile's four entry points: NAME; NAME_packing, which also packs; NAME_prefetching and NAME_streaming, which
 * also prefetch the panel or A (the compiler drops the copies of NAME that no caller uses). */
#define DWCY_GEMM_TILE_ENTRIES(NAME, T)                                                                          \
    DWCY_GEMM_TILE_ENTRY(NAME, NAME, T, 0, 0)                                                                  \
    static inline void NAME##_packing(ptrdiff_t k, const T *a, ptrdiff_t lda, const T *b, ptrdiff_t ldb,       \
                                      const T *bias, T *c, ptrdiff_t ldc, int rows, int last_cols, int first,  \
                                      int activation, T *packing)                                              \
    {                                                                                                          \
        NAME##_body(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation, packing, 0, 0);       \
    }                                                                                                          \
    DWCY_GEMM_TILE_ENTRY(NAME##_prefetching, NAME, T, 1, 0)                                                    \
    DWCY_GEMM_TILE_ENTRY(NAME##_streaming, NAME, T, 0, 1)
/* ENTRY: the tile TILE with its `prefetching` and `streaming` fixed. */
#define DWCY_GEMM_TILE_ENTRY(ENTRY, TILE, T, PREFETCHING, STREAMING)                                             \
    static inline void ENTRY(ptrdiff_t k, const T *a, ptrdiff_t lda, const T *b, ptrdiff_t ldb, const T *bias, \
                             T *c, ptrdiff_t ldc, int rows, int last_cols, int first, int activation)          \
    {                                                                                                          \
        TILE##_body(k, a, lda, b, ldb, bias, c, ldc, rows, last_cols, first, activation, NULL, PREFETCHING,    \
                    STREAMING);                                                                                \
    }
#if DWCY_VECTOR_EXTENSIONS

#define DWCY_DEFINE_GEMM_TILE(NAME, T, V, MR, NV)                                                                \
    static inline __attribute__((always_inline)) void NAME##_body(                                             \
        ptrdiff_t k, const T *a, ptrdiff_t lda, const T *b, ptrdiff_t ldb, const T *bias, T *c, ptrdiff_t ldc, \
        int rows, int last_cols, int first, int activation, T *packing, int prefetching, int streaming)       \
    {                                                                                                          \
        const int lanes = (int)(sizeof(V) / sizeof(T));                                                        \
        const T *ar[MR];                                                                                       \
        V acc[MR][NV], bv[NV];                                                                                 \
        /* Rows past `rows` repeat the last one, so all MR accumulations run: they are never stored. */        \
        DWCY_UNROLL for (int i = 0; i < MR; i++) ar[i] = a + (i < rows ? i : rows - 1) * lda;                  \
        /* streaming: the rows of the tile DWCY_GEMM_STREAM_AHEAD bytes of A ahead (at least the next) */      \
        const T *ahead = streaming ? a + MR * (1 + DWCY_GEMM_STREAM_AHEAD / (MR * k * (ptrdiff_t)sizeof(T))) * lda \
                                   : a;                                                                        \
        if (first) {                                                                                           \
            DWCY_UNROLL for (int j = 0; j < NV; j++) memcpy(&bv[j], bias + j * lanes, sizeof(V));              \
            DWCY_UNROLL for (int i = 0; i < MR; i++)                                                           \
                DWCY_UNROLL for (int j = 0; j < NV; j++) acc[i][j] = bv[j];                                    \
        } else {                                                                                               \
            DWCY_UNROLL for (int i = 0; i < MR; i++)                                                           \
                DWCY_UNROLL for (int j = 0; j < NV; j++) {                                                     \
                    const T *ci = c + (i < rows ? i : rows - 1) * ldc + j * lanes;                             \
                    if (j < NV - 1 || last_cols == lanes)                                                      \
                        memcpy(&acc[i][j], ci, sizeof(V));                                                     \
                    else                                                                                       \
                        dwcy_load_##T(&acc[i][j], ci, DWCY_LANES_BELOW(last_cols));                                              \
                }                                                                                              \
        }                                                                                                      \
        for (ptrdiff_t p = 0; p < k; p++) {                                                                    \
            DWCY_UNROLL for (int j = 0; j < NV; j++) {                                                         \
                memcpy(&bv[j], b + p * ldb + j * lanes, sizeof(V));                                            \
                if (packing) { /* W read in place: cold, rows apart; fetch a few rows ahead */                 \
                    DWCY_PREFETCH(b + (p + DWCY_GEMM_PACK_PREFETCH) * ldb + j * lanes);                        \
                    memcpy(packing + (p * NV + j) * lanes, &bv[j], sizeof(V));                                 \
                } else if (prefetching)                                                                        \
                    DWCY_PREFETCH(b + (p + DWCY_GEMM_PANEL_PREFETCH) * ldb + j * lanes);                       \
            }                                                                                                  \
            if (streaming && p % (64 / (int)sizeof(T)) == 0)                                                   \
                DWCY_UNROLL for (int i = 0; i < MR; i++) DWCY_PREFETCH(ahead + i * lda + p);                   \
            DWCY_UNROLL for (int i = 0; i < MR; i++) {                                                         \
                const V av = DWCY_BROADCAST_##T(ar[i][p]);                                                     \
                DWCY_UNROLL for (int j = 0; j < NV; j++) acc[i][j] += av * bv[j];                              \
            }                                                                                                  \
        }                                                                                                      \
        dwcy_vactivate_##V(&acc[0][0], MR * NV, activation);                                                   \
        DWCY_UNROLL for (int i = 0; i < MR; i++) {                                                             \
            if (i >= rows) break;                                                                              \
            DWCY_UNROLL for (int j = 0; j < NV; j++) {                                                         \
                if (j < NV - 1 || last_cols == lanes)                                                          \
                    memcpy(c + i * ldc + j * lanes, &acc[i][j], sizeof(V));                                    \
                else                                                                                           \
                    dwcy_store_##T(c + i * ldc + j * lanes, &acc[i][j], DWCY_LANES_BELOW(last_cols));                            \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    DWCY_GEMM_TILE_ENTRIES(NAME, T)
#else
#define DWCY_DEFINE_GEMM_TILE(NAME, T, V, MR, NV)                                                                \
    static inline void NAME##_body(ptrdiff_t k, const T *a, ptrdiff_t lda, const T *b, ptrdiff_t ldb,          \
                                   const T *bias, T *c, ptrdiff_t ldc, int rows, int last_cols, int first,     \
                                   int activation, T *packing, int prefetching, int streaming)                 \
    {                                                                                                          \
        (void)prefetching, (void)streaming;                                                                    \
        const int lanes = (int)(DWCY_VBYTES / sizeof(T));                                                      \
        if (packing)                                                                                           \
            for (ptrdiff_t p = 0; p < k; p++) memcpy(packing + p * NV * lanes, b + p * ldb, NV * DWCY_VBYTES); \
        const int cols = (NV - 1) * lanes + last_cols;                                                         \
        for (int i = 0; i < rows; i++) { /* the columns innermost, where compilers vectorize them */           \
            T acc[NV * DWCY_VBYTES / sizeof(T)];                                                               \
            for (int j = 0; j < cols; j++) acc[j] = first ? bias[j] : c[i * ldc + j];                          \
            for (ptrdiff_t p = 0; p < k; p++) {                                                                \
                const T av = a[i * lda + p], *bp = b + p * ldb;                                                \
                for (int j = 0; j < cols; j++) acc[j] = DWCY_MADD_##T(av, bp[j], acc[j]);                      \
            }                                                                                                  \
            for (int j = 0; j < cols; j++) c[i * ldc + j] = dwcy_activate_##T(acc[j], activation);            \
        }                                                                                                      \
    }                                                                                                          \
    DWCY_GEMM_TILE_ENTRIES(NAME, T)
#endif

/* A tile of MR rows (NAME) as groups of GR rows of the tile GROUP (the last group may have fewer; with
 * GROUP_streaming, each group fetches rows of A ahead: DWCY_GEMM_STREAM_AHEAD). */
#define DWCY_DEFINE_GEMM_ROW_GROUPS(NAME, GROUP, T, GR)                                                          \
    static inline void NAME(ptrdiff_t k, const T *a, ptrdiff_t lda, const T *b, ptrdiff_t ldb, const T *bias,  \
                            T *c, ptrdiff_t ldc, int rows, int last_cols, int first, int activation)           \
    {                                                                                                          \
        for (int r = 0; r < rows; r += GR)                                                                     \
            GROUP(k, a + r * lda, lda, b, ldb, bias, c + r * ldc, ldc, rows - r < GR ? rows - r : GR,          \
                  last_cols, first, activation);                                                               \
    }

/*
 * The tiles: MR x 2 vectors for the bulk, MR1 x 2 or 4 x 2 for the rows left at the bottom of a block (all
 * the tile's rows' sums run, keeping both FMA pipes busy, but only the real rows are stored: 7 rows of a
 * 7x7 image's 49 ran as two 4-row tiles), and the same with one vector for a last panel of at most one
 * vector, MR rows in groups of DWCY_GEMM_MR1.
 */
#define DWCY_DEFINE_GEMM_TILES(SUFFIX, T, V)                                                                    \
    DWCY_DEFINE_GEMM_TILE(dwcy_gemm_##SUFFIX##_mrx2, T, V, DWCY_GEMM_MR, 2)                                    \
    DWCY_DEFINE_GEMM_TILE(dwcy_gemm_##SUFFIX##_4x2, T, V, 4, 2)                                                \
    DWCY_DEFINE_GEMM_TILE(dwcy_gemm_##SUFFIX##_mr1x2, T, V, DWCY_GEMM_MR1, 2)                                  \
    DWCY_DEFINE_GEMM_TILE(dwcy_gemm_##SUFFIX##_mr1x1, T, V, DWCY_GEMM_MR1, 1)                                  \
    DWCY_DEFINE_GEMM_ROW_GROUPS(dwcy_gemm_##SUFFIX##_mrx1, dwcy_gemm_##SUFFIX##_mr1x1, T, DWCY_GEMM_MR1)       \
    DWCY_DEFINE_GEMM_ROW_GROUPS(dwcy_gemm_##SUFFIX##_mrx1_streaming, dwcy_gemm_##SUFFIX##_mr1x1_streaming, T,  \
                                DWCY_GEMM_MR1)                                                                 \
    DWCY_DEFINE_GEMM_TILE(dwcy_gemm_##SUFFIX##_4x1, T, V, 4, 1)
DWCY_DEFINE_GEMM_TILES(f32, float, dwcy_vf32)
DWCY_DEFINE_GEMM_TILES(f64, double, dwcy_vf64)

/*
 * A whole tile of DWCY_GEMM_MR1 rows x 2 vectors over `panels` consecutive whole panels of a W packed in one
 * block of K (k x NR each, contiguous; their biases NR apart): one call for all of a row tile's panels where W
 * stays in L1 (pointwise.pxi's _gemm_rows_by_tile), as each tile's work is small there (a short K:
 * DWCY_GEMM_SHORT_K). Its rows are always all MR1 of them: with the row count a run-time argument as well as
 * the panel count, gcc kept the loop's counters on the stack and checked the row count between the stores, and
 * 8 images of 112x112 16->96, whose output streams to memory, ran 1.7x slower (1.45 -> 2.45 ms) whenever the
 * output started on a cache line.
 */
#define DWCY_DEFINE_GEMM_PANELS(NAME, TILE, T)                                                                   \
    static inline void NAME(ptrdiff_t k, const T *a, ptrdiff_t lda, const T *b, const T *bias, T *c,           \
                            ptrdiff_t ldc, int panels, int activation)                                         \
    {                                                                                                          \
        const int lanes = (int)(DWCY_VBYTES / sizeof(T));                                                      \
        for (int p = 0; p < panels; p++)                                                                       \
            TILE##_body(k, a, lda, b + p * k * 2 * lanes, 2 * lanes, bias + p * 2 * lanes, c + p * 2 * lanes,  \
                        ldc, DWCY_GEMM_MR1, lanes, 1, activation, NULL, 0, 0);                                 \
    }
DWCY_DEFINE_GEMM_PANELS(dwcy_gemm_f32_mr1x2_panels, dwcy_gemm_f32_mr1x2, float)
DWCY_DEFINE_GEMM_PANELS(dwcy_gemm_f64_mr1x2_panels, dwcy_gemm_f64_mr1x2, double)

/*
 * Pack a block of a weight panel: panel (k, NR) = w[:k, :cols] (rows ldw apart), zero-padded to NR = 2
 * vectors. A whole panel's rows are copied with fixed-size copies (two vector moves each).
 */
#define DWCY_DEFINE_PACK_PANEL(SUFFIX, T)                                                                       \
    static inline void dwcy_pack_panel_##SUFFIX(const T *w, ptrdiff_t k, ptrdiff_t ldw, int cols, T *panel) \
    {                                                                                                          \
        const int nr = (int)(2 * DWCY_VBYTES / sizeof(T));                                                     \
        if (cols == nr) {                                                                                      \
            for (ptrdiff_t p = 0; p < k; p++) memcpy(panel + p * nr, w + p * ldw, 2 * DWCY_VBYTES);            \
            return;                                                                                            \
        }                                                                                                      \
        for (ptrdiff_t p = 0; p < k; p++)                                                                      \
            for (int j = 0; j < nr; j++) panel[p * nr + j] = j < cols ? w[p * ldw + j] : 0;                    \
    }
DWCY_DEFINE_PACK_PANEL(f32, float)
DWCY_DEFINE_PACK_PANEL(f64, double)

#endif /* DWCY_MICROKERNELS_H */
