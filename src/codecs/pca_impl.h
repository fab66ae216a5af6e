/* pca_impl.h - internals shared by the two files of the pca codec (not a public header):
 * pca.c (parameters, per-slot state, scalar and AVX2 kernels, the codec table) and
 * pca_avx512.c (AVX-512 and AVX-512 VNNI kernels): the parsed parameters, the per-slot state,
 * small row helpers, and the functions one file calls in the other. */
#ifndef KVC_PCA_IMPL_H
#define KVC_PCA_IMPL_H

#include "codec_impl.h"
#include "../kv/calib_internal.h"
#include "../arch/kernels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { PCA_RANK = 0, PCA_VAR = 1, PCA_BITS = 2 };
enum { FMT_F32 = 0, FMT_F16 = 1, FMT_Q8 = 2, FMT_Q4 = 3, FMT_BITS = 4 };

#define PCA_MAX_D 1024
#define PCA_MAX_LAYERS 256
#define PCA_KEY_WIDE 1.3 /* default wide= of keys (see pca_state_create) */
#define PCA_PAIR_WIDE 1.6 /* default wide= of keys=pair (Gaussian steps; see pca_pair.c) */

struct pca_cfg {
    int mode;     /* PCA_RANK / PCA_VAR / PCA_BITS */
    int rank;     /* rank=R */
    double var;   /* var=X */
    int max;      /* max=R (var): stored capacity, 0 = d */
    double bits;  /* bits=B */
    int coef;     /* FMT_F32..FMT_Q4 */
    int pre;      /* keys=pre */
    int dot;      /* keys=pair dot products (enum pca_dot): dot=f32, dot=bf16 where the CPU has
                   * AVX512-BF16, dot=f16 where it has AVX512-FP16, dot=auto (default: pca_dot_auto) */
    double wide;  /* wide=F (bits): calibrated steps times F (default 1.3 keys, 1 values) */
    int n_mode, coef_set, max_set, wide_set, dot_set;
    int n_layers;                 /* layers=B0/B1/...: bits per row element of each layer (bit allocation);
                                   * heads=: of each (layer, KV head), layer-major (per_head = 1) */
    int per_head;
    double lbits[PCA_MAX_LAYERS];
};

struct pca_state {
    int d, fmt, pre;
    int neox;         /* keys=pre on NEOX RoPE: mean, P, PT and ET are in RoPE order (below) */
    int r;            /* active coefficients */
    int rp;           /* r rounded up to 16 */
    int C;            /* index of the constant in qp and of the weight sum in acc */
    int cap;          /* stored coefficient slots (rank formats) */
    size_t rb;        /* row bytes */
    float *mean;      /* (d) */
    float *P;         /* (r, d) active directions */
    float *PT;        /* (d, rp) transposed, zero-padded */
    float *ET;        /* (d, rp) encode directions T^T basis_k transposed (= PT for the identity metric) */
    /* bits */
    uint8_t *nb;      /* (rp) bits per active coefficient (>= 1), 0 in padding */
    float *step;      /* (rp) */
    float *off;       /* (rp) (0.5 - 2^(b-1)) * step: value = index * step + off */
    int32_t *boff, *bsh, *bmask;   /* (rp) byte offset, shift, mask of each field */
    uint16_t *widx, *wsh, *wmask;  /* (r rounded up to 32) the same for the 16-bit permute path */
    struct kvc_rope_table *rope; /* shared cos/sin table (NULL: rope_cs computes rows) */
    float rope_base, rope_scale; /* linear scaling of every angle (1: none) */
    float *rope_ff;   /* (d/2) Llama 3 frequency factors of the pairs, or NULL */
    struct pca_pair *pair; /* keys=pair: the per-pair transform (pca_pair.c), NULL otherwise */
};

/* keys=pair: keys before RoPE coded with a transform that does not mix RoPE pairs. Pair i
 * (dims a_i, b_i: (2i, 2i+1), or (i, i + d/2) for NEOX) is centred, turned by its own 2x2
 * rotation V_i (the principal axes of the pair's calibrated covariance) and scaled by the
 * pair's metric weight t_i; the two coefficients ("major" and "minor") get water-filled bits.
 * A 2x2 rotation commutes with RoPE's rotation of the pair, so the post-RoPE key is
 * R_p x = V^T R_p z / t with z = y + t V m: a score is sum_i (V_i q_i / t_i) . R_p z_i, O(d)
 * per row and the rotated z shared by the G query heads of the KV head.
 * Slots: coefficient j < h (h = d / 2) is the major one of pair j, j >= h the minor one of
 * pair j - h; rows pack the fields in that order. Kernel slots: major of pair i at i, minor
 * at hs + i (hs = 32 for d <= 64, else h), so the AVX-512 kernel sees two 32-lane halves. */
struct pca_pair {
    int h, hs, neox;
    int bf16;                 /* the AVX-512 score multiplies in bf16 (dot=bf16 and the CPU has it) */
    int f16;                  /* the AVX-512 score runs in fp16 (dot=f16, the CPU has AVX512-FP16 and
                               * the ht table is within fp16's range) */
    int *da, *db;             /* (h) dims of pair i */
    float *vc, *vs, *t;       /* (h) V_i = [[vc, vs], [-vs, vc]], metric weight t_i */
    uint8_t *nb;              /* (2 hs) bits per kernel slot (0: the slot is its mean) */
    int32_t *bo;              /* (2 hs) bit offset of each slot's field in the row */
    float *step, *zoff;       /* (2 hs) z = index * step + zoff (zoff: level offset + t V m) */
    float *ym;                /* (2 hs) t V m, the mean in coefficient space */
    uint16_t *widx, *wsh, *wmask; /* (64) 16-bit permute tables of the kernel slots (d <= 64) */
    float *ck, *sk;           /* (16, hs) cos / sin of k theta_i, k = 0..15 (incremental RoPE) */
    float *ra, *rb;           /* (hs) vc / t, vs / t: the pre-RoPE pair is (ra za - rb zb, rb za + ra zb) */
    /* (16 k, 2 halves, 6, 16 lanes), d <= 64: R_k z with z = index step + zoff folded in: for the
     * pairs i = 16 half + lane, with integer indices ia (major), ib (minor) as floats, the turned
     * pair is (ia A0 + ib A1 + A2, ia A3 + ib A4 + A5): A0 = st_a c, A1 = -st_b s,
     * A2 = zoff_a c - zoff_b s, A3 = st_a s, A4 = st_b c, A5 = zoff_a s + zoff_b c (c, s of k theta_i) */
    float *kt;
    /* bf16 kernel (d <= 64, every slot <= 7 bits): permute tables that put the fields of pair j
     * at words 2j (major) and 2j + 1 (minor) of two 32-word vectors (pairs 0-15, 16-31), read
     * as the bf16 numbers 128 + index; and per (k, half) 64 floats: the bf16 pairs (A0, A1) and
     * (A3, A4) of kt (16 dwords each) and the offsets A2 - 128 (A0 + A1), A5 - 128 (A3 + A4)
     * (16 floats each, with the bf16-rounded A's), so that vdpbf16ps turns a row by k theta. */
    uint16_t *xidx, *xsh, *xmask; /* (64) */
    float *bt;                /* (16 k, 2 halves, 64) */
    /* fp16 kernel (d <= 64): kt's A0..A5 for all 32 pairs in one vector each, as fp16 bits:
     * (16 k, 6, 32 lanes: pair i = lane i) */
    uint16_t *ht;
    float *hr;                /* (32) per pair: max over k and indices of |(R_k z)_a| + |(R_k z)_b| */
    /* Tiled rows (pca_tile.c): in a store that allows it (kv_slot_info.store_tiles) and where the
     * fp16 kernel runs, rows are kept in tiles of PCA_TILE positions, field by field: tile t
     * (store rows 32 t .. 32 t + 31, row k at position origin + 32 t + k) holds for each kernel
     * slot u, at byte 4 bo[u], the 32 rows' fields of nb[u] bits, row k's at bit k nb[u]
     * (LSB first). The tiled fp16 kernel puts rows in lanes: no per-row horizontal sums. */
    int tiled, origin;
    uint16_t *tt;             /* (32 pairs, 2, PCA_TILE_K lanes: k) cos, sin of k theta_i in fp16 */
    float *tstep;             /* (32 pairs: cos, sin) of 2 PCA_TILE theta_i: from one tile pair's base
                               * angle to the next one's */
    uint16_t *tlut;           /* (64 slots, 64 words) per slot u the fp16 table of its z = f step +
                               * zoff (pca_tile_init says how b = nb[u] uses it) */
    float *thr;               /* (32) hr over k < PCA_TILE_K */
    uint8_t *tdesc;           /* (9 widths b = 0..8, 3, 64 bytes): for fields of b bits (slot u
                               * uses row nb[u]), the vpermb index (word k <- bytes (k b) / 8 and
                               * + 1 of the field), the word shifts (k b) % 8 and the word mask
                               * 2^b - 1; shared by all slots so that it stays small in L1 */
    int32_t *toff;            /* (64) byte offset 4 bo[u] of slot u's fields in a tile */
};

#define PCA_TILE 32
#define PCA_TILE_K 64 /* positions that share one base angle in the tiled kernel: two tiles */

/* keys=pair's dot= choices (the values of pca_cfg.dot) */
enum pca_dot { PCA_DOT_AUTO = -1, PCA_DOT_BF16 = 0, PCA_DOT_F32 = 1, PCA_DOT_F16 = 2 };
/* dot=auto: bf16 where kvc_cpu_prefers_bf16_dot, else fp16 where the CPU has AVX512-FP16, else f32. */
int pca_dot_auto(void);

/* ---- shared scalar parts (pca.c) ---- */

/* keys=pre keeps its vectors in "RoPE order": RoPE pair i at dims (2i, 2i+1), so that the
 * kernels rotate adjacent lanes. For the adjacent-pair layout (llama) that is the natural
 * order; for NEOX (qwen2: pair i = dims (i, i + d/2)) RoPE-order dim 2i is natural dim i and
 * 2i + 1 is natural i + d/2. A dot product is the same in either order, so only the rows and
 * queries that enter (encode, prepare) and the rows that leave (decode) are permuted. */
static inline int pca_rope_pos(const struct pca_state *s, int i) {
    return !s->neox ? i : i < s->d / 2 ? 2 * i : 2 * (i - s->d / 2) + 1;
}
/* y (RoPE order) = x (natural order); y != x */
static inline void pca_to_rope_order(const struct pca_state *s, const float *x, float *y) {
    const int d = s->d, h = d / 2;
    if (!s->neox) {
        memcpy(y, x, (size_t)d * sizeof(float));
        return;
    }
    for (int i = 0; i < h; i++) {
        y[2 * i] = x[i];
        y[2 * i + 1] = x[i + h];
    }
}
/* x (RoPE order) back to natural order, in place (NEOX only; a no-op otherwise) */
static inline void pca_from_rope_order(const struct pca_state *s, float *x) {
    const int d = s->d, h = d / 2;
    if (!s->neox) return;
    float t[PCA_MAX_D];
    memcpy(t, x, (size_t)d * sizeof(float));
    for (int i = 0; i < h; i++) {
        x[i] = t[2 * i];
        x[i + h] = t[2 * i + 1];
    }
}

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return kvc_f16_to_f32(h);
}

/* RoPE cos/sin of position pos: from the shared table, computed into buf if it cannot grow. */
static inline const float *rope_cs(const struct pca_state *s, int pos, float *buf) {
    const float *cs = s->rope ? kvc_rope_row(s->rope, pos) : NULL;
    if (cs) return cs;
    kvc_rope_compute_ff(buf, pos, s->d, s->rope_base, s->rope_ff, s->rope_scale);
    return buf;
}

/* Row i of n: its bytes, or a padded copy when fewer than 64 bytes of later rows follow
 * it (the loads of a row may read up to 64 bytes past its end). */
static inline const uint8_t *row_at(const struct pca_state *s, const void *base, int i, int n, uint8_t *pad) {
    const uint8_t *p = (const uint8_t *)base + (size_t)i * s->rb;
    if ((size_t)(n - 1 - i) * s->rb >= 64) return p;
    memcpy(pad, p, s->rb);
    memset(pad + s->rb, 0, 64);
    return pad;
}
/* y = x - mean, with RoPE of position pos undone first for keys=pre. */
void pca_center_row(const struct pca_state *s, const float *x, int pos, float *y);
/* Quantize r coefficients c into one row (the same bytes at every ISA level). */
void pca_pack_row(const struct pca_state *s, const float *c, uint8_t *dst);
/* Completes the prepared query qp of q (layout: see pca.c). */
void pca_prepare_finish(const struct pca_state *s, const float *q, float *qp);
/* Latent coefficients of the weighted sum (bits: indices -> values). */
void pca_finish_coefs(const struct pca_state *s, const float *acc, float *c);

/* ---- keys=pair, tiled rows (pca_tile.c) ---- */
/* Builds the tiled tables and sets pair->tiled when info allows it and the fp16 kernel runs. */
kvc_status pca_tile_init(struct pca_state *s, const struct kv_slot_info *info, kvc_error *err);
/* Row k of a tile to / from a plain row (rb bytes). */
void pca_tile_get_row(const struct pca_state *s, const uint8_t *tile, int k, uint8_t *row);
void pca_tile_put_row(const struct pca_state *s, const uint8_t *row, uint8_t *tile, int k);
/* Rows i .. i + m - 1 of a call's rows (the call's first row is position pos0 at ptr) as plain
 * rows into buf (m rb bytes + 64 bytes of padding). */
void pca_tile_gather(const struct pca_state *s, const void *ptr, int pos0, int i, int m, uint8_t *buf);
/* Bytes a store of tiled rows needs past its last tile (the kernel's unmasked 64-byte loads). */
#define PCA_TILE_SLACK KV_STORE_SLACK
/* The tile holding the call's row i, and that row's index k in it. */
const uint8_t *pca_tile_of(const struct pca_state *s, const void *ptr, int pos0, int i, int *k);
/* Z (64 slots, 32 rows, 64-byte aligned): the float z of every field of a tile (AVX512-FP16 +
 * VBMI, as the tiled kernel). */
void pca_tile_z(const struct pca_state *s, const uint8_t *tile, float *Z);
/* The tiled fp16 grouped score (AVX512-FP16 + VBMI); 0 when a query is outside its range
 * (the caller then gathers plain rows for the float kernel). */
int pca_tile_score_g_f16(const struct kv_slot *sl, int G, const float *qp, size_t qs, const void *keys, int pos0,
                         int n, float *out, size_t os);

/* ---- keys=pair (pca_pair.c) ---- */

kvc_status pca_pair_init(struct pca_state *s, const struct kvc_calib_slot *cs, const struct kv_slot_info *info,
                         int total_bits, int max_bits, float wide, int dot, kvc_error *err);
void pca_pair_free(struct pca_pair *p);
void pca_pair_encode(const struct kv_slot *sl, const float *x, int pos0, int n, void *dst);
void pca_pair_decode(const struct kv_slot *sl, const void *src, int pos0, int n, float *y);
void pca_pair_prepare(const struct kv_slot *sl, const float *q, float *qp);
void pca_pair_score_scalar(const struct kv_slot *sl, const float *qp, const void *keys, int pos0, int n, float *out);
void pca_pair_decode_avx512(const struct kv_slot *sl, const void *src, int pos0, int n, float *y);
/* The grouped score at AVX-512: the bf16 kernel when the slot's pair->bf16 is set, the fp16 one
 * when pair->f16 is set and the queries are within its range (pair->hr), else float. */
void pca_pair_score_g_avx512(const struct kv_slot *sl, int G, const float *qp, size_t qs, const void *keys, int pos0,
                             int n, float *out, size_t os);
/* The bf16 kernel itself (the CPU must have AVX512-BF16; rows of d <= 64 and <= 64 bytes). */
void pca_pair_score_g_bf16(const struct kv_slot *sl, int G, const float *qp, size_t qs, const void *keys, int pos0,
                           int n, float *out, size_t os);
/* The float kernel itself (d <= 64 and rows of <= 64 bytes; other shapes: the scalar score). */
void pca_pair_score_g_f16(const struct kv_slot *sl, int G, const float *qp, size_t qs, const void *keys, int pos0,
                          int n, float *out, size_t os);
void pca_pair_score_g_f32(const struct kv_slot *sl, int G, const float *qp, size_t qs, const void *keys, int pos0,
                          int n, float *out, size_t os);

/* ---- AVX-512 kernels (pca_avx512.c) ---- */

void pca_encode_avx512(const struct kv_slot *sl, const float *x, int pos0, int n, void *dst);
void pca_decode_avx512(const struct kv_slot *sl, const void *src, int pos0, int n, float *y);
void pca_prepare_avx512(const struct kv_slot *sl, const float *q, float *qp);
void pca_score_avx512(const struct kv_slot *sl, const float *qp, const void *keys, int pos0, int n, float *out);
void pca_accumulate_avx512(const struct kv_slot *sl, const float *w, const void *vals, int pos0, int n,
                           float *acc);
void pca_finish_avx512(const struct kv_slot *sl, const float *acc, float *out);
void pca_score_g_avx512(const struct kv_slot *sl, int G, const float *qp, size_t qs, const void *keys, int pos0,
                        int n, float *out, size_t os);
void pca_accumulate_g_avx512(const struct kv_slot *sl, int G, const float *w, size_t ws, const void *vals,
                             int pos0, int n, float *acc, size_t as);

#endif
