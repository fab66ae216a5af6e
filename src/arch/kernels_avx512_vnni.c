/* kernels_avx512_vnni.c - AVX512-VNNI matmul tiles for Q8_0 and Q4_0 weights. Many
 * activation rows (prefill): panels of 16 weight rows interleaved per block (lane i = row i),
 * so a block's 32 products per row sum in integers over 8 vpdpbusd before one convert and two
 * float ops (panel_*). A few rows: activation rows repacked per group of 4, weight rows per
 * chunk, and a 4 x 4 micro-kernel (one vpdpbusd, one convert, two float ops per 64 products). */
#include "simd_avx512.h"

/* Every product goes through vpdpbusd(k, u, x): u are the weights made unsigned (Q8_0:
 * w + 128, Q4_0: the nibbles 0..15 = w + 8) and x the signed activations, so the lane sums
 * are sum u x = sum w x + c sum x; k = -c * (lane sums of x) cancels the bias c (128 or 8). */

/* Two consecutive activation blocks (64 elements) in register-ready form. */
struct xpack {
    _Alignas(64) int8_t q[64]; /* signed quants */
    int32_t k[16];             /* -c * lane sums of q */
    float d[16];               /* block scales: [d0 x 8, d1 x 8] */
};
/* Two consecutive weight blocks, unsigned, with their scales. */
struct wpack {
    _Alignas(64) uint8_t u[64];
    float d[16];
};
_Static_assert(sizeof(struct xpack) == 192 && sizeof(struct wpack) == 128, "pack layouts");

#define XBUF_PAIRS 1024 /* 192 KiB: NXMAX activation rows of up to 256 block pairs (n_in 16384:
                          * every preset of kvcodec synth, up to the 8B models' n_ff 14336) */
#define WBUF_PAIRS 384 /* 48 KiB of packed weights: rows x pairs, reused by every x row */

#define VNNI KVC_TARGET_AVX512VNNI
/* Activation rows up to which Q4_0 tiles use the one-row kernel (decode). */
#define GEMV_MAX_T 1
/* Activation rows from which the panel kernel is used (it packs 16 rows per pass). */
#ifndef PANEL_MIN_T
#define PANEL_MIN_T 16
#endif
#include "util.h"
#include <string.h>

/* Pack one Q8_0 activation row of nb blocks (c = 8 for Q4_0 weights, else 128). */
INLINE VNNI void pack_x(const int is_q4, const block_q8_0 *x, int64_t nb, struct xpack *out) {
    const __m512i zero = _mm512_setzero_si512();
    const __m512i c = _mm512_set1_epi8(is_q4 ? 8 : (char)0x80);
    for (int64_t b = 0; b < nb; b += 2, out++) {
        const int two = b + 1 < nb;
        const __m512i q = q8_pair(x + b, two);
        _mm512_store_si512(out->q, q);
        _mm512_store_si512(out->k, _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, c, q)));
        _mm512_store_ps(out->d, scale2(x[b].d, two ? x[b + 1].d : 0, two));
    }
}

/* One weight block pair, straight from the GGUF blocks: unsigned quants and scales. */
INLINE VNNI void load_w_pair(const int is_q4, const int two, const void *row, int64_t b,
                             __m512i *u, __m512 *d) {
    if (is_q4) {
        const block_q4_0 *p = (const block_q4_0 *)row + b;
        *u = q4_pair(p, two);
        *d = scale2(p[0].d, two ? p[1].d : 0, two);
    } else {
        const block_q8_0 *p = (const block_q8_0 *)row + b;
        *u = _mm512_xor_si512(q8_pair(p, two), _mm512_set1_epi8((char)0x80));
        *d = scale2(p[0].d, two ? p[1].d : 0, two);
    }
}

static VNNI void pack_w(const int is_q4, const void *row, int64_t nb, struct wpack *out) {
    for (int64_t b = 0; b < nb; b += 2, out++) {
        __m512i u;
        __m512 d;
        if (b + 1 < nb) load_w_pair(is_q4, 1, row, b, &u, &d);
        else load_w_pair(is_q4, 0, row, b, &u, &d);
        _mm512_store_si512(out->u, u);
        _mm512_store_ps(out->d, d);
    }
}

/* One block pair p of NW weight rows x NX packed activation rows. Weights are packed (WP = 1,
 * rows ws bytes apart in a wpack buffer) or read from the GGUF rows (WP = 0; two = 0 for a
 * final single block). */
INLINE VNNI void step(const int is_q4, const int WP, const int two, const int NW, const int NX,
                      const char *w, size_t ws, const struct xpack *x, int64_t xs, int64_t p,
                      __m512 acc[4][NXMAX]) {
    __m512i wu[4];
    __m512 wd[4];
    UNROLL for (int r = 0; r < NW; r++) {
        if (WP) {
            const struct wpack *pk = (const struct wpack *)(w + r * ws) + p;
            wu[r] = _mm512_load_si512(pk->u);
            wd[r] = _mm512_load_ps(pk->d);
        } else {
            load_w_pair(is_q4, two, w + r * ws, 2 * p, &wu[r], &wd[r]);
        }
    }
    UNROLL for (int j = 0; j < NX; j++) {
        const struct xpack *px = x + j * xs + p;
        const __m512i xq = _mm512_load_si512(px->q);
        const __m512 xd = _mm512_load_ps(px->d);
        UNROLL for (int r = 0; r < NW; r++) {
            __m512i s = _mm512_dpbusd_epi32(_mm512_load_si512(px->k), wu[r], xq);
            acc[r][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), wd[r]), xd, acc[r][j]);
        }
    }
}

/* Micro-kernel over whole rows: y[j * ldy + r] = dot(W row r, X row j). */
INLINE VNNI void mk(const int is_q4, const int WP, const int NW, const int NX, const char *w,
                    size_t ws, const struct xpack *x, int64_t xs, int64_t nb, float *y,
                    int64_t ldy) {
    __m512 acc[4][NXMAX];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; 2 * p + 2 <= nb; p++) step(is_q4, WP, 1, NW, NX, w, ws, x, xs, p, acc);
    if (2 * p < nb) step(is_q4, WP, WP ? 1 : 0, NW, NX, w, ws, x, xs, p, acc);
    store_acc(NW, NX, acc, y, ldy);
}

/* nrows weight rows (at w, ws bytes apart) against NX packed activation rows. */
INLINE VNNI void rows(const int is_q4, const int WP, const int NX, const char *w, size_t ws,
                      int64_t nrows, const struct xpack *x, int64_t xs, int64_t nb, float *y,
                      int64_t ldy) {
    int64_t r = 0;
    for (; r + 4 <= nrows; r += 4) {
        if (NX == 1) kvc_prefetch_rows4(w, ws, r, w + nrows * ws);
        mk(is_q4, WP, 4, NX, w + r * ws, ws, x, xs, nb, y + r, ldy);
    }
    for (; r < nrows; r++) mk(is_q4, WP, 1, NX, w + r * ws, ws, x, xs, nb, y + r, ldy);
}

/* nx (1..NXMAX) activation rows against nrows weight rows. */
INLINE VNNI void rows_nx(const int is_q4, const int WP, int nx, const char *w, size_t ws,
                         int64_t nrows, const struct xpack *x, int64_t xs, int64_t nb, float *y,
                         int64_t ldy) {
    switch (nx) {
    case 4: rows(is_q4, WP, 4, w, ws, nrows, x, xs, nb, y, ldy); break;
    case 3: rows(is_q4, WP, 3, w, ws, nrows, x, xs, nb, y, ldy); break;
    case 2: rows(is_q4, WP, 2, w, ws, nrows, x, xs, nb, y, ldy); break;
    default: rows(is_q4, WP, 1, w, ws, nrows, x, xs, nb, y, ldy); break;
    }
}

/* Pack activation rows [t, t + nx) of the tile into xbuf (rows np pairs apart). */
static VNNI void pack_x_rows(const int is_q4, const struct kvc_tile *tl, int t, int nx,
                             int64_t nb, int64_t np, struct xpack *xbuf) {
    for (int j = 0; j < nx; j++)
        pack_x(is_q4, (const block_q8_0 *)((const char *)tl->x + (size_t)(t + j) * tl->x_stride),
               nb, xbuf + j * np);
}

/* Decode (one activation row, Q4_0 weights): groups of 4 blocks (128 weights, 72 bytes) in
 * one register with no nibble reordering. The activation row is packed per group instead:
 * the 16 low-nibble partners (elements 0..15) of each block in one 64-byte vector, the 16
 * high-nibble partners (16..31) in another, so each group costs two loads, one word permute,
 * two masks, two vpdpbusd and the scale arithmetic (about half the work of block pairs). */
struct xgemv {
    _Alignas(64) int8_t lo[64]; /* [block b: x[b].qs[0..15]] */
    int8_t hi[64];              /* [block b: x[b].qs[16..31]] */
    int32_t k[16];              /* -8 * (lo + hi lane sums) */
    float d[16];                /* x[b].d in lanes 4b..4b+3 */
};
#define XGEMV_GROUPS 128 /* 32 KiB: n_in up to 16384 */

static VNNI void pack_xgemv(const block_q8_0 *x, int64_t ng, struct xgemv *out) {
    const __m512i zero = _mm512_setzero_si512(), c8 = _mm512_set1_epi8(8);
    for (int64_t g = 0; g < ng; g++, out++) {
        const block_q8_0 *b = x + 4 * g;
        for (int j = 0; j < 4; j++) {
            memcpy(out->lo + 16 * j, b[j].qs, 16);
            memcpy(out->hi + 16 * j, b[j].qs + 16, 16);
            const float d = kvc_f16_to_f32(b[j].d);
            for (int l = 0; l < 4; l++) out->d[4 * j + l] = d;
        }
        const __m512i lo = _mm512_load_si512(out->lo), hi = _mm512_load_si512(out->hi);
        const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, c8, lo), c8, hi);
        _mm512_store_si512(out->k, _mm512_sub_epi32(zero, s));
    }
}

/* NW (1 or 4) Q4_0 rows (ws bytes apart) of ng groups against a packed row: y[r] = dots. */
INLINE VNNI void gemv_q4_rows(const int NW, const char *w, size_t ws, const struct xgemv *x,
                              int64_t ng, float *y) {
    /* Words of the 72-byte group: block b = words 9b (scale) and 9b+1..9b+8 (quants). A is
     * the load at byte 0 (words 0..31), B at byte 8 (words 4..35; index 32 + word - 4). */
    const __m512i iq = _mm512_set_epi16(63, 62, 61, 60, 59, 58, 57, 56, 26, 25, 24, 23, 22, 21,
                                        20, 19, 17, 16, 15, 14, 13, 12, 11, 10, 8, 7, 6, 5, 4, 3,
                                        2, 1);
    const __m512i id = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 27,
                                        27, 27, 18, 18, 18, 18, 9, 9, 9, 9, 0, 0, 0, 0);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[4];
    UNROLL for (int r = 0; r < NW; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        if (NW == 4) kvc_pf_spread(w, ws, g, ng);
        const struct xgemv *px = x + g;
        const __m512i xlo = _mm512_load_si512(px->lo), xhi = _mm512_load_si512(px->hi);
        const __m512i k = _mm512_load_si512(px->k);
        const __m512 xd = _mm512_load_ps(px->d);
        UNROLL for (int r = 0; r < NW; r++) {
            const char *p = w + r * ws + g * 72;
            const __m512i A = _mm512_loadu_si512(p), B = _mm512_loadu_si512(p + 8);
            const __m512i q = _mm512_permutex2var_epi16(A, iq, B);
            const __m512i lo = _mm512_and_si512(q, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(k, lo, xlo), hi, xhi);
            const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(id, A)));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, xd), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < NW; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
}

/* Weight rows [r0, r1) against activation row t of the tile (Q4_0, n_in a multiple of 128). */
static VNNI void gemv_q4(const struct kvc_tile *tl, int t, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const int64_t ng = w->n_in / (4 * QK8_0);
    struct xgemv xb[XGEMV_GROUPS];
    pack_xgemv((const block_q8_0 *)((const char *)tl->x + (size_t)t * tl->x_stride), ng, xb);
    const size_t ws = w->row_bytes;
    const char *w0 = (const char *)w->data + (size_t)r0 * ws;
    float *y = tl->y + (int64_t)t * tl->ldy + r0;
    const int64_t n = r1 - r0;
    int64_t r = 0;
    for (; r + 4 <= n; r += 4) gemv_q4_rows(4, w0 + r * ws, ws, xb, ng, y + r);
    for (; r < n; r++) gemv_q4_rows(1, w0 + r * ws, ws, xb, ng, y + r);
}

static VNNI void tile_q(const int is_q4, const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                        int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const int64_t nb = w->n_in / QK8_0, np = (nb + 1) / 2;
    struct xpack xbuf[XBUF_PAIRS];
    struct wpack wbuf[WBUF_PAIRS];
    /* Many activation rows: pack each chunk of weight rows once and reuse it for all of them.
     * A few: read the GGUF rows directly, in cache-sized chunks when several groups of
     * activation rows pass over them. */
    const int packw = t1 - t0 >= WPACK_MIN_T && 4 * np <= WBUF_PAIRS;
    int64_t chunk = packw ? (WBUF_PAIRS / np) & ~(int64_t)3
                  : t1 - t0 <= NXMAX ? r1 - r0
                  : (int64_t)(WCHUNK_BYTES / w->row_bytes) & ~(int64_t)3;
    if (chunk < 4) chunk = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t nr = r1 - c0 < chunk ? r1 - c0 : chunk;
        const char *wrows = (const char *)w->data + (size_t)c0 * w->row_bytes;
        if (packw)
            for (int64_t r = 0; r < nr; r++)
                pack_w(is_q4, wrows + (size_t)r * w->row_bytes, nb, wbuf + r * np);
        for (int t = t0; t < t1; t += NXMAX) {
            const int nx = t1 - t < NXMAX ? t1 - t : NXMAX;
            float *y = tl->y + (int64_t)t * tl->ldy + c0;
            pack_x_rows(is_q4, tl, t, nx, nb, np, xbuf);
            if (packw)
                rows_nx(is_q4, 1, nx, (const char *)wbuf, (size_t)np * sizeof(struct wpack), nr,
                        xbuf, np, nb, y, tl->ldy);
            else
                rows_nx(is_q4, 0, nx, wrows, w->row_bytes, nr, xbuf, np, nb, y, tl->ldy);
        }
    }
}

/* ---- panels (prefill) ----
 * A panel holds 16 weight rows (fewer at the end) for PANEL_KC blocks: per block, u[m] has in
 * lane i the 4 unsigned quants of row i for elements 4m..4m+3 (Q4_0: the nibbles, i.e. w + 8;
 * Q8_0: w + 128), d the 16 rows' scales. An activation block then costs per panel 8 vpdpbusd
 * with its quants broadcast 4 at a time (elements 4m..4m+3 of the q8_0 block), started from
 * k = -c * sum(x) to cancel the bias c, one convert and two float ops for 16 outputs. */
struct wpanel {
    _Alignas(64) uint8_t u[8][64];
    float d[16];
};
_Static_assert(sizeof(struct wpanel) == 576, "panel layout");
#define PANEL_KC 128     /* blocks per panel pass: 72 KiB, kept in L2 while the rows pass */
#define PANEL_NX 8       /* activation rows per micro-kernel call */
#define PANEL_XS 16384   /* activation (row, block) terms computed at once: 128 KiB */

struct xsum {
    int32_t k; /* -c * sum of the block's quants */
    float d;   /* the block's scale */
};

/* Pack rows [0, nr) (ws bytes apart, nr <= 16) for blocks [b0, b0 + kc) into pn. */
static VNNI void panel_pack(const int is_q4, const char *w, size_t ws, int nr, int64_t b0, int kc,
                            struct wpanel *pn) {
    const __mmask16 live = (__mmask16)((1u << nr) - 1);
    const __m512i rowoff = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                              _mm512_set1_epi32((int)ws));
    const __m512i m4 = _mm512_set1_epi8(0x0F), bias = _mm512_set1_epi8((char)0x80);
    const size_t bb = is_q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    for (int b = 0; b < kc; b++, pn++) {
        const char *base = w + (size_t)(b0 + b) * bb;
        const __m512i dq = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rowoff, base, 1);
        _mm512_store_ps(pn->d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dq)));
        if (is_q4) {
            UNROLL for (int m = 0; m < 4; m++) {
                const __m512i q = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rowoff, base + 2 + 4 * m, 1);
                _mm512_store_si512(pn->u[m], _mm512_and_si512(q, m4));
                _mm512_store_si512(pn->u[4 + m], _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
            }
        } else {
            UNROLL for (int m = 0; m < 8; m++) {
                const __m512i q = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rowoff, base + 2 + 4 * m, 1);
                _mm512_store_si512(pn->u[m], _mm512_xor_si512(q, bias));
            }
        }
    }
}

/* NX activation rows (q8_0 rows xr[j], their sums xs[j]) against a packed panel of kc blocks
 * starting at block b0; adds to (first = 0) or sets y[j * ldy + 0..nr). */
INLINE VNNI void panel_mk(const int NX, const struct wpanel *pn, int kc, int64_t b0, const block_q8_0 *const *xr,
                          const struct xsum *const *xs, int first, int nr, float *y, int64_t ldy) {
    const __mmask16 live = (__mmask16)((1u << nr) - 1);
    __m512 acc[PANEL_NX];
    UNROLL for (int j = 0; j < NX; j++)
        acc[j] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(live, y + j * ldy);
    for (int b = 0; b < kc; b++) {
        const struct wpanel *p = pn + b;
        __m512i u[8];
        UNROLL for (int m = 0; m < 8; m++) u[m] = _mm512_load_si512(p->u[m]);
        const __m512 dw = _mm512_load_ps(p->d);
        UNROLL for (int j = 0; j < NX; j++) {
            const int8_t *q = xr[j][b0 + b].qs;
            const struct xsum *t = &xs[j][b0 + b];
            __m512i s = _mm512_set1_epi32(t->k);
            UNROLL for (int m = 0; m < 8; m++) {
                int32_t v;
                memcpy(&v, q + 4 * m, 4);
                s = _mm512_dpbusd_epi32(s, u[m], _mm512_set1_epi32(v));
            }
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(t->d)), acc[j]);
        }
    }
    UNROLL for (int j = 0; j < NX; j++) _mm512_mask_storeu_ps(y + j * ldy, live, acc[j]);
}

/* Activation rows [t0, t1) x weight rows [r0, r1) through panels (t1 - t0 >= 1, any n_in that
 * is a whole number of blocks). */
static VNNI void tile_q_panel(const int is_q4, const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const int64_t nb = w->n_in / QK8_0;
    const size_t ws = w->row_bytes;
    struct wpanel pn[PANEL_KC];
    struct xsum xs[PANEL_XS];
    const int32_t c = is_q4 ? -8 : -128;
    int tstep = (int)(PANEL_XS / nb);
    if (tstep > t1 - t0) tstep = t1 - t0;
    for (int ta = t0; ta < t1; ta += tstep) {
        const int tb = t1 - ta < tstep ? t1 : ta + tstep;
        /* the activation blocks' sums and scales, once for all panels */
        for (int t = ta; t < tb; t++) {
            const block_q8_0 *x = (const block_q8_0 *)((const char *)tl->x + (size_t)t * tl->x_stride);
            struct xsum *o = xs + (size_t)(t - ta) * nb;
            for (int64_t b = 0; b < nb; b++) {
                int32_t sum = 0;
                for (int i = 0; i < QK8_0; i++) sum += x[b].qs[i];
                o[b].k = c * sum;
                o[b].d = kvc_f16_to_f32(x[b].d);
            }
        }
        for (int64_t p0 = r0; p0 < r1; p0 += 16) {
            const int nr = r1 - p0 < 16 ? (int)(r1 - p0) : 16;
            for (int64_t k0 = 0; k0 < nb; k0 += PANEL_KC) {
                const int kc = nb - k0 < PANEL_KC ? (int)(nb - k0) : PANEL_KC;
                panel_pack(is_q4, (const char *)w->data + (size_t)p0 * ws, ws, nr, k0, kc, pn);
                for (int t = ta; t < tb;) {
                    const block_q8_0 *xr[PANEL_NX];
                    const struct xsum *xp[PANEL_NX];
                    const int nx = tb - t < PANEL_NX ? tb - t : PANEL_NX;
                    for (int j = 0; j < nx; j++) {
                        xr[j] = (const block_q8_0 *)((const char *)tl->x + (size_t)(t + j) * tl->x_stride);
                        xp[j] = xs + (size_t)(t + j - ta) * nb;
                    }
                    float *y = tl->y + (int64_t)t * tl->ldy + p0;
#define PANEL_CALL(NX) panel_mk(NX, pn, kc, k0, xr, xp, k0 == 0, nr, y, tl->ldy)
                    KVC_PANEL_STEP(nx, t, PANEL_CALL)
#undef PANEL_CALL
                }
            }
        }
    }
}

static VNNI void tile_q8(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    tile_q(0, tl, t0, t1, r0, r1);
}
static VNNI void tile_q4(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    tile_q(1, tl, t0, t1, r0, r1);
}

/* Returns 0 (nothing done) when the rows are too long for the packing buffers. */
VNNI int kvc_gemm_tile_q_avx512vnni(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                                    int64_t r1) {
    if (t1 - t0 >= PANEL_MIN_T && tl->w->n_in / QK8_0 <= PANEL_XS) {
        tile_q_panel(tl->w->type == KVC_TYPE_Q4_0, tl, t0, t1, r0, r1);
        return 1;
    }
    const int64_t np = (tl->w->n_in / QK8_0 + 1) / 2;
    if (NXMAX * np > XBUF_PAIRS) return 0;
    if (tl->w->type == KVC_TYPE_Q4_0 && t1 - t0 <= GEMV_MAX_T && tl->w->n_in % (4 * QK8_0) == 0 &&
        tl->w->n_in / (4 * QK8_0) <= XGEMV_GROUPS) {
        for (int t = t0; t < t1; t++) gemv_q4(tl, t, r0, r1);
        return 1;
    }
    if (tl->w->type == KVC_TYPE_Q4_0) tile_q4(tl, t0, t1, r0, r1);
    else tile_q8(tl, t0, t1, r0, r1);
    return 1;
}
