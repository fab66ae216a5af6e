/* tokenizer_spm.c - SentencePiece-style ("llama" vocab) encoding of one text fragment,
 * matching llama.cpp's SPM tokenizer (build of early 2025) id for id:
 *  - the fragment gets a leading space when asked (add_space_prefix and first fragment or
 *    after a special token), then every ' ' becomes "▁" (U+2581);
 *  - it is split into UTF-8 characters (length from the lead byte only, so invalid bytes
 *    become one-byte symbols), and the adjacent pair whose concatenation is a vocabulary piece
 *    with the highest score is merged, repeatedly (ties: leftmost pair first), with a binary
 *    heap of candidate pairs and a linked list of symbols;
 *  - each final symbol is emitted as its id, or byte by byte as <0xNN> tokens (or unk).
 * Speed: runs of symbols separated by "barrier" bytes (see spm_fragment) get their own queue;
 * the result is the same as one queue over the whole text. */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

void spm_init(struct kvc_tokenizer *t) {
    /* byte fallback tokens: "<0xNN>", else the byte itself as a piece */
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        char one = (char)b;
        int32_t id = tok_lookup(t, name, 6);
        if (id < 0) id = tok_lookup(t, &one, 1);
        t->byte_tok[b] = id;
    }
    /* barrier bytes: ASCII bytes that no multi-byte piece contains */
    for (int b = 0; b < 128; b++) t->barrier[b] = 1;
    for (int i = 0; i < t->n_vocab; i++)
        if (t->text[i].n > 1)
            for (uint64_t j = 0; j < t->text[i].n; j++) t->barrier[(unsigned char)t->text[i].p[j]] = 0;
    for (int b = 128; b < 256; b++) t->barrier[b] = 0;
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
    int32_t id = tok_lookup(t, buf + s[left].off, n);
    if (id < 0) return 0;
    struct bigram b = {t->score[id], left, right, n};
    return heap_push(h, b);
}

/* Append the id of one final symbol, or its bytes as byte tokens (unk without them). */
static int emit_symbol(const struct kvc_tokenizer *t, const char *p, size_t n, struct idvec *o) {
    int32_t id = tok_lookup(t, p, n);
    if (id >= 0) return tok_push(o, id);
    for (size_t j = 0; j < n; j++) {
        int32_t bt = t->byte_tok[(unsigned char)p[j]];
        if (bt < 0) bt = t->unk;
        if (bt >= 0 && tok_push(o, bt)) return -1;
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


int spm_encode(const struct kvc_tokenizer *t, const char *src, size_t sn, int prefix,
               struct idvec *o) {
    /* ' ' -> "▁" (3 bytes), plus the optional leading "▁" */
    char *buf = malloc(3 * sn + 3);
    if (!buf) return -1;
    size_t bn = 0;
    if (prefix) {
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
    struct sym *sbuf = NULL;
    size_t scap = 0;
    struct heap h = {0};
    int rc = spm_fragment(t, buf, bn, o, &sbuf, &scap, &h);
    free(buf);
    free(sbuf);
    free(h.v);
    return rc;
}
