/* pca_avx512.c - the AVX-512 kernels of the `pca` codec (pca.c holds the parameters, the
 * per-slot state, the scalar and AVX2 kernels and the codec table): encode, prepare, score and
 * accumulate for every coefficient format, the bits-row field tables of the permute path, the
 * grouped (several query heads) score / accumulate, and the VNNI integer grouped score. */
#include "pca_impl.h"

#include <stdatomic.h>

/* Tests: 0 keeps the grouped score on its float path (kv_pca_allow_vnni, codec_impl.h). */
static _Atomic int pca_allow_vnni = 1;
void kv_pca_allow_vnni(int allow) { atomic_store(&pca_allow_vnni, allow ? 1 : 0); }

/* ------------------------------------------------------------------ AVX-512 ---- */

/* First n lanes, for any n (none when n <= 0). */
static inline __mmask16 m16(int n) { return n <= 0 ? (__mmask16)0 : kv_mask16(n); }

/* A row's bytes as loaded once for the bits permute path: w0 = bytes 0..63, w1 = bytes
 * 1..64 (both masked to the row). */
struct row512 {
    const uint8_t *p;
    __m512i w0, w1;
};

KVC_TARGET_AVX512 static inline __attribute__((always_inline)) struct row512 row512_load(const struct pca_state *s, const uint8_t *p, const int fmt) {
    struct row512 rw;
    rw.p = p;
    if (fmt == FMT_BITS && s->rb <= 64) {
        __mmask64 m0 = s->rb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << s->rb) - 1);
        rw.w0 = _mm512_maskz_loadu_epi8(m0, p);
        rw.w1 = _mm512_maskz_loadu_epi8(m0 >> 1, p + 1);
    } else {
        rw.w0 = rw.w1 = _mm512_setzero_si512();
    }
    return rw;
}

/* 16 coefficients j0.. of a row as floats (bits: index values; q8 / q4: without the row
 * scale); lanes at or beyond r are zero. Masked loads never read past the row, except the
 * gather path of long bits rows (callers pad the last row). */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) __m512 dec512(const struct pca_state *s, const struct row512 *rw, const int fmt,
                                              int j0) {
    int rem = s->r - j0;
    __mmask16 m = kv_mask16(rem);
    const uint8_t *row = rw->p;
    switch (fmt) {
    case FMT_F32: return _mm512_maskz_loadu_ps(m, (const float *)row + j0);
    case FMT_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + j0));
    case FMT_Q8: return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, row + 2 + j0)));
    case FMT_Q4: {
        int nbytes = rem >= 16 ? 8 : (rem + 1) / 2;
        __m128i x = _mm_maskz_loadu_epi8((__mmask16)((1u << nbytes) - 1), row + 2 + j0 / 2), k = _mm_set1_epi8(15);
        __m128i il = _mm_unpacklo_epi8(_mm_and_si128(x, k), _mm_and_si128(_mm_srli_epi16(x, 4), k));
        return _mm512_cvtepi32_ps(_mm512_maskz_sub_epi32(m, _mm512_cvtepu8_epi32(il), _mm512_set1_epi32(8)));
    }
    default: /* FMT_BITS */
        if (s->rb <= 64) {
            __m256i idx = _mm256_loadu_si256((const __m256i *)(s->widx + j0));
            __m512i g = _mm512_permutex2var_epi16(rw->w0, _mm512_castsi256_si512(idx), rw->w1);
            __m256i h = _mm256_srlv_epi16(_mm512_castsi512_si256(g), _mm256_loadu_si256((const __m256i *)(s->wsh + j0)));
            h = _mm256_and_si256(h, _mm256_loadu_si256((const __m256i *)(s->wmask + j0)));
            return _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(h));
        } else {
            __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m,
                                                    _mm512_loadu_si512(s->boff + j0), (const void *)row, 1);
            g = _mm512_srlv_epi32(g, _mm512_loadu_si512(s->bsh + j0));
            g = _mm512_and_si512(g, _mm512_loadu_si512(s->bmask + j0));
            return _mm512_cvtepi32_ps(g);
        }
    }
}

/* Row pointer for the AVX-512 kernels: only long bits rows (gather path) need the padded
 * copy of the last row. */
static inline const uint8_t *row512_at(const struct pca_state *s, const void *base, int i, int n, uint8_t *pad,
                                       const int fmt) {
    if (fmt == FMT_BITS && s->rb > 64) return row_at(s, base, i, n, pad);
    return (const uint8_t *)base + (size_t)i * s->rb;
}

KVC_TARGET_AVX512 static inline void project_avx512(const struct pca_state *s, const float *y, float *c) {
    int rp = s->rp, d = s->d;
    for (int j0 = 0; j0 < rp; j0 += 16) {
        __m512 a = _mm512_setzero_ps();
        for (int i = 0; i < d; i++) /* mul then add, as the scalar code: identical bytes */
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_loadu_ps(s->ET + (size_t)i * rp + j0), _mm512_set1_ps(y[i])));
        _mm512_storeu_ps(c + j0, a);
    }
}

KVC_TARGET_AVX512 void pca_encode_avx512(const struct kv_slot *sl, const float *x, int pos0, int n, void *dst) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_encode(sl, x, pos0, n, dst);
        return;
    }
    float y[PCA_MAX_D], c[PCA_MAX_D + 16];
    for (int i = 0; i < n; i++) {
        pca_center_row(s, x + (size_t)i * s->d, pos0 + i, y);
        project_avx512(s, y, c);
        pca_pack_row(s, c, (uint8_t *)dst + (size_t)i * s->rb);
    }
}

KVC_TARGET_AVX512 void pca_prepare_avx512(const struct kv_slot *sl, const float *q, float *qp) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_prepare(sl, q, qp);
        return;
    }
    if (s->pre) {
        pca_to_rope_order(s, q, qp);
        return;
    }
    int rp = s->rp, d = s->d;
    for (int j0 = 0; j0 < rp; j0 += 16) {
        __m512 a = _mm512_setzero_ps();
        for (int i = 0; i < d; i++)
            a = _mm512_fmadd_ps(_mm512_loadu_ps(s->PT + (size_t)i * rp + j0), _mm512_set1_ps(q[i]), a);
        _mm512_mask_storeu_ps(qp + j0, kv_mask16(s->r - j0), a);
    }
    pca_prepare_finish(s, q, qp);
}

/* keys=pre, four rows at once: rebuild each row's pre-RoPE key (mean + sum_j c_j P_j) in
 * nch = ceil(d / 16) chunks (1..4) x 4 rows of registers (16 independent multiply-add
 * chains, each basis vector loaded once for the four rows), rotate by the row's cos/sin,
 * dot with q: out[i] = 16 lanes of partial sums of row i. */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
pre4_avx512_n(const struct pca_state *s, const float *const *c, const float *const *cs, const float *q, __m512 *out,
              const int nch) {
    int d = s->d, r = s->r;
    __mmask16 ml = kv_mask16(d - 16 * (nch - 1));
    __m512 k0[4], k1[4], k2[4], k3[4];
#pragma GCC unroll 4
    for (int ch = 0; ch < nch; ch++) {
        __m512 mv = _mm512_maskz_loadu_ps(ch == nch - 1 ? ml : (__mmask16)0xffff, s->mean + 16 * ch);
        k0[ch] = k1[ch] = k2[ch] = k3[ch] = mv;
    }
    for (int j = 0; j < r; j++) {
        const float *pj = s->P + (size_t)j * d;
        __m512 c0 = _mm512_set1_ps(c[0][j]), c1 = _mm512_set1_ps(c[1][j]);
        __m512 c2 = _mm512_set1_ps(c[2][j]), c3 = _mm512_set1_ps(c[3][j]);
#pragma GCC unroll 4
        for (int ch = 0; ch < nch; ch++) {
            __m512 p = _mm512_maskz_loadu_ps(ch == nch - 1 ? ml : (__mmask16)0xffff, pj + 16 * ch);
            k0[ch] = _mm512_fmadd_ps(c0, p, k0[ch]);
            k1[ch] = _mm512_fmadd_ps(c1, p, k1[ch]);
            k2[ch] = _mm512_fmadd_ps(c2, p, k2[ch]);
            k3[ch] = _mm512_fmadd_ps(c3, p, k3[ch]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512 acc = _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int ch = 0; ch < nch; ch++) {
            __mmask16 m = ch == nch - 1 ? ml : (__mmask16)0xffff;
            __m512 k = i == 0 ? k0[ch] : i == 1 ? k1[ch] : i == 2 ? k2[ch] : k3[ch];
            __m512 cv = _mm512_maskz_loadu_ps(m, cs[i] + 16 * ch);
            __m512 rot = _mm512_fmaddsub_ps(k, _mm512_moveldup_ps(cv),
                                            _mm512_mul_ps(_mm512_permute_ps(k, 0xB1), _mm512_movehdup_ps(cv)));
            acc = _mm512_fmadd_ps(rot, _mm512_maskz_loadu_ps(m, q + 16 * ch), acc);
        }
        out[i] = acc;
    }
}

/* Any head dim, one row: two chains per chunk. */
KVC_TARGET_AVX512 static __m512 pre1_avx512_any(const struct pca_state *s, const float *c, const float *cs,
                                                const float *q) {
    int d = s->d, r = s->r;
    __m512 acc = _mm512_setzero_ps();
    for (int t = 0; t < d; t += 16) {
        __mmask16 m = kv_mask16(d - t);
        __m512 ka = _mm512_maskz_loadu_ps(m, s->mean + t), kb = _mm512_setzero_ps();
        int j = 0;
        for (; j + 2 <= r; j += 2) {
            ka = _mm512_fmadd_ps(_mm512_set1_ps(c[j]), _mm512_maskz_loadu_ps(m, s->P + (size_t)j * d + t), ka);
            kb = _mm512_fmadd_ps(_mm512_set1_ps(c[j + 1]), _mm512_maskz_loadu_ps(m, s->P + (size_t)(j + 1) * d + t), kb);
        }
        if (j < r) ka = _mm512_fmadd_ps(_mm512_set1_ps(c[j]), _mm512_maskz_loadu_ps(m, s->P + (size_t)j * d + t), ka);
        __m512 k = _mm512_add_ps(ka, kb);
        __m512 cv = _mm512_maskz_loadu_ps(m, cs + t);
        __m512 rot = _mm512_fmaddsub_ps(k, _mm512_moveldup_ps(cv),
                                        _mm512_mul_ps(_mm512_permute_ps(k, 0xB1), _mm512_movehdup_ps(cv)));
        acc = _mm512_fmadd_ps(rot, _mm512_maskz_loadu_ps(m, q + t), acc);
    }
    return acc;
}

KVC_TARGET_AVX512 static void pre4_avx512(const struct pca_state *s, const float *const *c, const float *const *cs,
                                          const float *q, __m512 *out) {
    switch ((s->d + 15) / 16) {
    case 1: pre4_avx512_n(s, c, cs, q, out, 1); break;
    case 2: pre4_avx512_n(s, c, cs, q, out, 2); break;
    case 3: pre4_avx512_n(s, c, cs, q, out, 3); break;
    case 4: pre4_avx512_n(s, c, cs, q, out, 4); break;
    default:
        for (int i = 0; i < 4; i++) out[i] = pre1_avx512_any(s, c[i], cs[i], q);
        break;
    }
}

KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void score_avx512_impl(const struct pca_state *s, const float *qp, const void *keys,
                                                       int pos0, int n, float *out, const int fmt, const int pre) {
    uint8_t pad[PCA_MAX_D * 4 + 64];
    int r = s->r;
    if (pre) {
        float c[4][PCA_MAX_D + 16], buf[4][PCA_MAX_D];
        for (int i0 = 0; i0 < n; i0 += 16) {
            int nb = n - i0 < 16 ? n - i0 : 16;
            __m512 v[16];
            for (int g = 0; g < nb; g += 4) {
                const float *cp[4], *csp[4];
                for (int u = 0; u < 4; u++) {
                    int i = i0 + g + (g + u < nb ? u : 0); /* past the end: repeat a row, ignored */
                    struct row512 rw = row512_load(s, row512_at(s, keys, i, n, pad, fmt), fmt);
                    float sc = fmt == FMT_Q8 || fmt == FMT_Q4 ? f16_at(rw.p) : 1.0f;
                    for (int j0 = 0; j0 < r; j0 += 16) {
                        __m512 x = dec512(s, &rw, fmt, j0);
                        if (fmt == FMT_BITS)
                            x = _mm512_fmadd_ps(x, _mm512_loadu_ps(s->step + j0), _mm512_loadu_ps(s->off + j0));
                        else if (fmt == FMT_Q8 || fmt == FMT_Q4)
                            x = _mm512_mul_ps(x, _mm512_set1_ps(sc));
                        _mm512_storeu_ps(c[u] + j0, x);
                    }
                    cp[u] = c[u];
                    csp[u] = rope_cs(s, pos0 + i, buf[u]);
                }
                __m512 o[4];
                pre4_avx512(s, cp, csp, qp, o);
                for (int u = 0; u < 4 && g + u < 16; u++) v[g + u] = o[u];
            }
            for (int ii = nb; ii < 16; ii++) v[ii] = _mm512_setzero_ps();
            _mm512_mask_storeu_ps(out + i0, kv_mask16(nb), kv512_reduce16_ps(v));
        }
        return;
    }
    for (int i0 = 0; i0 < n; i0 += 16) {
        int nb = n - i0 < 16 ? n - i0 : 16;
        __m512 v[16];
        for (int ii = 0; ii < nb; ii++) {
            struct row512 rw = row512_load(s, row512_at(s, keys, i0 + ii, n, pad, fmt), fmt);
            float sc = fmt == FMT_Q8 || fmt == FMT_Q4 ? f16_at(rw.p) : 1.0f;
            __m512 a = _mm512_setzero_ps();
            for (int j0 = 0; j0 < r; j0 += 16)
                a = _mm512_fmadd_ps(dec512(s, &rw, fmt, j0), _mm512_maskz_loadu_ps(kv_mask16(r - j0), qp + j0), a);
            v[ii] = _mm512_mul_ps(a, _mm512_set1_ps(sc));
        }
        for (int ii = nb; ii < 16; ii++) v[ii] = _mm512_setzero_ps();
        __m512 sum = _mm512_add_ps(kv512_reduce16_ps(v), _mm512_set1_ps(qp[s->C]));
        _mm512_mask_storeu_ps(out + i0, kv_mask16(nb), sum);
    }
}

/* bits rows of at most 64 bytes and at most 64 coefficients (the common case, e.g. d = 64):
 * the 16-bit field tables and the prepared query stay in registers for the whole call, and
 * one two-source word permute extracts 32 coefficients. */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
bits32_512(__m512i w0, __m512i w1, __m512i idx, __m512i sh, __m512i mk, __m512 *lo, __m512 *hi) {
    __m512i g = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutex2var_epi16(w0, idx, w1), sh), mk);
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(g)));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(g, 1)));
}

/* The 16-bit field tables of a bits row (coefficients 0-31 and 32-63) and the byte masks of
 * its two overlapping loads, for bits32_512. */
struct bits_fields {
    __mmask64 m0, m1;
    __m512i i0, h0, k0, i1, h1, k1;
};
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) struct bits_fields
bits_fields_load(const struct pca_state *s) {
    struct bits_fields f;
    f.m0 = s->rb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << s->rb) - 1);
    f.m1 = f.m0 >> 1;
    f.i0 = f.i1 = _mm512_loadu_si512(s->widx);
    f.h0 = f.h1 = _mm512_loadu_si512(s->wsh);
    f.k0 = f.k1 = _mm512_loadu_si512(s->wmask);
    if (s->r > 32) {
        f.i1 = _mm512_loadu_si512(s->widx + 32);
        f.h1 = _mm512_loadu_si512(s->wsh + 32);
        f.k1 = _mm512_loadu_si512(s->wmask + 32);
    }
    return f;
}

static inline int bits_small(const struct pca_state *s) { return s->fmt == FMT_BITS && s->rb <= 64 && s->r <= 64; }

KVC_TARGET_AVX512 static void score_bits_small_avx512(const struct pca_state *s, const float *qp, const void *keys,
                                                      int n, float *out) {
    int r = s->r;
    const struct bits_fields F = bits_fields_load(s);
    const __mmask64 m0 = F.m0, m1 = F.m1;
    const __m512i i0 = F.i0, h0 = F.h0, k0 = F.k0, i1 = F.i1, h1 = F.h1, k1 = F.k1;
    __m512 q0 = _mm512_maskz_loadu_ps(m16(r), qp), q1 = _mm512_maskz_loadu_ps(m16(r - 16), qp + 16);
    __m512 q2 = _mm512_maskz_loadu_ps(m16(r - 32), qp + 32), q3 = _mm512_maskz_loadu_ps(m16(r - 48), qp + 48);
    __m512 cst = _mm512_set1_ps(qp[s->C]);
    const uint8_t *base = keys;
    for (int i0r = 0; i0r < n; i0r += 16) {
        int nb = n - i0r < 16 ? n - i0r : 16;
        __m512 v[16];
        for (int ii = 0; ii < 16; ii++) {
            if (ii >= nb) { v[ii] = _mm512_setzero_ps(); continue; }
            const uint8_t *p = base + (size_t)(i0r + ii) * s->rb;
            __m512i w0 = _mm512_maskz_loadu_epi8(m0, p), w1 = _mm512_maskz_loadu_epi8(m1, p + 1);
            __m512 lo, hi;
            bits32_512(w0, w1, i0, h0, k0, &lo, &hi);
            __m512 a = _mm512_fmadd_ps(hi, q1, _mm512_mul_ps(lo, q0));
            if (r > 32) {
                bits32_512(w0, w1, i1, h1, k1, &lo, &hi);
                a = _mm512_fmadd_ps(lo, q2, a);
                a = _mm512_fmadd_ps(hi, q3, a);
            }
            v[ii] = a;
        }
        _mm512_mask_storeu_ps(out + i0r, kv_mask16(nb), _mm512_add_ps(kv512_reduce16_ps(v), cst));
    }
}

KVC_TARGET_AVX512 static void accumulate_bits_small_avx512(const struct pca_state *s, const float *w, const void *vals,
                                                           int n, float *acc) {
    int r = s->r;
    const struct bits_fields F = bits_fields_load(s);
    const __mmask64 m0 = F.m0, m1 = F.m1;
    const __m512i i0 = F.i0, h0 = F.h0, k0 = F.k0, i1 = F.i1, h1 = F.h1, k1 = F.k1;
    __m512 a0 = _mm512_maskz_loadu_ps(m16(r), acc), a1 = _mm512_maskz_loadu_ps(m16(r - 16), acc + 16);
    __m512 a2 = _mm512_maskz_loadu_ps(m16(r - 32), acc + 32), a3 = _mm512_maskz_loadu_ps(m16(r - 48), acc + 48);
    const uint8_t *base = vals;
    float ws = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *p = base + (size_t)i * s->rb;
        __m512i w0 = _mm512_maskz_loadu_epi8(m0, p), w1 = _mm512_maskz_loadu_epi8(m1, p + 1);
        __m512 wv = _mm512_set1_ps(w[i]), lo, hi;
        ws += w[i];
        bits32_512(w0, w1, i0, h0, k0, &lo, &hi);
        a0 = _mm512_fmadd_ps(wv, lo, a0);
        a1 = _mm512_fmadd_ps(wv, hi, a1);
        if (r > 32) {
            bits32_512(w0, w1, i1, h1, k1, &lo, &hi);
            a2 = _mm512_fmadd_ps(wv, lo, a2);
            a3 = _mm512_fmadd_ps(wv, hi, a3);
        }
    }
    _mm512_mask_storeu_ps(acc, m16(r), a0);
    _mm512_mask_storeu_ps(acc + 16, m16(r - 16), a1);
    _mm512_mask_storeu_ps(acc + 32, m16(r - 32), a2);
    _mm512_mask_storeu_ps(acc + 48, m16(r - 48), a3);
    acc[s->C] += ws;
}

/* Grouped (GQA) versions of the two kernels above: the G query heads of one KV head share
 * each row's unpacking; G = 1..4 is a literal after inlining. */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
score_bits_small_g_avx512(const struct pca_state *s, const int G, const float *qp, size_t qs, const void *keys,
                          int n, float *out, size_t os) {
    int r = s->r;
    const struct bits_fields F = bits_fields_load(s);
    const __mmask64 m0 = F.m0, m1 = F.m1;
    const __m512i i0 = F.i0, h0 = F.h0, k0 = F.k0, i1 = F.i1, h1 = F.h1, k1 = F.k1;
    __m512 q[4][4];
#pragma GCC unroll 4
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) q[g][k] = _mm512_maskz_loadu_ps(m16(r - 16 * k), qp + g * qs + 16 * k);
    const uint8_t *base = keys;
    for (int i0r = 0; i0r < n; i0r += 16) {
        int nb = n - i0r < 16 ? n - i0r : 16;
        __m512 v[4][16];
        for (int ii = 0; ii < 16; ii++) {
            if (ii >= nb) {
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) v[g][ii] = _mm512_setzero_ps();
                continue;
            }
            const uint8_t *p = base + (size_t)(i0r + ii) * s->rb;
            __m512i w0 = _mm512_maskz_loadu_epi8(m0, p), w1 = _mm512_maskz_loadu_epi8(m1, p + 1);
            __m512 lo, hi, lo2 = _mm512_setzero_ps(), hi2 = lo2;
            bits32_512(w0, w1, i0, h0, k0, &lo, &hi);
            if (r > 32) bits32_512(w0, w1, i1, h1, k1, &lo2, &hi2);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                __m512 a = _mm512_fmadd_ps(hi, q[g][1], _mm512_mul_ps(lo, q[g][0]));
                if (r > 32) {
                    a = _mm512_fmadd_ps(lo2, q[g][2], a);
                    a = _mm512_fmadd_ps(hi2, q[g][3], a);
                }
                v[g][ii] = a;
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
            _mm512_mask_storeu_ps(out + g * os + i0r, kv_mask16(nb),
                                  _mm512_add_ps(kv512_reduce16_ps(v[g]), _mm512_set1_ps(qp[g * qs + s->C])));
    }
}

KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
accumulate_bits_small_g_avx512(const struct pca_state *s, const int G, const float *w, size_t ws, const void *vals,
                               int n, float *acc, size_t as) {
    int r = s->r;
    const struct bits_fields F = bits_fields_load(s);
    const __mmask64 m0 = F.m0, m1 = F.m1;
    const __m512i i0 = F.i0, h0 = F.h0, k0 = F.k0, i1 = F.i1, h1 = F.h1, k1 = F.k1;
    __m512 a[4][4];
    float wsum[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) a[g][k] = _mm512_maskz_loadu_ps(m16(r - 16 * k), acc + g * as + 16 * k);
    const uint8_t *base = vals;
    for (int i = 0; i < n; i++) {
        const uint8_t *p = base + (size_t)i * s->rb;
        __m512i w0 = _mm512_maskz_loadu_epi8(m0, p), w1 = _mm512_maskz_loadu_epi8(m1, p + 1);
        __m512 lo, hi, lo2 = _mm512_setzero_ps(), hi2 = lo2;
        bits32_512(w0, w1, i0, h0, k0, &lo, &hi);
        if (r > 32) bits32_512(w0, w1, i1, h1, k1, &lo2, &hi2);
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            const float wi = w[g * ws + i];
            const __m512 wv = _mm512_set1_ps(wi);
            wsum[g] += wi;
            a[g][0] = _mm512_fmadd_ps(wv, lo, a[g][0]);
            a[g][1] = _mm512_fmadd_ps(wv, hi, a[g][1]);
            if (r > 32) {
                a[g][2] = _mm512_fmadd_ps(wv, lo2, a[g][2]);
                a[g][3] = _mm512_fmadd_ps(wv, hi2, a[g][3]);
            }
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) _mm512_mask_storeu_ps(acc + g * as + 16 * k, m16(r - 16 * k), a[g][k]);
        acc[g * as + s->C] += wsum[g];
    }
}

KVC_TARGET_AVX512 void pca_score_avx512(const struct kv_slot *sl, const float *qp, const void *keys, int pos0,
                                           int n, float *out) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_score_g_avx512(sl, 1, qp, 0, keys, pos0, n, out, 0);
        return;
    }
    if (s->pre) {
        switch (s->fmt) {
        case FMT_F32: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_F32, 1); break;
        case FMT_F16: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_F16, 1); break;
        case FMT_Q8: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_Q8, 1); break;
        case FMT_Q4: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_Q4, 1); break;
        default: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_BITS, 1); break;
        }
        return;
    }
    if (bits_small(s)) {
        score_bits_small_avx512(s, qp, keys, n, out);
        return;
    }
    switch (s->fmt) {
    case FMT_F32: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_F32, 0); break;
    case FMT_F16: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_F16, 0); break;
    case FMT_Q8: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_Q8, 0); break;
    case FMT_Q4: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_Q4, 0); break;
    default: score_avx512_impl(s, qp, keys, pos0, n, out, FMT_BITS, 0); break;
    }
}

/* decode: rows rebuilt as mean + P^T c (keys=pre: then RoPE of the row's position, and NEOX
 * rows back from RoPE order), 16
 * dims per register, the coefficients of one row broadcast in turn (four chains). Used by
 * attention to rebuild a block of keys once for a whole batch of queries. */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void decode_avx512_impl(const struct pca_state *s, const void *src,
                                                                                       int pos0, int n, float *y, const int fmt) {
    uint8_t pad[PCA_MAX_D * 4 + 64];
    float c[PCA_MAX_D + 16], buf[PCA_MAX_D];
    const int d = s->d, r = s->r;
    for (int i = 0; i < n; i++) {
        struct row512 rw = row512_load(s, row512_at(s, src, i, n, pad, fmt), fmt);
        float sc = fmt == FMT_Q8 || fmt == FMT_Q4 ? f16_at(rw.p) : 1.0f;
        for (int j0 = 0; j0 < r; j0 += 16) {
            __m512 x = dec512(s, &rw, fmt, j0);
            if (fmt == FMT_BITS) x = _mm512_fmadd_ps(x, _mm512_loadu_ps(s->step + j0), _mm512_loadu_ps(s->off + j0));
            else if (fmt == FMT_Q8 || fmt == FMT_Q4) x = _mm512_mul_ps(x, _mm512_set1_ps(sc));
            _mm512_storeu_ps(c + j0, x);
        }
        float *o = y + (size_t)i * d;
        const float *cs = s->pre ? rope_cs(s, pos0 + i, buf) : NULL;
        for (int t = 0; t < d; t += 64) { /* four chunks of 16 dims in registers */
            const __mmask16 m0 = m16(d - t), m1 = m16(d - t - 16), m2 = m16(d - t - 32), m3 = m16(d - t - 48);
            __m512 k0 = _mm512_maskz_loadu_ps(m0, s->mean + t), k1 = _mm512_maskz_loadu_ps(m1, s->mean + t + 16);
            __m512 k2 = _mm512_maskz_loadu_ps(m2, s->mean + t + 32), k3 = _mm512_maskz_loadu_ps(m3, s->mean + t + 48);
            for (int j = 0; j < r; j++) {
                const float *pj = s->P + (size_t)j * d + t;
                const __m512 cj = _mm512_set1_ps(c[j]);
                k0 = _mm512_fmadd_ps(cj, _mm512_maskz_loadu_ps(m0, pj), k0);
                k1 = _mm512_fmadd_ps(cj, _mm512_maskz_loadu_ps(m1, pj + 16), k1);
                k2 = _mm512_fmadd_ps(cj, _mm512_maskz_loadu_ps(m2, pj + 32), k2);
                k3 = _mm512_fmadd_ps(cj, _mm512_maskz_loadu_ps(m3, pj + 48), k3);
            }
            __m512 kk[4] = {k0, k1, k2, k3};
            const __mmask16 mm[4] = {m0, m1, m2, m3};
            for (int u = 0; u < 4; u++) {
                __m512 k = kk[u];
                if (cs) { /* RoPE: (k0, k1) -> (k0 c - k1 s, k0 s + k1 c) on adjacent pairs */
                    __m512 cv = _mm512_maskz_loadu_ps(mm[u], cs + t + 16 * u);
                    k = _mm512_fmaddsub_ps(k, _mm512_moveldup_ps(cv),
                                           _mm512_mul_ps(_mm512_permute_ps(k, 0xB1), _mm512_movehdup_ps(cv)));
                }
                _mm512_mask_storeu_ps(o + t + 16 * u, mm[u], k);
            }
        }
        if (cs) pca_from_rope_order(s, o); /* NEOX: RoPE order back to the natural one */
    }
}

KVC_TARGET_AVX512 void pca_decode_avx512(const struct kv_slot *sl, const void *src, int pos0, int n, float *y) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_decode_avx512(sl, src, pos0, n, y);
        return;
    }
    switch (s->fmt) {
    case FMT_F32: decode_avx512_impl(s, src, pos0, n, y, FMT_F32); break;
    case FMT_F16: decode_avx512_impl(s, src, pos0, n, y, FMT_F16); break;
    case FMT_Q8: decode_avx512_impl(s, src, pos0, n, y, FMT_Q8); break;
    case FMT_Q4: decode_avx512_impl(s, src, pos0, n, y, FMT_Q4); break;
    default: decode_avx512_impl(s, src, pos0, n, y, FMT_BITS); break;
    }
}

KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void accumulate_avx512_impl(const struct pca_state *s, const float *w,
                                                            const void *vals, int n, float *acc, const int fmt) {
    uint8_t pad[PCA_MAX_D * 4 + 64];
    int r = s->r;
    float ws = 0;
    for (int i = 0; i < n; i++) ws += w[i];
    if (r <= 64) { /* up to 4 accumulators in registers, each row loaded once */
        __m512 a0 = _mm512_maskz_loadu_ps(kv_mask16(r), acc), a1 = _mm512_maskz_loadu_ps(m16(r - 16), acc + 16);
        __m512 a2 = _mm512_maskz_loadu_ps(m16(r - 32), acc + 32);
        __m512 a3 = _mm512_maskz_loadu_ps(m16(r - 48), acc + 48);
        for (int i = 0; i < n; i++) {
            struct row512 rw = row512_load(s, row512_at(s, vals, i, n, pad, fmt), fmt);
            float wi = w[i];
            if (fmt == FMT_Q8 || fmt == FMT_Q4) wi *= f16_at(rw.p);
            __m512 wv = _mm512_set1_ps(wi);
            a0 = _mm512_fmadd_ps(wv, dec512(s, &rw, fmt, 0), a0);
            if (r > 16) a1 = _mm512_fmadd_ps(wv, dec512(s, &rw, fmt, 16), a1);
            if (r > 32) a2 = _mm512_fmadd_ps(wv, dec512(s, &rw, fmt, 32), a2);
            if (r > 48) a3 = _mm512_fmadd_ps(wv, dec512(s, &rw, fmt, 48), a3);
        }
        _mm512_mask_storeu_ps(acc, kv_mask16(r), a0);
        if (r > 16) _mm512_mask_storeu_ps(acc + 16, m16(r - 16), a1);
        if (r > 32) _mm512_mask_storeu_ps(acc + 32, m16(r - 32), a2);
        if (r > 48) _mm512_mask_storeu_ps(acc + 48, m16(r - 48), a3);
    } else {
        for (int j0 = 0; j0 < r; j0 += 16) {
            __mmask16 m = kv_mask16(r - j0);
            __m512 a = _mm512_maskz_loadu_ps(m, acc + j0);
            for (int i = 0; i < n; i++) {
                struct row512 rw = row512_load(s, row512_at(s, vals, i, n, pad, fmt), fmt);
                float wi = w[i];
                if (fmt == FMT_Q8 || fmt == FMT_Q4) wi *= f16_at(rw.p);
                a = _mm512_fmadd_ps(_mm512_set1_ps(wi), dec512(s, &rw, fmt, j0), a);
            }
            _mm512_mask_storeu_ps(acc + j0, m, a);
        }
    }
    acc[s->C] += ws;
}

KVC_TARGET_AVX512 void pca_accumulate_avx512(const struct kv_slot *sl, const float *w, const void *vals,
                                                int pos0, int n, float *acc) {
    (void)pos0;
    const struct pca_state *s = sl->state;
    if (n <= 0) return;
    if (bits_small(s)) {
        accumulate_bits_small_avx512(s, w, vals, n, acc);
        return;
    }
    switch (s->fmt) {
    case FMT_F32: accumulate_avx512_impl(s, w, vals, n, acc, FMT_F32); break;
    case FMT_F16: accumulate_avx512_impl(s, w, vals, n, acc, FMT_F16); break;
    case FMT_Q8: accumulate_avx512_impl(s, w, vals, n, acc, FMT_Q8); break;
    case FMT_Q4: accumulate_avx512_impl(s, w, vals, n, acc, FMT_Q4); break;
    default: accumulate_avx512_impl(s, w, vals, n, acc, FMT_BITS); break;
    }
}

/* Integer version of score_bits_small_g (AVX512-VNNI): each head's prepared query
 * u_j = (P q)_j step_j, rounded to int16 by pca_prepare_finish with one scale per query
 * (sq = max|u| / 32767, so |error of u_j| <= sq / 2), and vpdpwssd multiplies it with the 16-bit coefficient indices:
 * the score error is at most sq / 2 * sum_j index_j. Needs indices below 2^10 (no int32
 * overflow: 64 * 1023 * 32767 < 2^31). */
#define PCA_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")))
#define PCA_VNNI_MAX_BITS 10

PCA_TARGET_VNNI static inline __attribute__((always_inline)) void
score_bits_small_g_vnni(const struct pca_state *s, const int G, const float *qp, size_t qs, const void *keys,
                        int n, float *out, size_t os) {
    int r = s->r;
    const struct bits_fields F = bits_fields_load(s);
    const __mmask64 m0 = F.m0, m1 = F.m1;
    const __m512i i0 = F.i0, h0 = F.h0, k0 = F.k0, i1 = F.i1, h1 = F.h1, k1 = F.k1;
    __m512i qi[4][2]; /* the int16 queries pca_prepare_finish stored */
    float sq[4];
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
        const float *u = qp + g * qs;
        sq[g] = u[s->C + 1];
        qi[g][0] = _mm512_loadu_si512(u + s->C + 2);
        qi[g][1] = _mm512_loadu_si512(u + s->C + 2 + 16);
    }
    const uint8_t *base = keys;
    for (int i0r = 0; i0r < n; i0r += 16) {
        int nb = n - i0r < 16 ? n - i0r : 16;
        __m512 v[4][16];
        for (int ii = 0; ii < 16; ii++) {
            if (ii >= nb) {
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) v[g][ii] = _mm512_setzero_ps();
                continue;
            }
            const uint8_t *p = base + (size_t)(i0r + ii) * s->rb;
            __m512i w0 = _mm512_maskz_loadu_epi8(m0, p), w1 = _mm512_maskz_loadu_epi8(m1, p + 1);
            __m512i g0 = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutex2var_epi16(w0, i0, w1), h0), k0);
            __m512i g1 = _mm512_setzero_si512();
            if (r > 32) g1 = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutex2var_epi16(w0, i1, w1), h1), k1);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                __m512i a = _mm512_dpwssd_epi32(_mm512_setzero_si512(), g0, qi[g][0]);
                if (r > 32) a = _mm512_dpwssd_epi32(a, g1, qi[g][1]);
                v[g][ii] = _mm512_cvtepi32_ps(a);
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
            _mm512_mask_storeu_ps(out + g * os + i0r, kv_mask16(nb),
                                  _mm512_fmadd_ps(kv512_reduce16_ps(v[g]), _mm512_set1_ps(sq[g]),
                                                  _mm512_set1_ps(qp[g * qs + s->C])));
    }
}

PCA_TARGET_VNNI static void score_g_vnni(const struct pca_state *s, int G, const float *qp, size_t qs,
                                         const void *keys, int n, float *out, size_t os) {
#define PCA_CALL(GL, g0) score_bits_small_g_vnni(s, GL, qp + (size_t)(g0) * qs, qs, keys, n, out + (size_t)(g0) * os, os)
    KV_G_PASSES(G, PCA_CALL)
#undef PCA_CALL
}

/* 1 when the integer score applies: VNNI present and every index below 2^10. */
static int use_vnni_score(const struct pca_state *s) {
    if (!kvc_cpu_has_avx512vnni() || !atomic_load_explicit(&pca_allow_vnni, memory_order_relaxed)) return 0;
    for (int j = 0; j < s->r; j++)
        if (s->nb[j] > PCA_VNNI_MAX_BITS) return 0;
    return 1;
}

/* score_g / accumulate_g: grouped kernels for bits rows of <= 64 bytes and coefficients
 * (keys=post); other layouts score one query at a time. */
KVC_TARGET_AVX512 void pca_score_g_avx512(const struct kv_slot *sl, int G, const float *qp, size_t qs,
                                             const void *keys, int pos0, int n, float *out, size_t os) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_score_g_avx512(sl, G, qp, qs, keys, pos0, n, out, os);
        return;
    }
    if (s->pre || !bits_small(s)) {
        for (int g = 0; g < G; g++) pca_score_avx512(sl, qp + (size_t)g * qs, keys, pos0, n, out + (size_t)g * os);
        return;
    }
    if (use_vnni_score(s)) {
        score_g_vnni(s, G, qp, qs, keys, n, out, os);
        return;
    }
#define PCA_CALL(GL, g0) score_bits_small_g_avx512(s, GL, qp + (size_t)(g0) * qs, qs, keys, n, out + (size_t)(g0) * os, os)
    KV_G_PASSES(G, PCA_CALL)
#undef PCA_CALL
}

KVC_TARGET_AVX512 void pca_accumulate_g_avx512(const struct kv_slot *sl, int G, const float *w, size_t ws,
                                                  const void *vals, int pos0, int n, float *acc, size_t as) {
    const struct pca_state *s = sl->state;
    if (n <= 0) return;
    if (!bits_small(s)) {
        for (int g = 0; g < G; g++) pca_accumulate_avx512(sl, w + (size_t)g * ws, vals, pos0, n, acc + (size_t)g * as);
        return;
    }
#define PCA_CALL(GL, g0) accumulate_bits_small_g_avx512(s, GL, w + (size_t)(g0) * ws, ws, vals, n, acc + (size_t)(g0) * as, as)
    KV_G_PASSES(G, PCA_CALL)
#undef PCA_CALL
}

KVC_TARGET_AVX512 void pca_finish_avx512(const struct kv_slot *sl, const float *acc, float *out) {
    const struct pca_state *s = sl->state;
    int d = s->d;
    float c[PCA_MAX_D], W = acc[s->C];
    pca_finish_coefs(s, acc, c);
    for (int t = 0; t < d; t += 16) {
        __mmask16 m = kv_mask16(d - t);
        __m512 o = _mm512_mul_ps(_mm512_set1_ps(W), _mm512_maskz_loadu_ps(m, s->mean + t));
        for (int j = 0; j < s->r; j++)
            o = _mm512_fmadd_ps(_mm512_set1_ps(c[j]), _mm512_maskz_loadu_ps(m, s->P + (size_t)j * d + t), o);
        _mm512_mask_storeu_ps(out + t, m, o);
    }
}
