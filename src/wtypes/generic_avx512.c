/* generic_avx512.c - AVX512-VNNI kernels for every Q8X type (K-quants, Q4_1, Q5_x, IQ4_x):
 * each 256-weight chunk is unpacked by the type's row of the table to unsigned bytes u with
 * per-16 a, b (w = a u + b); vpdpbusd sums u * x per 4-element lane, scaled by a and the
 * activation's block scale, and b is applied through the activation's per-16 sums. 4 weight
 * rows x up to 4 activation rows per micro-kernel. Without VNNI the AVX2 kernels run. */
#include "arch/simd_avx512.h"
#include "wtype.h"

#define VNNI KVC_TARGET_AVX512VNNI

/* Lane l of 64-element piece k uses the scale of group 4 k + l / 4. */
INLINE VNNI __m512i group_idx(int k) {
    return _mm512_add_epi32(_mm512_set1_epi32(4 * k),
                            _mm512_srli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2));
}

/* y[j * ldy + r] = dot(W row r, X row j) for NW weight rows (ws bytes apart) and NX Q8X rows. */
INLINE VNNI void mk(const int NW, const int NX, const struct kvc_wtype *t, const char *w,
                    size_t ws, const char *x, size_t xs, int64_t n, float *y, int64_t ldy) {
    const int64_t np = kvc_q8x_padded(n), nc = np / 256;
    __m512 acc[4][NXMAX];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm512_setzero_ps();
    struct kvc_unpacked up[4];
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t c = 0; c < nc; c++) {
        __m512 a16[4];
        UNROLL for (int r = 0; r < NW; r++) {
            t->unpack(w + r * ws, c, n, &up[r]);
            a16[r] = _mm512_load_ps(up[r].a);
        }
        UNROLL for (int j = 0; j < NX; j++) {
            const __m512 s16 = _mm512_load_ps((const float *)(x + j * xs + 2 * np) + 16 * c);
            UNROLL for (int r = 0; r < NW; r++)
                acc[r][j] = _mm512_fmadd_ps(_mm512_load_ps(up[r].b), s16, acc[r][j]);
        }
        UNROLL for (int k = 0; k < 4; k++) {
            __m512i u[4];
            __m512 al[4];
            const __m512i idx = group_idx(k);
            UNROLL for (int r = 0; r < NW; r++) {
                u[r] = _mm512_load_si512(up[r].u + 64 * k);
                al[r] = _mm512_permutexvar_ps(idx, a16[r]);
            }
            UNROLL for (int j = 0; j < NX; j++) {
                const __m512i xq = _mm512_load_si512(x + j * xs + 256 * c + 64 * k);
                const __m512 xd = _mm512_load_ps((const float *)(x + j * xs + np) + 64 * c + 16 * k);
                UNROLL for (int r = 0; r < NW; r++) {
                    const __m512i s = _mm512_dpbusd_epi32(zero, u[r], xq);
                    acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(al[r], xd), acc[r][j]);
                }
            }
        }
    }
    store_acc(NW, NX, acc, y, ldy);
}

/* nrows weight rows against NX activation rows; prefetch ahead when decoding. */
INLINE VNNI void rows(const int NX, const struct kvc_wtype *t, const char *w, size_t ws,
                      int64_t nrows, const char *x, size_t xs, int64_t n, float *y, int64_t ldy) {
    int64_t r = 0;
    for (; r + 4 <= nrows; r += 4) {
        if (NX == 1) kvc_prefetch_rows4(w, ws, r, w + nrows * ws);
        mk(4, NX, t, w + r * ws, ws, x, xs, n, y + r, ldy);
    }
    for (; r < nrows; r++) mk(1, NX, t, w + r * ws, ws, x, xs, n, y + r, ldy);
}

static VNNI void tile_vnni(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const struct kvc_wtype *t = kvc_wtype_get(w->type);
    int64_t chunk = t1 - t0 <= NXMAX ? r1 - r0 : (int64_t)(WCHUNK_BYTES / w->row_bytes) & ~(int64_t)3;
    if (chunk < 4) chunk = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t nr = r1 - c0 < chunk ? r1 - c0 : chunk;
        const char *wr = (const char *)w->data + (size_t)c0 * w->row_bytes;
        for (int tt = t0; tt < t1; tt += NXMAX) {
            const char *x = (const char *)tl->x + (size_t)tt * tl->x_stride;
            float *y = tl->y + tt * tl->ldy + c0;
            switch (t1 - tt < NXMAX ? t1 - tt : NXMAX) {
            case 1: rows(1, t, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); break;
            case 2: rows(2, t, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); break;
            case 3: rows(3, t, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); break;
            default: rows(4, t, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); break;
            }
        }
    }
}

static VNNI float dot_vnni(const struct kvc_wtype *t, int64_t n, const void *w, const void *x) {
    float s;
    mk(1, 1, t, w, 0, x, 0, n, &s, 0);
    return s;
}

void kvc_q8x_tile_avx512(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    if (kvc_avx512_use_vnni()) tile_vnni(tl, t0, t1, r0, r1);
    else kvc_q8x_tile_avx2(tl, t0, t1, r0, r1);
}

float kvc_q8x_dot_avx512(const struct kvc_wtype *t, int64_t n, const void *w, const void *x) {
    return kvc_avx512_use_vnni() ? dot_vnni(t, n, w, x) : kvc_q8x_dot_avx2(t, n, w, x);
}
