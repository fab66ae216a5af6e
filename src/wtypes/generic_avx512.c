/* generic_avx512.c - AVX512-VNNI kernels for every Q8X type (K-quants, Q4_1, Q5_x, IQ4_x):
 * each 256-weight chunk is unpacked by the type's row of the table to unsigned bytes u with
 * per-16 a, b (w = a u + b); vpdpbusd sums u * x per 4-element lane, scaled by a and the
 * activation's block scale, and b is applied through the activation's per-16 sums. 4 weight
 * rows x up to 4 activation rows per micro-kernel; for many activation rows (prefill),
 * panels of 16 unpacked weight rows transposed to one row per lane (kvc_q8x_tile_panel).
 * Without VNNI the AVX2 kernels run. */
#include "kernel_avx512.h"

#define VNNI KVC_VNNI

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
            const __m512i idx = kvc_group_idx(k);
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

/* ---- panels (prefill; layout in kernel_avx512.h) ---- */
#define KPANEL_KC 16 /* chunks per pass: 96 KiB, kept in L2 while the activation rows pass */
#define KPANEL_NX 8  /* activation rows per micro-kernel call */

/* Panel packing through the type's table unpacker (types without a register unpacker). */
static VNNI void kpanel_pack_table(const struct kvc_wtype *t, const char *w, size_t ws, int nr, int64_t c0, int kc,
                                   int64_t n, struct kvc_kpanel *pn) {
    struct kvc_unpacked up[16];
    for (int c = 0; c < kc; c++, pn++) {
        for (int i = 0; i < 16; i++) t->unpack(w + (size_t)(i < nr ? i : nr - 1) * ws, c0 + c, n, &up[i]);
        kvc_kpanel_put(up, pn);
    }
}

/* NX Q8X activation rows xr[j] (padded length np) against a panel of kc chunks from chunk c0;
 * adds to (first = 0) or sets y[j * ldy + 0..nr). */
INLINE VNNI void kpanel_mk(const int NX, const struct kvc_kpanel *pn, int kc, int64_t c0, const char *const *xr,
                           int64_t np, int first, int nr, float *y, int64_t ldy) {
    const __mmask16 live = (__mmask16)((1u << nr) - 1);
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[KPANEL_NX];
    UNROLL for (int j = 0; j < NX; j++)
        acc[j] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live, y + j * ldy);
    for (int c = 0; c < kc; c++) {
        const struct kvc_kpanel *p = pn + c;
        const int64_t e0 = 256 * (c0 + c); /* first element of the chunk */
        for (int g = 0; g < 16; g++) {
            __m512i u[4];
            UNROLL for (int m = 0; m < 4; m++) u[m] = _mm512_load_si512(p->u[4 * g + m]);
            const __m512 a = _mm512_load_ps(p->a[g]), b = _mm512_load_ps(p->b[g]);
            UNROLL for (int j = 0; j < NX; j++) {
                const int8_t *q = (const int8_t *)xr[j] + e0 + 16 * g;
                __m512i s = zero;
                UNROLL for (int m = 0; m < 4; m++) {
                    int32_t v;
                    memcpy(&v, q + 4 * m, 4);
                    s = _mm512_dpbusd_epi32(s, u[m], _mm512_set1_epi32(v));
                }
                const float xd = ((const float *)(xr[j] + np))[(e0 + 16 * g) / 4];
                const float s16 = ((const float *)(xr[j] + 2 * np))[(e0 + 16 * g) / 16];
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(a, _mm512_set1_ps(xd)), acc[j]);
                acc[j] = _mm512_fmadd_ps(b, _mm512_set1_ps(s16), acc[j]);
            }
        }
    }
    UNROLL for (int j = 0; j < NX; j++) _mm512_mask_storeu_ps(y + j * ldy, live, acc[j]);
}

VNNI void kvc_q8x_tile_panel(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1,
                             kvc_kpanel_pack_fn pack) {
    const struct kvc_weight *w = tl->w;
    const struct kvc_wtype *t = kvc_wtype_get(w->type);
    const int64_t np = kvc_q8x_padded(w->n_in), nc = np / 256;
    const size_t ws = w->row_bytes;
    struct kvc_kpanel pn[KPANEL_KC];
    for (int64_t p0 = r0; p0 < r1; p0 += 16) {
        const int nr = r1 - p0 < 16 ? (int)(r1 - p0) : 16;
        for (int64_t k0 = 0; k0 < nc; k0 += KPANEL_KC) {
            const int kc = nc - k0 < KPANEL_KC ? (int)(nc - k0) : KPANEL_KC;
            const char *wr = (const char *)w->data + (size_t)p0 * ws;
            if (pack) pack(wr, ws, nr, k0, kc, w->n_in, pn);
            else kpanel_pack_table(t, wr, ws, nr, k0, kc, w->n_in, pn);
            for (int tt = t0; tt < t1;) {
                const char *xr[KPANEL_NX];
                const int nx = t1 - tt < KPANEL_NX ? t1 - tt : KPANEL_NX;
                for (int j = 0; j < nx; j++) xr[j] = (const char *)tl->x + (size_t)(tt + j) * tl->x_stride;
                float *y = tl->y + (int64_t)tt * tl->ldy + p0;
#define KPANEL_CALL(NX) kpanel_mk(NX, pn, kc, k0, xr, np, k0 == 0, nr, y, tl->ldy)
                KVC_PANEL_STEP(nx, tt, KPANEL_CALL)
#undef KPANEL_CALL
            }
        }
    }
}

static VNNI void tile_vnni(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    if (t1 - t0 >= KVC_KPANEL_MIN_T) {
        kvc_q8x_tile_panel(tl, t0, t1, r0, r1, NULL);
        return;
    }
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
