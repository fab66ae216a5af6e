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

/* Exported from libkvcodec.so (built with -fvisibility=hidden): only what is marked KVC_API. */
#ifndef KVC_API
#if defined(__GNUC__) || defined(__clang__)
#define KVC_API __attribute__((visibility("default")))
#else
#define KVC_API
#endif
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

KVC_API const char *kvc_status_str(kvc_status st);

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

KVC_API kvc_status kvc_model_load(const char *path, kvc_model **out, kvc_error *err);
/* kvc_model_load with flags. KVC_LOAD_NO_MMAP reads the file into the process's memory, in
 * 2 MiB pages where the kernel allows (transparent huge pages "madvise" or "always"), instead of
 * mapping it (llama.cpp's --no-mmap): the same resident bytes, a slower start, and a decode
 * that walks fewer pages (+3-8 % tokens/s on weights streamed from DRAM). */
#define KVC_LOAD_NO_MMAP 1u
KVC_API kvc_status kvc_model_load_ex(const char *path, unsigned flags, kvc_model **out, kvc_error *err);
KVC_API void kvc_model_free(kvc_model *m); /* NULL is a no-op */
KVC_API const struct kvc_model_info *kvc_model_get_info(const kvc_model *m);
/* Count of tensors of each GGUF type, for reports: fills up to n (type name, count) pairs. */
KVC_API int kvc_model_tensor_types(const kvc_model *m, const char **names, int *counts, int n);
/* Bits per weight of a GGUF tensor type named as kvc_model_tensor_types names it ("q4_K": 4.5,
 * block bytes * 8 / block size); 0 for an unknown name. */
KVC_API double kvc_tensor_type_bpw(const char *name);

/* Tokenizer of the model's vocabulary (SentencePiece "llama" or byte-level BPE "gpt2", ids
 * identical to llama.cpp's); *ids is malloc'ed, free() it. add_bos plays the part of
 * llama.cpp's add_special: BOS is prepended only when it is set and the vocabulary wants it
 * (tokenizer.ggml.add_bos_token or the pre-tokenizer's default). Special tokens written in the
 * text are not parsed (see kvc_vocab_tokenize). */
KVC_API kvc_status kvc_tokenize(const kvc_model *m, const char *text, size_t len, int add_bos,
                        int32_t **ids, int *n_ids, kvc_error *err);
/* Text of one token as it should be printed (byte tokens give their byte, "▁" gives a space;
 * control tokens such as BOS print nothing). Writes up to cap bytes to buf, returns the number
 * written (no terminating NUL). */
KVC_API int kvc_token_to_text(const kvc_model *m, int32_t id, char *buf, int cap);
/* 1 when id ends a generation: EOS, EOT (tokenizer.ggml.eot_token_id, or <|eot_id|>,
 * <|im_end|>, <|end|>, ... when absent), EOM and the other end-of-generation tokens llama.cpp
 * recognises. */
KVC_API int kvc_token_is_eog(const kvc_model *m, int32_t id);

/* A vocabulary: the tokenizer alone. kvc_vocab_load reads only the GGUF metadata (vocab-only
 * files, or models with any tensor types or architecture); kvc_model_vocab borrows the model's
 * (do not free it). */
typedef struct kvc_vocab kvc_vocab;
KVC_API kvc_status kvc_vocab_load(const char *path, kvc_vocab **out, kvc_error *err);
KVC_API void kvc_vocab_free(kvc_vocab *v); /* NULL is a no-op */
KVC_API const kvc_vocab *kvc_model_vocab(const kvc_model *m);

struct kvc_vocab_info {
    char kind[8];   /* "spm" or "bpe" */
    char pre[32];   /* BPE pre-tokenizer (tokenizer.ggml.pre), "spm" for SentencePiece */
    int n_tokens;
    int bos_id, eos_id, eot_id; /* -1 when none */
    int add_bos;    /* 1 when tokenizing with add_special prepends BOS */
};
KVC_API void kvc_vocab_get_info(const kvc_vocab *v, struct kvc_vocab_info *out);
/* Tokenize as llama.cpp's llama_tokenize(text, add_special, parse_special): add_special adds
 * BOS (and EOS) as the vocabulary asks; parse_special recognises control tokens written in
 * the text (<|begin_of_text|>, <|im_start|>, ...); user-defined tokens are always recognised. */
KVC_API kvc_status kvc_vocab_tokenize(const kvc_vocab *v, const char *text, size_t len, int add_special,
                              int parse_special, int32_t **ids, int *n_ids, kvc_error *err);
/* Bytes of one token; control and unknown tokens give their text only when special is set. */
KVC_API int kvc_vocab_token_to_piece(const kvc_vocab *v, int32_t id, int special, char *buf, int cap);
KVC_API int kvc_vocab_is_eog(const kvc_vocab *v, int32_t id);

/* Chat formats (src/chat.c). A message list becomes the prompt text of one format; the text
 * holds special tokens (<|im_start|>, <|eot_id|>, ...): tokenize it with parse_special. */
struct kvc_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
};
/* The --chat-format names, comma-separated. */
KVC_API const char *kvc_chat_format_list(void);
/* The format of a chat template text (llama.cpp's detection by substrings: ChatML, Llama 3,
 * Llama 2 / Mistral [INST] variants, Zephyr), or NULL when it is none of these. */
KVC_API const char *kvc_chat_detect(const char *tmpl);
/* The model's format: override (a --chat-format name) when not NULL, else detected from
 * tokenizer.chat_template; an unknown name or template is an error listing the names. */
KVC_API kvc_status kvc_model_chat_format(const kvc_model *m, const char *override, const char **format,
                                 kvc_error *err);
/* Format n_msgs messages; add_assistant appends the opening of the assistant's turn. *out is
 * malloc'ed (NUL-terminated); free() it. */
KVC_API kvc_status kvc_chat_apply(const char *format, const struct kvc_chat_msg *msgs, int n_msgs,
                          int add_assistant, char **out, kvc_error *err);

/* Next-token choice from a row of logits (src/sample.c), shared by `kvcodec run` and the
 * server. temp <= 0: greedy (the first maximum; rng untouched). Otherwise the logits / temp
 * sorted by probability (ties by id), cut to the top_k best (0 = all) and then to the smallest
 * prefix whose probability reaches top_p, and one drawn by a splitmix64 stream: *rng is its
 * state (start it at the seed), advanced once per sampled token. */
struct kvc_sampling {
    double temp;   /* default 0.8 */
    int top_k;     /* default 40 */
    double top_p;  /* default 0.95 */
};
struct kvc_token_prob {
    int id;
    float p;
};
KVC_API struct kvc_sampling kvc_sampling_default(void);
/* scratch: n_vocab entries (not read when temp <= 0). Returns the token id. */
KVC_API int kvc_sample(const float *logits, int n_vocab, const struct kvc_sampling *p, uint64_t *rng,
                       struct kvc_token_prob *scratch);

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
KVC_API kvc_status kvc_logits_collect(kvc_ctx *c, const int32_t *ids, int n, int top_k,
                              struct kvc_logits_report *out, kvc_error *err);
KVC_API void kvc_logits_report_free(struct kvc_logits_report *r);

/* Context: a KV cache of n_ctx positions, with codecs chosen by spec strings. */
struct kvc_ctx_params {
    int n_ctx;            /* positions in the KV cache (default 2048, capped by nothing but RAM) */
    int n_batch;          /* max tokens per kvc_eval call (default 512) */
    int n_threads;        /* worker threads including the caller (default 2) */
    const char *kv_k;     /* key codec spec, e.g. "f16", "q8_0", "pca:rank=32" (default "f16") */
    const char *kv_v;     /* value codec spec (default "f16") */
    int kv_sinks;         /* first N positions kept in the window codec (default 0) */
    int kv_recent;        /* last N positions kept in the window codec (default 0) */
    const char *kv_calib; /* calibration file for codecs that need one (default NULL) */
    const char *kv_preset; /* preset file (kvcodec preset / docs/frontier.md): when set, it replaces
                            * kv_k, kv_v, kv_sinks, kv_recent, kv_window and kv_calib (default NULL) */
    uint64_t seed;        /* seed for codecs with random state (default 0x6b7663) */
    int isa;              /* -1 = best available (default), 0 = scalar, 1 = AVX2, 2 = AVX-512 */
    const char *kv_window; /* codec of the sink and recent rows: a plain one (f32, f16, bf16, q8_0,
                            * q4_0); NULL = "f16" (default) */
};
KVC_API struct kvc_ctx_params kvc_ctx_default_params(void);

/* Longest KV codec spec string ("pca:layers=B0/B1/...,keys=pre"), terminating NUL included:
 * per-layer bits of models with ~150 layers fit. Specs, preset fields and --kv-k / --kv-v
 * beyond it are an error naming the limit. */
#define KVC_SPEC_MAX 1024

/* Longest window codec spec (--kv-window), terminating NUL included. */
#define KVC_WINDOW_MAX 32

/* A preset: a calibration file that also names one cache setting. */
struct kvc_preset {
    char kv_k[KVC_SPEC_MAX], kv_v[KVC_SPEC_MAX]; /* codec specs */
    int sinks, recent;          /* window rows */
    int ctx;                    /* context the bits were counted at */
    double bits_per_element;    /* whole cache at ctx, window rows and scales counted */
    char note[256];             /* how it was chosen (informational) */
    char kv_window[KVC_WINDOW_MAX]; /* codec of the window rows ("f16" in presets that predate it) */
};
/* Read the setting of a preset file (the calibration in it is checked when a context loads
 * it): KVC_ERR_IO / KVC_ERR_FORMAT naming the file and the field. */
KVC_API kvc_status kvc_preset_read(const char *path, struct kvc_preset *out, kvc_error *err);

KVC_API kvc_status kvc_ctx_create(const kvc_model *m, const struct kvc_ctx_params *p, kvc_ctx **out,
                          kvc_error *err);
KVC_API void kvc_ctx_free(kvc_ctx *c); /* NULL is a no-op */
KVC_API void kvc_ctx_reset(kvc_ctx *c); /* empty the KV cache */
/* Keep the first n cached positions and drop the rest (n <= n_past); the next kvc_eval goes
 * on at position n. KVC_ERR_UNSUPPORTED when the cache keeps a recent window (--kv-recent):
 * its ring already holds later positions. */
KVC_API kvc_status kvc_ctx_truncate(kvc_ctx *c, int n, kvc_error *err);
KVC_API int kvc_ctx_n_past(const kvc_ctx *c);

/* Evaluate n tokens at positions n_past..n_past+n-1 (n <= n_batch). With all_logits the
 * logits of every token are kept (n x n_vocab), else only the last token's. */
KVC_API kvc_status kvc_eval(kvc_ctx *c, const int32_t *tokens, int n, int all_logits, kvc_error *err);
/* Logits of the last kvc_eval: (n or 1, n_vocab) row-major. */
KVC_API const float *kvc_get_logits(const kvc_ctx *c);

/* Several sequences on one context (the server): each kvc_seq owns a KV cache of n_ctx
 * positions (<= the context's n_ctx) with the context's codecs, seed and sinks/recent rows.
 * kvc_eval_batch runs entries of several sequences through the weight matrices together;
 * attention of each entry reads only its own sequence's cache. The context's own cache is
 * not touched. Threads: one kvc_eval / kvc_eval_batch per context at a time. */
typedef struct kvc_seq kvc_seq;
KVC_API kvc_status kvc_seq_create(kvc_ctx *c, int n_ctx, kvc_seq **out, kvc_error *err);
KVC_API void kvc_seq_free(kvc_seq *s); /* NULL is a no-op */
KVC_API int kvc_seq_n_past(const kvc_seq *s);
KVC_API int kvc_seq_n_ctx(const kvc_seq *s);
/* Bytes a sequence's cache reserves (codec rows, sinks, recent ring, batch stage); the
 * context form gives it before creating one, for budgets. A sequence's codec rows take
 * memory page by page as positions are first written (address space for n_ctx positions,
 * returned at kvc_seq_free), so a sequence with n_pos positions written holds about
 * kvc_ctx_seq_kv_bytes_at(c, n_ctx, n_pos) bytes: the f16 parts plus the codec rows of those
 * positions (each (layer, KV head, K/V) row array rounds up to whole 4 KiB pages). */
KVC_API uint64_t kvc_seq_kv_bytes(const kvc_seq *s);
KVC_API uint64_t kvc_ctx_seq_kv_bytes(const kvc_ctx *c, int n_ctx);
KVC_API uint64_t kvc_ctx_seq_kv_bytes_at(const kvc_ctx *c, int n_ctx, int n_pos);

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
KVC_API kvc_status kvc_eval_batch(kvc_ctx *c, const struct kvc_batch *b, kvc_error *err);

/* KV memory accounting of a context, all metadata included. */
struct kvc_kv_info {
    char spec_k[KVC_SPEC_MAX], spec_v[KVC_SPEC_MAX];
    double bits_k, bits_v;          /* bits per element at full context, sinks/recent counted */
    double bits_per_element;        /* (bits_k + bits_v) / 2 */
    double bytes_per_token;         /* K + V, all layers and KV heads */
    uint64_t kv_bytes;              /* bytes allocated for the cache */
    int n_ctx, sinks, recent;
    char spec_window[KVC_WINDOW_MAX]; /* codec of the sink / recent rows */
};
KVC_API void kvc_ctx_kv_info(const kvc_ctx *c, struct kvc_kv_info *out);

/* Bits per element of a K/V codec spec for head dimension d (no sinks/recent), for planning
 * without creating a context. */
KVC_API kvc_status kvc_codec_bits(const char *spec, int head_dim, double *bits, kvc_error *err);
/* Names of the codecs in the table, comma-separated (for help texts and error lines). */
KVC_API const char *kvc_codec_list(void);

/* This machine's memory read bandwidth: n_threads threads (including the caller) each sum
 * their share of a buffer of `bytes` bytes (allocated and written first), `reps` times; the
 * median over reps of bytes / seconds is returned in *bytes_per_s. Use a buffer several
 * times the last-level cache for DRAM bandwidth. The decode speed bound of a model is
 * bandwidth / (weight bytes + KV bytes read per token). */
KVC_API kvc_status kvc_measure_read_bandwidth(size_t bytes, int n_threads, int reps, double *bytes_per_s,
                                      kvc_error *err);

/* For language bindings that mirror the public structs: the offset of `field` in `struct
 * strct` (e.g. "kvc_ctx_params", "kv_k"), its size when field is NULL, -1 when unknown. */
KVC_API long kvc_abi_offset(const char *strct, const char *field);

/* Free memory the library returned (JSON strings of kvc_*_json). NULL is a no-op. */
KVC_API void kvc_free(void *p);

/* ---- codecs on plain arrays (one attention head's rows, outside a context) ----
 * A handle over one row of the codec table for one (layer, KV head, K or V) slot, with the
 * same per-slot seed and calibration data a context with the same seed would give it, so
 * encode produces the bytes the engine stores and attend runs the engine's kernels. */
typedef struct kvc_codec kvc_codec;
struct kvc_codec_params {
    const char *spec;        /* codec spec, e.g. "q8_0", "hdc:bits=3" (default "f16") */
    int head_dim;            /* d (required) */
    int layer, head;         /* slot in the model (default 0, 0): selects calibration data and seed */
    int is_value;            /* 0 = keys (default), 1 = values */
    float rope_base;         /* RoPE base of the keys (default 10000; from the calibration file
                                when one is given) */
    uint64_t seed;           /* context seed the slot seed derives from (default 0x6b7663, the
                                context default) */
    const char *calib;       /* calibration file for codecs that need one (default NULL) */
    const kvc_model *model;  /* optional: check calib against this model, take its rope_base */
    int isa;                 /* -1 = best available (default), 0 = scalar, 1 = AVX2, 2 = AVX-512 */
};
KVC_API struct kvc_codec_params kvc_codec_default_params(void);
KVC_API kvc_status kvc_codec_create(const struct kvc_codec_params *p, kvc_codec **out, kvc_error *err);
KVC_API void kvc_codec_free(kvc_codec *c); /* NULL is a no-op */
/* Bytes of one encoded row; bits per element = 8 * row_bytes / head_dim. */
KVC_API size_t kvc_codec_row_bytes(const kvc_codec *c);
KVC_API int kvc_codec_head_dim(const kvc_codec *c);
/* x (n, d) floats of positions pos0..pos0+n-1 -> dst (n, row_bytes). */
KVC_API kvc_status kvc_codec_encode(const kvc_codec *c, const float *x, int pos0, int n, uint8_t *dst,
                                    kvc_error *err);
/* src (n, row_bytes) -> y (n, d) floats. */
KVC_API kvc_status kvc_codec_decode(const kvc_codec *c, const uint8_t *src, int pos0, int n, float *y,
                                    kvc_error *err);
/* Attention of n_q queries q (n_q, d; keys' space: post-RoPE) over n encoded keys / values
 * of positions pos0..pos0+n-1 (every query sees every row): out (n_q, d) =
 * softmax(scale * score(q, k_i)) . v_i with the codecs' prepare_query / score / softmax /
 * accumulate / finish kernels, as the cache's attention. scale <= 0 means 1/sqrt(d). */
KVC_API kvc_status kvc_codec_attend(const kvc_codec *kc, const kvc_codec *vc, const float *q, int n_q,
                                    const uint8_t *k_codes, const uint8_t *v_codes, int pos0, int n,
                                    float scale, float *out, kvc_error *err);

/* ---- evaluation (src/eval/): the CLI's ppl, passkey and calibrate commands and the Python package
 * call these; progress callbacks may be NULL. ---- */

/* Perplexity as llama.cpp's llama-perplexity: the text tokenized with BOS, non-overlapping
 * chunks of ctx.n_ctx tokens whose first token is BOS, the second half of each scored. With
 * compare, an f16/f16 cache runs the same chunks and the codec cache is compared with it. */
struct kvc_ppl_progress {
    int chunk;               /* chunks done: 0 = start (after tokenizing), then 1..n_chunks */
    int n_chunks, n_chunks_available, n_tokens_text, per_chunk, compare;
    double ppl, ppl_base;    /* over the chunks done (ppl_base 0 without compare) */
    double kld_mean, top1;   /* over the chunks done (compare only) */
    double chunk_seconds;
    const struct kvc_kv_info *kv; /* the cache under test */
};
struct kvc_ppl_params {
    struct kvc_ctx_params ctx;  /* the cache under test; ctx.n_ctx = tokens per chunk */
    int chunks;                 /* first N chunks (default 0 = all; more than the text has = all) */
    int compare;                /* -1 = when the cache is not f16/f16 without sinks/recent (default),
                                   0 = no, 1 = yes */
    void (*progress)(void *user, const struct kvc_ppl_progress *p);
    void *user;
};
struct kvc_ppl_result {
    int ctx, chunks, n_chunks_available, n_tokens_text;
    long n_scored;              /* tokens scored = chunks * (ctx - ctx/2 - 1) */
    double ppl, ppl_stderr;
    int compared;               /* 1: the fields below are set */
    double ppl_base, ppl_change_pct, kld_mean, kld_stderr, kld_p99, top1_agree;
    struct kvc_kv_info kv;
    double seconds;
};
KVC_API struct kvc_ppl_params kvc_ppl_default_params(void);
KVC_API kvc_status kvc_perplexity(const kvc_model *m, const char *text, size_t len,
                                  const struct kvc_ppl_params *p, struct kvc_ppl_result *r,
                                  kvc_error *err);
/* The JSON object `kvcodec ppl --json` prints (one line, no newline), malloc'ed: kvc_free it.
 * model and file are the names to report. */
KVC_API char *kvc_ppl_json(const struct kvc_ppl_result *r, const char *model, const char *file);

/* Pass-key retrieval: prompts of about ctx.n_ctx tokens (task, haystack with the key line
 * at a depth fraction, question) in kvref's training format, greedy decode of n_gen tokens;
 * a trial succeeds when the generated text contains the 5-digit key. */
#define KVC_PASSKEY_MAX_DEPTHS 64
struct kvc_passkey_progress {
    int depth_index, trial;     /* trial 0..trials-1 at depths[depth_index] */
    double depth;
    int key, n_prompt, ok;
    const char *generated;      /* the decoded text of this trial */
    int depth_correct;          /* correct so far at this depth */
    int depth_done;             /* 1 after the last trial of this depth */
    double seconds;             /* since the start */
    int haystack_tokens;
    const struct kvc_kv_info *kv;
};
struct kvc_passkey_params {
    struct kvc_ctx_params ctx;  /* ctx.n_ctx = prompt + generated tokens */
    int trials;                 /* per depth (default 10) */
    int n_depths;               /* default 3: 0.1, 0.5, 0.9 */
    double depths[KVC_PASSKEY_MAX_DEPTHS];
    const char *filler_text;    /* NULL: repeated filler (default); else book haystacks cut
                                   from this text at random offsets */
    size_t filler_len;
    int n_gen;                  /* tokens generated greedily (default 8) */
    uint64_t seed;              /* keys and book offsets (default 1234) */
    void (*progress)(void *user, const struct kvc_passkey_progress *p);
    void *user;
};
struct kvc_passkey_result {
    int ctx, n_gen, trials, haystack_tokens, books, n_ctx_train;
    uint64_t seed;
    int correct, total;
    double accuracy;
    int n_depths;
    double depths[KVC_PASSKEY_MAX_DEPTHS];
    int depth_correct[KVC_PASSKEY_MAX_DEPTHS];
    struct kvc_kv_info kv;
    double seconds;
};
KVC_API struct kvc_passkey_params kvc_passkey_default_params(void);
KVC_API kvc_status kvc_passkey(const kvc_model *m, const struct kvc_passkey_params *p,
                               struct kvc_passkey_result *r, kvc_error *err);
/* The JSON object `kvcodec passkey --json` prints, malloc'ed (kvc_free); filler_file may be NULL. */
KVC_API char *kvc_passkey_json(const struct kvc_passkey_result *r, const char *model,
                               const char *filler_file);

/* Calibration for the pca codec (and presets): the text tokenized with BOS, chunks of n_ctx
 * tokens (BOS first when the vocabulary adds BOS, as kvc_perplexity's chunks) run through an f16 cache while an observer gathers float64 statistics of
 * keys before / after RoPE and values per (layer, KV head); the fitted bases and quantizer
 * steps are written to the calibration file (GGUF) at out_path, which --kv-calib reads. The
 * text must be a calibration text: names of the evaluation files (wikitext-2-test.raw,
 * books-valid.txt, tinystories-sample.txt) as text_name are refused (KVC_ERR_ARG). */
struct kvc_calibrate_progress {
    int64_t done, total;        /* tokens run so far (0: tokenized, before the run), tokens to run */
    int64_t n_tokens_text;      /* tokens of the text (BOS included) */
    double seconds;             /* since the start */
};
struct kvc_calibrate_params {
    int n_ctx;                  /* chunk length (default 2048) */
    int n_batch;                /* tokens per forward call (default 512) */
    int n_threads;              /* default 2 */
    int64_t max_tokens;         /* tokens to run (default 131072; fewer when the text is shorter) */
    int sample_rows;            /* rows kept per slot to fit quantizer steps (default 4096) */
    int metric;                 /* attention metric for keys (bit 0) and values (bit 1); 3 =
                                   attn (default), 0 = plain PCA */
    const char *text_name;      /* recorded in the file (default NULL: "") */
    void (*progress)(void *user, const struct kvc_calibrate_progress *p);
    void *user;
};
struct kvc_calibrate_result {
    int64_t n_tokens_text;      /* tokens of the text (BOS included) */
    int64_t n_tokens;           /* tokens run */
    int n_ctx, n_layer, n_head_kv, head_dim, metric, sample_rows;
    double seconds;
};
KVC_API struct kvc_calibrate_params kvc_calibrate_default_params(void);
KVC_API kvc_status kvc_calibrate(const kvc_model *m, const char *text, size_t len, const char *out_path,
                                 const struct kvc_calibrate_params *p, struct kvc_calibrate_result *r,
                                 kvc_error *err);
/* ---- speed bench (src/eval/bench.c): `kvcodec bench` ----
 * Prefill (ppN: one batch of pp tokens) and decode (tgN: tg tokens one at a time) speed at
 * several cache depths for one or several K/V codec pairs side by side. Each pair's context
 * is filled once (untimed) to the largest depth, by real prefill of random tokens or
 * synthetically; depths are timed from the largest down, each test starting from the cache
 * truncated to exactly the depth; repetitions interleave the pairs. */
#define KVC_BENCH_MAX_PAIRS 16
#define KVC_BENCH_MAX_DEPTHS 32
struct kvc_bench_pair {
    char k[KVC_SPEC_MAX], v[KVC_SPEC_MAX]; /* K / V specs (the result holds the resolved specs) */
    char preset[256];           /* "" or a KV preset file (then k, v are "preset") */
};
enum kvc_bench_event {
    KVC_BENCH_START = 0,        /* checks and warm-up done, about to fill */
    KVC_BENCH_FILL = 1,         /* real fill under way: done / total positions */
    KVC_BENCH_FILL_DONE = 2,    /* pair filled (synthetic: fill_prefix real + the rest drawn) */
    KVC_BENCH_TEST = 3,         /* one timed test: rep, depth, is_tg, n_tokens, tps */
};
struct kvc_bench_progress {
    int event;                  /* enum kvc_bench_event */
    int pair;                   /* index into the pairs (-1 for START) */
    const char *kv_k, *kv_v;    /* the pair's resolved specs */
    int done, total;            /* FILL / FILL_DONE: positions */
    int synthetic;              /* FILL_DONE: 1 when filled synthetically */
    int rep, depth, is_tg, n_tokens;
    double tps;                 /* TEST: tokens per second */
    double seconds;             /* FILL*: since the pair's fill began; TEST: since the fills began */
    int n_ctx;                  /* START: the context every pair gets */
};
struct kvc_bench_params {
    struct kvc_ctx_params ctx;  /* shared settings; n_ctx is set by the bench (max depth + pp +
                                   tg), n_batch (the fill batch) raised to pp */
    int n_pairs;                /* 0 (default): one pair, ctx.kv_k / ctx.kv_v */
    struct kvc_bench_pair pairs[KVC_BENCH_MAX_PAIRS];
    int n_depths;               /* default 6: 0, 512, 2048, 4096, 8192, 16384 */
    int depths[KVC_BENCH_MAX_DEPTHS]; /* any order, duplicates dropped */
    int reps, pp, tg;           /* defaults 5, 512, 64 */
    uint64_t seed;              /* random fill tokens (default 1) */
    int fill_synthetic;         /* 0 (default) real prefill, 1 synthetic (hdc-select: real) */
    int fill_prefix;            /* real tokens behind the synthetic statistics (default 512) */
    double bandwidth;           /* bytes/s behind the bound; 0 (default) = measured before
                                   every repetition, median over them */
    void (*progress)(void *user, const struct kvc_bench_progress *p);
    void *user;
};
struct kvc_bench_cell {         /* one (pair, depth) */
    double *pp_tps, *tg_tps;    /* reps figures each */
    double pp_median, pp_sd, tg_median, tg_sd;
    uint64_t peak_rss;          /* VmHWM while the depth was timed (bytes) */
    double bandwidth;           /* bytes/s behind the bound */
    double bytes_per_token;     /* decode reads per token: weights + KV of depth + tg/2 */
    double bound_tps;           /* bandwidth / bytes_per_token */
};
struct kvc_bench_result {
    int n_pairs, n_depths, reps, pp, tg, n_ctx, n_ctx_train, n_threads, fill_prefix;
    int depths[KVC_BENCH_MAX_DEPTHS];                 /* ascending */
    struct kvc_bench_pair pairs[KVC_BENCH_MAX_PAIRS]; /* resolved specs */
    double bits[KVC_BENCH_MAX_PAIRS];                 /* bits per element */
    uint64_t kv_bytes[KVC_BENCH_MAX_PAIRS];           /* the cache allocated for n_ctx */
    double kv_bytes_per_token[KVC_BENCH_MAX_PAIRS];
    int synthetic[KVC_BENCH_MAX_PAIRS];               /* 1: filled synthetically */
    int peak_scoped;            /* 1: peak_rss per depth (clear_refs), 0: process maximum */
    int bandwidth_given;        /* 1: params.bandwidth was used */
    uint64_t max_rss;           /* process peak (bytes) */
    struct kvc_bench_cell *cells; /* n_pairs * n_depths, cell [pair * n_depths + depth] */
};
KVC_API struct kvc_bench_params kvc_bench_default_params(void);
/* Runs the bench; r is filled (free it with kvc_bench_result_free, also after an error). A
 * bad codec spec fails with KVC_ERR_ARG before any timing. */
KVC_API kvc_status kvc_bench(const kvc_model *m, const struct kvc_bench_params *p,
                             struct kvc_bench_result *r, kvc_error *err);
KVC_API void kvc_bench_result_free(struct kvc_bench_result *r);

/* ---- memory plan (src/plan.c): `kvcodec plan`'s model of a context's memory: weights as
 * mapped + the forward pass's buffers (sizes from the code that allocates them) + the KV cache
 * at the codec pair's bytes per token, read from a tiny context of that pair. ---- */
#define KVC_PLAN_MAX_CTX (1 << 24) /* the engine's context limit (kvc_ctx_create) */
struct kvc_plan_params {
    struct kvc_ctx_params ctx;  /* codecs (kv_k, kv_v, sinks, recent, calib, preset), n_batch and
                                   n_threads the buffers are sized for; ctx.n_ctx > 0: the context
                                   to predict the peak at (default 0 = none) */
    uint64_t reserve_bytes;     /* the process itself: code, libraries, stacks (default 16 MiB) */
    uint64_t ram_bytes;         /* > 0: find the longest context in this budget (default 0) */
};
struct kvc_plan_result {        /* bytes as doubles: bytes per token need not be whole */
    double bits_k, bits_v;      /* bits per element of the codecs */
    double kv_bytes_per_token;  /* the pair's, all layers, K and V */
    double kv_bytes_per_token_f16;
    double kv_fixed_bytes;      /* sinks' and recent rows' extra over the codec (window-codec rows) */
    double kv_bytes_trained_ctx;/* KV at the model's trained context */
    int n_ctx_train;
    double weights_bytes;       /* tensor data, memory-mapped */
    double overhead_fixed_bytes;/* buffers that do not grow with the context, reserve included */
    double overhead_per_token_bytes; /* buffer bytes per context position (attention scores) */
    /* ctx.n_ctx > 0: */
    double overhead_bytes_at_ctx, kv_bytes_at_ctx, predicted_peak_bytes;
    /* ram_bytes > 0: */
    int64_t max_context;        /* 0 when not even the sinks and recent rows + 1 fit */
    int capped_at_engine_limit; /* max_context was cut to KVC_PLAN_MAX_CTX */
    int fits_trained_ctx;       /* max_context >= n_ctx_train */
    double overhead_bytes_at_max, kv_bytes_at_max;
};
KVC_API struct kvc_plan_params kvc_plan_default_params(void);
/* KVC_ERR_ARG for a bad codec spec or limits; the status of kvc_ctx_create otherwise. */
KVC_API kvc_status kvc_plan_memory(const kvc_model *m, const struct kvc_plan_params *p, struct kvc_plan_result *r,
                                   kvc_error *err);

#ifdef __cplusplus
}
#endif
#endif
