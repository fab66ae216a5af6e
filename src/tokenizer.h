/* tokenizer.h - tokenizers of GGUF vocabularies, ids identical to llama.cpp's:
 * `tokenizer.ggml.model = "llama"` (SentencePiece: scores, "▁" for spaces, byte fallback,
 * tokenizer_spm.c) and `"gpt2"` (byte-level BPE with ranked merges and the regex pre-tokenizer
 * named by tokenizer.ggml.pre, tokenizer_bpe.c). Special tokens, BOS/EOS/EOT and the
 * end-of-generation set come from the metadata (tokenizer.c). */
#ifndef KVC_TOKENIZER_H
#define KVC_TOKENIZER_H

#include "gguf.h"
#include "kvcodec.h"
#include <stdint.h>

struct kvc_tokenizer;

/* the public kvc_vocab: a tokenizer and the GGUF file its strings point into */
struct kvc_vocab {
    struct gguf_file *gguf;
    struct kvc_tokenizer *tok;
};

/* Build from the file's metadata (the file must outlive the tokenizer: strings point into
 * it). Missing/mismatched arrays, unknown model or pre-tokenizer, malformed merges: an error
 * naming the field. A BPE vocabulary without tokenizer.ggml.pre uses "default" and prints a
 * one-line warning on stderr, as llama.cpp does. */
kvc_status kvc_tokenizer_load(const struct gguf_file *f, struct kvc_tokenizer **out,
                              kvc_error *err);
void kvc_tokenizer_free(struct kvc_tokenizer *t); /* NULL is a no-op */

int kvc_tokenizer_n_vocab(const struct kvc_tokenizer *t);
int kvc_tokenizer_bos(const struct kvc_tokenizer *t); /* -1 when none */
int kvc_tokenizer_eos(const struct kvc_tokenizer *t); /* -1 when none */
int kvc_tokenizer_eot(const struct kvc_tokenizer *t); /* -1 when none */
int kvc_tokenizer_add_bos(const struct kvc_tokenizer *t); /* 1 when BOS is prepended */
/* 1 when id ends a generation (EOS, EOT, EOM and the <|eot_id|>/<|im_end|>/... tokens) */
int kvc_tokenizer_is_eog(const struct kvc_tokenizer *t, int32_t id);
/* "spm" or "bpe" and, for BPE, the pre-tokenizer name */
const char *kvc_tokenizer_kind(const struct kvc_tokenizer *t);
const char *kvc_tokenizer_pre(const struct kvc_tokenizer *t);

/* Encode text (len bytes, any bytes) into a malloc'ed array of ids. add_special plays the
 * part of llama.cpp's add_special (BOS first when the vocabulary wants it, EOS last when
 * tokenizer.ggml.add_eos_token says so); parse_special recognises control and unknown tokens
 * written in the text (user-defined tokens are always recognised, as in llama.cpp). */
kvc_status kvc_tokenizer_tokenize(const struct kvc_tokenizer *t, const char *text, size_t len,
                                  int add_special, int parse_special, int32_t **ids, int *n_ids,
                                  kvc_error *err);
/* kvc_tokenizer_tokenize without special-token parsing */
kvc_status kvc_tokenizer_encode(const struct kvc_tokenizer *t, const char *text, size_t len,
                                int add_bos, int32_t **ids, int *n_ids, kvc_error *err);

/* Printable bytes of one token, as llama.cpp's token_to_piece: SPM byte tokens give their
 * byte and "▁" a space, BPE tokens their bytes; control and unknown tokens print their text
 * only when special is set, user-defined ones always. Returns bytes written (at most cap). */
int kvc_tokenizer_piece_ex(const struct kvc_tokenizer *t, int32_t id, int special, char *buf,
                           int cap);
int kvc_tokenizer_piece(const struct kvc_tokenizer *t, int32_t id, char *buf, int cap);

#endif
