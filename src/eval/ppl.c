/* ppl.c - perplexity over a text as llama.cpp's llama-perplexity computes it (whole text
 * tokenized with BOS, non-overlapping chunks of n_ctx tokens whose first token is BOS, second
 * half of each chunk scored), and the comparison with an f16 cache on the same chunks: PPL
 * change, KL divergence (mean, 99th percentile) and top-1 agreement. One implementation for
 * the CLI (`kvcodec ppl`) and the Python package. */
#include "kvcodec.h"
#include "eval_util.h"
#include "../util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kvc_ppl_params kvc_ppl_default_params(void) {
    struct kvc_ppl_params p = {0};
    p.ctx = kvc_ctx_default_params();
    p.chunks = 0;
    p.compare = -1;
    return p;
}

/* Accumulated figures of one pass (base or test) over the scored tokens. */
struct scorer {
    int nv, first, is_test;
    const int32_t *tok;      /* this chunk's tokens */
    double nll, nll2;        /* sums of -log p(next) and its square */
    float *lp;               /* (n_vocab) scratch log-probs */
    float *base_lp;          /* (n_scored_per_chunk, n_vocab) base log-probs of this chunk */
    int *base_top;           /* (n_scored_per_chunk) base argmax */
    double *kld;             /* (all scored tokens) per-token KLD, test pass only */
    long n_kld, n_top1;
    double kld_sum;
};

static void score_pos(struct scorer *s, int j, const float *logits) {
    int r = j - s->first;
    float *lp = s->is_test ? s->lp : s->base_lp + (size_t)r * s->nv;
    int am = kvc_eval_log_softmax(logits, s->nv, lp);
    double nll = -(double)lp[s->tok[j + 1]];
    s->nll += nll;
    s->nll2 += nll * nll;
    if (!s->is_test) {
        s->base_top[r] = am;
    } else if (s->base_lp) {
        const float *bl = s->base_lp + (size_t)r * s->nv;
        double kl = 0;
        for (int i = 0; i < s->nv; i++) {
            double pb = exp((double)bl[i]);
            kl += pb * ((double)bl[i] - lp[i]);
        }
        s->kld[s->n_kld++] = kl;
        s->kld_sum += kl;
        s->n_top1 += am == s->base_top[r];
    }
}

/* Evaluate one chunk (tok, n_ctx tokens; tok[0] replaced by BOS when bos >= 0) and score its
 * second half. */
static kvc_status eval_chunk(kvc_ctx *c, int32_t *tok, int n_ctx, int n_batch, int bos,
                             struct scorer *s, kvc_error *e) {
    kvc_ctx_reset(c);
    s->tok = tok;
    for (int i = 0; i < n_ctx; i += n_batch) {
        int nb = n_ctx - i < n_batch ? n_ctx - i : n_batch;
        int32_t save = tok[i];
        if (i == 0 && bos >= 0) tok[0] = bos;
        kvc_status st = kvc_eval(c, tok + i, nb, i + nb > s->first, e);
        tok[i] = save;
        if (st) return st;
        if (i + nb <= s->first) continue;
        const float *lg = kvc_get_logits(c);
        for (int j = i > s->first ? i : s->first; j < i + nb && j < n_ctx - 1; j++)
            score_pos(s, j, lg + (size_t)(j - i) * s->nv);
    }
    return KVC_OK;
}

static double ppl_of(double nll, long n) { return exp(nll / (double)n); }
static double ppl_stderr(double nll, double nll2, long n) {
    double mean = nll / n, var = nll2 / n - mean * mean;
    return var > 0 && n > 1 ? sqrt(var / (n - 1)) * exp(mean) : 0;
}

kvc_status kvc_perplexity(const kvc_model *m, const char *text, size_t len,
                          const struct kvc_ppl_params *p, struct kvc_ppl_result *r,
                          kvc_error *e) {
    if (!m || !text || !p || !r) return kvc_fail(e, KVC_ERR_ARG, "kvc_perplexity: NULL argument");
    memset(r, 0, sizeof *r);
    const int n_ctx = p->ctx.n_ctx, n_batch = p->ctx.n_batch;
    if (n_ctx < 4)
        return kvc_fail(e, KVC_ERR_ARG, "perplexity: n_ctx %d: needs at least 4 tokens per chunk", n_ctx);
    if (n_batch < 1) return kvc_fail(e, KVC_ERR_ARG, "perplexity: n_batch %d: must be >= 1", n_batch);
    if (p->chunks < 0) return kvc_fail(e, KVC_ERR_ARG, "perplexity: chunks %d: must be >= 0", p->chunks);
    const char *kk = p->ctx.kv_k ? p->ctx.kv_k : "f16", *kv = p->ctx.kv_v ? p->ctx.kv_v : "f16";
    int compare = p->compare;
    if (compare < 0)
        compare = strcmp(kk, "f16") != 0 || strcmp(kv, "f16") != 0 || p->ctx.kv_sinks || p->ctx.kv_recent;
    const struct kvc_model_info *in = kvc_model_get_info(m);
    /* as llama-perplexity: chunks start with BOS only when the vocabulary adds BOS (SmolLM2,
     * Qwen2 do not: their chunks start with the text's own token) */
    struct kvc_vocab_info vi;
    kvc_vocab_get_info(kvc_model_vocab(m), &vi);
    const int chunk_bos = vi.add_bos ? in->bos_id : -1;
    double t0 = kvc_eval_now();
    kvc_status st;
    int32_t *tok = NULL;
    int n_tok = 0;
    kvc_ctx *ct = NULL, *cb = NULL;
    struct scorer sc = {0}, sb = {0};
    if ((st = kvc_tokenize(m, text, len, 1, &tok, &n_tok, e))) return st;
    int max_chunks = n_tok / n_ctx;
    if (max_chunks == 0) {
        st = kvc_fail(e, KVC_ERR_RANGE, "perplexity: the text has %d tokens, fewer than one chunk of %d",
                      n_tok, n_ctx);
        goto done;
    }
    int chunks = p->chunks == 0 || p->chunks > max_chunks ? max_chunks : p->chunks;
    if ((st = kvc_ctx_create(m, &p->ctx, &ct, e))) goto done;
    int first = n_ctx / 2, per_chunk = n_ctx - first - 1;
    long total = (long)per_chunk * chunks;
    sc = (struct scorer){.nv = in->n_vocab, .first = first, .is_test = 1};
    sc.lp = malloc(sizeof(float) * (size_t)in->n_vocab);
    if (!sc.lp) { st = kvc_fail(e, KVC_ERR_NOMEM, "perplexity: out of memory"); goto done; }
    if (compare) {
        struct kvc_ctx_params bp = p->ctx;
        bp.kv_k = bp.kv_v = "f16";
        bp.kv_sinks = bp.kv_recent = 0;
        bp.kv_window = NULL;
        bp.kv_calib = NULL;
        if ((st = kvc_ctx_create(m, &bp, &cb, e))) goto done;
        sb = (struct scorer){.nv = in->n_vocab, .first = first, .is_test = 0};
        sb.base_lp = malloc(sizeof(float) * (size_t)in->n_vocab * (size_t)per_chunk);
        sb.base_top = malloc(sizeof(int) * (size_t)per_chunk);
        sc.kld = malloc(sizeof(double) * (size_t)total);
        if (!sb.base_lp || !sb.base_top || !sc.kld) {
            st = kvc_fail(e, KVC_ERR_NOMEM, "perplexity: out of memory for %d x %d base log-probs", per_chunk,
                          in->n_vocab);
            goto done;
        }
        sc.base_lp = sb.base_lp;
        sc.base_top = sb.base_top;
    }
    kvc_ctx_kv_info(ct, &r->kv);
    struct kvc_ppl_progress pr = {.chunk = 0, .n_chunks = chunks, .n_chunks_available = max_chunks,
                                  .n_tokens_text = n_tok, .per_chunk = per_chunk, .compare = compare,
                                  .kv = &r->kv};
    if (p->progress) p->progress(p->user, &pr);
    for (int ci = 0; ci < chunks; ci++) {
        int32_t *ch = tok + (size_t)ci * n_ctx;
        double tc = kvc_eval_now();
        if (compare && (st = eval_chunk(cb, ch, n_ctx, n_batch, chunk_bos, &sb, e))) goto done;
        if ((st = eval_chunk(ct, ch, n_ctx, n_batch, chunk_bos, &sc, e))) goto done;
        if (p->progress) {
            long n = (long)per_chunk * (ci + 1);
            pr.chunk = ci + 1;
            pr.ppl = ppl_of(sc.nll, n);
            pr.ppl_base = compare ? ppl_of(sb.nll, n) : 0;
            pr.kld_mean = compare ? sc.kld_sum / (double)sc.n_kld : 0;
            pr.top1 = compare ? (double)sc.n_top1 / (double)sc.n_kld : 0;
            pr.chunk_seconds = kvc_eval_now() - tc;
            p->progress(p->user, &pr);
        }
    }
    r->ctx = n_ctx;
    r->chunks = chunks;
    r->n_chunks_available = max_chunks;
    r->n_tokens_text = n_tok;
    r->n_scored = total;
    r->ppl = ppl_of(sc.nll, total);
    r->ppl_stderr = ppl_stderr(sc.nll, sc.nll2, total);
    r->compared = compare;
    if (compare) {
        long n = sc.n_kld;
        double s = 0, s2 = 0;
        for (long i = 0; i < n; i++) { s += sc.kld[i]; s2 += sc.kld[i] * sc.kld[i]; }
        r->ppl_base = ppl_of(sb.nll, total);
        r->ppl_change_pct = 100.0 * (r->ppl / r->ppl_base - 1);
        r->kld_mean = s / n;
        r->kld_stderr = n > 1 ? sqrt(fmax(0, s2 / n - r->kld_mean * r->kld_mean) / (n - 1)) : 0;
        /* 99th percentile, linear interpolation between order statistics */
        qsort(sc.kld, (size_t)n, sizeof(double), kvc_eval_cmp_dbl);
        double pos = 0.99 * (double)(n - 1);
        long lo = (long)pos;
        double fr = pos - lo;
        r->kld_p99 = sc.kld[lo] + (lo + 1 < n ? fr * (sc.kld[lo + 1] - sc.kld[lo]) : 0);
        r->top1_agree = (double)sc.n_top1 / (double)n;
    }
    r->seconds = kvc_eval_now() - t0;
done:
    free(sc.lp);
    free(sc.kld);
    free(sb.base_lp);
    free(sb.base_top);
    kvc_ctx_free(ct);
    kvc_ctx_free(cb);
    free(tok);
    return st;
}

char *kvc_ppl_json(const struct kvc_ppl_result *r, const char *model, const char *file) {
    if (!r) return NULL;
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "model", kvc_json_str(model));
    json_object_set_new(o, "file", kvc_json_str(file));
    json_object_set_new(o, "ctx", json_integer(r->ctx));
    json_object_set_new(o, "chunks", json_integer(r->chunks));
    json_object_set_new(o, "n_tokens", json_integer(r->n_scored));
    json_object_set_new(o, "ppl", kvc_json_real(r->ppl, 6));
    json_object_set_new(o, "ppl_stderr", kvc_json_real(r->ppl_stderr, 6));
    json_object_set_new(o, "kv_k", kvc_json_str(r->kv.spec_k));
    json_object_set_new(o, "kv_v", kvc_json_str(r->kv.spec_v));
    json_object_set_new(o, "kv_sinks", json_integer(r->kv.sinks));
    json_object_set_new(o, "kv_recent", json_integer(r->kv.recent));
    json_object_set_new(o, "kv_window", kvc_json_str(r->kv.spec_window));
    json_object_set_new(o, "bits_k", kvc_json_real(r->kv.bits_k, 4));
    json_object_set_new(o, "bits_v", kvc_json_real(r->kv.bits_v, 4));
    json_object_set_new(o, "bits_per_element", kvc_json_real(r->kv.bits_per_element, 4));
    json_object_set_new(o, "kv_bytes_per_token", kvc_json_real(r->kv.bytes_per_token, 1));
    if (r->compared) {
        json_object_set_new(o, "ppl_base", kvc_json_real(r->ppl_base, 6));
        json_object_set_new(o, "ppl_change_pct", kvc_json_real(r->ppl_change_pct, 4));
        json_object_set_new(o, "kld_mean", kvc_json_real(r->kld_mean, 6));
        json_object_set_new(o, "kld_stderr", kvc_json_real(r->kld_stderr, 6));
        json_object_set_new(o, "kld_p99", kvc_json_real(r->kld_p99, 6));
        json_object_set_new(o, "top1_agree", kvc_json_real(r->top1_agree, 6));
    }
    json_object_set_new(o, "seconds", kvc_json_real(r->seconds, 2));
    return kvc_json_finish(o);
}
