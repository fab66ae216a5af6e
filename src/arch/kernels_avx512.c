/* kernels_avx512.c - AVX-512 (F/BW/VL/DQ) kernels: f32/f16/bf16 dot products with masked
 * tails, bit-exact Q8_0 activation quantization, f32 dot/axpy, and the matmul tile for float
 * weights (4 weight rows x up to 4 activation rows per micro-kernel). Quantized weights use
 * kernels_avx512_vnni.c when the CPU has VNNI, else the kernels_avx512_q.h template (which
 * also provides the single dot products, with and without VNNI). */
#include "simd_avx512.h"
#include "../util.h"
#include <stdatomic.h>
#include <string.h>

/* 16 weights of a float-type row from element i on (masked: lanes outside m read as 0). */
INLINE KVC_TARGET_AVX512 __m512 load_w(const uint32_t type, const void *row, int64_t i) {
    if (type == KVC_TYPE_F32) return _mm512_loadu_ps((const float *)row + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i));
    if (type == KVC_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
INLINE KVC_TARGET_AVX512 __m512 load_w_mask(const uint32_t type, const void *row, int64_t i,
                                            __mmask16 m) {
    if (type == KVC_TYPE_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i);
    if (type == KVC_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* ---- float-weight micro-kernel: NW weight rows x NX activation rows ---- */

INLINE KVC_TARGET_AVX512 void mk_float(const uint32_t type, const int NW, const int NX,
                                       const char *w, size_t ws, const float *x, int64_t xs,
                                       int64_t n, float *y, int64_t ldy) {
    __m512 acc[4][NXMAX];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv[NXMAX];
        UNROLL for (int j = 0; j < NX; j++) xv[j] = _mm512_loadu_ps(x + j * xs + i);
        UNROLL for (int r = 0; r < NW; r++) {
            __m512 wv = load_w(type, w + r * ws, i);
            UNROLL for (int j = 0; j < NX; j++) acc[r][j] = _mm512_fmadd_ps(wv, xv[j], acc[r][j]);
        }
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 xv[NXMAX];
        UNROLL for (int j = 0; j < NX; j++) xv[j] = _mm512_maskz_loadu_ps(m, x + j * xs + i);
        UNROLL for (int r = 0; r < NW; r++) {
            __m512 wv = load_w_mask(type, w + r * ws, i, m);
            UNROLL for (int j = 0; j < NX; j++) acc[r][j] = _mm512_fmadd_ps(wv, xv[j], acc[r][j]);
        }
    }
    store_acc(NW, NX, acc, y, ldy);
}

/* nrows weight rows (at w, ws bytes apart, of type) against NX activation rows (xs floats
 * apart): 4-row micro-kernels, then single rows. y points at output (row 0, x row 0). */
INLINE KVC_TARGET_AVX512 void rows_float(const uint32_t type, const int NX, const char *w,
                                         size_t ws, int64_t nrows, int64_t n, const float *x,
                                         int64_t xs, float *y, int64_t ldy) {
    int64_t r = 0;
    for (; r + 4 <= nrows; r += 4) {
        if (NX == 1) kvc_prefetch_rows4(w, ws, r, w + nrows * ws);
        mk_float(type, 4, NX, w + r * ws, ws, x, xs, n, y + r, ldy);
    }
    for (; r < nrows; r++) mk_float(type, 1, NX, w + r * ws, ws, x, xs, n, y + r, ldy);
}

/* A block of nrows weight rows against activation rows [t0, t1) of the tile, NXMAX at a
 * time. y points at output row 0 of the block (activation row 0). */
INLINE KVC_TARGET_AVX512 void block_float(const uint32_t type, const char *w, size_t ws,
                                          int64_t nrows, const struct kvc_tile *tl, int t0,
                                          int t1, float *y) {
    const int64_t n = tl->w->n_in, xs = (int64_t)(tl->x_stride / sizeof(float));
    for (int t = t0; t < t1; t += NXMAX) {
        const float *x = (const float *)tl->x + t * xs;
        float *yt = y + t * tl->ldy;
        switch (t1 - t) {
        case 1: rows_float(type, 1, w, ws, nrows, n, x, xs, yt, tl->ldy); break;
        case 2: rows_float(type, 2, w, ws, nrows, n, x, xs, yt, tl->ldy); break;
        case 3: rows_float(type, 3, w, ws, nrows, n, x, xs, yt, tl->ldy); break;
        default: rows_float(type, 4, w, ws, nrows, n, x, xs, yt, tl->ldy); break;
        }
    }
}

/* Convert nrows rows of a 16-bit float type to f32 rows of stride ld floats. */
INLINE KVC_TARGET_AVX512 void rows_to_f32(const uint32_t type, const char *w, size_t ws,
                                          int64_t nrows, int64_t n, float *out, int64_t ld) {
    for (int64_t r = 0; r < nrows; r++) {
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) _mm512_store_ps(out + r * ld + i, load_w(type, w + r * ws, i));
        if (i < n) {
            const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
            _mm512_store_ps(out + r * ld + i, load_w_mask(type, w + r * ws, i, m));
        }
    }
}

/* One tile for a float type (a constant after inlining), blocked over weight rows. F16/BF16
 * chunks are converted to f32 once when at least NXMAX activation rows reuse them. */
INLINE KVC_TARGET_AVX512 void tile_float(const uint32_t type, const struct kvc_tile *tl, int t0,
                                         int t1, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const int64_t n = w->n_in, ld = (n + 15) & ~(int64_t)15;
    const char *wd = (const char *)w->data;
    if (type != KVC_TYPE_F32 && t1 - t0 >= WPACK_MIN_T && 4 * ld * 4 <= WCHUNK_BYTES) {
        _Alignas(64) float buf[WCHUNK_BYTES / sizeof(float)];
        const int64_t chunk = (int64_t)(WCHUNK_BYTES / sizeof(float)) / ld & ~(int64_t)3;
        for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
            const int64_t nr = r1 - c0 < chunk ? r1 - c0 : chunk;
            rows_to_f32(type, wd + c0 * w->row_bytes, w->row_bytes, nr, n, buf, ld);
            block_float(KVC_TYPE_F32, (const char *)buf, (size_t)ld * sizeof(float), nr, tl, t0,
                        t1, tl->y + c0);
        }
        return;
    }
    int64_t chunk = t1 - t0 == 1 ? r1 - r0 : (int64_t)(WCHUNK_BYTES / w->row_bytes) & ~(int64_t)3;
    if (chunk < 4) chunk = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk)
        block_float(type, wd + c0 * w->row_bytes, w->row_bytes, r1 - c0 < chunk ? r1 - c0 : chunk,
                    tl, t0, t1, tl->y + c0);
}

KVC_TARGET_AVX512 void kvc_tile_f32_avx512(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                                           int64_t r1) {
    tile_float(KVC_TYPE_F32, tl, t0, t1, r0, r1);
}
KVC_TARGET_AVX512 void kvc_tile_f16_avx512(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                                           int64_t r1) {
    tile_float(KVC_TYPE_F16, tl, t0, t1, r0, r1);
}
KVC_TARGET_AVX512 void kvc_tile_bf16_avx512(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                                            int64_t r1) {
    tile_float(KVC_TYPE_BF16, tl, t0, t1, r0, r1);
}
KVC_TARGET_AVX512 float kvc_vdot_f32_avx512(int64_t n, const void *w, const void *x) {
    float s;
    mk_float(KVC_TYPE_F32, 1, 1, w, 0, x, 0, n, &s, 0);
    return s;
}
KVC_TARGET_AVX512 float kvc_vdot_f16_avx512(int64_t n, const void *w, const void *x) {
    float s;
    mk_float(KVC_TYPE_F16, 1, 1, w, 0, x, 0, n, &s, 0);
    return s;
}
KVC_TARGET_AVX512 float kvc_vdot_bf16_avx512(int64_t n, const void *w, const void *x) {
    float s;
    mk_float(KVC_TYPE_BF16, 1, 1, w, 0, x, 0, n, &s, 0);
    return s;
}

/* ---- quantized micro-kernels, with and without VNNI ---- */
#define KVC_Q_VNNI 0
#include "kernels_avx512_q.h"
#undef KVC_Q_VNNI
#define KVC_Q_VNNI 1
#include "kernels_avx512_q.h"
#undef KVC_Q_VNNI

/* 1: use VNNI when the CPU has it; 0: tests forced the non-VNNI path. */
static _Atomic int allow_vnni = 1;

void kvc_avx512_allow_vnni(int allow) { atomic_store(&allow_vnni, allow ? 1 : 0); }

int kvc_avx512_use_vnni(void) {
    return atomic_load_explicit(&allow_vnni, memory_order_relaxed) && kvc_cpu_has_avx512vnni();
}

/* ---- public per-ISA entry points ---- */

/* Quantized weights without the VNNI tile: unpacked kernels, blocked over weight rows. */
static KVC_TARGET_AVX512 void tile_q_unpacked(const struct kvc_tile *tl, int t0, int t1,
                                           int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    int64_t chunk = t1 - t0 == 1 ? r1 - r0 : (int64_t)(WCHUNK_BYTES / w->row_bytes) & ~(int64_t)3;
    if (chunk < 4) chunk = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t c1 = r1 - c0 < chunk ? r1 : c0 + chunk;
        if (w->type == KVC_TYPE_Q4_0) tile_q4_plain(tl, t0, t1, c0, c1);
        else tile_q8_plain(tl, t0, t1, c0, c1);
    }
}

KVC_TARGET_AVX512 void kvc_tile_q8_0_avx512(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                                            int64_t r1) {
    if (!kvc_avx512_use_vnni() || !kvc_gemm_tile_q_avx512vnni(tl, t0, t1, r0, r1))
        tile_q_unpacked(tl, t0, t1, r0, r1);
}
KVC_TARGET_AVX512 void kvc_tile_q4_0_avx512(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                                            int64_t r1) {
    if (!kvc_avx512_use_vnni() || !kvc_gemm_tile_q_avx512vnni(tl, t0, t1, r0, r1))
        tile_q_unpacked(tl, t0, t1, r0, r1);
}
KVC_TARGET_AVX512 float kvc_vdot_q8_0_avx512(int64_t n, const void *w, const void *x) {
    return kvc_avx512_use_vnni() ? dot_q8_vnni(n, w, x) : dot_q8_plain(n, w, x);
}
KVC_TARGET_AVX512 float kvc_vdot_q4_0_avx512(int64_t n, const void *w, const void *x) {
    return kvc_avx512_use_vnni() ? dot_q4_vnni(n, w, x) : dot_q4_plain(n, w, x);
}

/* Q8_0 quantization, bit-identical to the scalar version: same amax, d and id (computed in
 * scalar float), the same product x*id (kept opaque so it is never fused into an FMA) and
 * round-half-away-from-zero done exactly: t = trunc(p); t += sign(p) where |p - t| >= 0.5. */
KVC_TARGET_AVX512 void kvc_quantize_row_q8_0_avx512(const float *x, block_q8_0 *y, int64_t n) {
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512 signmask = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u));
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        __m512 v[2] = {_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16)};
        __m512 am = _mm512_max_ps(_mm512_and_ps(v[0], absmask), _mm512_and_ps(v[1], absmask));
        const float amax = _mm512_reduce_max_ps(am);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvc_f32_to_f16(d);
        for (int h = 0; h < 2; h++) {
            __m512 p = _mm512_mul_ps(v[h], _mm512_set1_ps(id));
            __asm__("" : "+v"(p)); /* no contraction of the product into later ops */
            __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m512 f = _mm512_and_ps(_mm512_sub_ps(p, t), absmask);
            __mmask16 up = _mm512_cmp_ps_mask(f, half, _CMP_GE_OQ);
            __m512 sgn = _mm512_or_ps(_mm512_and_ps(p, signmask), one);
            t = _mm512_mask_add_ps(t, up, t, sgn);
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * h),
                             _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(t)));
        }
    }
}

KVC_TARGET_AVX512 float kvc_dot_f32_avx512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

KVC_TARGET_AVX512 void kvc_axpy_f32_avx512(float a, const float *x, float *y, int64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 r = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}
