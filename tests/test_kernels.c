/* test_kernels.c - weight kernels and thread pool: every SIMD level the CPU has against the
 * scalar reference (dots, Q8_0 quantization bit-exactness, f32 dot/axpy), scalar kernels
 * against float64 brute force, Q8_0/Q4_0 round-trip error bounds, kvc_matmul on 1-3
 * threads against float64 brute force, and thread-pool dispatch counts. */
#include "arch/bandwidth.h"
#include "test.h"
#include "arch/kernels.h"
#include "arch/kernels_internal.h"
#include "util.h"
#include <float.h>
#include <stdatomic.h>
#include <time.h>

static unsigned long long rng = 0x9e3779b97f4a7c15ull;

static const uint32_t all_types[] = {KVC_TYPE_F32, KVC_TYPE_F16, KVC_TYPE_BF16, KVC_TYPE_Q8_0,
                                     KVC_TYPE_Q4_0};

static int is_quant(uint32_t t) { return t == KVC_TYPE_Q8_0 || t == KVC_TYPE_Q4_0; }

static size_t row_bytes_of(uint32_t type, int64_t n) {
    const struct kvc_type_size *ti = kvc_type_info(type);
    return (size_t)(n / ti->blck) * (size_t)ti->bytes;
}

/* Random floats: normal with a per-32-block scale (so blocks differ in range), with some
 * exact zeros and an occasional large outlier. */
static void fill_random(float *x, int64_t n, float scale) {
    float bs = scale;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0) bs = scale * (0.1f + 2.0f * fabsf(t_randf(&rng)));
        float v = bs * t_randn(&rng);
        unsigned long long r = t_rng_next(&rng) % 64;
        if (r == 0) v = 0.0f;
        else if (r == 1) v *= 8.0f;
        x[i] = v;
    }
}

/* Encode n_out rows of n_in floats as `type` (quantized types with the scalar quantizers). */
static void encode_rows(uint32_t type, const float *src, int64_t n_in, int64_t n_out, void *dst) {
    const size_t rb = row_bytes_of(type, n_in);
    for (int64_t r = 0; r < n_out; r++) {
        const float *s = src + r * n_in;
        char *d = (char *)dst + (size_t)r * rb;
        for (int64_t i = 0; i < n_in && (type == KVC_TYPE_F16 || type == KVC_TYPE_BF16); i++) {
            uint16_t h = type == KVC_TYPE_F16 ? kvc_f32_to_f16(s[i]) : kvc_f32_to_bf16(s[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        if (type == KVC_TYPE_F32) memcpy(d, s, (size_t)n_in * sizeof(float));
        if (type == KVC_TYPE_Q8_0) kvc_quantize_row_q8_0(s, (block_q8_0 *)d, n_in, KVC_ISA_SCALAR);
        if (type == KVC_TYPE_Q4_0) kvc_quantize_row_q4_0(s, (block_q4_0 *)d, n_in);
    }
}

/* Element-wise |got - ref| <= bound[i]; one CHECK for the whole array. */
static void check_bounded(const char *what, const float *got, const double *ref,
                          const double *bound, int64_t n) {
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (!(fabs((double)got[i] - ref[i]) <= bound[i])) bad = i;
    CHECK(bad < 0, "%s: element %lld: got %.9g, want %.9g (bound %.3g)", what, (long long)bad,
          bad >= 0 ? got[bad] : 0.0, bad >= 0 ? ref[bad] : 0.0, bad >= 0 ? bound[bad] : 0.0);
}

/* ISA levels to test against scalar; AVX-512 twice (VNNI and plain) when VNNI exists. */
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
static void set_level(const struct level *l) { kvc_avx512_allow_vnni(l->vnni); }

/* ---- ISA detection ---- */
static void test_isa(void) {
    enum kvc_isa best = kvc_isa_best();
    CHECK(kvc_isa_supported(KVC_ISA_SCALAR), "scalar always supported");
    CHECK(kvc_isa_supported(best), "best level %s supported", kvc_isa_name(best));
    CHECK(!kvc_isa_supported(KVC_ISA_COUNT), "KVC_ISA_COUNT is not a level");
    CHECK(strcmp(kvc_isa_name(KVC_ISA_AVX2), "avx2") == 0, "name");
    CHECK(!kvc_cpu_has_vpopcntdq() || kvc_isa_supported(KVC_ISA_AVX512), "vpopcntdq implies avx512");
    printf("isa: best %s (avx2 %d, avx512 %d, vnni %d, vpopcntdq %d)\n", kvc_isa_name(best),
           kvc_isa_supported(KVC_ISA_AVX2), kvc_isa_supported(KVC_ISA_AVX512),
           kvc_cpu_has_avx512vnni(), kvc_cpu_has_vpopcntdq());
}

/* ---- Q8_0 / Q4_0 quantization ---- */

/* Blocks with exact rounding ties: amax = 127 gives d = 1, so x * id = x exactly. */
static void fill_ties(float *x) {
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) + 0.5f;
    x[0] = 127.0f;
    x[1] = 0.49999997f;
    x[2] = -0.49999997f;
    x[3] = 1.4999999f;
    x[4] = -126.5f;
    x[5] = 0.0f;
    x[6] = -0.0f;
}

static void test_quantize(void) {
    enum { N = 32 * 64 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    block_q8_0 q8[N / 32], q8s[N / 32];
    block_q4_0 q4[N / 32];
    for (int rep = 0; rep < 20; rep++) {
        fill_random(x, N, rep < 10 ? 1.0f : 1e-3f);
        if (rep == 1) memset(x + 64, 0, 32 * sizeof(float)); /* an all-zero block */
        if (rep == 2) fill_ties(x + 96);
        if (rep == 3) for (int i = 0; i < N; i++) x[i] = (float)(i % 7) - 3.0f;
        /* Q8_0 round trip */
        kvc_quantize_row_q8_0(x, q8s, N, KVC_ISA_SCALAR);
        kvc_dequantize_row_q8_0(q8s, y, N);
        int bad = -1;
        for (int b = 0; b < N / 32 && bad < 0; b++) {
            double amax = 0;
            for (int j = 0; j < 32; j++) amax = fmax(amax, fabs((double)x[b * 32 + j]));
            const float d = (float)amax / 127.0f; /* the scale before f16 rounding */
            const double d16 = kvc_f16_to_f32(q8s[b].d);
            if (q8s[b].d != kvc_f32_to_f16(d)) bad = b;
            for (int j = 0; j < 32; j++) {
                const int q = q8s[b].qs[j];
                const double xv = x[b * 32 + j];
                /* q is x/d rounded; the stored f16 scale adds |q| |d - d16| */
                if (fabs(xv - (double)d * q) > 0.5 * d * (1 + 1e-5)) bad = b;
                if (fabs(xv - (double)y[b * 32 + j]) > 0.5 * d * (1 + 1e-5) + fabs(q * (d - d16)) + 1e-30) bad = b;
                if ((double)y[b * 32 + j] != d16 * q) bad = b;
                if (q < -127 || q > 127) bad = b;
            }
        }
        CHECK(bad < 0, "q8_0 round trip, rep %d block %d", rep, bad);
        /* Q4_0 round trip */
        kvc_quantize_row_q4_0(x, q4, N);
        kvc_dequantize_row_q4_0(q4, y, N);
        bad = -1;
        for (int b = 0; b < N / 32 && bad < 0; b++) {
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++)
                if (amax < fabsf(x[b * 32 + j])) { amax = fabsf(x[b * 32 + j]); max = x[b * 32 + j]; }
            const float d = max / -8.0f;
            const double ad = fabs((double)d), d16 = kvc_f16_to_f32(q4[b].d);
            if (q4[b].d != kvc_f32_to_f16(d)) bad = b;
            for (int j = 0; j < 32; j++) {
                const int q = (j < 16 ? (q4[b].qs[j] & 15) : (q4[b].qs[j - 16] >> 4)) - 8;
                const double xv = x[b * 32 + j];
                if (fabs(xv - (double)d * q) > ad * (1 + 1e-5)) bad = b;
                if (fabs(xv - (double)y[b * 32 + j]) > ad * (1 + 1e-5) + fabs(q * (d - d16)) + 1e-30) bad = b;
            }
        }
        CHECK(bad < 0, "q4_0 round trip, rep %d block %d", rep, bad);
        /* SIMD Q8_0 quantization is bit-identical to scalar */
        struct level lv[4];
        int nl = levels(lv);
        for (int l = 0; l < nl; l++) {
            memset(q8, 0x55, sizeof q8);
            kvc_quantize_row_q8_0(x, q8, N, lv[l].isa);
            CHECK(memcmp(q8, q8s, sizeof q8) == 0, "quantize_row_q8_0 %s == scalar (rep %d)",
                  lv[l].name, rep);
        }
    }
    /* explicit tie cases: round half away from zero */
    fill_ties(x);
    kvc_quantize_row_q8_0(x, q8s, 32, KVC_ISA_SCALAR);
    CHECK(q8s[0].qs[1] == 0 && q8s[0].qs[2] == 0 && q8s[0].qs[3] == 1 && q8s[0].qs[4] == -127,
          "q8_0 near-ties: %d %d %d %d", q8s[0].qs[1], q8s[0].qs[2], q8s[0].qs[3], q8s[0].qs[4]);
    CHECK(q8s[0].qs[16] == 1 && q8s[0].qs[15] == -1 && q8s[0].qs[18] == 3 && q8s[0].qs[13] == -3,
          "q8_0 ties away from zero: %d %d %d %d", q8s[0].qs[16], q8s[0].qs[15], q8s[0].qs[18],
          q8s[0].qs[13]);
    free(x);
    free(y);
}

/* ---- dot products ---- */

/* float64 dot of the dequantized rows, and sum |w_i x_i|. x is f32 or Q8_0 blocks. */
static double ref_dot(uint32_t type, int64_t n, const void *w_row, const void *x, double *sabs) {
    float *wf = malloc((size_t)n * sizeof(float)), *xf = malloc((size_t)n * sizeof(float));
    struct kvc_weight w = {type, n, 1, row_bytes_of(type, n), w_row};
    kvc_weight_row_to_f32(&w, 0, wf);
    if (is_quant(type)) kvc_dequantize_row_q8_0(x, xf, n);
    else memcpy(xf, x, (size_t)n * sizeof(float));
    double s = 0, a = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wf[i] * xf[i];
        a += fabs((double)wf[i] * xf[i]);
    }
    free(wf);
    free(xf);
    *sabs = a;
    return s;
}

static void test_vec_dot(void) {
    static const int64_t ns_f[] = {1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 172, 384, 1000, 1024};
    static const int64_t ns_q[] = {32, 64, 96, 160, 384, 1024};
    struct level lv[4];
    const int nl = levels(lv);
    float *wf = malloc(1024 * sizeof(float)), *xf = malloc(1024 * sizeof(float));
    void *w = kvc_alloc_aligned(1024 * 4 + 64), *xq = kvc_alloc_aligned(1024 * 2);
    for (int ti = 0; ti < 5; ti++) {
        const uint32_t type = all_types[ti];
        const int nn = is_quant(type) ? 6 : 15;
        for (int k = 0; k < nn; k++) {
            const int64_t n = is_quant(type) ? ns_q[k] : ns_f[k];
            for (int rep = 0; rep < 4; rep++) {
                fill_random(wf, n, 0.05f);
                fill_random(xf, n, 1.0f);
                encode_rows(type, wf, n, 1, w);
                const void *x = xf;
                if (is_quant(type)) {
                    kvc_quantize_row_q8_0(xf, xq, n, KVC_ISA_SCALAR);
                    x = xq;
                }
                double sabs;
                const double ref = ref_dot(type, n, w, x, &sabs);
                const float s0 = kvc_vec_dot(KVC_ISA_SCALAR, type, n, w, x);
                /* float summation of n products: |err| <= (n + 2) eps sum|w x| (rigorous) */
                CHECK(fabs(s0 - ref) <= (double)(n + 2) * FLT_EPSILON * sabs + 1e-30,
                      "scalar %s n=%lld: %.9g vs f64 %.9g", kvc_type_info(type)->name,
                      (long long)n, s0, ref);
                for (int l = 0; l < nl; l++) {
                    set_level(&lv[l]);
                    const float s1 = kvc_vec_dot(lv[l].isa, type, n, w, x);
                    const double tol = (is_quant(type) ? 1e-6 : 1e-5) * sabs + 1e-30;
                    CHECK(fabs((double)s1 - s0) <= tol, "%s %s n=%lld: %.9g vs scalar %.9g",
                          lv[l].name, kvc_type_info(type)->name, (long long)n, s1, s0);
                }
                kvc_avx512_allow_vnni(1);
            }
        }
    }
    /* extreme quants: w = -128 (not produced by the quantizer, legal in files) and 127 */
    {
        block_q8_0 wb[2], xb[2];
        for (int b = 0; b < 2; b++) {
            wb[b].d = kvc_f32_to_f16(0.5f);
            xb[b].d = kvc_f32_to_f16(0.25f);
            for (int j = 0; j < 32; j++) {
                wb[b].qs[j] = (int8_t)(j % 2 ? -128 : 127);
                xb[b].qs[j] = (int8_t)(j % 3 ? 127 : -127);
            }
        }
        const float s0 = kvc_vec_dot(KVC_ISA_SCALAR, KVC_TYPE_Q8_0, 64, wb, xb);
        for (int l = 0; l < nl; l++) {
            set_level(&lv[l]);
            const float s1 = kvc_vec_dot(lv[l].isa, KVC_TYPE_Q8_0, 64, wb, xb);
            CHECK(s1 == s0, "%s q8_0 extreme quants: %.9g vs %.9g", lv[l].name, s1, s0);
        }
        kvc_avx512_allow_vnni(1);
    }
    /* kvc_dot_f32 and kvc_axpy_f32 */
    for (int k = 0; k < 15; k++) {
        const int64_t n = ns_f[k];
        fill_random(wf, n, 1.0f);
        fill_random(xf, n, 1.0f);
        double ref = 0, sabs = 0;
        for (int64_t i = 0; i < n; i++) {
            ref += (double)wf[i] * xf[i];
            sabs += fabs((double)wf[i] * xf[i]);
        }
        const float s0 = kvc_dot_f32(KVC_ISA_SCALAR, wf, xf, n);
        CHECK(fabs(s0 - ref) <= (double)(n + 2) * FLT_EPSILON * sabs, "dot_f32 scalar n=%lld",
              (long long)n);
        float y0[1024], y1[1024];
        for (int64_t i = 0; i < n; i++) y0[i] = xf[(i * 7) % n];
        memcpy(y1, y0, (size_t)n * sizeof(float));
        kvc_axpy_f32(KVC_ISA_SCALAR, 0.37f, wf, y0, n);
        for (int l = 0; l < nl; l++) {
            const float s1 = kvc_dot_f32(lv[l].isa, wf, xf, n);
            CHECK(fabs((double)s1 - s0) <= 1e-5 * sabs, "dot_f32 %s n=%lld: %.9g vs %.9g",
                  lv[l].name, (long long)n, s1, s0);
            float y2[1024];
            memcpy(y2, y1, (size_t)n * sizeof(float));
            kvc_axpy_f32(lv[l].isa, 0.37f, wf, y2, n);
            char what[64];
            snprintf(what, sizeof what, "axpy_f32 %s n=%lld", lv[l].name, (long long)n);
            check_tensor(what, y2, y0, n, 1e-6, 1e-6);
        }
    }
    free(wf);
    free(xf);
    kvc_free_aligned(w);
    kvc_free_aligned(xq);
}

/* ---- weight-row dequantization ---- */
static void test_row_to_f32(void) {
    enum { N = 96 };
    float src[N], out[N];
    fill_random(src, N, 1.0f);
    void *w = kvc_alloc_aligned(N * 4);
    for (int ti = 0; ti < 5; ti++) {
        const uint32_t type = all_types[ti];
        encode_rows(type, src, N, 1, w);
        struct kvc_weight wt = {type, N, 1, row_bytes_of(type, N), w};
        kvc_weight_row_to_f32(&wt, 0, out);
        /* relative bounds: f16 2^-11, bf16 2^-8; quantized per block as tested above */
        double tol = type == KVC_TYPE_F32 ? 0 : type == KVC_TYPE_F16 ? 4.9e-4 : type == KVC_TYPE_BF16 ? 3.9e-3 : 0.0;
        int ok = 1;
        for (int i = 0; i < N; i++) {
            double lim = tol * fabs(src[i]) + 1e-7;
            if (is_quant(type)) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(src[i / 32 * 32 + j]));
                lim = (type == KVC_TYPE_Q8_0 ? 0.6 : 1.1) * amax / (type == KVC_TYPE_Q8_0 ? 127 : 8);
            }
            if (!(fabs((double)out[i] - src[i]) <= lim)) ok = 0;
        }
        CHECK(ok, "kvc_weight_row_to_f32 %s", kvc_type_info(type)->name);
    }
    kvc_free_aligned(w);
}

/* ---- matmul ---- */

/* One matmul case: random W (n_out x n_in of type) and X (T x n_in), every level and pool. */
static void matmul_case(struct kvc_pool **pools, int npools, uint32_t type, int64_t n_in,
                        int64_t n_out, int T) {
    const size_t rb = row_bytes_of(type, n_in);
    float *wf = malloc((size_t)(n_in * n_out) * sizeof(float));
    float *X = malloc((size_t)(n_in * T) * sizeof(float));
    float *Y = malloc((size_t)(n_out * T) * sizeof(float));
    float *wrow = malloc((size_t)n_in * sizeof(float)), *xd = malloc((size_t)(n_in * T) * sizeof(float));
    double *ref = malloc((size_t)(n_out * T) * sizeof(double));
    double *bound = malloc((size_t)(n_out * T) * sizeof(double));
    void *wd = kvc_alloc_aligned(rb * (size_t)n_out);
    fill_random(wf, n_in * n_out, 0.05f);
    fill_random(X, n_in * T, 1.0f);
    encode_rows(type, wf, n_in, n_out, wd);
    struct kvc_weight w = {type, n_in, n_out, rb, wd};
    size_t sb = kvc_matmul_scratch_bytes(&w, T);
    void *scratch = kvc_alloc_aligned(sb);
    /* reference on the dequantized weights and (quantized types) the Q8_0-quantized X */
    if (is_quant(type)) {
        block_q8_0 *xq = malloc((size_t)(n_in / 32) * sizeof(block_q8_0));
        for (int t = 0; t < T; t++) {
            kvc_quantize_row_q8_0(X + t * n_in, xq, n_in, KVC_ISA_SCALAR);
            kvc_dequantize_row_q8_0(xq, xd + t * n_in, n_in);
        }
        free(xq);
    } else {
        memcpy(xd, X, (size_t)(n_in * T) * sizeof(float));
    }
    for (int64_t r = 0; r < n_out; r++) {
        kvc_weight_row_to_f32(&w, r, wrow);
        for (int t = 0; t < T; t++) {
            double s = 0, a = 0;
            for (int64_t i = 0; i < n_in; i++) {
                s += (double)wrow[i] * xd[t * n_in + i];
                a += fabs((double)wrow[i] * xd[t * n_in + i]);
            }
            ref[t * n_out + r] = s;
            bound[t * n_out + r] = (double)(n_in + 2) * FLT_EPSILON * a + 1e-30;
        }
    }
    struct level lv[4] = {{KVC_ISA_SCALAR, 0, "scalar"}};
    const int nl = 1 + levels(lv + 1);
    for (int l = 0; l < nl; l++) {
        set_level(&lv[l]);
        for (int p = 0; p < npools; p++) {
            for (int64_t i = 0; i < n_out * T; i++) Y[i] = NAN;
            kvc_matmul(pools[p], lv[l].isa, &w, X, T, Y, scratch);
            char what[128];
            snprintf(what, sizeof what, "matmul %s %s threads=%d n_in=%lld n_out=%lld T=%d",
                     lv[l].name, kvc_type_info(type)->name, kvc_pool_size(pools[p]),
                     (long long)n_in, (long long)n_out, T);
            check_bounded(what, Y, ref, bound, n_out * T);
        }
    }
    kvc_avx512_allow_vnni(1);
    free(wf); free(X); free(Y); free(wrow); free(xd); free(ref); free(bound);
    kvc_free_aligned(wd);
    kvc_free_aligned(scratch);
}

static void test_matmul(void) {
    struct kvc_pool *pools[4] = {NULL, kvc_pool_create(1), kvc_pool_create(2), kvc_pool_create(3)};
    CHECK(pools[1] && pools[2] && pools[3], "kvc_pool_create");
    if (!pools[1] || !pools[2] || !pools[3]) return;
    static const int64_t n_ins[] = {32, 64, 384, 1024}, n_outs[] = {1, 7, 64, 129};
    static const int Ts[] = {1, 3, 17};
    for (int ti = 0; ti < 5; ti++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                for (int c = 0; c < 3; c++)
                    matmul_case(pools, 4, all_types[ti], n_ins[a], n_outs[b], Ts[c]);
    /* float weights with n_in not a multiple of 32 (the tiny model's shapes) */
    static const int64_t odd_in[] = {8, 64, 172, 13};
    for (int ti = 0; ti < 3; ti++)
        for (int a = 0; a < 4; a++) {
            matmul_case(pools, 4, all_types[ti], odd_in[a], 7, 5);
            matmul_case(pools, 4, all_types[ti], odd_in[a], 64, 17);
        }
    /* a larger case: several weight blocks per thread, T past the micro-kernel widths */
    matmul_case(pools, 4, KVC_TYPE_Q8_0, 1024, 300, 37);
    matmul_case(pools, 4, KVC_TYPE_Q4_0, 384, 520, 9);
    matmul_case(pools, 4, KVC_TYPE_F16, 384, 520, 9);
    /* long rows: past the SIMD packing/conversion buffers (unpacked fallbacks) */
    matmul_case(pools, 4, KVC_TYPE_Q8_0, 2048, 13, 17);
    matmul_case(pools, 4, KVC_TYPE_Q4_0, 2080, 9, 16);
    /* prefill panels (>= 16 activation rows): rows past one panel pass (128 blocks), a
     * partial last panel of weight rows, activation rows past the 8-row micro-kernel */
    matmul_case(pools, 4, KVC_TYPE_Q4_0, 4160, 37, 29);
    matmul_case(pools, 4, KVC_TYPE_Q8_0, 4160, 21, 19);
    /* decode shapes: one activation row (the Q4_0 group-of-4-blocks kernel), odd row counts */
    matmul_case(pools, 4, KVC_TYPE_Q4_0, 2048, 13, 1);
    matmul_case(pools, 4, KVC_TYPE_Q4_0, 8192, 6, 1);
    matmul_case(pools, 4, KVC_TYPE_Q4_0, 2080, 5, 1);
    matmul_case(pools, 4, KVC_TYPE_F16, 2048, 9, 17);
    matmul_case(pools, 4, KVC_TYPE_BF16, 4100, 9, 17);
    for (int p = 1; p < 4; p++) kvc_pool_free(pools[p]);
}

/* kvc_matmul_n against one kvc_matmul per weight (bit for bit): weights of one activation format
 * (one quantization of X, one pool run), of two formats (one by one), an empty weight among
 * them, and more weights than share a run. */
static void matmul_n_case(struct kvc_pool **pools, int npools, const uint32_t *types, const int64_t *n_outs,
                          int n, int64_t n_in, int T) {
    struct kvc_weight w[6];
    const struct kvc_weight *wp[6];
    void *wd[6];
    float *Y[6], *R[6];
    size_t sb = 0;
    float *X = malloc((size_t)(n_in * T) * sizeof(float));
    fill_random(X, n_in * T, 1.0f);
    for (int i = 0; i < n; i++) {
        const size_t rb = row_bytes_of(types[i], n_in), no = (size_t)(n_outs[i] ? n_outs[i] : 1);
        float *wf = malloc((size_t)n_in * no * sizeof(float));
        fill_random(wf, n_in * (int64_t)no, 0.05f);
        wd[i] = kvc_alloc_aligned(rb * no);
        encode_rows(types[i], wf, n_in, (int64_t)no, wd[i]);
        free(wf);
        w[i] = (struct kvc_weight){types[i], n_in, n_outs[i], rb, wd[i]};
        wp[i] = &w[i];
        Y[i] = malloc((size_t)T * no * sizeof(float));
        R[i] = malloc((size_t)T * no * sizeof(float));
        const size_t b = kvc_matmul_scratch_bytes(&w[i], T);
        sb = b > sb ? b : sb;
    }
    void *scratch = kvc_alloc_aligned(sb ? sb : 64);
    for (int p = 0; p < npools; p++) {
        for (int i = 0; i < n; i++) {
            for (int64_t j = 0; j < T * n_outs[i]; j++) Y[i][j] = NAN;
            kvc_matmul(pools[p], KVC_ISA_AVX512, &w[i], X, T, R[i], scratch);
        }
        kvc_matmul_n(pools[p], KVC_ISA_AVX512, wp, n, X, T, Y, scratch);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += memcmp(Y[i], R[i], (size_t)(T * n_outs[i]) * sizeof(float)) != 0;
        CHECK(bad == 0, "matmul_n threads=%d n=%d (%s, ...) n_in=%lld T=%d: %d of the outputs differ from kvc_matmul's",
              kvc_pool_size(pools[p]), n, kvc_type_info(types[0])->name, (long long)n_in, T, bad);
    }
    for (int i = 0; i < n; i++) {
        kvc_free_aligned(wd[i]);
        free(Y[i]);
        free(R[i]);
    }
    kvc_free_aligned(scratch);
    free(X);
}

static void test_matmul_n(void) {
    struct kvc_pool *pools[3] = {NULL, kvc_pool_create(2), kvc_pool_create(3)};
    CHECK(pools[1] && pools[2], "kvc_pool_create");
    if (!pools[1] || !pools[2]) return;
    static const uint32_t q3[] = {KVC_TYPE_Q4_0, KVC_TYPE_Q4_0, KVC_TYPE_Q8_0};
    static const uint32_t mix[] = {KVC_TYPE_F16, KVC_TYPE_Q4_0, KVC_TYPE_Q8_0, KVC_TYPE_F32};
    static const uint32_t f2[] = {KVC_TYPE_F16, KVC_TYPE_BF16};
    static const uint32_t q6[] = {KVC_TYPE_Q8_0, KVC_TYPE_Q4_0, KVC_TYPE_Q4_0, KVC_TYPE_Q8_0, KVC_TYPE_Q4_0, KVC_TYPE_Q8_0};
    static const int64_t o3[] = {384, 128, 129}, o4[] = {64, 0, 7, 33}, o2[] = {1024, 1024};
    static const int64_t o6[] = {16, 7, 129, 64, 5, 40};
    static const int Ts[] = {1, 5, 17};
    for (int t = 0; t < 3; t++) {
        matmul_n_case(pools, 3, q3, o3, 3, 384, Ts[t]);
        matmul_n_case(pools, 3, q3, o3, 3, 1024, Ts[t]); /* T = 17: X quantized on the pool */
        matmul_n_case(pools, 3, mix, o4, 4, 384, Ts[t]);
        matmul_n_case(pools, 3, f2, o2, 2, 64, Ts[t]);
        matmul_n_case(pools, 3, q6, o6, 6, 256, Ts[t]);
    }
    for (int p = 1; p < 3; p++) kvc_pool_free(pools[p]);
}

/* ---- thread pool ---- */
struct pool_arg {
    _Atomic int calls[8];
    _Atomic int bad_nth;
    int nth;
    int plain[8]; /* each thread writes only its own slot: checked after the run */
};

static void pool_fn(void *arg, int ith, int nth) {
    struct pool_arg *a = arg;
    if (nth != a->nth || ith < 0 || ith >= nth) atomic_fetch_add(&a->bad_nth, 1);
    else {
        atomic_fetch_add(&a->calls[ith], 1);
        a->plain[ith]++;
    }
}

static void test_pool(void) {
    kvc_pool_free(NULL);
    CHECK(kvc_pool_size(NULL) == 1, "size of NULL pool");
    CHECK(kvc_pool_create(0) == NULL, "0 threads refused");
    for (int n = 1; n <= 5; n++) {
        struct kvc_pool *p = kvc_pool_create(n);
        CHECK(p != NULL && kvc_pool_size(p) == n, "pool of %d", n);
        if (!p) continue;
        struct pool_arg a;
        memset(&a, 0, sizeof a);
        a.nth = n;
        const int runs = 3000;
        int plain_ok = 1;
        for (int r = 0; r < runs; r++) {
            kvc_pool_run(p, pool_fn, &a);
            for (int i = 0; i < n; i++) plain_ok &= a.plain[i] == r + 1;
            if (r % 1000 == 999) { /* let the workers fall asleep, then wake them */
                struct timespec ts = {0, 3 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        int ok = atomic_load(&a.bad_nth) == 0;
        for (int i = 0; i < n; i++) ok &= atomic_load(&a.calls[i]) == runs;
        CHECK(ok && plain_ok, "pool of %d: every thread ran every task once", n);
        kvc_pool_free(p);
    }
    /* create and free without ever running */
    struct kvc_pool *p = kvc_pool_create(4);
    CHECK(p != NULL, "pool of 4");
    kvc_pool_free(p);
}

/* The bandwidth kernel: every level's exact 64-bit sum equals the scalar one (odd lengths,
 * wrap-around values); the measurement refuses bad arguments and gives a positive figure. */
static void test_bandwidth(void) {
    unsigned long long rng = 77;
    const size_t n = 100003;
    uint64_t *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = t_rng_next(&rng);
    const size_t lens[] = {0, 1, 15, 31, 33, 1000, n};
    for (int lv = 0; lv < KVC_ISA_COUNT; lv++) {
        if (!kvc_isa_supported((enum kvc_isa)lv)) continue;
        int ok = 1;
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++)
            ok &= kvc_sum_u64((enum kvc_isa)lv, x + 1, lens[k] - (lens[k] == n)) ==
                  kvc_sum_u64_scalar(x + 1, lens[k] - (lens[k] == n));
        CHECK(ok, "sum_u64 %s == scalar for lengths 0..%zu", kvc_isa_name((enum kvc_isa)lv), n);
    }
    free(x);
    kvc_error e = {0};
    double bw = -1;
    CHECK(kvc_measure_read_bandwidth(100, 1, 1, &bw, &e) == KVC_ERR_ARG && strstr(e.msg, "4 KiB"), "tiny buffer: %s", e.msg);
    CHECK(kvc_measure_read_bandwidth(1 << 20, 0, 1, &bw, &e) == KVC_ERR_ARG && strstr(e.msg, "threads"), "0 threads: %s", e.msg);
    /* a plausibility range, not a speed check: on the shared 2-core machine at load average
     * 25-48 the 2-thread pool's start-up made this 5e7-9e7 bytes/s (speed is bench's job) */
    CHECK(kvc_measure_read_bandwidth(1 << 20, 2, 3, &bw, &e) == KVC_OK && bw > 1e6 && bw < 1e13,
          "1 MiB, 2 threads: %.3g bytes/s", bw);
}

int main(void) {
    test_isa();
    test_pool();
    test_quantize();
    test_vec_dot();
    test_row_to_f32();
    test_matmul();
    test_matmul_n();
    test_bandwidth();
    return test_summary("test_kernels");
}
