/* tokenizer.c - SentencePiece-style ("llama" vocab) tokenizer from GGUF metadata, matching
 * llama.cpp's SPM tokenizer (build of early 2025) id for id:
 *  - user-defined tokens (type 4) are split out of the text first, longest first (llama.cpp
 *    does this even when special tokens are not parsed; control and unknown tokens are never
 *    matched in text);
 *  - each remaining text fragment gets a leading space when add_space_prefix is set and the
 *    fragment is the first one or follows a token, then every ' ' becomes "▁" (U+2581);
 *  - the fragment is split into UTF-8 characters (length from the lead byte only, so invalid
 *    bytes become one-byte symbols), and the adjacent pair whose concatenation is a vocabulary
 *    piece with the highest score is merged, repeatedly (ties: leftmost pair first), with a
 *    binary heap of candidate pairs and a linked list of symbols;
 *  - each final symbol is emitted as its id, or byte by byte as <0xNN> tokens (or unk) when it
 *    is not a piece.
 * Piece lookups go through an open-addressing hash table over the token strings (which point
 * into the GGUF file). As in llama.cpp, when two tokens have the same text the later id wins.
 * add_bos plays the part of llama.cpp's add_special: BOS is added when it is set and the model's
 * tokenizer.ggml.add_bos_token (default true) allows it, and EOS is appended when it is set and
 * tokenizer.ggml.add_eos_token (default false) asks for it.
 * Speed: runs of symbols separated by "barrier" bytes (see spm_fragment) get their own queue;
 * the result is the same as one queue over the whole text. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, getline, clock_gettime */
#endif
#include "tokenizer.h"
#include "util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

struct kvc_tokenizer {
    int n_vocab;
    const struct gguf_str *text; /* n_vocab pieces (owned by the GGUF file) */
    float *score;
    uint8_t *type;
    int bos, eos, unk;
    int add_bos, add_eos, add_space_prefix;
    uint64_t max_len;            /* longest piece in bytes: longer pairs need no lookup */
    int32_t *slot;               /* hash table of ids, -1 = empty */
    uint64_t mask;               /* table size - 1 */
    int32_t byte_tok[256];       /* id of each byte's fallback token, -1 if none */
    uint8_t barrier[256];        /* 1: an ASCII byte found in no piece longer than one byte */
    int32_t *user;               /* user-defined token ids, longest text first */
    int n_user;
};

/* ---- hash table: piece bytes -> id ---- */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static int32_t lookup(const struct kvc_tokenizer *t, const char *p, size_t n) {
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

/* ---- loading ---- */

static kvc_status opt_bool(const struct gguf_file *f, const char *key, int *v, kvc_error *err) {
    if (!gguf_find(f, key)) return KVC_OK; /* keep the default */
    return gguf_get_bool(f, key, v, err);
}

static kvc_status opt_id(const struct gguf_file *f, const char *key, int n_vocab, int *v,
                         kvc_error *err) {
    if (!gguf_find(f, key)) {
        if (*v >= n_vocab)
            return kvc_fail(err, KVC_ERR_FORMAT,
                            "%s: metadata '%s' is missing and its default %d is outside the vocabulary (0..%d)",
                            f->path, key, *v, n_vocab - 1);
        return KVC_OK;
    }
    uint32_t u;
    kvc_status st = gguf_get_u32(f, key, &u, err);
    if (st) return st;
    if (u >= (uint32_t)n_vocab)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' = %u is outside the vocabulary (0..%d)",
                        f->path, key, u, n_vocab - 1);
    *v = (int)u;
    return KVC_OK;
}

struct user_key {
    uint64_t len;
    int32_t id;
};
static int cmp_user(const void *a, const void *b) {
    const struct user_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest first */
    return x->id < y->id ? -1 : x->id > y->id;
}

void kvc_tokenizer_free(struct kvc_tokenizer *t) {
    if (!t) return;
    free(t->score);
    free(t->type);
    free(t->slot);
    free(t->user);
    free(t);
}

kvc_status kvc_tokenizer_load(const struct gguf_file *f, struct kvc_tokenizer **out,
                              kvc_error *err) {
    *out = NULL;
    kvc_status st;
    struct gguf_str model;
    if ((st = gguf_get_str(f, "tokenizer.ggml.model", &model, err))) return st;
    if (!gguf_str_eq(model, "llama")) {
        char shown[64];
        size_t n = model.n < 48 ? (size_t)model.n : 48;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)model.p[i];
            shown[i] = (c >= 32 && c < 127) ? (char)c : '?';
        }
        shown[n] = 0;
        return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                        "%s: metadata 'tokenizer.ggml.model' = '%s%s' is not supported (only 'llama', "
                        "SentencePiece with scores)", f->path, shown, model.n > 48 ? "..." : "");
    }
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
    t->n_vocab = n;
    t->text = toks->strs;
    t->bos = 1;
    t->eos = 2;
    t->unk = 0;
    t->add_bos = 1;
    t->add_eos = 0;
    t->add_space_prefix = 1;
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
        t->type[i] = (ty >= 1 && ty <= 6) ? (uint8_t)ty : 0; /* 0: undefined */
        if (t->text[i].n == 0) continue; /* llama.cpp renames empty pieces: never matched */
        if (t->text[i].n > t->max_len) t->max_len = t->text[i].n;
        insert(t, i);
        if (t->type[i] == TT_USER) t->n_user++;
    }
    if ((st = opt_id(f, "tokenizer.ggml.bos_token_id", n, &t->bos, err)) ||
        (st = opt_id(f, "tokenizer.ggml.eos_token_id", n, &t->eos, err)) ||
        (st = opt_bool(f, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) ||
        (st = opt_bool(f, "tokenizer.ggml.add_eos_token", &t->add_eos, err)) ||
        (st = opt_bool(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err))) {
        kvc_tokenizer_free(t);
        return st;
    }
    /* unk: UINT32_MAX means "none" (some converters write it); anything else must be valid */
    const struct gguf_kv *ukv = gguf_find(f, "tokenizer.ggml.unknown_token_id");
    uint32_t u;
    if (ukv && gguf_get_u32(f, "tokenizer.ggml.unknown_token_id", &u, NULL) == KVC_OK && u == UINT32_MAX)
        t->unk = -1;
    else if ((st = opt_id(f, "tokenizer.ggml.unknown_token_id", n, &t->unk, err))) {
        kvc_tokenizer_free(t);
        return st;
    }
    /* byte fallback tokens: "<0xNN>", else the byte itself as a piece */
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        char one = (char)b;
        int32_t id = lookup(t, name, 6);
        if (id < 0) id = lookup(t, &one, 1);
        t->byte_tok[b] = id;
    }
    /* barrier bytes: ASCII bytes that no multi-byte piece contains */
    for (int b = 0; b < 128; b++) t->barrier[b] = 1;
    for (int i = 0; i < n; i++)
        if (t->text[i].n > 1)
            for (uint64_t j = 0; j < t->text[i].n; j++) t->barrier[(unsigned char)t->text[i].p[j]] = 0;
    for (int b = 128; b < 256; b++) t->barrier[b] = 0;
    if (t->n_user) {
        struct user_key *keys = malloc((size_t)t->n_user * sizeof *keys);
        t->user = malloc((size_t)t->n_user * sizeof *t->user);
        if (!t->user || !keys) {
            free(keys);
            kvc_tokenizer_free(t);
            return kvc_fail(err, KVC_ERR_NOMEM, "%s: tokenizer: out of memory", f->path);
        }
        int k = 0;
        for (int i = 0; i < n; i++)
            if (t->type[i] == TT_USER && t->text[i].n) keys[k++] = (struct user_key){t->text[i].n, i};
        qsort(keys, (size_t)k, sizeof *keys, cmp_user);
        for (int i = 0; i < k; i++) t->user[i] = keys[i].id;
        free(keys);
    }
    *out = t;
    return KVC_OK;
}

int kvc_tokenizer_n_vocab(const struct kvc_tokenizer *t) { return t->n_vocab; }
int kvc_tokenizer_bos(const struct kvc_tokenizer *t) { return t->bos; }
int kvc_tokenizer_eos(const struct kvc_tokenizer *t) { return t->eos; }

/* ---- encoding ---- */

struct idvec {
    int32_t *v;
    size_t n, cap;
};

static int push_id(struct idvec *o, int32_t id) {
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

struct sym {
    int prev, next;
    size_t off, n; /* bytes in the escaped text; n == 0 once merged into its left neighbour */
};

struct bigram {
    float score;
    int left, right;
    size_t size;
};

/* heap order: higher score first, then lower left index (llama.cpp's llm_bigram_spm) */
static inline int bg_before(const struct bigram *a, const struct bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

struct heap {
    struct bigram *v;
    size_t n, cap;
};

static int heap_push(struct heap *h, struct bigram b) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 256;
        struct bigram *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv) return -1;
        h->v = nv;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&b, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return 0;
}

static struct bigram heap_pop(struct heap *h) {
    struct bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bg_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
    return top;
}

static int try_bigram(const struct kvc_tokenizer *t, const char *buf, const struct sym *s,
                      struct heap *h, int left, int right) {
    if (left < 0 || right < 0) return 0;
    size_t n = s[left].n + s[right].n;
    int32_t id = lookup(t, buf + s[left].off, n);
    if (id < 0) return 0;
    struct bigram b = {t->score[id], left, right, n};
    return heap_push(h, b);
}

/* Append the id of one final symbol, or its bytes as byte tokens (unk without them). */
static int emit_symbol(const struct kvc_tokenizer *t, const char *p, size_t n, struct idvec *o) {
    int32_t id = lookup(t, p, n);
    if (id >= 0) return push_id(o, id);
    for (size_t j = 0; j < n; j++) {
        int32_t bt = t->byte_tok[(unsigned char)p[j]];
        if (bt < 0) bt = t->unk;
        if (bt >= 0 && push_id(o, bt)) return -1;
    }
    return 0;
}

/* Merge symbols [a, b) (linked a..b-1) highest score first and emit them. */
static int merge_run(const struct kvc_tokenizer *t, const char *buf, struct sym *s, int a, int b,
                     struct idvec *o, struct heap *h) {
    h->n = 0;
    for (int i = a + 1; i < b; i++)
        if (try_bigram(t, buf, s, h, i - 1, i)) return -1;
    while (h->n) {
        struct bigram g = heap_pop(h);
        struct sym *l = &s[g.left], *r = &s[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = g.left;
        if (try_bigram(t, buf, s, h, l->prev, g.left) || try_bigram(t, buf, s, h, g.left, l->next))
            return -1;
    }
    for (int i = a; i != -1; i = s[i].next)
        if (emit_symbol(t, buf + s[i].off, s[i].n, o)) return -1;
    return 0;
}

/* Tokenize one escaped fragment (buf, n bytes) and append the ids. Returns 0 or -1 (memory).
 * A one-byte symbol whose byte occurs in no piece longer than one byte (a "barrier", such as
 * '\n' in most vocabularies) can never take part in a merge, so the symbols on either side of
 * it never interact: each run between barriers is merged on its own. This gives the same
 * result as one queue over the whole fragment (each run's merges happen in the same order)
 * with small, cache-friendly queues. */
static int spm_fragment(const struct kvc_tokenizer *t, const char *buf, size_t n,
                        struct idvec *o, struct sym **sbuf, size_t *scap, struct heap *h) {
    static const unsigned char utf8_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    if (n == 0) return 0;
    if (*scap < n) {
        struct sym *ns = realloc(*sbuf, n * sizeof *ns);
        if (!ns) return -1;
        *sbuf = ns;
        *scap = n;
    }
    struct sym *s = *sbuf;
    int ns = 0;
    for (size_t off = 0; off < n;) {
        size_t len = utf8_len[(unsigned char)buf[off] >> 4];
        if (len > n - off) len = n - off;
        s[ns].off = off;
        s[ns].n = len;
        off += len;
        ns++;
    }
    int a = 0; /* start of the current run */
    for (int i = 0; i <= ns; i++) {
        int barrier = i < ns && s[i].n == 1 && t->barrier[(unsigned char)buf[s[i].off]];
        if (i < ns && !barrier) {
            s[i].prev = i == a ? -1 : i - 1;
            s[i].next = -1;
            if (i > a) s[i - 1].next = i;
            continue;
        }
        if (i > a && merge_run(t, buf, s, a, i, o, h)) return -1;
        if (barrier && emit_symbol(t, buf + s[i].off, 1, o)) return -1;
        a = i + 1;
    }
    return 0;
}

/* A piece of the input: raw text [off, off+len) or a user-defined token. */
struct frag {
    size_t off, len;
    int32_t id; /* -1 for raw text */
};

/* Split raw fragments on user-defined tokens (longest first, leftmost non-overlapping
 * occurrences), as llama.cpp's special-token partition does with parse_special off. */
static int partition(const struct kvc_tokenizer *t, const char *text, size_t len,
                     struct frag **fv, size_t *fn) {
    size_t n = 0, cap = 16;
    struct frag *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    v[n++] = (struct frag){0, len, -1};
    for (int u = 0; u < t->n_user; u++) {
        int32_t id = t->user[u];
        const char *tp = t->text[id].p;
        size_t tn = (size_t)t->text[id].n;
        for (size_t k = 0; k < n; k++) {
            if (v[k].id >= 0 || v[k].len < tn) continue;
            const char *base = text + v[k].off;
            const char *m = memmem(base, v[k].len, tp, tn);
            if (!m) continue;
            size_t pre = (size_t)(m - base), rest = v[k].len - pre - tn;
            /* replace v[k] with up to three fragments: [pre] [token] [rest] */
            if (n + 2 > cap) {
                size_t nc = cap * 2;
                struct frag *nv = realloc(v, nc * sizeof *nv);
                if (!nv) {
                    free(v);
                    return -1;
                }
                v = nv;
                cap = nc;
            }
            struct frag cur = v[k];
            size_t add = (pre > 0) + 1 + (rest > 0) - 1;
            memmove(&v[k + 1 + add], &v[k + 1], (n - k - 1) * sizeof *v);
            n += add;
            size_t w = k;
            if (pre) v[w++] = (struct frag){cur.off, pre, -1};
            v[w++] = (struct frag){cur.off + pre, tn, id};
            if (rest) v[w] = (struct frag){cur.off + pre + tn, rest, -1};
            k = w - 1; /* continue with the rest (next iteration looks at v[w]) */
        }
    }
    *fv = v;
    *fn = n;
    return 0;
}

kvc_status kvc_tokenizer_encode(const struct kvc_tokenizer *t, const char *text, size_t len,
                                int add_bos, int32_t **ids, int *n_ids, kvc_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return kvc_fail(err, KVC_ERR_ARG, "tokenize: text is NULL with length %zu", len);
    if (len > (size_t)INT_MAX / 4)
        return kvc_fail(err, KVC_ERR_RANGE, "tokenize: text of %zu bytes exceeds the limit of %d bytes",
                        len, INT_MAX / 4);
    struct idvec o = {0};
    struct frag *fv = NULL;
    size_t fn = 0;
    char *buf = NULL;
    struct sym *sbuf = NULL;
    size_t scap = 0, bcap = 0;
    struct heap h = {0};
    int fail = 0;
    /* llama.cpp's add_special: BOS when asked and the model wants it (and EOS likewise) */
    int special = add_bos != 0;
    if (special && t->add_bos && push_id(&o, t->bos)) fail = 1;
    if (!fail && len > 0) {
        if (t->n_user) {
            if (partition(t, text, len, &fv, &fn)) fail = 1;
        } else {
            fv = malloc(sizeof *fv);
            if (!fv) fail = 1;
            else {
                fv[0] = (struct frag){0, len, -1};
                fn = 1;
            }
        }
    }
    int prev_special = 1;
    for (size_t k = 0; !fail && k < fn; k++) {
        if (fv[k].id >= 0) {
            if (push_id(&o, fv[k].id)) fail = 1;
            prev_special = 1;
            continue;
        }
        const char *src = text + fv[k].off;
        size_t sn = fv[k].len, need = 3 * sn + 3;
        if (bcap < need) {
            char *nb = realloc(buf, need);
            if (!nb) {
                fail = 1;
                break;
            }
            buf = nb;
            bcap = need;
        }
        size_t bn = 0;
        if (t->add_space_prefix && prev_special) {
            memcpy(buf, "\xe2\x96\x81", 3);
            bn = 3;
        }
        for (size_t i = 0; i < sn; i++) {
            if (src[i] == ' ') {
                memcpy(buf + bn, "\xe2\x96\x81", 3);
                bn += 3;
            } else {
                buf[bn++] = src[i];
            }
        }
        if (spm_fragment(t, buf, bn, &o, &sbuf, &scap, &h)) fail = 1;
        prev_special = 0;
    }
    if (!fail && special && t->add_eos && push_id(&o, t->eos)) fail = 1;
    if (!fail && o.n > (size_t)INT_MAX) fail = 2;
    free(fv);
    free(buf);
    free(sbuf);
    free(h.v);
    if (fail) {
        free(o.v);
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

/* ---- pieces ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int kvc_tokenizer_piece(const struct kvc_tokenizer *t, int32_t id, char *buf, int cap) {
    if (id < 0 || id >= t->n_vocab || cap <= 0) return 0;
    const struct gguf_str *s = &t->text[id];
    int w = 0;
    switch (t->type[id]) {
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
    case TT_UNKNOWN:
    case TT_USER: /* as written */
        w = s->n < (uint64_t)cap ? (int)s->n : cap;
        memcpy(buf, s->p, (size_t)w);
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
    default: /* control, unused, undefined: nothing to print */
        return 0;
    }
}
