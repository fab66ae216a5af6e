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

#endif
