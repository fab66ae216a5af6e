/* tokenizer.c - the part of the tokenizer common to both families: the vocabulary from GGUF
 * metadata (tokens, types, special ids, add-BOS/EOS, EOT and the end-of-generation set by
 * llama.cpp's rules), a text->id hash table, the split of special tokens out of the text
 * (user-defined tokens always, control and unknown ones when parse_special is set, longest
 * first, as llama.cpp's tokenizer_st_partition), dispatch of the remaining fragments to the
 * SPM or BPE encoder, and token pieces. As in llama.cpp, when two tokens have the same text
 * the later id wins. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "tokenizer_internal.h"
#include "util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hash table: piece bytes -> id ---- */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

int32_t tok_lookup(const struct kvc_tokenizer *t, const char *p, size_t n) {
    if (n == 0 || n > t->max_len) return -1;
    for (uint64_t i = hash_bytes(p, n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->slot[i];
        if (id < 0) return -1;
        if (t->text[id].n == n && memcmp(t->text[id].p, p, n) == 0) return id;
    }
}

static void insert(struct kvc_tokenizer *t, int32_t id) {
    const struct gguf_str *s = &t->text[id];
    for (uint64_t i = hash_bytes(s->p, s->n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t o = t->slot[i];
        if (o < 0 || (t->text[o].n == s->n && memcmp(t->text[o].p, s->p, s->n) == 0)) {
            t->slot[i] = id; /* a later duplicate replaces the earlier id, as in llama.cpp */
            return;
        }
    }
}

int tok_push(struct idvec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *nv = realloc(o->v, nc * sizeof *nv);
        if (!nv) return -1;
        o->v = nv;
        o->cap = nc;
    }
    o->v[o->n++] = id;
    return 0;
}

/* ---- loading ---- */

static kvc_status opt_bool(const struct gguf_file *f, const char *key, int *v, kvc_error *err) {
    if (!gguf_find(f, key)) return KVC_OK; /* keep the default */
    return gguf_get_bool(f, key, v, err);
}

/* An optional token id: absent keeps *v; UINT32_MAX (written by some converters) means none. */
static kvc_status opt_id(const struct gguf_file *f, const char *key, int n_vocab, int *v,
                         kvc_error *err) {
    if (!gguf_find(f, key)) return KVC_OK;
    uint32_t u;
    kvc_status st = gguf_get_u32(f, key, &u, err);
    if (st) return st;
    if (u == UINT32_MAX) {
        *v = -1;
        return KVC_OK;
    }
    if (u >= (uint32_t)n_vocab)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' = %u is outside the vocabulary (0..%d)",
                        f->path, key, u, n_vocab - 1);
    *v = (int)u;
    return KVC_OK;
}

/* The id of the first of the texts (in list order) that is a token, -1 if none. */
static int find_text(const struct kvc_tokenizer *t, const char *const *texts) {
    for (int i = 0; texts[i]; i++) {
        int32_t id = tok_lookup(t, texts[i], strlen(texts[i]));
        if (id >= 0) return id;
    }
    return -1;
}

struct len_key {
    uint64_t len;
    int32_t id;
};
static int cmp_len(const void *a, const void *b) {
    const struct len_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest first */
    return x->id < y->id ? -1 : x->id > y->id;
}
static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* End-of-generation set and EOT/EOM by llama.cpp's rules: the metadata ids, else tokens found
 * by their text (llama.cpp also marks those control tokens). Its choice among several EOT
 * texts depends on hash order; here the first of the list that exists wins. */
static kvc_status special_sets(struct kvc_tokenizer *t, const struct gguf_file *f, kvc_error *err) {
    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>", "<EOT>",
                                            "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                            NULL};
    static const char *const eom_texts[] = {"<|eom_id|>", NULL};
    static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<PAD>", NULL};
    static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", NULL};
    static const char *const fim_sep[] = {"<|file_sep|>", NULL};
    static const char *const eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>", "<|eom_id|>", "<EOT>", NULL};
    kvc_status st;
    int pad = -1, rep = -1, sep = -1;
    t->eot = t->eom = -1;
    if ((st = opt_id(f, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err)) ||
        (st = opt_id(f, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom, err)) ||
        (st = opt_id(f, "tokenizer.ggml.fim_pad_token_id", t->n_vocab, &pad, err)) ||
        (st = opt_id(f, "tokenizer.ggml.fim_rep_token_id", t->n_vocab, &rep, err)) ||
        (st = opt_id(f, "tokenizer.ggml.fim_sep_token_id", t->n_vocab, &sep, err)))
        return st;
    int found[5];
    if (t->eot < 0 && (t->eot = find_text(t, eot_texts)) >= 0) found[0] = t->eot; else found[0] = -1;
    if (t->eom < 0 && (t->eom = find_text(t, eom_texts)) >= 0) found[1] = t->eom; else found[1] = -1;
    if (pad < 0 && (pad = find_text(t, fim_pad)) >= 0) found[2] = pad; else found[2] = -1;
    if (rep < 0 && (rep = find_text(t, fim_rep)) >= 0) found[3] = rep; else found[3] = -1;
    if (sep < 0 && (sep = find_text(t, fim_sep)) >= 0) found[4] = sep; else found[4] = -1;
    for (int i = 0; i < 5; i++)
        if (found[i] >= 0) t->type[found[i]] = TT_CONTROL;
    int n_txt = 0;
    while (eog_texts[n_txt]) n_txt++;
    t->eog = malloc((size_t)(n_txt + 6) * sizeof *t->eog);
    if (!t->eog) return kvc_fail(err, KVC_ERR_NOMEM, "%s: tokenizer: out of memory", f->path);
    int cand[6] = {t->eos, t->eot, t->eom, pad, rep, sep};
    for (int i = 0; i < 6; i++)
        if (cand[i] >= 0) t->eog[t->n_eog++] = cand[i];
    for (int i = 0; i < n_txt; i++) {
        int32_t id = tok_lookup(t, eog_texts[i], strlen(eog_texts[i]));
        if (id < 0) continue;
        t->type[id] = TT_CONTROL;
        t->eog[t->n_eog++] = id;
    }
    qsort(t->eog, (size_t)t->n_eog, sizeof *t->eog, cmp_i32);
    int k = 0;
    for (int i = 0; i < t->n_eog; i++)
        if (k == 0 || t->eog[k - 1] != t->eog[i]) t->eog[k++] = t->eog[i];
    t->n_eog = k;
    return KVC_OK;
}

/* llama.cpp's per-model token attributes (its GGUFs carry none): Phi-3 (general.name contains
 * "phi-3" or "phi3", any case) strips the whitespace after its special tokens and </s>, but
 * not after <unk>, <s>, <|endoftext|>; jina-v2-de/es/code strip the whitespace before <mask>. */
static kvc_status strip_attrs(struct kvc_tokenizer *t, const struct gguf_file *f, kvc_error *err) {
    char name[128] = "";
    const struct gguf_kv *kv = gguf_find(f, "general.name");
    if (kv && kv->type == GGUF_STRING) {
        struct gguf_str s;
        if (gguf_get_str(f, "general.name", &s, NULL) == KVC_OK) {
            size_t k = s.n < sizeof name - 1 ? (size_t)s.n : sizeof name - 1;
            for (size_t i = 0; i < k; i++) name[i] = (char)((s.p[i] >= 'A' && s.p[i] <= 'Z') ? s.p[i] + 32 : s.p[i]);
            name[k] = 0;
        }
    }
    int phi3 = strstr(name, "phi-3") || strstr(name, "phi3");
    int jina = !strcmp(t->pre, "jina-v2-de") || !strcmp(t->pre, "jina-v2-es") || !strcmp(t->pre, "jina-v2-code");
    if (!phi3 && !jina) return KVC_OK;
    t->strip = calloc((size_t)t->n_vocab, 1);
    if (!t->strip) return kvc_fail(err, KVC_ERR_NOMEM, "%s: tokenizer: out of memory", f->path);
    if (jina) {
        int32_t id = tok_lookup(t, "<mask>", 6);
        if (id >= 0) t->strip[id] |= 1;
        return KVC_OK;
    }
    for (int i = 0; i < t->n_vocab; i++)
        if (t->type[i] == TT_CONTROL || t->type[i] == TT_USER || t->type[i] == TT_UNKNOWN) t->strip[i] |= 2;
    static const char *const on[] = {"</s>"}, *const off[] = {"<unk>", "<s>", "<|endoftext|>"};
    int32_t id = tok_lookup(t, on[0], strlen(on[0]));
    if (id >= 0) t->strip[id] |= 2;
    for (int i = 0; i < 3; i++)
        if ((id = tok_lookup(t, off[i], strlen(off[i]))) >= 0) t->strip[id] &= (uint8_t)~2;
    return KVC_OK;
}

void kvc_tokenizer_free(struct kvc_tokenizer *t) {
    if (!t) return;
    bpe_free(t->bpe);
    free(t->score);
    free(t->type);
    free(t->slot);
    free(t->special);
    free(t->eog);
    free(t->strip);
    free(t);
}

static void show(struct gguf_str s, char *out, size_t cap) {
    size_t n = s.n < cap - 4 ? (size_t)s.n : cap - 4;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        out[i] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    strcpy(out + n, s.n > n ? "..." : "");
}

kvc_status kvc_tokenizer_load(const struct gguf_file *f, struct kvc_tokenizer **out,
                              kvc_error *err) {
    *out = NULL;
    kvc_status st;
    struct gguf_str model, pre = {NULL, 0};
    char shown[64];
    if ((st = gguf_get_str(f, "tokenizer.ggml.model", &model, err))) return st;
    int kind;
    if (gguf_str_eq(model, "llama")) kind = KVC_TOK_SPM;
    else if (gguf_str_eq(model, "gpt2")) kind = KVC_TOK_BPE;
    else {
        show(model, shown, 52);
        return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                        "%s: metadata 'tokenizer.ggml.model' = '%s' is not supported (supported: llama "
                        "(SentencePiece), gpt2 (byte-level BPE))", f->path, shown);
    }
    if (kind == KVC_TOK_BPE && gguf_find(f, "tokenizer.ggml.pre") &&
        (st = gguf_get_str(f, "tokenizer.ggml.pre", &pre, err)))
        return st;
    const struct gguf_kv *toks, *scores = NULL, *types = NULL;
    if ((st = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &toks, err))) return st;
    if (toks->arr_n == 0 || toks->arr_n > (uint64_t)(INT32_MAX / 4))
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata 'tokenizer.ggml.tokens' has %llu entries (need 1..%d)",
                        f->path, (unsigned long long)toks->arr_n, INT32_MAX / 4);
    int n = (int)toks->arr_n;
    /* scores and token types are optional in llama.cpp (0.0 and normal); when present their
     * lengths must match */
    if (gguf_find(f, "tokenizer.ggml.scores")) {
        if ((st = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_F32, &scores, err))) return st;
        if (scores->arr_n != toks->arr_n)
            return kvc_fail(err, KVC_ERR_FORMAT,
                            "%s: metadata 'tokenizer.ggml.scores' has %llu entries, 'tokenizer.ggml.tokens' has %llu",
                            f->path, (unsigned long long)scores->arr_n, (unsigned long long)toks->arr_n);
    }
    if (gguf_find(f, "tokenizer.ggml.token_type")) {
        if ((st = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_I32, &types, err))) return st;
        if (types->arr_n != toks->arr_n)
            return kvc_fail(err, KVC_ERR_FORMAT,
                            "%s: metadata 'tokenizer.ggml.token_type' has %llu entries, 'tokenizer.ggml.tokens' has %llu",
                            f->path, (unsigned long long)types->arr_n, (unsigned long long)toks->arr_n);
    }

    struct kvc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return kvc_fail(err, KVC_ERR_NOMEM, "%s: tokenizer: out of memory", f->path);
    t->kind = kind;
    t->n_vocab = n;
    t->text = toks->strs;
    /* llama.cpp's defaults: SPM bos 1 eos 2 unk 0, add BOS, space prefix; BPE bos = eos = 11
     * (when the vocabulary has it), no unk, no space prefix, add BOS per pre-tokenizer */
    t->bos = kind == KVC_TOK_SPM ? 1 : 11;
    t->eos = kind == KVC_TOK_SPM ? 2 : 11;
    t->unk = kind == KVC_TOK_SPM ? 0 : -1;
    if (t->bos >= n) t->bos = -1;
    if (t->eos >= n) t->eos = -1;
    if (t->unk >= n) t->unk = -1;
    t->add_bos = kind == KVC_TOK_SPM;
    t->add_eos = 0;
    t->add_space_prefix = kind == KVC_TOK_SPM;
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap <<= 1;
    t->mask = cap - 1;
    t->score = malloc((size_t)n * sizeof *t->score);
    t->type = malloc((size_t)n);
    t->slot = malloc((size_t)cap * sizeof *t->slot);
    if (!t->score || !t->type || !t->slot) {
        kvc_tokenizer_free(t);
        return kvc_fail(err, KVC_ERR_NOMEM, "%s: tokenizer: out of memory for %d tokens", f->path, n);
    }
    memset(t->slot, 0xff, (size_t)cap * sizeof *t->slot);
    for (int i = 0; i < n; i++) {
        t->score[i] = scores ? (float)gguf_arr_num(scores, (uint64_t)i) : 0.0f;
        double ty = types ? gguf_arr_num(types, (uint64_t)i) : TT_NORMAL;
        if (!(ty >= TT_UNDEFINED && ty <= TT_BYTE)) {
            kvc_tokenizer_free(t);
            return kvc_fail(err, KVC_ERR_FORMAT,
                            "%s: metadata 'tokenizer.ggml.token_type'[%d] = %.0f is not a token type (0..6)",
                            f->path, i, ty);
        }
        t->type[i] = (uint8_t)ty;
        if (t->text[i].n == 0) continue; /* llama.cpp renames empty pieces: never matched */
        if (t->text[i].n > t->max_len) t->max_len = t->text[i].n;
        insert(t, i);
    }
    if (kind == KVC_TOK_BPE) {
        if (!pre.p) {
            fprintf(stderr, "%s: warning: missing tokenizer.ggml.pre, using the 'default' pre-tokenizer "
                            "(as llama.cpp; generation quality may be degraded)\n", f->path);
            snprintf(t->pre, sizeof t->pre, "default");
        } else if (pre.n >= sizeof t->pre || memchr(pre.p, 0, pre.n)) {
            char list[640];
            show(pre, shown, 52);
            kvc_tokenizer_free(t);
            return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                            "%s: metadata 'tokenizer.ggml.pre' = '%s' is not supported (supported: %s)",
                            f->path, shown, bpe_pre_list(list, sizeof list));
        } else {
            memcpy(t->pre, pre.p, pre.n);
            t->pre[pre.n] = 0;
        }
        if ((st = bpe_load(t, f, t->pre, &t->add_bos, err))) {
            kvc_tokenizer_free(t);
            return st;
        }
    } else {
        snprintf(t->pre, sizeof t->pre, "spm");
    }
    if ((st = opt_id(f, "tokenizer.ggml.bos_token_id", n, &t->bos, err)) ||
        (st = opt_id(f, "tokenizer.ggml.eos_token_id", n, &t->eos, err)) ||
        (st = opt_id(f, "tokenizer.ggml.unknown_token_id", n, &t->unk, err)) ||
        (st = opt_bool(f, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) ||
        (st = opt_bool(f, "tokenizer.ggml.add_eos_token", &t->add_eos, err)) ||
        (st = opt_bool(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err)) ||
        (st = special_sets(t, f, err))) {
        kvc_tokenizer_free(t);
        return st;
    }
    if (kind == KVC_TOK_SPM) spm_init(t);
    if ((st = strip_attrs(t, f, err))) {
        kvc_tokenizer_free(t);
        return st;
    }
    /* special tokens that can be split out of the text, longest first */
    for (int i = 0; i < n; i++)
        if (t->text[i].n && (t->type[i] == TT_CONTROL || t->type[i] == TT_USER || t->type[i] == TT_UNKNOWN))
            t->n_special++;
    if (t->n_special) {
        struct len_key *keys = malloc((size_t)t->n_special * sizeof *keys);
        t->special = malloc((size_t)t->n_special * sizeof *t->special);
        if (!t->special || !keys) {
            free(keys);
            kvc_tokenizer_free(t);
            return kvc_fail(err, KVC_ERR_NOMEM, "%s: tokenizer: out of memory", f->path);
        }
        int k = 0;
        for (int i = 0; i < n; i++)
            if (t->text[i].n && (t->type[i] == TT_CONTROL || t->type[i] == TT_USER || t->type[i] == TT_UNKNOWN))
                keys[k++] = (struct len_key){t->text[i].n, i};
        qsort(keys, (size_t)k, sizeof *keys, cmp_len);
        for (int i = 0; i < k; i++) t->special[i] = keys[i].id;
        free(keys);
    }
    *out = t;
    return KVC_OK;
}

int kvc_tokenizer_n_vocab(const struct kvc_tokenizer *t) { return t->n_vocab; }
int kvc_tokenizer_bos(const struct kvc_tokenizer *t) { return t->bos; }
int kvc_tokenizer_eos(const struct kvc_tokenizer *t) { return t->eos; }
int kvc_tokenizer_eot(const struct kvc_tokenizer *t) { return t->eot; }
int kvc_tokenizer_add_bos(const struct kvc_tokenizer *t) { return t->add_bos && t->bos >= 0; }
const char *kvc_tokenizer_kind(const struct kvc_tokenizer *t) { return t->kind == KVC_TOK_BPE ? "bpe" : "spm"; }
const char *kvc_tokenizer_pre(const struct kvc_tokenizer *t) { return t->pre; }

int kvc_tokenizer_is_eog(const struct kvc_tokenizer *t, int32_t id) {
    int lo = 0, hi = t->n_eog;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (t->eog[mid] == id) return 1;
        if (t->eog[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* ---- encoding ---- */

/* A piece of the input: raw text [off, off+len) or a special token. */
struct frag {
    size_t off, len;
    int32_t id; /* -1 for raw text */
};

/* Split raw fragments on special tokens (longest first, leftmost non-overlapping occurrences
 * within each fragment), as llama.cpp's tokenizer_st_partition: each token rebuilds the list
 * in one pass. A token with lstrip / rstrip (t->strip) drops the whitespace before / after
 * it. */
static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static int partition(const struct kvc_tokenizer *t, const char *text, size_t len, int parse_special,
                     struct frag **fv, size_t *fn) {
    size_t n = 1, cap = 16;
    struct frag *v = malloc(cap * sizeof *v), *nv = NULL;
    if (!v) return -1;
    v[0] = (struct frag){0, len, -1};
    for (int u = 0; u < t->n_special; u++) {
        int32_t id = t->special[u];
        if (!parse_special && t->type[id] != TT_USER) continue;
        const char *tp = t->text[id].p;
        size_t tn = (size_t)t->text[id].n;
        int lstrip = t->strip && (t->strip[id] & 1), rstrip = t->strip && (t->strip[id] & 2);
        size_t m = 0, ncap = n + 16;
        nv = malloc(ncap * sizeof *nv);
        if (!nv) goto fail;
        for (size_t k = 0; k < n; k++) {
            size_t off = v[k].off, rem = v[k].len;
            const char *hit;
            while (v[k].id < 0 && rem >= tn && (hit = memmem(text + off, rem, tp, tn))) {
                size_t pre = (size_t)(hit - (text + off));
                size_t keep = pre;
                if (lstrip)
                    while (keep > 0 && is_space(text[off + keep - 1])) keep--;
                if (m + 2 > ncap) {
                    ncap *= 2;
                    struct frag *g = realloc(nv, ncap * sizeof *nv);
                    if (!g) goto fail;
                    nv = g;
                }
                if (keep) nv[m++] = (struct frag){off, keep, -1};
                nv[m++] = (struct frag){off + pre, tn, id};
                off += pre + tn;
                rem -= pre + tn;
                if (rstrip)
                    while (rem > 0 && is_space(text[off])) off++, rem--;
            }
            if (rem > 0 || v[k].id >= 0) {
                if (m + 1 > ncap) {
                    ncap *= 2;
                    struct frag *g = realloc(nv, ncap * sizeof *nv);
                    if (!g) goto fail;
                    nv = g;
                }
                nv[m++] = v[k].id >= 0 ? v[k] : (struct frag){off, rem, -1};
            }
        }
        free(v);
        v = nv;
        nv = NULL;
        n = m;
    }
    *fv = v;
    *fn = n;
    return 0;
fail:
    free(v);
    free(nv);
    return -1;
}

kvc_status kvc_tokenizer_tokenize(const struct kvc_tokenizer *t, const char *text, size_t len,
                                  int add_special, int parse_special, int32_t **ids, int *n_ids,
                                  kvc_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return kvc_fail(err, KVC_ERR_ARG, "tokenize: text is NULL with length %zu", len);
    if (len > (size_t)INT_MAX / 4)
        return kvc_fail(err, KVC_ERR_RANGE, "tokenize: text of %zu bytes exceeds the limit of %d bytes",
                        len, INT_MAX / 4);
    struct idvec o = {0};
    struct frag *fv = NULL;
    size_t fn = 0;
    kvc_status st = KVC_OK;
    int fail = 0;
    /* llama.cpp's add_special: BOS when asked and the vocabulary wants it (and EOS likewise) */
    if (add_special && t->add_bos && t->bos >= 0 && tok_push(&o, t->bos)) fail = 1;
    if (!fail && len > 0 && partition(t, text, len, parse_special, &fv, &fn)) fail = 1;
    struct bpe_scratch *sc = NULL;
    if (!fail && fn > 0 && t->kind == KVC_TOK_BPE && !(sc = bpe_scratch_create())) fail = 1;
    int prev_special = 1;
    for (size_t k = 0; !fail && !st && k < fn; k++) {
        if (fv[k].id >= 0) {
            if (tok_push(&o, fv[k].id)) fail = 1;
            prev_special = 1;
            continue;
        }
        if (t->kind == KVC_TOK_BPE) {
            st = bpe_encode(t, sc, text + fv[k].off, fv[k].len, &o, err);
        } else if (spm_encode(t, text + fv[k].off, fv[k].len, t->add_space_prefix && prev_special, &o)) {
            fail = 1;
        }
        prev_special = 0;
    }
    if (!fail && !st && add_special && t->add_eos && t->eos >= 0 && tok_push(&o, t->eos)) fail = 1;
    if (!fail && !st && o.n > (size_t)INT_MAX) fail = 2;
    free(fv);
    bpe_scratch_free(sc);
    if (fail || st) {
        free(o.v);
        if (st) return st;
        return fail == 2 ? kvc_fail(err, KVC_ERR_RANGE, "tokenize: more than %d tokens", INT_MAX)
                         : kvc_fail(err, KVC_ERR_NOMEM, "tokenize: out of memory (text of %zu bytes)", len);
    }
    if (!o.v) { /* no ids: return a valid empty allocation */
        o.v = malloc(sizeof *o.v);
        if (!o.v) return kvc_fail(err, KVC_ERR_NOMEM, "tokenize: out of memory");
    }
    *ids = o.v;
    *n_ids = (int)o.n;
    return KVC_OK;
}

kvc_status kvc_tokenizer_encode(const struct kvc_tokenizer *t, const char *text, size_t len,
                                int add_bos, int32_t **ids, int *n_ids, kvc_error *err) {
    return kvc_tokenizer_tokenize(t, text, len, add_bos, 0, ids, n_ids, err);
}

/* ---- pieces ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int copy_text(const struct gguf_str *s, char *buf, int cap) {
    int w = s->n < (uint64_t)cap ? (int)s->n : cap;
    memcpy(buf, s->p, (size_t)w);
    return w;
}

int kvc_tokenizer_piece_ex(const struct kvc_tokenizer *t, int32_t id, int special, char *buf,
                           int cap) {
    if (id < 0 || id >= t->n_vocab || cap <= 0) return 0;
    const struct gguf_str *s = &t->text[id];
    int ty = t->type[id];
    if (ty == TT_CONTROL || ty == TT_UNKNOWN) return special ? copy_text(s, buf, cap) : 0;
    if (ty == TT_USER) return copy_text(s, buf, cap);
    if (t->kind == KVC_TOK_BPE) return ty == TT_NORMAL ? bpe_piece(t, id, buf, cap) : 0;
    int w = 0;
    switch (ty) {
    case TT_NORMAL: /* "▁" -> ' ' */
        for (uint64_t i = 0; i < s->n && w < cap;) {
            if (i + 3 <= s->n && memcmp(s->p + i, "\xe2\x96\x81", 3) == 0) {
                buf[w++] = ' ';
                i += 3;
            } else {
                buf[w++] = s->p[i++];
            }
        }
        return w;
    case TT_BYTE: { /* "<0xNN>" -> that byte */
        if (s->n == 6 && s->p[0] == '<' && s->p[5] == '>') {
            int hi = hexval(s->p[3]), lo = hexval(s->p[4]);
            if (hi >= 0 && lo >= 0) {
                buf[0] = (char)(hi * 16 + lo);
                return 1;
            }
        }
        if (s->n == 1) { /* a byte fallback token written as the byte itself */
            buf[0] = s->p[0];
            return 1;
        }
        return 0;
    }
    default: /* unused, undefined: nothing to print */
        return 0;
    }
}

int kvc_tokenizer_piece(const struct kvc_tokenizer *t, int32_t id, char *buf, int cap) {
    return kvc_tokenizer_piece_ex(t, id, 0, buf, cap);
}
