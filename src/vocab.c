/* vocab.c - the public vocabulary handle (kvc_vocab): a tokenizer loaded from a GGUF file's
 * metadata alone (vocab-only files, or models whatever their tensors and architecture), or
 * borrowed from a loaded model; tokenize / piece / end-of-generation calls on it. */
#include "tokenizer.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kvc_status kvc_vocab_load(const char *path, kvc_vocab **out, kvc_error *err) {
    *out = NULL;
    struct kvc_vocab *v = calloc(1, sizeof *v);
    if (!v) return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory", path);
    kvc_status st = gguf_open_meta(path, &v->gguf, err);
    if (!st) st = kvc_tokenizer_load(v->gguf, &v->tok, err);
    if (st) {
        kvc_vocab_free(v);
        return st;
    }
    *out = v;
    return KVC_OK;
}

void kvc_vocab_free(kvc_vocab *v) {
    if (!v) return;
    kvc_tokenizer_free(v->tok);
    gguf_close(v->gguf);
    free(v);
}

void kvc_vocab_get_info(const kvc_vocab *v, struct kvc_vocab_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->kind, sizeof out->kind, "%s", kvc_tokenizer_kind(v->tok));
    snprintf(out->pre, sizeof out->pre, "%s", kvc_tokenizer_pre(v->tok));
    out->n_tokens = kvc_tokenizer_n_vocab(v->tok);
    out->bos_id = kvc_tokenizer_bos(v->tok);
    out->eos_id = kvc_tokenizer_eos(v->tok);
    out->eot_id = kvc_tokenizer_eot(v->tok);
    out->add_bos = kvc_tokenizer_add_bos(v->tok);
}

kvc_status kvc_vocab_tokenize(const kvc_vocab *v, const char *text, size_t len, int add_special,
                              int parse_special, int32_t **ids, int *n_ids, kvc_error *err) {
    return kvc_tokenizer_tokenize(v->tok, text, len, add_special, parse_special, ids, n_ids, err);
}

int kvc_vocab_token_to_piece(const kvc_vocab *v, int32_t id, int special, char *buf, int cap) {
    return kvc_tokenizer_piece_ex(v->tok, id, special, buf, cap);
}

int kvc_vocab_is_eog(const kvc_vocab *v, int32_t id) { return kvc_tokenizer_is_eog(v->tok, id); }
