/* tune.c - the tuner behind `kvcodec tune`: split a calibration text into a fit part and a
 * held-out tail, calibrate on the fit part, size every row of a candidate table to one budget
 * of bits per element (sink / recent rows in their codec and scales counted, as kvc_ctx_kv_info counts
 * them), score each on the held-out tail by its KL divergence from the f16 cache (as
 * `kvcodec ppl --compare` scores: second half of each chunk) and write the best as a preset. */
#include "tune.h"
#include "../util.h"
#include "eval_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCA_LAYERS_CAP 256 /* layers= holds at most this many values (pca_impl.h PCA_MAX_LAYERS) */

/* The candidate table: one row per setting family, best-known first (the tuner scores rows in
 * this order and stops at the time limit). A new key or value mode is one row. */
static const struct kvc_tune_row tune_rows[] = {
    /* name           K template               V template                sinks recent split fast alloc window */
    /* sinks and recent rows in q8_0 (8.5 bits instead of 16): twice the window for the same bits,
     * hdc values with the unbiased scale (norm's shrinkage of every value by sqrt(1 - eps) shows as
     * a PPL bias); session 12's best settings, first so the time limit never skips them */
    {"pre-hdc2u-q8w128", "pca:bits={b},keys=pre", "hdc:bits=2", 4, 124, 0.0, 0, 0, "q8_0"},
    {"pre-hdc3u-q8w128", "pca:bits={b},keys=pre", "hdc:bits=3", 4, 124, 0.0, 0, 0, "q8_0"},
    {"pre-hdc2u-q8w192", "pca:bits={b},keys=pre", "hdc:bits=2", 4, 188, 0.0, 0, 0, "q8_0"},
    {"pre-hdc2u-q8w128-head", "pca:bits={b},keys=pre", "hdc:bits=2", 4, 124, 0.0, 0, 3, "q8_0"},
    {"pre-hdc3u-q8w128-head", "pca:bits={b},keys=pre", "hdc:bits=3", 4, 124, 0.0, 0, 3, "q8_0"},
    {"pair-hdc2u-q8w128", "pca:bits={b},keys=pair", "hdc:bits=2", 4, 124, 0.0, 1, 0, "q8_0"},
    {"pair-hdc3u-q8w128", "pca:bits={b},keys=pair", "hdc:bits=3", 4, 124, 0.0, 1, 0, "q8_0"},
    {"pair-hdc2u-q8w128-head", "pca:bits={b},keys=pair", "hdc:bits=2", 4, 124, 0.0, 1, 3, "q8_0"},
    {"pair-hdc2n-q8w128-head", "pca:bits={b},keys=pair", "hdc:bits=2,scale=norm", 4, 124, 0.0, 1, 3, "q8_0"},
    {"pair-hdc3u-q8w128-head", "pca:bits={b},keys=pair", "hdc:bits=3", 4, 124, 0.0, 1, 3, "q8_0"},
    {"pair-hdc2u-q8w192", "pca:bits={b},keys=pair", "hdc:bits=2", 4, 188, 0.0, 1, 0, "q8_0"},
    {"pair-hdc2u-q8w256", "pca:bits={b},keys=pair", "hdc:bits=2", 4, 252, 0.0, 1, 0, "q8_0"},
    {"pair-hdc3u-q8w192", "pca:bits={b},keys=pair", "hdc:bits=3", 4, 188, 0.0, 1, 0, "q8_0"},
    {"pre-hdc2u-w64", "pca:bits={b},keys=pre", "hdc:bits=2", 4, 60, 0.0, 0, 0, NULL},
    {"pre-hdc3u-w64", "pca:bits={b},keys=pre", "hdc:bits=3", 4, 60, 0.0, 0, 0, NULL},
    {"pair-hdc3u-w64", "pca:bits={b},keys=pair", "hdc:bits=3", 4, 60, 0.0, 1, 0, NULL},
    /* the same windows with norm-scaled hdc values */
    {"pre-hdc2n-q8w128", "pca:bits={b},keys=pre", "hdc:bits=2,scale=norm", 4, 124, 0.0, 0, 0, "q8_0"},
    {"pre-hdc3n-q8w128", "pca:bits={b},keys=pre", "hdc:bits=3,scale=norm", 4, 124, 0.0, 0, 0, "q8_0"},
    {"pre-hdc2n-q8w192", "pca:bits={b},keys=pre", "hdc:bits=2,scale=norm", 4, 188, 0.0, 0, 0, "q8_0"},
    {"pre-hdc2n-q8w256", "pca:bits={b},keys=pre", "hdc:bits=2,scale=norm", 4, 252, 0.0, 0, 0, "q8_0"},
    {"pre-q8w128", "pca:bits={b},keys=pre", "pca:bits={b}", 4, 124, 0.25, 0, 0, "q8_0"},
    {"pre-hdc2n-q8w128-head", "pca:bits={b},keys=pre", "hdc:bits=2,scale=norm", 4, 124, 0.0, 0, 3, "q8_0"},
    {"pair-hdc3n-q8w128", "pca:bits={b},keys=pair", "hdc:bits=3,scale=norm", 4, 124, 0.0, 1, 0, "q8_0"},
    {"pair-hdc2n-q8w128", "pca:bits={b},keys=pair", "hdc:bits=2,scale=norm", 4, 124, 0.0, 1, 0, "q8_0"},
    /* sinks and recent rows in f16 */
    {"pre-hdc3n-w64", "pca:bits={b},keys=pre", "hdc:bits=3,scale=norm",  4, 60, 0.0, 0, 0, NULL},
    {"pre-w64",       "pca:bits={b},keys=pre", "pca:bits={b}",           4, 60, 0.25, 0, 0, NULL},
    {"pre-w64-even",  "pca:bits={b},keys=pre", "pca:bits={b}",           4, 60, 0.0, 0, 0, NULL},
    {"pre-w64-wide",  "pca:bits={b},keys=pre", "pca:bits={b}",           4, 60, 0.5, 0, 0, NULL},
    {"pre-w32",       "pca:bits={b},keys=pre", "pca:bits={b}",           4, 28, 0.25, 0, 0, NULL},
    {"pre-w128",      "pca:bits={b},keys=pre", "pca:bits={b}",           4, 124, 0.25, 0, 0, NULL},
    {"pre-hdc2n-w64", "pca:bits={b},keys=pre", "hdc:bits=2,scale=norm",  4, 60, 0.0, 0, 0, NULL},
    {"pre-hdc4n-w64", "pca:bits={b},keys=pre", "hdc:bits=4,scale=norm",  4, 60, 0.0, 0, 0, NULL},
    {"pre-hdc3n-alloc", "pca:bits={b},keys=pre", "hdc:bits=3,scale=norm", 4, 60, 0.0, 0, 1, NULL},
    {"pre-w64-alloc", "pca:bits={b},keys=pre", "pca:bits={b}",           4, 60, 0.25, 0, 1, NULL},
    {"pre-w64-arel",  "pca:bits={b},keys=pre", "pca:bits={b}",           4, 60, 0.25, 0, 2, NULL},
    {"pre-hdc3n-head", "pca:bits={b},keys=pre", "hdc:bits=3,scale=norm", 4, 60, 0.0, 0, 3, NULL},
    {"pre-hdc2n-head", "pca:bits={b},keys=pre", "hdc:bits=2,scale=norm", 4, 60, 0.0, 0, 3, NULL},
    {"pre-w64-head",  "pca:bits={b},keys=pre", "pca:bits={b}",           4, 60, 0.25, 0, 3, NULL},
    /* keys=pair: pre-RoPE keys with a per-RoPE-pair transform, O(d) per row (fast) */
    {"pair-hdc3n-w64", "pca:bits={b},keys=pair", "hdc:bits=3,scale=norm", 4, 60, 0.0, 1, 0, NULL},
    {"pair-hdc2n-w64", "pca:bits={b},keys=pair", "hdc:bits=2,scale=norm", 4, 60, 0.0, 1, 0, NULL},
    {"pair-w64",      "pca:bits={b},keys=pair", "pca:bits={b}",          4, 60, 0.25, 1, 0, NULL},
    {"post-w64",      "pca:bits={b}",          "pca:bits={b}",           4, 60, 0.25, 1, 0, NULL},
    {"pre-nowin",     "pca:bits={b},keys=pre", "pca:bits={b}",           0, 0, 0.25, 0, 0, NULL},
};

const struct kvc_tune_row *kvc_tune_rows(int *n) {
    *n = (int)(sizeof tune_rows / sizeof tune_rows[0]);
    return tune_rows;
}

void kvc_tune_opts_default(struct kvc_tune_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 2048;
    o->n_batch = 512;
    o->n_threads = 2;
    o->calib_tokens = 65536;
    o->heldout_chunks = 2;
    o->metric = 3;
    o->min_codec_bits = 1.0;
    o->fast_only = 1;
    o->text_name = "";
}

void kvc_tune_result_free(struct kvc_tune_result *r) {
    if (!r) return;
    free(r->cand);
    memset(r, 0, sizeof *r);
}

static void say(const struct kvc_tune_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct kvc_tune_opts *o, const char *fmt, ...) {
    if (!o->progress) return;
    char line[3 * KVC_SPEC_MAX]; /* progress lines carry both specs */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->progress(o->progress_user, line);
}

/* ------------------------------------------------------------------ sizing ---- */

/* tpl with "{b}" replaced by b (as "%.6g"); 0 if it does not fit cap. */
static int fill_template(const char *tpl, double b, char *out, size_t cap) {
    const char *p = strstr(tpl, "{b}");
    int n;
    if (!p) n = snprintf(out, cap, "%s", tpl);
    else n = snprintf(out, cap, "%.*s%.6g%s", (int)(p - tpl), tpl, b, p + 3);
    return n >= 0 && (size_t)n < cap;
}

/* Bits per element of one side at n_ctx: codec rows for positions sinks..n_ctx-1, the sinks
 * and the ring of `recent` rows in the window codec (kv_cache_init's allocation). -1 when a
 * spec is bad. */
static double side_bits(const char *spec, const char *window, int n_ctx, int d, int sinks, int recent) {
    double cb, wb;
    kvc_error e = {0};
    if (kvc_codec_bits(spec, d, &cb, &e) || kvc_codec_bits(window ? window : "f16", d, &wb, &e)) return -1;
    return (cb * (n_ctx - sinks) + wb * (sinks + recent)) / n_ctx;
}

int kvc_tune_size_row(const struct kvc_tune_row *row, double budget, int n_ctx, int d, double min_bits,
                      char *k, char *v, size_t cap, double *bits) {
    int kfree = strstr(row->k, "{b}") != NULL, vfree = strstr(row->v, "{b}") != NULL;
    if (row->sinks + row->recent >= n_ctx) return 0;
    const double step = 1.0 / 16;
    double dk = kfree && vfree ? -row->split : 0, dv = kfree && vfree ? row->split : 0;
    /* the largest b on the grid whose setting fits; fixed templates ignore b */
    for (double b = 8; b >= min_bits - 1e-9; b -= step) {
        double bk = b + dk, bv = b + dv;
        if ((kfree && (bk < min_bits - 1e-9 || bk > 8)) || (vfree && (bv < min_bits - 1e-9 || bv > 8))) continue;
        if (!fill_template(row->k, bk, k, cap) || !fill_template(row->v, bv, v, cap)) return 0;
        double sk = side_bits(k, row->window, n_ctx, d, row->sinks, row->recent);
        double sv = side_bits(v, row->window, n_ctx, d, row->sinks, row->recent);
        if (sk < 0 || sv < 0) return 0;
        double t = 0.5 * (sk + sv);
        if (t <= budget + 1e-9) {
            *bits = t;
            return 1;
        }
        if (!kfree && !vfree) return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ bit allocation ---- */

/* Distortion of layer l's KV head h (h < 0: all its heads) at total bits tb per row: the
 * water-filled errors, summed over the heads; relative: over their variance. */
static double unit_dist(const struct kvc_calib *c, int kind, int l, int h, int tb, int relative) {
    int d = c->id.head_dim;
    uint8_t bits[4096];
    double s = 0, var = 0;
    for (int hh = h < 0 ? 0 : h; hh < (h < 0 ? c->id.n_head_kv : h + 1); hh++) {
        const struct kvc_calib_slot *cs = kvc_calib_slot_get(c, l, hh, kind);
        kvc_calib_alloc_bits(cs, d, c->max_bits, tb, bits);
        for (int k = 0; k < d; k++) {
            s += cs->mse[(size_t)bits[k] * d + k];
            var += cs->mse[k];
        }
    }
    return relative ? (var > 0 ? s / var : 0) : s;
}

/* Greedy water-filling of bit steps over units: layers, or (layer, KV head) pairs. */
static int alloc_units(const struct kvc_calib *c, int kind, double mean, double step, double lo, double hi,
                       int relative, int per_head, double *out) {
    int L = c->id.n_layer, H = c->id.n_head_kv, d = c->id.head_dim, U = per_head ? L * H : L;
    if (L < 1 || H < 1 || d > 4096 || !(step > 0) || mean < lo - 1e-9 || mean > hi + 1e-9) return 0;
    long units = (long)floor(U * (mean - lo) / step + 1e-9); /* steps to hand out above lo */
    int *n = calloc((size_t)U, sizeof *n);
    if (!n) return 0;
    int top = (int)floor((hi - lo) / step + 1e-9);
    for (long u = 0; u < units; u++) {
        int best = -1;
        double gain = -INFINITY;
        for (int i = 0; i < U; i++) {
            if (n[i] >= top) continue;
            double b0 = lo + n[i] * step, b1 = b0 + step;
            const int l = per_head ? i / H : i, h = per_head ? i % H : -1;
            double g = unit_dist(c, kind, l, h, (int)llround(b0 * d), relative) -
                       unit_dist(c, kind, l, h, (int)llround(b1 * d), relative);
            if (g > gain) {
                gain = g;
                best = i;
            }
        }
        if (best < 0) break;
        n[best]++;
    }
    for (int i = 0; i < U; i++) out[i] = lo + n[i] * step;
    free(n);
    return U;
}

int kvc_tune_alloc_layers(const struct kvc_calib *c, int kind, double mean, double step, double lo, double hi,
                          int relative, double *out) {
    return alloc_units(c, kind, mean, step, lo, hi, relative, 0, out);
}

int kvc_tune_alloc_heads(const struct kvc_calib *c, int kind, double mean, double step, double lo, double hi,
                         double *out) {
    return alloc_units(c, kind, mean, step, lo, hi, 0, 1, out);
}

/* spec with "bits=X" replaced by "layers=B0/B1/..." of kvc_tune_alloc_layers (mode 1, 2:
 * relative) or "heads=..." of kvc_tune_alloc_heads (mode 3): the same bytes as the uniform
 * row, moved between layers (heads) in whole bytes, at least 1 bit; 0 when it does not fit cap
 * or the allocation fails. */
static int alloc_spec(const struct kvc_calib *c, const char *spec, int is_value, int mode, char *out, size_t cap) {
    const char *b = strstr(spec, "bits=");
    if (strncmp(spec, "pca:", 4) != 0 || !b) { /* other codecs keep their one row size */
        int n = snprintf(out, cap, "%s", spec);
        return n >= 0 && (size_t)n < cap;
    }
    char *end;
    double mean = strtod(b + 5, &end);
    /* keys=pair codes pre-RoPE keys too (its per-pair transform fitted on the same slot): the
     * full transform's distortion curves rank its heads */
    int kind = is_value                                                   ? KVC_CALIB_V
               : strstr(spec, "keys=pre") || strstr(spec, "keys=pair") ? KVC_CALIB_K_PRE
                                                                         : KVC_CALIB_K_POST;
    double lb[PCA_LAYERS_CAP];
    const int nv = mode == 3 ? c->id.n_layer * c->id.n_head_kv : c->id.n_layer;
    if (nv > PCA_LAYERS_CAP) return 0;
    /* in whole bytes per row: the uniform row's bytes per layer, moved one byte (8 / d bits) at a time */
    int d = c->id.head_dim;
    double byte = 8.0 / d;
    mean = ceil(mean * d / 8 - 1e-9) * byte;
    const double lo = byte * ceil(1.0 / byte - 1e-9);
    if (!(mode == 3 ? kvc_tune_alloc_heads(c, kind, mean, byte, lo, 8.0, lb)
                    : kvc_tune_alloc_layers(c, kind, mean, byte, lo, 8.0, mode == 2, lb)))
        return 0;
    size_t o = 0;
    int n = snprintf(out, cap, "%.*s%s=", (int)(b - spec), spec, mode == 3 ? "heads" : "layers");
    if (n < 0 || (size_t)n >= cap) return 0;
    o = (size_t)n;
    for (int l = 0; l < nv; l++) {
        n = snprintf(out + o, cap - o, "%s%.6g", l ? "/" : "", lb[l]);
        if (n < 0 || (size_t)n >= cap - o) return 0;
        o += (size_t)n;
    }
    n = snprintf(out + o, cap - o, "%s", end);
    return n >= 0 && (size_t)n < cap - o;
}

/* ------------------------------------------------------------------ scoring ---- */

/* The f16 reference over the held-out chunks and the scratch of a scoring pass. */
struct heldout {
    int n_chunks, n_ctx, n_batch, first, per, nv, bos;
    int32_t *tok;        /* (n_chunks, n_ctx) */
    float *ref;          /* (n_chunks, per, nv) f16-cache log-probs of the scored positions */
    int *ref_top;        /* (n_chunks, per) */
    float *lp;           /* (nv) scratch */
    double *kld;         /* (n_chunks * per) */
    double ref_nll;
};

/* Run chunk ci on c; with is_ref store log-probs, else accumulate KLD / top-1 / NLL. */
static kvc_status score_chunk(kvc_ctx *c, struct heldout *h, int ci, int is_ref, long *nk, long *ntop,
                              double *nll, kvc_error *e) {
    int32_t *tok = h->tok + (size_t)ci * h->n_ctx;
    kvc_ctx_reset(c);
    for (int i = 0; i < h->n_ctx; i += h->n_batch) {
        int nb = h->n_ctx - i < h->n_batch ? h->n_ctx - i : h->n_batch;
        int32_t save = tok[i];
        if (i == 0 && h->bos >= 0) tok[0] = h->bos;
        kvc_status st = kvc_eval(c, tok + i, nb, i + nb > h->first, e);
        tok[i] = save;
        if (st) return st;
        if (i + nb <= h->first) continue;
        const float *lg = kvc_get_logits(c);
        for (int j = i > h->first ? i : h->first; j < i + nb && j < h->n_ctx - 1; j++) {
            size_t r = (size_t)ci * h->per + (size_t)(j - h->first);
            const float *x = lg + (size_t)(j - i) * h->nv;
            if (is_ref) {
                float *lp = h->ref + r * h->nv;
                h->ref_top[r] = kvc_eval_log_softmax(x, h->nv, lp);
                *nll -= lp[tok[j + 1]];
                continue;
            }
            int am = kvc_eval_log_softmax(x, h->nv, h->lp);
            const float *bl = h->ref + r * h->nv;
            double kl = 0;
            for (int t = 0; t < h->nv; t++) kl += exp((double)bl[t]) * ((double)bl[t] - h->lp[t]);
            h->kld[(*nk)++] = kl;
            *ntop += am == h->ref_top[r];
            *nll -= h->lp[tok[j + 1]];
        }
    }
    return KVC_OK;
}

/* Score one candidate; its per-token KLDs (unsorted, n_chunks * per) go to tok when not NULL. */
static kvc_status score_cand(const struct kvc_model *m, const struct kvc_ctx_params *p, struct heldout *h,
                             struct kvc_tune_cand *cd, double *tok, kvc_error *e) {
    double t0 = kvc_eval_now();
    kvc_ctx *c = NULL;
    kvc_status st = kvc_ctx_create(m, p, &c, e);
    if (st) return st;
    struct kvc_kv_info kv;
    kvc_ctx_kv_info(c, &kv);
    cd->bits = kv.bits_per_element;
    long nk = 0, ntop = 0;
    double nll = 0;
    for (int ci = 0; ci < h->n_chunks && !st; ci++) st = score_chunk(c, h, ci, 0, &nk, &ntop, &nll, e);
    kvc_ctx_free(c);
    if (st) return st;
    double s = 0;
    for (long i = 0; i < nk; i++) s += h->kld[i];
    if (tok) memcpy(tok, h->kld, (size_t)nk * sizeof *tok);
    qsort(h->kld, (size_t)nk, sizeof(double), kvc_eval_cmp_dbl);
    double pos = 0.99 * (double)(nk - 1);
    long lo = (long)pos;
    cd->kld_mean = s / nk;
    cd->kld_p99 = h->kld[lo] + (lo + 1 < nk ? (pos - lo) * (h->kld[lo + 1] - h->kld[lo]) : 0);
    cd->top1 = (double)ntop / nk;
    cd->ppl_change_pct = 100.0 * (exp((nll - h->ref_nll) / nk) - 1);
    cd->seconds = kvc_eval_now() - t0;
    cd->scored = 1;
    return KVC_OK;
}

/* ------------------------------------------------------------------ driver ---- */

/* 1 when the value codec shrinks decoded values toward 0 (hdc's norm / ls / rms scales:
 * docs/hdc.md): every attention output is then biased toward 0, which costs PPL on texts where
 * the held-out KLD does not show it (docs/frontier.md, session 12). */
static int values_shrink(const char *v) {
    return strncmp(v, "hdc", 3) == 0 &&
           (strstr(v, "scale=norm") || strstr(v, "scale=ls") || strstr(v, "scale=rms"));
}

/* The mean of a - b over n paired tokens is within 2 standard errors of 0 (or below it). */
static int paired_tie(const double *a, const double *b, long n) {
    double s = 0, ss = 0;
    for (long i = 0; i < n; i++) s += a[i] - b[i];
    const double mean = s / n;
    for (long i = 0; i < n; i++) ss += (a[i] - b[i] - mean) * (a[i] - b[i] - mean);
    const double se = n > 1 ? sqrt(ss / (n - 1) / n) : 0;
    return mean <= 2 * se;
}

/* 1 when name is one of the comma-separated names in list */
static int name_in(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && strncmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static void on_calib_progress(void *user, int64_t done, int64_t total) {
    const struct kvc_tune_opts *o = user;
    if (done >= total || done % 8192 < 512) say(o, "calibrate: %lld / %lld tokens", (long long)done, (long long)total);
}

kvc_status kvc_tune(const struct kvc_model *m, const char *text, size_t len, const struct kvc_tune_opts *opt,
                    const char *out_path, struct kvc_tune_result *r, kvc_error *err) {
    memset(r, 0, sizeof *r);
    r->best = -1;
    r->tie_from = -1;
    struct kvc_tune_opts o;
    if (opt) o = *opt;
    else kvc_tune_opts_default(&o);
    if (!o.rows) o.rows = kvc_tune_rows(&o.n_rows);
    if (!(o.bits > 0 && o.bits <= 16) || o.n_ctx < 8 || o.n_batch < 1 || o.n_threads < 1 || o.heldout_chunks < 1 ||
        o.calib_tokens < 2 || !out_path || o.n_rows < 1)
        return kvc_fail(err, KVC_ERR_ARG, "tune: bad options (--bits %g: needs 0 < B <= 16; -c %d; held-out chunks %d)",
                        o.bits, o.n_ctx, o.heldout_chunks);
    double t0 = kvc_eval_now();
    const struct kvc_model_info *in = kvc_model_get_info(m);
    struct kvc_vocab_info vi;
    kvc_vocab_get_info(kvc_model_vocab(m), &vi);
    struct heldout h = {.n_chunks = o.heldout_chunks, .n_ctx = o.n_ctx, .n_batch = o.n_batch, .nv = in->n_vocab,
                        .bos = vi.add_bos ? in->bos_id : -1};
    if (h.n_batch > h.n_ctx) h.n_batch = h.n_ctx;
    h.first = o.n_ctx / 2;
    h.per = o.n_ctx - h.first - 1;
    int32_t *tok = NULL;
    int n_tok = 0;
    struct kvc_calib *cal = NULL;
    kvc_ctx *cref = NULL;
    double *tok_kld = NULL;
    char tmp_path[1100] = "";
    kvc_status st = kvc_tokenize(m, text, len, 1, &tok, &n_tok, err);
    if (st) return st;
    int64_t n_hold = (int64_t)o.heldout_chunks * o.n_ctx, n_fit = n_tok - n_hold;
    r->n_tokens_text = n_tok;
    r->n_fit = n_fit;
    if (n_fit < o.n_ctx) {
        st = kvc_fail(err, KVC_ERR_RANGE,
                      "tune: the text has %d tokens; %d held-out chunks of %d leave %lld to fit on (need >= %d)",
                      n_tok, o.heldout_chunks, o.n_ctx, (long long)n_fit, o.n_ctx);
        goto done;
    }
    h.tok = tok + n_fit;
    say(&o, "text: %d tokens; fit on the first %lld, score on the last %lld (%d chunks of %d)", n_tok,
        (long long)n_fit, (long long)n_hold, o.heldout_chunks, o.n_ctx);

    /* 1. calibration on the fit part (or a given file, which must not reach the held-out tail) */
    if (o.calib_path) {
        if ((st = kvc_calib_load(o.calib_path, m, &cal, err))) goto done;
        if ((int64_t)cal->n_tokens > n_fit) {
            st = kvc_fail(err, KVC_ERR_ARG,
                          "tune: %s was fitted on %llu tokens, more than the %lld before the held-out tail: "
                          "it may have seen the tokens scored",
                          o.calib_path, (unsigned long long)cal->n_tokens, (long long)n_fit);
            goto done;
        }
        say(&o, "calibration: %s (%llu tokens)", o.calib_path, (unsigned long long)cal->n_tokens);
    } else {
        struct kvc_calib_opts co;
        kvc_calib_opts_default(&co);
        co.n_ctx = o.n_ctx;
        co.n_batch = o.n_batch;
        co.n_threads = o.n_threads;
        co.max_tokens = o.calib_tokens < n_fit ? o.calib_tokens : n_fit;
        co.metric = o.metric;
        co.text_name = o.text_name;
        co.progress = on_calib_progress;
        co.progress_user = &o;
        if ((st = kvc_calib_fit(m, tok, n_fit, &co, &cal, err))) goto done;
    }
    snprintf(tmp_path, sizeof tmp_path, "%s.tune-calib.tmp", out_path);
    cal->has_preset = 0;
    if ((st = kvc_calib_save(cal, tmp_path, err))) goto done;

    /* 2. the f16 reference on the held-out chunks */
    h.ref = malloc((size_t)h.n_chunks * h.per * h.nv * sizeof *h.ref);
    h.ref_top = malloc((size_t)h.n_chunks * h.per * sizeof *h.ref_top);
    h.lp = malloc((size_t)h.nv * sizeof *h.lp);
    h.kld = malloc((size_t)h.n_chunks * h.per * sizeof *h.kld);
    r->cand = calloc((size_t)o.n_rows, sizeof *r->cand);
    const long ntok = (long)h.n_chunks * h.per;
    tok_kld = malloc((size_t)o.n_rows * (size_t)ntok * sizeof *tok_kld); /* (n_rows, ntok) */
    if (!h.ref || !h.ref_top || !h.lp || !h.kld || !r->cand || !tok_kld) {
        st = kvc_fail(err, KVC_ERR_NOMEM, "tune: out of memory for %d x %d reference log-probs", h.n_chunks * h.per, h.nv);
        goto done;
    }
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = o.n_ctx;
    p.n_batch = h.n_batch;
    p.n_threads = o.n_threads;
    if ((st = kvc_ctx_create(m, &p, &cref, err))) goto done;
    long nk0 = 0, nt0 = 0;
    for (int ci = 0; ci < h.n_chunks && !st; ci++) st = score_chunk(cref, &h, ci, 1, &nk0, &nt0, &h.ref_nll, err);
    if (st) goto done;
    r->n_heldout_scored = (int64_t)h.n_chunks * h.per;
    r->base_ppl = exp(h.ref_nll / r->n_heldout_scored);
    say(&o, "f16 reference: PPL %.4f over %lld held-out tokens", r->base_ppl, (long long)r->n_heldout_scored);

    /* 3. every row sized to the budget, scored */
    r->n_cand = o.n_rows;
    p.kv_calib = tmp_path;
    for (int i = 0; i < o.n_rows; i++) {
        const struct kvc_tune_row *row = &o.rows[i];
        struct kvc_tune_cand *cd = &r->cand[i];
        snprintf(cd->name, sizeof cd->name, "%s", row->name);
        cd->sinks = row->sinks;
        cd->recent = row->recent;
        cd->fast = row->fast;
        snprintf(cd->window, sizeof cd->window, "%s", row->window ? row->window : "f16");
        if (o.row_names ? !name_in(o.row_names, row->name) : o.fast_only && !row->fast) continue;
        if (o.time_limit > 0 && kvc_eval_now() - t0 > o.time_limit) {
            say(&o, "[%d/%d] %-14s skipped: the time limit (%.0f s) has passed", i + 1, o.n_rows, row->name, o.time_limit);
            continue;
        }
        if (!kvc_tune_size_row(row, o.bits, o.n_ctx, in->head_dim, o.min_codec_bits, cd->kv_k, cd->kv_v,
                               sizeof cd->kv_k, &cd->bits)) {
            say(&o, "[%d/%d] %-14s does not fit %.3f bits", i + 1, o.n_rows, row->name, o.bits);
            continue;
        }
        if (row->alloc) { /* per-layer bits of the same mean */
            char k2[KVC_SPEC_MAX], v2[KVC_SPEC_MAX];
            if (!alloc_spec(cal, cd->kv_k, 0, row->alloc, k2, sizeof k2) ||
                !alloc_spec(cal, cd->kv_v, 1, row->alloc, v2, sizeof v2)) {
                say(&o, "[%d/%d] %-14s per-layer specs do not fit %d characters: skipped", i + 1, o.n_rows, row->name,
                    KVC_SPEC_MAX - 1);
                continue;
            }
            snprintf(cd->kv_k, sizeof cd->kv_k, "%s", k2);
            snprintf(cd->kv_v, sizeof cd->kv_v, "%s", v2);
        }
        p.kv_k = cd->kv_k;
        p.kv_v = cd->kv_v;
        p.kv_sinks = row->sinks;
        p.kv_recent = row->recent;
        p.kv_window = cd->window;
        if ((st = score_cand(m, &p, &h, cd, tok_kld + (size_t)i * ntok, err))) goto done;
        if (cd->bits > o.bits + 1e-9) { /* the cache counted more than the sizing: never choose it */
            cd->scored = 0;
            say(&o, "[%d/%d] %-14s %.4f bits counted > budget: dropped", i + 1, o.n_rows, row->name, cd->bits);
            continue;
        }
        say(&o, "[%d/%d] %-14s K %s  V %s  S %d R %d (%s): %.3f bits, KLD %.5f p99 %.4f top-1 %.4f PPL %+.2f %% (%.0f s)",
            i + 1, o.n_rows, row->name, cd->kv_k, cd->kv_v, row->sinks, row->recent, cd->window, cd->bits, cd->kld_mean,
            cd->kld_p99, cd->top1, cd->ppl_change_pct, cd->seconds);
        if (r->best < 0 || cd->kld_mean < r->cand[r->best].kld_mean) r->best = i;
    }
    if (r->best < 0) {
        st = kvc_fail(err, KVC_ERR_RANGE, "tune: no candidate setting fits %.3f bits per element at -c %d", o.bits, o.n_ctx);
        goto done;
    }
    /* a best whose values shrink gives way to the lowest-KLD candidate with unbiased values
     * whose held-out KLD it does not beat beyond the noise (paired, 2 standard errors) */
    if (values_shrink(r->cand[r->best].kv_v)) {
        int alt = -1;
        for (int i = 0; i < o.n_rows; i++) {
            const struct kvc_tune_cand *c = &r->cand[i];
            if (!c->scored || values_shrink(c->kv_v) || (alt >= 0 && c->kld_mean >= r->cand[alt].kld_mean)) continue;
            if (paired_tie(tok_kld + (size_t)i * ntok, tok_kld + (size_t)r->best * ntok, ntok)) alt = i;
        }
        if (alt >= 0) {
            say(&o, "%s (KLD %.5f) ties %s (%.5f) within the held-out noise and its values are unbiased: chosen",
                r->cand[alt].name, r->cand[alt].kld_mean, r->cand[r->best].name, r->cand[r->best].kld_mean);
            r->tie_from = r->best;
            r->best = alt;
        }
    }

    /* 4. the preset: calibration + the chosen setting */
    const struct kvc_tune_cand *b = &r->cand[r->best];
    cal->has_preset = 1;
    memset(&cal->preset, 0, sizeof cal->preset);
    snprintf(cal->preset.kv_k, sizeof cal->preset.kv_k, "%s", b->kv_k);
    snprintf(cal->preset.kv_v, sizeof cal->preset.kv_v, "%s", b->kv_v);
    cal->preset.sinks = b->sinks;
    cal->preset.recent = b->recent;
    snprintf(cal->preset.kv_window, sizeof cal->preset.kv_window, "%s", b->window);
    cal->preset.ctx = o.n_ctx;
    cal->preset.bits_per_element = b->bits;
    snprintf(cal->preset.note, sizeof cal->preset.note,
             "kvcodec tune --bits %g: row %s, held-out KLD %.5f (top-1 %.4f) over %lld tokens of %s after %lld fit tokens%s",
             o.bits, b->name, b->kld_mean, b->top1, (long long)r->n_heldout_scored, o.text_name, (long long)n_fit,
             r->tie_from >= 0 ? " (ties a row with shrinking values)" : "");
    st = kvc_calib_save(cal, out_path, err);
    r->seconds = kvc_eval_now() - t0;
done:
    if (tmp_path[0]) remove(tmp_path);
    kvc_ctx_free(cref);
    kvc_calib_free(cal);
    free(h.ref);
    free(h.ref_top);
    free(h.lp);
    free(h.kld);
    free(tok_kld);
    free(tok);
    if (st) {
        free(r->cand);
        r->cand = NULL;
        r->n_cand = 0;
    }
    return st;
}
