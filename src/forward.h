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
/* kvc_ctx_truncate that also cuts a cache with a recent window: the window's rows below n that
 * the ring lost are read from their codec rows until recent new positions refill it, so the next
 * recent positions attend to a lossier cache (bench's depths: the same rows are read). */
kvc_status kvc_ctx_truncate_window(kvc_ctx *c, int n, kvc_error *err);
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

/* Bytes of the context's float buffers for a batch of n_batch tokens and n_threads threads, as
 * kvc_ctx_create allocates them (the memory model of src/plan.c adds them up from here). */
struct kvc_ctx_buffers {
    size_t x;      /* x, xb: (B, n_embd) each */
    size_t q;      /* q, att: (B, n_head * head_dim) each */
    size_t kv;     /* k, v: (B, n_head_kv * head_dim) each */
    size_t hb;     /* hb, hb2: (B, n_ff) each */
    size_t logits; /* (B, n_vocab) */
    size_t rope;   /* (B, head_dim) */
    size_t rows;   /* (n_threads, 2, B, head_dim): per-thread K/V row staging */
    size_t total;  /* all of the above, pairs counted twice */
};
void kvc_ctx_buffer_sizes(const struct kvc_model_info *in, int n_batch, int n_threads, struct kvc_ctx_buffers *b);

#endif
