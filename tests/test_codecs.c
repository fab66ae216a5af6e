/* test_codecs.c - tests of the KV codec table and every codec in it: encode/decode error
 * bounds against float64 math, fused score / accumulate against decode-then-dot, each SIMD
 * level against the scalar reference, spec parsing errors, GGML byte layouts of q8_0 / q4_0,
 * and the Walsh-Hadamard rotation of q4_0h against an explicit Hadamard matrix. */
#include "test.h"
#include "arch/isa.h"
#include "codecs/codec_impl.h"
#include "kv/codec.h"
#include "types.h"
#include "util.h"
#include <stdint.h>

static unsigned long long rng = 0x9e3779b97f4a7c15ull;

/* Gaussian rows with outliers: every 7th row x40, every 13th x1e-3, a spike in every 11th,
 * row 2 all zeros. */
static void gen_rows(float *x, int n, int d) {
    for (long i = 0; i < (long)n * d; i++) x[i] = t_randn(&rng);
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * d;
        if (i % 7 == 3)
            for (int j = 0; j < d; j++) r[j] *= 40.0f;
        if (i % 13 == 6)
            for (int j = 0; j < d; j++) r[j] *= 1e-3f;
        if (i % 11 == 5) r[(i * 5) % d] *= 60.0f;
        if (i == 2)
            for (int j = 0; j < d; j++) r[j] = 0.0f;
    }
}

static int slot_make(const char *spec, int d, enum kvc_isa isa, uint64_t seed, struct kv_spec *sp,
                     struct kv_slot *sl) {
    kvc_error e = {0};
    if (kv_spec_parse(spec, sp, &e) != KVC_OK) {
        CHECK(0, "parse '%s': %s", spec, e.msg);
        return 0;
    }
    struct kv_slot_info info = {.d = d, .layer = 1, .head = 2, .is_value = 0,
                                .rope_base = 10000.0f, .seed = seed, .calib = NULL};
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

/* The codecs this file checks in depth (their bounds are stated here); other rows of the
 * table only get the generic table / spec checks. */
static int is_basic(const struct kv_codec *c) {
    return c->id == KV_CODEC_F32 || c->id == KV_CODEC_F16 || c->id == KV_CODEC_BF16 ||
           c->id == KV_CODEC_Q8_0 || c->id == KV_CODEC_Q4_0 || c->id == KV_CODEC_Q4_0H;
}

static int supports(const struct kv_codec *c, int d) { return c->row_bytes(NULL, d) != 0; }

static const int dims[] = {32, 64, 96, 128, 256, 40, 20};
#define N_DIMS (int)(sizeof dims / sizeof dims[0])

/* ---- (1) encode/decode error bounds ---- */

/* Per-block bounds of GGML blocks in float64: q8_0 |err| <= d/2 + 127|d - dh|, q4_0 |err| <=
 * |d| + 8|d - dh| (the clamp at 15 costs up to one step), dh = the stored f16 scale. */
static int block_err_ok(const char *what, const float *x, const float *y, int q4, float dh) {
    double amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (amax < fabs(x[j])) { amax = fabs(x[j]); max = x[j]; }
    double d = q4 ? fabs(max / -8.0) : amax / 127.0;
    double lim = q4 ? d + 8 * fabs(d - fabs(dh)) : d / 2 + 127 * fabs(d - fabs(dh));
    lim += 1e-5 * amax + 1e-30;
    for (int j = 0; j < 32; j++) {
        double err = fabs((double)x[j] - (double)y[j]);
        if (!(err <= lim)) {
            CHECK(0, "%s: |err| %.4g > bound %.4g at %d (x %.6g, y %.6g, d %.4g)", what, err, lim, j,
                  x[j], y[j], d);
            return 0;
        }
    }
    return 1;
}

static void test_roundtrip(const struct kv_codec *c, int d) {
    const int n = 150;
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d);
    gen_rows(x, n, d);
    struct kv_spec sp;
    struct kv_slot sl;
    if (!slot_make(c->name, d, KVC_ISA_SCALAR, 77, &sp, &sl)) goto out;
    void *enc = malloc(sl.row_bytes * n);
    sl.k->encode(&sl, x, 0, n, enc);
    sl.k->decode(&sl, enc, 0, n, y);
    char what[96];
    snprintf(what, sizeof what, "%s d=%d roundtrip", c->name, d);
    int ok = 1;
    if (c->id == KV_CODEC_F32) {
        CHECK(memcmp(x, y, sizeof(float) * n * d) == 0, "%s: f32 not lossless", what);
    } else if (c->id == KV_CODEC_F16 || c->id == KV_CODEC_BF16) {
        double rel = c->id == KV_CODEC_F16 ? ldexp(1, -11) : ldexp(1, -8);
        double abs_ = c->id == KV_CODEC_F16 ? ldexp(1, -25) : 1e-38;
        for (long i = 0; i < (long)n * d && ok; i++) {
            double err = fabs((double)x[i] - y[i]);
            if (!(err <= rel * fabs(x[i]) + abs_)) {
                CHECK(0, "%s: |err| %.3g at %ld (x %.8g y %.8g)", what, err, i, x[i], y[i]);
                ok = 0;
            }
        }
        if (ok) CHECK(1, "ok");
    } else if (c->id == KV_CODEC_Q8_0 || c->id == KV_CODEC_Q4_0) {
        int q4 = c->id == KV_CODEC_Q4_0;
        size_t bsz = q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
        for (long b = 0; b < (long)n * d / 32 && ok; b++) {
            uint16_t dh;
            memcpy(&dh, (char *)enc + b * bsz, 2);
            ok = block_err_ok(what, x + b * 32, y + b * 32, q4, kvc_f16_to_f32(dh));
        }
        if (ok) CHECK(1, "ok");
    } else if (c->id == KV_CODEC_Q4_0H) {
        /* rotated domain: q4_0 bound on rotate(x); and decode == unrotate(q4_0 decode) */
        float *r = malloc(sizeof(float) * d), *rq = malloc(sizeof(float) * n * d);
        kv_codec_find("q4_0")->kern[KVC_ISA_SCALAR].decode(&sl, enc, 0, n, rq);
        for (int i = 0; i < n && ok; i++) {
            kv_q4_0h_rotate(&sl, x + (size_t)i * d, r);
            for (int b = 0; b < d / 32 && ok; b++) {
                uint16_t dh;
                memcpy(&dh, (char *)enc + (size_t)i * sl.row_bytes + b * sizeof(block_q4_0), 2);
                ok = block_err_ok(what, r + 32 * b, rq + (size_t)i * d + 32 * b, 1,
                                  kvc_f16_to_f32(dh));
            }
            /* orthogonal rotation: the error norm is the same in both domains */
            double e1 = 0, e2 = 0;
            for (int j = 0; j < d; j++) {
                double a = (double)x[(size_t)i * d + j] - y[(size_t)i * d + j];
                double b = (double)r[j] - rq[(size_t)i * d + j];
                e1 += a * a;
                e2 += b * b;
            }
            double nx = 0;
            for (int j = 0; j < d; j++) nx += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
            if (!(fabs(sqrt(e1) - sqrt(e2)) <= 1e-5 * sqrt(nx) + 1e-30)) {
                CHECK(0, "%s: error norm %.6g vs rotated %.6g (row %d)", what, sqrt(e1), sqrt(e2), i);
                ok = 0;
            }
        }
        if (ok) CHECK(1, "ok");
        /* rotation round trip without quantization */
        float *z = malloc(sizeof(float) * d);
        double worst = 0;
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * d;
            kv_q4_0h_rotate(&sl, xi, r);
            kv_q4_0h_unrotate(&sl, r, z);
            double mx = 0;
            for (int j = 0; j < d; j++) mx = fmax(mx, fabs(xi[j]));
            for (int j = 0; j < d; j++) worst = fmax(worst, fabs((double)z[j] - xi[j]) / (mx + 1e-30));
        }
        CHECK(worst <= 1e-5, "%s: rotation round trip rel err %.3g", what, worst);
        free(z);
        free(r);
        free(rq);
    }
    free(enc);
    slot_drop(&sp, &sl);
out:
    free(x);
    free(y);
}

/* ---- (2) fused score / accumulate vs decode-then-dot in float64, at every level ---- */

static double worst_score_rel[16], worst_score_bound[16];

static void test_fused(const struct kv_codec *c, int d, enum kvc_isa isa, int ci) {
    const int n = 53;
    struct kv_spec sp;
    struct kv_slot sl;
    if (!slot_make(c->name, d, isa, 1234, &sp, &sl)) return;
    float *x = malloc(sizeof(float) * n * d), *kd = malloc(sizeof(float) * n * d);
    float *q = malloc(sizeof(float) * d), *qp = malloc(sizeof(float) * sl.qp_floats);
    float *out = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
    float *acc = malloc(sizeof(float) * sl.acc_floats), *res = malloc(sizeof(float) * d);
    unsigned char *enc = malloc(sl.row_bytes * n);
    char what[96];
    snprintf(what, sizeof what, "%s d=%d %s", c->name, d, kvc_isa_name(isa));

    gen_rows(x, n, d);
    for (int j = 0; j < d; j++) q[j] = t_randn(&rng);
    sl.k->encode(&sl, x, 0, n, enc);
    c->kern[KVC_ISA_SCALAR].decode(&sl, enc, 0, n, kd);

    sl.k->prepare_query(&sl, q, qp);
    sl.k->score(&sl, qp, enc, 0, n, out);
    /* Block-quantized codecs score with the int16 query (codec_impl.h): their error bound is
     * sum_b 2^-16 max|q_b| sum|k_b| in the codec's domain (rotated for q4_0h), + rounding. */
    const int q16 = c->id == KV_CODEC_Q8_0 || c->id == KV_CODEC_Q4_0 || c->id == KV_CODEC_Q4_0H;
    float *qr = malloc(sizeof(float) * d), *kr = malloc(sizeof(float) * n * d);
    memcpy(qr, q, sizeof(float) * d);
    memcpy(kr, kd, sizeof(float) * n * d);
    if (c->id == KV_CODEC_Q4_0H) {
        kv_q4_0h_rotate(&sl, q, qr);
        kv_codec_find("q4_0")->kern[KVC_ISA_SCALAR].decode(&sl, enc, 0, n, kr);
    }
    int ok = 1;
    for (int i = 0; i < n; i++) {
        double ref = 0, mag = 0, magr = 0, qbound = 0;
        for (int j = 0; j < d; j++) {
            ref += (double)q[j] * kd[(size_t)i * d + j];
            mag += fabs((double)q[j] * kd[(size_t)i * d + j]);
            magr += fabs((double)qr[j] * kr[(size_t)i * d + j]);
        }
        for (int b = 0; q16 && b < d / 32; b++) {
            double qmax = 0, ksum = 0;
            for (int j = 32 * b; j < 32 * b + 32; j++) {
                qmax = fmax(qmax, fabs(qr[j]));
                ksum += fabs(kr[(size_t)i * d + j]);
            }
            qbound += qmax / 65534.0 * ksum;
        }
        double err = fabs(out[i] - ref);
        double lim = q16 ? qbound + 1e-6 * (mag + magr) : 1e-4 * mag;
        if (mag > 0) worst_score_rel[ci] = fmax(worst_score_rel[ci], err / mag);
        if (lim > 0) worst_score_bound[ci] = fmax(worst_score_bound[ci], err / lim);
        if (!(err <= lim + 1e-30)) {
            if (ok) CHECK(0, "%s score row %d: %.8g vs %.8g (sum|q||k| %.4g, bound %.3g)", what, i,
                          out[i], ref, mag, lim);
            ok = 0;
        }
    }
    if (ok) CHECK(1, "ok");
    free(qr);
    free(kr);

    /* weights: every 5th exactly 0 and its row overwritten with 0xff bytes (NaN when read) */
    for (int i = 0; i < n; i++) {
        w[i] = i % 5 == 1 ? 0.0f : (float)((double)(t_rng_next(&rng) >> 11) / 9007199254740992.0);
        if (w[i] == 0.0f) memset(enc + (size_t)i * sl.row_bytes, 0xff, sl.row_bytes);
    }
    memset(acc, 0, sizeof(float) * sl.acc_floats);
    const int n1 = 21; /* two calls: accumulate must add to acc */
    sl.k->accumulate(&sl, w, enc, 0, n1, acc);
    sl.k->accumulate(&sl, w + n1, enc + (size_t)n1 * sl.row_bytes, n1, n - n1, acc);
    if (sl.k->finish) sl.k->finish(&sl, acc, res);
    else memcpy(res, acc, sizeof(float) * d);
    ok = 1;
    double mag = 0;
    for (int i = 0; i < n; i++) {
        if (w[i] == 0.0f) continue;
        double mx = 0;
        for (int j = 0; j < d; j++) mx = fmax(mx, fabs(kd[(size_t)i * d + j]));
        mag += fabs(w[i]) * mx;
    }
    for (int j = 0; j < d; j++) {
        double ref = 0;
        for (int i = 0; i < n; i++)
            if (w[i] != 0.0f) ref += (double)w[i] * kd[(size_t)i * d + j];
        if (!(fabs(res[j] - ref) <= 1e-4 * mag + 1e-30)) {
            if (ok) CHECK(0, "%s accumulate col %d: %.8g vs %.8g (bound %.3g)", what, j, res[j], ref, 1e-4 * mag);
            ok = 0;
        }
    }
    if (ok) CHECK(1, "ok");

    free(x); free(kd); free(q); free(qp); free(out); free(w); free(acc); free(res); free(enc);
    slot_drop(&sp, &sl);
}

/* ---- (3) each fast level vs the scalar reference ---- */

static void test_levels(const struct kv_codec *c, int d, enum kvc_isa isa) {
    const int n = 300;
    struct kv_spec sp0, sp1;
    struct kv_slot s0, s1;
    if (!slot_make(c->name, d, KVC_ISA_SCALAR, 99, &sp0, &s0)) return;
    if (!slot_make(c->name, d, isa, 99, &sp1, &s1)) {
        slot_drop(&sp0, &s0);
        return;
    }
    char what[96];
    snprintf(what, sizeof what, "%s d=%d %s vs scalar", c->name, d, kvc_isa_name(isa));
    CHECK(s1.k == &c->kern[isa], "%s: slot got the wrong kernels", what);
    size_t rb = s0.row_bytes;
    float *x = malloc(sizeof(float) * n * d), *y0 = malloc(sizeof(float) * n * d);
    float *y1 = malloc(sizeof(float) * n * d), *q = malloc(sizeof(float) * d);
    float *qp0 = malloc(sizeof(float) * s0.qp_floats), *qp1 = malloc(sizeof(float) * s0.qp_floats);
    float *o0 = malloc(sizeof(float) * (n + 1)), *o1 = malloc(sizeof(float) * (n + 1));
    float *w = malloc(sizeof(float) * n);
    float *a0 = calloc(s0.acc_floats, sizeof(float)), *a1 = calloc(s0.acc_floats, sizeof(float));
    float *r0 = malloc(sizeof(float) * d), *r1 = malloc(sizeof(float) * d);
    unsigned char *e0 = malloc(rb * n), *e1 = malloc(rb * n);
    gen_rows(x, n, d);
    /* rounding ties for q8_0 (amax 127 -> scale 1, x*id = k + 0.5) and q4_0 */
    if (n > 10) {
        float *t = x + 10 * (size_t)d;
        for (int j = 0; j < d; j++) t[j] = j % 32 == 0 ? 127.0f : (float)(j % 32) - 15.5f;
        t = x + 11 * (size_t)d;
        for (int j = 0; j < d; j++) t[j] = j % 32 == 0 ? -8.0f : (float)(j % 16) - 7.5f;
        t = x + 12 * (size_t)d;
        for (int j = 0; j < d; j++) t[j] = -0.0f;
    }
    for (int j = 0; j < d; j++) q[j] = t_randn(&rng);

    s0.k->encode(&s0, x, 0, n, e0);
    s1.k->encode(&s1, x, 0, n, e1);
    size_t diff = 0;
    while (diff < rb * n && e0[diff] == e1[diff]) diff++;
    CHECK(diff == rb * n, "%s: encodings differ at byte %zu (row %zu)", what, diff, diff / rb);
    s0.k->decode(&s0, e0, 0, n, y0);
    s1.k->decode(&s1, e0, 0, n, y1);
    CHECK(memcmp(y0, y1, sizeof(float) * n * d) == 0, "%s: decodes differ", what);
    s0.k->prepare_query(&s0, q, qp0);
    s1.k->prepare_query(&s1, q, qp1);
    CHECK(memcmp(qp0, qp1, sizeof(float) * s0.qp_floats) == 0, "%s: prepared queries differ", what);

    /* score over several sub-ranges (tails of every length) */
    static const int ranges[][2] = {{0, 300}, {5, 1}, {7, 15}, {16, 17}, {33, 31}, {100, 8}};
    int ok = 1;
    for (size_t t = 0; t < sizeof ranges / sizeof ranges[0]; t++) {
        int i0 = ranges[t][0], m = ranges[t][1];
        memset(o1, 0x7f, sizeof(float) * (n + 1));
        s0.k->score(&s0, qp0, e0 + (size_t)i0 * rb, i0, m, o0);
        s1.k->score(&s1, qp0, e0 + (size_t)i0 * rb, i0, m, o1);
        for (int i = 0; i < m; i++) {
            double mag = 0;
            for (int j = 0; j < d; j++) mag += fabs((double)q[j] * y0[(size_t)(i0 + i) * d + j]);
            if (!(fabs((double)o0[i] - o1[i]) <= 1e-5 * mag + 1e-30)) {
                if (ok) CHECK(0, "%s: score [%d+%d] row %d: %.9g vs %.9g", what, i0, m, i, o1[i], o0[i]);
                ok = 0;
            }
        }
        uint32_t guard;
        memcpy(&guard, o1 + m, 4);
        CHECK(guard == 0x7f7f7f7fu, "%s: score wrote past n=%d", what, m);
    }
    if (ok) CHECK(1, "ok");

    for (int i = 0; i < n; i++)
        w[i] = i % 4 == 2 ? 0.0f : (float)((double)(t_rng_next(&rng) >> 11) / 9007199254740992.0);
    for (int j = 0; j < s0.acc_floats; j++) a0[j] = a1[j] = t_randf(&rng); /* += semantics */
    s0.k->accumulate(&s0, w, e0, 0, n, a0);
    s1.k->accumulate(&s1, w, e0, 0, n, a1);
    if (s0.k->finish) {
        s0.k->finish(&s0, a0, r0);
        s1.k->finish(&s1, a1, r1);
    } else {
        memcpy(r0, a0, sizeof(float) * d);
        memcpy(r1, a1, sizeof(float) * d);
    }
    double mag = 1;
    for (int i = 0; i < n; i++) {
        double mx = 0;
        for (int j = 0; j < d; j++) mx = fmax(mx, fabs(y0[(size_t)i * d + j]));
        mag += fabs(w[i]) * mx;
    }
    ok = 1;
    for (int j = 0; j < d; j++)
        if (!(fabs((double)r0[j] - r1[j]) <= 1e-5 * mag)) {
            if (ok) CHECK(0, "%s: accumulate col %d: %.9g vs %.9g", what, j, r1[j], r0[j]);
            ok = 0;
        }
    if (ok) CHECK(1, "ok");

    /* grouped kernels (G query heads at once) vs the scalar per-query kernels */
    if (s1.k->score_g || s1.k->accumulate_g) {
        enum { G = 3 };
        const size_t qpf = (size_t)s0.qp_floats, af = (size_t)s0.acc_floats;
        float *qg = malloc(sizeof(float) * G * qpf), *og = malloc(sizeof(float) * G * n);
        float *wg = malloc(sizeof(float) * G * n), *ag0 = malloc(sizeof(float) * G * af);
        float *ag1 = malloc(sizeof(float) * G * af), *qq = malloc(sizeof(float) * d);
        for (int g = 0; g < G; g++) {
            for (int j = 0; j < d; j++) qq[j] = t_randn(&rng);
            s0.k->prepare_query(&s0, qq, qg + g * qpf);
        }
        for (int i = 0; i < G * n; i++) wg[i] = (float)((double)(t_rng_next(&rng) >> 11) / 9007199254740992.0);
        for (size_t j = 0; j < G * af; j++) ag0[j] = ag1[j] = t_randf(&rng);
        double worst_s = 0, worst_a = 0;
        const int m = n - 3; /* a tail that is not a multiple of 16 */
        if (s1.k->score_g) {
            s1.k->score_g(&s1, G, qg, qpf, e0 + 3 * rb, 3, m, og, (size_t)n);
            for (int g = 0; g < G; g++) {
                s0.k->score(&s0, qg + g * qpf, e0 + 3 * rb, 3, m, o0);
                for (int i = 0; i < m; i++) { /* error relative to sum |q_j k_j| (cancellation) */
                    double mg = 1 + fabs(o0[i]); /* codec-space queries (int16, ...) */
                    if (qpf == (size_t)d) { /* float queries: sum |q_j k_j| */
                        mg = 1e-30;
                        for (int j = 0; j < d; j++) mg += fabs((double)qg[g * qpf + j] * y0[(size_t)(3 + i) * d + j]);
                    }
                    worst_s = fmax(worst_s, fabs((double)o0[i] - og[(size_t)g * n + i]) / mg);
                }
            }
            CHECK(worst_s < 1e-5, "%s: score_g vs scalar score: max rel diff %.3g", what, worst_s);
        }
        if (s1.k->accumulate_g) {
            s1.k->accumulate_g(&s1, G, wg, (size_t)n, e0 + 3 * rb, 3, m, ag1, af);
            for (int g = 0; g < G; g++) s0.k->accumulate(&s0, wg + (size_t)g * n, e0 + 3 * rb, 3, m, ag0 + g * af);
            double mg = 1; /* error relative to sum |w_i| max|v_i| */
            for (int i = 0; i < m; i++) {
                double mx = 0;
                for (int j = 0; j < d; j++) mx = fmax(mx, fabs(y0[(size_t)(3 + i) * d + j]));
                mg += mx;
            }
            for (size_t j = 0; j < G * af; j++) worst_a = fmax(worst_a, fabs((double)ag0[j] - ag1[j]) / mg);
            CHECK(worst_a < 1e-5, "%s: accumulate_g vs scalar accumulate: max rel diff %.3g", what, worst_a);
        }
        free(qg); free(og); free(wg); free(ag0); free(ag1); free(qq);
    }

    free(x); free(y0); free(y1); free(q); free(qp0); free(qp1); free(o0); free(o1); free(w);
    free(a0); free(a1); free(r0); free(r1); free(e0); free(e1);
    slot_drop(&sp0, &s0);
    slot_drop(&sp1, &s1);
}

/* ---- (4) spec parsing and the table API ---- */

static int contains_all_names(const char *msg) {
    for (int i = 0; i < kv_codec_table_len; i++)
        if (!strstr(msg, kv_codec_table[i]->name)) return 0;
    return 1;
}

static int n_pairs;
static char pair_log[256];
static kvc_status log_pair(void *cfg, const char *key, const char *val, kvc_error *err) {
    (void)cfg;
    (void)err;
    n_pairs++;
    size_t l = strlen(pair_log);
    snprintf(pair_log + l, sizeof pair_log - l, "[%s=%s]", key, val);
    return KVC_OK;
}

static void dummy_encode(const struct kv_slot *s, const float *x, int pos0, int n, void *dst) {
    (void)s, (void)x, (void)pos0, (void)n, (void)dst;
}

static void test_spec(void) {
    static const char *bad[] = {"nope", "q8_0:x=1", "q8_0:", "f16:", "Q8_0", "q8_0 ", "", ":",
                                "f32:a", "q4_0h:seed=3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct kv_spec sp;
        kvc_error e = {0};
        kvc_status st = kv_spec_parse(bad[i], &sp, &e);
        CHECK(st == KVC_ERR_ARG, "spec '%s': status %d", bad[i], st);
        CHECK(e.status == KVC_ERR_ARG && contains_all_names(e.msg),
              "spec '%s': message does not list the codecs: %s", bad[i], e.msg);
        CHECK(sp.cfg == NULL && sp.codec == NULL, "spec '%s': output not cleared", bad[i]);
    }
    {
        struct kv_spec sp;
        kvc_error e = {0};
        CHECK(kv_spec_parse(NULL, &sp, &e) == KVC_ERR_ARG, "NULL spec");
        char longspec[300];
        memset(longspec, 'a', sizeof longspec - 1);
        longspec[sizeof longspec - 1] = 0;
        CHECK(kv_spec_parse(longspec, &sp, &e) == KVC_ERR_ARG, "long spec");
        kv_spec_parse("q8_0:x=1", &sp, &e);
        CHECK(strstr(e.msg, "q8_0") && strstr(e.msg, "no parameters"), "param-less msg: %s", e.msg);
        kv_spec_parse("bogus", &sp, &e);
        CHECK(strstr(e.msg, "bogus") != NULL, "unknown msg names the codec: %s", e.msg);
    }
    for (int i = 0; i < kv_codec_table_len; i++) {
        const struct kv_codec *c = kv_codec_table[i];
        struct kv_spec sp;
        kvc_error e = {0};
        if (is_basic(c) || !c->parse) {
            CHECK(kv_spec_parse(c->name, &sp, &e) == KVC_OK, "parse %s: %s", c->name, e.msg);
            CHECK(sp.codec == c && sp.cfg != NULL && strcmp(sp.text, c->name) == 0, "spec %s",
                  c->name);
            kv_spec_free(&sp);
        }
        CHECK(kv_codec_find(c->name) == c, "find %s", c->name);
        CHECK(c->id > 0 && c->about && c->about[0] && c->params, "codec %s metadata", c->name);
        for (int k = 0; k < i; k++) CHECK(kv_codec_table[k]->id != c->id, "duplicate id %d", c->id);
        for (int l = 0; l < KVC_ISA_COUNT; l++) {
            const struct kv_kernels *k = &c->kern[l];
            if (!k->encode) continue;
            CHECK(k->decode && k->prepare_query && k->score && k->accumulate,
                  "%s level %d has NULL kernels", c->name, l);
        }
    }
    CHECK(kv_codec_find("nope") == NULL && kv_codec_find(NULL) == NULL, "find unknown");
    {
        char want[512] = "";
        for (int i = 0; i < kv_codec_table_len; i++) {
            if (i) strcat(want, ", ");
            strcat(want, kv_codec_table[i]->name);
        }
        CHECK(strcmp(kvc_codec_list(), want) == 0, "list: %s", kvc_codec_list());
        CHECK(strncmp(kvc_codec_list(), "f32, f16, bf16, q8_0, q4_0, q4_0h", 33) == 0, "list: %s",
              kvc_codec_list());
    }

    /* kv_params_each */
    static const struct { const char *p; int ok, n; const char *log; } pc[] = {
        {"", 1, 0, ""},           {"a=1", 1, 1, "[a=1]"}, {"a=1,bb=x y", 1, 2, "[a=1][bb=x y]"},
        {"a", 0, 0, ""},          {"=1", 0, 0, ""},       {"a=", 0, 0, ""},
        {"a=1,", 0, 1, "[a=1]"},  {"a=1,,b=2", 0, 1, "[a=1]"}, {",a=1", 0, 0, ""},
    };
    for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
        kvc_error e = {0};
        n_pairs = 0;
        pair_log[0] = 0;
        kvc_status st = kv_params_each("mycodec", pc[i].p, NULL, log_pair, &e);
        CHECK((st == KVC_OK) == pc[i].ok, "params '%s': status %d", pc[i].p, st);
        CHECK(n_pairs == pc[i].n && strcmp(pair_log, pc[i].log) == 0, "params '%s': %d pairs %s",
              pc[i].p, n_pairs, pair_log);
        if (!pc[i].ok)
            CHECK(st == KVC_ERR_ARG && strstr(e.msg, "mycodec") && strstr(e.msg, pc[i].p),
                  "params '%s' message: %s", pc[i].p, e.msg);
    }

    /* bits */
    static const struct { const char *s; int d; double bits; } bc[] = {
        {"f32", 64, 32}, {"f16", 128, 16}, {"bf16", 64, 16}, {"q8_0", 64, 8.5},
        {"q4_0", 128, 4.5}, {"q4_0h", 64, 4.5},
    };
    for (size_t i = 0; i < sizeof bc / sizeof bc[0]; i++) {
        double b = -1;
        kvc_error e = {0};
        CHECK(kvc_codec_bits(bc[i].s, bc[i].d, &b, &e) == KVC_OK && b == bc[i].bits,
              "bits %s: %g (%s)", bc[i].s, b, e.msg);
        struct kv_spec sp;
        kv_spec_parse(bc[i].s, &sp, &e);
        CHECK(kv_spec_bits(&sp, bc[i].d) == bc[i].bits, "kv_spec_bits %s", bc[i].s);
        kv_spec_free(&sp);
    }
    static const struct { const char *s; int d; } dimbad[] = {
        {"q8_0", 80}, {"q4_0", 48}, {"q4_0h", 96}, {"q4_0h", 16}, {"q4_0", 0}, {"f16", -1},
    };
    for (size_t i = 0; i < sizeof dimbad / sizeof dimbad[0]; i++) {
        double b = -1;
        kvc_error e = {0};
        char dn[16];
        snprintf(dn, sizeof dn, "%d", dimbad[i].d);
        kvc_status st = kvc_codec_bits(dimbad[i].s, dimbad[i].d, &b, &e);
        CHECK(st != KVC_OK && strstr(e.msg, dn) && (dimbad[i].d <= 0 || strstr(e.msg, "32")),
              "bits %s d=%d: status %d msg %s", dimbad[i].s, dimbad[i].d, st, e.msg);
        struct kv_spec sp;
        struct kv_slot sl;
        struct kv_slot_info info = {.d = dimbad[i].d, .seed = 1};
        kv_spec_parse(dimbad[i].s, &sp, &e);
        CHECK(kv_slot_init(&sl, &sp, &info, KVC_ISA_SCALAR, &e) != KVC_OK, "slot %s d=%d",
              dimbad[i].s, dimbad[i].d);
        kv_spec_free(&sp);
    }
    {
        double b;
        kvc_error e = {0};
        CHECK(kvc_codec_bits("zzz", 64, &b, &e) == KVC_ERR_ARG && contains_all_names(e.msg),
              "bits unknown: %s", e.msg);
    }

    /* kernel fallback: a level whose encode is NULL uses the next lower one */
    static const struct kv_codec fake = {
        .name = "fake",
        .kern = {[KVC_ISA_SCALAR] = {.encode = dummy_encode}, [KVC_ISA_AVX2] = {.encode = dummy_encode}},
    };
    CHECK(kv_codec_kernels(&fake, KVC_ISA_AVX512) == &fake.kern[KVC_ISA_AVX2], "fallback 512->2");
    CHECK(kv_codec_kernels(&fake, KVC_ISA_AVX2) == &fake.kern[KVC_ISA_AVX2], "avx2");
    CHECK(kv_codec_kernels(&fake, KVC_ISA_SCALAR) == &fake.kern[KVC_ISA_SCALAR], "scalar");
}

/* ---- (5) GGML byte layout by hand ---- */

static void test_ggml_layout(void) {
    float x[4 * 32];
    /* q8_0 block 0: amax 127 -> d = 1 (f16 0x3c00); roundf is half away from zero */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    x[0] = 127; x[1] = 2.5f; x[2] = -2.5f; x[3] = 0.49999997f; x[4] = -127; x[5] = 1.5f;
    /* block 1: amax 1 -> d = 1/127, f16 0x2008; x*127 rounded */
    for (int j = 0; j < 32; j++) x[32 + j] = 0;
    x[32] = 1.0f; x[33] = -1.0f; x[34] = 0.25f; x[35] = -0.1f;
    /* block 2: all -0 -> d = 0, qs 0; block 3: all +0 */
    for (int j = 0; j < 64; j++) x[64 + j] = j < 32 ? -0.0f : 0.0f;
    unsigned char want8[4 * 34];
    memset(want8, 0, sizeof want8);
    want8[0] = 0x00; want8[1] = 0x3c;
    for (int j = 0; j < 32; j++) want8[2 + j] = (unsigned char)(int8_t)(j - 16);
    want8[2] = 0x7f; want8[3] = 3; want8[4] = 0xfd; want8[5] = 0; want8[6] = 0x81; want8[7] = 2;
    want8[34] = 0x08; want8[35] = 0x20;
    want8[36] = 0x7f; want8[37] = 0x81; want8[38] = 32; want8[39] = 0xf3;

    /* q4_0 block 0: max = -8 (first of largest |x|) -> d = 1; q = MIN(15, trunc(x + 8.5)) */
    float y[4 * 32];
    for (int j = 0; j < 16; j++) y[j] = (float)(j - 8);
    y[16] = 7.9f; y[17] = -7.6f; y[18] = 8.0f; y[19] = 0.0f; y[20] = -0.5f; y[21] = 0.49f;
    y[22] = 0.5f;
    for (int j = 23; j < 32; j++) y[j] = 3.0f;
    /* block 1: max = +4 (x[3]; x[5] = -4 comes later) -> d = -0.5 (0xb800), id = -2 */
    for (int j = 0; j < 32; j++) y[32 + j] = 1.0f;
    y[32 + 3] = 4.0f; y[32 + 5] = -4.0f;
    /* block 2: all -0 -> max stays +0, d = -0 (0x8000), q = 8; block 3 all +0 likewise */
    for (int j = 0; j < 64; j++) y[64 + j] = j < 32 ? -0.0f : 0.0f;
    unsigned char want4[4 * 18];
    want4[0] = 0x00; want4[1] = 0x3c;
    static const unsigned char q4b0[16] = {0xf0, 0x01, 0xf2, 0x83, 0x84, 0x85, 0x96, 0xb7,
                                           0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
    memcpy(want4 + 2, q4b0, 16);
    want4[18] = 0x00; want4[19] = 0xb8;
    for (int j = 0; j < 16; j++) want4[20 + j] = 0x66;
    want4[20 + 3] = 0x60; want4[20 + 5] = 0x6f;
    for (int b = 2; b < 4; b++) {
        want4[18 * b] = 0x00; want4[18 * b + 1] = 0x80;
        memset(want4 + 18 * b + 2, 0x88, 16);
    }
    for (int l = 0; l < KVC_ISA_COUNT; l++) {
        if (!kvc_isa_supported((enum kvc_isa)l)) continue;
        struct kv_spec sp;
        struct kv_slot sl;
        unsigned char got[4 * 34];
        if (slot_make("q8_0", 128, (enum kvc_isa)l, 0, &sp, &sl)) {
            memset(got, 0xcc, sizeof got);
            sl.k->encode(&sl, x, 0, 1, got);
            int bad = -1;
            for (int i = 0; i < 4 * 34 && bad < 0; i++) if (got[i] != want8[i]) bad = i;
            CHECK(bad < 0, "q8_0 %s layout: byte %d is %02x, want %02x", kvc_isa_name(l), bad,
                  bad >= 0 ? got[bad] : 0, bad >= 0 ? want8[bad] : 0);
            slot_drop(&sp, &sl);
        }
        if (slot_make("q4_0", 128, (enum kvc_isa)l, 0, &sp, &sl)) {
            memset(got, 0xcc, sizeof got);
            sl.k->encode(&sl, y, 0, 1, got);
            int bad = -1;
            for (int i = 0; i < 4 * 18 && bad < 0; i++) if (got[i] != want4[i]) bad = i;
            CHECK(bad < 0, "q4_0 %s layout: byte %d is %02x, want %02x", kvc_isa_name(l), bad,
                  bad >= 0 ? got[bad] : 0, bad >= 0 ? want4[bad] : 0);
            CHECK(got[4 * 18] == 0xcc, "q4_0 wrote past its row");
            slot_drop(&sp, &sl);
        }
    }
    /* and the struct view agrees with the bytes */
    block_q8_0 b8;
    kv_quantize_block_q8_0(x, &b8);
    CHECK(b8.d == 0x3c00 && b8.qs[1] == 3 && b8.qs[2] == -3, "block_q8_0 view");
}

/* ---- (6) Walsh-Hadamard transform vs explicit Hadamard matrix, d = 64 ---- */

static void test_hadamard(void) {
    enum { D = 64 };
    double x[D];
    float f[D];
    for (int j = 0; j < D; j++) f[j] = t_randn(&rng), x[j] = f[j];
    kv_fwht(f, D);
    double worst = 0, mag = 0;
    for (int j = 0; j < D; j++) mag += fabs(x[j]);
    for (int i = 0; i < D; i++) {
        double ref = 0;
        for (int j = 0; j < D; j++) ref += (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) * x[j];
        worst = fmax(worst, fabs(f[i] - ref));
    }
    CHECK(worst <= 1e-6 * mag, "fwht vs explicit H: %.3g", worst);

    /* rotation = H diag(s) / sqrt(d): rotate(e_k) = s_k H[:,k] / sqrt(d) with s_k = +-1 */
    struct kv_spec sp;
    struct kv_slot sl;
    if (!slot_make("q4_0h", D, KVC_ISA_SCALAR, 4242, &sp, &sl)) return;
    double sgn[D], rot[D][D];
    int ok = 1, npos = 0;
    for (int k = 0; k < D; k++) {
        float e[D], r[D];
        memset(e, 0, sizeof e);
        e[k] = 1.0f;
        kv_q4_0h_rotate(&sl, e, r);
        sgn[k] = r[0] * 8.0 > 0 ? 1 : -1; /* H[0][k] = 1 */
        npos += sgn[k] > 0;
        for (int i = 0; i < D; i++) {
            double want = sgn[k] * (__builtin_popcount(i & k) & 1 ? -1.0 : 1.0) / 8.0;
            if (fabs(r[i] - want) > 1e-7) ok = 0;
            rot[i][k] = want;
        }
    }
    CHECK(ok, "rotate(e_k) is not s_k H[:,k]/sqrt(d)");
    CHECK(npos > 10 && npos < 54, "signs look unbalanced: %d of 64 positive", npos);
    float v[D], r[D], u[D];
    for (int j = 0; j < D; j++) v[j] = t_randn(&rng);
    kv_q4_0h_rotate(&sl, v, r);
    kv_q4_0h_unrotate(&sl, r, u);
    worst = 0;
    for (int i = 0; i < D; i++) {
        double ref = 0;
        for (int k = 0; k < D; k++) ref += rot[i][k] * v[k];
        worst = fmax(worst, fabs(r[i] - ref));
        worst = fmax(worst, fabs(u[i] - v[i]));
    }
    CHECK(worst <= 1e-5, "rotation vs float64 matrix / round trip: %.3g", worst);
    /* another seed gives another rotation; the same seed the same */
    struct kv_spec sp2;
    struct kv_slot sl2, sl3;
    if (slot_make("q4_0h", D, KVC_ISA_SCALAR, 4243, &sp2, &sl2)) {
        float r2[D];
        kv_q4_0h_rotate(&sl2, v, r2);
        CHECK(memcmp(r, r2, sizeof r) != 0, "seeds 4242 and 4243 give the same rotation");
        struct kv_slot_info info = sl.info;
        kvc_error e;
        if (kv_slot_init(&sl3, &sp2, &info, KVC_ISA_SCALAR, &e) == KVC_OK) {
            kv_q4_0h_rotate(&sl3, v, r2);
            CHECK(memcmp(r, r2, sizeof r) == 0, "same seed, different rotation");
            kv_slot_free(&sl3);
        }
        slot_drop(&sp2, &sl2);
    }
    slot_drop(&sp, &sl);
}

/* q4_0h should beat q4_0 on rows with spikes (what the rotation is for). */
static void test_rotation_helps(void) {
    const int d = 128, n = 200;
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d);
    for (long i = 0; i < (long)n * d; i++) x[i] = t_randn(&rng);
    for (int i = 0; i < n; i++) x[(size_t)i * d + (i * 7) % d] = 30.0f; /* one outlier per row */
    double mse[2] = {0, 0};
    const char *names[2] = {"q4_0", "q4_0h"};
    for (int c = 0; c < 2; c++) {
        struct kv_spec sp;
        struct kv_slot sl;
        if (!slot_make(names[c], d, KVC_ISA_SCALAR, 5, &sp, &sl)) continue;
        void *enc = malloc(sl.row_bytes * n);
        sl.k->encode(&sl, x, 0, n, enc);
        sl.k->decode(&sl, enc, 0, n, y);
        for (long i = 0; i < (long)n * d; i++) mse[c] += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        mse[c] /= (double)n * d;
        free(enc);
        slot_drop(&sp, &sl);
    }
    printf("outlier rows, d=128: mse q4_0 %.4g, q4_0h %.4g\n", mse[0], mse[1]);
    CHECK(mse[1] < 0.5 * mse[0], "q4_0h mse %.4g not well below q4_0 %.4g", mse[1], mse[0]);
    free(x);
    free(y);
}

/* Informational: the int16 query's score error next to the key quantization error, both
 * relative to |q| |k|, on Gaussian rows (d = 128). Checks only that the first is far smaller. */
static void report_q16_accuracy(void) {
    const int d = 128, n = 2000;
    const char *names[] = {"q8_0", "q4_0", "q4_0h"};
    float *x = malloc(sizeof(float) * n * d), *kd = malloc(sizeof(float) * n * d);
    float *q = malloc(sizeof(float) * d), *out = malloc(sizeof(float) * n);
    for (long i = 0; i < (long)n * d; i++) x[i] = t_randn(&rng);
    for (int j = 0; j < d; j++) q[j] = t_randn(&rng);
    for (int c = 0; c < 3; c++) {
        struct kv_spec sp;
        struct kv_slot sl;
        if (!slot_make(names[c], d, kvc_isa_best(), 11, &sp, &sl)) continue;
        void *enc = malloc(sl.row_bytes * n);
        float *qp = malloc(sizeof(float) * sl.qp_floats);
        sl.k->encode(&sl, x, 0, n, enc);
        sl.k->decode(&sl, enc, 0, n, kd);
        sl.k->prepare_query(&sl, q, qp);
        sl.k->score(&sl, qp, enc, 0, n, out);
        double qn = 0, e_q = 0, e_k = 0, m_q = 0, m_k = 0;
        for (int j = 0; j < d; j++) qn += (double)q[j] * q[j];
        for (int i = 0; i < n; i++) {
            double exact = 0, deq = 0, kn = 0;
            for (int j = 0; j < d; j++) {
                exact += (double)q[j] * x[(size_t)i * d + j];
                deq += (double)q[j] * kd[(size_t)i * d + j];
                kn += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
            }
            double nrm = sqrt(qn * kn), a = fabs(out[i] - deq) / nrm, b = fabs(deq - exact) / nrm;
            e_q += a * a;
            e_k += b * b;
            m_q = fmax(m_q, a);
            m_k = fmax(m_k, b);
        }
        printf("%-6s d=128 score error / (|q||k|): int16 query rms %.2g max %.2g; key "
               "quantization rms %.2g max %.2g\n",
               names[c], sqrt(e_q / n), m_q, sqrt(e_k / n), m_k);
        CHECK(m_q < 0.05 * sqrt(e_k / n), "%s: int16 query error not negligible", names[c]);
        free(enc);
        free(qp);
        slot_drop(&sp, &sl);
    }
    free(x); free(kd); free(q); free(out);
}

/* decode_acc (value rows decoded for batched attention into the codec's sum space): the
 * weighted sum of those rows through finish equals accumulate + finish (float64 sums), and every
 * level gives the scalar level's floats. */
static void test_decode_acc(const struct kv_codec *c, int d, enum kvc_isa isa) {
    if (!c->kern[isa].decode_acc) return;
    enum { N = 45 };
    struct kv_spec sp, sp0;
    struct kv_slot sl, sl0;
    if (!slot_make(c->name, d, isa, 7, &sp, &sl)) return;
    if (!slot_make(c->name, d, KVC_ISA_SCALAR, 7, &sp0, &sl0)) {
        slot_drop(&sp, &sl);
        return;
    }
    const int DA = c->dec_acc_floats ? c->dec_acc_floats(sp.cfg, d) : 0;
    char what[96];
    snprintf(what, sizeof what, "%s d=%d %s decode_acc", c->name, d, kvc_isa_name(isa));
    CHECK(DA > 0 && DA <= sl.acc_floats, "%s: %d floats per row (acc %d)", what, DA, sl.acc_floats);
    if (DA > 0 && DA <= sl.acc_floats) {
        float *x = malloc(sizeof(float) * N * d), *y = malloc(sizeof(float) * N * DA), *y0 = malloc(sizeof(float) * N * DA);
        float *w = malloc(sizeof(float) * N), *a = calloc((size_t)sl.acc_floats, sizeof(float));
        float *b = calloc((size_t)sl.acc_floats, sizeof(float)), *o1 = malloc(sizeof(float) * d), *o2 = malloc(sizeof(float) * d);
        unsigned char *e = malloc(sl.row_bytes * N);
        gen_rows(x, N, d);
        for (int i = 0; i < N; i++) w[i] = i % 4 ? (float)fabs(t_randn(&rng)) : 0.0f;
        sl.k->encode(&sl, x, 0, N, e);
        sl.k->decode_acc(&sl, e, 0, N, y);
        sl0.k->decode_acc(&sl0, e, 0, N, y0);
        CHECK(memcmp(y, y0, sizeof(float) * N * DA) == 0, "%s: rows = scalar level's", what);
        sl.k->accumulate(&sl, w, e, 0, N, a);
        sl.k->finish(&sl, a, o1);
        double mag = 0;
        for (int j = 0; j < DA; j++) {
            double t = 0;
            for (int i = 0; i < N; i++) {
                t += (double)w[i] * y[(size_t)i * DA + j];
                mag = fmax(mag, fabs((double)w[i] * y[(size_t)i * DA + j]));
            }
            b[j] = (float)t;
        }
        sl.k->finish(&sl, b, o2);
        double worst = 0;
        for (int j = 0; j < d; j++) worst = fmax(worst, fabs((double)o1[j] - o2[j]));
        CHECK(worst <= 1e-5 * N * (mag + 1e-30), "%s: summed rows + finish vs accumulate + finish: max |diff| %g (max term %g)",
              what, worst, mag);
        free(x); free(y); free(y0); free(w); free(a); free(b); free(o1); free(o2); free(e);
    }
    slot_drop(&sp, &sl);
    slot_drop(&sp0, &sl0);
}

int main(void) {
    test_spec();
    test_ggml_layout();
    test_hadamard();
    test_rotation_helps();
    report_q16_accuracy();
    for (int ci = 0; ci < kv_codec_table_len; ci++) {
        const struct kv_codec *c = kv_codec_table[ci];
        if (!is_basic(c)) continue; /* other codecs have their own tests */
        for (int di = 0; di < N_DIMS; di++) {
            int d = dims[di];
            if (!supports(c, d)) continue;
            test_roundtrip(c, d);
            for (int l = 0; l < KVC_ISA_COUNT; l++) {
                if (!kvc_isa_supported((enum kvc_isa)l)) continue;
                test_fused(c, d, (enum kvc_isa)l, ci);
                test_decode_acc(c, d, (enum kvc_isa)l);
                if (l != KVC_ISA_SCALAR) test_levels(c, d, (enum kvc_isa)l);
            }
        }
        printf("%-6s score vs float64 decode-then-dot: worst |err| = %.3g of sum|q||k|, %.3g of "
               "its bound\n", c->name, worst_score_rel[ci], worst_score_bound[ci]);
    }
    return test_summary("test_codecs");
}
