/* logits.c - logits of a token sequence, position by position, for comparing kvcodec with
 * another engine (`kvcodec logits`, the reference tests): top-k (id, logit) per position,
 * the top token's softmax probability, and the full row after the last token. */
#include "forward.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void kvc_logits_report_free(struct kvc_logits_report *r) {
    if (!r) return;
    free(r->top_ids);
    free(r->top_logits);
    free(r->top1_prob);
    free(r->last);
    memset(r, 0, sizeof *r);
}

/* top-k of one row by insertion into a sorted list (k is small); ties keep the lower id */
static void row_topk(const float *l, int V, int k, int32_t *ids, float *vals) {
    int n = 0;
    for (int j = 0; j < V; j++) {
        float x = l[j];
        if (n == k && !(x > vals[k - 1])) continue;
        int i = n < k ? n++ : k - 1;
        while (i > 0 && x > vals[i - 1]) {
            vals[i] = vals[i - 1];
            ids[i] = ids[i - 1];
            i--;
        }
        vals[i] = x;
        ids[i] = j;
    }
}

kvc_status kvc_logits_collect(kvc_ctx *c, const int32_t *ids, int n, int top_k,
                              struct kvc_logits_report *out, kvc_error *err) {
    memset(out, 0, sizeof *out);
    const int V = kvc_ctx_vocab(c), B = kvc_ctx_batch(c);
    if (n < 1) return kvc_fail(err, KVC_ERR_ARG, "logits: no tokens to evaluate");
    if (top_k < 1 || top_k > V)
        return kvc_fail(err, KVC_ERR_ARG, "logits: --top %d outside 1..%d (vocabulary)", top_k, V);
    out->n_tokens = n;
    out->top_k = top_k;
    out->n_vocab = V;
    out->top_ids = malloc(sizeof(int32_t) * (size_t)n * (size_t)top_k);
    out->top_logits = malloc(sizeof(float) * (size_t)n * (size_t)top_k);
    out->top1_prob = malloc(sizeof(float) * (size_t)n);
    out->last = malloc(sizeof(float) * (size_t)V);
    if (!out->top_ids || !out->top_logits || !out->top1_prob || !out->last) {
        kvc_logits_report_free(out);
        return kvc_fail(err, KVC_ERR_NOMEM, "logits: out of memory for %d positions x top %d", n, top_k);
    }
    for (int p0 = 0; p0 < n; p0 += B) {
        const int T = n - p0 < B ? n - p0 : B;
        kvc_status st = kvc_eval(c, ids + p0, T, 1, err);
        if (st) {
            kvc_logits_report_free(out);
            return st;
        }
        const float *lg = kvc_get_logits(c);
        for (int t = 0; t < T; t++) {
            const float *l = lg + (size_t)t * V;
            const size_t i = (size_t)(p0 + t);
            row_topk(l, V, top_k, out->top_ids + i * top_k, out->top_logits + i * top_k);
            double mx = out->top_logits[i * top_k], sum = 0;
            for (int j = 0; j < V; j++) sum += exp((double)l[j] - mx);
            out->top1_prob[i] = (float)(1.0 / sum);
            if (p0 + t == n - 1) memcpy(out->last, l, sizeof(float) * (size_t)V);
        }
    }
    return KVC_OK;
}
