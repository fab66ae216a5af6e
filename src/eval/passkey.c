/* passkey.c - pass-key retrieval through the KV cache in the prompt shape of llama.cpp's
 * passkey example and of kvref's training tasks (kvref-recipe/train.py): BOS, task
 * description, haystack with the key line at a depth fraction, question; greedy decode; a
 * trial succeeds when the generated text contains the 5-digit key. Each piece is tokenized on
 * its own (with the tokenizer's leading space) and concatenated. CLI and Python call this. */
#include "kvcodec.h"
#include "eval_util.h"
#include "../util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* kvref was trained on exactly these strings (train.py PREFIX / FILLER). */
static const char *const PREFIX =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there.";
static const char *const FILLER =
    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
static const char *const QUESTION = " What is the pass key? The pass key is";

struct kvc_passkey_params kvc_passkey_default_params(void) {
    struct kvc_passkey_params p = {0};
    p.ctx = kvc_ctx_default_params();
    p.trials = 10;
    p.n_depths = 3;
    p.depths[0] = 0.1;
    p.depths[1] = 0.5;
    p.depths[2] = 0.9;
    p.n_gen = 8;
    p.seed = 1234;
    return p;
}

struct toks {
    int32_t *ids; /* (n) */
    int n;
};

static kvc_status tok(const kvc_model *m, const char *s, struct toks *t, kvc_error *e) {
    free(t->ids);
    t->ids = NULL;
    return kvc_tokenize(m, s, strlen(s), 0, &t->ids, &t->n, e);
}

/* hl tokens of book text from a random offset: start after a line break so no word is cut. */
static kvc_status book_hay(const kvc_model *m, const char *text, size_t len, int hl, uint64_t *rng,
                           int32_t *out, kvc_error *e) {
    size_t win = (size_t)hl * 8 + 256;
    for (int attempt = 0; attempt < 8 && len > 0; attempt++, win *= 2) {
        size_t w = win < len ? win : len;
        size_t off = len > w ? (size_t)(kvc_splitmix64(rng) % (len - w)) : 0;
        const char *nl = memchr(text + off, '\n', w / 4);
        if (nl) off = (size_t)(nl - text) + 1;
        while (off < len && (text[off] == '\n' || text[off] == ' ')) off++;
        if (off + w > len) w = len - off;
        int32_t *ids;
        int n;
        kvc_status st = kvc_tokenize(m, text + off, w, 0, &ids, &n, e);
        if (st) return st;
        if (n >= hl) {
            memcpy(out, ids, sizeof(int32_t) * (size_t)hl);
            free(ids);
            return KVC_OK;
        }
        free(ids);
    }
    return kvc_fail(e, KVC_ERR_FORMAT, "passkey: filler text has too little text for a haystack of %d tokens", hl);
}

/* Greedy decode of up to n_gen tokens after the prompt (already evaluated) into out. */
static kvc_status generate(kvc_ctx *c, const kvc_model *m, int n_gen, char *out, size_t cap, kvc_error *e) {
    const struct kvc_model_info *in = kvc_model_get_info(m);
    size_t ol = 0;
    for (int g = 0; g < n_gen; g++) {
        const float *lg = kvc_get_logits(c);
        int best = 0;
        for (int i = 1; i < in->n_vocab; i++)
            if (lg[i] > lg[best]) best = i;
        if (best == in->eos_id) break;
        char piece[64];
        int pl = kvc_token_to_text(m, best, piece, sizeof piece);
        if (ol + (size_t)pl < cap - 1) { memcpy(out + ol, piece, (size_t)pl); ol += (size_t)pl; }
        if (g + 1 == n_gen) break;
        int32_t t32 = best;
        kvc_status st = kvc_eval(c, &t32, 1, 0, e);
        if (st) return st;
    }
    out[ol] = 0;
    return KVC_OK;
}

kvc_status kvc_passkey(const kvc_model *m, const struct kvc_passkey_params *p,
                       struct kvc_passkey_result *r, kvc_error *e) {
    if (!m || !p || !r) return kvc_fail(e, KVC_ERR_ARG, "kvc_passkey: NULL argument");
    memset(r, 0, sizeof *r);
    const int CTX = p->ctx.n_ctx, n_gen = p->n_gen, nd = p->n_depths, n_batch = p->ctx.n_batch;
    if (p->trials < 1) return kvc_fail(e, KVC_ERR_ARG, "passkey: trials %d: must be >= 1", p->trials);
    if (nd < 1 || nd > KVC_PASSKEY_MAX_DEPTHS)
        return kvc_fail(e, KVC_ERR_ARG, "passkey: n_depths %d: must be 1..%d", nd, KVC_PASSKEY_MAX_DEPTHS);
    for (int i = 0; i < nd; i++)
        if (!(p->depths[i] >= 0 && p->depths[i] <= 1))
            return kvc_fail(e, KVC_ERR_ARG, "passkey: depths[%d] = %g: must be in 0..1", i, p->depths[i]);
    if (n_gen < 1 || n_gen > 1024) return kvc_fail(e, KVC_ERR_ARG, "passkey: n_gen %d: must be 1..1024", n_gen);
    if (n_batch < 1) return kvc_fail(e, KVC_ERR_ARG, "passkey: n_batch %d: must be >= 1", n_batch);
    const int books = p->filler_text != NULL;
    const struct kvc_model_info *in = kvc_model_get_info(m);
    /* as llama.cpp's passkey example: the prompt opens with BOS only when the vocabulary adds BOS */
    struct kvc_vocab_info vi;
    kvc_vocab_get_info(kvc_model_vocab(m), &vi);
    const int use_bos = vi.add_bos && in->bos_id >= 0;
    kvc_status st;
    struct toks pre = {0}, fil = {0}, q = {0}, nee = {0};
    int32_t *prompt = NULL, *hay = NULL;
    kvc_ctx *c = NULL;
    if ((st = tok(m, PREFIX, &pre, e)) || (st = tok(m, FILLER, &fil, e)) || (st = tok(m, QUESTION, &q, e))) goto done;
    /* The key line's length for a typical 5-digit key, for the size check and the report. */
    if ((st = tok(m, " The pass key is 12345. Remember it. 12345 is the pass key.", &nee, e))) goto done;
    int fixed = use_bos + pre.n + nee.n + q.n, hl = CTX - n_gen - fixed;
    if (hl < 8) {
        st = kvc_fail(e, KVC_ERR_ARG, "passkey: n_ctx %d is too small: task, key line and question take %d tokens, %d generated",
                      CTX, fixed, n_gen);
        goto done;
    }
    prompt = malloc(sizeof(int32_t) * (size_t)(CTX + 64)); /* (CTX + slack) */
    hay = malloc(sizeof(int32_t) * (size_t)(CTX + 64));
    if (!prompt || !hay || fil.n == 0) { st = kvc_fail(e, KVC_ERR_NOMEM, "passkey: out of memory"); goto done; }
    if ((st = kvc_ctx_create(m, &p->ctx, &c, e))) goto done;
    kvc_ctx_kv_info(c, &r->kv);
    r->ctx = CTX;
    r->n_gen = n_gen;
    r->trials = p->trials;
    r->haystack_tokens = hl;
    r->books = books;
    r->n_ctx_train = in->n_ctx_train;
    r->seed = p->seed;
    r->n_depths = nd;
    memcpy(r->depths, p->depths, sizeof(double) * (size_t)nd);
    uint64_t rng = p->seed;
    double t0 = kvc_eval_now();
    for (int di = 0; di < nd; di++) {
        for (int t = 0; t < p->trials; t++) {
            int key = 10000 + (int)(kvc_splitmix64(&rng) % 90000);
            char line[128], keys[16], out[512];
            snprintf(line, sizeof line, " The pass key is %d. Remember it. %d is the pass key.", key, key);
            snprintf(keys, sizeof keys, "%d", key);
            if ((st = tok(m, line, &nee, e))) goto done;
            /* the key line's length can differ by a token between keys: size the haystack per trial */
            int hl_t = CTX - n_gen - (use_bos + pre.n + nee.n + q.n);
            if (hl_t < 1) hl_t = 1;
            if (books) {
                if ((st = book_hay(m, p->filler_text, p->filler_len, hl_t, &rng, hay, e))) goto done;
            } else {
                for (int i = 0; i < hl_t; i++) hay[i] = fil.ids[i % fil.n];
            }
            int d = (int)((double)hl_t * p->depths[di]), n = 0;
            if (use_bos) prompt[n++] = in->bos_id;
            memcpy(prompt + n, pre.ids, sizeof(int32_t) * (size_t)pre.n); n += pre.n;
            memcpy(prompt + n, hay, sizeof(int32_t) * (size_t)d); n += d;
            memcpy(prompt + n, nee.ids, sizeof(int32_t) * (size_t)nee.n); n += nee.n;
            memcpy(prompt + n, hay + d, sizeof(int32_t) * (size_t)(hl_t - d)); n += hl_t - d;
            memcpy(prompt + n, q.ids, sizeof(int32_t) * (size_t)q.n); n += q.n;
            if (n + n_gen > CTX) {
                st = kvc_fail(e, KVC_ERR_INTERNAL, "passkey: prompt of %d tokens + %d exceeds n_ctx %d", n, n_gen, CTX);
                goto done;
            }
            kvc_ctx_reset(c);
            for (int i = 0; i < n; i += n_batch) {
                int nb = n - i < n_batch ? n - i : n_batch;
                if ((st = kvc_eval(c, prompt + i, nb, 0, e))) goto done;
            }
            if ((st = generate(c, m, n_gen, out, sizeof out, e))) goto done;
            int ok = strstr(out, keys) != NULL;
            r->depth_correct[di] += ok;
            r->correct += ok;
            r->total++;
            if (p->progress) {
                struct kvc_passkey_progress pr = {
                    .depth_index = di, .trial = t, .depth = p->depths[di], .key = key, .n_prompt = n,
                    .ok = ok, .generated = out, .depth_correct = r->depth_correct[di],
                    .depth_done = t + 1 == p->trials, .seconds = kvc_eval_now() - t0,
                    .haystack_tokens = hl, .kv = &r->kv};
                p->progress(p->user, &pr);
            }
        }
    }
    r->accuracy = (double)r->correct / r->total;
    r->seconds = kvc_eval_now() - t0;
done:
    kvc_ctx_free(c);
    free(pre.ids);
    free(fil.ids);
    free(q.ids);
    free(nee.ids);
    free(prompt);
    free(hay);
    return st;
}

char *kvc_passkey_json(const struct kvc_passkey_result *r, const char *model, const char *filler_file) {
    if (!r) return NULL;
    json_t *o = json_object(), *ds = json_array();
    if (!o || !ds) { json_decref(o); json_decref(ds); return NULL; }
    json_object_set_new(o, "model", kvc_json_str(model));
    json_object_set_new(o, "ctx", json_integer(r->ctx));
    json_object_set_new(o, "filler", json_string(r->books ? "books" : "repeat"));
    if (r->books) json_object_set_new(o, "filler_file", kvc_json_str(filler_file));
    json_object_set_new(o, "n_gen", json_integer(r->n_gen));
    json_object_set_new(o, "seed", json_integer((json_int_t)r->seed));
    json_object_set_new(o, "trials", json_integer(r->trials));
    json_object_set_new(o, "haystack_tokens", json_integer(r->haystack_tokens));
    json_object_set_new(o, "accuracy", kvc_json_real(r->total ? (double)r->correct / r->total : 0, 6));
    json_object_set_new(o, "correct", json_integer(r->correct));
    json_object_set_new(o, "total", json_integer(r->total));
    for (int i = 0; i < r->n_depths; i++) {
        json_t *d = json_object();
        json_object_set_new(d, "depth", json_real(r->depths[i]));
        json_object_set_new(d, "trials", json_integer(r->trials));
        json_object_set_new(d, "correct", json_integer(r->depth_correct[i]));
        json_object_set_new(d, "accuracy", kvc_json_real((double)r->depth_correct[i] / r->trials, 6));
        json_array_append_new(ds, d);
    }
    json_object_set_new(o, "depths", ds);
    json_object_set_new(o, "kv_k", kvc_json_str(r->kv.spec_k));
    json_object_set_new(o, "kv_v", kvc_json_str(r->kv.spec_v));
    json_object_set_new(o, "kv_sinks", json_integer(r->kv.sinks));
    json_object_set_new(o, "kv_recent", json_integer(r->kv.recent));
    json_object_set_new(o, "kv_window", kvc_json_str(r->kv.spec_window));
    json_object_set_new(o, "bits_k", kvc_json_real(r->kv.bits_k, 4));
    json_object_set_new(o, "bits_v", kvc_json_real(r->kv.bits_v, 4));
    json_object_set_new(o, "bits_per_element", kvc_json_real(r->kv.bits_per_element, 4));
    json_object_set_new(o, "n_ctx_train", json_integer(r->n_ctx_train));
    json_object_set_new(o, "seconds", kvc_json_real(r->seconds, 2));
    return kvc_json_finish(o);
}
