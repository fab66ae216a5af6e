/* generic_avx2.c - AVX2 kernels for every Q8X type: the type's unpacked chunks (w = a u + b
 * per 16) against Q8X activations with vpmaddubsw + vpmaddwd per 32 weights (u <= 63; the
 * table-valued types use u - 128 as signed bytes with the sign trick), 4 weight rows x up to
 * 2 activation rows per micro-kernel. Also the AVX-512 level's path on CPUs without VNNI.
 * And the q8_K activation quantizer of the K-quants at the AVX2 and AVX-512 levels. */
#include "wtype.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")
#define NX2 2
#define WCHUNK2 (48 * 1024)

INLINE KVC_TARGET_AVX2 __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}
INLINE KVC_TARGET_AVX2 float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE KVC_TARGET_AVX2 void mk(const int NW, const int NX, const int SG, const struct kvc_wtype *t,
                               const char *w, size_t ws, const char *x, size_t xs, int64_t n,
                               float *y, int64_t ldy) {
    const int64_t np = kvc_q8x_padded(n), nc = np / 256;
    const __m256i ones16 = _mm256_set1_epi16(1), bias = _mm256_set1_epi8((char)0x80);
    __m256 acc[4][NX2];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm256_setzero_ps();
    _Alignas(64) struct kvc_unpacked up[4];
    for (int64_t c = 0; c < nc; c++) {
        UNROLL for (int r = 0; r < NW; r++) t->unpack(w + r * ws, c, n, &up[r]);
        UNROLL for (int h = 0; h < 2; h++) { /* b (+ 128 a for signed bytes) times group sums */
            UNROLL for (int r = 0; r < NW; r++) {
                __m256 b = _mm256_load_ps(up[r].b + 8 * h);
                if (SG) b = _mm256_fmadd_ps(_mm256_set1_ps(128.0f), _mm256_load_ps(up[r].a + 8 * h), b);
                UNROLL for (int j = 0; j < NX; j++) {
                    const __m256 s16 = _mm256_loadu_ps((const float *)(x + j * xs + 2 * np) + 16 * c + 8 * h);
                    acc[r][j] = _mm256_fmadd_ps(b, s16, acc[r][j]);
                }
            }
        }
        for (int k = 0; k < 8; k++) {
            __m256i xq[NX2];
            __m256 xd[NX2];
            UNROLL for (int j = 0; j < NX; j++) {
                xq[j] = _mm256_loadu_si256((const __m256i *)(x + j * xs + 256 * c + 32 * k));
                xd[j] = _mm256_loadu_ps((const float *)(x + j * xs + np) + 64 * c + 8 * k);
            }
            UNROLL for (int r = 0; r < NW; r++) {
                __m256i u = _mm256_load_si256((const __m256i *)(up[r].u + 32 * k));
                const __m256 al = _mm256_set_m128(_mm_set1_ps(up[r].a[2 * k + 1]), _mm_set1_ps(up[r].a[2 * k]));
                __m256i ua = u;
                if (SG) {
                    u = _mm256_xor_si256(u, bias); /* u - 128 as signed */
                    ua = _mm256_abs_epi8(u);
                }
                UNROLL for (int j = 0; j < NX; j++) {
                    const __m256i xv = SG ? _mm256_sign_epi8(xq[j], u) : xq[j];
                    const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ua, xv), ones16);
                    acc[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(al, xd[j]), acc[r][j]);
                }
            }
        }
    }
    UNROLL for (int j = 0; j < NX; j++) {
        if (NW == 4) _mm_storeu_ps(y + j * ldy, reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
        else UNROLL for (int r = 0; r < NW; r++) y[j * ldy + r] = hsum(acc[r][j]);
    }
}

INLINE KVC_TARGET_AVX2 void rows(const int NX, const int SG, const struct kvc_wtype *t, const char *w,
                                 size_t ws, int64_t nrows, const char *x, size_t xs, int64_t n,
                                 float *y, int64_t ldy) {
    int64_t r = 0;
    for (; r + 4 <= nrows; r += 4) {
        if (NX == 1) kvc_prefetch_rows4(w, ws, r, w + nrows * ws);
        mk(4, NX, SG, t, w + r * ws, ws, x, xs, n, y + r, ldy);
    }
    for (; r < nrows; r++) mk(1, NX, SG, t, w + r * ws, ws, x, xs, n, y + r, ldy);
}

INLINE KVC_TARGET_AVX2 void tile(const int SG, const struct kvc_wtype *t, const struct kvc_tile *tl,
                                 int t0, int t1, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    int64_t chunk = t1 - t0 <= NX2 ? r1 - r0 : (int64_t)(WCHUNK2 / w->row_bytes) & ~(int64_t)3;
    if (chunk < 4) chunk = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t nr = r1 - c0 < chunk ? r1 - c0 : chunk;
        const char *wr = (const char *)w->data + (size_t)c0 * w->row_bytes;
        for (int tt = t0; tt < t1; tt += NX2) {
            const char *x = (const char *)tl->x + (size_t)tt * tl->x_stride;
            float *y = tl->y + tt * tl->ldy + c0;
            if (t1 - tt == 1) rows(1, SG, t, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy);
            else rows(2, SG, t, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy);
        }
    }
}

static KVC_TARGET_AVX2 void tile_u(const struct kvc_wtype *t, const struct kvc_tile *tl, int t0, int t1,
                                   int64_t r0, int64_t r1) {
    tile(0, t, tl, t0, t1, r0, r1);
}
static KVC_TARGET_AVX2 void tile_s(const struct kvc_wtype *t, const struct kvc_tile *tl, int t0, int t1,
                                   int64_t r0, int64_t r1) {
    tile(1, t, tl, t0, t1, r0, r1);
}

void kvc_q8x_tile_avx2(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    const struct kvc_wtype *t = kvc_wtype_get(tl->w->type);
    if (t->signed_u) tile_s(t, tl, t0, t1, r0, r1);
    else tile_u(t, tl, t0, t1, r0, r1);
}

KVC_TARGET_AVX2 float kvc_q8x_dot_avx2(const struct kvc_wtype *t, int64_t n, const void *w, const void *x) {
    float s;
    if (t->signed_u) mk(1, 1, 1, t, w, 0, x, 0, n, &s, 0);
    else mk(1, 1, 0, t, w, 0, x, 0, n, &s, 0);
    return s;
}

/* kvc_quantize_row_q8k with vectors: the largest |x| by vmaxps, the first element of that
 * magnitude by a scan, q = vcvtps2dq of iscale x (the default rounding: ties to even, as
 * lrintf) packed with saturation (|q| <= 127 already). Bit-identical to the scalar one. */
KVC_TARGET_AVX2 void kvc_quantize_row_q8k_avx2(const float *x, void *out, int64_t n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t c = 0; c < kvc_q8x_padded(n) / 256; c++) {
        const int64_t nv = n - 256 * c < 256 ? n - 256 * c : 256; /* a multiple of 32 */
        const float *xc = x + 256 * c;
        int8_t *q = (int8_t *)out + 256 * c;
        __m256 m = _mm256_setzero_ps();
        for (int64_t j = 0; j < nv; j += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xc + j), absmask));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        const float amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
        memset(q, 0, 256);
        float d = 0;
        if (amax > 0) {
            int64_t i = 0;
            while (fabsf(xc[i]) != amax) i++;
            const float iscale = -127.0f / xc[i];
            const __m256 is = _mm256_set1_ps(iscale);
            for (int64_t j = 0; j < nv; j += 32) {
                __m256i v[4];
                for (int k = 0; k < 4; k++) v[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xc + j + 8 * k), is));
                const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
                _mm256_storeu_si256((__m256i *)(q + j), _mm256_permutevar8x32_epi32(p, order));
            }
            d = 1.0f / iscale;
        }
        kvc_q8k_finish(out, n, c, d);
    }
}
