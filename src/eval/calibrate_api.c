/* calibrate_api.c - kvc_calibrate, the public calibration run the CLI's `calibrate` and the
 * Python package call: tokenize the text, refuse evaluation files, fit the statistics through
 * kvc_calib_fit (calibrate.c) with the progress forwarded, write the calibration GGUF. */
#include "calibrate.h"
#include "eval_util.h"
#include "../model.h"
#include "../util.h"

#include <stdlib.h>
#include <string.h>

struct kvc_calibrate_params kvc_calibrate_default_params(void) {
    struct kvc_calib_opts o;
    kvc_calib_opts_default(&o);
    struct kvc_calibrate_params p = {0};
    p.n_ctx = o.n_ctx;
    p.n_batch = o.n_batch;
    p.n_threads = o.n_threads;
    p.max_tokens = o.max_tokens;
    p.sample_rows = o.sample_rows;
    p.metric = o.metric;
    return p;
}

/* Evaluation files must never be fitted on: their figures would be meaningless. */
static int is_eval_text(const char *name) {
    const char *b = strrchr(name, '/');
    b = b ? b + 1 : name;
    return strcmp(b, "wikitext-2-test.raw") == 0 || strcmp(b, "books-valid.txt") == 0 ||
           strcmp(b, "tinystories-sample.txt") == 0;
}

struct fwd {
    const struct kvc_calibrate_params *p;
    double t0;
    int64_t n_text;
};

static void forward_progress(void *user, int64_t done, int64_t total) {
    struct fwd *f = user;
    struct kvc_calibrate_progress pr = {done, total, f->n_text, kvc_eval_now() - f->t0};
    f->p->progress(f->p->user, &pr);
}

kvc_status kvc_calibrate(const kvc_model *m, const char *text, size_t len, const char *out_path,
                         const struct kvc_calibrate_params *p, struct kvc_calibrate_result *r, kvc_error *err) {
    if (!m || !text || !out_path || !p || !r) return kvc_fail(err, KVC_ERR_ARG, "kvc_calibrate: NULL argument");
    memset(r, 0, sizeof *r);
    const char *name = p->text_name ? p->text_name : "";
    if (is_eval_text(name))
        return kvc_fail(err, KVC_ERR_ARG,
                        "calibrate: %s is an evaluation file; fitting on it would make its figures meaningless "
                        "(calibrate on ../shared/text/calib.txt)", name);
    if (p->n_ctx < 2 || p->n_batch < 1 || p->n_threads < 1 || p->n_threads > 256 || p->sample_rows < 0 ||
        p->max_tokens < 2 || p->metric < 0 || p->metric > 3)
        return kvc_fail(err, KVC_ERR_ARG,
                        "calibrate: bad parameters (n_ctx %d >= 2, n_batch %d >= 1, n_threads %d in 1..256, "
                        "max_tokens %lld >= 2, sample_rows %d >= 0, metric %d in 0..3)",
                        p->n_ctx, p->n_batch, p->n_threads, (long long)p->max_tokens, p->sample_rows, p->metric);
    double t0 = kvc_eval_now();
    int32_t *tok = NULL;
    int n_tok = 0;
    kvc_status st = kvc_tokenize(m, text, len, 1, &tok, &n_tok, err);
    if (st) return st;
    struct kvc_calib_opts o;
    kvc_calib_opts_default(&o);
    o.n_ctx = p->n_ctx;
    o.n_batch = p->n_batch;
    o.n_threads = p->n_threads;
    o.max_tokens = p->max_tokens;
    o.sample_rows = p->sample_rows;
    o.metric = p->metric;
    o.text_name = name;
    struct fwd f = {p, t0, n_tok};
    if (p->progress) {
        o.progress = forward_progress;
        o.progress_user = &f;
        struct kvc_calibrate_progress pr = {0, n_tok < p->max_tokens ? n_tok : p->max_tokens, n_tok,
                                            kvc_eval_now() - t0};
        p->progress(p->user, &pr); /* start: tokenized */
    }
    struct kvc_calib *c = NULL;
    st = kvc_calib_fit(m, tok, n_tok, &o, &c, err);
    free(tok);
    if (st) return st;
    st = kvc_calib_save(c, out_path, err);
    if (!st) {
        r->n_tokens_text = n_tok;
        r->n_tokens = (int64_t)c->n_tokens;
        r->n_ctx = c->n_ctx;
        r->n_layer = c->id.n_layer;
        r->n_head_kv = c->id.n_head_kv;
        r->head_dim = c->id.head_dim;
        r->metric = c->metric;
        r->sample_rows = c->sample_rows;
        r->seconds = kvc_eval_now() - t0;
    }
    kvc_calib_free(c);
    return st;
}
