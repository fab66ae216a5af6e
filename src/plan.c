/* plan.c - the memory model behind `kvcodec plan` (kvc_plan_memory): weights as mapped + the
 * forward pass's buffers + the KV cache of a codec pair, at a given context or as the longest
 * context that fits a RAM budget. Buffer sizes come from the functions the allocations use
 * (kvc_ctx_buffer_sizes in forward.c, kv_scratch_floats / kv_stage_bytes / kv_part_floats_of
 * in src/kv/kvcache.c, kvc_act_row_bytes in src/wtypes/); the KV bytes per token from a tiny
 * context of the pair, so they are the engine's own accounting. */
#include "forward.h"
#include "kv/kvcache.h"
#include "util.h"
#include "wtypes/wtype.h"

#include <math.h>
#include <string.h>

#define PLAN_RESERVE_DEFAULT (16ull << 20)

struct kvc_plan_params kvc_plan_default_params(void) {
    struct kvc_plan_params p;
    memset(&p, 0, sizeof p);
    p.ctx = kvc_ctx_default_params();
    p.ctx.n_ctx = 0;
    p.reserve_bytes = PLAN_RESERVE_DEFAULT;
    p.ram_bytes = 0;
    return p;
}

/* KV bytes per token and bits of a K/V pair, read from a 64-position context of it. */
static kvc_status pair_bpt(const kvc_model *m, const struct kvc_ctx_params *cp, const char *k, const char *v,
                           double *bpt, double *bits_k, double *bits_v, kvc_error *e) {
    struct kvc_ctx_params p = *cp;
    p.n_ctx = 64;
    p.n_batch = 1;
    p.n_threads = 1;
    p.kv_k = k;
    p.kv_v = v;
    p.kv_sinks = p.kv_recent = 0;
    kvc_ctx *c;
    kvc_status st = kvc_ctx_create(m, &p, &c, e);
    if (st) return st;
    struct kvc_kv_info kv;
    kvc_ctx_kv_info(c, &kv);
    kvc_ctx_free(c);
    *bpt = (double)kv.kv_bytes / kv.n_ctx;
    *bits_k = kv.bits_k;
    *bits_v = kv.bits_v;
    return KVC_OK;
}

/* Whether any weight tensor is quantized (the matmuls then quantize activations to Q8_0). */
static int model_quantized(const kvc_model *m) {
    const char *tn[32];
    int tc[32], q = 0;
    int nt = kvc_model_tensor_types(m, tn, tc, 32);
    for (int i = 0; i < nt; i++) q |= tn[i][0] == 'Q' || tn[i][0] == 'q';
    return q;
}

kvc_status kvc_plan_memory(const kvc_model *m, const struct kvc_plan_params *pp, struct kvc_plan_result *r,
                           kvc_error *err) {
    struct kvc_plan_params p = pp ? *pp : kvc_plan_default_params();
    memset(r, 0, sizeof *r);
    const struct kvc_ctx_params *cp = &p.ctx;
    if (cp->n_ctx < 0 || cp->n_ctx > KVC_PLAN_MAX_CTX)
        return kvc_fail(err, KVC_ERR_ARG, "plan: context %d outside 0..%d", cp->n_ctx, KVC_PLAN_MAX_CTX);
    if (cp->n_batch < 1 || cp->n_batch > 65536)
        return kvc_fail(err, KVC_ERR_ARG, "plan: batch %d outside 1..65536", cp->n_batch);
    if (cp->n_threads < 1 || cp->n_threads > 256)
        return kvc_fail(err, KVC_ERR_ARG, "plan: threads %d outside 1..256", cp->n_threads);
    if (cp->kv_sinks < 0 || cp->kv_recent < 0)
        return kvc_fail(err, KVC_ERR_ARG, "plan: sinks %d / recent %d below 0", cp->kv_sinks, cp->kv_recent);
    const struct kvc_model_info *in = kvc_model_get_info(m);
    const char *k = cp->kv_k ? cp->kv_k : "f16", *v = cp->kv_v ? cp->kv_v : "f16";
    const char *w = cp->kv_window ? cp->kv_window : "f16";
    double bpt, bk, bv, bpt16, b16k, b16v, bptw, bwk, bwv;
    size_t wrow = 0;
    kvc_status st = pair_bpt(m, cp, "f16", "f16", &bpt16, &b16k, &b16v, err);
    if (!st) st = pair_bpt(m, cp, k, v, &bpt, &bk, &bv, err);
    if (!st) st = pair_bpt(m, cp, w, w, &bptw, &bwk, &bwv, err); /* bytes of a window position */
    if (!st) st = kv_window_check(w, in->head_dim, &wrow, err);
    if (st) return st;

    /* buffers (bytes), B = batch, T = threads, hd = head dim; codec-space widths taken as hd */
    const int B = cp->n_batch, T = cp->n_threads, hd = in->head_dim;
    struct kvc_ctx_buffers bs;
    kvc_ctx_buffer_sizes(in, B, T, &bs); /* x, xb, q, att, k, v, hb, hb2, logits, rope, rows */
    int max_in = in->n_embd;
    if (in->n_head * hd > max_in) max_in = in->n_head * hd;
    if (in->n_ff > max_in) max_in = in->n_ff;
    double mm = model_quantized(m) ? (double)B * (double)kvc_act_row_bytes(KVC_ACT_Q8_0, max_in) : 0;
    double stage = (double)kv_stage_bytes(in->n_head_kv, B, 2 * wrow); /* K and V sides' window rows */
    double attn_fixed = (double)T * sizeof(float) * (double)kv_scratch_floats(0, hd, (size_t)hd, (size_t)hd) +
                        (double)KV_PARTS_PER_THREAD * T * KV_MAX_QROWS * (double)kv_part_floats_of(hd, (size_t)hd) *
                            sizeof(float);
    double per_tok_over = (double)T * sizeof(float); /* one score per position per thread */
    double over_fixed = (double)bs.total + stage + mm + attn_fixed + (double)p.reserve_bytes;
    double weights = (double)in->weights_bytes;
    const int S = cp->kv_sinks, R = cp->kv_recent;

    r->bits_k = bk;
    r->bits_v = bv;
    r->kv_bytes_per_token = bpt;
    r->kv_bytes_per_token_f16 = bpt16;
    r->kv_fixed_bytes = S * (bptw - bpt) + R * bptw;
    r->kv_bytes_trained_ctx = (in->n_ctx_train - S) * bpt + (S + R) * bptw;
    r->n_ctx_train = in->n_ctx_train;
    r->weights_bytes = weights;
    r->overhead_fixed_bytes = over_fixed;
    r->overhead_per_token_bytes = per_tok_over;
    if (cp->n_ctx > 0) {
        double N = cp->n_ctx;
        r->kv_bytes_at_ctx = (N - S) * bpt + (S + R) * bptw;
        r->overhead_bytes_at_ctx = over_fixed + per_tok_over * N;
        r->predicted_peak_bytes = weights + r->overhead_bytes_at_ctx + r->kv_bytes_at_ctx;
    }
    if (p.ram_bytes > 0) {
        double avail = (double)p.ram_bytes - weights - over_fixed - r->kv_fixed_bytes;
        double mc = avail > 0 ? floor(avail / (bpt + per_tok_over)) : 0;
        if (mc > KVC_PLAN_MAX_CTX) {
            mc = KVC_PLAN_MAX_CTX;
            r->capped_at_engine_limit = 1;
        }
        if (mc < S + R + 1) mc = 0;
        r->max_context = (int64_t)mc;
        r->fits_trained_ctx = mc >= in->n_ctx_train;
        r->overhead_bytes_at_max = over_fixed + per_tok_over * mc;
        r->kv_bytes_at_max = mc > 0 ? (mc - S) * bpt + (S + R) * bptw : 0;
    }
    return KVC_OK;
}
