/* calib_internal.h - layout of calibration data (struct kvc_calib), shared by calib.c, the
 * PCA codec (src/codecs/pca.c), `kvcodec calibrate` and the tests. Not a public header.
 *
 * For every (layer, KV head) and each of three kinds of rows - keys before RoPE, keys after
 * RoPE, values - a calibration holds the mean, the principal directions (eigenvectors of the
 * covariance, largest eigenvalue first), the eigenvalues, and for transform coding the
 * quantizer step and mean squared error of each coefficient at 1..max_bits bits, fitted on
 * a sample of calibration rows.
 *
 * File format (GGUF v3, written by kvc_calib_save, read and validated by kvc_calib_load):
 *   metadata  kvcodec.calib.version u32 = 1
 *             general.architecture string, general.name string (informational)
 *             ARCH.block_count, ARCH.attention.head_count_kv, ARCH.attention.key_length,
 *             ARCH.vocab_size (u32), ARCH.rope.freq_base (f32)
 *             kvcodec.calib.tokenizer_hash u64: FNV-1a 64 over the tokenizer's tokens, each
 *                 token as its byte length (u64, little-endian) followed by its bytes
 *             kvcodec.calib.text string, kvcodec.calib.n_tokens u64, kvcodec.calib.ctx u32,
 *             kvcodec.calib.sample_rows u32, kvcodec.calib.max_bits u32
 *   tensors   (all F32, in this order) for layer L, head H, kind K in {k_pre, k_post, v}:
 *             blk.L.head.H.K.mean   ne = [d]
 *             blk.L.head.H.K.basis  ne = [d, d]  row k (contiguous) = k-th principal direction
 *             blk.L.head.H.K.eigval ne = [d]     descending, >= 0
 *             blk.L.head.H.K.step   ne = [d, max_bits + 1]  step[b][k]; b = 0 row is zero
 *             blk.L.head.H.K.mse    ne = [d, max_bits + 1]  mse[b][k]; b = 0 row = variance
 *             blk.L.head.H.K.metric     ne = [d, d]  T (row i contiguous): the basis, steps and errors
 *                                        are those of y = T (x - mean) (attention metric, docs/frontier.md)
 *             blk.L.head.H.K.metric_inv ne = [d, d]  T^-1
 *   Version 1 files (no metric tensors) load with T = identity.
 *   A preset adds: kvcodec.preset.kv_k, .kv_v, .kv_window, .note (strings), .sinks, .recent, .ctx (u32),
 *             .bits_per_element (f32); see kvc_preset_read.
 */
#ifndef KVC_CALIB_INTERNAL_H
#define KVC_CALIB_INTERNAL_H

#include "calib.h"
#include "kvcodec.h"
#include <stdint.h>

#define KVC_CALIB_VERSION 2
#define KVC_CALIB_MAX_BITS 8 /* step / mse tables cover 0..8 bits per coefficient */

enum kvc_calib_kind { KVC_CALIB_K_PRE = 0, KVC_CALIB_K_POST = 1, KVC_CALIB_V = 2, KVC_CALIB_NKIND = 3 };
extern const char *const kvc_calib_kind_name[KVC_CALIB_NKIND]; /* "k_pre", "k_post", "v" */

/* What ties a calibration to a model: shape, RoPE, vocabulary and tokenizer. */
struct kvc_calib_id {
    char arch[32];
    int n_layer, n_head_kv, head_dim, n_vocab;
    float rope_base;
    uint64_t tok_hash;
};

/* Statistics of one (layer, KV head, kind). Arrays point into kvc_calib.data. */
struct kvc_calib_slot {
    float *mean;   /* (d) */
    float *basis;  /* (d, d): basis[k*d + i] = component i of direction k */
    float *eigval; /* (d) descending */
    float *step;   /* (max_bits + 1, d): step[b*d + k], 0 for b = 0 */
    float *mse;    /* (max_bits + 1, d): mse[b*d + k] of coefficient k quantized with b bits */
    float *metric;     /* (d, d): T, coefficient k = basis_k . T (x - mean); identity for plain PCA */
    float *metric_inv; /* (d, d): T^-1, x = mean + T^-1 sum_k c_k basis_k */
};

struct kvc_rope_table; /* lazily filled cos/sin table shared by the slots of a calibration */

struct kvc_calib {
    struct kvc_calib_id id;
    char model_name[64];
    char text[256];         /* name of the calibration text */
    uint64_t n_tokens;      /* tokens the statistics were gathered over */
    int n_ctx;              /* chunk length used */
    int sample_rows;        /* rows per slot used to fit steps */
    int max_bits;           /* KVC_CALIB_MAX_BITS */
    int metric;             /* attention metric on k_pre (bit 0: query energy per RoPE pair), v (bit 1: W_o) */
    int has_preset;         /* the file also carries a setting (kvcodec.preset.*) */
    struct kvc_preset preset;
    struct kvc_calib_slot *slot; /* (n_layer, n_head_kv, NKIND) */
    float *data;
    struct kvc_rope_table *rope;
    struct kvc_rope_alt *rope_alt; /* the table with frequency factors / scaling (kvc_calib_rope_for) */
    char path[256];
};

/* Identity of a loaded model (hashes its tokenizer's tokens). */
kvc_status kvc_calib_model_id(const struct kvc_model *m, struct kvc_calib_id *id, kvc_error *err);
/* Hash of token strings as stored in the file (FNV-1a 64, see above). */
uint64_t kvc_calib_hash_tokens(const char *const *tok, const uint64_t *len, uint64_t n);

/* A zeroed calibration for id (arrays allocated, metrics the identity; rope table created). */
kvc_status kvc_calib_alloc(const struct kvc_calib_id *id, struct kvc_calib **out, kvc_error *err);
static inline const struct kvc_calib_slot *kvc_calib_slot_get(const struct kvc_calib *c, int layer,
                                                              int head, int kind) {
    return &c->slot[((size_t)layer * c->id.n_head_kv + head) * KVC_CALIB_NKIND + kind];
}

/* Write c as a GGUF file (through a temporary file renamed into place). */
kvc_status kvc_calib_save(const struct kvc_calib *c, const char *path, kvc_error *err);
/* Parse and validate a file on its own (no model): KVC_ERR_IO / KVC_ERR_FORMAT. */
kvc_status kvc_calib_load_file(const char *path, struct kvc_calib **out, kvc_error *err);
/* KVC_ERR_CALIB naming the first field where c differs from the model identity id. */
kvc_status kvc_calib_check_id(const struct kvc_calib *c, const struct kvc_calib_id *id,
                              kvc_error *err);

/* ---- fitting ---- */

/* Given n rows (n, d) of samples of one slot (mean, basis and eigval already set), fit the
 * step and mse tables of the coefficients basis_k . T (x - mean) (T = the slot's metric). */
void kvc_calib_fit_steps(struct kvc_calib_slot *s, int d, int max_bits, const float *rows, int n);

/* Uniform mid-rise quantizer with 2^b levels (b >= 1) and step `step`: level index of x and
 * the value it stands for. */
static inline int kvc_quant_index(float x, float step, int b) {
    int half = 1 << (b - 1);
    float f = x / step;
    int i;
    if (!(f > -(float)half)) i = 0; /* also NaN */
    else if (f >= (float)half) i = 2 * half - 1;
    else {
        int fl = (int)f;
        if ((float)fl > f) fl--; /* floor */
        i = fl + half;
        if (i > 2 * half - 1) i = 2 * half - 1;
        if (i < 0) i = 0;
    }
    return i;
}
static inline float kvc_quant_value(int i, float step, int b) {
    return ((float)(i - (1 << (b - 1))) + 0.5f) * step;
}

/* Integer bit allocation by reverse water-filling: greedily give the next bit to the
 * coefficient whose mean squared error drops most (mse tables of slot s), until total_bits
 * are given; no coefficient gets more than max_bits. bits[k] receive the counts; they sum
 * to total_bits (which must be <= d * max_bits) and do not increase with k when the mse
 * tables are ordered like the eigenvalues. */
void kvc_calib_alloc_bits(const struct kvc_calib_slot *s, int d, int max_bits, int total_bits,
                          uint8_t *bits);

/* Cumulative explained variance of slot s: cum[r] = share of the first r+1 eigenvalues. */
void kvc_calib_explained(const struct kvc_calib_slot *s, int d, double *cum);

/* ---- RoPE table ----
 * cos/sin of every rotation angle exactly as the forward pass computes them (float,
 * theta = pos * base^(-2i/d) by repeated multiplication), filled lazily in blocks of
 * positions; safe to read from several threads. */
struct kvc_rope_table *kvc_rope_table_create(int d, float base);
/* The same with Llama 3 frequency factors ff (d/2 floats, copied; NULL for none) dividing pair
 * i's angle and a linear scale multiplying every angle (0 or 1: none), as the forward pass. */
struct kvc_rope_table *kvc_rope_table_create_ff(int d, float base, const float *ff, float scale);
void kvc_rope_table_free(struct kvc_rope_table *t);
/* d floats: cos(theta_0), sin(theta_0), cos(theta_1), ... for position pos (0..2^24-1);
 * NULL only when out of memory. */
const float *kvc_rope_row(struct kvc_rope_table *t, int pos);
/* The same values computed directly (the forward pass's formula), for any position. */
void kvc_rope_compute(float *cs, int pos, int d, float base);
void kvc_rope_compute_ff(float *cs, int pos, int d, float base, const float *ff, float scale);
/* The table of c's slots for RoPE with factors ff / scale: c->rope without them, else one
 * table made on first use and shared by the slots (NULL for factors other than the first
 * ones seen, or out of memory: callers then compute rows with kvc_rope_compute_ff). */
struct kvc_rope_table *kvc_calib_rope_for(const struct kvc_calib *c, const float *ff, float scale);

#endif
