/* calib.c - calibration data for fitted codecs (PCA): per-coefficient quantizer steps fitted
 * on sampled rows, bit allocation, the RoPE table, and the GGUF file that stores them. Files
 * are untrusted input: every field is checked before use. Gathering the statistics (running
 * the model) is src/eval/calibrate.c; a file made for another model is refused there. */
#include "calib_internal.h"
#include "eigen.h"
#include "../gguf.h"
#include "../util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const kvc_calib_kind_name[KVC_CALIB_NKIND] = {"k_pre", "k_post", "v"};

/* ---------------------------------------------------------------- identity ---- */

uint64_t kvc_calib_hash_tokens(const char *const *tok, const uint64_t *len, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t t = 0; t < n; t++) {
        uint64_t l = len[t];
        for (int b = 0; b < 8; b++) {
            h ^= (l >> (8 * b)) & 0xff;
            h *= 0x100000001b3ull;
        }
        for (uint64_t i = 0; i < l; i++) {
            h ^= (unsigned char)tok[t][i];
            h *= 0x100000001b3ull;
        }
    }
    return h;
}

/* ---------------------------------------------------------------- RoPE table ---- */

#define ROPE_BLOCK 1024
#define ROPE_MAX_POS (1 << 24)

struct kvc_rope_table {
    int d;
    float base, scale;
    float *ff; /* (d/2) frequency factors, or NULL */
    _Atomic(float *) blk[ROPE_MAX_POS / ROPE_BLOCK];
};

/* pair i's angle: scale * (theta / ff[i]), theta = pos * base^(-2i/d) by repeated products
 * (forward.c rope_cache; without factors and scale 1 it is theta itself) */
void kvc_rope_compute_ff(float *cs, int pos, int d, float base, const float *ff, float scale) {
    float theta_scale = powf(base, -2.0f / (float)d);
    float theta = (float)pos;
    if (scale == 0) scale = 1;
    for (int i = 0; i < d; i += 2) {
        float t = scale * (ff ? theta / ff[i / 2] : theta);
        cs[i] = cosf(t);
        cs[i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void kvc_rope_compute(float *cs, int pos, int d, float base) { kvc_rope_compute_ff(cs, pos, d, base, NULL, 1.0f); }

struct kvc_rope_table *kvc_rope_table_create_ff(int d, float base, const float *ff, float scale) {
    struct kvc_rope_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->d = d;
    t->base = base;
    t->scale = scale == 0 ? 1.0f : scale;
    if (ff) {
        t->ff = malloc((size_t)(d / 2) * sizeof *t->ff);
        if (!t->ff) {
            free(t);
            return NULL;
        }
        memcpy(t->ff, ff, (size_t)(d / 2) * sizeof *t->ff);
    }
    for (int i = 0; i < ROPE_MAX_POS / ROPE_BLOCK; i++) atomic_init(&t->blk[i], NULL);
    return t;
}

struct kvc_rope_table *kvc_rope_table_create(int d, float base) { return kvc_rope_table_create_ff(d, base, NULL, 1.0f); }

void kvc_rope_table_free(struct kvc_rope_table *t) {
    if (!t) return;
    for (int i = 0; i < ROPE_MAX_POS / ROPE_BLOCK; i++) free(atomic_load(&t->blk[i]));
    free(t->ff);
    free(t);
}

/* kvc_calib's second table: made by the first slot that asks for factors or scaling. */
struct kvc_rope_alt {
    _Atomic(struct kvc_rope_table *) t;
};

struct kvc_rope_table *kvc_calib_rope_for(const struct kvc_calib *c, const float *ff, float scale) {
    if (scale == 0) scale = 1;
    if (!ff && scale == 1) return c->rope;
    if (!c->rope_alt) return NULL;
    const int d = c->id.head_dim;
    struct kvc_rope_table *t = atomic_load_explicit(&c->rope_alt->t, memory_order_acquire);
    if (!t) {
        struct kvc_rope_table *n = kvc_rope_table_create_ff(d, c->id.rope_base, ff, scale);
        if (!n) return NULL;
        struct kvc_rope_table *expect = NULL;
        if (atomic_compare_exchange_strong_explicit(&c->rope_alt->t, &expect, n, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            t = n;
        } else { /* another slot made it first */
            kvc_rope_table_free(n);
            t = expect;
        }
    }
    if (t->scale != scale || !t->ff != !ff || (ff && memcmp(t->ff, ff, (size_t)(d / 2) * sizeof *ff) != 0)) return NULL;
    return t;
}

const float *kvc_rope_row(struct kvc_rope_table *t, int pos) {
    if (pos < 0 || pos >= ROPE_MAX_POS) return NULL;
    int b = pos / ROPE_BLOCK;
    float *p = atomic_load_explicit(&t->blk[b], memory_order_acquire);
    if (!p) {
        float *n = malloc((size_t)ROPE_BLOCK * (size_t)t->d * sizeof *n);
        if (!n) return NULL;
        for (int i = 0; i < ROPE_BLOCK; i++)
            kvc_rope_compute_ff(n + (size_t)i * t->d, b * ROPE_BLOCK + i, t->d, t->base, t->ff, t->scale);
        float *expect = NULL;
        if (atomic_compare_exchange_strong_explicit(&t->blk[b], &expect, n, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            p = n;
        } else { /* another thread filled it first */
            free(n);
            p = expect;
        }
    }
    return p + (size_t)(pos % ROPE_BLOCK) * t->d;
}

/* ---------------------------------------------------------------- alloc / free ---- */

kvc_status kvc_calib_alloc(const struct kvc_calib_id *id, struct kvc_calib **out, kvc_error *err) {
    *out = NULL;
    int d = id->head_dim, mb = KVC_CALIB_MAX_BITS;
    if (id->n_layer < 1 || id->n_head_kv < 1 || d < 2 || d % 2 || d > 4096 || id->n_layer > 4096 ||
        id->n_head_kv > 4096)
        return kvc_fail(err, KVC_ERR_ARG, "calibration: shape %d layers x %d KV heads x head dim %d is not supported",
                        id->n_layer, id->n_head_kv, d);
    struct kvc_calib *c = calloc(1, sizeof *c);
    if (!c) return kvc_fail(err, KVC_ERR_NOMEM, "calibration: out of memory");
    c->id = *id;
    c->max_bits = mb;
    size_t nslot = (size_t)id->n_layer * id->n_head_kv * KVC_CALIB_NKIND;
    size_t per = (size_t)d * (3 + 3 * (size_t)d + 2 * (size_t)(mb + 1));
    c->slot = calloc(nslot, sizeof *c->slot);
    c->data = calloc(nslot * per, sizeof *c->data);
    c->rope = kvc_rope_table_create(d, id->rope_base);
    c->rope_alt = calloc(1, sizeof *c->rope_alt);
    if (c->rope_alt) atomic_init(&c->rope_alt->t, NULL);
    if (!c->slot || !c->data || !c->rope || !c->rope_alt) {
        kvc_calib_free(c);
        return kvc_fail(err, KVC_ERR_NOMEM, "calibration: out of memory for %zu slots of head dim %d", nslot, d);
    }
    for (size_t s = 0; s < nslot; s++) {
        float *p = c->data + s * per;
        c->slot[s].mean = p;
        p += d;
        c->slot[s].basis = p;
        p += (size_t)d * d;
        c->slot[s].eigval = p;
        p += d;
        c->slot[s].step = p;
        p += (size_t)d * (mb + 1);
        c->slot[s].mse = p;
        p += (size_t)d * (mb + 1);
        c->slot[s].metric = p;
        p += (size_t)d * d;
        c->slot[s].metric_inv = p;
        for (int i = 0; i < d; i++) c->slot[s].metric[(size_t)i * d + i] = c->slot[s].metric_inv[(size_t)i * d + i] = 1;
    }
    *out = c;
    return KVC_OK;
}

void kvc_calib_free(struct kvc_calib *c) {
    if (!c) return;
    kvc_rope_table_free(c->rope);
    if (c->rope_alt) kvc_rope_table_free(atomic_load(&c->rope_alt->t));
    free(c->rope_alt);
    free(c->slot);
    free(c->data);
    free(c);
}

/* ---------------------------------------------------------------- explained / bits ---- */

void kvc_calib_explained(const struct kvc_calib_slot *s, int d, double *cum) {
    double tot = 0, run = 0;
    for (int k = 0; k < d; k++) tot += s->eigval[k] > 0 ? s->eigval[k] : 0;
    for (int k = 0; k < d; k++) {
        run += s->eigval[k] > 0 ? s->eigval[k] : 0;
        cum[k] = tot > 0 ? run / tot : (double)(k + 1) / d;
    }
}

void kvc_calib_alloc_bits(const struct kvc_calib_slot *s, int d, int max_bits, int total_bits,
                          uint8_t *bits) {
    memset(bits, 0, (size_t)d);
    if (max_bits > KVC_CALIB_MAX_BITS) max_bits = KVC_CALIB_MAX_BITS;
    if (total_bits > d * max_bits) total_bits = d * max_bits;
    for (int t = 0; t < total_bits; t++) {
        int best = -1;
        double gain = -INFINITY;
        for (int k = 0; k < d; k++) {
            int b = bits[k];
            if (b >= max_bits) continue;
            double g = (double)s->mse[(size_t)b * d + k] - (double)s->mse[(size_t)(b + 1) * d + k];
            if (!(g <= gain)) { /* strictly larger (or the first); NaN never wins twice */
                gain = isnan(g) ? -INFINITY : g;
                best = k;
            }
        }
        if (best < 0) break;
        bits[best]++;
    }
}

/* ---------------------------------------------------------------- step fitting ---- */

/* Mean squared error of quantizing c[0..n) with 2^b levels of step `step` (the quantizer of
 * kvc_quant_index / kvc_quant_value, written branch-free for speed). */
static double quant_mse(const float *c, int n, float step, int b) {
    float inv = 1.0f / step, lo = -(float)(1 << (b - 1)), hi = (float)(1 << (b - 1)) - 1;
    double e = 0;
    for (int i0 = 0; i0 < n; i0 += 256) {
        float part = 0;
        int i1 = n - i0 < 256 ? n : i0 + 256;
        for (int i = i0; i < i1; i++) {
            float q = floorf(c[i] * inv);
            q = q < lo ? lo : q;
            q = q > hi ? hi : q;
            float diff = c[i] - (q + 0.5f) * step;
            part += diff * diff;
        }
        e += part;
    }
    return n ? e / n : 0;
}

/* Step of the MSE-optimal uniform quantizer of a unit Gaussian with 2^b levels (b = 1..8):
 * Max (1960), table of optimum uniform quantizers; used as the starting point of the search. */
static const double gauss_step[9] = {0, 1.596, 0.9957, 0.5860, 0.3352, 0.1881, 0.1041, 0.0569, 0.0308};

/* Tables of the Gaussian model of the eigenvalues (when memory for the fit is short). */
static void gauss_tables(struct kvc_calib_slot *s, int d, int max_bits) {
        for (int k = 0; k < d; k++) {
            double sg = sqrt(s->eigval[k] > 0 ? s->eigval[k] : 0);
            s->step[k] = 0;
            s->mse[k] = (float)(sg * sg);
            for (int b = 1; b <= max_bits; b++) {
                s->step[(size_t)b * d + k] = sg > 0 ? (float)(gauss_step[b] * sg) : 1.0f;
                s->mse[(size_t)b * d + k] = (float)(sg * sg * pow(0.25, b));
            }
        }
}

void kvc_calib_fit_steps(struct kvc_calib_slot *s, int d, int max_bits, const float *rows, int n) {
    float *c = malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    if (!c) {
        gauss_tables(s, d, max_bits);
        return;
    }
    double *E = malloc((size_t)d * d * sizeof *E); /* E[k] = T^T basis_k: coefficient k = E[k] . (x - mean) */
    if (!E) {
        free(c);
        gauss_tables(s, d, max_bits);
        return;
    }
    for (int k = 0; k < d; k++)
            for (int i = 0; i < d; i++) {
                double a = 0;
                for (int j = 0; j < d; j++) a += (double)s->basis[(size_t)k * d + j] * s->metric[(size_t)j * d + i];
                E[(size_t)k * d + i] = a;
            }
    for (int k = 0; k < d; k++) {
        const double *pk = E + (size_t)k * d;
        double ss = 0;
        for (int r = 0; r < n; r++) {
            const float *x = rows + (size_t)r * d;
            double v = 0;
            for (int i = 0; i < d; i++) v += pk[i] * ((double)x[i] - s->mean[i]);
            c[r] = (float)v;
            ss += v * v;
        }
        double var = n ? ss / n : (s->eigval[k] > 0 ? s->eigval[k] : 0);
        double sg = sqrt(var);
        s->step[k] = 0;
        s->mse[k] = (float)var;
        for (int b = 1; b <= max_bits; b++) {
            if (!(sg > 1e-30) || n == 0) {
                s->step[(size_t)b * d + k] = sg > 1e-30 ? (float)(gauss_step[b] * sg) : 1.0f;
                s->mse[(size_t)b * d + k] = (float)(var * pow(0.25, b));
                continue;
            }
            /* coarse grid of factors 2^(u/4) of the Gaussian-optimal step, then a golden-section
             * search on log(step) between the best point's neighbours. Steps below 2^(-1/4)
             * times the Gaussian one are not tried: with fine quantizers the sample error keeps
             * falling as the range shrinks to the largest sampled value, and rows beyond it
             * (unseen in calibration) would then be clipped hard. Heavy tails ask for larger
             * steps, which the search covers up to 4x. */
            double g0 = gauss_step[b] * sg, best_u = 0, best_e = INFINITY;
            for (int u = -1; u <= 8; u++) {
                double e = quant_mse(c, n, (float)(g0 * pow(2.0, u / 4.0)), b);
                if (e < best_e) { best_e = e; best_u = u; }
            }
            double lo = log(g0) + (best_u > -1 ? best_u - 1 : -1) * log(2.0) / 4;
            double hi = log(g0) + (best_u + 1) * log(2.0) / 4;
            const double gr = 0.6180339887498949;
            double x1 = hi - gr * (hi - lo), x2 = lo + gr * (hi - lo);
            double e1 = quant_mse(c, n, (float)exp(x1), b), e2 = quant_mse(c, n, (float)exp(x2), b);
            for (int it = 0; it < 10; it++) {
                if (e1 <= e2) { hi = x2; x2 = x1; e2 = e1; x1 = hi - gr * (hi - lo); e1 = quant_mse(c, n, (float)exp(x1), b); }
                else { lo = x1; x1 = x2; e1 = e2; x2 = lo + gr * (hi - lo); e2 = quant_mse(c, n, (float)exp(x2), b); }
            }
            double bs = g0 * pow(2.0, best_u / 4.0), be = best_e;
            if (e1 < be) { be = e1; bs = exp(x1); }
            if (e2 < be) { be = e2; bs = exp(x2); }
            s->step[(size_t)b * d + k] = (float)bs;
            s->mse[(size_t)b * d + k] = (float)be;
        }
        /* keep the table non-increasing in b (a finer quantizer may always copy a coarser one's
         * levels only approximately; the greedy allocation wants monotone errors) */
        for (int b = 1; b <= max_bits; b++)
            if (s->mse[(size_t)b * d + k] > s->mse[(size_t)(b - 1) * d + k])
                s->mse[(size_t)b * d + k] = s->mse[(size_t)(b - 1) * d + k];
    }
    free(E);
    free(c);
}

/* ---------------------------------------------------------------- GGUF writer ---- */

struct wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
};

static void wb_put(struct wbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void wb_u32(struct wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(struct wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(struct wbuf *b, const char *s) {
    wb_u64(b, strlen(s));
    wb_put(b, s, strlen(s));
}
static void kv_str(struct wbuf *b, const char *key, const char *val) {
    wb_str(b, key); wb_u32(b, GGUF_STRING); wb_str(b, val);
}
static void kv_u32(struct wbuf *b, const char *key, uint32_t v) {
    wb_str(b, key); wb_u32(b, GGUF_U32); wb_u32(b, v);
}
static void kv_u64(struct wbuf *b, const char *key, uint64_t v) {
    wb_str(b, key); wb_u32(b, GGUF_U64); wb_u64(b, v);
}
static void kv_f32(struct wbuf *b, const char *key, float v) {
    wb_str(b, key); wb_u32(b, GGUF_F32); wb_put(b, &v, 4);
}

#define CALIB_ALIGN 32
#define CALIB_NTENS 7 /* mean, basis, eigval, step, mse, metric, metric_inv (version 1: the first 5) */
static const char *const tens_name[CALIB_NTENS] = {"mean", "basis", "eigval", "step", "mse", "metric", "metric_inv"};

static void tensor_dims(int t, int d, int mb, uint32_t *nd, uint64_t ne[2]) {
    switch (t) {
    case 1: case 5: case 6: *nd = 2; ne[0] = (uint64_t)d; ne[1] = (uint64_t)d; break;
    case 3: case 4: *nd = 2; ne[0] = (uint64_t)d; ne[1] = (uint64_t)mb + 1; break;
    default: *nd = 1; ne[0] = (uint64_t)d; ne[1] = 1; break;
    }
}
static float *tensor_ptr(const struct kvc_calib_slot *s, int t) {
    switch (t) {
    case 0: return s->mean;
    case 1: return s->basis;
    case 2: return s->eigval;
    case 3: return s->step;
    case 4: return s->mse;
    case 5: return s->metric;
    default: return s->metric_inv;
    }
}

kvc_status kvc_calib_save(const struct kvc_calib *c, const char *path, kvc_error *err) {
    const struct kvc_calib_id *id = &c->id;
    int d = id->head_dim, mb = c->max_bits;
    uint64_t n_tens = (uint64_t)id->n_layer * id->n_head_kv * KVC_CALIB_NKIND * CALIB_NTENS;
    struct wbuf b = {0};
    char key[128];
    wb_put(&b, "GGUF", 4);
    wb_u32(&b, 3);
    wb_u64(&b, n_tens);
    wb_u64(&b, 16 + (c->has_preset ? 8 : 0));
    kv_u32(&b, "kvcodec.calib.version", KVC_CALIB_VERSION);
    if (c->has_preset) {
        kv_str(&b, "kvcodec.preset.kv_k", c->preset.kv_k);
        kv_str(&b, "kvcodec.preset.kv_v", c->preset.kv_v);
        kv_str(&b, "kvcodec.preset.kv_window", c->preset.kv_window[0] ? c->preset.kv_window : "f16");
        kv_str(&b, "kvcodec.preset.note", c->preset.note);
        kv_u32(&b, "kvcodec.preset.sinks", (uint32_t)c->preset.sinks);
        kv_u32(&b, "kvcodec.preset.recent", (uint32_t)c->preset.recent);
        kv_u32(&b, "kvcodec.preset.ctx", (uint32_t)c->preset.ctx);
        kv_f32(&b, "kvcodec.preset.bits_per_element", (float)c->preset.bits_per_element);
    }
    kv_u32(&b, "kvcodec.calib.metric", (uint32_t)c->metric);
    kv_str(&b, "general.architecture", id->arch);
    kv_str(&b, "general.name", c->model_name);
    snprintf(key, sizeof key, "%s.block_count", id->arch);
    kv_u32(&b, key, (uint32_t)id->n_layer);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", id->arch);
    kv_u32(&b, key, (uint32_t)id->n_head_kv);
    snprintf(key, sizeof key, "%s.attention.key_length", id->arch);
    kv_u32(&b, key, (uint32_t)d);
    snprintf(key, sizeof key, "%s.vocab_size", id->arch);
    kv_u32(&b, key, (uint32_t)id->n_vocab);
    snprintf(key, sizeof key, "%s.rope.freq_base", id->arch);
    kv_f32(&b, key, id->rope_base);
    kv_u64(&b, "kvcodec.calib.tokenizer_hash", id->tok_hash);
    kv_str(&b, "kvcodec.calib.text", c->text);
    kv_u64(&b, "kvcodec.calib.n_tokens", c->n_tokens);
    kv_u32(&b, "kvcodec.calib.ctx", (uint32_t)c->n_ctx);
    kv_u32(&b, "kvcodec.calib.sample_rows", (uint32_t)c->sample_rows);
    kv_u32(&b, "kvcodec.calib.max_bits", (uint32_t)mb);
    kv_u32(&b, "general.alignment", CALIB_ALIGN);
    /* tensor infos */
    uint64_t off = 0;
    for (int l = 0; l < id->n_layer; l++)
        for (int h = 0; h < id->n_head_kv; h++)
            for (int k = 0; k < KVC_CALIB_NKIND; k++)
                for (int t = 0; t < CALIB_NTENS; t++) {
                    uint32_t nd;
                    uint64_t ne[2];
                    tensor_dims(t, d, mb, &nd, ne);
                    snprintf(key, sizeof key, "blk.%d.head.%d.%s.%s", l, h, kvc_calib_kind_name[k], tens_name[t]);
                    wb_str(&b, key);
                    wb_u32(&b, nd);
                    for (uint32_t i = 0; i < nd; i++) wb_u64(&b, ne[i]);
                    wb_u32(&b, 0); /* F32 */
                    wb_u64(&b, off);
                    uint64_t bytes = ne[0] * ne[1] * 4;
                    off += (bytes + CALIB_ALIGN - 1) / CALIB_ALIGN * CALIB_ALIGN;
                }
    static const uint8_t zero[CALIB_ALIGN];
    if (b.n % CALIB_ALIGN) wb_put(&b, zero, CALIB_ALIGN - b.n % CALIB_ALIGN);
    for (int l = 0; l < id->n_layer; l++)
        for (int h = 0; h < id->n_head_kv; h++)
            for (int k = 0; k < KVC_CALIB_NKIND; k++) {
                const struct kvc_calib_slot *s = kvc_calib_slot_get(c, l, h, k);
                for (int t = 0; t < CALIB_NTENS; t++) {
                    uint32_t nd;
                    uint64_t ne[2];
                    tensor_dims(t, d, mb, &nd, ne);
                    size_t bytes = (size_t)(ne[0] * ne[1] * 4);
                    wb_put(&b, tensor_ptr(s, t), bytes);
                    if (bytes % CALIB_ALIGN) wb_put(&b, zero, CALIB_ALIGN - bytes % CALIB_ALIGN);
                }
            }
    if (b.oom) {
        free(b.p);
        return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory writing the calibration file", path);
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(b.p);
        return kvc_fail(err, KVC_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    size_t w = fwrite(b.p, 1, b.n, f);
    int bad = w != b.n || fflush(f) != 0 || ferror(f);
    bad |= fclose(f) != 0;
    free(b.p);
    if (bad) {
        remove(tmp);
        return kvc_fail(err, KVC_ERR_IO, "%s: write error: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return kvc_fail(err, KVC_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    return KVC_OK;
}

/* ---------------------------------------------------------------- loading ---- */

static void copy_gstr(char *dst, size_t cap, struct gguf_str s) {
    size_t n = s.n < cap - 1 ? (size_t)s.n : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        dst[i] = ch >= 32 && ch < 127 ? (char)ch : '?';
    }
    dst[n] = 0;
}

static kvc_status get_u64(const struct gguf_file *f, const char *key, uint64_t *out, kvc_error *err) {
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' is missing", f->path, key);
    if (kv->type == GGUF_U64) {
        memcpy(out, kv->data, 8);
        return KVC_OK;
    }
    uint32_t v;
    kvc_status st = gguf_get_u32(f, key, &v, err);
    if (st) return st;
    *out = v;
    return KVC_OK;
}

static kvc_status get_int(const struct gguf_file *f, const char *key, int lo, int hi, int *out,
                          kvc_error *err) {
    uint32_t v;
    kvc_status st = gguf_get_u32(f, key, &v, err);
    if (st) return st;
    if (v < (uint32_t)lo || v > (uint32_t)hi)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' = %u outside %d..%d", f->path, key, v, lo, hi);
    *out = (int)v;
    return KVC_OK;
}

/* Check one slot's arrays for consistency: finite, eigenvalues descending and >= 0, basis
 * orthonormal, steps positive, errors >= 0. */
static kvc_status check_slot(const char *path, const char *name, const struct kvc_calib_slot *s,
                             int d, int mb, kvc_error *err) {
    for (int i = 0; i < d; i++)
        if (!isfinite(s->mean[i]))
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s.mean'[%d] is not finite", path, name, i);
    double top = s->eigval[0];
    for (int k = 0; k < d; k++) {
        float e = s->eigval[k];
        if (!isfinite(e) || e < -1e-6 * fabs(top) - 1e-30)
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s.eigval'[%d] = %g: eigenvalues must be finite and >= 0",
                            path, name, k, e);
        if (k && e > s->eigval[k - 1] * (1 + 1e-5f) + 1e-30f)
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s.eigval' is not in descending order at %d (%g after %g)",
                            path, name, k, e, s->eigval[k - 1]);
    }
    for (size_t i = 0; i < (size_t)d * d; i++)
        if (!isfinite(s->basis[i]))
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s.basis'[%zu] is not finite", path, name, i);
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) {
            double dot = 0;
            for (int i = 0; i < d; i++) dot += (double)s->basis[(size_t)a * d + i] * s->basis[(size_t)b * d + i];
            if (fabs(dot - (a == b)) > 1e-3)
                return kvc_fail(err, KVC_ERR_FORMAT,
                                "%s: tensor '%s.basis' is not orthonormal: rows %d and %d have dot product %.6f",
                                path, name, a, b, dot);
        }
    for (size_t i = 0; i < (size_t)d * d; i++)
        if (!isfinite(s->metric[i]) || !isfinite(s->metric_inv[i]))
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s.metric' or '.metric_inv'[%zu] is not finite", path,
                            name, i);
    for (int a = 0; a < d; a++)
        for (int b = 0; b < d; b++) {
            double dot = 0;
            for (int i = 0; i < d; i++) dot += (double)s->metric[(size_t)a * d + i] * s->metric_inv[(size_t)i * d + b];
            if (fabs(dot - (a == b)) > 1e-3)
                return kvc_fail(err, KVC_ERR_FORMAT,
                                "%s: tensors '%s.metric' and '.metric_inv' are not inverses: product[%d][%d] = %.6f",
                                path, name, a, b, dot);
        }
    for (int b = 0; b <= mb; b++)
        for (int k = 0; k < d; k++) {
            float st = s->step[(size_t)b * d + k], e = s->mse[(size_t)b * d + k];
            if (!isfinite(st) || (b > 0 && !(st > 0)) || st < 0)
                return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s.step'[%d][%d] = %g: steps must be finite and > 0",
                                path, name, b, k, st);
            if (!isfinite(e) || e < 0)
                return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s.mse'[%d][%d] = %g: errors must be finite and >= 0",
                                path, name, b, k, e);
        }
    return KVC_OK;
}

/* A string of a preset: printable characters, 1..cap - 1 of them (specs: KVC_SPEC_MAX - 1). */
static kvc_status preset_str(const struct gguf_file *f, const char *path, const char *key, char *dst, size_t cap,
                             int may_be_empty, kvc_error *err) {
    struct gguf_str s;
    kvc_status st = gguf_get_str(f, key, &s, err);
    if (st) return st;
    if ((!may_be_empty && s.n == 0) || s.n >= cap)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' has length %llu (%d..%zu)", path, key,
                        (unsigned long long)s.n, may_be_empty ? 0 : 1, cap - 1);
    for (uint64_t i = 0; i < s.n; i++)
        if ((unsigned char)s.p[i] < 32 || (unsigned char)s.p[i] > 126)
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' has a non-printable byte at %llu", path, key,
                            (unsigned long long)i);
    copy_gstr(dst, cap, s);
    return KVC_OK;
}

static kvc_status preset_fields(const struct gguf_file *f, const char *path, struct kvc_preset *p, kvc_error *err) {
    kvc_status st;
    memset(p, 0, sizeof *p);
    if ((st = preset_str(f, path, "kvcodec.preset.kv_k", p->kv_k, sizeof p->kv_k, 0, err)) ||
        (st = preset_str(f, path, "kvcodec.preset.kv_v", p->kv_v, sizeof p->kv_v, 0, err)) ||
        (st = preset_str(f, path, "kvcodec.preset.note", p->note, sizeof p->note, 1, err)) ||
        (st = get_int(f, "kvcodec.preset.ctx", 1, 1 << 24, &p->ctx, err)) ||
        (st = get_int(f, "kvcodec.preset.sinks", 0, 1 << 24, &p->sinks, err)) ||
        (st = get_int(f, "kvcodec.preset.recent", 0, 1 << 24, &p->recent, err)))
        return st;
    /* the window codec: absent in presets written before --kv-window (their rows were f16) */
    if (!gguf_find(f, "kvcodec.preset.kv_window")) snprintf(p->kv_window, sizeof p->kv_window, "f16");
    else if ((st = preset_str(f, path, "kvcodec.preset.kv_window", p->kv_window, sizeof p->kv_window, 0, err)))
        return st;
    float bits;
    if ((st = gguf_get_f32(f, "kvcodec.preset.bits_per_element", &bits, err))) return st;
    if (!isfinite(bits) || bits <= 0 || bits > 64)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata 'kvcodec.preset.bits_per_element' = %g outside (0, 64]",
                        path, bits);
    p->bits_per_element = bits;
    if ((int64_t)p->sinks + p->recent > p->ctx)
        return kvc_fail(err, KVC_ERR_FORMAT,
                        "%s: metadata 'kvcodec.preset.sinks' %d + 'kvcodec.preset.recent' %d exceed 'kvcodec.preset.ctx' %d",
                        path, p->sinks, p->recent, p->ctx);
    return KVC_OK;
}

kvc_status kvc_preset_read(const char *path, struct kvc_preset *out, kvc_error *err) {
    struct kvc_calib *c;
    kvc_status st = kvc_calib_load_file(path, &c, err);
    if (st) return st;
    if (!c->has_preset) {
        kvc_calib_free(c);
        return kvc_fail(err, KVC_ERR_FORMAT,
                        "%s: not a preset (metadata 'kvcodec.preset.kv_k' is missing; it is a plain calibration: "
                        "use --kv-calib, or write a preset with kvcodec preset)", path);
    }
    *out = c->preset;
    kvc_calib_free(c);
    return KVC_OK;
}

kvc_status kvc_calib_load_file(const char *path, struct kvc_calib **out, kvc_error *err) {
    *out = NULL;
    struct gguf_file *f;
    kvc_status st = gguf_open(path, &f, err);
    if (st) return st;
    struct kvc_calib_id id;
    memset(&id, 0, sizeof id);
    struct kvc_calib *c = NULL;
    struct gguf_str s;
    char key[200], name[96];
    uint32_t ver;
    int mb = 0, ctx = 0, srows = 0;
    uint64_t ntok = 0, hash = 0;
    if (!gguf_find(f, "kvcodec.calib.version")) {
        st = kvc_fail(err, KVC_ERR_FORMAT,
                      "%s: not a kvcodec calibration file (metadata 'kvcodec.calib.version' is missing; "
                      "make one with kvcodec calibrate)", path);
        goto fail;
    }
    if ((st = gguf_get_u32(f, "kvcodec.calib.version", &ver, err))) goto fail;
    if (ver != 1 && ver != KVC_CALIB_VERSION) {
        st = kvc_fail(err, KVC_ERR_FORMAT,
                      "%s: kvcodec.calib.version = %u is not supported (this build reads versions 1 and %d; "
                      "re-run kvcodec calibrate)", path, ver, KVC_CALIB_VERSION);
        goto fail;
    }
    if ((st = gguf_get_str(f, "general.architecture", &s, err))) goto fail;
    if (s.n == 0 || s.n >= sizeof id.arch) {
        st = kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata 'general.architecture' has length %llu (1..%zu)",
                      path, (unsigned long long)s.n, sizeof id.arch - 1);
        goto fail;
    }
    copy_gstr(id.arch, sizeof id.arch, s);
    snprintf(key, sizeof key, "%s.block_count", id.arch);
    if ((st = get_int(f, key, 1, 4096, &id.n_layer, err))) goto fail;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", id.arch);
    if ((st = get_int(f, key, 1, 4096, &id.n_head_kv, err))) goto fail;
    snprintf(key, sizeof key, "%s.attention.key_length", id.arch);
    if ((st = get_int(f, key, 2, 4096, &id.head_dim, err))) goto fail;
    if (id.head_dim % 2) {
        st = kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' = %d must be even", path, key, id.head_dim);
        goto fail;
    }
    snprintf(key, sizeof key, "%s.vocab_size", id.arch);
    if ((st = get_int(f, key, 1, 1 << 24, &id.n_vocab, err))) goto fail;
    snprintf(key, sizeof key, "%s.rope.freq_base", id.arch);
    if ((st = gguf_get_f32(f, key, &id.rope_base, err))) goto fail;
    if (!isfinite(id.rope_base) || !(id.rope_base > 1)) {
        st = kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' = %g must be a finite number > 1", path, key, id.rope_base);
        goto fail;
    }
    {
        const struct gguf_kv *kv = gguf_find(f, "kvcodec.calib.tokenizer_hash");
        if (!kv || kv->type != GGUF_U64) {
            st = kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata 'kvcodec.calib.tokenizer_hash' is %s (expected u64)",
                          path, kv ? gguf_vtype_name(kv->type) : "missing");
            goto fail;
        }
        memcpy(&hash, kv->data, 8);
        id.tok_hash = hash;
    }
    if ((st = get_u64(f, "kvcodec.calib.n_tokens", &ntok, err))) goto fail;
    if ((st = get_int(f, "kvcodec.calib.ctx", 1, 1 << 24, &ctx, err))) goto fail;
    if ((st = get_int(f, "kvcodec.calib.sample_rows", 0, 1 << 30, &srows, err))) goto fail;
    if ((st = get_int(f, "kvcodec.calib.max_bits", KVC_CALIB_MAX_BITS, KVC_CALIB_MAX_BITS, &mb, err))) goto fail;
    int ntens = ver == 1 ? 5 : CALIB_NTENS, metric = 0;
    if (ver >= 2 && (st = get_int(f, "kvcodec.calib.metric", 0, 3, &metric, err))) goto fail;
    {
        /* Check every tensor (in the order the writer uses: layer, head, kind, then mean, basis,
         * eigval, step, mse) before allocating anything: sizes then come from data that the
         * GGUF reader has found inside the file. O(n) in the number of tensors. */
        int d = id.head_dim;
        uint64_t want = (uint64_t)id.n_layer * id.n_head_kv * KVC_CALIB_NKIND * ntens;
        if (f->n_tensors != want) {
            st = kvc_fail(err, KVC_ERR_FORMAT,
                          "%s: %llu tensors, expected %llu (%d layers x %d KV heads x 3 kinds x %d)", path,
                          (unsigned long long)f->n_tensors, (unsigned long long)want, id.n_layer, id.n_head_kv, ntens);
            goto fail;
        }
        uint64_t ti = 0;
        for (int l = 0; l < id.n_layer; l++)
            for (int h = 0; h < id.n_head_kv; h++)
                for (int k = 0; k < KVC_CALIB_NKIND; k++)
                    for (int t = 0; t < ntens; t++, ti++) {
                        snprintf(key, sizeof key, "blk.%d.head.%d.%s.%s", l, h, kvc_calib_kind_name[k], tens_name[t]);
                        const struct gguf_tensor *gt = &f->tensors[ti];
                        uint32_t nd;
                        uint64_t ne[2];
                        tensor_dims(t, d, mb, &nd, ne);
                        if (!gguf_str_eq(gt->name, key)) {
                            copy_gstr(name, sizeof name, gt->name);
                            st = kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor %llu is '%s', expected '%s'", path,
                                          (unsigned long long)ti, name, key);
                            goto fail;
                        }
                        if (gt->type != 0) {
                            st = kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s' has type %u, expected F32 (0)", path,
                                          key, gt->type);
                            goto fail;
                        }
                        if (gt->n_dims != nd || gt->ne[0] != ne[0] || gt->ne[1] != ne[1] || gt->ne[2] != 1 ||
                            gt->ne[3] != 1) {
                            st = kvc_fail(err, KVC_ERR_FORMAT,
                                          "%s: tensor '%s' has shape [%llu, %llu, %llu, %llu] (%u dims), expected [%llu, %llu]",
                                          path, key, (unsigned long long)gt->ne[0], (unsigned long long)gt->ne[1],
                                          (unsigned long long)gt->ne[2], (unsigned long long)gt->ne[3], gt->n_dims,
                                          (unsigned long long)ne[0], (unsigned long long)ne[1]);
                            goto fail;
                        }
                    }
    }
    if ((st = kvc_calib_alloc(&id, &c, err))) {
        if (st == KVC_ERR_ARG) st = err ? (err->status = KVC_ERR_FORMAT) : KVC_ERR_FORMAT;
        goto fail;
    }
    c->n_tokens = ntok;
    c->metric = metric;
    if (gguf_find(f, "kvcodec.preset.kv_k")) {
        if ((st = preset_fields(f, path, &c->preset, err))) goto fail;
        c->has_preset = 1;
    }
    c->n_ctx = ctx;
    c->sample_rows = srows;
    if (gguf_get_str(f, "general.name", &s, NULL) == KVC_OK) copy_gstr(c->model_name, sizeof c->model_name, s);
    if ((st = gguf_get_str(f, "kvcodec.calib.text", &s, err))) goto fail;
    copy_gstr(c->text, sizeof c->text, s);
    {
        int d = id.head_dim;
        uint64_t ti = 0;
        for (int l = 0; l < id.n_layer; l++)
            for (int h = 0; h < id.n_head_kv; h++)
                for (int k = 0; k < KVC_CALIB_NKIND; k++) {
                    struct kvc_calib_slot *sl = &c->slot[((size_t)l * id.n_head_kv + h) * KVC_CALIB_NKIND + k];
                    for (int t = 0; t < ntens; t++, ti++) {
                        const struct gguf_tensor *gt = &f->tensors[ti];
                        memcpy(tensor_ptr(sl, t), gt->data, (size_t)(gt->ne[0] * gt->ne[1] * 4));
                    }
                    snprintf(name, sizeof name, "blk.%d.head.%d.%s", l, h, kvc_calib_kind_name[k]);
                    if ((st = check_slot(path, name, sl, d, mb, err))) goto fail;
                }
    }
    snprintf(c->path, sizeof c->path, "%s", path);
    gguf_close(f);
    *out = c;
    return KVC_OK;
fail:
    kvc_calib_free(c);
    gguf_close(f);
    return st;
}

kvc_status kvc_calib_check_id(const struct kvc_calib *c, const struct kvc_calib_id *id, kvc_error *err) {
    const char *p = c->path[0] ? c->path : "calibration";
    const char *a = c->id.arch;
    if (strcmp(c->id.arch, id->arch) != 0)
        return kvc_fail(err, KVC_ERR_CALIB,
                        "%s: calibration is for another model: general.architecture = '%s' in the file, '%s' in the model",
                        p, c->id.arch, id->arch);
#define CHK_INT(field, keyfmt)                                                                           \
    if (c->id.field != id->field)                                                                        \
        return kvc_fail(err, KVC_ERR_CALIB,                                                              \
                        "%s: calibration is for another model: " keyfmt " = %d in the file, %d in the model", \
                        p, a, c->id.field, id->field);
    CHK_INT(n_layer, "%s.block_count")
    CHK_INT(n_head_kv, "%s.attention.head_count_kv")
    CHK_INT(head_dim, "%s.attention.key_length")
    CHK_INT(n_vocab, "%s.vocab_size")
#undef CHK_INT
    if (c->id.rope_base != id->rope_base)
        return kvc_fail(err, KVC_ERR_CALIB,
                        "%s: calibration is for another model: %s.rope.freq_base = %g in the file, %g in the model",
                        p, a, c->id.rope_base, id->rope_base);
    if (c->id.tok_hash != id->tok_hash)
        return kvc_fail(err, KVC_ERR_CALIB,
                        "%s: calibration is for another model: kvcodec.calib.tokenizer_hash = %016llx in the file, "
                        "%016llx for the model's tokenizer (calibrated on '%s')",
                        p, (unsigned long long)c->id.tok_hash, (unsigned long long)id->tok_hash, c->model_name);
    return KVC_OK;
}
