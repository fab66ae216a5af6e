/* tokenizer.h - SentencePiece-style tokenizer for GGUF `tokenizer.ggml.model = "llama"`:
 * vocabulary, scores and token types from metadata; space prefix, "▁" for spaces,
 * highest-score-first merges, byte fallback <0xNN>. Ids equal llama.cpp's. */
#ifndef KVC_TOKENIZER_H
#define KVC_TOKENIZER_H

#include "gguf.h"
#include "kvcodec.h"
#include <stdint.h>

struct kvc_tokenizer;

/* Build from the file's metadata (the file must outlive the tokenizer: strings point into
 * it). Missing/mismatched arrays, model other than "llama": an error naming the field. */
kvc_status kvc_tokenizer_load(const struct gguf_file *f, struct kvc_tokenizer **out,
                              kvc_error *err);
void kvc_tokenizer_free(struct kvc_tokenizer *t); /* NULL is a no-op */

int kvc_tokenizer_n_vocab(const struct kvc_tokenizer *t);
int kvc_tokenizer_bos(const struct kvc_tokenizer *t);
int kvc_tokenizer_eos(const struct kvc_tokenizer *t);

/* Encode text (len bytes, any bytes; invalid UTF-8 falls back to byte tokens) into a malloc'ed
 * array of ids, BOS first when add_bos. */
kvc_status kvc_tokenizer_encode(const struct kvc_tokenizer *t, const char *text, size_t len,
                                int add_bos, int32_t **ids, int *n_ids, kvc_error *err);

/* Printable text of one token (byte tokens -> that byte; "▁" -> " "; control tokens such
 * as <s> -> empty). Returns bytes written to buf (at most cap). */
int kvc_tokenizer_piece(const struct kvc_tokenizer *t, int32_t id, char *buf, int cap);

#endif
