/* forward.h - internal hooks of the forward pass for tools that look inside it:
 * an observer that sees each layer's key rows before and after RoPE, value rows and queries
 * (calibration gathers PCA statistics through it). */
#ifndef KVC_FORWARD_H
#define KVC_FORWARD_H

#include "kvcodec.h"

/* Called once per layer per kvc_eval, after the K/V projections: rows for the T tokens at
 * positions p0..p0+T-1, each (T, n_head_kv * head_dim), KV head h at columns h*head_dim;
 * q: the queries after RoPE, (T, n_head * head_dim). */
typedef void (*kvc_kv_observer)(void *user, int layer, int p0, int T, const float *k_pre_rope,
                                const float *k_post_rope, const float *v, const float *q);
/* Set (or clear with fn = NULL) the observer of a context. */
kvc_status kvc_ctx_set_observer(kvc_ctx *c, kvc_kv_observer fn, void *user, kvc_error *err);

/* Batch limit (n_batch) and vocabulary size of a context, for library code outside forward.c. */
int kvc_ctx_batch(const kvc_ctx *c);
int kvc_ctx_vocab(const kvc_ctx *c);
/* Layers, KV heads and head dimension of the context's cache. */
void kvc_ctx_kv_shape(const kvc_ctx *c, int *n_layer, int *n_head_kv, int *head_dim);
/* Append T positions (n_past .. n_past + T - 1, T <= n_batch) whose rows are given instead of
 * computed: k (keys after RoPE) and v are (n_layer, T, n_head_kv * head_dim). The rows are
 * encoded by the cache's codecs exactly as kvc_eval would store them (synthetic fills). */
kvc_status kvc_ctx_append_kv(kvc_ctx *c, int T, const float *k, const float *v, kvc_error *err);
/* The context a sequence belongs to. */
kvc_ctx *kvc_seq_ctx(const kvc_seq *s);
/* kvc_ctx_append_kv for a sequence of the context (T <= the sequence's batch limit). */
kvc_status kvc_seq_append_kv(kvc_seq *s, int T, const float *k, const float *v, kvc_error *err);
/* Decode cached rows of (layer, KV head) at positions p0..p0+n-1 into k, v (n, head_dim). */
kvc_status kvc_ctx_read_kv(const kvc_ctx *c, int layer, int head, int p0, int n, float *k, float *v,
                           kvc_error *err);

#endif
