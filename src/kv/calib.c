/* calib.c - calibration data for fitted codecs (PCA): gathering statistics of keys (before
 * and after RoPE) and values while the model runs over a calibration text, fitting
 * principal directions and per-coefficient quantizer steps, and the GGUF file that stores
 * them. Files are untrusted input: every field is checked before use and a file made for
 * another model is refused with the field, the file's value and the model's value. */
#include "calib_internal.h"
#include "eigen.h"
#include "../forward.h"
#include "../gguf.h"
#include "../model.h"
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

kvc_status kvc_calib_model_id(const struct kvc_model *m, struct kvc_calib_id *id, kvc_error *err) {
    memset(id, 0, sizeof *id);
    const struct kvc_model_info *in = &m->info;
    snprintf(id->arch, sizeof id->arch, "%s", in->arch);
    id->n_layer = in->n_layer;
    id->n_head_kv = in->n_head_kv;
    id->head_dim = in->head_dim;
    id->n_vocab = in->n_vocab;
    id->rope_base = in->rope_base;
    const struct gguf_kv *kv;
    kvc_status st = gguf_get_arr(m->gguf, "tokenizer.ggml.tokens", GGUF_STRING, &kv, err);
    if (st) return st;
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t t = 0; t < kv->arr_n; t++) { /* same as kvc_calib_hash_tokens, streaming */
        uint64_t l = kv->strs[t].n;
        for (int b = 0; b < 8; b++) {
            h ^= (l >> (8 * b)) & 0xff;
            h *= 0x100000001b3ull;
        }
        for (uint64_t i = 0; i < l; i++) {
            h ^= (unsigned char)kv->strs[t].p[i];
            h *= 0x100000001b3ull;
        }
    }
    id->tok_hash = h;
    return KVC_OK;
}

/* ---------------------------------------------------------------- RoPE table ---- */

#define ROPE_BLOCK 1024
#define ROPE_MAX_POS (1 << 24)

struct kvc_rope_table {
    int d;
    float base;
    _Atomic(float *) blk[ROPE_MAX_POS / ROPE_BLOCK];
};

void kvc_rope_compute(float *cs, int pos, int d, float base) {
    float theta_scale = powf(base, -2.0f / (float)d);
    float theta = (float)pos;
    for (int i = 0; i < d; i += 2) {
        cs[i] = cosf(theta);
        cs[i + 1] = sinf(theta);
        theta *= theta_scale;
    }
}

struct kvc_rope_table *kvc_rope_table_create(int d, float base) {
    struct kvc_rope_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->d = d;
    t->base = base;
    for (int i = 0; i < ROPE_MAX_POS / ROPE_BLOCK; i++) atomic_init(&t->blk[i], NULL);
    return t;
}

void kvc_rope_table_free(struct kvc_rope_table *t) {
    if (!t) return;
    for (int i = 0; i < ROPE_MAX_POS / ROPE_BLOCK; i++) free(atomic_load(&t->blk[i]));
    free(t);
}

const float *kvc_rope_row(struct kvc_rope_table *t, int pos) {
    if (pos < 0 || pos >= ROPE_MAX_POS) return NULL;
    int b = pos / ROPE_BLOCK;
    float *p = atomic_load_explicit(&t->blk[b], memory_order_acquire);
    if (!p) {
        float *n = malloc((size_t)ROPE_BLOCK * (size_t)t->d * sizeof *n);
        if (!n) return NULL;
        for (int i = 0; i < ROPE_BLOCK; i++)
            kvc_rope_compute(n + (size_t)i * t->d, b * ROPE_BLOCK + i, t->d, t->base);
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
    size_t per = (size_t)d * (3 + (size_t)d + 2 * (size_t)(mb + 1));
    c->slot = calloc(nslot, sizeof *c->slot);
    c->data = calloc(nslot * per, sizeof *c->data);
    c->rope = kvc_rope_table_create(d, id->rope_base);
    if (!c->slot || !c->data || !c->rope) {
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
    }
    *out = c;
    return KVC_OK;
}

void kvc_calib_free(struct kvc_calib *c) {
    if (!c) return;
    kvc_rope_table_free(c->rope);
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

void kvc_calib_fit_steps(struct kvc_calib_slot *s, int d, int max_bits, const float *rows, int n) {
    float *c = malloc((size_t)(n > 0 ? n : 1) * sizeof *c);
    if (!c) { /* fall back to the Gaussian model of the eigenvalues */
        for (int k = 0; k < d; k++) {
            double sg = sqrt(s->eigval[k] > 0 ? s->eigval[k] : 0);
            s->step[k] = 0;
            s->mse[k] = (float)(sg * sg);
            for (int b = 1; b <= max_bits; b++) {
                s->step[(size_t)b * d + k] = sg > 0 ? (float)(gauss_step[b] * sg) : 1.0f;
                s->mse[(size_t)b * d + k] = (float)(sg * sg * pow(0.25, b));
            }
        }
        return;
    }
    for (int k = 0; k < d; k++) {
        const float *pk = s->basis + (size_t)k * d;
        double ss = 0;
        for (int r = 0; r < n; r++) {
            const float *x = rows + (size_t)r * d;
            double v = 0;
            for (int i = 0; i < d; i++) v += (double)pk[i] * ((double)x[i] - s->mean[i]);
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
#define CALIB_NTENS 5 /* mean, basis, eigval, step, mse */
static const char *const tens_name[CALIB_NTENS] = {"mean", "basis", "eigval", "step", "mse"};

static void tensor_dims(int t, int d, int mb, uint32_t *nd, uint64_t ne[2]) {
    switch (t) {
    case 1: *nd = 2; ne[0] = (uint64_t)d; ne[1] = (uint64_t)d; break;
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
    default: return s->mse;
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
    wb_u64(&b, 15);
    kv_u32(&b, "kvcodec.calib.version", KVC_CALIB_VERSION);
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
    if (ver != KVC_CALIB_VERSION) {
        st = kvc_fail(err, KVC_ERR_FORMAT,
                      "%s: kvcodec.calib.version = %u is not supported (this build reads version %d; "
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
    {
        /* Check every tensor (in the order the writer uses: layer, head, kind, then mean, basis,
         * eigval, step, mse) before allocating anything: sizes then come from data that the
         * GGUF reader has found inside the file. O(n) in the number of tensors. */
        int d = id.head_dim;
        uint64_t want = (uint64_t)id.n_layer * id.n_head_kv * KVC_CALIB_NKIND * CALIB_NTENS;
        if (f->n_tensors != want) {
            st = kvc_fail(err, KVC_ERR_FORMAT,
                          "%s: %llu tensors, expected %llu (%d layers x %d KV heads x 3 kinds x 5)", path,
                          (unsigned long long)f->n_tensors, (unsigned long long)want, id.n_layer, id.n_head_kv);
            goto fail;
        }
        uint64_t ti = 0;
        for (int l = 0; l < id.n_layer; l++)
            for (int h = 0; h < id.n_head_kv; h++)
                for (int k = 0; k < KVC_CALIB_NKIND; k++)
                    for (int t = 0; t < CALIB_NTENS; t++, ti++) {
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
                    for (int t = 0; t < CALIB_NTENS; t++, ti++) {
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

kvc_status kvc_calib_load(const char *path, const struct kvc_model *m, struct kvc_calib **out,
                          kvc_error *err) {
    *out = NULL;
    struct kvc_calib *c;
    kvc_status st = kvc_calib_load_file(path, &c, err);
    if (st) return st;
    struct kvc_calib_id id;
    if ((st = kvc_calib_model_id(m, &id, err)) || (st = kvc_calib_check_id(c, &id, err))) {
        kvc_calib_free(c);
        return st;
    }
    *out = c;
    return KVC_OK;
}

/* ---------------------------------------------------------------- fitting ---- */

struct acc_slot {
    double n;
    double *sum;  /* (d) sums of x - ref */
    double *S;    /* (d, d) upper triangle of sums of (x - ref)(x - ref)^T */
    float *ref;   /* (d) shift: mean of the first rows seen */
    int has_ref;
    float *sample; /* (R, d) reservoir */
    int64_t seen;
    uint64_t rng;
};

struct fit_ctx {
    int L, H, d, R, nth;
    struct acc_slot *a; /* (L, H, NKIND) */
    /* current observer call */
    int layer, T;
    const float *rows[KVC_CALIB_NKIND];
    double *ybuf;       /* (nth, T_max * d) scratch */
    int T_max;
    /* finishing */
    struct kvc_calib *c;
    kvc_status st;
    kvc_error err;
    pthread_mutex_t mu;
};

static void acc_update(struct fit_ctx *fc, struct acc_slot *a, const float *rows, int stride, int T,
                       double *y) {
    int d = fc->d;
    if (!a->has_ref) {
        for (int i = 0; i < d; i++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += rows[(size_t)t * stride + i];
            a->ref[i] = (float)(s / T);
        }
        a->has_ref = 1;
    }
    /* y: transposed (d, T) centred rows */
    for (int t = 0; t < T; t++) {
        const float *x = rows + (size_t)t * stride;
        for (int i = 0; i < d; i++) y[(size_t)i * T + t] = (double)x[i] - a->ref[i];
    }
    for (int i = 0; i < d; i++) {
        const double *yi = y + (size_t)i * T;
        double s = 0;
        for (int t = 0; t < T; t++) s += yi[t];
        a->sum[i] += s;
        for (int j = i; j < d; j++) {
            const double *yj = y + (size_t)j * T;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int t = 0;
            for (; t + 4 <= T; t += 4) {
                s0 += yi[t] * yj[t];
                s1 += yi[t + 1] * yj[t + 1];
                s2 += yi[t + 2] * yj[t + 2];
                s3 += yi[t + 3] * yj[t + 3];
            }
            for (; t < T; t++) s0 += yi[t] * yj[t];
            a->S[(size_t)i * d + j] += (s0 + s1) + (s2 + s3);
        }
    }
    a->n += T;
    /* reservoir sample (algorithm R) */
    for (int t = 0; t < T; t++) {
        int64_t i = a->seen++;
        int64_t slot = -1;
        if (i < fc->R) slot = i;
        else {
            uint64_t r = kvc_splitmix64(&a->rng) % (uint64_t)(i + 1);
            if (r < (uint64_t)fc->R) slot = (int64_t)r;
        }
        if (slot >= 0) memcpy(a->sample + (size_t)slot * d, rows + (size_t)t * stride, (size_t)d * sizeof(float));
    }
}

struct worker_arg {
    struct fit_ctx *fc;
    int ith;
    void (*fn)(struct fit_ctx *fc, int ith);
};

static void *worker_main(void *p) {
    struct worker_arg *w = p;
    w->fn(w->fc, w->ith);
    return NULL;
}

/* Run fn(fc, ith) for ith = 0..nth-1, on nth - 1 new threads and the caller. */
static void run_parallel(struct fit_ctx *fc, void (*fn)(struct fit_ctx *, int)) {
    int nth = fc->nth;
    pthread_t tid[256];
    struct worker_arg wa[256];
    int started = 0;
    for (int i = 1; i < nth; i++) {
        wa[i] = (struct worker_arg){fc, i, fn};
        if (pthread_create(&tid[i], NULL, worker_main, &wa[i]) != 0) break;
        started = i;
    }
    fn(fc, 0);
    /* threads that failed to start: do their share here */
    for (int i = started + 1; i < nth; i++) fn(fc, i);
    for (int i = 1; i <= started; i++) pthread_join(tid[i], NULL);
}

static void observe_task(struct fit_ctx *fc, int ith) {
    int ntask = fc->H * KVC_CALIB_NKIND;
    double *y = fc->ybuf + (size_t)ith * fc->T_max * fc->d;
    for (int task = ith; task < ntask; task += fc->nth) {
        int h = task / KVC_CALIB_NKIND, k = task % KVC_CALIB_NKIND;
        struct acc_slot *a = &fc->a[((size_t)fc->layer * fc->H + h) * KVC_CALIB_NKIND + k];
        acc_update(fc, a, fc->rows[k] + (size_t)h * fc->d, fc->H * fc->d, fc->T, y);
    }
}

static void observer(void *user, int layer, int p0, int T, const float *k_pre, const float *k_post,
                     const float *v) {
    (void)p0;
    struct fit_ctx *fc = user;
    fc->layer = layer;
    fc->T = T;
    fc->rows[KVC_CALIB_K_PRE] = k_pre;
    fc->rows[KVC_CALIB_K_POST] = k_post;
    fc->rows[KVC_CALIB_V] = v;
    run_parallel(fc, observe_task);
}

static void fit_fail(struct fit_ctx *fc, kvc_status st, const kvc_error *e) {
    pthread_mutex_lock(&fc->mu);
    if (!fc->st) {
        fc->st = st;
        fc->err = *e;
    }
    pthread_mutex_unlock(&fc->mu);
}

static void finish_task(struct fit_ctx *fc, int ith) {
    int d = fc->d, nslot = fc->L * fc->H * KVC_CALIB_NKIND;
    double *cov = malloc((size_t)d * d * sizeof *cov), *ev = malloc((size_t)d * sizeof *ev);
    double *vec = malloc((size_t)d * d * sizeof *vec), *mu = malloc((size_t)d * sizeof *mu);
    if (!cov || !ev || !vec || !mu) {
        kvc_error e = {0};
        kvc_fail(&e, KVC_ERR_NOMEM, "calibration: out of memory fitting bases");
        fit_fail(fc, KVC_ERR_NOMEM, &e);
        free(cov); free(ev); free(vec); free(mu);
        return;
    }
    for (int s = ith; s < nslot; s += fc->nth) {
        struct acc_slot *a = &fc->a[s];
        struct kvc_calib_slot *cs = &fc->c->slot[s];
        double n = a->n > 0 ? a->n : 1;
        for (int i = 0; i < d; i++) {
            mu[i] = a->sum[i] / n;
            cs->mean[i] = (float)(a->ref[i] + mu[i]);
        }
        for (int i = 0; i < d; i++)
            for (int j = i; j < d; j++) {
                double v = a->S[(size_t)i * d + j] / n - mu[i] * mu[j];
                cov[(size_t)i * d + j] = cov[(size_t)j * d + i] = v;
            }
        kvc_error e = {0};
        kvc_status st = kvc_eigh(d, cov, ev, vec, &e);
        if (st) {
            fit_fail(fc, st, &e);
            break;
        }
        for (int k = 0; k < d; k++) {
            cs->eigval[k] = ev[k] > 0 ? (float)ev[k] : 0.0f;
            for (int i = 0; i < d; i++) cs->basis[(size_t)k * d + i] = (float)vec[(size_t)k * d + i];
        }
        int ns = a->seen < fc->R ? (int)a->seen : fc->R;
        kvc_calib_fit_steps(cs, d, fc->c->max_bits, a->sample, ns);
    }
    free(cov); free(ev); free(vec); free(mu);
}

void kvc_calib_opts_default(struct kvc_calib_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 2048;
    o->n_batch = 512;
    o->n_threads = 2;
    o->max_tokens = 131072;
    o->sample_rows = 4096;
    o->text_name = "";
}

kvc_status kvc_calib_fit(const struct kvc_model *m, const int32_t *tokens, int64_t n_tokens,
                         const struct kvc_calib_opts *opt, struct kvc_calib **out, kvc_error *err) {
    *out = NULL;
    struct kvc_calib_opts o;
    if (opt) o = *opt;
    else kvc_calib_opts_default(&o);
    if (o.n_ctx < 2 || o.n_batch < 1 || o.n_threads < 1 || o.n_threads > 256 || o.sample_rows < 0 ||
        o.max_tokens < 2)
        return kvc_fail(err, KVC_ERR_ARG, "calibrate: bad options (-c %d, batch %d, -t %d, --tokens %lld)",
                        o.n_ctx, o.n_batch, o.n_threads, (long long)o.max_tokens);
    int64_t use = n_tokens < o.max_tokens ? n_tokens : o.max_tokens;
    if (use < 2)
        return kvc_fail(err, KVC_ERR_ARG, "calibrate: the text has %lld tokens; at least 2 are needed",
                        (long long)n_tokens);
    struct kvc_calib_id id;
    kvc_status st = kvc_calib_model_id(m, &id, err);
    if (st) return st;
    struct kvc_calib *c;
    if ((st = kvc_calib_alloc(&id, &c, err))) return st;
    snprintf(c->model_name, sizeof c->model_name, "%s", m->info.name);
    snprintf(c->text, sizeof c->text, "%s", o.text_name ? o.text_name : "");
    c->n_ctx = o.n_ctx;
    c->sample_rows = o.sample_rows;

    struct fit_ctx fc;
    memset(&fc, 0, sizeof fc);
    pthread_mutex_init(&fc.mu, NULL);
    fc.L = id.n_layer;
    fc.H = id.n_head_kv;
    fc.d = id.head_dim;
    fc.nth = o.n_threads;
    fc.c = c;
    int d = fc.d;
    /* cap the reservoirs at about 512 MiB */
    size_t nslot = (size_t)fc.L * fc.H * KVC_CALIB_NKIND;
    size_t cap_rows = ((size_t)512 << 20) / (nslot * (size_t)d * sizeof(float));
    fc.R = (size_t)o.sample_rows < cap_rows ? o.sample_rows : (int)cap_rows;
    c->sample_rows = fc.R;
    int n_batch = o.n_batch < o.n_ctx ? o.n_batch : o.n_ctx;
    fc.T_max = n_batch;
    fc.a = calloc(nslot, sizeof *fc.a);
    fc.ybuf = malloc((size_t)fc.nth * fc.T_max * d * sizeof(double));
    int ok = fc.a && fc.ybuf;
    for (size_t s = 0; ok && s < nslot; s++) {
        struct acc_slot *a = &fc.a[s];
        a->sum = calloc((size_t)d, sizeof *a->sum);
        a->S = calloc((size_t)d * d, sizeof *a->S);
        a->ref = calloc((size_t)d, sizeof *a->ref);
        a->sample = malloc(((size_t)fc.R * d + 1) * sizeof *a->sample);
        a->rng = 0x6b7663ull + s * 0x9e3779b97f4a7c15ull;
        ok = a->sum && a->S && a->ref && a->sample;
    }
    kvc_ctx *ctx = NULL;
    if (!ok) {
        st = kvc_fail(err, KVC_ERR_NOMEM, "calibrate: out of memory for statistics of %zu slots", nslot);
        goto done;
    }
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = o.n_ctx;
    p.n_batch = n_batch;
    p.n_threads = o.n_threads;
    if ((st = kvc_ctx_create(m, &p, &ctx, err))) goto done;
    if ((st = kvc_ctx_set_observer(ctx, observer, &fc, err))) goto done;
    int bos = m->info.bos_id;
    int32_t *buf = malloc((size_t)n_batch * sizeof *buf);
    if (!buf) {
        st = kvc_fail(err, KVC_ERR_NOMEM, "calibrate: out of memory");
        goto done;
    }
    int64_t done_tok = 0;
    for (int64_t c0 = 0; c0 < use && !st; c0 += o.n_ctx) {
        int64_t clen = use - c0 < o.n_ctx ? use - c0 : o.n_ctx;
        if (clen < 2) break;
        kvc_ctx_reset(ctx);
        for (int64_t i = 0; i < clen && !st; i += n_batch) {
            int nb = (int)(clen - i < n_batch ? clen - i : n_batch);
            memcpy(buf, tokens + c0 + i, (size_t)nb * sizeof *buf);
            if (i == 0 && bos >= 0) buf[0] = bos;
            st = kvc_eval(ctx, buf, nb, 0, err);
            done_tok += nb;
            if (!st && o.progress) o.progress(o.progress_user, done_tok, use);
        }
    }
    free(buf);
    if (st) goto done;
    c->n_tokens = (uint64_t)done_tok;
    run_parallel(&fc, finish_task);
    if (fc.st) {
        st = fc.st;
        if (err) *err = fc.err;
    }
done:
    kvc_ctx_free(ctx);
    if (fc.a)
        for (size_t s = 0; s < nslot; s++) {
            free(fc.a[s].sum);
            free(fc.a[s].S);
            free(fc.a[s].ref);
            free(fc.a[s].sample);
        }
    free(fc.a);
    free(fc.ybuf);
    pthread_mutex_destroy(&fc.mu);
    if (st) {
        kvc_calib_free(c);
        return st;
    }
    *out = c;
    return KVC_OK;
}
