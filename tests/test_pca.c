/* test_pca.c - tests of the PCA codec and its calibration: the eigendecomposition against
 * brute-force checks, full-rank exactness (scores, values, whole attention against f16),
 * every SIMD level against the scalar kernels (encoded bytes identical), the transform-coding
 * bit allocation, keys=pre scores against float64 decode-rope-dot, calibration files (round
 * trip, model mismatch, corrupted files), and, with ../shared, a short real calibration of
 * stories260K and the codec inside the engine. */
#include "codecs/codec_impl.h"
#include "codecs/pca_impl.h"
#include "test.h"

#define PCA_TEST_MAXD 256 /* head dims the grouped-kernel checks handle (stack buffers) */
/* Room for a prepared query: at least the codec's qp_floats (d + 34, pca.c) */
#define PCA_QP_MAX(d) ((d) + 64)
#include "arch/isa.h"
#include "forward.h"
#include "eval/calibrate.h"
#include "kv/codec.h"
#include "kv/eigen.h"
#include "kv/kvcache.h"
#include "util.h"

#include <stdint.h>
#include <unistd.h>

static unsigned long long rng = 0x2545f4914f6cdd1dull;

/* ---------------------------------------------------------------- eigen ---- */

static void test_eigen(int d) {
    double *B = malloc(sizeof(double) * d * d), *A = malloc(sizeof(double) * d * d);
    double *w = malloc(sizeof(double) * d), *V = malloc(sizeof(double) * d * d);
    for (int i = 0; i < d * d; i++) B[i] = t_randn(&rng);
    double norm = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = i == j ? 0.1 : 0;
            for (int k = 0; k < d; k++) s += B[i * d + k] * B[j * d + k];
            A[i * d + j] = s;
            norm += s * s;
        }
    norm = sqrt(norm);
    kvc_error e = {0};
    CHECK(kvc_eigh(d, A, w, V, &e) == KVC_OK, "eigh d=%d: %s", d, e.msg);
    double worst_res = 0, worst_orth = 0, tr = 0, sw = 0;
    int sorted = 1, pos = 1;
    for (int k = 0; k < d; k++) {
        if (k && w[k] > w[k - 1]) sorted = 0;
        if (!(w[k] > 0)) pos = 0;
        double r2 = 0;
        for (int i = 0; i < d; i++) {
            double av = 0;
            for (int j = 0; j < d; j++) av += A[i * d + j] * V[k * d + j];
            double diff = av - w[k] * V[k * d + i];
            r2 += diff * diff;
        }
        if (sqrt(r2) > worst_res) worst_res = sqrt(r2);
        for (int l = 0; l < d; l++) {
            double dot = 0;
            for (int i = 0; i < d; i++) dot += V[k * d + i] * V[l * d + i];
            double err = fabs(dot - (k == l));
            if (err > worst_orth) worst_orth = err;
        }
        tr += A[k * d + k];
        sw += w[k];
    }
    CHECK(sorted && pos, "eigenvalues of an SPD matrix (d=%d) descending and positive", d);
    CHECK(worst_res < 1e-10 * norm, "||A v - lambda v|| = %g (d=%d, ||A|| = %g)", worst_res, d, norm);
    CHECK(worst_orth < 1e-12, "V V^T = I within %g (d=%d)", worst_orth, d);
    CHECK(fabs(tr - sw) < 1e-10 * fabs(tr), "trace %g = sum of eigenvalues %g (d=%d)", tr, sw, d);
    /* sign convention: the largest-magnitude component of each vector is positive */
    int signs = 1;
    for (int k = 0; k < d; k++) {
        int big = 0;
        for (int i = 1; i < d; i++)
            if (fabs(V[k * d + i]) > fabs(V[k * d + big])) big = i;
        if (V[k * d + big] < 0) signs = 0;
    }
    CHECK(signs, "eigenvector signs fixed (d=%d)", d);
    A[1] = NAN;
    CHECK(kvc_eigh(d, A, w, V, &e) == KVC_ERR_ARG && strstr(e.msg, "finite"), "NaN input rejected: %s", e.msg);
    free(A); free(B); free(w); free(V);
}

/* ---------------------------------------------------------------- synthetic calibration ---- */

#define SYN_HEADS 2

/* Random orthonormal rows (d x d) through the eigenvectors of a random SPD matrix. */
static void random_basis(int d, float *out) {
    double *A = malloc(sizeof(double) * d * d), *B = malloc(sizeof(double) * d * d);
    double *w = malloc(sizeof(double) * d), *V = malloc(sizeof(double) * d * d);
    for (int i = 0; i < d * d; i++) B[i] = t_randn(&rng);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += B[i * d + k] * B[j * d + k];
            A[i * d + j] = s;
        }
    kvc_eigh(d, A, w, V, NULL);
    for (int i = 0; i < d * d; i++) out[i] = (float)V[i];
    free(A); free(B); free(w); free(V);
}

/* Row drawn from slot s's model: mean + sum_k sqrt(lambda_k) z_k v_k. */
static void model_row(const struct kvc_calib_slot *s, int d, float *x) {
    for (int i = 0; i < d; i++) x[i] = s->mean[i];
    for (int k = 0; k < d; k++) {
        float z = t_randn(&rng) * sqrtf(s->eigval[k]);
        for (int i = 0; i < d; i++) x[i] += z * s->basis[k * d + i];
    }
}

/* RoPE layout of the slots, caches and key rows the tests make: 0 = adjacent pairs (llama),
 * 1 = NEOX halves (qwen2); main runs the keys=pre tests once with each. */
static int t_neox;
/* and the RoPE angles: Llama 3 frequency factors of the pairs (NULL: none) and linear scaling
 * (1: none), as the forward pass applies them (kvc_rope_compute_ff) */
static const float *t_ff;
static float t_scale = 1.0f;

/* angle of pair p of a head of dim d given theta = pos * base^(-2p/d) (float, the forward pass's) */
static inline float pair_angle(int p, float theta) { return t_scale * (t_ff ? theta / t_ff[p] : theta); }

/* RoPE pair p of a head of dim d: dims (a, b) of the current layout */
static inline int pair_a(int d, int p) { (void)d; return t_neox ? p : 2 * p; }
static inline int pair_b(int d, int p) { return t_neox ? p + d / 2 : 2 * p + 1; }

/* metric = 1: random attention metrics (k_pre: positive weight per RoPE pair of the current
 * layout, v: square root of a random SPD matrix), as kvc_calib_fit makes them; k_post keeps
 * the identity. */
static struct kvc_calib *make_calib_m(int d, int metric);
static struct kvc_calib *make_calib(int d) { return make_calib_m(d, 0); }

static void random_metric(int d, int kind, struct kvc_calib_slot *s) {
    if (kind == KVC_CALIB_K_PRE) {
        double w[1024];
        for (int i = 0; i < d; i++) w[i] = exp(1.5 * t_randn(&rng));
        kvc_calib_metric_pairs(d, t_neox, w, s->metric, s->metric_inv);
    } else if (kind == KVC_CALIB_V) {
        double *B = malloc(sizeof(double) * d * d), *M = malloc(sizeof(double) * d * d);
        for (int i = 0; i < d * d; i++) B[i] = t_randn(&rng);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) {
                double a = i == j ? 0.5 * d : 0;
                for (int k = 0; k < d; k++) a += B[i * d + k] * B[j * d + k];
                M[i * d + j] = a;
            }
        kvc_error e = {0};
        CHECK(kvc_calib_metric_sqrt(d, M, s->metric, s->metric_inv, &e) == KVC_OK, "metric sqrt: %s", e.msg);
        free(B); free(M);
    }
}

static struct kvc_calib *make_calib_m(int d, int metric) {
    struct kvc_calib_id id = {.arch = "llama", .n_layer = 1, .n_head_kv = SYN_HEADS, .head_dim = d,
                              .n_vocab = 100, .rope_base = 10000.0f, .tok_hash = 0x1234abcdull};
    struct kvc_calib *c;
    kvc_error e = {0};
    if (kvc_calib_alloc(&id, &c, &e) != KVC_OK) {
        CHECK(0, "calib alloc: %s", e.msg);
        return NULL;
    }
    snprintf(c->model_name, sizeof c->model_name, "synthetic");
    snprintf(c->text, sizeof c->text, "random");
    c->n_tokens = 2048;
    c->n_ctx = 256;
    c->sample_rows = 4096;
    float *rows = malloc(sizeof(float) * 4096 * d);
    for (int h = 0; h < SYN_HEADS; h++)
        for (int k = 0; k < KVC_CALIB_NKIND; k++) {
            struct kvc_calib_slot *s = (struct kvc_calib_slot *)kvc_calib_slot_get(c, 0, h, k);
            random_basis(d, s->basis);
            for (int i = 0; i < d; i++) s->mean[i] = 0.5f * t_randn(&rng);
            for (int i = 0; i < d; i++) s->eigval[i] = 4.0f * powf(0.85f, (float)i);
            if (metric) random_metric(d, k, s);
            for (int r = 0; r < 4096; r++) model_row(s, d, rows + (size_t)r * d);
            kvc_calib_fit_steps(s, d, c->max_bits, rows, 4096);
        }
    free(rows);
    return c;
}

static int slot_make(const char *spec, int d, int head, int is_value, enum kvc_isa isa,
                     const struct kvc_calib *cal, struct kv_spec *sp, struct kv_slot *sl) {
    kvc_error e = {0};
    if (kv_spec_parse(spec, sp, &e) != KVC_OK) {
        CHECK(0, "parse '%s': %s", spec, e.msg);
        return 0;
    }
    struct kv_slot_info info = {.d = d, .layer = 0, .head = head, .is_value = is_value,
                                .rope_base = 10000.0f, .rope_neox = t_neox, .rope_freq_factors = t_ff,
                                .rope_freq_scale = t_scale, .seed = 7, .calib = cal};
    if (kv_slot_init(sl, sp, &info, isa, &e) != KVC_OK) {
        CHECK(0, "slot '%s' d=%d: %s", spec, d, e.msg);
        kv_spec_free(sp);
        return 0;
    }
    return 1;
}
static void slot_drop(struct kv_spec *sp, struct kv_slot *sl) {
    kv_slot_free(sl);
    kv_spec_free(sp);
}

/* keys=pair: which low-precision kernel the slot's AVX-512 grouped score runs (0 none, 1 bf16,
 * 2 fp16); set_pair_lp turns it off (0) or back on (1) so that the tests reach the float kernel
 * too on a CPU with AVX512-BF16 or AVX512-FP16. */
static int pair_lp(const struct kv_slot *sl) {
    const struct pca_state *st = sl->state;
    if (!st || !st->pair) return 0;
    return st->pair->bf16 ? 1 : st->pair->f16 ? 2 : 0;
}
static void set_pair_lp(const struct kv_slot *sl, int kind, int on) {
    struct pca_pair *pp = ((struct pca_state *)sl->state)->pair;
    if (kind == 1) pp->bf16 = on;
    if (kind == 2) pp->f16 = on;
}

/* The fp16 kernel's error bound for one row (pca_pair.c): sum_i |qp pair i| (2^-6 (|ia| st_a +
 * |ib| st_b + |zoff_a| + |zoff_b|) + 2^-23 (|ia| + |ib| + 1)), qp the prepared query (kernel
 * slots). Also checks that the query is within the kernel's range (else the dispatch would take
 * the float kernel and the check would test nothing). */
static double pair_f16_bound(const struct kv_slot *sl, const uint8_t *row, const float *qp) {
    const struct pca_state *st = sl->state;
    const struct pca_pair *pp = st->pair;
    double tab = 0, reach = 0;
    for (int i = 0; i < pp->h; i++) {
        double e = 0, ii = 1;
        for (int m = 0; m < 2; m++) {
            const int u = m ? pp->hs + i : i, b = pp->nb[u], o = pp->bo[u];
            long idx = 0;
            for (int t = 0; t < b; t++) idx |= (long)((row[(o + t) >> 3] >> ((o + t) & 7)) & 1) << t;
            e += (double)idx * pp->step[u] + fabs((double)pp->zoff[u]);
            ii += (double)idx;
        }
        const double qn = sqrt((double)qp[i] * qp[i] + (double)qp[pp->hs + i] * qp[pp->hs + i]);
        reach += qn * pp->hr[i];
        tab += qn * (ldexp(e, -6) + ldexp(ii, -23));
    }
    CHECK(reach <= 0x1p15, "fp16 pair kernel: query reach %g within the kernel's range 2^15", reach);
    return tab;
}

/* The bf16 kernel's error bound for one row (pca_pair.c): 2^-7 (|q| |k| + sum_i |q_i| (|ia| st_a
 * + |ib| st_b) / t_i), q the query, k the (decoded, post-RoPE) key, ia / ib the row's indices of
 * pair i. */
static double pair_bf16_bound(const struct kv_slot *sl, const uint8_t *row, const float *q, const float *k) {
    const struct pca_state *st = sl->state;
    const struct pca_pair *pp = st->pair;
    const int d = st->d;
    double nq = 0, nk = 0, tab = 0;
    for (int j = 0; j < d; j++) {
        nq += (double)q[j] * q[j];
        nk += (double)k[j] * k[j];
    }
    for (int i = 0; i < pp->h; i++) {
        double a = 0;
        for (int m = 0; m < 2; m++) {
            const int u = m ? pp->hs + i : i, b = pp->nb[u], o = pp->bo[u];
            long idx = 0;
            for (int t = 0; t < b; t++) idx |= (long)((row[(o + t) >> 3] >> ((o + t) & 7)) & 1) << t;
            a += (double)idx * pp->step[u];
        }
        const double qa = q[pp->da[i]], qb = q[pp->db[i]];
        tab += sqrt(qa * qa + qb * qb) * a / pp->t[i];
    }
    return ldexp(sqrt(nq * nk) + tab, -7);
}

static void gen_rows(const struct kvc_calib *c, int head, int kind, int n, int pos0, float *x) {
    int d = c->id.head_dim;
    const struct kvc_calib_slot *s = kvc_calib_slot_get(c, 0, head, kind);
    for (int i = 0; i < n; i++) {
        model_row(s, d, x + (size_t)i * d);
        if (kind == KVC_CALIB_K_PRE) { /* keys arrive post-RoPE (pairs of the current layout) */
            float cs[1024];
            kvc_rope_compute_ff(cs, pos0 + i, d, c->id.rope_base, t_ff, t_scale);
            float *r = x + (size_t)i * d;
            for (int t = 0; t < d / 2; t++) {
                const int ia = pair_a(d, t), ib = pair_b(d, t);
                float a = r[ia], b = r[ib];
                r[ia] = a * cs[2 * t] - b * cs[2 * t + 1];
                r[ib] = a * cs[2 * t + 1] + b * cs[2 * t];
            }
        }
    }
}

static double dotd(const float *a, const float *b, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)a[i] * b[i];
    return s;
}

/* rank = d with f32 coefficients: scores and values equal the exact ones up to float error. */
static void test_full_rank(const struct kvc_calib *cal) {
    int d = cal->id.head_dim, n = 37, pos0 = 5;
    float *x = malloc(sizeof(float) * n * d), *q = malloc(sizeof(float) * d);
    float *sc = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
    float *acc = malloc(sizeof(float) * (d + 1)), *out = malloc(sizeof(float) * d), *ref = malloc(sizeof(float) * d);
    float *qp = malloc(sizeof(float) * (PCA_QP_MAX(d))), *y = malloc(sizeof(float) * n * d);
    uint8_t *rows = malloc((size_t)n * d * 4);
    char spec[64];
    for (int pre = 0; pre <= 1; pre++)
        for (int l = 0; l < KVC_ISA_COUNT; l++) {
            if (!kvc_isa_supported((enum kvc_isa)l)) continue;
            struct kv_spec sp;
            struct kv_slot sl;
            snprintf(spec, sizeof spec, "pca:rank=%d,coef=f32,keys=%s", d, pre ? "pre" : "post");
            if (!slot_make(spec, d, 1, 0, (enum kvc_isa)l, cal, &sp, &sl)) continue;
            gen_rows(cal, 1, KVC_CALIB_K_PRE, n, pos0, x);
            for (int i = 0; i < d; i++) q[i] = t_randn(&rng);
            sl.k->encode(&sl, x, pos0, n, rows);
            sl.k->decode(&sl, rows, pos0, n, y);
            check_tensor("full-rank decode", y, x, (long)n * d, 2e-5, 2e-5);
            sl.k->prepare_query(&sl, q, qp);
            sl.k->score(&sl, qp, rows, pos0, n, sc);
            double worst = 0;
            for (int i = 0; i < n; i++) {
                double ex = dotd(q, x + (size_t)i * d, d), lim = 1e-5 * sqrt(dotd(q, q, d) * dotd(x + (size_t)i * d, x + (size_t)i * d, d)) + 1e-6;
                double err = fabs(sc[i] - ex) / lim;
                if (err > worst) worst = err;
            }
            CHECK(worst <= 1.0, "%s neox %d isa %d: full-rank score error %.2f x tolerance", spec, t_neox, l, worst);
            slot_drop(&sp, &sl);
            /* values */
            snprintf(spec, sizeof spec, "pca:rank=%d,coef=f32", d);
            if (!slot_make(spec, d, 0, 1, (enum kvc_isa)l, cal, &sp, &sl)) continue;
            gen_rows(cal, 0, KVC_CALIB_V, n, pos0, x);
            double ws = 0;
            for (int i = 0; i < n; i++) ws += w[i] = (float)(0.05 + fabs(t_randn(&rng)));
            for (int i = 0; i < n; i++) w[i] = (float)(w[i] / ws);
            sl.k->encode(&sl, x, pos0, n, rows);
            memset(acc, 0, sizeof(float) * (d + 1));
            sl.k->accumulate(&sl, w, rows, pos0, 20, acc); /* two calls, as for two segments */
            sl.k->accumulate(&sl, w + 20, rows + 20 * sl.row_bytes, pos0 + 20, n - 20, acc);
            sl.k->finish(&sl, acc, out);
            for (int t = 0; t < d; t++) {
                double s = 0;
                for (int i = 0; i < n; i++) s += (double)w[i] * x[(size_t)i * d + t];
                ref[t] = (float)s;
            }
            check_tensor("full-rank value sum", out, ref, d, 1e-5, 1e-5);
            slot_drop(&sp, &sl);
        }
    free(x); free(q); free(sc); free(w); free(acc); free(out); free(ref); free(qp); free(y); free(rows);
}

/* Whole attention through the KV cache: pca rank = d (f16 coefficients) against f16. */
static void test_attention_vs_f16(const struct kvc_calib *cal) {
    int d = cal->id.head_dim, n_ctx = 96, T = 96;
    char spec[64];
    snprintf(spec, sizeof spec, "pca:rank=%d,coef=f16", d);
    for (int pre = 0; pre <= 1; pre++) {
        struct kv_cache a, b;
        kvc_error e = {0};
        char kspec[96];
        snprintf(kspec, sizeof kspec, "%s%s", spec, pre ? ",keys=pre" : "");
        struct kv_rope rope = {.base = 10000.0f, .neox = t_neox, .freq_factors = t_ff, .freq_scale = t_scale};
        if (kv_cache_init_rope(&a, 1, SYN_HEADS, d, n_ctx, T, kspec, spec, NULL, 0, 0, &rope, 1, cal, kvc_isa_best(), &e)) {
            CHECK(0, "kv cache %s: %s", kspec, e.msg);
            return;
        }
        if (kv_cache_init(&b, 1, SYN_HEADS, d, n_ctx, T, "f16", "f16", 0, 0, 10000.0f, 1, NULL, kvc_isa_best(), &e)) {
            CHECK(0, "kv cache f16: %s", e.msg);
            kv_cache_free(&a);
            return;
        }
        struct kv_attn_scratch sa, sb;
        kv_cache_scratch_init(&a, &sa);
        kv_cache_scratch_init(&b, &sb);
        float *k = malloc(sizeof(float) * T * d), *v = malloc(sizeof(float) * T * d), *q = malloc(sizeof(float) * d);
        float *oa = malloc(sizeof(float) * d), *ob = malloc(sizeof(float) * d);
        double worst = 0, scale = 0;
        for (int h = 0; h < SYN_HEADS; h++) {
            gen_rows(cal, h, pre ? KVC_CALIB_K_PRE : KVC_CALIB_K_POST, T, 0, k);
            gen_rows(cal, h, KVC_CALIB_V, T, 0, v);
            kv_cache_store(&a, 0, h, 0, T, k, v);
            kv_cache_store(&b, 0, h, 0, T, k, v);
        }
        for (int h = 0; h < SYN_HEADS; h++)
            for (int t = 0; t < T; t += 7) {
                for (int i = 0; i < d; i++) q[i] = 0.5f * t_randn(&rng);
                kv_cache_attend(&a, &sa, 0, h, q, t, 0, 1.0f / sqrtf((float)d), oa);
                kv_cache_attend(&b, &sb, 0, h, q, t, 0, 1.0f / sqrtf((float)d), ob);
                for (int i = 0; i < d; i++) {
                    double diff = fabs(oa[i] - ob[i]);
                    if (diff > worst) worst = diff;
                    if (fabs(ob[i]) > scale) scale = fabs(ob[i]);
                }
            }
        CHECK(worst <= 4e-3 * (scale + 1), "attention pca rank=d (%s, neox %d) vs f16: max |diff| %g (scale %g)",
              pre ? "keys=pre" : "keys=post", t_neox, worst, scale);
        free(k); free(v); free(q); free(oa); free(ob);
        kv_cache_scratch_free(&sa);
        kv_cache_scratch_free(&sb);
        kv_cache_free(&a);
        kv_cache_free(&b);
    }
}

/* Blocked attention over a batch of tokens (kv_cache_attend_rows with >= KV_BATCH_DECODE_MIN
 * tokens: pca key rows decoded once per block, scored as f32) against the per-token reference
 * (kv_cache_attend: the codec's own fused score), across blocks of KV_BLOCK positions, with
 * sinks and a recent window. */
static void test_batch_decode(const struct kvc_calib *cal) {
    enum { G = 3, T = 600, NT = 20 };
    const int d = cal->id.head_dim;
    /* keys=pair with float dot products: the bf16 kernel's error bound is tested on its own */
    static const char *kspecs[] = {"pca:bits=3,keys=pre", "pca:bits=2.75,keys=pair,dot=f32", "pca:bits=3", "pca:rank=5,coef=q8,keys=pre"};
    for (size_t si = 0; si < sizeof kspecs / sizeof kspecs[0]; si++) {
        struct kv_cache c;
        kvc_error e = {0};
        struct kv_rope rope = {.base = 10000.0f, .neox = t_neox, .freq_factors = t_ff, .freq_scale = t_scale};
        if (kv_cache_init_rope(&c, 1, SYN_HEADS, d, T, T, kspecs[si], "pca:bits=3", NULL, 2, 5, &rope, 1, cal, kvc_isa_best(), &e)) {
            CHECK(0, "kv cache %s: %s", kspecs[si], e.msg);
            continue;
        }
        CHECK((c.k.slot32 != NULL) == (strstr(kspecs[si], "keys=") != NULL),
              "%s: pca keys=pre / pair (only) are decoded per block for batches", kspecs[si]);
        struct kv_attn_scratch sc;
        kv_cache_scratch_init(&c, &sc);
        float *k = malloc(sizeof(float) * T * d), *v = malloc(sizeof(float) * T * d);
        float *Q = malloc(sizeof(float) * NT * G * d), *O = malloc(sizeof(float) * NT * G * d), *ref = malloc(sizeof(float) * d);
        for (int h = 0; h < SYN_HEADS; h++) {
            gen_rows(cal, h, strstr(kspecs[si], "keys=") ? KVC_CALIB_K_PRE : KVC_CALIB_K_POST, T, 0, k);
            gen_rows(cal, h, KVC_CALIB_V, T, 0, v);
            kv_cache_store(&c, 0, h, 0, T, k, v);
        }
        double worst = 0, scale = 0;
        for (int h = 0; h < SYN_HEADS; h++) {
            for (int i = 0; i < NT * G * d; i++) Q[i] = 0.3f * t_randn(&rng);
            const int i0 = T - NT - 3; /* tokens i0..i0+NT-1 of the batch at p0 = 0 */
            kv_cache_attend_rows(&c, &sc, 0, h, G, Q - (size_t)i0 * G * d, (size_t)G * d, i0, i0 + NT, 0, 0, i0 + NT,
                                 1.0f / sqrtf((float)d), O - (size_t)i0 * G * d, NULL);
            for (int i = 0; i < NT; i++)
                for (int g = 0; g < G; g++) {
                    kv_cache_attend(&c, &sc, 0, h, Q + ((size_t)i * G + g) * d, i0 + i, 0, 1.0f / sqrtf((float)d), ref);
                    for (int j = 0; j < d; j++) {
                        worst = fmax(worst, fabs(O[((size_t)i * G + g) * d + j] - ref[j]));
                        scale = fmax(scale, fabs(ref[j]));
                    }
                }
        }
        CHECK(worst <= 1e-4 * (scale + 1), "%s neox %d: batch attention (keys decoded per block) vs per-token reference: max |diff| %g (scale %g)",
              kspecs[si], t_neox, worst, scale);
        free(k); free(v); free(Q); free(O); free(ref);
        kv_cache_scratch_free(&sc);
        kv_cache_free(&c);
    }
}

/* Every SIMD level against the scalar kernels, for all storage formats. */
static void test_levels(const struct kvc_calib *cal) {
    int d = cal->id.head_dim;
    static const char *specs[] = {
        "pca:rank=5,coef=f32", "pca:rank=8,coef=f16", "pca:rank=13,coef=q8", "pca:rank=7,coef=q4",
        "pca:rank=24,coef=q4", "pca:var=0.9", "pca:var=0.95,max=40,coef=q8", "pca:bits=4", "pca:bits=2.5",
        "pca:bits=1", "pca:bits=8", "pca:bits=5", "pca:bits=3,keys=pre", "pca:rank=6,coef=q4,keys=pre",
        "pca:rank=16,coef=f16,keys=pre", "pca:rank=3,coef=q8,keys=pre", "pca:bits=8,keys=pre",
        "pca:bits=3.5,wide=0.8", "pca:bits=3,keys=pair,dot=bf16", "pca:bits=1.5,keys=pair", "pca:bits=7,keys=pair,dot=bf16",
        "pca:bits=2.75,keys=pair,dot=f16", "pca:bits=8,keys=pair,dot=f16",
    };
    static const int ns[] = {1, 3, 17, 40};
    int maxn = 40;
    if (d > PCA_TEST_MAXD) return;
    float *x = malloc(sizeof(float) * maxn * d), *q = malloc(sizeof(float) * d), *w = malloc(sizeof(float) * maxn);
    float *qp0 = malloc(sizeof(float) * PCA_QP_MAX(d)), *qp1 = malloc(sizeof(float) * PCA_QP_MAX(d));
    float *s0 = malloc(sizeof(float) * maxn), *s1 = malloc(sizeof(float) * maxn);
    float *a0 = malloc(sizeof(float) * (d + 1)), *a1 = malloc(sizeof(float) * (d + 1));
    float *o0 = malloc(sizeof(float) * d), *o1 = malloc(sizeof(float) * d);
    /* the dot=f16 specs (the last two) draw from the shared stream on a copy, so that the tests
     * after this one see the rows they saw before they were added (see test_pair_exact) */
    const size_t n_specs = sizeof specs / sizeof specs[0];
    unsigned long long rng_keep = rng;
    for (size_t si = 0; si < n_specs; si++) {
        if (si == n_specs - 2) rng_keep = rng;
        struct kv_spec sp0;
        struct kv_slot sl0;
        int rank = atoi(strstr(specs[si], "rank=") ? strstr(specs[si], "rank=") + 5 : "0");
        if (rank > d || (strstr(specs[si], "max=40") && d < 40)) continue;
        for (int is_value = 0; is_value <= 1; is_value++) {
            if (!slot_make(specs[si], d, 1, is_value, KVC_ISA_SCALAR, cal, &sp0, &sl0)) continue;
            size_t rb = sl0.row_bytes;
            CHECK(sl0.qp_floats <= PCA_QP_MAX(d), "%s: qp_floats %d fits the test's buffers", specs[si], sl0.qp_floats);
            int kind = is_value                                                   ? KVC_CALIB_V
                       : strstr(specs[si], "pre") || strstr(specs[si], "pair") ? KVC_CALIB_K_PRE
                                                                               : KVC_CALIB_K_POST;
            for (int l = 1; l < KVC_ISA_COUNT; l++) {
                if (!kvc_isa_supported((enum kvc_isa)l)) continue;
                struct kv_spec sp1;
                struct kv_slot sl1;
                if (!slot_make(specs[si], d, 1, is_value, (enum kvc_isa)l, cal, &sp1, &sl1)) continue;
                for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                    int n = ns[ni], pos0 = 100 + (int)ni * 1000;
                    gen_rows(cal, 1, kind, n, pos0, x);
                    /* buffers of exactly n rows, so that reads past the end are caught by ASan */
                    uint8_t *e0 = malloc(rb * n), *e1 = malloc(rb * n);
                    sl0.k->encode(&sl0, x, pos0, n, e0);
                    sl1.k->encode(&sl1, x, pos0, n, e1);
                    CHECK(memcmp(e0, e1, rb * n) == 0, "%s %s isa %d n=%d: encoded bytes differ from scalar",
                          specs[si], is_value ? "V" : "K", l, n);
                    { /* decode (attention rebuilds blocks of rows with it for batches of queries) */
                        float *y0 = malloc(sizeof(float) * n * d), *y1 = malloc(sizeof(float) * n * d);
                        sl0.k->decode(&sl0, e0, pos0, n, y0);
                        sl1.k->decode(&sl1, e0, pos0, n, y1);
                        double mx = 0;
                        for (int i = 0; i < n * d; i++) mx = fmax(mx, fabs(y0[i]));
                        char what[160];
                        snprintf(what, sizeof what, "%s %s isa %d n=%d: decode vs scalar", specs[si], is_value ? "V" : "K", l, n);
                        check_tensor(what, y1, y0, n * d, 2e-5 * (mx + 1), 1e-5);
                        free(y0);
                        free(y1);
                    }
                    if (!is_value) {
                        /* keys=pair: the float kernel first, the bf16 / fp16 one below */
                        const int bf = l == KVC_ISA_AVX512 ? pair_lp(&sl1) : 0;
                        if (bf) set_pair_lp(&sl1, bf, 0);
                        for (int i = 0; i < d; i++) q[i] = t_randn(&rng);
                        sl0.k->prepare_query(&sl0, q, qp0);
                        sl1.k->prepare_query(&sl1, q, qp1);
                        sl0.k->score(&sl0, qp0, e0, pos0, n, s0);
                        sl1.k->score(&sl1, qp1, e0, pos0, n, s1);
                        double mx = 0;
                        for (int i = 0; i < n; i++) mx = fmax(mx, fabs(s0[i]));
                        char what[160];
                        snprintf(what, sizeof what, "%s K isa %d n=%d: score vs scalar", specs[si], l, n);
                        check_tensor(what, s1, s0, n, 2e-5 * (mx + 1), 1e-5);
                        if (sl1.k->score_g) { /* 3 query heads at once vs 3 scalar calls */
                            enum { G = 3 };
                            const size_t qs = (size_t)sl1.qp_floats;
                            float qg[G * PCA_QP_MAX(PCA_TEST_MAXD)], og[G * 40], ref[40], qraw[G * PCA_TEST_MAXD];
                            for (int g = 0; g < G; g++) {
                                for (int i = 0; i < d; i++) q[i] = qraw[g * d + i] = t_randn(&rng);
                                sl0.k->prepare_query(&sl0, q, qg + g * qs);
                            }
                            if (bf) { /* keys=pair, bf16 / fp16 kernel (score_g, and score for head 0): within its error bound */
                                float *yk = malloc(sizeof(float) * n * d), o1[40];
                                set_pair_lp(&sl1, bf, 1);
                                sl0.k->decode(&sl0, e0, pos0, n, yk);
                                sl1.k->score_g(&sl1, G, qg, qs, e0, pos0, n, og, 40);
                                sl1.k->score(&sl1, qg, e0, pos0, n, o1);
                                double worst = 0, rsum = 0;
                                int rcount = 0;
                                for (int g = 0; g < G; g++) {
                                    sl0.k->score(&sl0, qg + g * qs, e0, pos0, n, ref);
                                    if (g == 0)
                                        for (int i = 0; i < n; i++) {
                                            double lim = (bf == 1 ? pair_bf16_bound(&sl0, e0 + (size_t)i * rb, qraw, yk + (size_t)i * d)
                                                                  : pair_f16_bound(&sl0, e0 + (size_t)i * rb, qg)) +
                                                         2e-5 * (fabs(ref[i]) + 1);
                                            worst = fmax(worst, fabs(o1[i] - ref[i]) / lim);
                                        }
                                    for (int i = 0; i < n; i++) {
                                        double lim = (bf == 1 ? pair_bf16_bound(&sl0, e0 + (size_t)i * rb, qraw + g * d, yk + (size_t)i * d)
                                                              : pair_f16_bound(&sl0, e0 + (size_t)i * rb, qg + g * qs)) +
                                                     2e-5 * (fabs(ref[i]) + 1);
                                        worst = fmax(worst, fabs(og[g * 40 + i] - ref[i]) / lim);
                                        rsum += fabs(og[g * 40 + i] - ref[i]) / lim;
                                        rcount++;
                                    }
                                }
                                /* rounding errors of random signs add in quadrature, far below the
                                 * worst case's sum of magnitudes (mean 0.0003-0.0033 of the bound
                                 * here): a mean over 1/100 of it flags a kernel that is off by a
                                 * few % in one coordinate (1 % in the minor one: 0.003-0.033),
                                 * which the bound alone would let through */
                                if (bf == 2)
                                    CHECK(rsum / rcount <= 0.01, "%s K isa %d n=%d: fp16 score_g vs scalar: mean error %.3f x the bound",
                                          specs[si], l, n, rsum / rcount);
                                CHECK(worst <= 1.0, "%s K isa %d n=%d: %s score_g vs scalar: %.3f x the bound", specs[si], l, n,
                                      bf == 1 ? "bf16" : "fp16", worst);
                                free(yk);
                                set_pair_lp(&sl1, bf, 0); /* then the float kernel, as below */
                            }
                            for (int vnni = 0; vnni <= 1; vnni++) { /* float path, then int16 query */
                                kv_pca_allow_vnni(vnni);
                                sl1.k->score_g(&sl1, G, qg, qs, e0, pos0, n, og, 40);
                                for (int g = 0; g < G; g++) {
                                    sl0.k->score(&sl0, qg + g * qs, e0, pos0, n, ref);
                                    /* int16 query: |err| <= max|u| / 65534 * sum of indices; indices
                                     * of bits rows are at most 2^10, of d coefficients */
                                    double m2 = 0, mu = 0;
                                    for (int i = 0; i < n; i++) m2 = fmax(m2, fabs(ref[i]));
                                    for (int j = 0; j < d; j++) mu = fmax(mu, fabs(qg[g * qs + j]));
                                    double tol = 2e-5 * (m2 + 1) + (vnni ? mu / 65534.0 * 1024.0 * d : 0);
                                    snprintf(what, sizeof what, "%s K isa %d n=%d: score_g head %d (vnni %d) vs scalar",
                                             specs[si], l, n, g, vnni);
                                    check_tensor(what, og + g * 40, ref, n, tol, 1e-5);
                                }
                            }
                            kv_pca_allow_vnni(1);
                        }
                    } else {
                        double ws = 0;
                        for (int i = 0; i < n; i++) ws += w[i] = (float)fabs(t_randn(&rng));
                        for (int i = 0; i < n; i++) w[i] = (float)(w[i] / ws);
                        for (int i = 0; i <= d; i++) a0[i] = a1[i] = 0.01f * (float)i;
                        sl0.k->accumulate(&sl0, w, e0, pos0, n, a0);
                        sl1.k->accumulate(&sl1, w, e0, pos0, n, a1);
                        char what[160];
                        snprintf(what, sizeof what, "%s V isa %d n=%d: accumulator vs scalar", specs[si], l, n);
                        check_tensor(what, a1, a0, d + 1, 2e-5, 1e-5);
                        sl0.k->finish(&sl0, a0, o0);
                        sl1.k->finish(&sl1, a0, o1);
                        snprintf(what, sizeof what, "%s V isa %d n=%d: finish vs scalar", specs[si], l, n);
                        check_tensor(what, o1, o0, d, 2e-5, 1e-5);
                        if (sl1.k->accumulate_g) { /* 3 weight rows at once vs 3 scalar calls */
                            enum { G = 3 };
                            const size_t as = (size_t)d + 1;
                            float wg[G * 40], ag0[G * (PCA_TEST_MAXD + 1)], ag1[G * (PCA_TEST_MAXD + 1)];
                            for (int i = 0; i < G * 40; i++) wg[i] = (float)fabs(t_randn(&rng)) / n;
                            for (size_t i = 0; i < G * as; i++) ag0[i] = ag1[i] = 0.01f * (float)(i % 7);
                            sl1.k->accumulate_g(&sl1, G, wg, 40, e0, pos0, n, ag1, as);
                            for (int g = 0; g < G; g++) sl0.k->accumulate(&sl0, wg + g * 40, e0, pos0, n, ag0 + g * as);
                            snprintf(what, sizeof what, "%s V isa %d n=%d: accumulate_g vs scalar", specs[si], l, n);
                            check_tensor(what, ag1, ag0, (int)(G * as), 2e-5, 1e-5);
                        }
                    }
                    free(e0);
                    free(e1);
                }
                slot_drop(&sp1, &sl1);
            }
            slot_drop(&sp0, &sl0);
        }
    }
    rng = rng_keep;
    free(x); free(q); free(w); free(qp0); free(qp1); free(s0); free(s1); free(a0); free(a1); free(o0); free(o1);
}

/* Decoded rows approximate the input with an error that shrinks as storage grows. */
static void test_error_order(const struct kvc_calib *cal) {
    int d = cal->id.head_dim, n = 256;
    /* wide=1: the calibrated (MSE-fitted) steps, whose errors the calibration predicts */
    static const char *specs[] = {"pca:bits=2,wide=1", "pca:bits=3,wide=1", "pca:bits=4,wide=1", "pca:bits=6,wide=1"};
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d);
    double prev = INFINITY, var = 0;
    gen_rows(cal, 0, KVC_CALIB_K_POST, n, 0, x);
    const struct kvc_calib_slot *cs = kvc_calib_slot_get(cal, 0, 0, KVC_CALIB_K_POST);
    for (int i = 0; i < d; i++) var += cs->eigval[i];
    for (size_t si = 0; si < 4; si++) {
        struct kv_spec sp;
        struct kv_slot sl;
        if (!slot_make(specs[si], d, 0, 0, KVC_ISA_SCALAR, cal, &sp, &sl)) continue;
        uint8_t *rows = malloc(sl.row_bytes * n);
        sl.k->encode(&sl, x, 0, n, rows);
        sl.k->decode(&sl, rows, 0, n, y);
        double mse = 0, pred = 0;
        for (long i = 0; i < (long)n * d; i++) mse += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        mse /= n;
        /* the calibrated prediction: sum of the per-coefficient errors at the allocated bits */
        uint8_t b[1024];
        kvc_calib_alloc_bits(cs, d, cal->max_bits, (int)llround(atof(specs[si] + 9) * d), b);
        for (int k = 0; k < d; k++) pred += cs->mse[(size_t)b[k] * d + k];
        CHECK(mse < prev && mse < var, "%s: mse %g should fall with bits (previous %g, variance %g)", specs[si],
              mse, prev, var);
        CHECK(mse < 1.5 * pred + 1e-6 && mse > 0.6 * pred, "%s: mse %g vs calibrated prediction %g", specs[si], mse,
              pred);
        prev = mse;
        free(rows);
        slot_drop(&sp, &sl);
    }
    free(x);
    free(y);
}

static void test_bits_alloc(const struct kvc_calib *cal) {
    int d = cal->id.head_dim;
    const struct kvc_calib_slot *s = kvc_calib_slot_get(cal, 0, 1, KVC_CALIB_V);
    static const double B[] = {0.25, 1, 2, 2.5, 3, 4, 7.5, 8};
    for (size_t i = 0; i < sizeof B / sizeof B[0]; i++) {
        uint8_t b[1024];
        int total = (int)llround(B[i] * d), sum = 0, maxb = 0, mono = 1;
        kvc_calib_alloc_bits(s, d, cal->max_bits, total, b);
        for (int k = 0; k < d; k++) {
            sum += b[k];
            if (b[k] > maxb) maxb = b[k];
            if (k && b[k] > b[k - 1] + 1) mono = 0;
        }
        CHECK(sum == total && maxb <= KVC_CALIB_MAX_BITS, "bits=%g: allocation sums to %d, budget %d", B[i], sum, total);
        CHECK(mono, "bits=%g: bits grow by more than one along decreasing eigenvalues", B[i]);
        /* reverse water-filling reference: b_k = clamp(0.5 log2(lambda_k / theta), 0, 8) with
         * the water level theta set (bisection) so that the b_k add up to B d */
        double lo = -80, hi = 40; /* log2 theta */
        for (int it = 0; it < 200; it++) {
            double mid = 0.5 * (lo + hi), t = 0;
            for (int k = 0; k < d; k++) t += fmin(8, fmax(0, 0.5 * (log2(s->eigval[k]) - mid)));
            if (t > B[i] * d) lo = mid; else hi = mid;
        }
        int far = 0;
        for (int k = 0; k < d; k++) {
            double ideal = fmin(8, fmax(0, 0.5 * (log2(s->eigval[k]) - 0.5 * (lo + hi))));
            if (fabs(b[k] - ideal) > 1.5) far++;
        }
        CHECK(far == 0, "bits=%g: %d coefficients more than 1.5 bits from the water-filling level", B[i], far);
        double bits;
        char spec[32];
        snprintf(spec, sizeof spec, "pca:bits=%g", B[i]);
        kvc_error e = {0};
        CHECK(kvc_codec_bits(spec, d, &bits, &e) == KVC_OK && fabs(bits - 8.0 * ((total + 7) / 8) / d) < 1e-9,
              "%s: %g bits per element (%s)", spec, bits, e.msg);
    }
}

/* keys=pre: the fused score equals, in float64, rebuild(pre) -> RoPE (pairs of the current
 * layout: adjacent, or NEOX halves) -> dot; decode equals the rotated rebuild. */
static void test_pre_exact(const struct kvc_calib *cal) {
    int d = cal->id.head_dim, n = 33;
    static const char *specs[] = {"pca:rank=%d,coef=f32,keys=pre", "pca:rank=%d,coef=f16,keys=pre",
                                  "pca:rank=%d,coef=q8,keys=pre"};
    int rank = d / 2 > 3 ? d / 2 - 3 : 2;
    float *x = malloc(sizeof(float) * n * d), *q = malloc(sizeof(float) * d), *sc = malloc(sizeof(float) * n);
    float *qp = malloc(sizeof(float) * PCA_QP_MAX(d)), *y = malloc(sizeof(float) * n * d);
    const struct kvc_calib_slot *cs = kvc_calib_slot_get(cal, 0, 1, KVC_CALIB_K_PRE);
    for (int f = 0; f < 3; f++)
        for (int l = 0; l < KVC_ISA_COUNT; l++) {
            if (!kvc_isa_supported((enum kvc_isa)l)) continue;
            char spec[64];
            snprintf(spec, sizeof spec, specs[f], rank);
            struct kv_spec sp;
            struct kv_slot sl;
            if (!slot_make(spec, d, 1, 0, (enum kvc_isa)l, cal, &sp, &sl)) continue;
            int pos0 = 3000;
            gen_rows(cal, 1, KVC_CALIB_K_PRE, n, pos0, x);
            uint8_t *rows = malloc(sl.row_bytes * n);
            sl.k->encode(&sl, x, pos0, n, rows);
            for (int i = 0; i < d; i++) q[i] = t_randn(&rng);
            sl.k->prepare_query(&sl, q, qp);
            sl.k->score(&sl, qp, rows, pos0, n, sc);
            sl.k->decode(&sl, rows, pos0, n, y);
            double worst = 0, worst_dec = 0;
            for (int i = 0; i < n; i++) {
                const uint8_t *row = rows + (size_t)i * sl.row_bytes;
                double c[1024], k[1024];
                for (int j = 0; j < rank; j++) {
                    if (f == 0) { float v; memcpy(&v, row + 4 * j, 4); c[j] = v; }
                    else if (f == 1) { uint16_t h; memcpy(&h, row + 2 * j, 2); c[j] = kvc_f16_to_f32(h); }
                    else { uint16_t h; memcpy(&h, row, 2); c[j] = (double)kvc_f16_to_f32(h) * (int8_t)row[2 + j]; }
                }
                double nk = 0, u[1024];
                for (int t = 0; t < d; t++) { /* u = sum_j c_j basis_j, k = mean + T^-1 u */
                    u[t] = 0;
                    for (int j = 0; j < rank; j++) u[t] += c[j] * cs->basis[(size_t)j * d + t];
                }
                for (int t = 0; t < d; t++) {
                    k[t] = cs->mean[t];
                    for (int a = 0; a < d; a++) k[t] += (double)cs->metric_inv[(size_t)t * d + a] * u[a];
                }
                /* angles as the forward pass makes them (float iteration), cos/sin in double */
                float ts = powf(10000.0f, -2.0f / (float)d), theta = (float)(pos0 + i);
                double dot = 0, kr[1024];
                for (int t = 0; t < d / 2; t++, theta *= ts) {
                    const int ia = pair_a(d, t), ib = pair_b(d, t);
                    const double ang = (double)pair_angle(t, theta), co = cos(ang), si = sin(ang);
                    kr[ia] = k[ia] * co - k[ib] * si;
                    kr[ib] = k[ia] * si + k[ib] * co;
                    dot += q[ia] * kr[ia] + q[ib] * kr[ib];
                    nk += kr[ia] * kr[ia] + kr[ib] * kr[ib];
                }
                double lim = 2e-6 * sqrt(dotd(q, q, d) * nk) + 1e-7;
                if (fabs(sc[i] - dot) / lim > worst) worst = fabs(sc[i] - dot) / lim;
                for (int t = 0; t < d; t++) { /* decode: per element, against the row's norm */
                    double e = fabs(y[(size_t)i * d + t] - kr[t]) / (2e-6 * sqrt(nk) + 1e-7);
                    if (e > worst_dec) worst_dec = e;
                }
            }
            CHECK(worst <= 1.0, "%s neox %d factors %d scale %g isa %d: fused pre score vs float64 rebuild-rope-dot: %.2f x tolerance",
                  spec, t_neox, t_ff != NULL, t_scale, l, worst);
            CHECK(worst_dec <= 1.0, "%s neox %d factors %d scale %g isa %d: decode vs float64 rebuild-rope: %.2f x tolerance",
                  spec, t_neox, t_ff != NULL, t_scale, l, worst_dec);
            free(rows);
            slot_drop(&sp, &sl);
        }
    free(x); free(q); free(sc); free(qp); free(y);
}

/* n key rows of positions pos0.. drawn from calibration slot cs's model (mean + T^-1 (u -
 * mean)), RoPE'd on pairs of the given layout (t_ff, t_scale) as the forward pass does. */
static void pair_rows(const struct kvc_calib_slot *cs, int d, int neox, int pos0, int n, float *x) {
    const int h = d / 2;
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * d, c[1024], u[1024];
        model_row(cs, d, u);
        for (int t = 0; t < d; t++) {
            double a = cs->mean[t];
            for (int m = 0; m < d; m++) a += (double)cs->metric_inv[(size_t)t * d + m] * (u[m] - cs->mean[m]);
            r[t] = (float)a;
        }
        kvc_rope_compute_ff(c, pos0 + i, d, 10000.0f, t_ff, t_scale);
        for (int t = 0; t < h; t++) {
            int ia = neox ? t : 2 * t, ib = neox ? t + h : 2 * t + 1;
            float a = r[ia], b = r[ib];
            r[ia] = a * c[2 * t] - b * c[2 * t + 1];
            r[ib] = a * c[2 * t + 1] + b * c[2 * t];
        }
    }
}

/* keys=pair: at every level, score and score_g (3 query heads) equal, in float64, the
 * pre-RoPE key rebuilt from the row's bit fields (mean + V^T y / t per pair), rotated by RoPE
 * of its position (adjacent pairs, or NEOX halves) and dotted with q; blocks cross 16-row
 * boundaries at positions up to 16K. At 8 bits the decoded rows are close to the input. */
static void test_pair_exact(const struct kvc_calib *cal, int neox) {
    const int d = cal->id.head_dim, n = 37, h = d / 2;
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d), *sc = malloc(sizeof(float) * 4 * n);
    float *q = malloc(sizeof(float) * 3 * d), *qp = malloc(sizeof(float) * 3 * PCA_QP_MAX(d));
    float *scb = malloc(sizeof(float) * 3 * n);
    const struct kvc_calib_slot *cs = kvc_calib_slot_get(cal, 0, 1, KVC_CALIB_K_PRE);
    /* dot=bf16 runs the bf16 kernel wherever AVX512-BF16 exists, dot=f16 the fp16 one wherever
     * AVX512-FP16 exists; the default (dot=auto) picks by CPU (pca_dot_auto); every low-precision
     * kernel is checked against its bound and then turned off to check the float one */
    static const char *specs[] = {"pca:bits=2.75,keys=pair,dot=bf16", "pca:bits=8,keys=pair", "pca:bits=2.75,keys=pair",
                                  "pca:bits=2.75,keys=pair,dot=f16"};
    /* the third spec draws from the shared stream on a copy: the tests after this one see the
     * rows they saw before it was added (test_error_order's mean-error check at 6 bits swings
     * 1.5-40x with its 256 rows' draws: rare coefficients past the quantizer's range) */
    unsigned long long rng_keep = rng;
    for (int f = 0; f < 4; f++) {
        if (f == 2) rng_keep = rng;
        for (int l = 0; l < KVC_ISA_COUNT; l++) {
            if (!kvc_isa_supported((enum kvc_isa)l)) continue;
            kvc_error e = {0};
            struct kv_spec sp;
            struct kv_slot sl;
            CHECK(kv_spec_parse(specs[f], &sp, &e) == KVC_OK, "parse %s: %s", specs[f], e.msg);
            struct kv_slot_info info = {.d = d, .layer = 0, .head = 1, .rope_base = 10000.0f, .rope_neox = neox,
                                        .rope_freq_factors = t_ff, .rope_freq_scale = t_scale, .seed = 7, .calib = cal};
            if (kv_slot_init(&sl, &sp, &info, (enum kvc_isa)l, &e) != KVC_OK) {
                CHECK(0, "slot %s neox %d: %s", specs[f], neox, e.msg);
                kv_spec_free(&sp);
                continue;
            }
            const struct pca_state *st = sl.state;
            const struct pca_pair *pp = st->pair;
            for (int pos0 = 5; pos0 < 20000; pos0 += 16371) {
                pair_rows(cs, d, neox, pos0, n, x);
                uint8_t *rows = malloc(sl.row_bytes * n);
                sl.k->encode(&sl, x, pos0, n, rows);
                for (int g = 0; g < 3; g++) {
                    for (int i = 0; i < d; i++) q[g * d + i] = t_randn(&rng);
                    sl.k->prepare_query(&sl, q + g * d, qp + g * PCA_QP_MAX(d));
                }
                /* the bf16 / fp16 kernel into scb, then the float one */
                const int bf = l == KVC_ISA_AVX512 ? pair_lp(&sl) : 0;
                if (l == KVC_ISA_AVX512 && f == 3 && d <= 64 && sl.row_bytes <= 64)
                    CHECK(bf == (kvc_cpu_has_avx512fp16() ? 2 : 0), "%s: fp16 kernel on %d (CPU has AVX512-FP16: %d)",
                          specs[f], bf, kvc_cpu_has_avx512fp16());
                if (bf) {
                    sl.k->score_g(&sl, 3, qp, PCA_QP_MAX(d), rows, pos0, n, scb, n);
                    set_pair_lp(&sl, bf, 0);
                }
                sl.k->score(&sl, qp, rows, pos0, n, sc);
                if (sl.k->score_g) sl.k->score_g(&sl, 3, qp, PCA_QP_MAX(d), rows, pos0, n, sc + n, n);
                double worst = 0, rec = 0, nx = 0, worst_bf = 0;
                for (int gg = 0; gg < (sl.k->score_g ? 4 : 1); gg++) /* 0: score of head 0; 1..3: score_g */
                    for (int i = 0; i < n; i++) {
                        const int g = gg ? gg - 1 : 0;
                        const uint8_t *row = rows + (size_t)i * sl.row_bytes;
                        /* RoPE angles: the forward pass's (float iteration) at the first position of the
                         * row's block of 16 (counted from pos0), plus k theta_i, k < 16, in double */
                        const int pb = pos0 + i / 16 * 16, kk = i % 16;
                        float ts = powf(10000.0f, -2.0f / (float)d), theta = (float)pb, th1 = 1.0f;
                        double dot = 0, nk = 0, nq = 0, tab = 0;
                        for (int t = 0; t < h; t++, theta *= ts, th1 *= ts) {
                            double yv[2], ist = 0;
                            for (int m = 0; m < 2; m++) { /* the field of coefficient (pair t, major / minor) */
                                int u = m ? pp->hs + t : t, b = pp->nb[u], o = pp->bo[u];
                                long idx = 0;
                                for (int k = 0; k < b; k++) idx |= (long)((row[(o + k) >> 3] >> ((o + k) & 7)) & 1) << k;
                                yv[m] = b ? ((double)idx - (double)(1 << (b - 1)) + 0.5) * pp->step[u] : 0.0;
                                ist += (double)idx * pp->step[u];
                            }
                            int ia = neox ? t : 2 * t, ib = neox ? t + h : 2 * t + 1;
                            double vc = pp->vc[t], vs = pp->vs[t], it = 1.0 / pp->t[t];
                            double k0 = cs->mean[ia] + (vc * yv[0] - vs * yv[1]) * it;
                            double k1 = cs->mean[ib] + (vs * yv[0] + vc * yv[1]) * it;
                            const double w1 = (double)th1 / (t_ff ? t_ff[t] : 1.0f) * t_scale; /* k theta_i */
                            double ang = (double)pair_angle(t, theta) + (double)kk * w1, co = cos(ang), si = sin(ang);
                            double r0 = k0 * co - k1 * si, r1 = k0 * si + k1 * co;
                            const float *qq = q + g * d;
                            dot += qq[ia] * r0 + qq[ib] * r1;
                            tab += sqrt((double)qq[ia] * qq[ia] + (double)qq[ib] * qq[ib]) * ist / pp->t[t];
                            nk += r0 * r0 + r1 * r1;
                            nq += (double)qq[ia] * qq[ia] + (double)qq[ib] * qq[ib];
                            if (g == 0 && f == 1) { /* 8 bits: the decoded row against the input */
                                double e0 = x[(size_t)i * d + ia] - r0, e1 = x[(size_t)i * d + ib] - r1;
                                rec += e0 * e0 + e1 * e1;
                                nx += r0 * r0 + r1 * r1;
                            }
                        }
                        double lim = 2e-6 * sqrt(nq * nk) + 1e-7, got = sc[(size_t)gg * n + i];
                        if (fabs(got - dot) / lim > worst) worst = fabs(got - dot) / lim;
                        if (bf && gg) { /* the bf16 / fp16 kernel's bound (pca_pair.c) */
                            double lb = (bf == 1 ? ldexp(sqrt(nq * nk) + tab, -7) : pair_f16_bound(&sl, row, qp + g * PCA_QP_MAX(d))) + lim;
                            double e = fabs(scb[(size_t)(gg - 1) * n + i] - dot);
                            worst_bf = fmax(worst_bf, e / lb);
                        }
                    }
                if (bf) {
                    CHECK(worst_bf <= 1.0, "%s neox %d factors %d scale %g pos0 %d: %s pair score vs float64: %.3f x the bound",
                          specs[f], neox, t_ff != NULL, t_scale, pos0, bf == 1 ? "bf16" : "fp16", worst_bf);
                    set_pair_lp(&sl, bf, 1);
                }
                CHECK(worst <= 1.0, "%s neox %d factors %d scale %g isa %d pos0 %d: pair score vs float64 rebuild-rope-dot: %.2f x tolerance",
                      specs[f], neox, t_ff != NULL, t_scale, l, pos0, worst);
                if (f == 1) CHECK(rec < 1e-3 * nx, "%s d %d neox %d pos0 %d: 8-bit rows rebuild the input: error %g of %g", specs[f], d, neox, pos0, rec, nx);
                sl.k->decode(&sl, rows, pos0, n, y); /* decode = the same rebuild in float */
                double dd = 0, dn = 0;
                for (int i = 0; i < n * d; i++) {
                    dd += (double)(y[i] - x[i]) * (y[i] - x[i]);
                    dn += (double)x[i] * x[i];
                }
                CHECK(f != 1 || dd < 1e-3 * dn, "%s d %d neox %d pos0 %d: decode error %g of %g", specs[f], d, neox, pos0, dd, dn);
                free(rows);
            }
            slot_drop(&sp, &sl);
        }
    }
    rng = rng_keep;
    free(x); free(y); free(sc); free(scb); free(q); free(qp);
}

/* keys=pair rows in tiles (pca_tile.c: the cache's store where the fp16 kernel runs, d = 64).
 * Rows encoded in random order and piece sizes into a tiled store that starts at position
 * origin read back (pca_tile_get_row, the layout's scalar reference) equal to the plain slot's
 * rows, whatever the store held before; decode of random ranges equals the plain decode bit for
 * bit; the
 * tiled fp16 grouped score (G = 1..5, ranges that start and end inside tiles) is within the fp16
 * bound (pair_f16_bound) of the float kernel on the plain rows, row by row, and on average well
 * inside it (seen here: worst 0.011, mean 0.002 of the bound); a query past the kernel's range
 * takes the float path. */
/* The tiled fp16 scores got (G x m) against the float kernel's ref on the same rows (plain rows
 * `rows`, decoded y, queries q and their prepared qp): each row's |got - ref| over its bound,
 * pair_f16_bound plus the float kernel's own error and the angles' float rounding at different
 * block starts (both 1e-5 |q| |k|); the largest ratio into *worst, their sum added to *sum. */
static void tiled_errors(const struct kv_slot *sa, int G, int m, const float *q, const float *y, const uint8_t *rows,
                         const float *qp, const float *got, const float *ref, double *worst, double *sum) {
    const int d = sa->info.d;
    for (int g = 0; g < G; g++)
        for (int i = 0; i < m; i++) {
            double nq = 0, nk = 0;
            for (int t = 0; t < d; t++) {
                nq += (double)q[g * d + t] * q[g * d + t];
                nk += (double)y[(size_t)i * d + t] * y[(size_t)i * d + t];
            }
            const double lb = pair_f16_bound(sa, rows + (size_t)i * sa->row_bytes, qp + (size_t)g * PCA_QP_MAX(d)) +
                              1e-5 * sqrt(nq * nk) + 1e-6;
            const double er = fabs((double)got[(size_t)g * m + i] - ref[(size_t)g * m + i]) / lb;
            *worst = fmax(*worst, er);
            *sum += er;
        }
}

static void test_pair_tiled(const struct kvc_calib *cal, int neox) {
    const int d = cal->id.head_dim;
    if (d != 64 || !kvc_isa_supported(KVC_ISA_AVX512)) return;
    const int can = kvc_cpu_has_avx512fp16() && kvc_cpu_has_vnni_vbmi();
    enum { N = 300, ORIGIN = 5 };
    static const char *specs[] = {"pca:bits=2.75,keys=pair,dot=f16", "pca:bits=1.25,keys=pair,dot=f16",
                                  "pca:bits=6,keys=pair,dot=f16", "pca:bits=8,keys=pair,dot=f16"};
    unsigned long long r = 0x9e3779b97f4a7c15ull; /* own stream: the tests after this see the rows they saw */
    const struct kvc_calib_slot *cs = kvc_calib_slot_get(cal, 0, 1, KVC_CALIB_K_PRE);
    float *x = malloc(sizeof(float) * N * d), *ya = malloc(sizeof(float) * N * d), *yb = malloc(sizeof(float) * N * d);
    float *q = malloc(sizeof(float) * 5 * d), *qp = malloc(sizeof(float) * 5 * PCA_QP_MAX(d));
    float *oa = malloc(sizeof(float) * 5 * N), *ob = malloc(sizeof(float) * 5 * N), *oc = malloc(sizeof(float) * 5 * N);
    int ran = 0, paths[4] = {0, 0, 0, 0}; /* tiled fields of 0, 1-5, 6, 7-8 bits: tile_z's four ways */
    for (int f = 0; f < 4; f++) {
        kvc_error e = {0};
        struct kv_spec sp;
        struct kv_slot sa, sb;
        CHECK(kv_spec_parse(specs[f], &sp, &e) == KVC_OK, "parse %s: %s", specs[f], e.msg);
        struct kv_slot_info info = {.d = d, .layer = 0, .head = 1, .rope_base = 10000.0f, .rope_neox = neox,
                                    .rope_freq_factors = t_ff, .rope_freq_scale = t_scale, .seed = 7, .calib = cal};
        if (kv_slot_init(&sa, &sp, &info, KVC_ISA_AVX512, &e) != KVC_OK) {
            CHECK(0, "plain slot %s: %s", specs[f], e.msg);
            kv_spec_free(&sp);
            continue;
        }
        info.store_tiles = 1;
        info.store_origin = ORIGIN;
        if (kv_slot_init(&sb, &sp, &info, KVC_ISA_AVX512, &e) != KVC_OK) {
            CHECK(0, "tiled slot %s: %s", specs[f], e.msg);
            kv_slot_free(&sa);
            kv_spec_free(&sp);
            continue;
        }
        const struct pca_state *st = sb.state;
        const struct pca_pair *pp = st->pair;
        int wide = 0;
        for (int u = 0; u < 64; u++) wide |= pp->nb[u] > 8;
        /* tiles exactly where the tiled kernel can run: fp16 + VBMI, fields of at most 8 bits */
        CHECK(sb.tile_rows == (can && !wide ? PCA_TILE : 1) && sa.tile_rows == 1,
              "%s: tile_rows %d / plain %d (CPU can %d, fields over 8 bits %d)", specs[f], sb.tile_rows, sa.tile_rows, can, wide);
        if (sb.tile_rows == 1) {
            kv_slot_free(&sb);
            slot_drop(&sp, &sa);
            continue;
        }
        ran++;
        for (int u = 0; u < pp->hs; u++)
            for (int m = 0; m < 2; m++) {
                const int b = pp->nb[m ? pp->hs + u : u];
                paths[b == 0 ? 0 : b <= 5 ? 1 : b == 6 ? 2 : 3]++;
            }
        const size_t rb = sb.row_bytes, tiles = (N + ORIGIN % PCA_TILE + PCA_TILE - 1) / PCA_TILE;
        pair_rows(cs, d, neox, ORIGIN, N, x);
        uint8_t *rows = malloc(rb * N), *store = malloc(tiles * PCA_TILE * rb + PCA_TILE_SLACK), *row = malloc(rb);
        /* the store's row of position p: store + (p - ORIGIN) rb, as in the cache */
        sa.k->encode(&sa, x, ORIGIN, N, rows);
        memset(store, 0xa5, tiles * PCA_TILE * rb + PCA_TILE_SLACK);
        int start[N], len[N], np = 0;
        for (int a = 0; a < N; np++) {
            len[np] = 1 + (int)(t_rng_next(&r) % 45);
            if (len[np] > N - a) len[np] = N - a;
            start[np] = a;
            a += len[np];
        }
        for (int i = np - 1; i > 0; i--) { /* pieces in random order */
            int j = (int)(t_rng_next(&r) % (unsigned)(i + 1)), t0 = start[i], t1 = len[i];
            start[i] = start[j], len[i] = len[j], start[j] = t0, len[j] = t1;
        }
        for (int i = 0; i < np; i++) sb.k->encode(&sb, x + (size_t)start[i] * d, ORIGIN + start[i], len[i], store + (size_t)start[i] * rb);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            int k;
            const uint8_t *t = pca_tile_of(st, store, ORIGIN, i, &k);
            pca_tile_get_row(st, t, k, row);
            bad += memcmp(row, rows + (size_t)i * rb, rb) != 0;
        }
        CHECK(bad == 0, "%s neox %d: %d of %d tiled rows differ from the plain rows", specs[f], neox, bad, N);
        double worst = 0, wsum = 0, wn = 0;
        int dbad = 0;
        for (int it = 0; it < 40; it++) {
            const int G = 1 + it % 5, a = it == 0 ? 0 : (int)(t_rng_next(&r) % N);
            int m = it == 0 ? N : it % 4 == 1 ? 1 + (int)(t_rng_next(&r) % 3) : 1 + (int)(t_rng_next(&r) % (unsigned)(N - a));
            if (m > N - a) m = N - a;
            const uint8_t *ra = rows + (size_t)a * rb, *rbt = store + (size_t)a * rb;
            sa.k->decode(&sa, ra, ORIGIN + a, m, ya);
            sb.k->decode(&sb, rbt, ORIGIN + a, m, yb);
            dbad += memcmp(ya, yb, sizeof(float) * m * d) != 0;
            for (int g = 0; g < G; g++) {
                for (int i = 0; i < d; i++) q[g * d + i] = t_randn(&r);
                sb.k->prepare_query(&sb, q + g * d, qp + (size_t)g * PCA_QP_MAX(d));
            }
            sb.k->score_g(&sb, G, qp, PCA_QP_MAX(d), rbt, ORIGIN + a, m, ob, m);
            CHECK(pca_tile_score_g_f16(&sb, G, qp, PCA_QP_MAX(d), rbt, ORIGIN + a, m, oc, m) == 1 &&
                      memcmp(ob, oc, sizeof(float) * G * m) == 0,
                  "%s: the grouped score took the tiled kernel (G %d, rows %d..%d)", specs[f], G, a, a + m);
            set_pair_lp(&sa, 2, 0);
            sa.k->score_g(&sa, G, qp, PCA_QP_MAX(d), ra, ORIGIN + a, m, oa, m);
            set_pair_lp(&sa, 2, 1);
            tiled_errors(&sa, G, m, q, ya, ra, qp, ob, oa, &worst, &wsum);
            wn += (double)G * m;
            if (it == 39) { /* a query past the kernel's range: the float path, float tolerance */
                for (int i = 0; i < d; i++) q[i] *= 1e6f;
                sb.k->prepare_query(&sb, q, qp);
                CHECK(pca_tile_score_g_f16(&sb, 1, qp, PCA_QP_MAX(d), rbt, ORIGIN + a, m, oc, m) == 0,
                      "%s: a query of norm 1e6 x is outside the tiled kernel's range", specs[f]);
                sb.k->score_g(&sb, 1, qp, PCA_QP_MAX(d), rbt, ORIGIN + a, m, ob, m);
                set_pair_lp(&sa, 2, 0);
                sa.k->score_g(&sa, 1, qp, PCA_QP_MAX(d), ra, ORIGIN + a, m, oa, m);
                set_pair_lp(&sa, 2, 1);
                double fw = 0;
                for (int i = 0; i < m; i++) fw = fmax(fw, fabs((double)ob[i] - oa[i]) / (1e-5 * fabs((double)oa[i]) + 1e-3));
                CHECK(fw <= 1.0, "%s: the fallback of an out-of-range query matches the float kernel: %.3f x tolerance", specs[f], fw);
            }
        }
        if (f == 0) { /* one long call far into the context: the base angle is turned 32 times */
            enum { NL = 2048, A0 = 7 };
            const int P0 = ORIGIN + 32 * 512; /* tile-aligned store start near position 16K */
            const size_t tl = (NL + PCA_TILE - 1) / PCA_TILE;
            float *xl = malloc(sizeof(float) * NL * d), *yl = malloc(sizeof(float) * NL * d);
            float *ol = malloc(sizeof(float) * 3 * NL), *fl = malloc(sizeof(float) * 3 * NL);
            uint8_t *rl = malloc(rb * NL), *sl = malloc(tl * PCA_TILE * rb + PCA_TILE_SLACK);
            pair_rows(cs, d, neox, P0, NL, xl);
            sa.k->encode(&sa, xl, P0, NL, rl);
            memset(sl, 0xa5, tl * PCA_TILE * rb + PCA_TILE_SLACK);
            sb.k->encode(&sb, xl, P0, NL, sl);
            sa.k->decode(&sa, rl + (size_t)A0 * rb, P0 + A0, NL - A0, yl);
            for (int g = 0; g < 3; g++) {
                for (int i = 0; i < d; i++) q[g * d + i] = t_randn(&r);
                sb.k->prepare_query(&sb, q + g * d, qp + (size_t)g * PCA_QP_MAX(d));
            }
            const int ml = NL - A0;
            CHECK(pca_tile_score_g_f16(&sb, 3, qp, PCA_QP_MAX(d), sl + (size_t)A0 * rb, P0 + A0, ml, ol, ml) == 1,
                  "%s: the long call took the tiled kernel", specs[f]);
            set_pair_lp(&sa, 2, 0);
            sa.k->score_g(&sa, 3, qp, PCA_QP_MAX(d), rl + (size_t)A0 * rb, P0 + A0, ml, fl, ml);
            set_pair_lp(&sa, 2, 1);
            double lw = 0, ls = 0;
            tiled_errors(&sa, 3, ml, q, yl, rl + (size_t)A0 * rb, qp, ol, fl, &lw, &ls);
            CHECK(lw <= 1.0 && ls / (3.0 * ml) <= 0.05,
                  "%s neox %d: %d rows from position %d in one call: worst %.3f, mean %.4f x the bound", specs[f], neox,
                  ml, P0 + A0, lw, ls / (3.0 * ml));
            free(xl); free(yl); free(ol); free(fl); free(rl); free(sl);
        }
        CHECK(dbad == 0, "%s neox %d: tiled decode differs from the plain decode in %d of 40 ranges", specs[f], neox, dbad);
        CHECK(worst <= 1.0 && wsum / wn <= 0.05, "%s neox %d: tiled fp16 score vs float kernel: worst %.3f, mean %.4f x the bound",
              specs[f], neox, worst, wsum / wn);
        free(rows); free(store); free(row);
        kv_slot_free(&sb);
        slot_drop(&sp, &sa);
    }
    if (!ran) printf("keys=pair tiled rows (d 64, neox %d): not tested here (CPU without AVX512-FP16 + VBMI)\n", neox);
    else
        CHECK(paths[1] && paths[2] && paths[3], "tiled fields: the settings cover tile_z's unpack ways (0 bits %d, 1-5 %d, 6 %d, 7-8 %d)",
              paths[0], paths[1], paths[2], paths[3]);
    free(x); free(ya); free(yb); free(q); free(qp); free(oa); free(ob); free(oc);
}

static void test_specs(const struct kvc_calib *cal) {
    int d = cal->id.head_dim;
    struct kv_spec sp;
    kvc_error e = {0};
    static const char *bad[] = {"pca:rank=8,bits=3", "pca:bits=3,coef=q8", "pca:foo=1", "pca:rank=0",
                                "pca:var=1.5", "pca:bits=9", "pca:coef=q3", "pca:keys=mid", "pca:rank=8,max=9",
                                "pca:rank=8,wide=1.2", "pca:bits=3,wide=9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.msg[0] = 0;
        CHECK(kv_spec_parse(bad[i], &sp, &e) == KVC_ERR_ARG && strstr(e.msg, "pca"), "'%s' rejected: %s", bad[i],
              e.msg);
    }
    static const struct { const char *s; double bits; } ok[] = {
        {"pca:rank=16", 4.0},           {"pca:rank=32,coef=q8", 4.25}, {"pca:rank=32,coef=q4", 2.25},
        {"pca:rank=8,coef=f32", 4.0},   {"pca:bits=3", 3.0},           {"pca", 4.0},
        {"pca:var=0.99,max=24", 6.0},
    };
    if (d == 64)
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
            double b = 0;
            CHECK(kvc_codec_bits(ok[i].s, 64, &b, &e) == KVC_OK && fabs(b - ok[i].bits) < 1e-9, "%s: %g bits, want %g (%s)",
                  ok[i].s, b, ok[i].bits, e.msg);
        }
    double b;
    CHECK(kvc_codec_bits("pca:rank=80", 64, &b, &e) == KVC_ERR_ARG && strstr(e.msg, "80"), "rank > d: %s", e.msg);
    /* without calibration */
    struct kv_slot sl;
    CHECK(kv_spec_parse("pca:rank=4", &sp, &e) == KVC_OK, "parse");
    struct kv_slot_info info = {.d = d, .rope_base = 10000.0f, .calib = NULL};
    CHECK(kv_slot_init(&sl, &sp, &info, KVC_ISA_SCALAR, &e) == KVC_ERR_CALIB &&
              strstr(e.msg, "pca needs --kv-calib FILE (make one with kvcodec calibrate)"),
          "no calibration: %s", e.msg);
    info.calib = cal;
    info.d = d + 2;
    CHECK(kv_slot_init(&sl, &sp, &info, KVC_ISA_SCALAR, &e) == KVC_ERR_CALIB, "head dim mismatch: %s", e.msg);
    info.d = d;
    info.layer = 3;
    CHECK(kv_slot_init(&sl, &sp, &info, KVC_ISA_SCALAR, &e) == KVC_ERR_CALIB, "layer out of range: %s", e.msg);
    kv_spec_free(&sp);
}

static void test_rope_table(void) {
    struct kvc_rope_table *t = kvc_rope_table_create(64, 10000.0f);
    float cs[64];
    int ok = 1;
    static const int pos[] = {0, 1, 1023, 1024, 5000, 70000};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        const float *r = kvc_rope_row(t, pos[i]);
        kvc_rope_compute(cs, pos[i], 64, 10000.0f);
        if (!r || memcmp(r, cs, sizeof cs) != 0) ok = 0;
    }
    CHECK(ok, "rope table rows equal the direct computation");
    CHECK(kvc_rope_row(t, -1) == NULL && kvc_rope_row(t, 1 << 24) == NULL, "rope positions out of range");
    kvc_rope_table_free(t);
}

/* ---------------------------------------------------------------- files ---- */

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static uint8_t *slurp(const char *p, long *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    *n = file_size(p);
    uint8_t *b = malloc((size_t)*n);
    if (fread(b, 1, (size_t)*n, f) != (size_t)*n) { free(b); b = NULL; }
    fclose(f);
    return b;
}
static void spill(const char *p, const uint8_t *b, long n) {
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, (size_t)n, f);
    fclose(f);
}
static long find_bytes(const uint8_t *b, long n, const char *s) {
    long m = (long)strlen(s);
    for (long i = 0; i + m <= n; i++)
        if (memcmp(b + i, s, (size_t)m) == 0) return i;
    return -1;
}

/* Preset files: round trip of the setting; a plain calibration, a bad field and a missing
 * field are refused with one line naming the file and the field. */
static void test_preset_file(void) {
    struct kvc_calib *cal = make_calib_m(8, 1);
    if (!cal) return;
    char path[128], bad[160];
    snprintf(path, sizeof path, "/tmp/test_pca_%ld.preset", (long)getpid());
    snprintf(bad, sizeof bad, "%s.bad", path);
    kvc_error e = {0};
    struct kvc_preset pr;
    CHECK(kvc_calib_save(cal, path, &e) == KVC_OK, "save plain: %s", e.msg);
    CHECK(kvc_preset_read(path, &pr, &e) == KVC_ERR_FORMAT && strstr(e.msg, path) && strstr(e.msg, "kvcodec.preset.kv_k") &&
              !strchr(e.msg, '\n'),
          "plain calibration is not a preset: %s", e.msg);
    cal->has_preset = 1;
    snprintf(cal->preset.kv_k, sizeof cal->preset.kv_k, "pca:bits=2.75,keys=pre");
    snprintf(cal->preset.kv_v, sizeof cal->preset.kv_v, "pca:bits=2.75");
    snprintf(cal->preset.note, sizeof cal->preset.note, "test");
    cal->preset.sinks = 4;
    cal->preset.recent = 64;
    cal->preset.ctx = 2048;
    cal->preset.bits_per_element = 3.25;
    CHECK(kvc_calib_save(cal, path, &e) == KVC_OK, "save preset: %s", e.msg);
    memset(&pr, 0, sizeof pr);
    CHECK(kvc_preset_read(path, &pr, &e) == KVC_OK, "read preset: %s", e.msg);
    CHECK(strcmp(pr.kv_k, "pca:bits=2.75,keys=pre") == 0 && strcmp(pr.kv_v, "pca:bits=2.75") == 0 &&
              strcmp(pr.note, "test") == 0 && pr.sinks == 4 && pr.recent == 64 && pr.ctx == 2048 &&
              pr.bits_per_element == 3.25,
          "preset round trip: %s %s %d %d %d %g", pr.kv_k, pr.kv_v, pr.sinks, pr.recent, pr.ctx, pr.bits_per_element);
    struct kvc_calib *c2 = NULL;
    CHECK(kvc_calib_load_file(path, &c2, &e) == KVC_OK && c2 && c2->has_preset && c2->metric == cal->metric,
          "a preset is also a calibration: %s", e.msg);
    kvc_calib_free(c2);
    { /* specs up to KVC_SPEC_MAX - 1 characters (per-layer bits of deep models) round-trip */
        char longk[KVC_SPEC_MAX];
        int o = snprintf(longk, sizeof longk, "pca:layers=2.5");
        while (o + 6 < KVC_SPEC_MAX - 1) o += snprintf(longk + o, sizeof longk - (size_t)o, "/%d.125", 1 + o % 7);
        while (o < KVC_SPEC_MAX - 1) longk[o++] = '5';
        longk[o] = 0;
        snprintf(cal->preset.kv_k, sizeof cal->preset.kv_k, "%s", longk);
        CHECK(kvc_calib_save(cal, path, &e) == KVC_OK, "save preset with a %d-character spec: %s", o, e.msg);
        memset(&pr, 0, sizeof pr);
        CHECK(kvc_preset_read(path, &pr, &e) == KVC_OK && strcmp(pr.kv_k, longk) == 0 && strlen(pr.kv_k) == KVC_SPEC_MAX - 1,
              "preset round trip of a %d-character spec: %s", o, e.msg);
        snprintf(cal->preset.kv_k, sizeof cal->preset.kv_k, "pca:bits=2.75,keys=pre");
        CHECK(kvc_calib_save(cal, path, &e) == KVC_OK, "save preset: %s", e.msg);
    }
    long n;
    uint8_t *b = slurp(path, &n);
    if (b) {
        uint8_t *b2 = malloc((size_t)n);
        long o = find_bytes(b, n, "kvcodec.preset.recent");
        CHECK(o > 0, "recent key in the preset");
        if (o > 0) { /* recent 64 -> 4000: sinks + recent exceed ctx */
            memcpy(b2, b, (size_t)n);
            uint32_t v = 4000;
            memcpy(b2 + o + strlen("kvcodec.preset.recent") + 4, &v, 4);
            spill(bad, b2, n);
            CHECK(kvc_preset_read(bad, &pr, &e) == KVC_ERR_FORMAT && strstr(e.msg, bad) &&
                      strstr(e.msg, "kvcodec.preset.recent") && !strchr(e.msg, '\n'),
                  "recent beyond ctx: %s", e.msg);
            memcpy(b2, b, (size_t)n);
            memcpy(b2 + o, "kvcodec.preset.recenX", 21); /* key gone */
            spill(bad, b2, n);
            CHECK(kvc_preset_read(bad, &pr, &e) == KVC_ERR_FORMAT && strstr(e.msg, bad) &&
                      strstr(e.msg, "kvcodec.preset.recent"),
                  "recent missing: %s", e.msg);
        }
        o = find_bytes(b, n, "pca:bits=2.75,keys=pre");
        if (o > 0) { /* a control byte in a spec */
            memcpy(b2, b, (size_t)n);
            b2[o + 3] = 7;
            spill(bad, b2, n);
            CHECK(kvc_preset_read(bad, &pr, &e) == KVC_ERR_FORMAT && strstr(e.msg, "kvcodec.preset.kv_k"),
                  "control byte in kv_k: %s", e.msg);
        }
        free(b2);
        free(b);
    }
    remove(path);
    remove(bad);
    kvc_calib_free(cal);
}

static void test_files(const struct kvc_calib *cal) {
    char path[128], bad[160];
    snprintf(path, sizeof path, "/tmp/test_pca_%ld.calib", (long)getpid());
    snprintf(bad, sizeof bad, "%s.bad", path);
    kvc_error e = {0};
    CHECK(kvc_calib_save(cal, path, &e) == KVC_OK, "save: %s", e.msg);
    struct kvc_calib *c2 = NULL;
    CHECK(kvc_calib_load_file(path, &c2, &e) == KVC_OK, "load: %s", e.msg);
    if (!c2) return;
    int d = cal->id.head_dim, same = 1;
    for (int h = 0; h < SYN_HEADS; h++)
        for (int k = 0; k < KVC_CALIB_NKIND; k++) {
            const struct kvc_calib_slot *a = kvc_calib_slot_get(cal, 0, h, k), *b = kvc_calib_slot_get(c2, 0, h, k);
            same &= memcmp(a->mean, b->mean, sizeof(float) * d) == 0;
            same &= memcmp(a->basis, b->basis, sizeof(float) * d * d) == 0;
            same &= memcmp(a->eigval, b->eigval, sizeof(float) * d) == 0;
            same &= memcmp(a->step, b->step, sizeof(float) * d * (cal->max_bits + 1)) == 0;
            same &= memcmp(a->mse, b->mse, sizeof(float) * d * (cal->max_bits + 1)) == 0;
            same &= memcmp(a->metric, b->metric, sizeof(float) * d * d) == 0;
            same &= memcmp(a->metric_inv, b->metric_inv, sizeof(float) * d * d) == 0;
        }
    CHECK(same, "round trip: every value equal");
    CHECK(strcmp(c2->id.arch, cal->id.arch) == 0 && c2->id.n_layer == cal->id.n_layer &&
              c2->id.n_head_kv == cal->id.n_head_kv && c2->id.head_dim == cal->id.head_dim &&
              c2->id.n_vocab == cal->id.n_vocab && c2->id.rope_base == cal->id.rope_base &&
              c2->id.tok_hash == cal->id.tok_hash,
          "round trip: model identity ('%s' %d %d %d %d %g %llx)", c2->id.arch, c2->id.n_layer, c2->id.n_head_kv,
          c2->id.head_dim, c2->id.n_vocab, c2->id.rope_base, (unsigned long long)c2->id.tok_hash);
    CHECK(strcmp(c2->text, "random") == 0 && strcmp(c2->model_name, "synthetic") == 0 && c2->n_tokens == 2048 &&
              c2->n_ctx == 256 && c2->sample_rows == 4096 && c2->max_bits == cal->max_bits,
          "round trip: metadata ('%s', '%s', %llu, %d, %d)", c2->text, c2->model_name,
          (unsigned long long)c2->n_tokens, c2->n_ctx, c2->sample_rows);
    CHECK(kvc_calib_check_id(c2, &cal->id, &e) == KVC_OK, "same model accepted: %s", e.msg);
    struct kvc_calib_id id = cal->id;
    id.n_layer = 8;
    CHECK(kvc_calib_check_id(c2, &id, &e) == KVC_ERR_CALIB && strstr(e.msg, "llama.block_count") &&
              strstr(e.msg, "= 1 in the file, 8 in the model") && strstr(e.msg, path),
          "layer mismatch: %s", e.msg);
    id = cal->id;
    id.head_dim = 2 * d;
    CHECK(kvc_calib_check_id(c2, &id, &e) == KVC_ERR_CALIB && strstr(e.msg, "key_length"), "dim mismatch: %s", e.msg);
    id = cal->id;
    id.tok_hash ^= 1;
    CHECK(kvc_calib_check_id(c2, &id, &e) == KVC_ERR_CALIB && strstr(e.msg, "tokenizer_hash"), "tokenizer mismatch: %s",
          e.msg);
    id = cal->id;
    id.rope_base = 500000.0f;
    CHECK(kvc_calib_check_id(c2, &id, &e) == KVC_ERR_CALIB && strstr(e.msg, "freq_base"), "rope mismatch: %s", e.msg);
    kvc_calib_free(c2);

    long n;
    uint8_t *b = slurp(path, &n);
    if (!b) { CHECK(0, "read back %s", path); return; }
    static const long cut[] = {0, 3, 20, 200};
    for (int i = 0; i < 5; i++) { /* truncated */
        long m = i < 4 ? cut[i] : n - 7;
        spill(bad, b, m);
        c2 = NULL;
        kvc_status st = kvc_calib_load_file(bad, &c2, &e);
        CHECK(st == KVC_ERR_FORMAT && c2 == NULL && strstr(e.msg, bad), "truncated to %ld bytes: %s (%d)", m, e.msg, st);
    }
    long vo = find_bytes(b, n, "kvcodec.calib.version");
    CHECK(vo > 0, "version key in the file");
    if (vo > 0) { /* wrong version */
        uint8_t *b2 = malloc((size_t)n);
        memcpy(b2, b, (size_t)n);
        uint32_t v = 3;
        memcpy(b2 + vo + strlen("kvcodec.calib.version") + 4, &v, 4);
        spill(bad, b2, n);
        CHECK(kvc_calib_load_file(bad, &c2, &e) == KVC_ERR_FORMAT && strstr(e.msg, "kvcodec.calib.version = 3") &&
                  strstr(e.msg, "versions 1 and 2"),
              "wrong version: %s", e.msg);
        memcpy(b2, b, (size_t)n);
        memcpy(b2 + vo, "kvcodec.calib.versioX", 21); /* key gone: not a calibration file */
        spill(bad, b2, n);
        CHECK(kvc_calib_load_file(bad, &c2, &e) == KVC_ERR_FORMAT && strstr(e.msg, "not a kvcodec calibration file"),
              "missing version: %s", e.msg);
        /* corrupted values: a basis entry, a mean entry (NaN), an eigenvalue order */
        const struct kvc_calib_slot *s0 = kvc_calib_slot_get(cal, 0, 1, KVC_CALIB_V);
        long bo = find_bytes(b, n, "GGUF") == 0 ? -1 : -1;
        for (long i = 0; i + 4 * d <= n; i += 4)
            if (memcmp(b + i, s0->basis, sizeof(float) * d) == 0) { bo = i; break; }
        CHECK(bo > 0, "basis bytes found");
        if (bo > 0) {
            memcpy(b2, b, (size_t)n);
            float f = 0.9f;
            memcpy(b2 + bo + 4, &f, 4);
            spill(bad, b2, n);
            CHECK(kvc_calib_load_file(bad, &c2, &e) == KVC_ERR_FORMAT && strstr(e.msg, "blk.0.head.1.v.basis") &&
                      strstr(e.msg, "orthonormal"),
                  "corrupted basis: %s", e.msg);
            memcpy(b2, b, (size_t)n);
            f = NAN;
            memcpy(b2 + bo + 8, &f, 4);
            spill(bad, b2, n);
            CHECK(kvc_calib_load_file(bad, &c2, &e) == KVC_ERR_FORMAT && strstr(e.msg, "not finite"), "NaN basis: %s",
                  e.msg);
        }
        free(b2);
    }
    CHECK(kvc_calib_load_file("/nonexistent/x.calib", &c2, &e) == KVC_ERR_IO && strstr(e.msg, "/nonexistent/x.calib"),
          "missing file: %s", e.msg);
    free(b);
    remove(path);
    remove(bad);
}

/* ---------------------------------------------------------------- real model ---- */

static void test_real(void) {
    const char *mp = shared_path("models/stories260K.gguf"), *tp = shared_path("text/calib.txt");
    if (!mp || !tp) return;
    kvc_model *m = NULL;
    kvc_error e = {0};
    if (kvc_model_load(mp, &m, &e)) { CHECK(0, "load %s: %s", mp, e.msg); return; }
    const struct kvc_model_info *in = kvc_model_get_info(m);
    FILE *f = fopen(tp, "rb");
    char *text = malloc(65536);
    size_t len = f ? fread(text, 1, 65536, f) : 0;
    if (f) fclose(f);
    int32_t *tok = NULL;
    int n_tok = 0;
    CHECK(kvc_tokenize(m, text, len, 1, &tok, &n_tok, &e) == KVC_OK && n_tok > 4096, "tokenize calib.txt: %s", e.msg);
    struct kvc_calib_opts o;
    kvc_calib_opts_default(&o);
    o.n_ctx = 256;
    o.max_tokens = 4096;
    o.text_name = "calib.txt";
    struct kvc_calib *c = NULL;
    CHECK(kvc_calib_fit(m, tok, n_tok, &o, &c, &e) == KVC_OK, "calibrate stories260K: %s", e.msg);
    if (c) {
        int d = in->head_dim, okm = 1, oks = 1, oke = 1;
        double *cum = malloc(sizeof(double) * d);
        for (int l = 0; l < in->n_layer; l++)
            for (int h = 0; h < in->n_head_kv; h++)
                for (int k = 0; k < KVC_CALIB_NKIND; k++) {
                    const struct kvc_calib_slot *s = kvc_calib_slot_get(c, l, h, k);
                    kvc_calib_explained(s, d, cum);
                    double share = 0, tr = 0, ev = 0;
                    for (int r = 0; r < d; r++) {
                        if (r && cum[r] < cum[r - 1]) okm = 0;
                        if (s->eigval[r] < 0 || (r && s->eigval[r] > s->eigval[r - 1])) oke = 0;
                        ev += s->eigval[r];
                        tr += s->mse[r]; /* variance of each coefficient over all sampled rows */
                    }
                    for (int r = 0; r < d; r++) share += s->eigval[r] / ev;
                    if (fabs(share - 1) > 1e-9 || fabs(cum[d - 1] - 1) > 1e-9) oks = 0;
                    /* 4096 rows <= the sample: the sample is all the data, so the coefficient
                     * variances add up to the trace of the covariance = sum of eigenvalues */
                    if (fabs(tr - ev) > 1e-3 * ev) oks = 0;
                }
        CHECK(okm, "explained variance is monotone in rank");
        CHECK(oks, "explained shares sum to 1 and eigenvalues add up to the total variance");
        CHECK(oke, "eigenvalues non-negative and descending");
        CHECK(c->n_tokens == 4096 && c->id.n_layer == in->n_layer && c->id.head_dim == d, "calibration metadata");
        free(cum);
        char path[128];
        snprintf(path, sizeof path, "/tmp/test_pca_real_%ld.calib", (long)getpid());
        CHECK(kvc_calib_save(c, path, &e) == KVC_OK, "save: %s", e.msg);
        struct kvc_calib *c2 = NULL;
        CHECK(kvc_calib_load(path, m, &c2, &e) == KVC_OK, "load against its model: %s", e.msg);
        kvc_calib_free(c2);
        /* the codec in the engine: full rank with f32 coefficients equals an f32 cache */
        static const char *kspec[] = {"pca:rank=8,coef=f32", "pca:rank=8,coef=f32,keys=pre"};
        for (int v = 0; v < 2; v++) {
            struct kvc_ctx_params p = kvc_ctx_default_params();
            p.n_ctx = 128;
            p.kv_k = kspec[v];
            p.kv_v = "pca:rank=8,coef=f32";
            p.kv_calib = path;
            kvc_ctx *a = NULL, *b = NULL;
            CHECK(kvc_ctx_create(m, &p, &a, &e) == KVC_OK, "ctx %s: %s", kspec[v], e.msg);
            p.kv_k = p.kv_v = "f32";
            p.kv_calib = NULL;
            CHECK(kvc_ctx_create(m, &p, &b, &e) == KVC_OK, "ctx f32: %s", e.msg);
            if (a && b) {
                int n = 100;
                CHECK(kvc_eval(a, tok, n, 1, &e) == KVC_OK && kvc_eval(b, tok, n, 1, &e) == KVC_OK, "eval: %s", e.msg);
                const float *la = kvc_get_logits(a), *lb = kvc_get_logits(b);
                double worst = 0;
                for (long i = 0; i < (long)n * in->n_vocab; i++) worst = fmax(worst, fabs(la[i] - lb[i]));
                CHECK(worst < 2e-3, "%s vs f32 cache: logits differ by %g", kspec[v], worst);
            }
            kvc_ctx_free(a);
            kvc_ctx_free(b);
        }
        /* missing calibration through the public API */
        {
            struct kvc_ctx_params p = kvc_ctx_default_params();
            p.n_ctx = 64;
            p.kv_k = "pca:rank=4";
            kvc_ctx *a = NULL;
            CHECK(kvc_ctx_create(m, &p, &a, &e) == KVC_ERR_CALIB && strstr(e.msg, "--kv-calib"), "no --kv-calib: %s",
                  e.msg);
            kvc_ctx_free(a);
        }
        /* another model is rejected; the f16 and q4_0 files of kvref share an identity */
        const char *k16 = shared_path("models/kvref-f16.gguf"), *k4 = "models/kvref-q4_0.gguf"; /* embedded */
        if (k16 && k4) {
            kvc_model *m16 = NULL, *m4 = NULL;
            if (kvc_model_load(k16, &m16, &e) == KVC_OK && kvc_model_load(k4, &m4, &e) == KVC_OK) {
                struct kvc_calib *c3 = NULL;
                CHECK(kvc_calib_load(path, m16, &c3, &e) == KVC_ERR_CALIB && c3 == NULL &&
                          strstr(e.msg, "block_count = 5 in the file, 8 in the model"),
                      "stories calibration refused for kvref: %s", e.msg);
                struct kvc_calib_id i16, i4;
                kvc_calib_model_id(m16, &i16, NULL);
                kvc_calib_model_id(m4, &i4, NULL);
                CHECK(memcmp(&i16, &i4, sizeof i16) == 0, "kvref f16 and q4_0 share a calibration identity");
            } else {
                CHECK(0, "load kvref: %s", e.msg);
            }
            kvc_model_free(m16);
            kvc_model_free(m4);
        }
        remove(path);
        kvc_calib_free(c);
    }
    free(tok);
    free(text);
    kvc_model_free(m);
}

/* The attention-metric transform: identity weights give T = I exactly; fitting steps in the
 * metric T on rows x equals plain fitting (T = I) on rows T x with mean T m. */
static void test_metric(void) {
    int d = 16;
    double w[16], M[256];
    float T[256], Ti[256];
    for (int i = 0; i < d; i++) w[i] = 3.0;
    kvc_calib_metric_pairs(d, 0, w, T, Ti);
    int ident = 1;
    for (int i = 0; i < d * d; i++) ident &= fabsf(T[i] - (i % (d + 1) == 0)) < 1e-6f && fabsf(Ti[i] - (i % (d + 1) == 0)) < 1e-6f;
    CHECK(ident, "pair metric of equal weights is the identity");
    /* pairs: (2i, 2i + 1), or (i, i + d/2) for NEOX; each pair gets the mean of its two weights */
    for (int neox = 0; neox <= 1; neox++) {
        for (int i = 0; i < d; i++) w[i] = 1.0 + i;
        kvc_calib_metric_pairs(d, neox, w, T, Ti);
        int ok = 1;
        for (int p = 0; p < d / 2; p++) {
            int a = neox ? p : 2 * p, b = neox ? p + d / 2 : 2 * p + 1;
            double want = sqrt((w[a] + w[b]) / 2 / ((d + 1) / 2.0)); /* normalised to mean weight 1 */
            ok &= fabs(T[a * d + a] - want) < 1e-5 && fabs(T[b * d + b] - want) < 1e-5 && fabs(Ti[a * d + a] * want - 1) < 1e-5;
        }
        CHECK(ok, "pair metric (neox %d): sqrt of the mean weight of each RoPE pair", neox);
    }
    for (int i = 0; i < d * d; i++) M[i] = i % (d + 1) == 0 ? 2.5 : 0;
    CHECK(kvc_calib_metric_sqrt(d, M, T, Ti, NULL) == KVC_OK, "metric sqrt of 2.5 I");
    ident = 1;
    for (int i = 0; i < d * d; i++) ident &= fabsf(T[i] - (i % (d + 1) == 0)) < 1e-5f && fabsf(Ti[i] - (i % (d + 1) == 0)) < 1e-5f;
    CHECK(ident, "output metric of a multiple of I is the identity");
    /* T^2 = M for a random SPD M (float64 product) */
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) M[i * d + j] = M[j * d + i] = (i == j ? d : 0) + t_randn(&rng);
    CHECK(kvc_calib_metric_sqrt(d, M, T, Ti, NULL) == KVC_OK, "metric sqrt of SPD");
    double tr = 0, worst = 0;
    for (int i = 0; i < d; i++) tr += M[i * d + i];
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double a = 0;
            for (int k = 0; k < d; k++) a += (double)T[i * d + k] * T[k * d + j];
            worst = fmax(worst, fabs(a - M[i * d + j] * d / tr));
        }
    CHECK(worst < 1e-4, "T^2 = M / (trace M / d): max error %.2e", worst);
    struct kvc_calib *a = make_calib_m(d, 1), *b = make_calib(d);
    if (!a || !b) { kvc_calib_free(a); kvc_calib_free(b); return; }
    struct kvc_calib_slot *sa = (struct kvc_calib_slot *)kvc_calib_slot_get(a, 0, 0, KVC_CALIB_V);
    struct kvc_calib_slot *sb = (struct kvc_calib_slot *)kvc_calib_slot_get(b, 0, 0, KVC_CALIB_V);
    memcpy(sb->basis, sa->basis, sizeof(float) * d * d);
    memcpy(sb->eigval, sa->eigval, sizeof(float) * d);
    int n = 2000;
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d);
    for (int r = 0; r < n; r++) model_row(sa, d, x + (size_t)r * d);
    for (int r = 0; r < n; r++)
        for (int i = 0; i < d; i++) {
            double v = 0;
            for (int k = 0; k < d; k++) v += (double)sa->metric[i * d + k] * x[(size_t)r * d + k];
            y[(size_t)r * d + i] = (float)v;
        }
    for (int i = 0; i < d; i++) {
        double v = 0;
        for (int k = 0; k < d; k++) v += (double)sa->metric[i * d + k] * sa->mean[k];
        sb->mean[i] = (float)v;
    }
    kvc_calib_fit_steps(sa, d, a->max_bits, x, n);
    kvc_calib_fit_steps(sb, d, b->max_bits, y, n);
    worst = 0;
    for (int i = 0; i < (a->max_bits + 1) * d; i++) {
        worst = fmax(worst, fabs(sa->step[i] - sb->step[i]) / (fabs(sb->step[i]) + 1e-6));
        worst = fmax(worst, fabs(sa->mse[i] - sb->mse[i]) / (fabs(sb->mse[i]) + 1e-6));
    }
    CHECK(worst < 2e-2, "steps in metric T vs plain steps of T x: max relative difference %.2e", worst);
    free(x); free(y);
    kvc_calib_free(a);
    kvc_calib_free(b);
}

int main(void) {
    test_eigen(8);
    test_eigen(64);
    test_rope_table();
    /* KVC_TEST_LEVEL=quick (sanitizer build): head dims 64 and 128 only */
    const char *lvl = getenv("KVC_TEST_LEVEL");
    int quick = lvl && strcmp(lvl, "quick") == 0;
    static const int dims[] = {64, 128, 8, 48};
    /* the low-precision keys=pair kernels run only where the CPU has them: say which are tested */
    printf("keys=pair kernels tested here: float%s%s\n", kvc_cpu_has_avx512bf16() ? ", bf16" : " (no AVX512-BF16: bf16 not tested)",
           kvc_cpu_has_avx512fp16() ? ", fp16" : " (no AVX512-FP16: fp16 not tested)");
    for (int i = 0; i < (quick ? 2 : 4); i++) {
        struct kvc_calib *cal = make_calib(dims[i]);
        if (!cal) continue;
        test_specs(cal);
        test_full_rank(cal);
        test_levels(cal);
        test_pre_exact(cal);
        test_pair_exact(cal, 0);
        test_pair_exact(cal, 1);
        test_pair_tiled(cal, 0);
        test_pair_tiled(cal, 1);
        test_bits_alloc(cal);
        test_batch_decode(cal);
        if (dims[i] == 64) {
            test_attention_vs_f16(cal);
            test_error_order(cal);
            test_files(cal);
        }
        kvc_calib_free(cal);
    }
    test_metric();
    test_preset_file();
    for (int i = 0; i < 2; i++) { /* codec with attention metrics: exact at full rank, levels agree, pre scores */
        struct kvc_calib *cal = make_calib_m(dims[i], 1);
        if (!cal) continue;
        test_full_rank(cal);
        test_levels(cal);
        test_pre_exact(cal);
        test_pair_exact(cal, 0);
        kvc_calib_free(cal);
    }
    /* NEOX RoPE (qwen2's layout, pairs (i, i + d/2)): keys=pre and keys=pair against float64
     * RoPE of that layout, every level against scalar, batch decode, plain and with metrics */
    t_neox = 1;
    for (int i = 0; i < (quick ? 2 : 4); i++)
        for (int m = 0; m <= 1; m++) {
            struct kvc_calib *cal = make_calib_m(dims[i], m);
            if (!cal) continue;
            test_full_rank(cal);
            test_pre_exact(cal);
            test_pair_exact(cal, 1);
            if (m == 0) {
                test_levels(cal);
                test_batch_decode(cal);
            }
            if (dims[i] == 64 && m == 0) test_attention_vs_f16(cal);
            kvc_calib_free(cal);
        }
    t_neox = 0;
    /* Llama 3 frequency factors (1 for the fast pairs, 8 for the slow ones, smooth between), on
     * adjacent pairs; then linear scaling 0.25 on NEOX halves: the same float64 references */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 2; i++) {
            const int d = dims[i], h = d / 2;
            float ff[512];
            for (int p = 0; p < h; p++) ff[p] = p < h / 2 ? 1.0f : p >= 3 * h / 4 ? 8.0f : 1.0f + 7.0f * (float)(p - h / 2) / (float)(h / 4);
            t_neox = pass;
            t_ff = pass == 0 ? ff : NULL;
            t_scale = pass == 0 ? 1.0f : 0.25f;
            struct kvc_calib *cal = make_calib_m(d, 1);
            if (cal) {
                test_full_rank(cal);
                test_pre_exact(cal);
                test_pair_exact(cal, t_neox);
                test_pair_tiled(cal, t_neox);
                test_batch_decode(cal);
                if (d == 64) test_levels(cal);
                kvc_calib_free(cal);
            }
            t_neox = 0;
            t_ff = NULL;
            t_scale = 1.0f;
        }
    test_real();
    return test_summary("test_pca");
}
