/* tune.h - `kvcodec tune`: calibrate on the first part of a calibration text, then score a
 * table of candidate cache settings (K / V codec, bits, sinks and recent window and their codec) sized to
 * one budget of bits per element by their KL divergence from the f16 cache on the held-out
 * rest of that text, and write the best one as a preset (calibration + setting). */
#ifndef KVC_EVAL_TUNE_H
#define KVC_EVAL_TUNE_H

#include "calibrate.h"

/* One row of the candidate table. A codec template holds "{b}" where the tuner puts the bits
 * it sizes to the budget (K gets b - split, V b + split); a template without "{b}" is used as
 * written and the other side takes the rest of the budget. */
struct kvc_tune_row {
    const char *name;      /* short label for progress lines and the preset's note */
    const char *k, *v;     /* codec templates */
    int sinks, recent;     /* window rows */
    double split;          /* V bits - K bits = 2 * split when both are sized */
    int fast;              /* 1: O(d) work per key row (keys=pair / post); tune scores only these unless --all */
    int alloc;             /* per-layer bits (pca "bits={b}" becomes "layers=..."): 0 uniform, 1 by the
                              calibrated distortion in the attention metric, 2 by that distortion
                              relative to each layer's variance (kvc_tune_alloc_layers), 3 per (layer,
                              KV head) by that distortion ("heads=...", kvc_tune_alloc_heads) */
    const char *window;    /* codec of the sink / recent rows (NULL: f16) */
};
/* The built-in table (kvc_tune_rows()[0..*n-1]). */
const struct kvc_tune_row *kvc_tune_rows(int *n);

struct kvc_tune_opts {
    double bits;           /* budget: bits per element at n_ctx (required, > 0) */
    int n_ctx;             /* target context = held-out chunk length (default 2048) */
    int n_batch, n_threads;   /* default 512, 2 */
    int64_t calib_tokens;  /* tokens of the fit part to calibrate on (default 65536) */
    int heldout_chunks;    /* chunks of n_ctx tokens at the end of the text to score on (default 2) */
    int metric;            /* calibration metric (as kvc_calib_opts; default 3 = attn) */
    int fast_only;         /* only rows marked fast (default 1; ignored when row_names names rows) */
    const char *row_names; /* comma-separated row names to score (NULL: all) */
    const char *calib_path;    /* reuse this calibration (fitted on the fit part) instead of calibrating */
    const char *text_name;     /* recorded in the calibration / note */
    const struct kvc_tune_row *rows; /* candidate table (default: kvc_tune_rows()) */
    int n_rows;
    double min_codec_bits;     /* smallest sized codec bits (default 1.0) */
    double time_limit;         /* seconds (0 = none): rows not started by then are skipped */
    /* progress lines (no newline), one call per step */
    void (*progress)(void *user, const char *line);
    void *progress_user;
};
void kvc_tune_opts_default(struct kvc_tune_opts *o);

/* A candidate as scored. */
struct kvc_tune_cand {
    char name[48];
    char kv_k[KVC_SPEC_MAX], kv_v[KVC_SPEC_MAX];
    char window[KVC_WINDOW_MAX]; /* codec of the sink / recent rows */
    int sinks, recent, fast;
    double bits;           /* bits per element at n_ctx (the cache's own count) */
    double kld_mean, kld_p99, top1, ppl_change_pct;
    double seconds;
    int scored;            /* 0: skipped (did not fit the budget) */
};
struct kvc_tune_result {
    int n_cand, best;      /* best: index into cand, -1 when none fits */
    int tie_from;          /* the lowest-KLD candidate when best replaced it (its values shrink and
                              best's unbiased values tie it within the held-out noise), else -1 */
    struct kvc_tune_cand *cand;   /* (n_cand), malloc'ed: kvc_tune_result_free */
    int64_t n_tokens_text, n_fit, n_heldout_scored;
    double base_ppl, seconds;
};
void kvc_tune_result_free(struct kvc_tune_result *r);

/* Tokenize text (len bytes), split it (fit part = all but the last heldout_chunks * n_ctx
 * tokens), calibrate (or load opts->calib_path), score the candidates and write the best as
 * a preset to out_path. */
kvc_status kvc_tune(const struct kvc_model *m, const char *text, size_t len, const struct kvc_tune_opts *o,
                    const char *out_path, struct kvc_tune_result *r, kvc_error *err);

/* Bit allocation across layers for one kind of row (KVC_CALIB_K_PRE / K_POST / V): per-layer
 * bits out[l] in steps of `step` within [lo, hi], summing to n_layer * mean (rounded down to a
 * step), chosen greedily step by step where the calibrated distortion drops most: D_l(b) = sum
 * over the layer's KV heads of the per-coefficient errors (calibration mse tables, in the
 * attention metric) after water-filling b * d bits inside the row (kvc_calib_alloc_bits);
 * relative = 1 divides D_l by the layer's total variance. Returns the number of layers, or 0
 * when mean is outside [lo, hi]. */
int kvc_tune_alloc_layers(const struct kvc_calib *c, int kind, double mean, double step, double lo, double hi,
                          int relative, double *out);
/* The same over (layer, KV head) units: out[l * n_head_kv + h] (pca heads=), D of one head's
 * rows. Returns n_layer * n_head_kv, or 0. */
int kvc_tune_alloc_heads(const struct kvc_calib *c, int kind, double mean, double step, double lo, double hi,
                         double *out);

/* Size a row to a budget: the specs and the bits at n_ctx for head dim d. Returns 0 when the
 * row cannot fit (a sized side under min_bits). Exposed for tests. */
int kvc_tune_size_row(const struct kvc_tune_row *row, double budget, int n_ctx, int d, double min_bits,
                      char *k, char *v, size_t cap, double *bits);

#endif
