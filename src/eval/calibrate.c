/* calibrate.c - the calibration run (it calls the forward pass, so it lives outside src/kv):
 * statistics of keys before / after RoPE and values per (layer, KV head) in float64, query
 * energy per KV head and the output projection's metric for the attention-aware transform,
 * then bases and quantizer steps (kvc_calib_fit_steps in src/kv/calib.c); also the model
 * identity that ties a calibration file to a model and kvc_calib_load. */
#include "calibrate.h"
#include "../arch/kernels.h"
#include "../forward.h"
#include "../gguf.h"
#include "../kv/eigen.h"
#include "../model.h"
#include "../util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- identity ---- */

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
    int metric, G;      /* attention metric on; query heads per KV head */
    int neox;           /* RoPE pairs (i, i + d/2) (qwen2) instead of (2i, 2i + 1) */
    double *qe;         /* (L, H, d) sums of q_i^2 over the G query heads of each KV head */
    double *vm;         /* (L, H, d, d) sum_g W_o,g^T W_o,g */
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
                     const float *v, const float *q) {
    (void)p0;
    struct fit_ctx *fc = user;
    int d = fc->d, nq = fc->H * fc->G;
    for (int t = 0; t < T; t++) /* q: (T, n_head * d), query head j reads KV head j / G */
        for (int j = 0; j < nq; j++) {
            const float *qr = q + ((size_t)t * nq + j) * d;
            double *e = fc->qe + ((size_t)layer * fc->H + j / fc->G) * d;
            for (int i = 0; i < d; i++) e[i] += (double)qr[i] * qr[i];
        }
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
        kvc_status st = KVC_OK;
        int kind = s % KVC_CALIB_NKIND, lh = s / KVC_CALIB_NKIND;
        if ((fc->metric & 1) && kind == KVC_CALIB_K_PRE) kvc_calib_metric_pairs(d, fc->neox, fc->qe + (size_t)lh * d, cs->metric, cs->metric_inv);
        if ((fc->metric & 2) && kind == KVC_CALIB_V)
            st = kvc_calib_metric_sqrt(d, fc->vm + (size_t)lh * d * d, cs->metric, cs->metric_inv, &e);
        if (!st && ((kind == KVC_CALIB_K_PRE && (fc->metric & 1)) || (kind == KVC_CALIB_V && (fc->metric & 2)))) { /* cov <- T cov T^T (vec as scratch) */
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) {
                    double acc = 0;
                    for (int k = 0; k < d; k++) acc += (double)cs->metric[(size_t)i * d + k] * cov[(size_t)k * d + j];
                    vec[(size_t)i * d + j] = acc;
                }
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) {
                    double acc = 0;
                    for (int k = 0; k < d; k++) acc += vec[(size_t)i * d + k] * (double)cs->metric[(size_t)j * d + k];
                    cov[(size_t)i * d + j] = acc;
                }
            for (int i = 0; i < d; i++)
                for (int j = i + 1; j < d; j++) cov[(size_t)i * d + j] = cov[(size_t)j * d + i] = 0.5 * (cov[(size_t)i * d + j] + cov[(size_t)j * d + i]);
        }
        if (!st) st = kvc_eigh(d, cov, ev, vec, &e);
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

/* fc->vm[l][h] = sum over the query heads g of KV head h of W_o,g^T W_o,g, W_o,g = the
 * (n_embd, d) columns of layer l's output projection that read head g. 0, or -1 (memory). */
static int wo_metric(const struct kvc_model *m, struct fit_ctx *fc) {
    int d = fc->d, nq = fc->H * fc->G, E = m->info.n_embd;
    float *row = malloc((size_t)nq * d * sizeof *row); /* (n_head * d) one row of W_o */
    if (!row) return -1;
    for (int l = 0; l < fc->L; l++)
        for (int e = 0; e < E; e++) {
            kvc_weight_row_to_f32(&m->layers[l].wo, e, row);
            for (int g = 0; g < nq; g++) {
                const float *r = row + (size_t)g * d;
                double *M = fc->vm + ((size_t)l * fc->H + g / fc->G) * d * d;
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < d; j++) M[(size_t)i * d + j] += (double)r[i] * r[j];
            }
        }
    free(row);
    return 0;
}

void kvc_calib_metric_pairs(int d, int neox, const double *w, float *T, float *Tinv) {
    double pw[4096], mx = 0, mean = 0;
    for (int p = 0; p < d / 2; p++) {
        const int a = neox ? p : 2 * p, b = neox ? p + d / 2 : 2 * p + 1;
        pw[a] = pw[b] = 0.5 * (w[a] + w[b]);
        if (pw[a] > mx) mx = pw[a];
    }
    for (int i = 0; i < d; i++) {
        if (!(pw[i] >= 1e-6 * mx)) pw[i] = 1e-6 * mx;
        mean += pw[i] / d;
    }
    memset(T, 0, (size_t)d * d * sizeof *T);
    memset(Tinv, 0, (size_t)d * d * sizeof *Tinv);
    for (int i = 0; i < d; i++) {
        double t = mean > 0 ? sqrt(pw[i] / mean) : 1.0;
        T[(size_t)i * d + i] = (float)t;
        Tinv[(size_t)i * d + i] = (float)(1.0 / t);
    }
}

kvc_status kvc_calib_metric_sqrt(int d, const double *M, float *T, float *Tinv, kvc_error *err) {
    double *ev = malloc((size_t)d * sizeof *ev), *U = malloc((size_t)d * d * sizeof *U);
    kvc_status st = ev && U ? kvc_eigh(d, M, ev, U, err) : kvc_fail(err, KVC_ERR_NOMEM, "calibration: out of memory");
    if (!st) {
        double mean = 0, mx = ev[0] > 0 ? ev[0] : 0;
        for (int k = 0; k < d; k++) {
            if (!(ev[k] >= 1e-6 * mx)) ev[k] = 1e-6 * mx;
            mean += ev[k] / d;
        }
        if (!(mean > 0)) mean = 1, mx = 1;
        for (int k = 0; k < d; k++) ev[k] = mx > 0 && ev[0] > 0 ? ev[k] / mean : 1.0;
        for (int i = 0; i < d; i++) /* T = U^T diag(sqrt ev) U with U's rows the eigenvectors */
            for (int j = 0; j < d; j++) {
                double a = 0, b = 0;
                for (int k = 0; k < d; k++) {
                    double u = U[(size_t)k * d + i] * U[(size_t)k * d + j];
                    a += u * sqrt(ev[k]);
                    b += u / sqrt(ev[k]);
                }
                T[(size_t)i * d + j] = (float)a;
                Tinv[(size_t)i * d + j] = (float)b;
            }
    }
    free(ev);
    free(U);
    return st;
}

void kvc_calib_opts_default(struct kvc_calib_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 2048;
    o->n_batch = 512;
    o->n_threads = 2;
    o->max_tokens = 131072;
    o->sample_rows = 4096;
    o->metric = 3;
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
    fc.metric = o.metric & 3;
    c->metric = fc.metric;
    fc.G = m->info.n_head / m->info.n_head_kv;
    fc.neox = m->info.rope_neox;
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
    fc.qe = calloc((size_t)fc.L * fc.H * d, sizeof *fc.qe);
    fc.vm = calloc((size_t)fc.L * fc.H * d * d, sizeof *fc.vm);
    int ok = fc.a && fc.ybuf && fc.qe && fc.vm && fc.G >= 1 && fc.G * fc.H == m->info.n_head;
    if (ok) ok = wo_metric(m, &fc) == 0;
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
    /* chunks start as kvc_perplexity's do: with BOS only when the vocabulary adds it (SmolLM2,
     * Qwen2 do not; forcing BOS there calibrated on a first position the evaluation never sees) */
    struct kvc_vocab_info vi;
    kvc_vocab_get_info(kvc_model_vocab(m), &vi);
    int bos = vi.add_bos ? m->info.bos_id : -1;
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
    free(fc.qe);
    free(fc.vm);
    pthread_mutex_destroy(&fc.mu);
    if (st) {
        kvc_calib_free(c);
        return st;
    }
    *out = c;
    return KVC_OK;
}
