/* hdc_kernels.c - the row kernels of the hypervector codecs (hdc, hdc-select): score, popcount
 * (hamming) score and accumulate on rows at a stride, as a scalar reference (float64 sums), AVX2
 * and AVX-512 (incl. the grouped GQA kernels and VPOPCNTDQ), and the hdc_ops table that selects
 * them per ISA level. The codec itself (parameters, transform, quantizer) is in hdc.c. */
#include "hdc_common.h"

#include <math.h>

/* ---- scalar row kernels (the reference: float64 sums) ---- */

static void score_scalar(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                         size_t stride, int n, float *out) {
    const int D = st->D;
    for (int r = 0; r < n; r++) {
        const uint8_t *row = rows + (size_t)r * stride;
        double a = 0;
        if (st->bits == 1) {
            for (int i = 0; i < D; i++)
                if (hdc_code(st, row, i)) a += qp[i];
            a = 2.0 * a - (double)qp[D];
        } else {
            for (int i = 0; i < D; i++) a += (double)qp[i] * st->lev[hdc_code(st, row, i)];
        }
        out[r] = (float)(hdc_row_f16(row) * a) + qp[D + 2];
    }
}

/* Popcount score loop; CVT converts the row's f16 norm. */
#define HDC_HAM_BODY(CVT)                                                                     \
    const int W = st->W;                                                                      \
    uint64_t qw[HDC_MAX_D / 64];                                                              \
    memcpy(qw, hdc_qp_words(qp, st->D), (size_t)W * 8);                                      \
    const float qn = qp[st->D + 1], qmu = qp[st->D + 2];                                      \
    for (int r = 0; r < n; r++) {                                                             \
        const uint8_t *row = rows + (size_t)r * stride;                                       \
        int h = 0;                                                                            \
        for (int w = 0; w < W; w++) h += __builtin_popcountll(qw[w] ^ hdc_row_word(row, w));  \
        out[r] = qn * CVT(hdc_load16(row)) * st->cos_tab[h] + qmu;                            \
    }

void hdc_ham_scalar(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                    size_t stride, int n, float *out) {
    HDC_HAM_BODY(kvc_f16_to_f32)
}
/* The same with the POPCNT and F16C instructions (every AVX2 / AVX-512 CPU has them). */
__attribute__((target("popcnt,f16c"))) static void ham_popcnt(const struct hdc_state *st,
                                                              const float *qp, const uint8_t *rows,
                                                              size_t stride, int n, float *out) {
    HDC_HAM_BODY(_cvtsh_ss)
}

static void acc_scalar(const struct hdc_state *st, const float *w, const uint8_t *rows,
                       size_t stride, int n, float *acc) {
    const int D = st->D;
    for (int r = 0; r < n; r++) {
        if (w[r] == 0.0f) continue;
        const uint8_t *row = rows + (size_t)r * stride;
        float t = w[r] * hdc_row_f16(row);
        if (st->bits == 1) t *= st->c1;
        for (int i = 0; i < D; i++) acc[i] += t * st->lev[hdc_code(st, row, i)];
    }
}

#define HDC_AI static inline __attribute__((always_inline))

/* ---- AVX2 row kernels: score with 8 rows in the 8 lanes (gathered code words, table
 * lookups by vpermps), accumulate row by row into D floats in registers ---- */

/* 16-entry lookup with 8-lane permutes: entries t[0..7] and t[8..15] by bit 3 of idx. */
KVC_TARGET_AVX2 HDC_AI __m256 lut16_avx2(__m256i idx, const float *t) {
    __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t), idx);
    __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t + 8), idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

KVC_TARGET_AVX2 HDC_AI void score_avx2_impl(const struct hdc_state *st, const float *qp,
                                            const uint8_t *rows, size_t stride, int n,
                                            float *out, const int D, const int B) {
    const float *T = qp + hdc_qp_toff(D);
    const __m256i vidx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)stride));
    for (int r0 = 0; r0 < n; r0 += 8) {
        const int nb = n - r0 < 8 ? n - r0 : 8;
        const __m256i m = kv256_mask8(nb);
        const uint8_t *base = rows + (size_t)r0 * stride;
#define G2(off) _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(const void *)(base + (off)), vidx, m, 1)
        __m256i sw = G2(0);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        if (B == 1 || B == 2) {
            for (int w = 0; w < B * D / 32; w++) {
                __m256i x = G2(2 + 4 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k += 2) {
                    a0 = _mm256_add_ps(a0, lut16_avx2(_mm256_srli_epi32(x, 4 * k), T + 16 * (8 * w + k)));
                    a1 = _mm256_add_ps(a1, lut16_avx2(_mm256_srli_epi32(x, 4 * k + 4), T + 16 * (8 * w + k + 1)));
                }
            }
        } else if (B == 4) {
            for (int w = 0; w < D / 8; w++) {
                __m256i x = G2(2 + 4 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k += 2) {
                    a0 = _mm256_fmadd_ps(lut16_avx2(_mm256_srli_epi32(x, 4 * k), st->lev),
                                         _mm256_set1_ps(qp[8 * w + k]), a0);
                    a1 = _mm256_fmadd_ps(lut16_avx2(_mm256_srli_epi32(x, 4 * k + 4), st->lev),
                                         _mm256_set1_ps(qp[8 * w + k + 1]), a1);
                }
            }
        } else { /* B == 3: coordinates 8w .. 8w + 7 at bits 8 + 3k of the dword at row byte
                  * 1 + 3w (vpermps reads index bits 0..2) */
            const __m256 lev = _mm256_loadu_ps(st->lev);
            for (int w = 0; w < D / 8; w++) {
                __m256i x = G2(1 + 3 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    __m256 v = _mm256_permutevar8x32_ps(lev, _mm256_srli_epi32(x, 8 + 3 * k));
                    if (k & 1) a1 = _mm256_fmadd_ps(v, _mm256_set1_ps(qp[8 * w + k]), a1);
                    else a0 = _mm256_fmadd_ps(v, _mm256_set1_ps(qp[8 * w + k]), a0);
                }
            }
        }
#undef G2
        /* f16 scales: the low halves of the gathered dwords */
        __m128i h16 = _mm_packus_epi32(_mm256_castsi256_si128(_mm256_and_si256(sw, _mm256_set1_epi32(0xffff))),
                                       _mm256_extracti128_si256(_mm256_and_si256(sw, _mm256_set1_epi32(0xffff)), 1));
        __m256 res = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtph_ps(h16), _mm256_add_ps(a0, a1)),
                                   _mm256_set1_ps(qp[D + 2]));
        _mm256_maskstore_ps(out + r0, m, res);
    }
}

KVC_TARGET_AVX2 static void score_avx2(const struct hdc_state *st, const float *qp,
                                       const uint8_t *rows, size_t stride, int n, float *out) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: score_avx2_impl(st, qp, rows, stride, n, out, 64, 1); break;
    case 64 * 8 + 2: score_avx2_impl(st, qp, rows, stride, n, out, 64, 2); break;
    case 64 * 8 + 3: score_avx2_impl(st, qp, rows, stride, n, out, 64, 3); break;
    case 64 * 8 + 4: score_avx2_impl(st, qp, rows, stride, n, out, 64, 4); break;
    case 128 * 8 + 1: score_avx2_impl(st, qp, rows, stride, n, out, 128, 1); break;
    case 128 * 8 + 2: score_avx2_impl(st, qp, rows, stride, n, out, 128, 2); break;
    default:
        switch (st->bits) {
        case 1: score_avx2_impl(st, qp, rows, stride, n, out, st->D, 1); break;
        case 2: score_avx2_impl(st, qp, rows, stride, n, out, st->D, 2); break;
        case 3: score_avx2_impl(st, qp, rows, stride, n, out, st->D, 3); break;
        default: score_avx2_impl(st, qp, rows, stride, n, out, st->D, 4); break;
        }
    }
}

/* Lane masks (all ones where the bit is set) of 8 bits. */
KVC_TARGET_AVX2 HDC_AI __m256i bits8_avx2(unsigned byte) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)byte), sel), sel);
}

/* Decoded levels of coordinates 8c..8c+7 of one row (unscaled). */
KVC_TARGET_AVX2 HDC_AI __m256 levels8_avx2(const struct hdc_state *st, const uint8_t *c,
                                           int ci, const int B) {
    if (B == 2) {
        uint16_t v = hdc_load16(c + 2 * ci);
        __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
        return _mm256_permutevar8x32_ps(_mm256_loadu_ps(st->lev), _mm256_and_si256(idx, _mm256_set1_epi32(3)));
    } else if (B == 4) {
        uint32_t v;
        memcpy(&v, c + 4 * ci, 4);
        __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32((int)v), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
        return lut16_avx2(idx, st->lev);
    } else { /* B == 3: the 3 code bytes after byte c - 1 (the row's scale or codes) */
        uint32_t v;
        memcpy(&v, c + 3 * ci - 1, 4);
        __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32((int)v), _mm256_setr_epi32(8, 11, 14, 17, 20, 23, 26, 29));
        return _mm256_permutevar8x32_ps(_mm256_loadu_ps(st->lev), idx);
    }
}

/* One row into the accumulator registers a[0..nc); t = w * row scale (b = 1: times c1). */
KVC_TARGET_AVX2 HDC_AI void acc_row_avx2(const struct hdc_state *st, float t, const uint8_t *row,
                                         __m256 *a, const int nc, const int B) {
    __m256 vt = _mm256_set1_ps(t);
    if (B == 1) { /* bit l of byte c to bit 0 of lane l, looked up in (-1, +1, ...) */
        const __m256 pm = _mm256_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1);
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++) {
            uint32_t v; /* a dword inside the row holding byte c of the codes */
            memcpy(&v, row + (c ? c - 1 : 0), 4);
            __m256i sh = c ? _mm256_setr_epi32(24, 25, 26, 27, 28, 29, 30, 31)
                           : _mm256_setr_epi32(16, 17, 18, 19, 20, 21, 22, 23);
            __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32((int)v), sh);
            a[c] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(pm, idx), vt, a[c]);
        }
    } else {
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++) a[c] = _mm256_fmadd_ps(levels8_avx2(st, row + 2, c, B), vt, a[c]);
    }
}

KVC_TARGET_AVX2 HDC_AI void acc_avx2_impl(const struct hdc_state *st, const float *w,
                                          const uint8_t *rows, size_t stride, int n, float *acc,
                                          const int D, const int B) {
    const __m256i vidx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)stride));
    float tv[8] __attribute__((aligned(32)));
    const float c1 = B == 1 ? st->c1 : 1.0f;
    for (int r0 = 0; r0 < n; r0 += 8) {
        const int nb = n - r0 < 8 ? n - r0 : 8;
        const __m256i m = kv256_mask8(nb);
        const uint8_t *base = rows + (size_t)r0 * stride;
        __m256i sw = _mm256_and_si256(_mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(const void *)base, vidx, m, 1),
                                      _mm256_set1_epi32(0xffff));
        __m128i h16 = _mm_packus_epi32(_mm256_castsi256_si128(sw), _mm256_extracti128_si256(sw, 1));
        __m256 t = _mm256_mul_ps(_mm256_maskload_ps(w + r0, m), _mm256_cvtph_ps(h16));
        _mm256_store_ps(tv, _mm256_mul_ps(t, _mm256_set1_ps(c1)));
        if (D <= 128) { /* acc in registers */
            const int nc = D / 8;
            __m256 a[16] = {0};
            for (int r = 0; r < nb; r++)
                if (w[r0 + r] != 0.0f) acc_row_avx2(st, tv[r], base + (size_t)r * stride, a, nc, B);
#pragma GCC unroll 16
            for (int c = 0; c < nc; c++) _mm256_storeu_ps(acc + 8 * c, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * c), a[c]));
        } else {
            for (int r = 0; r < nb; r++) {
                if (w[r0 + r] == 0.0f) continue;
                const uint8_t *row = base + (size_t)r * stride;
                __m256 vt = _mm256_set1_ps(tv[r]), vn = _mm256_set1_ps(-tv[r]);
                for (int c = 0; c < D / 8; c++) {
                    __m256 v = B == 1 ? _mm256_blendv_ps(vn, vt, _mm256_castsi256_ps(bits8_avx2(row[2 + c])))
                                      : _mm256_mul_ps(levels8_avx2(st, row + 2, c, B), vt);
                    _mm256_storeu_ps(acc + 8 * c, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * c), v));
                }
            }
        }
    }
}

KVC_TARGET_AVX2 static void acc_avx2(const struct hdc_state *st, const float *w,
                                     const uint8_t *rows, size_t stride, int n, float *acc) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: acc_avx2_impl(st, w, rows, stride, n, acc, 64, 1); break;
    case 64 * 8 + 2: acc_avx2_impl(st, w, rows, stride, n, acc, 64, 2); break;
    case 64 * 8 + 3: acc_avx2_impl(st, w, rows, stride, n, acc, 64, 3); break;
    case 64 * 8 + 4: acc_avx2_impl(st, w, rows, stride, n, acc, 64, 4); break;
    default:
        switch (st->bits) {
        case 1: acc_avx2_impl(st, w, rows, stride, n, acc, st->D, 1); break;
        case 2: acc_avx2_impl(st, w, rows, stride, n, acc, st->D, 2); break;
        case 3: acc_avx2_impl(st, w, rows, stride, n, acc, st->D, 3); break;
        default: acc_avx2_impl(st, w, rows, stride, n, acc, st->D, 4); break;
        }
    }
}

/* ---- AVX-512 row kernels: score with 16 rows in the 16 lanes (gathered code words, table
 * lookups by vpermps: 4 code bits per lookup for b = 1, 2), accumulate row by row ---- */

/* G query heads (1..4, a literal) against the same rows: the gathered code words (and for
 * b = 3, 4 the decoded levels) are shared by the heads; head g reads qp + g * qs and writes
 * out + g * os. */
KVC_TARGET_AVX512 HDC_AI void score_avx512_impl(const struct hdc_state *st, const float *qp,
                                                const uint8_t *rows, size_t stride, int n,
                                                float *out, const int D, const int B, const int G,
                                                size_t qs, size_t os) {
    const __m512i vidx = kv512_row_offsets16(stride);
    /* 8 levels repeated twice for b = 3 (bit 3 of the index is ignored) */
    const __m512 lev = B == 3 ? _mm512_broadcast_f32x8(_mm256_loadu_ps(st->lev)) : _mm512_loadu_ps(st->lev);
    for (int r0 = 0; r0 < n; r0 += 16) {
        const __mmask16 m = kv_mask16(n - r0);
        const uint8_t *base = rows + (size_t)r0 * stride;
#define G5(off) _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)(base + (off)), 1)
        __m512i sw = G5(0);
        /* per head 4 accumulators (a[g][k & 3]), summed at the end */
        __m512 a[4][4];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[g][k] = _mm512_setzero_ps();
        if (B == 1 || B == 2) { /* per-head tables: the gathered words are what is shared */
            for (int w = 0; w < B * D / 32; w++) {
                __m512i x = G5(2 + 4 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    __m512i xs = k ? _mm512_srli_epi32(x, 4 * k) : x;
#pragma GCC unroll 4
                    for (int g = 0; g < G; g++) {
                        const float *t = qp + g * qs + hdc_qp_toff(D) + 128 * w + 16 * k;
                        a[g][k & 3] = _mm512_add_ps(a[g][k & 3], _mm512_permutexvar_ps(xs, _mm512_loadu_ps(t)));
                    }
                }
            }
        } else if (B == 4) {
            for (int w = 0; w < D / 8; w++) {
                __m512i x = G5(2 + 4 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    const __m512 v = _mm512_permutexvar_ps(k ? _mm512_srli_epi32(x, 4 * k) : x, lev);
#pragma GCC unroll 4
                    for (int g = 0; g < G; g++)
                        a[g][k & 3] = _mm512_fmadd_ps(v, _mm512_set1_ps(qp[g * qs + 8 * w + k]), a[g][k & 3]);
                }
            }
        } else { /* B == 3: coordinates 8w .. 8w + 7 at bits 8 + 3k of the dword at row byte
                  * 1 + 3w (vpermps reads index bits 0..3; the levels repeat every 8) */
            for (int w = 0; w < D / 8; w++) {
                __m512i x = G5(1 + 3 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    const __m512 v = _mm512_permutexvar_ps(_mm512_srli_epi32(x, 8 + 3 * k), lev);
#pragma GCC unroll 4
                    for (int g = 0; g < G; g++)
                        a[g][k & 3] = _mm512_fmadd_ps(v, _mm512_set1_ps(qp[g * qs + 8 * w + k]), a[g][k & 3]);
                }
            }
        }
#undef G5
        __m512 scale = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sw));
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            __m512 res = _mm512_add_ps(
                _mm512_mul_ps(scale, _mm512_add_ps(_mm512_add_ps(a[g][0], a[g][1]), _mm512_add_ps(a[g][2], a[g][3]))),
                _mm512_set1_ps(qp[g * qs + D + 2]));
            _mm512_mask_storeu_ps(out + g * os + r0, m, res);
        }
    }
}

KVC_TARGET_AVX512 static void score_avx512(const struct hdc_state *st, const float *qp,
                                           const uint8_t *rows, size_t stride, int n, float *out) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: score_avx512_impl(st, qp, rows, stride, n, out, 64, 1, 1, 0, 0); break;
    case 64 * 8 + 2: score_avx512_impl(st, qp, rows, stride, n, out, 64, 2, 1, 0, 0); break;
    case 64 * 8 + 3: score_avx512_impl(st, qp, rows, stride, n, out, 64, 3, 1, 0, 0); break;
    case 64 * 8 + 4: score_avx512_impl(st, qp, rows, stride, n, out, 64, 4, 1, 0, 0); break;
    case 128 * 8 + 1: score_avx512_impl(st, qp, rows, stride, n, out, 128, 1, 1, 0, 0); break;
    case 128 * 8 + 2: score_avx512_impl(st, qp, rows, stride, n, out, 128, 2, 1, 0, 0); break;
    default:
        switch (st->bits) {
        case 1: score_avx512_impl(st, qp, rows, stride, n, out, st->D, 1, 1, 0, 0); break;
        case 2: score_avx512_impl(st, qp, rows, stride, n, out, st->D, 2, 1, 0, 0); break;
        case 3: score_avx512_impl(st, qp, rows, stride, n, out, st->D, 3, 1, 0, 0); break;
        default: score_avx512_impl(st, qp, rows, stride, n, out, st->D, 4, 1, 0, 0); break;
        }
    }
}

/* Grouped score: G heads at once for the specialised shapes (D = 64, any b; D = 128,
 * b <= 2), in passes of up to 4 heads; NULL-equivalent fallback (one head at a time)
 * otherwise. */
KVC_TARGET_AVX512 HDC_AI void score_g_shape(const struct hdc_state *st, const int D, const int B, int G,
                                            const float *qp, size_t qs, const uint8_t *rows, size_t stride,
                                            int n, float *out, size_t os) {
#define HDC_CALL(GL, g0) \
    score_avx512_impl(st, qp + (size_t)(g0) * qs, rows, stride, n, out + (size_t)(g0) * os, D, B, GL, qs, os)
    KV_G_PASSES(G, HDC_CALL)
#undef HDC_CALL
}
KVC_TARGET_AVX512 void hdc_rows_score_g_avx512(const struct hdc_state *st, int G, const float *qp, size_t qs,
                                             const uint8_t *rows, size_t stride, int n, float *out, size_t os) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: score_g_shape(st, 64, 1, G, qp, qs, rows, stride, n, out, os); break;
    case 64 * 8 + 2: score_g_shape(st, 64, 2, G, qp, qs, rows, stride, n, out, os); break;
    case 64 * 8 + 3: score_g_shape(st, 64, 3, G, qp, qs, rows, stride, n, out, os); break;
    case 64 * 8 + 4: score_g_shape(st, 64, 4, G, qp, qs, rows, stride, n, out, os); break;
    case 128 * 8 + 1: score_g_shape(st, 128, 1, G, qp, qs, rows, stride, n, out, os); break;
    case 128 * 8 + 2: score_g_shape(st, 128, 2, G, qp, qs, rows, stride, n, out, os); break;
    default:
        for (int g = 0; g < G; g++) score_avx512(st, qp + (size_t)g * qs, rows, stride, n, out + (size_t)g * os);
        break;
    }
}

KVC_TARGET_AVX512 HDC_AI __mmask16 mask16_at(const uint8_t *p) {
    return _cvtu32_mask16(hdc_load16(p));
}

/* Decoded levels (unscaled) of coordinates 16c..16c+15 of one row; lev16 holds the levels
 * repeated to 16 entries (the index bits above b are not cleared). */
KVC_TARGET_AVX512 HDC_AI __m512 levels16_avx512(const uint8_t *c, int ci, __m512 lev16, const int B) {
    if (B == 2) {
        uint32_t v;
        memcpy(&v, c + 4 * ci, 4);
        __m512i idx = _mm512_srlv_epi32(_mm512_set1_epi32((int)v),
                                        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
        return _mm512_permutexvar_ps(idx, lev16);
    } else if (B == 4) {
        uint64_t v;
        memcpy(&v, c + 8 * ci, 8);
        __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)(uint32_t)v)),
                                       _mm256_set1_epi32((int)(uint32_t)(v >> 32)), 1);
        __m512i idx = _mm512_srlv_epi32(x, _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28));
        return _mm512_permutexvar_ps(idx, lev16);
    } else { /* B == 3: the 6 code bytes after bytes c - 2, c - 1 (the row's scale or codes);
              * coordinates 0..7 in the low 24 bits of lanes 0..7, 8..15 in those of 8..15 */
        uint64_t v;
        memcpy(&v, c + 6 * ci - 2, 8);
        __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)(uint32_t)(v >> 16))),
                                       _mm256_set1_epi32((int)(uint32_t)(v >> 40)), 1);
        __m512i idx = _mm512_srlv_epi32(x, _mm512_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21, 0, 3, 6, 9, 12, 15, 18, 21));
        return _mm512_permutexvar_ps(idx, lev16);
    }
}

/* Levels of coordinates 16c..16c+15 of a whole row (after its 2-byte scale), unscaled; b = 1:
 * bit l of the chunk to bit 0 of lane l, looked up in lev16 = (-1, +1, -1, +1, ...) (faster
 * than k-masks). */
KVC_TARGET_AVX512 HDC_AI __m512 row_levels16_avx512(const uint8_t *row, int c, __m512 lev16, const int B) {
    if (B == 1) {
        const __m512i shr = _mm512_setr_epi32(16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
        uint32_t v; /* the chunk's 16 bits are the upper half of the dword before them */
        memcpy(&v, row + 2 * c, 4);
        return _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi32((int)v), shr), lev16);
    }
    return levels16_avx512(row + 2, c, lev16, B);
}

/* One row into the accumulator registers a[0..nc); t = w * row scale (b = 1: times c1). */
KVC_TARGET_AVX512 HDC_AI void acc_row_avx512(float t, const uint8_t *row, __m512 *a, __m512 lev16,
                                             const int nc, const int B) {
    const __m512 vt = _mm512_set1_ps(t);
#pragma GCC unroll 16
    for (int c = 0; c < nc; c++) a[c] = _mm512_fmadd_ps(row_levels16_avx512(row, c, lev16, B), vt, a[c]);
}

/* t = w * scale (* c1 for b = 1) of 16 rows at a time, zero for the rows past n. */
KVC_TARGET_AVX512 HDC_AI __m512 acc_t16_avx512(const struct hdc_state *st, const float *w,
                                               const uint8_t *rows, __m512i vidx, int nb, const int B) {
    const __mmask16 m = kv_mask16(nb);
    __m512i sw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)rows, 1);
    __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sw)));
    return B == 1 ? _mm512_mul_ps(t, _mm512_set1_ps(st->c1)) : t;
}

/* The levels of b-bit codes repeated to 16 lanes (b = 1: -1, +1 alternating), for vpermps
 * lookups by code index. */
KVC_TARGET_AVX512 HDC_AI __m512 acc_lev16_avx512(const struct hdc_state *st, const int B) {
    if (B == 2) return _mm512_broadcast_f32x4(_mm_loadu_ps(st->lev));
    if (B == 3) return _mm512_broadcast_f32x8(_mm256_loadu_ps(st->lev));
    if (B == 1) return _mm512_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1);
    return _mm512_loadu_ps(st->lev);
}

KVC_TARGET_AVX512 HDC_AI void acc_avx512_impl(const struct hdc_state *st, const float *w,
                                              const uint8_t *rows, size_t stride, int n,
                                              float *acc, const int D, const int B) {
    const __m512 lev16 = acc_lev16_avx512(st, B);
    const __m512i vidx = kv512_row_offsets16(stride);
    float tv[16] __attribute__((aligned(64)));
    if (D <= 256) { /* acc in registers */
        const int nc = D / 16;
        __m512 a[16] = {0};
        for (int r0 = 0; r0 < n; r0 += 16) {
            const int nb = n - r0 < 16 ? n - r0 : 16;
            const uint8_t *base = rows + (size_t)r0 * stride;
            _mm512_store_ps(tv, acc_t16_avx512(st, w + r0, base, vidx, nb, B));
            for (int r = 0; r < nb; r++)
                if (w[r0 + r] != 0.0f) acc_row_avx512(tv[r], base + (size_t)r * stride, a, lev16, nc, B);
        }
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++) _mm512_storeu_ps(acc + 16 * c, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * c), a[c]));
        return;
    }
    for (int r0 = 0; r0 < n; r0 += 16) { /* large D: acc in memory */
        const int nb = n - r0 < 16 ? n - r0 : 16;
        const uint8_t *base = rows + (size_t)r0 * stride;
        _mm512_store_ps(tv, acc_t16_avx512(st, w + r0, base, vidx, nb, B));
        for (int r = 0; r < nb; r++) {
            if (w[r0 + r] == 0.0f) continue;
            const uint8_t *row = base + (size_t)r * stride;
            if (B == 1) {
                __m512 vt = _mm512_set1_ps(tv[r]), vn = _mm512_set1_ps(-tv[r]);
                for (int c = 0; c < D / 16; c++)
                    _mm512_storeu_ps(acc + 16 * c, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * c),
                                                                 _mm512_mask_blend_ps(mask16_at(row + 2 + 2 * c), vn, vt)));
            } else {
                __m512 vt = _mm512_set1_ps(tv[r]);
                for (int c = 0; c < D / 16; c++)
                    _mm512_storeu_ps(acc + 16 * c, _mm512_fmadd_ps(levels16_avx512(row + 2, c, lev16, B), vt,
                                                                   _mm512_loadu_ps(acc + 16 * c)));
            }
        }
    }
}

KVC_TARGET_AVX512 static void acc_avx512(const struct hdc_state *st, const float *w,
                                         const uint8_t *rows, size_t stride, int n, float *acc);

/* Grouped accumulate for D = 64: the G heads' weights (w + g * ws) share each row's decoded
 * levels; acc + g * as gets head g's sum. Rows whose G weights are all zero are not read. */
KVC_TARGET_AVX512 HDC_AI void acc_g64_avx512_impl(const struct hdc_state *st, const int G, const float *w,
                                                  size_t ws, const uint8_t *rows, size_t stride, int n,
                                                  float *acc, size_t as, const int B) {
    enum { D = 64, NC = 4 };
    const __m512 lev16 = acc_lev16_avx512(st, B);
    const __m512i vidx = kv512_row_offsets16(stride);
    float tv[4][16] __attribute__((aligned(64)));
    __m512 a[4][NC];
#pragma GCC unroll 4
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) a[g][c] = _mm512_setzero_ps();
    for (int r0 = 0; r0 < n; r0 += 16) {
        const int nb = n - r0 < 16 ? n - r0 : 16;
        const uint8_t *base = rows + (size_t)r0 * stride;
        kv_prefetch_rows16(base, stride, 64);
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) _mm512_store_ps(tv[g], acc_t16_avx512(st, w + g * ws + r0, base, vidx, nb, B));
        for (int r = 0; r < nb; r++) {
            int any = 0;
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) any |= w[g * ws + r0 + r] != 0.0f;
            if (!any) continue;
            const uint8_t *row = base + (size_t)r * stride;
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const __m512 lv = row_levels16_avx512(row, c, lev16, B);
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) a[g][c] = _mm512_fmadd_ps(lv, _mm512_set1_ps(tv[g][r]), a[g][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++)
            _mm512_storeu_ps(acc + g * as + 16 * c, _mm512_add_ps(_mm512_loadu_ps(acc + g * as + 16 * c), a[g][c]));
}

KVC_TARGET_AVX512 HDC_AI void acc_g64_bits(const struct hdc_state *st, const int B, int G, const float *w,
                                           size_t ws, const uint8_t *rows, size_t stride, int n, float *acc,
                                           size_t as) {
#define HDC_CALL(GL, g0) \
    acc_g64_avx512_impl(st, GL, w + (size_t)(g0) * ws, ws, rows, stride, n, acc + (size_t)(g0) * as, as, B)
    KV_G_PASSES(G, HDC_CALL)
#undef HDC_CALL
}
KVC_TARGET_AVX512 void hdc_rows_acc_g_avx512(const struct hdc_state *st, int G, const float *w, size_t ws,
                                           const uint8_t *rows, size_t stride, int n, float *acc, size_t as) {
    if (st->D != 64) {
        for (int g = 0; g < G; g++) acc_avx512(st, w + (size_t)g * ws, rows, stride, n, acc + (size_t)g * as);
        return;
    }
    switch (st->bits) {
    case 1: acc_g64_bits(st, 1, G, w, ws, rows, stride, n, acc, as); break;
    case 2: acc_g64_bits(st, 2, G, w, ws, rows, stride, n, acc, as); break;
    case 3: acc_g64_bits(st, 3, G, w, ws, rows, stride, n, acc, as); break;
    default: acc_g64_bits(st, 4, G, w, ws, rows, stride, n, acc, as); break;
    }
}

KVC_TARGET_AVX512 static void acc_avx512(const struct hdc_state *st, const float *w,
                                         const uint8_t *rows, size_t stride, int n, float *acc) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: acc_avx512_impl(st, w, rows, stride, n, acc, 64, 1); break;
    case 64 * 8 + 2: acc_avx512_impl(st, w, rows, stride, n, acc, 64, 2); break;
    case 64 * 8 + 3: acc_avx512_impl(st, w, rows, stride, n, acc, 64, 3); break;
    case 64 * 8 + 4: acc_avx512_impl(st, w, rows, stride, n, acc, 64, 4); break;
    case 128 * 8 + 1: acc_avx512_impl(st, w, rows, stride, n, acc, 128, 1); break;
    default:
        switch (st->bits) {
        case 1: acc_avx512_impl(st, w, rows, stride, n, acc, st->D, 1); break;
        case 2: acc_avx512_impl(st, w, rows, stride, n, acc, st->D, 2); break;
        case 3: acc_avx512_impl(st, w, rows, stride, n, acc, st->D, 3); break;
        default: acc_avx512_impl(st, w, rows, stride, n, acc, st->D, 4); break;
        }
    }
}

/* Popcount scores with VPOPCNTDQ: 16 rows in the 16 lanes, code dwords gathered. */
#define KVC_TARGET_VPOPCNT \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,avx2,fma,f16c,popcnt")))
KVC_TARGET_VPOPCNT void hdc_ham_vpopcnt(const struct hdc_state *st, const float *qp,
                                        const uint8_t *rows, size_t stride, int n, float *out) {
    const int nd = st->D / 32;
    const uint32_t *qwp = (const uint32_t *)(const void *)hdc_qp_words(qp, st->D);
    const __m512 qn = _mm512_set1_ps(qp[st->D + 1]);
    const __m512i vidx = kv512_row_offsets16(stride);
    for (int r0 = 0; r0 < n; r0 += 16) {
        const __mmask16 m = kv_mask16(n - r0);
        const uint8_t *base = rows + (size_t)r0 * stride;
        __m512i cnt = _mm512_setzero_si512();
        for (int w = 0; w < nd; w++) {
            uint32_t q;
            memcpy(&q, qwp + w, 4);
            __m512i x = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)(base + 2 + 4 * w), 1);
            cnt = _mm512_add_epi32(cnt, _mm512_popcnt_epi32(_mm512_xor_si512(x, _mm512_set1_epi32((int)q))));
        }
        __m512 cs = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, cnt, st->cos_tab, 4);
        __m512i sw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)base, 1);
        __m512 res = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(qn, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sw))), cs),
                                   _mm512_set1_ps(qp[st->D + 2]));
        _mm512_mask_storeu_ps(out + r0, m, res);
    }
}
KVC_TARGET_AVX512 static void ham_avx512(const struct hdc_state *st, const float *qp,
                                         const uint8_t *rows, size_t stride, int n, float *out) {
    if (st->use_vpopcnt) hdc_ham_vpopcnt(st, qp, rows, stride, n, out);
    else ham_popcnt(st, qp, rows, stride, n, out);
}

const struct hdc_ops hdc_ops[KVC_ISA_COUNT] = {
    [KVC_ISA_SCALAR] = {score_scalar, hdc_ham_scalar, acc_scalar},
    [KVC_ISA_AVX2] = {score_avx2, ham_popcnt, acc_avx2},
    [KVC_ISA_AVX512] = {score_avx512, ham_avx512, acc_avx512},
};

/* ---- int8 scores (b >= 2): int8 query x int8 levels ----
 * Scalar reference, then the VNNI + VBMI kernel: 16 rows in the 16 dword lanes; for each 4
 * coordinates vpmultishiftqb moves the codes of the 4 coordinates of each row into the 4
 * bytes of its lane, vpermb looks the unsigned int8 levels up, and one vpdpbusd per query head
 * adds level x query byte products (2 ops + 1 per head for 16 rows x 4 coordinates, against 2
 * to 4 + 1 per head for 16 rows x 1 coordinate in the float kernel). */

void hdc_score_i8_scalar(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                         size_t stride, int n, float *out) {
    const int D = st->D;
    const float *p = qp + hdc_qp_i8off(D, st->bits);
    const int8_t *q8 = (const int8_t *)(const void *)p;
    const float fac = p[D / 4], qmu = qp[D + 2];
    int32_t off;
    memcpy(&off, p + D / 4 + 1, 4);
    for (int r = 0; r < n; r++) {
        const uint8_t *row = rows + (size_t)r * stride;
        int32_t a = 0;
        for (int i = 0; i < D; i++) a += (int32_t)st->lev8u[hdc_code(st, row, i)] * q8[i];
        float t = (float)(a - off);
        float v = hdc_row_f16(row) * t;
        v = v * fac;
        out[r] = v + qmu;
    }
}

#define KVC_TARGET_VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))

#ifndef HDC_PF_SCORE
#define HDC_PF_SCORE 64 /* rows ahead of the int8 key score's prefetch */
#endif

/* vpmultishiftqb control: byte j (0..3) of each dword lane takes 8 bits from bit o0 + s * j
 * of the lane's dword (bytes 4..7: the upper dword of the qword), modulo 64. */
static inline long long hdc_msctl(int o0, int s) {
    unsigned long long c = 0;
    for (int j = 0; j < 8; j++) c |= (unsigned long long)((o0 + s * (j & 3) + 32 * (j >> 2)) & 63) << (8 * j);
    return (long long)c;
}

/* Gather-free load of the dwords at NO row offsets (hdc_state.ksel: the scale, then the code
 * dwords of D = 64: b = 2 the 4 at bytes 2, 6, 10, 14; b = 3 the 8 at bytes 1, 4, .., 22) of 16
 * rows at stride row_bytes, lane r = row r (rows past nb read as zero): per 4 rows two masked
 * loads and one vpermt2b per selection put offset o's dwords into 128-bit block o & 3 of P[o
 * >> 2]; a 4 x 4 transpose of 128-bit blocks (vshufi64x2) then gathers block o of the 4 groups
 * into R[o]. For b = 2: 8 loads + 8 vpermt2b + 12 vshufi64x2 against 5 vpgatherdd, which are
 * slow on some CPUs (microcoded) and stall on any line that misses. */
KVC_TARGET_VNNI HDC_AI void rows16_dwords(const struct hdc_state *st, const uint8_t *base, int nb,
                                          __m512i R[12], const int NO, const __m512i *sel,
                                          const __mmask64 mb4) {
    const int rb = (int)st->row_bytes, NS = (NO + 3) / 4;
    __m512i P[3][4];
#pragma GCC unroll 4
    for (int w = 0; w < 4; w++) {
        const uint8_t *p = base + (size_t)(4 * w) * (size_t)rb;
        /* masks of the two 64-byte loads covering 4 rows: mb4 (and all of the first) for 16 rows */
        __mmask64 ma = ~(__mmask64)0, mb = mb4;
        if (nb < 16) {
            const int nr = nb - 4 * w, len = nr >= 4 ? 4 * rb : nr > 0 ? nr * rb : 0;
            ma = len >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << len) - 1);
            mb = len >= 128 ? ~(__mmask64)0 : len > 64 ? (((__mmask64)1 << (len - 64)) - 1) : 0;
        }
        const __m512i a = _mm512_maskz_loadu_epi8(ma, p), b = _mm512_maskz_loadu_epi8(mb, p + 64);
#pragma GCC unroll 3
        for (int s = 0; s < NS; s++) P[s][w] = _mm512_permutex2var_epi8(a, sel[s], b);
    }
#pragma GCC unroll 3
    for (int s = 0; s < NS; s++) {
        const __m512i t0 = _mm512_shuffle_i64x2(P[s][0], P[s][1], 0x44), t1 = _mm512_shuffle_i64x2(P[s][0], P[s][1], 0xEE);
        const __m512i t2 = _mm512_shuffle_i64x2(P[s][2], P[s][3], 0x44), t3 = _mm512_shuffle_i64x2(P[s][2], P[s][3], 0xEE);
        R[4 * s] = _mm512_shuffle_i64x2(t0, t2, 0x88);
        if (4 * s + 1 < NO) R[4 * s + 1] = _mm512_shuffle_i64x2(t0, t2, 0xDD);
        if (4 * s + 2 < NO) R[4 * s + 2] = _mm512_shuffle_i64x2(t1, t3, 0x88);
        if (4 * s + 3 < NO) R[4 * s + 3] = _mm512_shuffle_i64x2(t1, t3, 0xDD);
    }
}

KVC_TARGET_VNNI HDC_AI void score_i8_impl(const struct hdc_state *st, const float *qp, size_t qs,
                                          const uint8_t *rows, size_t stride, int n, float *out,
                                          size_t os, const int D, const int B, const int G) {
    const __m512i vidx = kv512_row_offsets16(stride);
    const __m512i lut = _mm512_loadu_si512((const void *)st->lev8u);
    const int qoff = hdc_qp_i8off(D, B);
    /* rows16_dwords' offsets and selections, and the second-load mask of 4 full rows (4 rb > 64
     * bytes) */
    const int NO = B == 3 ? 9 : 5;
    __m512i sel[3];
#pragma GCC unroll 3
    for (int s = 0; s < (NO + 3) / 4; s++) sel[s] = _mm512_loadu_si512((const void *)st->ksel[s]);
    const int len4 = 4 * (int)st->row_bytes;
    const __mmask64 mb4 = len4 >= 128 ? ~(__mmask64)0 : len4 > 64 ? (((__mmask64)1 << (len4 - 64)) - 1) : 0;
    for (int r0 = 0; r0 < n; r0 += 16) {
        const __mmask16 m = kv_mask16(n - r0);
        const uint8_t *base = rows + (size_t)r0 * stride;
        kv_prefetch_rows16(base, stride, HDC_PF_SCORE);
#define G8(off) _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)(base + (off)), 1)
        /* D = 64, b = 2, 3 at stride row_bytes: the dwords by contiguous loads, not gathers */
        const int tl = D == 64 && B != 4 && stride == st->row_bytes;
        __m512i R[12];
        if (tl) rows16_dwords(st, base, n - r0 < 16 ? n - r0 : 16, R, NO, sel, mb4);
        __m512i a[4];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) a[g] = _mm512_setzero_si512();
        for (int c = 0; c < D / 32; c++) { /* coordinates 32c .. 32c + 31 */
            /* the dwords holding coordinates 32c .. 32c + 31: b = 4 at row bytes 2 + 16c + 4j,
             * b = 2 at 2 + 8c + 4j, b = 3 at 1 + 12c + 3j (8 coordinates each, at bit 8) */
            __m512i x[4];
            if (B == 4) {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) x[j] = G8(2 + 16 * c + 4 * j);
            } else if (B == 3) {
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) x[j] = tl ? R[1 + 4 * c + j] : G8(1 + 12 * c + 3 * j);
            } else {
                x[0] = tl ? R[1 + 2 * c] : G8(2 + 8 * c);
                x[1] = tl ? R[2 + 2 * c] : G8(6 + 8 * c);
            }
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) { /* coordinates 32c + 4k .. + 3 */
                __m512i idx;
                if (B == 4)
                    idx = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(hdc_msctl(16 * (k & 1), 4)), x[k >> 1]);
                else if (B == 3)
                    idx = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(hdc_msctl(8 + 12 * (k & 1), 3)), x[k >> 1]);
                else
                    idx = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(hdc_msctl(8 * (k & 3), 2)), x[k >> 2]);
                const __m512i u = _mm512_permutexvar_epi8(idx, lut); /* vpermb: index bits 0..5 */
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) {
                    int32_t qd;
                    memcpy(&qd, (const uint8_t *)(const void *)(qp + g * qs + qoff) + 32 * c + 4 * k, 4);
                    a[g] = _mm512_dpbusd_epi32(a[g], u, _mm512_set1_epi32(qd));
                }
            }
        }
        const __m512 sc = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(tl ? R[0] : G8(0)));
#undef G8
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            const float *p = qp + g * qs + qoff;
            int32_t off;
            memcpy(&off, p + D / 4 + 1, 4);
            __m512 t = _mm512_cvtepi32_ps(_mm512_sub_epi32(a[g], _mm512_set1_epi32(off)));
            __m512 v = _mm512_mul_ps(_mm512_mul_ps(sc, t), _mm512_set1_ps(p[D / 4]));
            _mm512_mask_storeu_ps(out + g * os + r0, m, _mm512_add_ps(v, _mm512_set1_ps(qp[g * qs + D + 2])));
        }
    }
}

KVC_TARGET_VNNI HDC_AI void score_i8_shape(const struct hdc_state *st, const int D, const int B, int G,
                                           const float *qp, size_t qs, const uint8_t *rows, size_t stride,
                                           int n, float *out, size_t os) {
#define HDC_CALL(GL, g0) \
    score_i8_impl(st, qp + (size_t)(g0) * qs, qs, rows, stride, n, out + (size_t)(g0) * os, os, D, B, GL)
    KV_G_PASSES(G, HDC_CALL)
#undef HDC_CALL
}

KVC_TARGET_VNNI void hdc_rows_score_g_i8(const struct hdc_state *st, int G, const float *qp, size_t qs,
                                         const uint8_t *rows, size_t stride, int n, float *out, size_t os) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 2: score_i8_shape(st, 64, 2, G, qp, qs, rows, stride, n, out, os); break;
    case 64 * 8 + 3: score_i8_shape(st, 64, 3, G, qp, qs, rows, stride, n, out, os); break;
    case 64 * 8 + 4: score_i8_shape(st, 64, 4, G, qp, qs, rows, stride, n, out, os); break;
    case 128 * 8 + 3: score_i8_shape(st, 128, 3, G, qp, qs, rows, stride, n, out, os); break;
    default:
        switch (st->bits) {
        case 2: score_i8_shape(st, st->D, 2, G, qp, qs, rows, stride, n, out, os); break;
        case 3: score_i8_shape(st, st->D, 3, G, qp, qs, rows, stride, n, out, os); break;
        default: score_i8_shape(st, st->D, 4, G, qp, qs, rows, stride, n, out, os); break;
        }
    }
}

/* ---- decoded hypervectors of a block of rows (attention over a batch sums them as f32) ---- */

static void dequant_rows_scalar(const struct hdc_state *st, const uint8_t *rows, size_t stride, int n,
                                float *y) {
    const int D = st->D;
    for (int r = 0; r < n; r++) {
        float *yr = y + (size_t)r * D;
        hdc_dequant(st, rows + (size_t)r * stride, yr);
        if (st->mu_h)
            for (int i = 0; i < D; i++) yr[i] += st->mu_h[i];
    }
}

/* The same with the vector level lookup (same products and sums: identical floats). */
KVC_TARGET_AVX512 HDC_AI void dequant_rows_avx512_impl(const struct hdc_state *st, const uint8_t *rows,
                                                       size_t stride, int n, float *y, const int B) {
    const int D = st->D;
    const __m512 lev16 = acc_lev16_avx512(st, B);
    for (int r = 0; r < n; r++) {
        const uint8_t *row = rows + (size_t)r * stride;
        float sc = hdc_row_f16(row);
        if (B == 1) sc *= st->c1;
        const __m512 vs = _mm512_set1_ps(sc);
        float *yr = y + (size_t)r * D;
        for (int c = 0; c < D / 16; c++) {
            __m512 v = _mm512_mul_ps(row_levels16_avx512(row, c, lev16, B), vs);
            if (st->mu_h) v = _mm512_add_ps(v, _mm512_loadu_ps(st->mu_h + 16 * c));
            _mm512_storeu_ps(yr + 16 * c, v);
        }
    }
}

KVC_TARGET_AVX512 static void dequant_rows_avx512(const struct hdc_state *st, const uint8_t *rows,
                                                  size_t stride, int n, float *y) {
    switch (st->bits) {
    case 1: dequant_rows_avx512_impl(st, rows, stride, n, y, 1); break;
    case 2: dequant_rows_avx512_impl(st, rows, stride, n, y, 2); break;
    case 3: dequant_rows_avx512_impl(st, rows, stride, n, y, 3); break;
    default: dequant_rows_avx512_impl(st, rows, stride, n, y, 4); break;
    }
}

void hdc_rows_dequant(const struct hdc_state *st, const uint8_t *rows, size_t stride, int n, float *y,
                      int isa) {
    if (isa == KVC_ISA_AVX512) dequant_rows_avx512(st, rows, stride, n, y);
    else dequant_rows_scalar(st, rows, stride, n, y);
}
