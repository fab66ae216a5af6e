/* hdc_vsum.c - the hdc value sums with unsigned int8 weights x signed int8 levels (VNNI
 * vpdpbusd, four rows per dword lane) for b = 2, 3 at D = 64: the int8 level table and the
 * byte-selection tables (hdc_vsum_init), the scalar reference and the AVX-512 VNNI + VBMI
 * kernel. The float kernels stay in hdc_kernels.c (other shapes, non-finite chunks). */
#include "hdc_common.h"

#include <math.h>

/* Levels of b bits as int8: v8s such that round(v8s lev) / v8s is closest to lev in the worst
 * level (|round(v8s lev)| <= 127). Candidates v8s = k / lev_c make level c exact; the best
 * candidate's worst error is st->v8err (about 0.003 for b = 3 against 0.008 with v8s =
 * 127 / largest level). */
void hdc_int8_init(struct hdc_state *st) {
    const int L = 1 << st->bits;
    const double smax = 127.0 / st->lev[L - 1];
    double best = smax, berr = INFINITY;
    for (int c = L / 2; c < L; c++)
        for (int k = 1; k <= 127; k++) {
            const double s = k / (double)st->lev[c];
            if (s > smax * (1 + 1e-12) || s < smax / 4) continue;
            double e = 0;
            for (int j = 0; j < L; j++) e = fmax(e, fabs(nearbyint(s * st->lev[j]) / s - st->lev[j]));
            if (e < berr) {
                berr = e;
                best = s;
            }
        }
    st->v8s = (float)best;
    double e = 0;
    for (int i = 0; i < 64; i++) {
        const long v = lrint(best * st->lev[i % L]);
        st->lev8v[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        e = fmax(e, fabs((double)st->lev8v[i] / st->v8s - st->lev[i % L]));
    }
    st->v8err = (float)e;
    memset(st->vsel, 0, sizeof st->vsel);
    memset(st->vctl, 0, sizeof st->vctl);
    if (st->bits == 2) {
        /* Byte selection for output register c (coordinates 16c .. 16c + 15): qword k serves
         * coordinates 16c + 2k and 16c + 2k + 1; its bytes 0..3 are the code byte of rows 0..3
         * holding both (byte 4c + k/2 of the codes). Offsets within a row; the kernel adds
         * r * stride. */
        for (int c = 0; c < 4; c++)
            for (int k = 0; k < 8; k++)
                for (int r = 0; r < 4; r++) st->vsel[c][8 * k + r] = (uint8_t)(2 + 4 * c + k / 2);
        /* vpmultishiftqb control: output byte 4j + r of qword k (coordinate 16c + 2k + j of row
         * r) takes its code from bit 2 ((2k + j) mod 4) of byte r */
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 2; j++)
                for (int r = 0; r < 4; r++) st->vctl[0][8 * k + 4 * j + r] = (uint8_t)(8 * r + 2 * ((2 * k + j) & 3));
    } else {
        /* b = 3, selection h = 0, 1: bytes 2r, 2r + 1 of qword k are code bytes floor(3m / 2)
         * and the next of row r, m = 8h + k, which hold coordinates 4m .. 4m + 3 from bit
         * 4 (m & 1). Control 0 puts coordinate 4m + j (j = 0, 1) of row r in output byte 4j + r
         * of qword k, control 1 coordinate 4m + 2 + j: the 4 output registers of 4 rows hold
         * coordinates {4m, 4m + 1} and {4m + 2, 4m + 3} of m = 0..7 and m = 8..15 (the kernel
         * interleaves their qwords at the end). */
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 8; k++)
                for (int r = 0; r < 4; r++)
                    for (int e = 0; e < 2; e++) st->vsel[h][8 * k + 2 * r + e] = (uint8_t)(2 + 3 * (8 * h + k) / 2 + e);
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 2; j++)
                for (int r = 0; r < 4; r++)
                    for (int o = 0; o < 2; o++)
                        st->vctl[o][8 * k + 4 * j + r] = (uint8_t)(16 * r + 4 * (k & 1) + 6 * o + 3 * j);
    }
    /* Scores (hdc_kernels.c, D = 64): the dwords at row offsets off[o] of 4 rows (o = 0: the
     * scale, then the code dwords: b = 2 at 2, 6, 10, 14, b = 3 at 1, 4, .., 22); 128-bit block
     * o & 3 of selection o >> 2 holds offset o's dwords of rows 0..3 (one per 32-bit lane). */
    memset(st->ksel, 0, sizeof st->ksel);
    const int no = st->bits == 3 ? 9 : 5;
    for (int o = 0; o < no; o++) {
        const int off = o == 0 ? 0 : st->bits == 3 ? 1 + 3 * (o - 1) : 2 + 4 * (o - 1);
        for (int r = 0; r < 4; r++)
            for (int b = 0; b < 4; b++)
                st->ksel[o >> 2][16 * (o & 3) + 4 * r + b] = (uint8_t)(r * st->row_bytes + (size_t)off + (size_t)b);
    }
}

/* ---- scalar reference ---- */

void hdc_vsum_scalar(const struct hdc_state *st, int G, const float *w, size_t ws, const uint8_t *rows,
                     size_t stride, int n, float *acc, size_t as) {
    const int D = st->D;
    float t[HDC_VSUM_CHUNK];
    uint8_t w8[HDC_VSUM_CHUNK];
    int32_t s[HDC_MAX_D];
    for (int c0 = 0; c0 < n; c0 += HDC_VSUM_CHUNK) {
        const int nn = n - c0 < HDC_VSUM_CHUNK ? n - c0 : HDC_VSUM_CHUNK;
        const uint8_t *base = rows + (size_t)c0 * stride;
        for (int g = 0; g < G; g++) {
            const float *wg = w + (size_t)g * ws + c0;
            float tmax = 0.0f;
            int bad = 0;
            for (int r = 0; r < nn; r++) {
                t[r] = wg[r] == 0.0f ? 0.0f : wg[r] * hdc_row_f16(base + (size_t)r * stride);
                bad |= !(t[r] >= 0.0f && t[r] < INFINITY);
                tmax = t[r] > tmax ? t[r] : tmax;
            }
            if (bad) { /* negative, inf or NaN: the float kernel for this head and chunk */
                hdc_ops[KVC_ISA_SCALAR].acc(st, wg, base, stride, nn, acc + (size_t)g * as);
                continue;
            }
            if (tmax == 0.0f) continue;
            const float inv = 255.0f / tmax, fac = (tmax / 255.0f) / st->v8s;
            for (int r = 0; r < nn; r++) w8[r] = (uint8_t)lrintf(t[r] * inv);
            memset(s, 0, sizeof(int32_t) * (size_t)D);
            for (int r = 0; r < nn; r++) {
                if (!w8[r]) continue;
                const uint8_t *row = base + (size_t)r * stride;
                for (int i = 0; i < D; i++) s[i] += (int32_t)w8[r] * st->lev8v[hdc_code(st, row, i)];
            }
            float *a = acc + (size_t)g * as;
            for (int i = 0; i < D; i++) a[i] = a[i] + (float)s[i] * fac;
        }
    }
}

/* ---- AVX-512 VNNI + VBMI kernel ----
 * Per chunk of up to 64 rows: pass 1 computes t = w x scale per head (scales by scalar
 * 16-bit loads), its maximum and the finiteness check; the weights become bytes
 * (vpmovusdb). Pass 2 takes 4 rows at a time: two loads cover the 4 rows (4 x stride <=
 * 128 bytes); b = 2: for each 16 coordinates one vpermt2b gathers the code bytes of the 4
 * rows (at stride 18: a vpermb on the load from byte 0 or from byte 8, W2); b = 3: for each
 * 32 coordinates one vpermt2b gathers 2 code bytes per row and coordinate quad. Then
 * vpmultishiftqb moves each code to the byte of (row, coordinate), vpermb looks the int8
 * level up (index bits 0..5 of a table that repeats every 2^b), and one vpdpbusd per head adds
 * the 4 rows' weight bytes (broadcast) x levels into the coordinate's int32 lane. Groups of 4
 * rows whose weight bytes are all zero are skipped. */

#define KVC_TARGET_VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define HDC_AI static inline __attribute__((always_inline))
#ifndef HDC_PF_VSUM
#define HDC_PF_VSUM (2 * HDC_VSUM_CHUNK) /* rows ahead of the value sums' prefetch (in pass 1) */
#endif

KVC_TARGET_VNNI HDC_AI __mmask64 vs_mask64(int nbytes) {
    return nbytes >= 64 ? ~(__mmask64)0 : nbytes <= 0 ? 0 : (((__mmask64)1 << nbytes) - 1);
}

/* *acc += the 4-byte dot products of u (unsigned) and s (signed) per dword: vpdpbusd with the
 * accumulator tied in place (GCC 12 moved the 16 accumulators of the intrinsic's version
 * between registers and the stack on every iteration). */
KVC_TARGET_VNNI HDC_AI void vs_dpbusd(__m512i *acc, __m512i u, __m512i s) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(*acc) : "v"(u), "v"(s));
}

/* The f16 scales (first 2 bytes) of 16 rows at a stride <= 32 as floats (rows past nb: 0),
 * by contiguous loads: per 4 rows two masked loads and a vpermt2b put their leading dwords in
 * the low 128 bits, then two vshufi64x2 levels join the 4 groups (no 16-bit scalar loads
 * stored and reloaded as a vector, which stalls store forwarding). */
KVC_TARGET_VNNI HDC_AI __m512 rows16_scales(const uint8_t *b16, size_t stride, int nb, __m512i ssel) {
    __m512i P[4];
#pragma GCC unroll 4
    for (int w = 0; w < 4; w++) {
        const int nr = nb - 4 * w, len = nr >= 4 ? 4 * (int)stride : nr > 0 ? nr * (int)stride : 0;
        const uint8_t *p = b16 + (size_t)(4 * w) * stride;
        const __m512i lo = _mm512_maskz_loadu_epi8(vs_mask64(len), p);
        /* stride <= 20: the 4 leading dwords lie in the first 64 bytes (one vpermb) */
        P[w] = stride <= 20 ? _mm512_permutexvar_epi8(ssel, lo)
                            : _mm512_permutex2var_epi8(lo, ssel, _mm512_maskz_loadu_epi8(vs_mask64(len - 64), p + 64));
    }
    const __m512i t0 = _mm512_shuffle_i64x2(P[0], P[1], 0x00), t2 = _mm512_shuffle_i64x2(P[2], P[3], 0x00);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_shuffle_i64x2(t0, t2, 0x88)));
}

KVC_TARGET_VNNI HDC_AI void vsum_impl(const struct hdc_state *st, const int G, const float *w, size_t ws,
                                      const uint8_t *rows, size_t stride, int n, float *acc, size_t as,
                                      const int B, const int W2) {
    const __m512i lut = _mm512_loadu_si512((const void *)st->lev8v);
    const __m512i clo = _mm512_loadu_si512((const void *)st->vctl[0]);
    const __m512i chi = _mm512_loadu_si512((const void *)st->vctl[1]);
    /* + r * stride for row r of the 4: b = 2 in byte 4j + r of every dword, b = 3 in bytes 2r,
     * 2r + 1 of every qword */
    const uint64_t s64 = stride;
    const __m512i roff = B == 3 ? _mm512_set1_epi64((long long)(s64 * 0x0303020201010000ull))
                                : _mm512_set1_epi32((int)((stride << 8) | (2 * stride << 16) | (3 * stride << 24)));
    const int NS = B == 3 ? 2 : 4;
    __m512i sel[4];
#pragma GCC unroll 4
    for (int c = 0; c < NS; c++) sel[c] = _mm512_add_epi8(_mm512_loadu_si512((const void *)st->vsel[c]), roff);
    /* W2 (b = 2, stride 18): the code bytes of coordinates 0..31 of the 4 rows lie in bytes
     * 2..59 of the 4 rows, those of 32..63 in bytes 10..71, so one vpermb on the rows from
     * byte 0 (from byte 8) serves each half in place of a two-register vpermt2b */
    if (W2)
        for (int c = 2; c < 4; c++) sel[c] = _mm512_sub_epi8(sel[c], _mm512_set1_epi8(8));
    const int full = 4 * (int)stride;
    /* scale selection: dword r (r < 4) = bytes r * stride + 0..3 */
    const __m512i ssel = _mm512_add_epi8(_mm512_set1_epi32(0x03020100),
                                         _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                                                            _mm512_set1_epi32((int)(stride * 0x01010101u))));
    float tb[4][HDC_VSUM_CHUNK] __attribute__((aligned(64)));
    uint8_t w8[4][HDC_VSUM_CHUNK + 16] __attribute__((aligned(64)));
    for (int c0 = 0; c0 < n; c0 += HDC_VSUM_CHUNK) {
        const int nn = n - c0 < HDC_VSUM_CHUNK ? n - c0 : HDC_VSUM_CHUNK;
        const uint8_t *base = rows + (size_t)c0 * stride;
        __m512 vmax[4];
        __mmask16 bad[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) vmax[g] = _mm512_setzero_ps();
        for (int r0 = 0; r0 < nn; r0 += 16) {
            const int nb = nn - r0 < 16 ? nn - r0 : 16;
            const __mmask16 m = kv_mask16(nb);
            const uint8_t *b16 = base + (size_t)r0 * stride;
            kv_prefetch_rows16(b16, stride, HDC_PF_VSUM);
            const __m512 sc = rows16_scales(b16, stride, nb, ssel);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                const __m512 wv = _mm512_maskz_loadu_ps(m, w + (size_t)g * ws + c0 + r0);
                const __mmask16 nz = _mm512_cmp_ps_mask(wv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
                const __m512 t = _mm512_maskz_mul_ps(nz, wv, sc);
                _mm512_store_ps(tb[g] + r0, t);
                /* good: 0 <= t < inf (NaN fails both) */
                const __mmask16 ok = _mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_GE_OQ) &
                                     _mm512_cmp_ps_mask(t, _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
                bad[g] |= (__mmask16)(m & ~ok);
                vmax[g] = _mm512_max_ps(vmax[g], t);
            }
        }
        float fac[4];
        int any = 0;
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            float tmax = _mm512_reduce_max_ps(vmax[g]);
            if (bad[g]) { /* the float kernel for this head and chunk */
                hdc_rows_acc_g_avx512(st, 1, w + (size_t)g * ws + c0, ws, base, stride, nn, acc + (size_t)g * as, as);
                tmax = 0.0f;
            }
            fac[g] = (tmax / 255.0f) / st->v8s;
            const __m512 inv = _mm512_set1_ps(tmax == 0.0f ? 0.0f : 255.0f / tmax);
            for (int r0 = 0; r0 < nn; r0 += 16) {
                const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(tb[g] + r0), inv));
                _mm_store_si128((__m128i *)(void *)(w8[g] + r0), _mm512_cvtusepi32_epi8(q));
            }
            any |= tmax != 0.0f;
        }
        if (!any) continue;
        __m512i S[4][4];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) S[g][c] = _mm512_setzero_si512();
        for (int r = 0; r < nn; r += 4) {
            uint32_t o = 0, x;
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                memcpy(&x, w8[g] + r, 4);
                o |= x;
            }
            if (!o) continue; /* the 4 rows' weights are all zero */
            const uint8_t *p = base + (size_t)r * stride;
            const int len = nn - r >= 4 ? full : (nn - r) * (int)stride; /* bytes of the rows here */
            const __m512i A = _mm512_maskz_loadu_epi8(vs_mask64(len), p);
            const __m512i Bv = W2 ? _mm512_maskz_loadu_epi8(vs_mask64(len - 8), p + 8)
                                  : _mm512_maskz_loadu_epi8(vs_mask64(len - 64), p + 64);
            __m512i W[4];
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                int32_t x;
                memcpy(&x, w8[g] + r, 4);
                W[g] = _mm512_set1_epi32(x);
            }
            __m512i P3[2];
            if (B == 3) /* one gather serves two output registers */
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) P3[h] = _mm512_permutex2var_epi8(A, sel[h], Bv);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m512i P = B == 3 ? P3[c >> 1]
                                  : W2   ? _mm512_permutexvar_epi8(sel[c], c < 2 ? A : Bv)
                                         : _mm512_permutex2var_epi8(A, sel[c], Bv);
                const __m512i idx = _mm512_multishift_epi64_epi8(B == 3 && (c & 1) ? chi : clo, P);
                const __m512i L = _mm512_permutexvar_epi8(idx, lut);
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) vs_dpbusd(&S[g][c], W[g], L);
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            float *a = acc + (size_t)g * as;
            const __m512 vf = _mm512_set1_ps(fac[g]);
            if (B == 3) { /* qwords of {4m, 4m + 1} and {4m + 2, 4m + 3} interleaved */
                const __m512i il0 = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
                const __m512i il1 = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
                const __m512i u0 = S[g][0], u1 = S[g][1], u2 = S[g][2], u3 = S[g][3];
                S[g][0] = _mm512_permutex2var_epi64(u0, il0, u1);
                S[g][1] = _mm512_permutex2var_epi64(u0, il1, u1);
                S[g][2] = _mm512_permutex2var_epi64(u2, il0, u3);
                S[g][3] = _mm512_permutex2var_epi64(u2, il1, u3);
            }
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                _mm512_storeu_ps(a + 16 * c, _mm512_add_ps(_mm512_loadu_ps(a + 16 * c),
                                                           _mm512_mul_ps(_mm512_cvtepi32_ps(S[g][c]), vf)));
        }
    }
}

KVC_TARGET_VNNI HDC_AI void vsum_bits(const struct hdc_state *st, const int B, int G, const float *w, size_t ws,
                                      const uint8_t *rows, size_t stride, int n, float *acc, size_t as) {
#define HDC_CALL(GL, g0) \
    vsum_impl(st, GL, w + (size_t)(g0) * ws, ws, rows, stride, n, acc + (size_t)(g0) * as, as, B, 0)
#define HDC_CALL2(GL, g0) \
    vsum_impl(st, GL, w + (size_t)(g0) * ws, ws, rows, stride, n, acc + (size_t)(g0) * as, as, 2, 1)
    if (B == 2 && stride == 18) {
        KV_G_PASSES(G, HDC_CALL2)
    } else {
        KV_G_PASSES(G, HDC_CALL)
    }
#undef HDC_CALL
#undef HDC_CALL2
}

KVC_TARGET_VNNI void hdc_rows_vsum_g(const struct hdc_state *st, int G, const float *w, size_t ws,
                                     const uint8_t *rows, size_t stride, int n, float *acc, size_t as) {
    if (!hdc_vsum_fits(st, stride)) { /* not this kernel's shape: the float kernel */
        hdc_rows_acc_g_avx512(st, G, w, ws, rows, stride, n, acc, as);
        return;
    }
    if (st->bits == 2) vsum_bits(st, 2, G, w, ws, rows, stride, n, acc, as);
    else vsum_bits(st, 3, G, w, ws, rows, stride, n, acc, as);
}
