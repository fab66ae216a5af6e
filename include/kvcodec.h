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
    int rope_neox;              /* 0: RoPE on adjacent pairs (llama), 1: on halves (qwen2) */
    int rope_freq_factors;      /* 1 when rope_freqs.weight divides the pair frequencies (Llama 3) */
    float rope_freq_scale;      /* linear RoPE scaling: angles times this (1 = none) */
    int qkv_bias;               /* 1 when the Q/K/V projections have biases (qwen2) */
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
/* Bits per weight of a GGUF tensor type named as kvc_model_tensor_types names it ("q4_K": 4.5,
 * block bytes * 8 / block size); 0 for an unknown name. */
double kvc_tensor_type_bpw(const char *name);

/* Tokenizer of the model's vocabulary (SentencePiece "llama" or byte-level BPE "gpt2", ids
 * identical to llama.cpp's); *ids is malloc'ed, free() it. add_bos plays the part of
 * llama.cpp's add_special: BOS is prepended only when it is set and the vocabulary wants it
 * (tokenizer.ggml.add_bos_token or the pre-tokenizer's default). Special tokens written in the
 * text are not parsed (see kvc_vocab_tokenize). */
kvc_status kvc_tokenize(const kvc_model *m, const char *text, size_t len, int add_bos,
                        int32_t **ids, int *n_ids, kvc_error *err);
/* Text of one token as it should be printed (byte tokens give their byte, "▁" gives a space;
 * control tokens such as BOS print nothing). Writes up to cap bytes to buf, returns the number
 * written (no terminating NUL). */
int kvc_token_to_text(const kvc_model *m, int32_t id, char *buf, int cap);
/* 1 when id ends a generation: EOS, EOT (tokenizer.ggml.eot_token_id, or <|eot_id|>,
 * <|im_end|>, <|end|>, ... when absent), EOM and the other end-of-generation tokens llama.cpp
 * recognises. */
int kvc_token_is_eog(const kvc_model *m, int32_t id);

/* A vocabulary: the tokenizer alone. kvc_vocab_load reads only the GGUF metadata (vocab-only
 * files, or models with any tensor types or architecture); kvc_model_vocab borrows the model's
 * (do not free it). */
typedef struct kvc_vocab kvc_vocab;
kvc_status kvc_vocab_load(const char *path, kvc_vocab **out, kvc_error *err);
void kvc_vocab_free(kvc_vocab *v); /* NULL is a no-op */
const kvc_vocab *kvc_model_vocab(const kvc_model *m);

struct kvc_vocab_info {
    char kind[8];   /* "spm" or "bpe" */
    char pre[32];   /* BPE pre-tokenizer (tokenizer.ggml.pre), "spm" for SentencePiece */
    int n_tokens;
    int bos_id, eos_id, eot_id; /* -1 when none */
    int add_bos;    /* 1 when tokenizing with add_special prepends BOS */
};
void kvc_vocab_get_info(const kvc_vocab *v, struct kvc_vocab_info *out);
/* Tokenize as llama.cpp's llama_tokenize(text, add_special, parse_special): add_special adds
 * BOS (and EOS) as the vocabulary asks; parse_special recognises control tokens written in
 * the text (<|begin_of_text|>, <|im_start|>, ...); user-defined tokens are always recognised. */
kvc_status kvc_vocab_tokenize(const kvc_vocab *v, const char *text, size_t len, int add_special,
                              int parse_special, int32_t **ids, int *n_ids, kvc_error *err);
/* Bytes of one token; control and unknown tokens give their text only when special is set. */
int kvc_vocab_token_to_piece(const kvc_vocab *v, int32_t id, int special, char *buf, int cap);
int kvc_vocab_is_eog(const kvc_vocab *v, int32_t id);

/* Chat formats (src/chat.c). A message list becomes the prompt text of one format; the text
 * holds special tokens (<|im_start|>, <|eot_id|>, ...): tokenize it with parse_special. */
struct kvc_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
};
/* The --chat-format names, comma-separated. */
const char *kvc_chat_format_list(void);
/* The format of a chat template text (llama.cpp's detection by substrings: ChatML, Llama 3,
 * Llama 2 / Mistral [INST] variants, Zephyr), or NULL when it is none of these. */
const char *kvc_chat_detect(const char *tmpl);
/* The model's format: override (a --chat-format name) when not NULL, else detected from
 * tokenizer.chat_template; an unknown name or template is an error listing the names. */
kvc_status kvc_model_chat_format(const kvc_model *m, const char *override, const char **format,
                                 kvc_error *err);
/* Format n_msgs messages; add_assistant appends the opening of the assistant's turn. *out is
 * malloc'ed (NUL-terminated); free() it. */
kvc_status kvc_chat_apply(const char *format, const struct kvc_chat_msg *msgs, int n_msgs,
                          int add_assistant, char **out, kvc_error *err);

/* Logits of a token sequence for comparison with another engine (src/logits.c): the top_k
 * (id, logit) pairs of every position, best first, the softmax probability of each
 * position's top token, and the whole row of the last position. */
struct kvc_logits_report {
    int n_tokens, top_k, n_vocab;
    int32_t *top_ids;     /* (n_tokens, top_k) */
    float *top_logits;    /* (n_tokens, top_k) */
    float *top1_prob;     /* (n_tokens) */
    float *last;          /* (n_vocab) logits after the last token */
};
/* Evaluate ids (n >= 1) from position n_past of c in batches of the context's n_batch. */
kvc_status kvc_logits_collect(kvc_ctx *c, const int32_t *ids, int n, int top_k,
                              struct kvc_logits_report *out, kvc_error *err);
void kvc_logits_report_free(struct kvc_logits_report *r);

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
    uint64_t seed;        /* seed for codecs with random state (default 0x6b7663) */
    int isa;              /* -1 = best available (default), 0 = scalar, 1 = AVX2, 2 = AVX-512 */
};
struct kvc_ctx_params kvc_ctx_default_params(void);

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

/* Several sequences on one context (the server): each kvc_seq owns a KV cache of n_ctx
 * positions (<= the context's n_ctx) with the context's codecs, seed and sinks/recent rows.
 * kvc_eval_batch runs entries of several sequences through the weight matrices together;
 * attention of each entry reads only its own sequence's cache. The context's own cache is
 * not touched. Threads: one kvc_eval / kvc_eval_batch per context at a time. */
typedef struct kvc_seq kvc_seq;
kvc_status kvc_seq_create(kvc_ctx *c, int n_ctx, kvc_seq **out, kvc_error *err);
void kvc_seq_free(kvc_seq *s); /* NULL is a no-op */
int kvc_seq_n_past(const kvc_seq *s);
int kvc_seq_n_ctx(const kvc_seq *s);
/* Bytes a sequence's cache allocates (codec rows, sinks, recent ring, batch stage); the
 * context form gives it before creating one, for budgets. */
uint64_t kvc_seq_kv_bytes(const kvc_seq *s);
uint64_t kvc_ctx_seq_kv_bytes(const kvc_ctx *c, int n_ctx);

/* A batch: n entries (token[i], seq[i]) at position pos[i]. Entries of one sequence are
 * consecutive and continue it (pos = its n_past, n_past + 1, ...; pos may be NULL for
 * exactly that); at most n_batch entries in all and per sequence. */
struct kvc_batch {
    int n;
    const int32_t *token;
    kvc_seq *const *seq;
    const int *pos;
};
/* Evaluate a batch. Afterwards kvc_get_logits gives one row of n_vocab logits per sequence
 * (the logits after its last entry), in order of first appearance in the batch. */
kvc_status kvc_eval_batch(kvc_ctx *c, const struct kvc_batch *b, kvc_error *err);

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
