/* fill.h - synthetic KV-cache fills for long-context speed tests: per-(layer, KV head)
 * statistics (mean and covariance) of the keys (after RoPE) and values of a short real
 * prefill, and a fill that appends rows drawn from them, encoded by the cache's codecs as
 * real rows would be. Decoding such rows costs exactly what real rows cost for every codec
 * that does not pick rows by content (not hdc-select: fill that one by real prefill). */
#ifndef KVC_FILL_H
#define KVC_FILL_H

#include "kvcodec.h"
#include <stdint.h>

struct kvc_kv_stats;

/* Run tokens tok[0..n) through c (appended to what it holds, batches of its n_batch) and
 * gather the statistics of the rows they produce. */
kvc_status kvc_kv_stats_collect(kvc_ctx *c, const int32_t *tok, int n, struct kvc_kv_stats **out,
                                kvc_error *err);
void kvc_kv_stats_free(struct kvc_kv_stats *s); /* NULL is a no-op */
/* Mean (d) and covariance (d, d) of keys (is_v = 0) or values of (layer, head); NULL when
 * out of range. n_rows: how many rows they came from. */
const double *kvc_kv_stats_mean(const struct kvc_kv_stats *s, int layer, int head, int is_v);
const double *kvc_kv_stats_cov(const struct kvc_kv_stats *s, int layer, int head, int is_v);
int kvc_kv_stats_n_rows(const struct kvc_kv_stats *s);

/* Append rows until c holds `depth` positions: each row mean + (a + b) / sqrt(2), with a and
 * b random (sign-flipped) members of a pool of 1024 draws from N(0, covariance) per (layer,
 * head, K/V) (Cholesky factor; diagonal when the covariance is singular). Seeded. */
kvc_status kvc_ctx_fill_synthetic(kvc_ctx *c, const struct kvc_kv_stats *s, int depth, uint64_t seed,
                                  kvc_error *err);

/* The same fill for a sequence of a context (the server's bench: decode speed of many
 * sequences at depth without prefilling each). */
kvc_status kvc_seq_fill_synthetic(kvc_seq *q, const struct kvc_kv_stats *s, int depth, uint64_t seed,
                                  kvc_error *err);

#endif
