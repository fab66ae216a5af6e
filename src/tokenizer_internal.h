/* tokenizer_internal.h - what the tokenizer files share: the tokenizer struct (vocabulary,
 * special ids, text->id hash), the growing id vector, and the entry points of the two
 * families: SentencePiece (tokenizer_spm.c) and byte-level BPE (tokenizer_bpe.c). The common
 * part (tokenizer.c) loads the vocabulary, splits special tokens out of the text and
 * dispatches each remaining fragment to the family's encoder. */
#ifndef KVC_TOKENIZER_INTERNAL_H
#define KVC_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

/* GGUF token types (tokenizer.ggml.token_type), as llama.cpp numbers them */
enum { TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5,
       TT_BYTE = 6 };

enum { KVC_TOK_SPM = 0, KVC_TOK_BPE = 1 };

struct kvc_bpe; /* tokenizer_bpe.c */

struct kvc_tokenizer {
    int kind;                    /* KVC_TOK_SPM or KVC_TOK_BPE */
    int n_vocab;
    const struct gguf_str *text; /* n_vocab pieces (owned by the GGUF file) */
    float *score;                /* (n_vocab) SPM merge scores */
    uint8_t *type;               /* (n_vocab) TT_* */
    int bos, eos, unk, eot, eom; /* -1 = none */
    int add_bos, add_eos, add_space_prefix;
    int32_t *eog;                /* ids that end a generation (sorted) */
    int n_eog;
    uint64_t max_len;            /* longest piece in bytes */
    int32_t *slot;               /* hash table of ids, -1 = empty */
    uint64_t mask;               /* table size - 1 */
    int32_t *special;            /* control, user-defined and unknown ids, longest text first */
    int n_special;
    uint8_t *strip;              /* NULL, or (n_vocab) bit 0: lstrip, bit 1: rstrip */
    /* SPM */
    int32_t byte_tok[256];       /* id of each byte's fallback token, -1 if none */
    uint8_t barrier[256];        /* 1: an ASCII byte found in no piece longer than one byte */
    /* BPE */
    struct kvc_bpe *bpe;
    char pre[32];                /* pre-tokenizer name (BPE) */
};

struct idvec {
    int32_t *v;
    size_t n, cap;
};
int tok_push(struct idvec *o, int32_t id); /* 0 or -1 (memory) */

/* id of a piece's exact bytes, -1 if none */
int32_t tok_lookup(const struct kvc_tokenizer *t, const char *p, size_t n);

/* SPM: byte-fallback table and barrier bytes (after the hash is built) */
void spm_init(struct kvc_tokenizer *t);
/* Encode one raw text fragment (space prefix added when prefix is set). 0 or -1 (memory). */
int spm_encode(const struct kvc_tokenizer *t, const char *text, size_t len, int prefix,
               struct idvec *o);

/* BPE: merges, byte mapping and pre-tokenizer from the metadata */
kvc_status bpe_load(struct kvc_tokenizer *t, const struct gguf_file *f, const char *pre,
                    int *add_bos_default, kvc_error *err);
void bpe_free(struct kvc_bpe *b);
/* Scratch for the fragments of one call (NULL when out of memory). */
struct bpe_scratch;
struct bpe_scratch *bpe_scratch_create(void);
void bpe_scratch_free(struct bpe_scratch *sc); /* NULL is a no-op */
/* Encode one raw text fragment. KVC_OK, KVC_ERR_NOMEM or KVC_ERR_INTERNAL (regex engine). */
kvc_status bpe_encode(const struct kvc_tokenizer *t, struct bpe_scratch *sc, const char *text, size_t len,
                      struct idvec *o, kvc_error *err);
/* Bytes of a normal BPE token (GPT-2 byte characters mapped back to bytes). */
int bpe_piece(const struct kvc_tokenizer *t, int32_t id, char *buf, int cap);
/* The code point the pre-tokenizer regexes see in place of cp (exposed for tests). */
uint32_t bpe_regex_cp(uint32_t cp);
/* Names of the supported pre-tokenizers, comma-separated, written to buf. */
const char *bpe_pre_list(char *buf, size_t cap);

#endif
