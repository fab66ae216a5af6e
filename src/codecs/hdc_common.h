/* hdc_common.h - internals of the hypervector (HDC) codecs hdc (hdc.c) and hdc-select
 * (hdc_select.c), exposed for the tests: the per-slot state (random injection, binding signs,
 * quantizer tables), the spreading transform (bind with random signs, normalised fast
 * Walsh-Hadamard transform) and its inverse, the row quantizer, and the row kernels.
 *
 * Row layout: [f16][codes], b * D bits of codes, packed LSB first: coordinate i at bit b*i
 * of the code bit stream (b = 3: a code may straddle two bytes). Codes index the
 * sorted levels (code 0 = most negative), so for b = 1 a set bit means h_i >= 0. For b = 1 the
 * f16 is the row norm ||x||, for b >= 2 the row scale (decoded coordinate = scale *
 * level[code]). Rows are not
 * aligned: words are read with memcpy / unaligned loads. */
#ifndef KVC_HDC_COMMON_H
#define KVC_HDC_COMMON_H

#include "codec_impl.h"

#define HDC_MAX_D 4096 /* largest hypervector (floats on the stack in encode / finish) */
#define HDC_MIN_D 64   /* one uint64 word per plane at least */

enum hdc_scale { HDC_SCALE_RMS = 0, HDC_SCALE_LS = 1, HDC_SCALE_NORM = 2, HDC_SCALE_UNBIASED = 3 };
enum hdc_mean { HDC_MEAN_NONE = 0, HDC_MEAN_AUTO = 1, HDC_MEAN_CALIB = 2 };

/* Parsed parameters of hdc (hdc-select embeds the sketch part). */
struct hdc_cfg {
    int bits;     /* 1..4 */
    int expand;   /* m: D = m * d; power of two 1..64 */
    int scale;    /* enum hdc_scale (b >= 2) */
    int qbits;    /* 32: float query; 1: sign sketch of the query, popcount scores (b = 1) */
    int rounds;   /* 1 or 2 rounds of (bind, Hadamard) */
    int mean;     /* enum hdc_mean: subtract the calibrated mean of the rows */
    uint64_t seed;
};

/* Per-slot state. */
struct hdc_state {
    int d, D, W;        /* head dim, hypervector dim, uint64 words per plane (D/64) */
    int bits, scale, qbits, rounds;
    int use_vpopcnt;    /* AVX-512 popcount kernel allowed (tests may clear it) */
    int use_i8;         /* b >= 2 scores at the AVX-512 level by the int8 (VNNI + VBMI) kernel
                         * (tests may clear it) */
    size_t row_bytes;   /* 2 + bits * D / 8 */
    int *pos;           /* d distinct slots in [0, D): the random injection (identity if m=1) */
    float *sgn;         /* d binding signs (+-1) for the occupied slots */
    float *sgn2;        /* D signs of the second round (rounds = 2), else NULL */
    float *cos_tab;     /* D + 1 entries: cos(pi * h / D) */
    float *mu;          /* d floats: mean subtracted before encoding (centred rows), or NULL */
    float *mu_h;        /* D floats: hdc_forward(mu) (the mean in hyperspace), or NULL */
    float lev[16];      /* quantizer levels (unit Gaussian Lloyd-Max; b = 1: -1, +1) */
    float thr[16];      /* 2^b - 1 thresholds (midpoints between levels) */
    float c1;           /* b = 1 decode factor 1 / E||x||_1 over unit x on S^(D-1) (times ||x||),
                         * ~ sqrt(pi/2) / sqrt(D) * (1 - 1/(4D)) */
    float unb;          /* unbiased scale factor 1 / E[u Q(u)] (sphere coordinates) */
    float l8s;          /* b >= 2: int8 level scale, 127 / largest level */
    uint8_t lev8u[64];  /* b >= 2: 128 + round(l8s * lev[code]), repeated every 2^b entries */
    /* int8 value sums (hdc_vsum.c; b = 2, 3 at D = 64 on VNNI + VBMI CPUs) */
    int use_v8;         /* AVX-512 accumulate by hdc_rows_vsum_g (tests may clear it) */
    float v8s, v8err;   /* b >= 2: value level scale; max |lev8v / v8s - lev| */
    int8_t lev8v[64];   /* b >= 2: round(v8s * lev[code]), repeated every 2^b entries */
    uint8_t vsel[4][64];    /* byte selections of the 4-row kernel (offsets within a row; b = 3
                             * uses 2) */
    uint8_t vctl[2][64];    /* its vpmultishiftqb controls (b = 2 uses 1) */
    uint8_t ksel[3][64];    /* int8 scores, D = 64, b = 2, 3: byte selection of the gather-free
                             * 16-row load (offsets within 4 rows at stride row_bytes) */
};

/* Lloyd-Max levels of a unit Gaussian (see docs/hdc.md): levels[b][0 .. 2^b-1] ascending,
 * and the relative MSE (1 - E[Q^2]). */
extern const double hdc_lloyd_levels[5][16];
extern const double hdc_lloyd_mse[5];

/* E[u Q(u)] of the quantizer (levels lev, thresholds thr, L levels) for u a coordinate of a
 * uniformly random unit vector of R^D times sqrt(D); its inverse is the unbiased scale factor. */
double hdc_sphere_euq(int D, const float *lev, const float *thr, int L);

kvc_status hdc_state_init(struct hdc_state *st, int d, const struct hdc_cfg *cfg, uint64_t seed,
                          kvc_error *err);
void hdc_state_release(struct hdc_state *st);
/* Centre the rows on mu (d floats; NULL: none): encode x - mu; scores add q.mu (prepared
 * query [D+2]); accumulate sums the weights into acc[D] and finish adds that times mu. */
kvc_status hdc_state_set_mean(struct hdc_state *st, const float *mu, kvc_error *err);
/* Check that D = expand * d is supported; names the codec in the message. */
kvc_status hdc_check_D(const char *codec, int d, int expand, kvc_error *err);

/* Normalised fast Walsh-Hadamard transform in place (Sylvester order, scaled by 1/sqrt(D),
 * so it is orthonormal and its own inverse). D a power of two >= 16. Every ISA level gives
 * bit-identical results (same butterflies in the same order). */
void hdc_fwht(float *x, int D, int isa);
/* h (D floats) = H S2 H (S P x) (second factor only for rounds = 2): bind and spread. */
void hdc_forward(const struct hdc_state *st, const float *x, float *h, int isa);
/* x (d floats) = inverse of hdc_forward applied to h (D floats, overwritten). */
void hdc_inverse(const struct hdc_state *st, float *h, float *x, int isa);

/* Quantize one hypervector h (D floats) into a row (row_bytes); shared by all ISA levels. */
void hdc_quantize(const struct hdc_state *st, const float *h, uint8_t *row);
/* Decoded hypervector (D floats, scale applied) of one row. */
void hdc_dequant(const struct hdc_state *st, const uint8_t *row, float *h);

/* y (n, D) = decoded hypervectors of n rows at a stride, with the mean in hyperspace added
 * (mu_h) for centred rows: rows whose weighted sum, put through hdc_inverse, is the weighted
 * sum of the decoded rows (attention over a batch sums them with f32 kernels). Every level
 * gives the same floats (scale * level, + mu_h). */
void hdc_rows_dequant(const struct hdc_state *st, const uint8_t *rows, size_t stride, int n,
                      float *y, int isa);

/* Prepared query (qp_floats = hdc_qp_floats(D, bits)):
 *   [0, D)       Hq (b = 1: times c1)   [D] sum of [0, D)   [D+1] ||q||   [D+2] q.mu (or 0)
 *   [D+16, ...)  sign bits of Hq, D/64 uint64 words (popcount scores, hdc-select)
 *   [toff, ...)  b = 1: D/4 tables, b = 2: D/2 tables of 16 floats, toff = hdc_qp_toff(D):
 *                entry v of table t = score contribution of code bits v at bit position 4t */
/*   [i8off, ...) b >= 2: the int8 query, i8off = hdc_qp_i8off(D, bits): D bytes
 *                round(Hq / sq) with sq = max |Hq| / 127, then the float sq / l8s and the int32
 *                128 * (sum of the int8 query) (the offset of the unsigned levels) */
int hdc_qp_toff(int D);
int hdc_qp_i8off(int D, int bits);
int hdc_qp_floats(int D, int bits);
void hdc_prepare(const struct hdc_state *st, const float *q, float *qp, int isa);
static inline const float *hdc_qp_words(const float *qp, int D) { return qp + D + 16; }

/* Row kernels on rows at a stride (hdc rows: stride = row_bytes; hdc-select: larger). */
typedef void (*hdc_score_fn)(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                             size_t stride, int n, float *out);
typedef void (*hdc_acc_fn)(const struct hdc_state *st, const float *w, const uint8_t *rows,
                           size_t stride, int n, float *acc);
struct hdc_ops {
    hdc_score_fn score; /* scale * <Hq, levels> (b = 1: the unbiased ||k|| c1 <Hq, sign(Hk)>) */
    hdc_score_fn ham;   /* b = 1: ||q|| ||k|| cos(pi hamming / D) (popcount) */
    hdc_acc_fn acc;     /* acc (D floats) += w * decoded hypervector */
};
extern const struct hdc_ops hdc_ops[KVC_ISA_COUNT];
/* The popcount kernels one by one (for tests): scalar __builtin_popcountll, and AVX-512
 * VPOPCNTDQ (call only where kvc_cpu_has_vpopcntdq()). */
void hdc_ham_scalar(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                    size_t stride, int n, float *out);
void hdc_ham_vpopcnt(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                     size_t stride, int n, float *out);

/* ---- code layout ----
 * Codes packed LSB first, coordinate i at bit b*i of the row's bit stream: never straddling a
 * byte for b = 1, 2, 4; for b = 3, 8 coordinates fill 3 bytes and codes 2 and 5 of each 8
 * straddle two (the second byte is read only then, so no read passes the row's end). */

static inline int hdc_code(const struct hdc_state *st, const uint8_t *row, int i) {
    const uint8_t *c = row + 2;
    switch (st->bits) {
    case 1: return (c[i >> 3] >> (i & 7)) & 1;
    case 2: return (c[i >> 2] >> (2 * (i & 3))) & 3;
    case 4: return (c[i >> 1] >> (4 * (i & 1))) & 15;
    default: {
        const int p = 3 * i, s = p & 7;
        const unsigned v = c[p >> 3] | (s > 5 ? (unsigned)c[(p >> 3) + 1] << 8 : 0u);
        return (int)((v >> s) & 7);
    }
    }
}
static inline void hdc_set_code(const struct hdc_state *st, uint8_t *row, int i, int code) {
    uint8_t *c = row + 2;
    switch (st->bits) {
    case 1: c[i >> 3] |= (uint8_t)(code << (i & 7)); break;
    case 2: c[i >> 2] |= (uint8_t)(code << (2 * (i & 3))); break;
    case 4: c[i >> 1] |= (uint8_t)(code << (4 * (i & 1))); break;
    default: {
        const int p = 3 * i, s = p & 7;
        c[p >> 3] |= (uint8_t)(code << s);
        if (s > 5) c[(p >> 3) + 1] |= (uint8_t)(code >> (8 - s));
        break;
    }
    }
}

/* Grouped (G query heads) AVX-512 row kernels (hdc_kernels.c), called by the codec's
 * score_g / accumulate_g in hdc.c. */
void hdc_rows_score_g_avx512(const struct hdc_state *st, int G, const float *qp, size_t qs,
                             const uint8_t *rows, size_t stride, int n, float *out, size_t os);
void hdc_rows_acc_g_avx512(const struct hdc_state *st, int G, const float *w, size_t ws,
                           const uint8_t *rows, size_t stride, int n, float *acc, size_t as);

/* Int8 scores (b >= 2, float query; the prepared query's int8 part):
 *   out = scale * (sum_i lev8u[code_i] * q8_i - 128 sum q8) * (sq / l8s) + q.mu
 * Error against the float score: query and level rounding, bounded per row by
 * |scale| (sq/2 sum_i |lev_i| + sum_i |Hq_i| / (2 l8s) + D sq / (4 l8s)) (tests/test_hdc.c).
 * hdc_score_i8_scalar is the reference; hdc_rows_score_g_i8 (VNNI + VBMI: call only where
 * kvc_cpu_has_vnni_vbmi()) gives the same integers and the same float operations (bit-equal). */
void hdc_score_i8_scalar(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                         size_t stride, int n, float *out);
void hdc_rows_score_g_i8(const struct hdc_state *st, int G, const float *qp, size_t qs,
                         const uint8_t *rows, size_t stride, int n, float *out, size_t os);

/* Grouped value sums with unsigned int8 weights x signed int8 levels (b = 2, 3; VNNI vpdpbusd):
 * per chunk of HDC_VSUM_CHUNK rows and per head, t_r = w_r x scale_r, tmax = max t_r,
 * w8_r = round(255 t_r / tmax) in 0..255, the int32 sums S_i = sum_r w8_r lev8v[code_r,i] are
 * exact (|S_i| <= 64 x 255 x 127 < 2^31), and acc_i += S_i x ((tmax / 255) / v8s).
 * Error per coordinate and chunk against the float sum sum_r t_r lev[code_r,i]: at most
 *   (tmax / 510) sum_r |lev8v[code_r,i]| / v8s   (weight rounding, <= tmax / 510 per row)
 * + v8err sum_r t_r                                (level rounding)
 * plus float rounding of the last multiply-add. A chunk and head whose t is negative, inf or
 * NaN goes to the float kernel. hdc_vsum_scalar is the reference (any D); hdc_rows_vsum_g
 * (VNNI + VBMI: call only where kvc_cpu_has_vnni_vbmi(); shapes of hdc_vsum_fits, others go
 * to the float kernel) gives the same integers and float operations (bit-equal). */
#define HDC_VSUM_CHUNK 64
/* The int8 tables of the VNNI kernels (lev8v, v8s, v8err, vsel, vctl, ksel); b >= 2. */
void hdc_int8_init(struct hdc_state *st);
static inline int hdc_vsum_fits(const struct hdc_state *st, size_t stride) {
    return st->D == 64 && (st->bits == 2 || st->bits == 3) && stride >= st->row_bytes && stride <= 32;
}
void hdc_vsum_scalar(const struct hdc_state *st, int G, const float *w, size_t ws, const uint8_t *rows,
                     size_t stride, int n, float *acc, size_t as);
void hdc_rows_vsum_g(const struct hdc_state *st, int G, const float *w, size_t ws, const uint8_t *rows,
                     size_t stride, int n, float *acc, size_t as);

/* Row field access. */
static inline float hdc_row_f16(const uint8_t *row) {
    uint16_t h;
    memcpy(&h, row, 2);
    return kvc_f16_to_f32(h);
}
static inline uint64_t hdc_row_word(const uint8_t *row, int w) {
    uint64_t v;
    memcpy(&v, row + 2 + 8 * (size_t)w, 8);
    return v;
}
static inline uint16_t hdc_load16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Top-k selection (hdc-select), O(n) radix select on the float bits without moving data.
 * hdc_fkey maps floats to uint32 keys of the same order (NaN above +inf). hdc_topk_key
 * returns the key of the k-th largest of v[0..n) (1 <= k <= n) and sets *ties to how many
 * rows whose key equals it belong to the top k (take the first *ties of them): the top k are
 * the rows with key > result and those first ties. */
static inline uint32_t hdc_fkey(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
uint32_t hdc_topk_key(const float *v, int n, int k, int *ties);
/* The indices (ascending) of the min(k, n) largest v (ties to lower indices) into sel; returns
 * their count. Sampled threshold + compaction + radix select (hdc_select.c), k <= 4096. */
int hdc_select_topk(const float *v, int n, int k, int *sel, int isa);

#endif
