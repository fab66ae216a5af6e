/* calibrate.h - the calibration run: drives the model over a calibration text, gathers the
 * statistics of keys (before and after RoPE), values and queries through the forward pass's
 * observer, and fits a struct kvc_calib (src/kv/calib_internal.h) in the plain or the
 * attention metric. Also the model identity that ties a calibration file to a model. */
#ifndef KVC_EVAL_CALIBRATE_H
#define KVC_EVAL_CALIBRATE_H

#include "../kv/calib_internal.h"

struct kvc_calib_opts {
    int n_ctx;              /* chunk length (first token BOS when the vocabulary adds it); default 2048 */
    int n_batch;            /* tokens per kvc_eval; default 512 */
    int n_threads;          /* default 2 */
    int64_t max_tokens;     /* tokens to run (whole chunks); default 131072 */
    int sample_rows;        /* rows sampled per slot for fitting steps; default 4096 */
    int metric;             /* attention metric for k_pre (bit 0) and v (bit 1) slots; default 3; 0: plain PCA */
    const char *text_name;  /* recorded in the file */
    /* progress: called after each batch with tokens done and the total */
    void (*progress)(void *user, int64_t done, int64_t total);
    void *progress_user;
};
void kvc_calib_opts_default(struct kvc_calib_opts *o);

/* Run model m over tokens (the whole text, tokenized; chunks of n_ctx whose first token is
 * BOS when the vocabulary adds BOS, as kvc_perplexity's chunks) and
 * fit the statistics of every (layer, KV head, kind). */
kvc_status kvc_calib_fit(const struct kvc_model *m, const int32_t *tokens, int64_t n_tokens,
                         const struct kvc_calib_opts *o, struct kvc_calib **out, kvc_error *err);

/* Metric transforms (d x d row-major, T and T^-1) from second moments:
 * keys before RoPE: w (d) = summed E[q_i^2] of the KV head's query heads; RoPE's relative
 * rotation averages each pair, so T = diag(sqrt((w_a + w_b) / 2)) normalised to mean 1, over the
 * RoPE pairs (a, b) = (2i, 2i + 1), or (i, i + d/2) when neox (qwen2's layout);
 * values: M (d x d) = sum_g W_o,g^T W_o,g, T = M^(1/2) (symmetric) normalised to trace d.
 * Eigenvalues below 1e-6 of the largest are raised to it. */
void kvc_calib_metric_pairs(int d, int neox, const double *w, float *T, float *Tinv);
kvc_status kvc_calib_metric_sqrt(int d, const double *M, float *T, float *Tinv, kvc_error *err);

#endif
