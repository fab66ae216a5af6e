/* pca_tile.c - tiled rows of pca keys=pair: in the KV cache's store (kv_slot_info.store_tiles),
 * where the fp16 kernel runs, rows are kept 32 positions to a tile, field by field (layout:
 * pca_impl.h), so that the grouped fp16 score puts the 32 rows in the lanes of one vector: per
 * pair, unpack its two fields for all 32 rows (vpermb, shift, a word-table lookup of z), turn
 * them by k theta (cos / sin rows, k = lane) and add each query's two products (2 FMAs): no
 * per-row horizontal sums; the base angle moves from tile pair to tile pair by one complex product.
 * Plain-row access (encode, decode, scalar score, the float kernels) goes through
 * pca_tile_get_row / pca_tile_put_row, the scalar reference of the layout. */
#include "pca_impl.h"
#include "../arch/isa.h"

/* ------------------------------------------------------------------ layout (scalar) ---- */

static inline uint32_t bits_get(const uint8_t *b, int bit, int n) {
    uint32_t v = b[bit >> 3];
    if ((bit & 7) + n > 8) v |= (uint32_t)b[(bit >> 3) + 1] << 8;
    return (v >> (bit & 7)) & ((1u << n) - 1);
}
static inline void bits_put(uint8_t *b, int bit, int n, uint32_t q) {
    const uint32_t m = ((1u << n) - 1) << (bit & 7), v = q << (bit & 7);
    b[bit >> 3] = (uint8_t)((b[bit >> 3] & ~m) | (v & m));
    if ((bit & 7) + n > 8) b[(bit >> 3) + 1] = (uint8_t)((b[(bit >> 3) + 1] & ~(m >> 8)) | ((v & m) >> 8));
}

void pca_tile_get_row(const struct pca_state *s, const uint8_t *tile, int k, uint8_t *row) {
    const struct pca_pair *p = s->pair;
    memset(row, 0, s->rb);
    for (int u = 0; u < 2 * p->hs; u++) {
        const int b = p->nb[u];
        if (b) bits_put(row, p->bo[u], b, bits_get(tile, 32 * p->bo[u] + k * b, b));
    }
}

void pca_tile_put_row(const struct pca_state *s, const uint8_t *row, uint8_t *tile, int k) {
    const struct pca_pair *p = s->pair;
    for (int u = 0; u < 2 * p->hs; u++) {
        const int b = p->nb[u];
        if (b) bits_put(tile, 32 * p->bo[u] + k * b, b, bits_get(row, p->bo[u], b));
    }
}

const uint8_t *pca_tile_of(const struct pca_state *s, const void *ptr, int pos0, int i, int *k) {
    const int idx0 = pos0 - s->pair->origin, idx = idx0 + i;
    *k = idx & (PCA_TILE - 1);
    return (const uint8_t *)ptr + (ptrdiff_t)((idx & ~(PCA_TILE - 1)) - idx0) * (ptrdiff_t)s->rb;
}

void pca_tile_gather(const struct pca_state *s, const void *ptr, int pos0, int i, int m, uint8_t *buf) {
    for (int r = 0; r < m; r++) {
        int k;
        const uint8_t *t = pca_tile_of(s, ptr, pos0, i + r, &k);
        pca_tile_get_row(s, t, k, buf + (size_t)r * s->rb);
    }
    memset(buf + (size_t)m * s->rb, 0, 64);
}

/* ------------------------------------------------------------------ tables ---- */

kvc_status pca_tile_init(struct pca_state *s, const struct kv_slot_info *info, kvc_error *err) {
    struct pca_pair *p = s->pair;
    p->tiled = 0;
    p->origin = info->store_origin;
    if (!info->store_tiles || !p->f16 || p->hs != 32 || !kvc_cpu_has_vnni_vbmi()) return KVC_OK;
    for (int u = 0; u < 64; u++)
        if (p->nb[u] > 8) return KVC_OK;
    p->tt = kvc_alloc_aligned((size_t)32 * 2 * PCA_TILE_K * sizeof(uint16_t));
    p->tlut = kvc_alloc_aligned((size_t)64 * 64 * sizeof(uint16_t));
    p->tstep = kvc_alloc_aligned(64 * sizeof(float));
    p->thr = kvc_alloc_aligned(32 * sizeof(float));
    p->tdesc = kvc_alloc_aligned(9 * 3 * 64);
    p->toff = kvc_alloc_aligned(64 * sizeof(int32_t));
    if (!p->tt || !p->tlut || !p->tstep || !p->thr || !p->tdesc || !p->toff)
        return kvc_fail(err, KVC_ERR_NOMEM, "pca keys=pair: out of memory for the tiled tables of layer %d head %d",
                        info->layer, info->head);
    memset(p->tdesc, 0, 9 * 3 * 64);
    for (int u = 0; u < 64; u++) p->toff[u] = 4 * p->bo[u];
    for (int b = 0; b <= 8; b++) {
        uint8_t *ix = p->tdesc + (size_t)b * 192;
        uint16_t *sh = (uint16_t *)(void *)(ix + 64), *mk = (uint16_t *)(void *)(ix + 128);
        for (int k = 0; k < 32; k++) {
            ix[2 * k] = (uint8_t)((k * b) >> 3);
            ix[2 * k + 1] = (uint8_t)(((k * b) >> 3) + 1);
            sh[k] = (uint16_t)((k * b) & 7);
            mk[k] = (uint16_t)((1 << b) - 1);
        }
    }
    /* Per field u (b = nb[u] bits) a word table of z = f step + zoff in fp16: b <= 5: 32
     * entries, f = entry mod 2^b (the kernel's index keeps garbage bits above b, which the
     * repetition makes harmless); b = 6: 64 entries; b = 0: zoff everywhere; b = 7, 8: zoff in
     * words 0..31, step in 32..63 (the kernel computes f step + zoff). zmax[u] = max |z|. */
    int ok = 1;
    double zmax[64];
    for (int u = 0; u < 64; u++) {
        const int b = p->nb[u];
        uint16_t *L = p->tlut + (size_t)u * 64;
        zmax[u] = 0;
        for (int e = 0; e < 64; e++) {
            float z;
            if (b >= 7) z = e < 32 ? p->zoff[u] : p->step[u];
            else z = (float)((double)(e & ((1 << b) - 1)) * p->step[u] + (double)p->zoff[u]);
            if (!(fabsf(z) <= 0x1p15f)) ok = 0;
            L[e] = kvc_f32_to_f16(z);
        }
        if (b >= 7) zmax[u] = (double)((1 << b) - 1) * fabs((double)p->step[u]) + fabs((double)p->zoff[u]);
        else
            for (int e = 0; e < (1 << b); e++) zmax[u] = fmax(zmax[u], fabs((double)kvc_f16_to_f32(L[e])));
        if (!(zmax[u] <= 0x1p15)) ok = 0;
    }
    /* cos / sin of k theta_i for k = 0..PCA_TILE_K-1 (1 / 0 past the rotated pairs), fp16 */
    const int d = s->d, h = p->h;
    float theta_scale = powf(s->rope_base, -2.0f / (float)d), th = 1.0f;
    for (int i = 0; i < 32; i++) {
        const double w = i < h ? (double)th / (s->rope_ff ? s->rope_ff[i] : 1.0f) * s->rope_scale : 0.0;
        double r0 = 0, r1 = 0;
        for (int k = 0; k < PCA_TILE_K; k++) {
            const uint16_t c = kvc_f32_to_f16(i < h ? (float)cos((double)k * w) : 1.0f);
            const uint16_t sn = kvc_f32_to_f16(i < h ? (float)sin((double)k * w) : 0.0f);
            p->tt[((size_t)i * 2 + 0) * PCA_TILE_K + k] = c;
            p->tt[((size_t)i * 2 + 1) * PCA_TILE_K + k] = sn;
            const double ac = fabs((double)kvc_f16_to_f32(c)), as = fabs((double)kvc_f16_to_f32(sn));
            r0 = fmax(r0, ac * zmax[i] + as * zmax[32 + i]);
            r1 = fmax(r1, as * zmax[i] + ac * zmax[32 + i]);
        }
        if (!(r0 + r1 <= 0x1p15)) ok = 0;
        p->thr[i] = (float)(r0 + r1);
        p->tstep[2 * i] = i < h ? (float)cos(2.0 * PCA_TILE * w) : 1.0f;
        p->tstep[2 * i + 1] = i < h ? (float)sin(2.0 * PCA_TILE * w) : 0.0f;
        th *= theta_scale;
    }
    p->tiled = ok;
    return KVC_OK;
}

/* ------------------------------------------------------------------ the fp16 kernel ---- */

#define KVC_TARGET_TILE \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma,f16c,avx512fp16")))

/* z = f step + zoff of field u for the tile's 32 rows as fp16 (lane k = row k): bytes (k b) / 8
 * and + 1 into word k, shifted right by (k b) % 8 (tdesc row D of b = nb[u] bits), then looked
 * up in the field's word table Lt (pca_tile_init): vpermw for b <= 5 (bits above b are ignored
 * by the table's repetition; b = 0 looks up zoff), vpermt2w for b = 6, and for b = 7, 8 masked,
 * converted and f step + zoff by one FMA. The load reads 32 bytes from the field's start
 * (pca_tile_z's 64): up to PCA_TILE_SLACK past the tile. */
KVC_TARGET_TILE static inline __attribute__((always_inline)) __m512h tile_z(const uint8_t *tile, int32_t off,
                                                                             const uint8_t *D, const uint16_t *Lt,
                                                                             int b) {
    const __m512i lo = _mm512_load_si512(Lt);
    /* 32 bytes hold the field's 4 b bytes; byte 32 (b = 8, word 31's high byte) is masked off */
    const __m512i w = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(tile + off)));
    const __m512i x = _mm512_srlv_epi16(_mm512_permutexvar_epi8(_mm512_load_si512(D), w), _mm512_load_si512(D + 64));
    if (__builtin_expect(b <= 5, 1)) return _mm512_castsi512_ph(_mm512_permutexvar_epi16(x, lo));
    const __m512i hi = _mm512_load_si512(Lt + 32);
    if (b == 6) return _mm512_castsi512_ph(_mm512_permutex2var_epi16(lo, x, hi));
    const __m512h f = _mm512_cvtepu16_ph(_mm512_and_si512(x, _mm512_load_si512(D + 128)));
    return _mm512_fmadd_ph(f, _mm512_castsi512_ph(hi), _mm512_castsi512_ph(lo));
}

/* Pair iterations per tile pair: the rotated pairs, at most the 32 lanes' worth. */
static inline int tile_pairs(const struct pca_pair *p) { return p->h < 32 ? p->h : 32; }

/* NT (1 or 2) consecutive tiles (base position posb: the first tile's) for G (1..4) queries:
 * lanes [lo, hi) of the NT * 32 rows scored into out[g * os + k - lo]. The queries are turned
 * back by posb's angle (cs: cos, sin of each pair, as a RoPE table row) and rounded to fp16; per pair the fields become
 * z (tile_z) and R_k z (2 products and 2 FMAs per tile with the cos / sin rows of tt, k = 32 j +
 * lane), and each query adds ua R_k z_a and ub R_k z_b to its two fp16 sums per tile (one
 * broadcast of ua, ub serves both tiles); the sums go to float every 16 pairs.
 * Error: as the row kernel (pca_pair.c), with sequential sums of 16 terms in place of its
 * 6-level tree and z, cos and sin rounded to fp16: each term is off by at most
 * (5 E_i + 19 |R z_i|) u |qp pair i| (u = 2^-11), inside pair_f16_bound's 2^-6 E_i |qp pair i|
 * (|R z_i| <= E_i). */
KVC_TARGET_TILE static inline __attribute__((always_inline)) void
tile_score_impl(const struct pca_state *s, const int G, const int NT, const float *qp, size_t qs, const uint8_t *tile,
                const float *cs, int lo, int hi, float *out, size_t os, const uint8_t *pf, int npf) {
    const struct pca_pair *p = s->pair;
    const int d = s->d;
    const size_t tb = (size_t)PCA_TILE * s->rb;
    const __mmask16 m0 = kv_mask16(d), m1 = d > 16 ? kv_mask16(d - 16) : 0, m2 = d > 32 ? kv_mask16(d - 32) : 0,
                    m3 = d > 48 ? kv_mask16(d - 48) : 0;
    const __m512 t0 = _mm512_maskz_loadu_ps(m0, cs), t1 = _mm512_maskz_loadu_ps(m1, cs + 16);
    const __m512 t2 = _mm512_maskz_loadu_ps(m2, cs + 32), t3 = _mm512_maskz_loadu_ps(m3, cs + 48);
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512 C0 = _mm512_permutex2var_ps(t0, even, t1), S0 = _mm512_permutex2var_ps(t0, odd, t1);
    const __m512 C1 = _mm512_permutex2var_ps(t2, even, t3), S1 = _mm512_permutex2var_ps(t2, odd, t3);
    _Alignas(64) _Float16 qa[4][32], qb[4][32]; /* turned queries per pair, fp16 */
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
        const float *u = qp + (size_t)g * qs;
        const __m512 a0 = _mm512_loadu_ps(u), a1 = _mm512_loadu_ps(u + 16);
        const __m512 b0 = _mm512_loadu_ps(u + 32), b1 = _mm512_loadu_ps(u + 48);
        _mm256_store_si256((__m256i *)qa[g], _mm256_castph_si256(_mm512_cvtxps_ph(_mm512_fmadd_ps(a0, C0, _mm512_mul_ps(b0, S0)))));
        _mm256_store_si256((__m256i *)(qa[g] + 16), _mm256_castph_si256(_mm512_cvtxps_ph(_mm512_fmadd_ps(a1, C1, _mm512_mul_ps(b1, S1)))));
        _mm256_store_si256((__m256i *)qb[g], _mm256_castph_si256(_mm512_cvtxps_ph(_mm512_fmsub_ps(b0, C0, _mm512_mul_ps(a0, S0)))));
        _mm256_store_si256((__m256i *)(qb[g] + 16), _mm256_castph_si256(_mm512_cvtxps_ph(_mm512_fmsub_ps(b1, C1, _mm512_mul_ps(a1, S1)))));
    }
    __m512 F[2][4][2];
#pragma GCC unroll 2
    for (int j = 0; j < NT; j++)
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) F[j][g][0] = F[j][g][1] = _mm512_setzero_ps();
    const int np = tile_pairs(p);
    const uint8_t *restrict nbv = p->nb, *restrict desc = p->tdesc;
    const int32_t *restrict toff = p->toff;
    const uint16_t *restrict tt = p->tt, *restrict lut = p->tlut;
    for (int half = 0; half < 2; half++) {
        __m512h A[2][4], B[2][4];
#pragma GCC unroll 2
        for (int j = 0; j < NT; j++)
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) A[j][g] = B[j][g] = _mm512_setzero_ph();
        const int i1 = 16 * half + 16 < np ? 16 * half + 16 : np;
        for (int i = 16 * half; i < i1; i++) {
            if (i < npf) _mm_prefetch((const char *)(pf + 64 * i), _MM_HINT_T0); /* spread over the pairs */
            __m512h ra[2], rb[2];
            const int ba = nbv[i], bb = nbv[32 + i];
            const uint8_t *Da = desc + (size_t)ba * 192, *Db = desc + (size_t)bb * 192;
            const uint16_t *La = lut + (size_t)i * 64, *Lb = lut + (size_t)(32 + i) * 64;
#pragma GCC unroll 2
            for (int j = 0; j < NT; j++) {
                const __m512h *T = (const __m512h *)(const void *)(tt + (size_t)i * 2 * PCA_TILE_K + 32 * j);
                const int L = PCA_TILE_K / 32; /* vectors per table row */
                const uint8_t *tj = tile + j * tb;
                const __m512h za = tile_z(tj, toff[i], Da, La, ba), zb = tile_z(tj, toff[32 + i], Db, Lb, bb);
                ra[j] = _mm512_fnmadd_ph(zb, T[L], _mm512_mul_ph(za, T[0]));
                rb[j] = _mm512_fmadd_ph(zb, T[0], _mm512_mul_ph(za, T[L]));
            }
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                const __m512h ua = _mm512_set1_ph(qa[g][i]), ub = _mm512_set1_ph(qb[g][i]);
#pragma GCC unroll 2
                for (int j = 0; j < NT; j++) {
                    A[j][g] = _mm512_fmadd_ph(ua, ra[j], A[j][g]);
                    B[j][g] = _mm512_fmadd_ph(ub, rb[j], B[j][g]);
                }
            }
        }
#pragma GCC unroll 2
        for (int j = 0; j < NT; j++)
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                const __m512i sum = _mm512_castph_si512(_mm512_add_ph(A[j][g], B[j][g]));
                F[j][g][0] = _mm512_add_ps(F[j][g][0], _mm512_cvtxph_ps(_mm256_castsi256_ph(_mm512_castsi512_si256(sum))));
                F[j][g][1] = _mm512_add_ps(F[j][g][1], _mm512_cvtxph_ps(_mm256_castsi256_ph(_mm512_extracti64x4_epi64(sum, 1))));
            }
    }
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
        float *o = out + (size_t)g * os;
        if (lo == 0 && hi == 32 * NT) {
#pragma GCC unroll 2
            for (int j = 0; j < NT; j++) {
                _mm512_storeu_ps(o + 32 * j, F[j][g][0]);
                _mm512_storeu_ps(o + 32 * j + 16, F[j][g][1]);
            }
            continue;
        }
        /* lanes [lo, hi) to o[0 ..], 16 at a time */
        int w = 0;
#pragma GCC unroll 2
        for (int j = 0; j < NT; j++)
#pragma GCC unroll 2
            for (int q = 0; q < 2; q++) {
                const int b0 = 32 * j + 16 * q, a = lo > b0 ? lo - b0 : 0, e = hi - b0 < 16 ? hi - b0 : 16;
                if (a >= e) continue;
                const __mmask16 m = (__mmask16)(kv_mask16(e) & ~(a ? kv_mask16(a) : 0));
                _mm512_mask_storeu_ps(o + w, kv_mask16(e - a), _mm512_maskz_compress_ps(m, F[j][g][q]));
                w += e - a;
            }
    }
}

/* Z (64 slots, 32 rows): z = index step + zoff of every field of the tile, in float (as the row
 * decode unpacks them). */
KVC_TARGET_TILE void pca_tile_z(const struct pca_state *s, const uint8_t *tile, float *Z) {
    const struct pca_pair *p = s->pair;
    for (int u = 0; u < 64; u++) {
        const uint8_t *D = p->tdesc + (size_t)p->nb[u] * 192;
        const __m512i x = _mm512_permutexvar_epi8(_mm512_load_si512(D), _mm512_loadu_si512(tile + p->toff[u]));
        const __m512i f = _mm512_and_si512(_mm512_srlv_epi16(x, _mm512_load_si512(D + 64)), _mm512_load_si512(D + 128));
        const __m512 st = _mm512_set1_ps(p->step[u]), zo = _mm512_set1_ps(p->zoff[u]);
        _mm512_store_ps(Z + (size_t)u * 32, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(f))), st, zo));
        _mm512_store_ps(Z + (size_t)u * 32 + 16,
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(f, 1))), st, zo));
    }
}

/* 1 when each query has sum_i |qp pair i| thr_i <= 2^15 (0 for NaN or infinite ones). */
KVC_TARGET_TILE static int tile_fits(const struct pca_pair *p, int G, const float *qp, size_t qs) {
    for (int g = 0; g < G; g++) {
        const float *u = qp + (size_t)g * qs;
        __m512 m = _mm512_setzero_ps();
        for (int h = 0; h < 32; h += 16) {
            const __m512 a = _mm512_loadu_ps(u + h), b = _mm512_loadu_ps(u + 32 + h);
            m = _mm512_fmadd_ps(_mm512_sqrt_ps(_mm512_fmadd_ps(a, a, _mm512_mul_ps(b, b))), _mm512_loadu_ps(p->thr + h), m);
        }
        if (!(_mm512_reduce_add_ps(m) <= 0x1p15f)) return 0;
    }
    return 1;
}

/* cs <- cs turned by step (both d floats of (cos, sin) pairs): the base angle of the next tile
 * pair, one complex product per pair in place of a RoPE table row per tile pair (at 16K
 * positions the table is 4 MB and its rows missed cache: about 6 % of a decoded token). */
KVC_TARGET_TILE static inline __attribute__((always_inline)) void turn_base(float *cs, const float *step) {
    for (int l = 0; l < 64; l += 16) {
        const __m512 a = _mm512_load_ps(cs + l), b = _mm512_load_ps(step + l);
        const __m512 sw = _mm512_permute_ps(a, 0xB1); /* (sin, cos) */
        _mm512_store_ps(cs + l, _mm512_fmaddsub_ps(a, _mm512_moveldup_ps(b), _mm512_mul_ps(sw, _mm512_movehdup_ps(b))));
    }
}

KVC_TARGET_TILE static inline __attribute__((always_inline)) void
tile_score_g(const struct pca_state *s, const int G, const float *qp, size_t qs, const void *keys, int pos0, int n,
             float *out, size_t os) {
    const size_t tb = (size_t)PCA_TILE * s->rb;
    int k;
    const uint8_t *tile = pca_tile_of(s, keys, pos0, 0, &k);
    const int np = tile_pairs(s->pair);
    /* the first tile pair's base angle from the table, the next ones by turning it (tstep) */
    _Alignas(64) float cs[64], buf[PCA_MAX_D];
    const float *c0 = rope_cs(s, pos0 - k, buf);
    memset(cs, 0, sizeof cs);
    memcpy(cs, c0, (size_t)s->d * sizeof(float));
    for (int r0 = -k; r0 < n; r0 += 2 * PCA_TILE, tile += 2 * tb) { /* two tiles at a time */
        /* the tile pair two ahead: a line per pair iteration (np of them), the rest here */
        int npf = 0;
        if (r0 + 4 * PCA_TILE < n) {
            npf = (int)((2 * tb + 63) / 64);
            for (int l = np; l < npf; l++) _mm_prefetch((const char *)(tile + 4 * tb + 64 * (size_t)l), _MM_HINT_T0);
            npf = npf < np ? npf : np;
        }
        const int lo = r0 < 0 ? -r0 : 0;
        if (n - r0 > PCA_TILE) {
            const int hi = n - r0 < 2 * PCA_TILE ? n - r0 : 2 * PCA_TILE;
            tile_score_impl(s, G, 2, qp, qs, tile, cs, lo, hi, out + r0 + lo, os, tile + 4 * tb, npf);
        } else {
            tile_score_impl(s, G, 1, qp, qs, tile, cs, lo, n - r0, out + r0 + lo, os, tile + 4 * tb, npf);
        }
        turn_base(cs, s->pair->tstep);
    }
}

KVC_TARGET_TILE int pca_tile_score_g_f16(const struct kv_slot *sl, int G, const float *qp, size_t qs,
                                         const void *keys, int pos0, int n, float *out, size_t os) {
    const struct pca_state *s = sl->state;
    if (!tile_fits(s->pair, G, qp, qs)) return 0;
    if (n <= 0) return 1;
#define PCA_CALL(GL, g0) tile_score_g(s, GL, qp + (size_t)(g0) * qs, qs, keys, pos0, n, out + (size_t)(g0) * os, os)
    KV_G_PASSES(G, PCA_CALL)
#undef PCA_CALL
    return 1;
}
