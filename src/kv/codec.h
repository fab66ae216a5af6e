/* codec.h - the KV codec table. A codec turns rows of one attention head (d floats) into
 * fixed-size encoded rows, and attention runs on the encoded rows through its kernels:
 * score a prepared query against n keys, accumulate n weighted values, finish. One
 * `const struct kv_codec` per codec, one .c file each (src/codecs/), one row in
 * kv_codec_table (src/kv/codec_table.c). The forward pass knows no codec by name. */
#ifndef KVC_CODEC_H
#define KVC_CODEC_H

#include "kvcodec.h"
#include "../arch/isa.h"
#include <stddef.h>
#include <stdint.h>

/* Stable numeric ids: never reuse or renumber. */
enum kv_codec_id {
    KV_CODEC_F32 = 1,
    KV_CODEC_F16 = 2,
    KV_CODEC_BF16 = 3,
    KV_CODEC_Q8_0 = 4,
    KV_CODEC_Q4_0 = 5,
    KV_CODEC_Q4_0H = 6,
    KV_CODEC_PCA = 7,
    KV_CODEC_HDC = 8,
    KV_CODEC_HDC_SELECT = 9,
};

struct kvc_calib; /* fitted data from --kv-calib (PCA bases, ...); opaque here */

/* Where one codec instance lives: created once per (layer, KV head, K-or-V). */
struct kv_slot_info {
    int d;              /* head dimension */
    int layer, head;    /* which layer / KV head */
    int is_value;       /* 0 = keys, 1 = values */
    float rope_base;    /* RoPE frequency base (keys are stored post-RoPE) */
    /* How the model rotates keys (codecs that apply RoPE themselves, pca keys=pre, need it):
     * rope_neox 0 = adjacent pairs (x[2i], x[2i+1]) (llama), 1 = halves (x[i], x[i+d/2])
     * (qwen2); rope_freq_factors (d/2 floats) divide pair i's frequency (Llama 3), NULL when
     * none; rope_freq_scale multiplies every angle (linear scaling; 0 is taken as 1). */
    int rope_neox;
    const float *rope_freq_factors;
    float rope_freq_scale;
    uint64_t seed;      /* per-slot seed, derived from the context seed and the slot */
    const struct kvc_calib *calib; /* NULL when no --kv-calib was given */
    /* 1 when the caller keeps this slot's rows in one store that a codec may lay out in tiles
     * (kv_slot.tile_rows): the row of position pos at store + (pos - store_origin) row_bytes,
     * the store starting at a tile and holding whole tiles (the KV cache sets this; tests and
     * tools that hand rows in their own buffers leave it 0, and get plain rows). Such a store
     * is followed by KV_STORE_SLACK readable bytes (kernels load whole vectors of a tile). */
    int store_tiles, store_origin;
};
#define KV_STORE_SLACK 64

struct kv_slot;

/* Kernels of one codec at one instruction-set level. Rows handed to encode/score/...
 * are consecutive positions pos0, pos0+1, ... (codecs that use RoPE need them).
 *   encode:      x (n, d) floats -> dst (n encoded rows of row_bytes each)
 *   decode:      src (n encoded rows) -> y (n, d) floats          (tests, tools)
 *   prepare_query: q (d floats, post-RoPE) -> qp (qp_floats floats), once per query head
 *   score:       out[i] = dot(q, key_i) for the n encoded keys (unscaled)
 *   accumulate:  acc (acc_floats floats) += sum_i w[i] * value_i (in the codec's space)
 *   finish:      out (d floats) = final value sum from acc; NULL means acc is already it.
 * Optional grouped kernels (NULL: the cache calls score / accumulate once per query): G query
 * heads that share this KV head, so each row is read and converted once.
 *   score_g:     out[g * os + i] = dot(qp + g * qs, key_i) for g < G
 *   accumulate_g: acc + g * as += sum_i w[g * ws + i] * value_i for g < G
 * A codec may set them only where it supports the slot's d (else they must defer to the
 * per-query kernels themselves).
 */
struct kv_kernels {
    void (*encode)(const struct kv_slot *s, const float *x, int pos0, int n, void *dst);
    void (*decode)(const struct kv_slot *s, const void *src, int pos0, int n, float *y);
    void (*prepare_query)(const struct kv_slot *s, const float *q, float *qp);
    void (*score)(const struct kv_slot *s, const float *qp, const void *keys, int pos0, int n,
                  float *out);
    void (*accumulate)(const struct kv_slot *s, const float *w, const void *vals, int pos0,
                       int n, float *acc);
    void (*finish)(const struct kv_slot *s, const float *acc, float *out);
    void (*score_g)(const struct kv_slot *s, int G, const float *qp, size_t qs, const void *keys,
                    int pos0, int n, float *out, size_t os);
    void (*accumulate_g)(const struct kv_slot *s, int G, const float *w, size_t ws,
                         const void *vals, int pos0, int n, float *acc, size_t as);
    /* Optional: src (n value rows) -> y (n, dec_acc_floats) floats in the accumulator's space,
     * such that acc[0 .. dec_acc_floats) += sum_i w[i] y_i followed by finish gives the same
     * value sum as accumulate (codecs that sum in a transformed space: attention over a batch
     * decodes a block of rows once this way and sums them with the f32 kernels). */
    void (*decode_acc)(const struct kv_slot *s, const void *src, int pos0, int n, float *y);
};

struct kv_codec {
    const char *name;   /* spec name, e.g. "q8_0" */
    int id;             /* enum kv_codec_id */
    const char *params; /* one-line help of accepted parameters, "" when none */
    const char *about;  /* one-line description */
    size_t cfg_size;    /* bytes of the parsed-parameter struct */
    /* 1: score must see every row of a segment in one call (it ranks them, e.g. top-k), so
     * attention does not split a segment's keys into blocks; 0: rows are independent. */
    int score_whole;
    /* Returns 1 (for a parsed cfg and a side: is_value 0 = keys, 1 = values) when attention over
     * a batch of queries should decode each block of this side's rows once (decode kernel,
     * floats) and run the f32 kernels on them: keys whose score costs about a rebuild (pca
     * keys=pre / pair), values whose weighted sum costs more per query than an f32 row (hdc,
     * q4_0, ...). Decode (one query per call) always runs on the encoded rows. NULL: never. */
    int (*batch_decode)(const void *cfg, int is_value);
    /* Parse "k=v,k=v" (params may be "" but not NULL) into cfg (cfg_size bytes, zeroed by
     * the caller). Unknown or bad parameters: error naming them and listing valid ones.
     * NULL when the codec takes no parameters. */
    kvc_status (*parse)(void *cfg, const char *params, kvc_error *err);
    /* Bytes of one encoded row for head dimension d; 0 when d is not supported (then
     * check_dim explains). */
    size_t (*row_bytes)(const void *cfg, int d);
    /* Optional: bytes of one row of the slot described by info when they depend on the slot
     * (pca's per-layer bits, layers=); NULL: row_bytes(cfg, info->d) for every slot. The
     * cache lays out each slot's rows with its own size. */
    size_t (*slot_row_bytes)(const void *cfg, const struct kv_slot_info *info);
    /* Error when the codec cannot handle head dimension d (e.g. not a multiple of 32). */
    kvc_status (*check_dim)(const void *cfg, int d, kvc_error *err);
    /* Per-slot state (seeds, rotations, bases). NULL when the codec has none. */
    kvc_status (*state_create)(const void *cfg, const struct kv_slot_info *info, void **state,
                               kvc_error *err);
    void (*state_free)(void *state);
    /* Floats needed for the prepared query and for the accumulator (given d). */
    int (*qp_floats)(const void *cfg, int d);
    int (*acc_floats)(const void *cfg, int d);
    /* Floats per row of decode_acc (a prefix of acc_floats); NULL when no decode_acc. */
    int (*dec_acc_floats)(const void *cfg, int d);
    /* Optional: 1 when slot s's grouped value sums (accumulate_g at the slot's level) round the
     * softmax weights to 8 bits, so attention may compute the weights with the cheaper exp
     * (kvc_softmax_online_fast, relative error 1e-4 against a rounding step of 1/255). */
    int (*weights_8bit)(const struct kv_slot *s);
    /* Optional: the slot's tile_rows (> 1 only when s->info.store_tiles). */
    int (*tile_rows)(const struct kv_slot *s);
    /* Kernels per level; entries with encode == NULL fall back to the next lower level. */
    struct kv_kernels kern[KVC_ISA_COUNT];
};

/* A codec instance in the cache. */
struct kv_slot {
    const struct kv_codec *codec;
    const void *cfg;               /* parsed parameters */
    void *state;                   /* from state_create, or NULL */
    struct kv_slot_info info;
    size_t row_bytes;
    int qp_floats, acc_floats;
    const struct kv_kernels *k;    /* kernels at the chosen level */
    int w8;                        /* codec->weights_8bit(slot): value sums round weights to 8 bits */
    int tile_rows;                 /* 1, or the tile (rows) whose rows the codec interleaves: only
                                    * when info.store_tiles; the store then holds whole tiles */
};

/* ---- the table ---- */
extern const struct kv_codec *const kv_codec_table[];
extern const int kv_codec_table_len;
const struct kv_codec *kv_codec_find(const char *name);

/* A parsed spec string "name[:k=v,...]". cfg is malloc'ed (cfg_size bytes). */
struct kv_spec {
    const struct kv_codec *codec;
    void *cfg;
    char text[KVC_SPEC_MAX];
};
kvc_status kv_spec_parse(const char *spec, struct kv_spec *out, kvc_error *err);
void kv_spec_free(struct kv_spec *s);
/* batch_decode for codecs whose value rows (not keys) are decoded once per batch. */
int kv_batch_decode_values(const void *cfg, int is_value);
/* batch_decode for codecs whose key and value rows are both decoded once per batch (float
 * and scalar-quantized rows: decoding a block costs less than scoring it for a few tokens,
 * and the decoded block goes through the register-tiled products of the blocked attention). */
int kv_batch_decode_all(const void *cfg, int is_value);

/* Build a slot (state created, kernels chosen for isa with fallback); free with
 * kv_slot_free. */
kvc_status kv_slot_init(struct kv_slot *s, const struct kv_spec *spec,
                        const struct kv_slot_info *info, enum kvc_isa isa, kvc_error *err);
void kv_slot_free(struct kv_slot *s);
/* Kernels of codec c at level isa after fallback (never NULL: scalar always exists). */
const struct kv_kernels *kv_codec_kernels(const struct kv_codec *c, enum kvc_isa isa);

/* Bits per element of encoded rows: 8 * row_bytes / d. */
double kv_spec_bits(const struct kv_spec *s, int d);

/* Helper for parse functions: split params into key/value pairs. Calls fn for each; stops on
 * error. Keys/values are NUL-terminated copies. */
kvc_status kv_params_each(const char *codec, const char *params, void *cfg,
                          kvc_status (*fn)(void *cfg, const char *key, const char *val,
                                           kvc_error *err),
                          kvc_error *err);

#endif
