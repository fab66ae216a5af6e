/* forward.c - the Llama-family forward pass over a batch of tokens: embeddings, per layer
 * RMSNorm, Q/K/V projections (+ biases for qwen2), RoPE (adjacent pairs for `llama`, halves
 * for `qwen2`, Llama 3 frequency factors, linear scaling), attention on
 * the KV cache's encoded rows, output projection, SwiGLU feed-forward; final norm and logits.
 * Weights stay in the mapping; all buffers are sized when the context is created. */
#include "forward.h"
#include "kv/calib.h"
#include "kv/kvcache.h"
#include "model.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvc_ctx {
    const struct kvc_model *m;
    struct kvc_ctx_params p;
    char spec_k[KVC_SPEC_MAX], spec_v[KVC_SPEC_MAX], spec_w[KVC_WINDOW_MAX];
    enum kvc_isa isa;
    struct kvc_pool *pool;
    struct kv_cache kv;
    struct kv_attn_scratch *ascr; /* (n_threads) */
    float *x;       /* (n_batch, n_embd) residual stream */
    float *xb;      /* (n_batch, n_embd) normalised input of a block */
    float *q;       /* (n_batch, n_head * head_dim) */
    float *k, *v;   /* (n_batch, n_head_kv * head_dim) */
    float *att;     /* (n_batch, n_head * head_dim) attention output */
    float *hb, *hb2;/* (n_batch, n_ff) */
    float *logits;  /* (n_batch, n_vocab) */
    float *rope;    /* (n_batch, head_dim): cos, sin pairs per position */
    float *rows;    /* (n_threads, 2, n_batch, head_dim): one KV head's K and V rows */
    float *k_pre;   /* (n_batch, n_head_kv * head_dim) keys before RoPE, for the observer */
    float *parts;   /* (4 * n_threads, KV_MAX_QROWS, kv_part_floats) attention partials when
                       positions are split across threads */
    void *mm_scratch;
    int n_logits;
    struct kvc_calib *calib;   /* from --kv-calib, or NULL */
    kvc_kv_observer observer;
    void *observer_user;
};

struct kvc_ctx_params kvc_ctx_default_params(void) {
    struct kvc_ctx_params p = {
        .n_ctx = 2048, .n_batch = 512, .n_threads = 2, .kv_k = "f16", .kv_v = "f16",
        .kv_sinks = 0, .kv_recent = 0, .kv_calib = NULL, .kv_preset = NULL, .seed = 0x6b7663, .isa = -1,
        .kv_window = NULL,
    };
    return p;
}

void kvc_ctx_free(kvc_ctx *c) {
    if (!c) return;
    kv_cache_free(&c->kv);
    kvc_calib_free(c->calib);
    kvc_free_aligned(c->k_pre);
    if (c->ascr)
        for (int i = 0; i < c->p.n_threads; i++) kv_cache_scratch_free(&c->ascr[i]);
    free(c->ascr);
    kvc_pool_free(c->pool);
    float **bufs[] = {&c->x, &c->xb, &c->q, &c->k, &c->v, &c->att, &c->hb, &c->hb2, &c->logits,
                      &c->rope, &c->rows};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) kvc_free_aligned(*bufs[i]);
    kvc_free_aligned(c->mm_scratch);
    kvc_free_aligned(c->parts);
    free(c);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

void kvc_ctx_buffer_sizes(const struct kvc_model_info *in, int n_batch, int n_threads, struct kvc_ctx_buffers *b) {
    size_t B = (size_t)n_batch, E = (size_t)in->n_embd, HD = (size_t)in->n_head * in->head_dim;
    size_t KV = (size_t)in->n_head_kv * in->head_dim, F = (size_t)in->n_ff;
    b->x = B * E * 4;
    b->q = B * HD * 4;
    b->kv = B * KV * 4;
    b->hb = B * F * 4;
    b->logits = B * (size_t)in->n_vocab * 4;
    b->rope = B * (size_t)in->head_dim * 4;
    b->rows = (size_t)n_threads * 2 * B * (size_t)in->head_dim * 4;
    b->total = 2 * b->x + 2 * b->q + 2 * b->kv + 2 * b->hb + b->logits + b->rope + b->rows;
}

kvc_status kvc_ctx_create(const kvc_model *m, const struct kvc_ctx_params *pp, kvc_ctx **out,
                          kvc_error *err) {
    *out = NULL;
    struct kvc_ctx_params p = pp ? *pp : kvc_ctx_default_params();
    const struct kvc_model_info *in = &m->info;
    struct kvc_preset preset;
    if (p.kv_preset) { /* the preset's setting and calibration replace the kv fields */
        kvc_status pst = kvc_preset_read(p.kv_preset, &preset, err);
        if (pst) return pst;
        p.kv_k = preset.kv_k;
        p.kv_v = preset.kv_v;
        p.kv_sinks = preset.sinks;
        p.kv_recent = preset.recent;
        p.kv_window = preset.kv_window;
        p.kv_calib = p.kv_preset;
        p.kv_preset = NULL;
    }
    if (!p.kv_k) p.kv_k = "f16";
    if (!p.kv_v) p.kv_v = "f16";
    if (!p.kv_window) p.kv_window = "f16";
    if (strlen(p.kv_window) >= KVC_WINDOW_MAX)
        return kvc_fail(err, KVC_ERR_ARG, "context: --kv-window spec of %zu characters exceeds the limit %d",
                        strlen(p.kv_window), KVC_WINDOW_MAX - 1);
    if (p.n_ctx < 1 || p.n_ctx > (1 << 24))
        return kvc_fail(err, KVC_ERR_ARG, "context: -c %d outside 1..16777216", p.n_ctx);
    if (p.n_batch < 1 || p.n_batch > 65536)
        return kvc_fail(err, KVC_ERR_ARG, "context: -b %d outside 1..65536", p.n_batch);
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.n_threads < 1 || p.n_threads > 256)
        return kvc_fail(err, KVC_ERR_ARG, "context: -t %d outside 1..256", p.n_threads);
    if (p.isa > KVC_ISA_AVX512)
        return kvc_fail(err, KVC_ERR_ARG, "context: isa %d outside -1..2", p.isa);
    if (in->n_head / in->n_head_kv > KV_MAX_QROWS)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "context: %d query heads per KV head exceed the limit %d",
                        in->n_head / in->n_head_kv, KV_MAX_QROWS);
    if (strlen(p.kv_k) >= KVC_SPEC_MAX || strlen(p.kv_v) >= KVC_SPEC_MAX)
        return kvc_fail(err, KVC_ERR_ARG, "context: --kv-%s spec of %zu characters exceeds the limit %d",
                        strlen(p.kv_k) >= KVC_SPEC_MAX ? "k" : "v",
                        strlen(p.kv_k) >= KVC_SPEC_MAX ? strlen(p.kv_k) : strlen(p.kv_v), KVC_SPEC_MAX - 1);
    kvc_ctx *c = calloc(1, sizeof *c);
    if (!c) return kvc_fail(err, KVC_ERR_NOMEM, "context: out of memory");
    c->m = m;
    c->p = p;
    snprintf(c->spec_k, sizeof c->spec_k, "%s", p.kv_k);
    snprintf(c->spec_v, sizeof c->spec_v, "%s", p.kv_v);
    snprintf(c->spec_w, sizeof c->spec_w, "%s", p.kv_window);
    c->p.kv_k = c->spec_k;
    c->p.kv_v = c->spec_v;
    c->p.kv_window = c->spec_w;
    c->p.kv_calib = NULL;
    c->isa = kvc_isa_best();
    if (p.isa >= 0) {
        if (!kvc_isa_supported((enum kvc_isa)p.isa)) {
            kvc_ctx_free(c);
            return kvc_fail(err, KVC_ERR_UNSUPPORTED, "context: this CPU cannot run %s kernels",
                            kvc_isa_name((enum kvc_isa)p.isa));
        }
        c->isa = (enum kvc_isa)p.isa;
    }
    kvc_status st = KVC_OK;
    if (p.kv_calib) st = kvc_calib_load(p.kv_calib, m, &c->calib, err);
    struct kv_rope rope = {.base = in->rope_base, .neox = in->rope_neox, .freq_factors = m->rope_freqs,
                           .freq_scale = in->rope_freq_scale};
    if (!st)
        st = kv_cache_init_rope(&c->kv, in->n_layer, in->n_head_kv, in->head_dim, p.n_ctx, p.n_batch,
                                p.kv_k, p.kv_v, p.kv_window, p.kv_sinks, p.kv_recent, &rope, p.seed, c->calib,
                                c->isa, err);
    if (st) {
        kvc_ctx_free(c);
        return st;
    }
    struct kvc_ctx_buffers bs;
    kvc_ctx_buffer_sizes(in, p.n_batch, p.n_threads, &bs);
    c->x = kvc_alloc_aligned(bs.x);
    c->xb = kvc_alloc_aligned(bs.x);
    c->q = kvc_alloc_aligned(bs.q);
    c->k = kvc_alloc_aligned(bs.kv);
    c->v = kvc_alloc_aligned(bs.kv);
    c->att = kvc_alloc_aligned(bs.q);
    c->hb = kvc_alloc_aligned(bs.hb);
    c->hb2 = kvc_alloc_aligned(bs.hb);
    c->logits = kvc_alloc_aligned(bs.logits);
    c->rope = kvc_alloc_aligned(bs.rope);
    c->rows = kvc_alloc_aligned(bs.rows);
    size_t scr = kvc_matmul_scratch_bytes(&m->output, p.n_batch);
    for (int l = 0; l < in->n_layer; l++) {
        const struct kvc_layer *L = &m->layers[l];
        const struct kvc_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) scr = max_sz(scr, kvc_matmul_scratch_bytes(ws[i], p.n_batch));
    }
    c->mm_scratch = kvc_alloc_aligned(scr);
    c->parts = kvc_alloc_aligned((size_t)KV_PARTS_PER_THREAD * p.n_threads * KV_MAX_QROWS * kv_part_floats(&c->kv) * 4);
    c->pool = kvc_pool_create(p.n_threads);
    c->ascr = calloc((size_t)p.n_threads, sizeof *c->ascr);
    int ok = c->x && c->xb && c->q && c->k && c->v && c->att && c->hb && c->hb2 && c->logits &&
             c->rope && c->rows && c->mm_scratch && c->parts && c->pool && c->ascr;
    for (int i = 0; ok && i < p.n_threads; i++)
        ok = kv_cache_scratch_init(&c->kv, &c->ascr[i]) == KVC_OK;
    if (!ok) {
        kvc_ctx_free(c);
        return kvc_fail(err, KVC_ERR_NOMEM, "context: cannot allocate buffers for -c %d -b %d", p.n_ctx, p.n_batch);
    }
    *out = c;
    return KVC_OK;
}

kvc_status kvc_ctx_set_observer(kvc_ctx *c, kvc_kv_observer fn, void *user, kvc_error *err) {
    const struct kvc_model_info *in = &c->m->info;
    if (fn && !c->k_pre) {
        c->k_pre = kvc_alloc_aligned((size_t)c->p.n_batch * in->n_head_kv * in->head_dim * 4);
        if (!c->k_pre) return kvc_fail(err, KVC_ERR_NOMEM, "context: out of memory for the observer");
    }
    c->observer = fn;
    c->observer_user = user;
    return KVC_OK;
}

void kvc_ctx_reset(kvc_ctx *c) { kv_cache_truncate(&c->kv, 0); }

kvc_status kvc_ctx_truncate_window(kvc_ctx *c, int n, kvc_error *err) {
    if (n < 0 || n > c->kv.n_past)
        return kvc_fail(err, KVC_ERR_RANGE, "truncate: %d positions outside 0..%d (cached)", n, c->kv.n_past);
    kv_cache_truncate(&c->kv, n); /* codec rows and sinks of positions < n are untouched */
    return KVC_OK;
}

kvc_status kvc_ctx_truncate(kvc_ctx *c, int n, kvc_error *err) {
    if (c->kv.recent > 0 && n >= 0 && n < c->kv.n_past) /* exact only: the ring would lose rows */
        return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                        "truncate: the cache keeps a recent window (--kv-recent %d): its ring holds later positions",
                        c->kv.recent);
    return kvc_ctx_truncate_window(c, n, err);
}
void kvc_ctx_kv_shape(const kvc_ctx *c, int *n_layer, int *n_head_kv, int *head_dim) {
    *n_layer = c->kv.n_layer;
    *n_head_kv = c->kv.n_head_kv;
    *head_dim = c->kv.d;
}

/* Store given rows into cache kv (the context's or a sequence's) at its n_past. */
static kvc_status append_kv(kvc_ctx *c, struct kv_cache *kv, int T, const float *k, const float *v, kvc_error *err) {
    const struct kvc_model_info *in = &c->m->info;
    int p0 = kv->n_past, d = in->head_dim, KV = in->n_head_kv * d;
    if (T < 1 || T > kv->n_batch || T > c->p.n_batch || p0 + T > kv->n_ctx)
        return kvc_fail(err, KVC_ERR_RANGE, "append_kv: %d positions at %d: batch limit %d, context %d", T, p0,
                        kv->n_batch, kv->n_ctx);
    float *kr = c->rows, *vr = c->rows + (size_t)T * d; /* (T, d) each: one KV head's rows */
    for (int l = 0; l < in->n_layer; l++) {
        for (int h = 0; h < in->n_head_kv; h++) {
            for (int t = 0; t < T; t++) {
                memcpy(kr + (size_t)t * d, k + ((size_t)l * T + t) * KV + (size_t)h * d, sizeof(float) * (size_t)d);
                memcpy(vr + (size_t)t * d, v + ((size_t)l * T + t) * KV + (size_t)h * d, sizeof(float) * (size_t)d);
            }
            kv_cache_store(kv, l, h, p0, T, kr, vr);
        }
        kv_cache_commit_layer(kv, l, p0, T);
    }
    kv->n_past = p0 + T;
    return KVC_OK;
}

kvc_status kvc_ctx_append_kv(kvc_ctx *c, int T, const float *k, const float *v, kvc_error *err) {
    return append_kv(c, &c->kv, T, k, v, err);
}

kvc_status kvc_ctx_read_kv(const kvc_ctx *c, int layer, int head, int p0, int n, float *k, float *v,
                           kvc_error *err) {
    const struct kvc_model_info *in = &c->m->info;
    if (layer < 0 || layer >= in->n_layer || head < 0 || head >= in->n_head_kv ||
        kv_cache_read(&c->kv, layer, head, p0, n, k, v))
        return kvc_fail(err, KVC_ERR_RANGE, "read_kv: layer %d head %d positions %d..%d not readable (cached %d%s)",
                        layer, head, p0, p0 + n - 1, c->kv.n_past, c->kv.recent ? ", recent window" : "");
    return KVC_OK;
}

int kvc_ctx_n_past(const kvc_ctx *c) { return c->kv.n_past; }
int kvc_ctx_batch(const kvc_ctx *c) { return c->p.n_batch; }
int kvc_ctx_vocab(const kvc_ctx *c) { return c->m->info.n_vocab; }
const float *kvc_get_logits(const kvc_ctx *c) { return c->logits; }

void kvc_ctx_kv_info(const kvc_ctx *c, struct kvc_kv_info *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->spec_k, sizeof o->spec_k, "%s", c->spec_k);
    snprintf(o->spec_v, sizeof o->spec_v, "%s", c->spec_v);
    o->bits_k = kv_side_bits(&c->kv, &c->kv.k);
    o->bits_v = kv_side_bits(&c->kv, &c->kv.v);
    o->bits_per_element = (o->bits_k + o->bits_v) / 2;
    o->kv_bytes = c->kv.k.bytes + c->kv.v.bytes;
    o->bytes_per_token = (double)o->kv_bytes / c->kv.n_ctx;
    o->n_ctx = c->kv.n_ctx;
    o->sinks = c->kv.sinks;
    o->recent = c->kv.recent;
    snprintf(o->spec_window, sizeof o->spec_window, "%s", c->spec_w);
}

/* ---- element-wise ops (cheap next to the matmuls; scalar C) ---- */

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) o[i] = x[i] * scale * w[i];
}

/* cos/sin per pair for position pos, computed as GGML does (theta *= base^(-2/d) each pair;
 * pair i's angle divided by its frequency factor ff[i] when given, times the linear scale). */
static void rope_cache(float *cs, int pos, int d, float base, const float *ff, float scale) {
    float theta_scale = powf(base, -2.0f / (float)d);
    float theta = (float)pos;
    for (int i = 0; i < d; i += 2) {
        float t = scale * (ff ? theta / ff[i / 2] : theta);
        cs[i] = cosf(t);
        cs[i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

/* Rotate pair i of x by cs[2i], cs[2i+1]: pairs (x[2i], x[2i+1]) (NORM) or (x[i], x[i+d/2])
 * (NEOX). */
static void rope_apply(float *x, const float *cs, int d, int neox) {
    const int stride = neox ? d / 2 : 1, n = d / 2;
    for (int p = 0; p < n; p++) {
        const int i = neox ? p : 2 * p;
        float x0 = x[i], x1 = x[i + stride];
        x[i] = x0 * cs[2 * p] - x1 * cs[2 * p + 1];
        x[i + stride] = x0 * cs[2 * p + 1] + x1 * cs[2 * p];
    }
}

static void add_bias(float *x, const float *b, int T, int n) {
    if (!b) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) x[(size_t)t * n + i] += b[i];
}

/* ---- the layer loop, shared by kvc_eval (one run on the context's own cache) and
 * kvc_eval_batch (one run per sequence): every token of the batch goes through the weight
 * matrices together, attention runs per run on that run's cache ---- */

#define ATTN_MAX_CHUNKS 64

/* One cache's run of consecutive batch entries: tokens t0..t0+T-1 at positions p0.. */
struct seq_run {
    struct kv_cache *kv;
    int t0, T, p0;
    int tile, n_tiles, chunks, chunk_len;
    int item0;  /* first attention item of the run */
    int part0;  /* first partials slot (runs split into position chunks) */
};

struct batch_args {
    kvc_ctx *c;
    struct seq_run *runs;
    int n_runs, layer, n_items;
};

/* Split each run's attention into items (token tile, KV head, position chunk): tiles of tokens
 * whose G query heads share one pass over each KV block; when there are fewer (tile, KV head)
 * units over all runs than threads (decode), positions are split into chunks too (not for
 * codecs that rank whole segments) and merged afterwards. */
static kvc_status plan_runs(kvc_ctx *c, struct seq_run *runs, int nr, int *n_items, kvc_error *err) {
    const struct kvc_model_info *in = &c->m->info;
    const int G = in->n_head / in->n_head_kv, nth = kvc_pool_size(c->pool);
    int units = 0;
    for (int k = 0; k < nr; k++) {
        struct seq_run *r = &runs[k];
        r->tile = KV_MAX_QROWS / G < 1 ? 1 : KV_MAX_QROWS / G;
        if (r->tile > r->T) r->tile = r->T;
        r->n_tiles = (r->T + r->tile - 1) / r->tile;
        units += r->n_tiles * in->n_head_kv;
    }
    int items = 0, parts = 0;
    for (int k = 0; k < nr; k++) {
        struct seq_run *r = &runs[k];
        const int n = r->p0 + r->T;
        r->chunks = 1;
        if (units < nth && !c->kv.k.slot[0].codec->score_whole) {
            r->chunks = (nth + units - 1) / units;
            if (r->chunks > n / 1024) r->chunks = n / 1024 < 1 ? 1 : n / 1024;
            if (r->chunks > ATTN_MAX_CHUNKS) r->chunks = ATTN_MAX_CHUNKS;
        }
        r->chunk_len = (n + r->chunks - 1) / r->chunks;
        r->item0 = items;
        r->part0 = parts;
        items += r->n_tiles * in->n_head_kv * r->chunks;
        if (r->chunks > 1) parts += r->n_tiles * in->n_head_kv * r->chunks;
    }
    if (parts > KV_PARTS_PER_THREAD * nth)
        return kvc_fail(err, KVC_ERR_INTERNAL, "eval: %d attention partials exceed the buffer of %d", parts,
                        KV_PARTS_PER_THREAD * nth);
    *n_items = items;
    return KVC_OK;
}

/* Store the K/V rows of every run: items (run, KV head) round-robin over threads. */
static void store_task(void *arg, int ith, int nth) {
    struct batch_args *a = arg;
    kvc_ctx *c = a->c;
    const struct kvc_model_info *in = &c->m->info;
    const int d = in->head_dim, NKV = in->n_head_kv, KV = NKV * d;
    float *kr = c->rows + (size_t)ith * 2 * c->p.n_batch * d, *vr = kr + (size_t)c->p.n_batch * d;
    for (int it = ith; it < a->n_runs * NKV; it += nth) {
        const struct seq_run *r = &a->runs[it / NKV];
        const int h = it % NKV;
        for (int t = 0; t < r->T; t++) {
            memcpy(kr + (size_t)t * d, c->k + (size_t)(r->t0 + t) * KV + (size_t)h * d, (size_t)d * 4);
            memcpy(vr + (size_t)t * d, c->v + (size_t)(r->t0 + t) * KV + (size_t)h * d, (size_t)d * 4);
        }
        kv_cache_store(r->kv, a->layer, h, r->p0, r->T, kr, vr);
    }
}

/* Partials of item (tile, KV head, chunk) of a run. */
static float *attn_parts(const kvc_ctx *c, const struct seq_run *r, int tile, int h, int ch) {
    const size_t pf = kv_part_floats(&c->kv);
    const int k = r->part0 + (tile * c->m->info.n_head_kv + h) * r->chunks + ch;
    return c->parts + (size_t)k * KV_MAX_QROWS * pf;
}

/* Attention items (run, token tile, KV head, position chunk) handed out round-robin (balances
 * causal prefill, where later tokens see more positions). */
static void attn_task(void *arg, int ith, int nth) {
    struct batch_args *a = arg;
    kvc_ctx *c = a->c;
    const struct kvc_model_info *in = &c->m->info;
    const int d = in->head_dim, NKV = in->n_head_kv, G = in->n_head / NKV;
    const size_t qs = (size_t)in->n_head * d;
    const float scale = 1.0f / sqrtf((float)d);
    int ri = 0;
    for (int it = ith; it < a->n_items; it += nth) {
        while (ri + 1 < a->n_runs && a->runs[ri + 1].item0 <= it) ri++;
        const struct seq_run *r = &a->runs[ri];
        const int j = it - r->item0;
        const int ch = j % r->chunks, h = j / r->chunks % NKV, tile = j / r->chunks / NKV;
        const int i0 = tile * r->tile, i1 = i0 + r->tile < r->T ? i0 + r->tile : r->T;
        const float *q = c->q + (size_t)r->t0 * qs + (size_t)h * G * d;
        float *o = c->att + (size_t)r->t0 * qs + (size_t)h * G * d;
        const int n = r->p0 + r->T;
        if (r->chunks == 1) {
            kv_cache_attend_rows(r->kv, &c->ascr[ith], a->layer, h, G, q, qs, i0, i1, r->p0, 0, n, scale, o, NULL);
        } else {
            const int pa = ch * r->chunk_len, pb = pa + r->chunk_len;
            kv_cache_attend_rows(r->kv, &c->ascr[ith], a->layer, h, G, q, qs, i0, i1, r->p0, pa, pb < n ? pb : n,
                                 scale, o, attn_parts(c, r, tile, h, ch));
        }
    }
}

/* After a chunked attention: merge the partials of every (token, query head) of chunked runs. */
static void attn_merge(kvc_ctx *c, const struct batch_args *a) {
    const struct kvc_model_info *in = &c->m->info;
    const int d = in->head_dim, NKV = in->n_head_kv, G = in->n_head / NKV;
    const size_t pf = kv_part_floats(&c->kv), qs = (size_t)in->n_head * d;
    float *pp[ATTN_MAX_CHUNKS];
    for (int ri = 0; ri < a->n_runs; ri++) {
        const struct seq_run *r = &a->runs[ri];
        if (r->chunks == 1) continue;
        for (int tile = 0; tile < r->n_tiles; tile++)
            for (int h = 0; h < NKV; h++) {
                const int i0 = tile * r->tile, i1 = i0 + r->tile < r->T ? i0 + r->tile : r->T;
                for (int i = i0; i < i1; i++)
                    for (int g = 0; g < G; g++) {
                        for (int ch = 0; ch < r->chunks; ch++)
                            pp[ch] = attn_parts(c, r, tile, h, ch) + ((size_t)(i - i0) * G + g) * pf;
                        kv_cache_attend_merge(r->kv, a->layer, h, pp, r->chunks,
                                              c->att + (size_t)(r->t0 + i) * qs + (size_t)(h * G + g) * d);
                    }
            }
    }
}

/* Run T checked tokens (entries of the planned runs) through every layer; advance each run's
 * cache. Logits: one row per token when all_logits, else one row per run (its last token).
 * The observer, when set, sees the rows of a single run on the context's own cache. */
static void forward_runs(kvc_ctx *c, const int32_t *tokens, int T, struct batch_args *ba, int all_logits) {
    const struct kvc_model *m = c->m;
    const struct kvc_model_info *in = &m->info;
    const int E = in->n_embd, d = in->head_dim, HD = in->n_head * d, KV = in->n_head_kv * d, F = in->n_ff;
    const enum kvc_isa isa = c->isa;
    struct seq_run *runs = ba->runs;
    const int observe = c->observer && ba->n_runs == 1 && runs[0].kv == &c->kv;
    for (int k = 0; k < ba->n_runs; k++)
        for (int i = 0; i < runs[k].T; i++) {
            const int t = runs[k].t0 + i;
            kvc_weight_row_to_f32(&m->tok_embd, tokens[t], c->x + (size_t)t * E);
            rope_cache(c->rope + (size_t)t * d, runs[k].p0 + i, d, in->rope_base, m->rope_freqs, in->rope_freq_scale);
        }
    for (int l = 0; l < in->n_layer; l++) {
        const struct kvc_layer *L = &m->layers[l];
        ba->layer = l;
        for (int t = 0; t < T; t++)
            rmsnorm(c->xb + (size_t)t * E, c->x + (size_t)t * E, L->attn_norm, E, in->rms_eps);
        {
            const struct kvc_weight *const w[3] = {&L->wq, &L->wk, &L->wv};
            float *const y[3] = {c->q, c->k, c->v};
            kvc_matmul_n(c->pool, isa, w, 3, c->xb, T, y, c->mm_scratch);
        }
        add_bias(c->q, L->bq, T, HD);
        add_bias(c->k, L->bk, T, KV);
        add_bias(c->v, L->bv, T, KV);
        if (observe) memcpy(c->k_pre, c->k, (size_t)T * KV * 4);
        for (int t = 0; t < T; t++) {
            const float *cs = c->rope + (size_t)t * d;
            for (int h = 0; h < in->n_head; h++) rope_apply(c->q + (size_t)t * HD + (size_t)h * d, cs, d, in->rope_neox);
            for (int h = 0; h < in->n_head_kv; h++) rope_apply(c->k + (size_t)t * KV + (size_t)h * d, cs, d, in->rope_neox);
        }
        if (observe) c->observer(c->observer_user, l, runs[0].p0, T, c->k_pre, c->k, c->v, c->q);
        kvc_pool_run(c->pool, store_task, ba);
        kvc_pool_run(c->pool, attn_task, ba);
        attn_merge(c, ba);
        for (int k = 0; k < ba->n_runs; k++) kv_cache_commit_layer(runs[k].kv, l, runs[k].p0, runs[k].T);
        kvc_matmul(c->pool, isa, &L->wo, c->att, T, c->xb, c->mm_scratch);
        for (size_t i = 0; i < (size_t)T * E; i++) c->x[i] += c->xb[i];
        for (int t = 0; t < T; t++)
            rmsnorm(c->xb + (size_t)t * E, c->x + (size_t)t * E, L->ffn_norm, E, in->rms_eps);
        {
            const struct kvc_weight *const w[2] = {&L->w_gate, &L->w_up};
            float *const y[2] = {c->hb, c->hb2};
            kvc_matmul_n(c->pool, isa, w, 2, c->xb, T, y, c->mm_scratch);
        }
        for (size_t i = 0; i < (size_t)T * F; i++) {
            float g = c->hb[i];
            c->hb[i] = g / (1.0f + expf(-g)) * c->hb2[i];
        }
        kvc_matmul(c->pool, isa, &L->w_down, c->hb, T, c->xb, c->mm_scratch);
        for (size_t i = 0; i < (size_t)T * E; i++) c->x[i] += c->xb[i];
    }
    int nl = 0;
    for (int k = 0; k < ba->n_runs; k++) {
        runs[k].kv->n_past = runs[k].p0 + runs[k].T;
        for (int t = all_logits ? runs[k].t0 : runs[k].t0 + runs[k].T - 1; t < runs[k].t0 + runs[k].T; t++)
            rmsnorm(c->xb + (size_t)nl++ * E, c->x + (size_t)t * E, m->output_norm, E, in->rms_eps);
    }
    c->n_logits = nl;
    kvc_matmul(c->pool, isa, &m->output, c->xb, nl, c->logits, c->mm_scratch);
}

kvc_status kvc_eval(kvc_ctx *c, const int32_t *tokens, int T, int all_logits, kvc_error *err) {
    const struct kvc_model_info *in = &c->m->info;
    if (T < 1 || T > c->p.n_batch)
        return kvc_fail(err, KVC_ERR_ARG, "eval: %d tokens; batch limit is 1..%d (-b)", T, c->p.n_batch);
    int p0 = c->kv.n_past;
    if (p0 + T > c->kv.n_ctx)
        return kvc_fail(err, KVC_ERR_RANGE, "eval: context full: %d + %d tokens exceed -c %d", p0, T, c->kv.n_ctx);
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= in->n_vocab)
            return kvc_fail(err, KVC_ERR_RANGE, "eval: token id %d outside 0..%d", tokens[t], in->n_vocab - 1);
    struct seq_run run = {.kv = &c->kv, .t0 = 0, .T = T, .p0 = p0};
    struct batch_args ba = {.c = c, .runs = &run, .n_runs = 1};
    kvc_status st = plan_runs(c, &run, 1, &ba.n_items, err);
    if (st) return st;
    forward_runs(c, tokens, T, &ba, all_logits);
    return KVC_OK;
}

/* ---- several sequences in one batch (the server): each sequence has its own KV cache and
 * is one run of forward_runs ---- */

struct kvc_seq {
    kvc_ctx *c;
    struct kv_cache kv; /* same codecs, seed and policy rows as the context's own cache */
};

/* Stage rows of a sequence's cache: a sequence never gets more tokens per batch than this. */
static int seq_batch_of(const kvc_ctx *c, int n_ctx) { return n_ctx < c->p.n_batch ? n_ctx : c->p.n_batch; }

uint64_t kvc_ctx_seq_kv_bytes_at(const kvc_ctx *c, int n_ctx, int n_pos) {
    const struct kv_cache *kv = &c->kv;
    const uint64_t slots = (uint64_t)kv->n_layer * kv->n_head_kv;
    if (n_ctx <= kv->sinks) return 0;
    if (n_pos > n_ctx) n_pos = n_ctx;
    const uint64_t wrow = kv->k.wrow + kv->v.wrow; /* a window row of both sides */
    uint64_t window = slots * ((uint64_t)kv->sinks + (uint64_t)kv->recent) * wrow +
                      kv_stage_bytes(kv->n_head_kv, seq_batch_of(c, n_ctx), wrow);
    uint64_t rows = n_pos > kv->sinks ? (uint64_t)(n_pos - kv->sinks) : 0;
    return rows * (kv->k.pos_bytes + kv->v.pos_bytes) + window;
}

uint64_t kvc_ctx_seq_kv_bytes(const kvc_ctx *c, int n_ctx) { return kvc_ctx_seq_kv_bytes_at(c, n_ctx, n_ctx); }

kvc_status kvc_seq_create(kvc_ctx *c, int n_ctx, kvc_seq **out, kvc_error *err) {
    *out = NULL;
    const struct kvc_model *m = c->m;
    const struct kvc_model_info *in = &m->info;
    if (n_ctx < 1 || n_ctx > c->kv.n_ctx)
        return kvc_fail(err, KVC_ERR_ARG, "sequence: %d positions outside 1..%d (the context's -c)", n_ctx, c->kv.n_ctx);
    kvc_seq *s = calloc(1, sizeof *s);
    if (!s) return kvc_fail(err, KVC_ERR_NOMEM, "sequence: out of memory");
    s->c = c;
    struct kv_rope rope = {.base = in->rope_base, .neox = in->rope_neox, .freq_factors = m->rope_freqs,
                           .freq_scale = in->rope_freq_scale};
    kvc_status st = kv_cache_init_lazy(&s->kv, in->n_layer, in->n_head_kv, in->head_dim, n_ctx,
                                       seq_batch_of(c, n_ctx), c->spec_k, c->spec_v, c->spec_w, c->p.kv_sinks,
                                       c->p.kv_recent, &rope, c->p.seed, c->calib, c->isa, err);
    if (st) {
        free(s);
        return st;
    }
    *out = s;
    return KVC_OK;
}

void kvc_seq_free(kvc_seq *s) {
    if (!s) return;
    kv_cache_free(&s->kv);
    free(s);
}

int kvc_seq_n_past(const kvc_seq *s) { return s->kv.n_past; }
int kvc_seq_n_ctx(const kvc_seq *s) { return s->kv.n_ctx; }
kvc_ctx *kvc_seq_ctx(const kvc_seq *s) { return s->c; }

kvc_status kvc_seq_append_kv(kvc_seq *s, int T, const float *k, const float *v, kvc_error *err) {
    return append_kv(s->c, &s->kv, T, k, v, err);
}

uint64_t kvc_seq_kv_bytes(const kvc_seq *s) {
    return s->kv.k.bytes + s->kv.v.bytes + kv_stage_bytes(s->kv.n_head_kv, s->kv.n_batch, s->kv.k.wrow + s->kv.v.wrow);
}


/* Check the batch and cut it into runs (one per sequence, entries consecutive, positions
 * following the sequence's cache). */
static kvc_status batch_runs(kvc_ctx *c, const struct kvc_batch *b, struct seq_run *runs, int *n_runs,
                             kvc_error *err) {
    const struct kvc_model_info *in = &c->m->info;
    int nr = 0;
    for (int t = 0; t < b->n; t++) {
        kvc_seq *s = b->seq[t];
        if (!s || s->c != c)
            return kvc_fail(err, KVC_ERR_ARG, "eval_batch: entry %d: sequence is NULL or of another context", t);
        if (b->token[t] < 0 || b->token[t] >= in->n_vocab)
            return kvc_fail(err, KVC_ERR_RANGE, "eval_batch: entry %d: token id %d outside 0..%d", t, b->token[t],
                            in->n_vocab - 1);
        if (nr == 0 || runs[nr - 1].kv != &s->kv) {
            for (int k = 0; k < nr; k++)
                if (runs[k].kv == &s->kv)
                    return kvc_fail(err, KVC_ERR_ARG, "eval_batch: entry %d: a sequence's entries must be consecutive", t);
            runs[nr++] = (struct seq_run){.kv = &s->kv, .t0 = t, .T = 0, .p0 = s->kv.n_past};
        }
        struct seq_run *r = &runs[nr - 1];
        if (b->pos && b->pos[t] != r->p0 + r->T)
            return kvc_fail(err, KVC_ERR_ARG, "eval_batch: entry %d: position %d, the sequence is at %d", t, b->pos[t],
                            r->p0 + r->T);
        if (++r->T > s->kv.n_batch)
            return kvc_fail(err, KVC_ERR_ARG, "eval_batch: entry %d: more than %d tokens of one sequence", t, s->kv.n_batch);
        if (r->p0 + r->T > s->kv.n_ctx)
            return kvc_fail(err, KVC_ERR_RANGE, "eval_batch: entry %d: sequence full (%d positions)", t, s->kv.n_ctx);
    }
    *n_runs = nr;
    return KVC_OK;
}

kvc_status kvc_eval_batch(kvc_ctx *c, const struct kvc_batch *b, kvc_error *err) {
    const int T = b ? b->n : 0;
    if (T < 1 || T > c->p.n_batch)
        return kvc_fail(err, KVC_ERR_ARG, "eval_batch: %d entries; batch limit is 1..%d (-b)", T, c->p.n_batch);
    struct seq_run *runs = malloc((size_t)T * sizeof *runs);
    if (!runs) return kvc_fail(err, KVC_ERR_NOMEM, "eval_batch: out of memory");
    struct batch_args ba = {.c = c, .runs = runs};
    kvc_status st = batch_runs(c, b, runs, &ba.n_runs, err);
    if (!st) st = plan_runs(c, runs, ba.n_runs, &ba.n_items, err);
    if (!st) forward_runs(c, b->token, T, &ba, 0);
    free(runs);
    return st;
}
