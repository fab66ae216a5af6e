/* kvcodec.h - public API of libkvcodec: load a GGUF Llama-family model, run it with a
 * compressed KV cache (one codec for keys, one for values), tokenize, and read logits.
 * Handles are opaque; every call that can fail returns a kvc_status and fills a kvc_error
 * with one line naming the file, the field and the limit. The library never exits. */
#ifndef KVCODEC_H
#define KVCODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Pinned status codes: values never change once released. */
typedef enum {
    KVC_OK = 0,
    KVC_ERR_IO = 1,          /* cannot open/read/map a file */
    KVC_ERR_FORMAT = 2,      /* malformed input file (GGUF, calibration file, text) */
    KVC_ERR_UNSUPPORTED = 3, /* valid but not supported (architecture, tensor type, ...) */
    KVC_ERR_NOMEM = 4,       /* allocation failed */
    KVC_ERR_ARG = 5,         /* bad argument / option / spec string */
    KVC_ERR_RANGE = 6,       /* value out of range (context full, token id, ...) */
    KVC_ERR_CALIB = 7,       /* calibration data missing or does not match the model */
    KVC_ERR_INTERNAL = 8     /* a bug: an internal consistency check failed */
} kvc_status;

const char *kvc_status_str(kvc_status st);

/* Error detail: one human-readable line. */
typedef struct {
    kvc_status status;
    char msg[512];
} kvc_error;

typedef struct kvc_model kvc_model;
typedef struct kvc_ctx kvc_ctx;

/* Model architecture and sizes, read from GGUF metadata. */
struct kvc_model_info {
    char arch[32];
    char name[64];
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train;
    float rope_base, rms_eps;
    int tied_output;            /* 1 when output reuses token_embd.weight */
    uint64_t n_params;
    uint64_t weights_bytes;     /* bytes of all tensor data (memory-mapped) */
    uint64_t decode_read_bytes; /* weight bytes one decoded token reads (all but the unused
                                   rows of an untied embedding table) */
    uint64_t file_bytes;
    int bos_id, eos_id;
};

kvc_status kvc_model_load(const char *path, kvc_model **out, kvc_error *err);
void kvc_model_free(kvc_model *m); /* NULL is a no-op */
const struct kvc_model_info *kvc_model_get_info(const kvc_model *m);
/* Count of tensors of each GGUF type, for reports: fills up to n (type name, count) pairs. */
int kvc_model_tensor_types(const kvc_model *m, const char **names, int *counts, int n);

/* Tokenizer (SentencePiece "llama" model from GGUF metadata). *ids is malloc'ed; free() it. */
kvc_status kvc_tokenize(const kvc_model *m, const char *text, size_t len, int add_bos,
                        int32_t **ids, int *n_ids, kvc_error *err);
/* Text of one token as it should be printed (byte tokens give their byte, "▁" gives a space).
 * Writes up to cap bytes to buf, returns the number written (no terminating NUL). */
int kvc_token_to_text(const kvc_model *m, int32_t id, char *buf, int cap);

/* Context: a KV cache of n_ctx positions, with codecs chosen by spec strings. */
struct kvc_ctx_params {
    int n_ctx;            /* positions in the KV cache (default 2048, capped by nothing but RAM) */
    int n_batch;          /* max tokens per kvc_eval call (default 512) */
    int n_threads;        /* worker threads including the caller (default 2) */
    const char *kv_k;     /* key codec spec, e.g. "f16", "q8_0", "pca:rank=32" (default "f16") */
    const char *kv_v;     /* value codec spec (default "f16") */
    int kv_sinks;         /* first N positions kept in f16 (default 0) */
    int kv_recent;        /* last N positions kept in f16 (default 0) */
    const char *kv_calib; /* calibration file for codecs that need one (default NULL) */
    const char *kv_preset; /* preset file (kvcodec preset / docs/frontier.md): when set, it replaces
                            * kv_k, kv_v, kv_sinks, kv_recent and kv_calib (default NULL) */
    uint64_t seed;        /* seed for codecs with random state (default 0x6b7663) */
    int isa;              /* -1 = best available (default), 0 = scalar, 1 = AVX2, 2 = AVX-512 */
};
struct kvc_ctx_params kvc_ctx_default_params(void);

/* A preset: a calibration file that also names one cache setting. */
struct kvc_preset {
    char kv_k[128], kv_v[128];  /* codec specs */
    int sinks, recent;          /* f16 rows */
    int ctx;                    /* context the bits were counted at */
    double bits_per_element;    /* whole cache at ctx, f16 rows and scales counted */
    char note[256];             /* how it was chosen (informational) */
};
/* Read the setting of a preset file (the calibration in it is checked when a context loads
 * it): KVC_ERR_IO / KVC_ERR_FORMAT naming the file and the field. */
kvc_status kvc_preset_read(const char *path, struct kvc_preset *out, kvc_error *err);

kvc_status kvc_ctx_create(const kvc_model *m, const struct kvc_ctx_params *p, kvc_ctx **out,
                          kvc_error *err);
void kvc_ctx_free(kvc_ctx *c); /* NULL is a no-op */
void kvc_ctx_reset(kvc_ctx *c); /* empty the KV cache */
/* Keep the first n cached positions and drop the rest (n <= n_past); the next kvc_eval goes
 * on at position n. KVC_ERR_UNSUPPORTED when the cache keeps a recent window (--kv-recent):
 * its ring already holds later positions. */
kvc_status kvc_ctx_truncate(kvc_ctx *c, int n, kvc_error *err);
int kvc_ctx_n_past(const kvc_ctx *c);

/* Evaluate n tokens at positions n_past..n_past+n-1 (n <= n_batch). With all_logits the
 * logits of every token are kept (n x n_vocab), else only the last token's. */
kvc_status kvc_eval(kvc_ctx *c, const int32_t *tokens, int n, int all_logits, kvc_error *err);
/* Logits of the last kvc_eval: (n or 1, n_vocab) row-major. */
const float *kvc_get_logits(const kvc_ctx *c);

/* KV memory accounting of a context, all metadata included. */
struct kvc_kv_info {
    char spec_k[128], spec_v[128];
    double bits_k, bits_v;          /* bits per element at full context, sinks/recent counted */
    double bits_per_element;        /* (bits_k + bits_v) / 2 */
    double bytes_per_token;         /* K + V, all layers and KV heads */
    uint64_t kv_bytes;              /* bytes allocated for the cache */
    int n_ctx, sinks, recent;
};
void kvc_ctx_kv_info(const kvc_ctx *c, struct kvc_kv_info *out);

/* Bits per element of a K/V codec spec for head dimension d (no sinks/recent), for planning
 * without creating a context. */
kvc_status kvc_codec_bits(const char *spec, int head_dim, double *bits, kvc_error *err);
/* Names of the codecs in the table, comma-separated (for help texts and error lines). */
const char *kvc_codec_list(void);

/* This machine's memory read bandwidth: n_threads threads (including the caller) each sum
 * their share of a buffer of `bytes` bytes (allocated and written first), `reps` times; the
 * median over reps of bytes / seconds is returned in *bytes_per_s. Use a buffer several
 * times the last-level cache for DRAM bandwidth. The decode speed bound of a model is
 * bandwidth / (weight bytes + KV bytes read per token). */
kvc_status kvc_measure_read_bandwidth(size_t bytes, int n_threads, int reps, double *bytes_per_s,
                                      kvc_error *err);

#ifdef __cplusplus
}
#endif
#endif
