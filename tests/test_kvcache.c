/* test_kvcache.c - the KV cache's segment logic against brute-force float64 attention:
 * sink rows (in the window codec: f16, q8_0, ...), codec rows, recent rows from the ring and
 * from the in-flight batch stage, for batches of many sizes, several codecs, sinks/recent
 * settings and window codecs, and memory accounting. */
#include "arch/softmax.h"
#include "arch/tile_gemm.h"
#include "codecs/hdc_common.h"
#include "kv/kvcache.h"
#include "test.h"
#include "util.h"

#include <float.h>

enum { DMAX = 128, NKV = 2, NL = 2 };
static int D = 64; /* head dimension of the current pass (main runs 64 and 128) */
static const char *win = "f16"; /* window codec of the current cases (--kv-window) */

/* What the cache should hold for position p as seen by a query at position t: the window
 * codec's decode for sinks and the recent window, the codec's decode otherwise. */
static const int *ring_owner; /* position whose f16 row each ring slot holds (-1: none) */
static int stage_p0;           /* first position of the batch in flight (its rows are staged) */
static void expect_row(const struct kv_cache *c, const struct kv_side *sd, int layer, int head,
                       int p, int t, const float *x, float *out) {
    int recent = c->recent > 0 && p > t - c->recent && (p >= stage_p0 || ring_owner[p % c->recent] == p);
    const struct kv_slot *s = &sd->slot[layer * c->n_head_kv + head];
    if (p < c->sinks || recent) {
        if (!strcmp(win, "f16")) { /* independently of the codec: IEEE half rounding */
            for (int j = 0; j < D; j++) out[j] = kvc_f16_to_f32(kvc_f32_to_f16(x[j]));
            return;
        }
        s = &sd->slotw[layer * c->n_head_kv + head]; /* test_codecs checks its rows */
    }
    uint8_t buf[4096];
    s->k->encode(s, x, p, 1, buf);
    s->k->decode(s, buf, p, 1, out);
}

/* kv_cache_attend_rows for the T batch tokens at p0 and G = 3 query heads of KV head h: whole
 * range in tiles, and the same split into 3 position chunks merged with
 * kv_cache_attend_merge; returns the max |difference| from kv_cache_attend. */
static double rows_vs_reference(const struct kv_cache *c, struct kv_attn_scratch *scr, int l, int h,
                                int p0, int T, unsigned long long *rng) {
    enum { G = 3 };
    const int tile = KV_MAX_QROWS / G, n = p0 + T;
    const size_t pf = kv_part_floats(c);
    float *Q = malloc(sizeof(float) * (size_t)T * G * D), *O = malloc(sizeof(float) * (size_t)T * G * D);
    float *parts = malloc(sizeof(float) * 3 * (size_t)tile * G * pf);
    float ref[DMAX], om[DMAX];
    for (long i = 0; i < (long)T * G * D; i++) Q[i] = t_randn(rng);
    double worst = 0;
    for (int i0 = 0; i0 < T; i0 += tile) {
        const int i1 = i0 + tile < T ? i0 + tile : T;
        kv_cache_attend_rows(c, scr, l, h, G, Q, G * D, i0, i1, p0, 0, n, 0.125f, O, NULL);
        const int cut[4] = {0, n / 3, 2 * n / 3 + 1, n};
        for (int ch = 0; ch < 3; ch++)
            kv_cache_attend_rows(c, scr, l, h, G, Q, G * D, i0, i1, p0, cut[ch], cut[ch + 1], 0.125f, NULL,
                                 parts + (size_t)ch * tile * G * pf);
        for (int i = i0; i < i1; i++)
            for (int g = 0; g < G; g++) {
                const float *q = Q + ((size_t)i * G + g) * D, *o = O + ((size_t)i * G + g) * D;
                kv_cache_attend(c, scr, l, h, q, p0 + i, p0, 0.125f, ref);
                float *pp[3];
                for (int ch = 0; ch < 3; ch++) pp[ch] = parts + ((size_t)ch * tile * G + (size_t)(i - i0) * G + g) * pf;
                kv_cache_attend_merge(c, l, h, pp, 3, om);
                for (int j = 0; j < D; j++) {
                    worst = fmax(worst, fabs(o[j] - ref[j]));
                    worst = fmax(worst, fabs(om[j] - ref[j]));
                }
            }
    }
    free(Q); free(O); free(parts);
    return worst;
}

/* Batches stored and attended in turn; after batch cut_after (-1: never) the cache is cut back
 * to position cut_to with kv_cache_truncate and the rest go on from there (fresh rows). */
static void run_case_cut(const char *kspec, const char *vspec, int n_ctx, int n_batch, int sinks,
                         int recent, const int *batches, int nb, int cut_after, int cut_to) {
    struct kv_cache c;
    kvc_error e = {0};
    const struct kv_rope rope = {.base = 10000.0f, .freq_scale = 1.0f};
    kvc_status st = kv_cache_init_rope(&c, NL, NKV, D, n_ctx, n_batch, kspec, vspec, win, sinks, recent, &rope, 1234,
                                       NULL, kvc_isa_best(), &e);
    CHECK(st == KVC_OK, "init %s/%s window %s: %s", kspec, vspec, win, e.msg);
    if (st) return;
    struct kv_attn_scratch scr;
    CHECK(kv_cache_scratch_init(&c, &scr) == KVC_OK, "scratch");
    unsigned long long rng = 99;
    int total = 0;
    for (int b = 0; b < nb; b++) total += batches[b];
    /* K, V rows per (layer, head, position) */
    float *K = malloc(sizeof(float) * (size_t)NL * NKV * total * D), *V = malloc(sizeof(float) * (size_t)NL * NKV * total * D);
    for (long i = 0; i < (long)NL * NKV * total * D; i++) { K[i] = t_randn(&rng); V[i] = t_randn(&rng); }
#define ROW(A, l, h, p) ((A) + ((((size_t)(l) * NKV + (h)) * total) + (p)) * D)
    float kr[DMAX], vr[DMAX], q[DMAX], out[DMAX];
    double *sc = malloc(sizeof(double) * (size_t)total);
    float *tmpk = malloc(sizeof(float) * (size_t)n_batch * D), *tmpv = malloc(sizeof(float) * (size_t)n_batch * D);
    double worst = 0, worst_rows = 0;
    int p0 = 0;
    int owner[256];
    for (int i = 0; i < 256; i++) owner[i] = -1;
    ring_owner = owner;
    for (int b = 0; b < nb; b++) {
        int T = batches[b];
        stage_p0 = p0;
        if (b > 0 && b - 1 == cut_after) /* rows stored after the cut are new */
            for (int l = 0; l < NL; l++)
                for (int h = 0; h < NKV; h++)
                    for (int t = p0; t < p0 + T; t++)
                        for (int j = 0; j < D; j++) {
                            ROW(K, l, h, t)[j] = t_randn(&rng);
                            ROW(V, l, h, t)[j] = t_randn(&rng);
                        }
        for (int l = 0; l < NL; l++) {
            for (int h = 0; h < NKV; h++) {
                for (int t = 0; t < T; t++) {
                    memcpy(tmpk + t * D, ROW(K, l, h, p0 + t), sizeof(float) * (size_t)D);
                    memcpy(tmpv + t * D, ROW(V, l, h, p0 + t), sizeof(float) * (size_t)D);
                }
                kv_cache_store(&c, l, h, p0, T, tmpk, tmpv);
            }
            for (int h = 0; h < NKV; h++) {
                for (int t = p0; t < p0 + T; t++) {
                    for (int j = 0; j < D; j++) q[j] = t_randn(&rng);
                    kv_cache_attend(&c, &scr, l, h, q, t, p0, 0.125f, out);
                    /* float64 reference */
                    double mx = -1e300, sum = 0, ref[DMAX] = {0};
                    for (int p = 0; p <= t; p++) {
                        expect_row(&c, &c.k, l, h, p, t, ROW(K, l, h, p), kr);
                        double s = 0;
                        for (int j = 0; j < D; j++) s += (double)q[j] * kr[j];
                        sc[p] = s * 0.125;
                        if (sc[p] > mx) mx = sc[p];
                    }
                    for (int p = 0; p <= t; p++) sum += (sc[p] = exp(sc[p] - mx));
                    for (int p = 0; p <= t; p++) {
                        expect_row(&c, &c.v, l, h, p, t, ROW(V, l, h, p), vr);
                        for (int j = 0; j < D; j++) ref[j] += sc[p] / sum * vr[j];
                    }
                    for (int j = 0; j < D; j++) worst = fmax(worst, fabs(out[j] - ref[j]));
                }
            }
            /* blocked attention (G query heads per KV head, token tiles, position chunks with
             * merge) against the reference path above */
            for (int h = 0; h < NKV; h++)
                worst_rows = fmax(worst_rows, rows_vs_reference(&c, &scr, l, h, p0, T, &rng));
            kv_cache_commit_layer(&c, l, p0, T);
        }
        for (int t = p0 + T - (T < recent ? T : recent); recent > 0 && t < p0 + T; t++) owner[t % recent] = t;
        p0 += T;
        c.n_past = p0;
        if (b == cut_after) {
            kv_cache_truncate(&c, cut_to);
            CHECK(c.n_past == cut_to, "truncate to %d: n_past %d", cut_to, c.n_past);
            p0 = cut_to;
        }
    }
    /* hdc keys of b >= 2 on a VNNI + VBMI CPU are scored with an int8 query and int8 levels
     * (their rounding bound is tested in test_hdc): logits move by ~1e-2 here (|q.k| / 8 up to
     * ~10), so the end-to-end tolerance is wider for them */
    /* hdc values of b = 2, 3 (D = 64) there: uint8 weights per chunk of 64 rows (rounding <= 1/510 of the
     * chunk's largest weight per row, bound tested in test_hdc); the chunks start where each call
     * starts, so blocked and reference attention round differently: ~1e-3 of |v| here */
    const int i8k = !strncmp(kspec, "hdc:", 4) && ((const struct hdc_state *)c.k.slot[0].state)->use_i8;
    const int i8v = !strncmp(vspec, "hdc:", 4) && ((const struct hdc_state *)c.v.slot[0].state)->use_v8;
    /* q8_0 / q4_0 keys: the reference scores them with the query rounded to int16 per block
     * (relative 2^-15 of the block's largest |q|), the blocked path decodes them once per block
     * and scores f32 rows: logits differ by ~1e-4 here */
    const int q16k = (c.k.slot32 && (!strcmp(kspec, "q8_0") || !strcmp(kspec, "q4_0"))) || strcmp(win, "f16");
    const double tol = i8k || i8v ? 3e-2 : 2e-3, tol_rows = i8v ? 2e-2 : q16k ? 5e-4 : 1e-4;
    CHECK(worst < tol, "%s/%s window %s ctx %d batch %d sinks %d recent %d: max |attn - float64| = %.3g (tolerance %g)",
          kspec, vspec, win, n_ctx, n_batch, sinks, recent, worst, tol);
    CHECK(worst_rows < tol_rows,
          "%s/%s window %s ctx %d batch %d sinks %d recent %d: max |blocked - reference attention| = %.3g", kspec, vspec,
          win, n_ctx, n_batch, sinks, recent, worst_rows);
    /* accounting: bytes = codec rows for positions >= sinks + window rows of sinks and ring
     * (f16: 2 bytes per element, q8_0: 34 bytes per 32, bf16 / f32: 2 / 4) */
    const double wb = !strcmp(win, "q8_0") ? D / 32 * 34.0 : !strcmp(win, "f32") ? D * 4.0 : D * 2.0;
    double want_k = (double)NL * NKV * ((double)(n_ctx - sinks) * c.k.row_bytes + (double)(sinks + recent) * wb);
    CHECK(fabs((double)c.k.bytes - want_k) < 0.5, "key bytes %llu, expected %.0f", (unsigned long long)c.k.bytes, want_k);
    CHECK(fabs(kv_side_bits(&c, &c.k) - 8 * want_k / ((double)NL * NKV * n_ctx * D)) < 1e-9, "bits");
    free(K); free(V); free(sc); free(tmpk); free(tmpv);
    kv_cache_scratch_free(&scr);
    kv_cache_free(&c);
}

static void run_case(const char *kspec, const char *vspec, int n_ctx, int n_batch, int sinks,
                     int recent, const int *batches, int nb) {
    run_case_cut(kspec, vspec, n_ctx, n_batch, sinks, recent, batches, nb, -1, 0);
}

/* softmax kernels: every level vs float64, with masked (-inf) entries and odd lengths */
static void test_softmax(void) {
    int ns[] = {1, 7, 16, 17, 100, 4099};
    unsigned long long rng = 5;
    for (int a = 0; a < 6; a++) {
        int n = ns[a];
        float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
        double *ref = malloc(sizeof(double) * (size_t)n);
        for (int i = 0; i < n; i++) x[i] = 30 * t_randf(&rng);
        if (n > 3) x[1] = x[n - 2] = -INFINITY;
        double mx = -1e300, sum = 0;
        for (int i = 0; i < n; i++) mx = fmax(mx, 0.7 * x[i]);
        for (int i = 0; i < n; i++) sum += (ref[i] = x[i] == -INFINITY ? 0 : exp(0.7 * x[i] - mx));
        float *rf = malloc(sizeof(float) * (size_t)n);
        for (int i = 0; i < n; i++) rf[i] = (float)(ref[i] / sum);
        for (int isa = 0; isa < KVC_ISA_COUNT; isa++) {
            if (!kvc_isa_supported((enum kvc_isa)isa)) continue;
            memcpy(y, x, sizeof(float) * (size_t)n);
            kvc_softmax_f32((enum kvc_isa)isa, y, n, 0.7f);
            char what[64];
            snprintf(what, sizeof what, "softmax %s n=%d vs float64", kvc_isa_name((enum kvc_isa)isa), n);
            check_tensor(what, y, rf, n, 1e-9, 2e-6);
            if (n > 3) CHECK(y[1] == 0 && y[n - 2] == 0, "masked entries must be exactly 0");
            /* the online form over blocks of 1, 2, 13, 16, ... entries: earlier weights times
             * each later alpha, over the final sum, are the same softmax */
            memcpy(y, x, sizeof(float) * (size_t)n);
            float m = -INFINITY, l = 0.0f;
            int at = 0, blk = 1;
            while (at < n) {
                int len = n - at < blk ? n - at : blk;
                float alpha = kvc_softmax_online((enum kvc_isa)isa, y + at, len, 0.7f, &m, &l);
                for (int i = 0; i < at; i++) y[i] *= alpha;
                at += len;
                blk = blk == 1 ? 2 : blk == 2 ? 13 : 16;
            }
            for (int i = 0; i < n; i++) y[i] /= l;
            snprintf(what, sizeof what, "online softmax %s n=%d vs float64", kvc_isa_name((enum kvc_isa)isa), n);
            check_tensor(what, y, rf, n, 1e-9, 2e-6);
            if (n > 3) CHECK(y[1] == 0 && y[n - 2] == 0, "online: masked entries must be exactly 0");
            /* a block of only masked entries before any finite one: weights 0, alpha 1 */
            float mm = -INFINITY, ll = 0.0f, z[3] = {-INFINITY, -INFINITY, -INFINITY};
            float al = kvc_softmax_online((enum kvc_isa)isa, z, 3, 0.7f, &mm, &ll);
            CHECK(al == 1.0f && ll == 0.0f && mm == -INFINITY && z[0] == 0 && z[2] == 0,
                  "online %s: all-masked block gives alpha 1 and weights 0", kvc_isa_name((enum kvc_isa)isa));
        }
        free(x); free(y); free(ref); free(rf);
    }
}

/* tile products (C = / += A B) at every level against float64, odd sizes and column tails,
 * with strides wider than the rows: C within the worst-case bound of a sequential f32 sum,
 * (K + 1) u (sum_k |a_ik b_kj| + |c_ij|), u = 2^-23, and nothing outside (M, N) written;
 * transposes exact */
static void test_tile_gemm(void) {
    const int mnk[][3] = {{1, 1, 1}, {7, 33, 64}, {8, 32, 64}, {9, 17, 5}, {13, 256, 64}, {255, 64, 256},
                          {24, 48, 128}, {3, 100, 0}, {17, 15, 200}, {16, 64, 19}};
    unsigned long long rng = 17;
    for (size_t z = 0; z < sizeof mnk / sizeof mnk[0]; z++) {
        const int M = mnk[z][0], N = mnk[z][1], K = mnk[z][2];
        const size_t lda = (size_t)K + 3, ldb = (size_t)N + 5, ldc = (size_t)N + 2;
        float *A = malloc(sizeof(float) * (M * lda + 1)), *B = malloc(sizeof(float) * (K * ldb + 1));
        float *C0 = malloc(sizeof(float) * M * ldc), *C = malloc(sizeof(float) * M * ldc);
        for (size_t i = 0; i < M * lda; i++) A[i] = t_randn(&rng);
        for (size_t i = 0; i < K * ldb; i++) B[i] = t_randn(&rng);
        for (size_t i = 0; i < M * ldc; i++) C0[i] = t_randn(&rng);
        for (int acc = 0; acc < 2; acc++)
            for (int isa = 0; isa < KVC_ISA_COUNT; isa++) {
                if (!kvc_isa_supported((enum kvc_isa)isa)) continue;
                memcpy(C, C0, sizeof(float) * M * ldc);
                kvc_gemm_f32((enum kvc_isa)isa, M, N, K, A, lda, B, ldb, C, ldc, acc);
                double worst = 0;
                int outside = 0;
                for (int i = 0; i < M; i++) {
                    for (int j = 0; j < N; j++) {
                        double ref = acc ? C0[i * ldc + j] : 0, mag = fabs(ref);
                        for (int k = 0; k < K; k++) {
                            ref += (double)A[i * lda + k] * B[k * ldb + j];
                            mag += fabs((double)A[i * lda + k] * B[k * ldb + j]);
                        }
                        const double err = fabs(C[i * ldc + j] - ref), bound = (K + 1) * 0x1p-23 * mag + 1e-30;
                        worst = fmax(worst, err / bound);
                    }
                    for (size_t j = (size_t)N; j < ldc; j++) outside |= C[i * ldc + j] != C0[i * ldc + j];
                }
                CHECK(worst <= 1.0 && !outside, "gemm %s M=%d N=%d K=%d acc=%d: error %.3g of the bound, writes outside %d",
                      kvc_isa_name((enum kvc_isa)isa), M, N, K, acc, worst, outside);
            }
        free(A); free(B); free(C0); free(C);
    }
    const int nd[][2] = {{1, 16}, {15, 64}, {16, 64}, {17, 128}, {200, 64}, {33, 24}};
    for (size_t z = 0; z < sizeof nd / sizeof nd[0]; z++) {
        const int n = nd[z][0], d = nd[z][1];
        const size_t ldx = (size_t)d + 16, ldy = (size_t)n + 7;
        float *X = malloc(sizeof(float) * n * ldx), *Y = malloc(sizeof(float) * d * ldy);
        for (size_t i = 0; i < n * ldx; i++) X[i] = t_randn(&rng);
        for (int isa = 0; isa < KVC_ISA_COUNT; isa++) {
            if (!kvc_isa_supported((enum kvc_isa)isa)) continue;
            for (size_t i = 0; i < d * ldy; i++) Y[i] = -7.0f;
            kvc_transpose_f32((enum kvc_isa)isa, n, d, X, ldx, Y, ldy);
            int bad = 0;
            for (int j = 0; j < d; j++)
                for (size_t i = 0; i < ldy; i++) bad += Y[j * ldy + i] != ((int)i < n ? X[i * ldx + j] : -7.0f);
            CHECK(!bad, "transpose %s n=%d d=%d: %d wrong entries", kvc_isa_name((enum kvc_isa)isa), n, d, bad);
        }
        free(X); free(Y);
    }
}

/* The fast online step (8-bit value sums): every weight and the running sum within
 * KVC_EXP_FAST_REL (relative) + 2^-126 of float64 exp over blocks of 1..256 entries, masked
 * entries exactly 0, the AVX-512 kernel within 4 float ulps of the scalar reference, 2^y
 * itself checked over y in [-126, 0] and underflow below. */
static void test_softmax_fast(void) {
    const double rel = KVC_EXP_FAST_REL, tiny = ldexp(1.0, -126);
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        const float y = -126.0f * (float)i / 200000.0f;
        const double e = exp2((double)y), got = kvc_exp_fast_ref(y);
        worst = fmax(worst, fabs(got - e) / e);
    }
    CHECK(worst < 7.6e-5, "fast 2^y: worst relative error %.3g over [-126, 0] (fit: 7.5e-5)", worst);
    CHECK(kvc_exp_fast_ref(-126.5f) == 0.0f && kvc_exp_fast_ref(-INFINITY) == 0.0f && kvc_exp_fast_ref(NAN) == 0.0f,
          "fast 2^y: 0 below -126, for -inf and NaN");
    unsigned long long rng = 11;
    const int ns[] = {1, 16, 17, 255, 256, 1000};
    for (int a = 0; a < 6; a++) {
        const int n = ns[a];
        float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
        float *y0 = malloc(sizeof(float) * (size_t)n);
        for (int i = 0; i < n; i++) x[i] = 40 * t_randf(&rng) + (i % 97 == 5 ? 200.0f : 0.0f);
        if (n > 3) x[1] = x[n - 2] = -INFINITY;
        /* float64: weights exp(0.125 x - M) with M the max over all blocks, sum L */
        double M = -INFINITY, L = 0;
        for (int i = 0; i < n; i++) M = fmax(M, 0.125 * (double)x[i]);
        for (int i = 0; i < n; i++) L += x[i] == -INFINITY ? 0 : exp(0.125 * (double)x[i] - M);
        for (int isa = 0; isa < KVC_ISA_COUNT; isa++) {
            if (!kvc_isa_supported((enum kvc_isa)isa) || isa == KVC_ISA_AVX2) continue; /* AVX2: the exact step */
            memcpy(y, x, sizeof(float) * (size_t)n);
            float m = -INFINITY, l = 0.0f;
            int at = 0, blk = 1;
            while (at < n) {
                const int len = n - at < blk ? n - at : blk;
                const float alpha = kvc_softmax_online_fast((enum kvc_isa)isa, y + at, len, 0.125f, &m, &l);
                for (int i = 0; i < at; i++) y[i] *= alpha;
                at += len;
                blk = blk == 1 ? 3 : blk == 3 ? 256 : 16;
            }
            int bad = 0;
            for (int i = 0; i < n; i++) {
                const double e = x[i] == -INFINITY ? 0 : exp(0.125 * (double)x[i] - M);
                /* + the alphas' float rounding (a few ulps per block) */
                bad += fabs((double)y[i] - e) > (rel + 1e-6) * e + tiny;
            }
            CHECK(bad == 0, "fast online %s n=%d: %d weights off float64 by more than %.0e rel + 2^-126",
                  kvc_isa_name((enum kvc_isa)isa), n, bad, rel);
            CHECK(fabs((double)l - L) <= (rel + 1e-6) * L + n * tiny, "fast online %s n=%d: sum %.9g vs %.9g",
                  kvc_isa_name((enum kvc_isa)isa), n, l, L);
            CHECK(fabs((double)m - M) <= 1e-6 * fabs(M), "fast online %s n=%d: max %g vs %g",
                  kvc_isa_name((enum kvc_isa)isa), n, m, M);
            if (n > 3) CHECK(y[1] == 0 && y[n - 2] == 0, "fast online: masked entries must be exactly 0");
            if (isa == KVC_ISA_SCALAR) memcpy(y0, y, sizeof(float) * (size_t)n);
            else {
                int far = 0;
                for (int i = 0; i < n; i++) far += fabsf(y[i] - y0[i]) > 4 * FLT_EPSILON * y0[i] + 1e-37f;
                CHECK(far == 0, "fast online %s n=%d: %d weights differ from the scalar reference", kvc_isa_name((enum kvc_isa)isa), n, far);
            }
        }
        free(x); free(y); free(y0);
    }
    /* scale <= 0: the exact step */
    float z[2] = {1.0f, 2.0f}, m = -INFINITY, l = 0.0f;
    kvc_softmax_online_fast(KVC_ISA_SCALAR, z, 2, -1.0f, &m, &l);
    CHECK(fabsf(z[0] - 1.0f) < 1e-6f && fabsf(z[1] - expf(-1.0f)) < 1e-6f, "fast online, scale < 0: exact weights");
}

/* Decode (one token, G query heads) over more positions than KV_DECODE_BLOCK: several
 * blocks of the online softmax (the cheaper exp for hdc's 8-bit value sums), split into 3
 * position chunks and merged, against the one-query reference path (exact exp, one block). */
static void test_long_decode(const char *kspec, const char *vspec, int sinks, int recent) {
    const int n = 2 * KV_DECODE_BLOCK + 300, nb = 512;
    struct kv_cache c;
    kvc_error e = {0};
    CHECK(kv_cache_init(&c, 1, 1, D, n, nb, kspec, vspec, sinks, recent, 10000.0f, 7, NULL, kvc_isa_best(), &e) ==
              KVC_OK, "init %s/%s: %s", kspec, vspec, e.msg);
    struct kv_attn_scratch scr;
    CHECK(kv_cache_scratch_init(&c, &scr) == KVC_OK, "scratch");
    unsigned long long rng = 321;
    float *k = malloc(sizeof(float) * (size_t)nb * D), *v = malloc(sizeof(float) * (size_t)nb * D);
    for (int p0 = 0; p0 < n;) { /* batches of up to nb, the last position alone (decode) */
        const int T = p0 == n - 1 ? 1 : n - 1 - p0 < nb ? n - 1 - p0 : nb;
        for (int i = 0; i < T * D; i++) {
            k[i] = t_randn(&rng) + (i % D == 3 ? 2.0f : 0.0f);
            v[i] = t_randn(&rng);
        }
        kv_cache_store(&c, 0, 0, p0, T, k, v);
        if (p0 + T < n) kv_cache_commit_layer(&c, 0, p0, T);
        c.n_past = p0 + T < n ? p0 + T : c.n_past;
        if (p0 + T == n) {
            const double worst = rows_vs_reference(&c, &scr, 0, 0, p0, 1, &rng);
            const int i8v = !strncmp(vspec, "hdc:", 4) && ((const struct hdc_state *)c.v.slot[0].state)->use_v8;
            const double tol = i8v ? 5e-3 : 1e-4; /* measured 5e-4 and 1e-7 */
            CHECK(worst < tol, "decode over %d positions %s/%s sinks %d recent %d: max |blocked - reference| = %.3g (tolerance %g)",
                  n, kspec, vspec, sinks, recent, worst, tol);
        }
        p0 += T;
    }
    free(k);
    free(v);
    kv_cache_scratch_free(&scr);
    kv_cache_free(&c);
}

int main(void) {
    test_softmax();
    test_tile_gemm();
    test_long_decode("f16", "f16", 0, 0);
    test_long_decode("q4_0", "q8_0", 3, 40);
    test_long_decode("hdc:bits=3", "hdc:bits=3", 0, 0);
    test_long_decode("hdc:bits=2", "hdc:bits=3", 3, 40);
    test_softmax_fast();
    int b1[] = {37, 1, 1, 20, 5, 37, 1, 1, 1, 30};
    int b2[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    int b3[] = {64, 64, 3};
    int b4[] = {300, 260, 1, 7, 90};
    const char *lvl = getenv("KVC_TEST_LEVEL");
    const int quick = lvl && !strcmp(lvl, "quick");
    /* head dimensions 64 and 128 (Llama 3 / Qwen2.5 shapes); hdc at both (hdc-select ranks keys,
     * so exact attention is no reference for it: test_hdc checks it) */
    for (int di = 0; di < 2; di++) {
        D = di ? 128 : 64;
        run_case("f16", "f16", 160, 37, 0, 0, b1, 10);
        run_case("q4_0", "q8_0", 160, 37, 0, 0, b1, 10);
        run_case("q4_0", "q8_0", 160, 37, 5, 23, b1, 10);  /* batches larger and smaller than recent */
        run_case("q8_0", "q4_0h", 160, 37, 3, 7, b1, 10);  /* recent smaller than a batch: ring wraps */
        run_case("q4_0h", "q4_0", 40, 1, 2, 5, b2, 30);    /* decode one by one */
        run_case("q4_0", "q4_0", 131, 64, 0, 16, b3, 3);   /* recent only */
        run_case("q4_0", "q4_0", 131, 64, 8, 0, b3, 3);    /* sinks only */
        run_case("hdc:bits=4", "hdc:bits=3", 131, 64, 2, 8, b3, 3);
        /* several blocks of KV_BLOCK positions, batches longer than a block, a recent window
         * that starts inside the batch and in the ring, decoded blocks for keys and values
         * (KVC_TEST_LEVEL=quick, the sanitizer build: head dim 64 only) */
        if (di && quick) continue;
        run_case("f16", "q4_0", 700, 300, 4, 60, b4, 5);
        run_case("q8_0", "hdc:bits=3", 700, 300, 0, 0, b4, 5);
        /* cut back with a recent window (bench's depths): the window's rows the ring lost are
         * read from their codec rows until it refills; cuts deeper and shallower than the ring */
        run_case_cut("q4_0", "q8_0", 160, 37, 3, 23, b1, 10, 5, 50);
        run_case_cut("q8_0", "q4_0h", 160, 37, 2, 23, b1, 10, 5, 80);
        run_case_cut("q4_0h", "q4_0", 60, 1, 2, 5, b2, 30, 20, 18);
        run_case_cut("q4_0", "q4_0", 131, 64, 0, 16, b3, 3, 1, 70);
    }
    /* window codecs other than f16: rows in q8_0 (int16 query, its own prepared query beside
     * the plain one of batch-decoded key rows: q4_0 keys), bf16 and f32 */
    for (int di = 0; di < 2; di++) {
        D = di ? 128 : 64;
        win = "q8_0";
        run_case("q4_0", "q8_0", 160, 37, 5, 23, b1, 10);
        run_case("q8_0", "q4_0h", 160, 37, 3, 7, b1, 10);
        run_case("q4_0h", "q4_0", 40, 1, 2, 5, b2, 30);
        run_case("hdc:bits=4", "hdc:bits=3", 131, 64, 2, 8, b3, 3);
        run_case_cut("q4_0", "q8_0", 160, 37, 3, 23, b1, 10, 5, 50);
        if (!(di && quick)) run_case("f16", "q4_0", 700, 300, 4, 60, b4, 5);
        win = "bf16";
        run_case("q4_0", "q4_0", 131, 64, 8, 16, b3, 3);
        win = "f32";
        run_case("q4_0", "q4_0", 131, 64, 8, 16, b3, 3);
        win = "f16";
    }
    D = 64;
    /* bad policy values */
    struct kv_cache c;
    kvc_error e = {0};
    CHECK(kv_cache_init(&c, 1, 1, D, 16, 4, "f16", "f16", 10, 10, 1e4f, 1, NULL, KVC_ISA_SCALAR, &e) == KVC_ERR_ARG &&
          strstr(e.msg, "--kv-sinks"), "sinks+recent > ctx: %s", e.msg);
    CHECK(kv_cache_init(&c, 1, 1, D, 16, 4, "zzz", "f16", 0, 0, 1e4f, 1, NULL, KVC_ISA_SCALAR, &e) == KVC_ERR_ARG &&
          strstr(e.msg, "q4_0"), "unknown codec lists valid ones: %s", e.msg);
    /* window codecs need plain rows: codecs with state (hdc, q4_0h) or calibration (pca) are refused */
    const char *bad_win[] = {"hdc:bits=3", "q4_0h", "pca:bits=3", "hdc-select", "zzz"};
    const struct kv_rope rope = {.base = 1e4f, .freq_scale = 1.0f};
    for (int i = 0; i < 5; i++) {
        e.msg[0] = 0;
        CHECK(kv_cache_init_rope(&c, 1, 1, D, 16, 4, "f16", "f16", bad_win[i], 2, 2, &rope, 1, NULL, KVC_ISA_SCALAR,
                                 &e) == KVC_ERR_ARG &&
                  (i == 4 || strstr(e.msg, "--kv-window")),
              "window %s refused: %s", bad_win[i], e.msg);
    }
    size_t wr = 0;
    CHECK(kv_window_check("q8_0", 64, &wr, &e) == KVC_OK && wr == 68, "q8_0 window row bytes %zu (68)", wr);
    CHECK(kv_window_check("q8_0", 48, &wr, &e) != KVC_OK, "q8_0 window needs d %% 32 == 0");
    return test_summary("test_kvcache");
}
