/* test_wtypes.c - the weight-type table: every row's sizes against the GGUF type table,
 * reference quantizers (RMS error of Gaussian rows under a per-type bound), the scalar dot
 * against float64, every ISA level against the scalar reference on random blocks (all bit
 * patterns, finite scales), kvc_matmul at every level and thread count against float64, and
 * the tensors of ../shared/models/synth dequantized to finite values of plausible spread. */
#include "test.h"
#include "arch/kernels.h"
#include "arch/kernels_internal.h"
#include "gguf.h"
#include "util.h"
#include "wtypes/wtype.h"
#include <float.h>

static unsigned long long rng = 0x243f6a8885a308d3ull;

/* The Q8X types, their f16 fields (byte offsets in a block, -1 ends) and the bound on the
 * relative RMS error of quantizing Gaussian rows: about 1.2-1.3x what these quantizers
 * reached when written (q4_K 0.071, q6_K 0.018, q5_K 0.036, q2_K 0.28), so a regression in
 * the scale searches fails. */
static const struct {
    uint32_t type;
    int f16_at[3];
    double rms_bound;
} qt[] = {
    {KVC_TYPE_Q4_1, {0, 2, -1}, 0.095},  {KVC_TYPE_Q5_0, {0, -1}, 0.060},
    {KVC_TYPE_Q5_1, {0, 2, -1}, 0.048},  {KVC_TYPE_Q2_K, {80, 82, -1}, 0.36},
    {KVC_TYPE_Q3_K, {108, -1}, 0.19},    {KVC_TYPE_Q4_K, {0, 2, -1}, 0.085},
    {KVC_TYPE_Q5_K, {0, 2, -1}, 0.043},  {KVC_TYPE_Q6_K, {208, -1}, 0.022},
    {KVC_TYPE_IQ4_NL, {0, -1}, 0.085},   {KVC_TYPE_IQ4_XS, {0, -1}, 0.085},
};
#define NQT ((int)(sizeof qt / sizeof qt[0]))

static size_t row_bytes(const struct kvc_wtype *t, int64_t n) { return (size_t)(n / t->blck) * (size_t)t->bytes; }

struct level { enum kvc_isa isa; int vnni; const char *name; };
static int levels(struct level *out) {
    int k = 0;
    if (kvc_isa_supported(KVC_ISA_AVX2)) out[k++] = (struct level){KVC_ISA_AVX2, 0, "avx2"};
    if (kvc_isa_supported(KVC_ISA_AVX512)) {
        out[k++] = (struct level){KVC_ISA_AVX512, 0, "avx512"};
        if (kvc_cpu_has_avx512vnni()) out[k++] = (struct level){KVC_ISA_AVX512, 1, "avx512-vnni"};
    }
    return k;
}

static void test_table(void) {
    int nq = 0;
    for (uint32_t id = 0; id < 64; id++) {
        const struct kvc_wtype *t = kvc_wtype_get(id);
        const struct kvc_type_size *ti = kvc_type_info(id);
        if (ti) CHECK(ti->computable == (t != NULL), "type %u: computable %d vs table row", id, ti->computable);
        if (!t) continue;
        nq++;
        CHECK(ti && t->id == id && strcmp(t->name, ti->name) == 0 && t->blck == ti->blck && t->bytes == ti->bytes,
              "row %u (%s) agrees with the GGUF type sizes", id, t->name);
        CHECK(t->to_float && t->from_float && t->tile[0] && t->tile[1] && t->tile[2] && t->fast, "row %s complete", t->name);
        CHECK(kvc_act_is_q8x(t->act) ? t->unpack != NULL : t->vec_dot[0] && t->vec_dot[1] && t->vec_dot[2],
              "row %s kernels", t->name);
        CHECK(strstr(kvc_wtype_names(), t->name) != NULL, "%s listed in kvc_wtype_names", t->name);
        /* a row that names AVX2 kernels has its own (not the generic) AVX2 entries */
        if (kvc_act_is_q8x(t->act) && strstr(t->fast, "AVX2 (register"))
            CHECK(t->vec_dot[KVC_ISA_AVX2] && t->tile[KVC_ISA_AVX2] != kvc_q8x_tile_avx2, "row %s AVX2 kernels", t->name);
    }
    CHECK(nq == 15, "15 computable types, got %d", nq);
    CHECK(fabs(kvc_wtype_bpw(KVC_TYPE_Q4_K) - 4.5) < 1e-12 && fabs(kvc_wtype_bpw(KVC_TYPE_Q6_K) - 6.5625) < 1e-12,
          "bits per weight");
    CHECK(kvc_wtype_get(KVC_TYPE_Q8_K) == NULL && kvc_wtype_get(1000) == NULL, "no row for q8_K / unknown ids");
}

/* Quantize Gaussian rows, dequantize: relative RMS error under the bound; round trips of an
 * all-zero row and of a constant row stay finite and near. */
static void test_quantizers(void) {
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    void *q = malloc(N * 2);
    for (int k = 0; k < NQT; k++) {
        const struct kvc_wtype *t = kvc_wtype_get(qt[k].type);
        double e2 = 0, x2 = 0;
        for (int rep = 0; rep < 4; rep++) {
            for (int i = 0; i < N; i++) x[i] = (rep + 1) * 0.02f * t_randn(&rng);
            t->from_float(x, q, N);
            t->to_float(q, y, N);
            for (int i = 0; i < N; i++) {
                e2 += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
                x2 += (double)x[i] * x[i];
            }
        }
        const double rel = sqrt(e2 / x2);
        printf("quantize %-7s relative RMS error %.4f (bound %.3f)\n", t->name, rel, qt[k].rms_bound);
        CHECK(rel < qt[k].rms_bound, "%s: relative RMS error %.4f >= %.3f", t->name, rel, qt[k].rms_bound);
        memset(x, 0, N * sizeof(float));
        t->from_float(x, q, N);
        t->to_float(q, y, N);
        int ok = 1;
        for (int i = 0; i < N; i++) ok &= y[i] == 0.0f;
        CHECK(ok, "%s: zeros round-trip to zeros", t->name);
        for (int i = 0; i < N; i++) x[i] = i % 3 == 0 ? 0.5f : -0.25f;
        t->from_float(x, q, N);
        t->to_float(q, y, N);
        double m = 0;
        for (int i = 0; i < N; i++) m = fmax(m, fabs((double)y[i] - x[i]));
        CHECK(m < 0.1, "%s: two-valued row max error %.3g", t->name, m);
    }
    free(x);
    free(y);
    free(q);
}

/* Random block bytes with finite f16 fields (scales in +-[0.001, 0.05]). */
static void random_blocks(int k, void *dst, int64_t n) {
    const struct kvc_wtype *t = kvc_wtype_get(qt[k].type);
    unsigned char *p = dst;
    for (size_t i = 0; i < row_bytes(t, n); i++) p[i] = (unsigned char)t_rng_next(&rng);
    for (int64_t b = 0; b < n / t->blck; b++)
        for (int f = 0; qt[k].f16_at[f] >= 0; f++) {
            const float v = (0.001f + 0.049f * fabsf(t_randf(&rng))) * (t_randf(&rng) < 0 ? -1 : 1);
            const uint16_t h = kvc_f32_to_f16(v);
            memcpy(p + b * t->bytes + qt[k].f16_at[f], &h, 2);
        }
}

/* Scalar dot vs float64 of the dequantized operands; each level vs scalar. Random blocks and
 * quantized Gaussian rows, several lengths (rows of 32-blocks that end mid-chunk too, with an
 * odd or an even number of blocks in the last chunk; 384, 576 and 896 as kvref's, SmolLM2's and
 * Qwen2-0.5B's). Tolerance of every level against the scalar reference: 1e-5 of sum |w x| (the
 * integer sums are exact; only the f32 scale products and lane sums round). */
static void test_dots(void) {
    struct level lv[4];
    const int nl = levels(lv);
    static const int64_t lens[] = {256, 512, 2304, 32, 96, 416, 384, 576, 64, 896};
    float *xf = malloc(4096 * sizeof(float)), *wf = malloc(4096 * sizeof(float)), *xd = malloc(4096 * sizeof(float));
    void *w = kvc_alloc_aligned(8192), *xq = kvc_alloc_aligned(kvc_q8x_row_bytes(4096));
    for (int k = 0; k < NQT; k++) {
        const struct kvc_wtype *t = kvc_wtype_get(qt[k].type);
        for (int li = 0; li < (int)(sizeof lens / sizeof lens[0]); li++) {
            const int64_t n = lens[li];
            if (n % t->blck) continue;
            for (int rep = 0; rep < 6; rep++) {
                if (rep % 2) random_blocks(k, w, n);
                else {
                    for (int i = 0; i < n; i++) wf[i] = 0.05f * t_randn(&rng);
                    t->from_float(wf, w, n);
                }
                for (int i = 0; i < n; i++) xf[i] = (i % 64 == 5 ? 6.0f : 1.0f) * t_randn(&rng);
                /* each type's own activation format (q8_K for the K-quants: their one-row
                 * kernels keep a super-block's sums in integers under its single scale) */
                kvc_act_quantize(t->act, xf, xq, n, KVC_ISA_SCALAR);
                t->to_float(w, wf, n);
                const int8_t *q = kvc_q8x_q(xq);
                const float *dl = kvc_q8x_dl(xq, n);
                double ref = 0, sabs = 0;
                for (int64_t i = 0; i < n; i++) {
                    xd[i] = q[i] * dl[i / 4];
                    ref += (double)wf[i] * xd[i];
                    sabs += fabs((double)wf[i] * xd[i]);
                }
                /* the Q8X activations are Q8_0 blocks: same as kvc_quantize_row_q8_0 */
                block_q8_0 b0;
                kvc_quantize_row_q8_0(xf, &b0, 32, KVC_ISA_SCALAR);
                if (t->act == KVC_ACT_Q8X)
                    CHECK(memcmp(b0.qs, q, 32) == 0 && kvc_f16_to_f32(b0.d) == dl[0], "q8x = q8_0 quants");
                const float s0 = kvc_vec_dot(KVC_ISA_SCALAR, t->id, n, w, xq);
                CHECK(fabs(s0 - ref) <= 1e-6 * sabs + 1e-30, "%s n=%lld scalar %.9g vs f64 %.9g", t->name,
                      (long long)n, s0, ref);
                for (int l = 0; l < nl; l++) {
                    kvc_avx512_allow_vnni(lv[l].vnni);
                    const float s1 = kvc_vec_dot(lv[l].isa, t->id, n, w, xq);
                    /* int sums exact; float scale products and lane sums: 1e-5 of sum |w x| */
                    CHECK(fabs((double)s1 - s0) <= 1e-5 * sabs + 1e-30, "%s %s n=%lld rep %d: %.9g vs scalar %.9g",
                          lv[l].name, t->name, (long long)n, rep, s1, s0);
                    /* the generic (buffered-unpack) kernels every new type starts with */
                    const float s2 = lv[l].isa == KVC_ISA_AVX512 ? kvc_q8x_dot_avx512(t, n, w, xq)
                                                                 : kvc_q8x_dot_avx2(t, n, w, xq);
                    CHECK(fabs((double)s2 - s0) <= 1e-5 * sabs + 1e-30, "generic %s %s n=%lld: %.9g vs scalar %.9g",
                          lv[l].name, t->name, (long long)n, s2, s0);
                }
                kvc_avx512_allow_vnni(1);
                /* dequantize(quantize(x)) . x ~ the dot product path (activation rounding only) */
                if (rep == 0) {
                    double exact = 0;
                    for (int64_t i = 0; i < n; i++) exact += (double)wf[i] * xf[i];
                    CHECK(fabs(exact - s0) <= 0.01 * sabs + 1e-6, "%s n=%lld: f64 %.6g vs dot %.6g", t->name,
                          (long long)n, exact, s0);
                }
            }
        }
    }
    free(xf); free(wf); free(xd);
    kvc_free_aligned(w);
    kvc_free_aligned(xq);
}

/* The K-quant / IQ4_XS activations as GGML's q8_K (ggml-quants.c quantize_row_q8_K_ref):
 * hand-worked blocks (signed max, ties to even, an all-zero block, the per-16 sums) and
 * Gaussian rows (max -> -127, |d q - x| <= |d| / 2). */
static void test_q8k(void) {
    enum { N = 768 };
    float x[N] = {0};
    void *out = kvc_alloc_aligned(kvc_q8x_row_bytes(N));
    x[0] = -127.0f, x[1] = 2.5f, x[2] = 3.5f, x[3] = -0.5f, x[4] = 100.4f, x[5] = -2.5f; /* iscale 1 */
    x[256] = 63.5f, x[257] = 1.25f, x[258] = -0.75f; /* iscale -2: -127, -2.5 -> -2, 1.5 -> 2 */
    kvc_quantize_row_q8k(x, out, N);
    const int8_t *q = kvc_q8x_q(out);
    const float *dl = kvc_q8x_dl(out, N), *s16 = kvc_q8x_s16(out, N);
    CHECK(q[0] == -127 && q[1] == 2 && q[2] == 4 && q[3] == 0 && q[4] == 100 && q[5] == -2 && q[6] == 0,
          "q8_K block 0: %d %d %d %d %d %d", q[0], q[1], q[2], q[3], q[4], q[5]);
    CHECK(dl[0] == 1.0f && dl[63] == 1.0f && s16[0] == -23.0f && s16[1] == 0.0f, "q8_K block 0 scale %g, sums %g %g",
          dl[0], s16[0], s16[1]);
    CHECK(q[256] == -127 && q[257] == -2 && q[258] == 2 && dl[64] == -0.5f && s16[16] == 63.5f,
          "q8_K block 1: %d %d %d, d %g, sum %g", q[256], q[257], q[258], dl[64], s16[16]);
    int zero = 1;
    for (int i = 512; i < N; i++) zero &= q[i] == 0;
    CHECK(zero && dl[128] == 0.0f && s16[32] == 0.0f, "q8_K all-zero block");
    for (int rep = 0; rep < 4; rep++) {
        for (int i = 0; i < N; i++) x[i] = (rep + 1) * t_randn(&rng);
        kvc_quantize_row_q8k(x, out, N);
        int ok = 1;
        for (int c = 0; c < N / 256; c++) {
            int imax = 0;
            for (int i = 1; i < 256; i++)
                if (fabsf(x[256 * c + i]) > fabsf(x[256 * c + imax])) imax = i;
            const double d = dl[64 * c];
            ok &= q[256 * c + imax] == -127 && fabs(d * -127.0 - x[256 * c + imax]) <= 1e-5 * fabs(x[256 * c + imax]);
            for (int i = 0; i < 256; i++) {
                const int e = 256 * c + i;
                ok &= dl[e / 4] == dl[64 * c] && fabs(d * q[e] - x[e]) <= 0.5 * fabs(d) * (1 + 1e-5);
            }
        }
        CHECK(ok, "q8_K Gaussian row %d", rep);
    }
    /* the AVX2 quantizer (AVX2 and AVX-512 levels): bit-identical rows, with ties (the
     * hand-worked blocks), a partial last block (n = 352) and Gaussian rows */
    if (kvc_isa_supported(KVC_ISA_AVX2)) {
        void *o2 = kvc_alloc_aligned(kvc_q8x_row_bytes(N));
        static const int64_t lens[] = {768, 352, 256};
        for (int rep = 0; rep < 6; rep++) {
            const int64_t n = lens[rep % 3];
            if (rep == 0) {
                memset(x, 0, sizeof x);
                x[0] = -127.0f, x[1] = 2.5f, x[2] = 3.5f, x[3] = -0.5f, x[5] = -2.5f, x[256] = 63.5f, x[257] = 1.25f;
            } else {
                for (int i = 0; i < N; i++) x[i] = (float)rep * t_randn(&rng);
                if (rep == 4) x[7] = 50.0f, x[9] = -50.0f; /* two of the largest magnitude: the first's sign */
            }
            memset(out, 0x55, kvc_q8x_row_bytes(N));
            memset(o2, 0xAA, kvc_q8x_row_bytes(N));
            kvc_quantize_row_q8k(x, out, n);
            kvc_act_quantize(KVC_ACT_Q8K, x, o2, n, KVC_ISA_AVX2);
            CHECK(memcmp(out, o2, kvc_q8x_row_bytes(n)) == 0, "q8_K AVX2 = scalar, n %lld rep %d", (long long)n, rep);
        }
        kvc_free_aligned(o2);
    }
    kvc_free_aligned(out);
}

/* kvc_matmul at every level and pool size against float64 of dequantized W and Q8X X. */
static void matmul_case(struct kvc_pool **pools, int k, int64_t n_in, int64_t n_out, int T) {
    const struct kvc_wtype *t = kvc_wtype_get(qt[k].type);
    const size_t rb = row_bytes(t, n_in);
    float *X = malloc((size_t)(n_in * T) * sizeof(float)), *Y = malloc((size_t)(n_out * T) * sizeof(float));
    float *wrow = malloc((size_t)n_in * sizeof(float)), *xd = malloc((size_t)(n_in * T) * sizeof(float));
    double *ref = malloc((size_t)(n_out * T) * sizeof(double)), *bound = malloc((size_t)(n_out * T) * sizeof(double));
    void *wd = kvc_alloc_aligned(rb * (size_t)n_out), *xq = kvc_alloc_aligned(kvc_q8x_row_bytes(n_in));
    for (int64_t r = 0; r < n_out; r++) random_blocks(k, (char *)wd + r * rb, n_in);
    for (int64_t i = 0; i < n_in * T; i++) X[i] = t_randn(&rng);
    struct kvc_weight w = {t->id, n_in, n_out, rb, wd};
    void *scratch = kvc_alloc_aligned(kvc_matmul_scratch_bytes(&w, T));
    for (int tt = 0; tt < T; tt++) {
        kvc_act_quantize(t->act, X + tt * n_in, xq, n_in, KVC_ISA_SCALAR); /* as kvc_matmul does */
        for (int64_t i = 0; i < n_in; i++) xd[tt * n_in + i] = kvc_q8x_q(xq)[i] * kvc_q8x_dl(xq, n_in)[i / 4];
    }
    for (int64_t r = 0; r < n_out; r++) {
        kvc_weight_row_to_f32(&w, r, wrow);
        for (int tt = 0; tt < T; tt++) {
            double s = 0, a = 0;
            for (int64_t i = 0; i < n_in; i++) {
                s += (double)wrow[i] * xd[tt * n_in + i];
                a += fabs((double)wrow[i] * xd[tt * n_in + i]);
            }
            ref[tt * n_out + r] = s;
            bound[tt * n_out + r] = 1e-5 * a + 1e-30;
        }
    }
    struct level lv[4] = {{KVC_ISA_SCALAR, 0, "scalar"}};
    const int nl = 1 + levels(lv + 1);
    for (int l = 0; l < nl; l++) {
        kvc_avx512_allow_vnni(lv[l].vnni);
        for (int p = 0; p < 3; p++) {
            for (int64_t i = 0; i < n_out * T; i++) Y[i] = NAN;
            kvc_matmul(pools[p], lv[l].isa, &w, X, T, Y, scratch);
            int64_t bad = -1;
            for (int64_t i = 0; i < n_out * T && bad < 0; i++)
                if (!(fabs((double)Y[i] - ref[i]) <= bound[i])) bad = i;
            CHECK(bad < 0, "matmul %s %s threads=%d %lldx%lld T=%d: element %lld %.9g vs %.9g", lv[l].name,
                  t->name, kvc_pool_size(pools[p]), (long long)n_in, (long long)n_out, T, (long long)bad,
                  bad >= 0 ? Y[bad] : 0.0, bad >= 0 ? ref[bad] : 0.0);
        }
    }
    /* the generic tiles on the same data (4 x 4 micro-kernels and tails) */
    for (int l = 1; l < nl; l++) {
        kvc_avx512_allow_vnni(lv[l].vnni);
        void *xs = kvc_alloc_aligned((size_t)T * kvc_q8x_row_bytes(n_in));
        for (int tt = 0; tt < T; tt++)
            kvc_act_quantize(t->act, X + tt * n_in, (char *)xs + tt * kvc_q8x_row_bytes(n_in), n_in, KVC_ISA_SCALAR);
        struct kvc_tile tl = {&w, xs, kvc_q8x_row_bytes(n_in), Y, n_out};
        for (int64_t i = 0; i < n_out * T; i++) Y[i] = NAN;
        if (lv[l].isa == KVC_ISA_AVX512) kvc_q8x_tile_avx512(&tl, 0, T, 0, n_out);
        else kvc_q8x_tile_avx2(&tl, 0, T, 0, n_out);
        int64_t bad = -1;
        for (int64_t i = 0; i < n_out * T && bad < 0; i++)
            if (!(fabs((double)Y[i] - ref[i]) <= bound[i])) bad = i;
        CHECK(bad < 0, "generic tile %s %s: element %lld", lv[l].name, t->name, (long long)bad);
        kvc_free_aligned(xs);
    }
    kvc_avx512_allow_vnni(1);
    free(X); free(Y); free(wrow); free(xd); free(ref); free(bound);
    kvc_free_aligned(wd); kvc_free_aligned(xq); kvc_free_aligned(scratch);
}

static void test_matmul(void) {
    struct kvc_pool *pools[3] = {NULL, kvc_pool_create(2), kvc_pool_create(3)};
    CHECK(pools[1] && pools[2], "kvc_pool_create");
    if (!pools[1] || !pools[2]) return;
    const char *lvl = getenv("KVC_TEST_LEVEL");
    const int quick = lvl && strcmp(lvl, "quick") == 0;
    for (int k = 0; k < NQT; k++) {
        const int b = kvc_wtype_get(qt[k].type)->blck;
        matmul_case(pools, k, 512, 37, 1);
        matmul_case(pools, k, 256, 70, 6);
        if (!quick) matmul_case(pools, k, 768, 130, 19);
        /* prefill panels (>= 16 activation rows): past one pass of 16 chunks, 9 of 16 lanes */
        matmul_case(pools, k, 4352, 9, 17);
        if (b == 32) matmul_case(pools, k, 352, 9, 5); /* 11 blocks: a partial chunk */
        if (b == 32) matmul_case(pools, k, 352, 9, 16); /* the same through the prefill panels */
        /* decode (one activation row): the AVX-512 one-row kernels of the 32-element types
         * take groups of 4 blocks, the last 1-3 blocks by pairs; under 4 blocks the pair kernel */
        if (b == 32) {
            matmul_case(pools, k, 576, 11, 1); /* 4 groups + a pair */
            matmul_case(pools, k, 416, 6, 1);  /* 3 groups + a single block */
            matmul_case(pools, k, 352, 5, 1);  /* 2 groups + a pair and a single */
            matmul_case(pools, k, 96, 4, 1);   /* no whole group */
        }
    }
    for (int p = 1; p < 3; p++) kvc_pool_free(pools[p]);
}

/* Every 2-D tensor of every synthetic model: dequantized rows are finite and their standard
 * deviation is plausible for weights drawn N(0, 1/sqrt(fan_in)) (README-synth.md). */
static void test_synth_tensors(void) {
    static const char *models[] = {"models/synth/llama3-q4km.gguf", "models/synth/qwen2-iq4.gguf",
                                   "models/synth/qwen2-q5km.gguf", "models/synth/spm-legacy.gguf",
                                   "models/synth/spm-q2k.gguf"};
    for (int mi = 0; mi < 5; mi++) {
        const char *path = shared_path(models[mi]);
        if (!path) continue;
        struct gguf_file *g = NULL;
        kvc_error e = {0};
        CHECK(gguf_open(path, &g, &e) == KVC_OK, "%s: %s", path, e.msg);
        if (!g) continue;
        int seen[64] = {0}, nt = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct gguf_tensor *tn = &g->tensors[i];
            const struct kvc_wtype *t = kvc_wtype_get(tn->type);
            if (tn->n_dims != 2) continue;
            CHECK(t != NULL, "%s: tensor %.*s type %u has a row", path, (int)tn->name.n, tn->name.p, tn->type);
            if (!t || tn->type == KVC_TYPE_F32) continue;
            const int64_t n = (int64_t)tn->ne[0], rows = (int64_t)tn->ne[1];
            struct kvc_weight w = {tn->type, n, rows, row_bytes(t, n), tn->data};
            float *buf = malloc((size_t)n * sizeof(float));
            double s = 0, s2 = 0;
            int finite = 1;
            const int64_t step = rows > 64 ? rows / 64 : 1;
            int64_t cnt = 0;
            for (int64_t r = 0; r < rows; r += step) {
                kvc_weight_row_to_f32(&w, r, buf);
                for (int64_t j = 0; j < n; j++) {
                    finite &= isfinite(buf[j]);
                    s += buf[j];
                    s2 += (double)buf[j] * buf[j];
                }
                cnt += n;
            }
            free(buf);
            const double mean = s / cnt, sd = sqrt(s2 / cnt - mean * mean);
            /* std 1/sqrt(fan_in), fan_in = n (a row is a dot product over n inputs);
             * token_embd: N(0, 1) untied, N(0, 3/sqrt(n_embd)) tied */
            const double want = 1.0 / sqrt((double)n);
            char nm[96];
            snprintf(nm, sizeof nm, "%.*s", (int)(tn->name.n < 95 ? tn->name.n : 95), tn->name.p);
            const int embd = strstr(nm, "token_embd") != NULL;
            CHECK(finite, "%s: %s (%s) finite", path, nm, t->name);
            CHECK(embd ? sd > 0.05 && sd < 1.5 : sd > 0.5 * want && sd < 2.0 * want,
                  "%s: %s (%s) std %.4g, expected ~%.4g", path, nm, t->name, sd, want);
            seen[tn->type & 63]++;
            nt++;
        }
        printf("%s: %d quantized 2-D tensors dequantized; types:", models[mi], nt);
        for (int i = 0; i < 64; i++)
            if (seen[i]) printf(" %s x%d", kvc_type_info((uint32_t)i)->name, seen[i]);
        printf("\n");
        gguf_close(g);
    }
}

int main(void) {
    test_table();
    test_quantizers();
    test_q8k();
    test_dots();
    test_matmul();
    test_synth_tensors();
    return test_summary("test_wtypes");
}
