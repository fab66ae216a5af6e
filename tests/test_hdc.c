/* test_hdc.c - tests of the hypervector codecs hdc and hdc-select: the Walsh-Hadamard
 * transform against an explicit Hadamard matrix, bind/unbind round trips, the Lloyd-Max
 * tables, unbiasedness and variance of the 1-bit estimator over random slot seeds, fused
 * kernels against decode-then-dot in float64, every ISA level against scalar (encoders
 * byte-identical), the popcount kernels exactly, hdc-select's exact top-k, and errors. */
#include "test.h"
#include "codecs/hdc_common.h"
#include "kv/calib_internal.h"
#include "kv/codec.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct tslot {
    struct kv_spec spec;
    struct kv_slot slot;
    int ok;
};

static int tslot_make(struct tslot *t, const char *spec, int d, uint64_t seed, int is_value,
                      enum kvc_isa isa) {
    kvc_error err = {0};
    memset(t, 0, sizeof *t);
    if (kv_spec_parse(spec, &t->spec, &err)) {
        fprintf(stderr, "spec %s: %s\n", spec, err.msg);
        return 0;
    }
    struct kv_slot_info info = {.d = d, .layer = 0, .head = 0, .is_value = is_value,
                                .rope_base = 10000.0f, .seed = seed, .calib = NULL};
    if (kv_slot_init(&t->slot, &t->spec, &info, isa, &err)) {
        fprintf(stderr, "slot %s: %s\n", spec, err.msg);
        kv_spec_free(&t->spec);
        return 0;
    }
    t->ok = 1;
    return 1;
}
static void tslot_free(struct tslot *t) {
    kv_slot_free(&t->slot);
    kv_spec_free(&t->spec);
}

static void randn_vec(float *x, int n, unsigned long long *rng) {
    for (int i = 0; i < n; i++) x[i] = t_randn(rng);
}

static double dotd(const float *a, const float *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static int isa_levels(enum kvc_isa *lv) {
    int n = 0;
    for (int l = 0; l < KVC_ISA_COUNT; l++)
        if (kvc_isa_supported((enum kvc_isa)l)) lv[n++] = (enum kvc_isa)l;
    return n;
}

/* ---- Lloyd-Max tables ---- */

static double phi(double t) { return isinf(t) ? 0.0 : exp(-t * t / 2) / sqrt(2 * M_PI); }
static double Phi(double t) { return 0.5 * erfc(-t / sqrt(2.0)); }

static void test_lloyd(void) {
    for (int b = 1; b <= 4; b++) {
        int L = 1 << b;
        const double *y = hdc_lloyd_levels[b];
        double t[17], e2 = 0, worst = 0;
        t[0] = -INFINITY;
        t[L] = INFINITY;
        for (int c = 1; c < L; c++) t[c] = (y[c - 1] + y[c]) / 2;
        for (int c = 0; c < L; c++) {
            double p = Phi(t[c + 1]) - Phi(t[c]);
            double cen = (phi(t[c]) - phi(t[c + 1])) / p; /* centroid of the cell */
            worst = fmax(worst, fabs(cen - y[c]));
            e2 += p * y[c] * y[c];
            if (c) CHECK(y[c] > y[c - 1], "levels ascending b=%d", b);
        }
        CHECK(worst < 1e-9, "b=%d: Lloyd-Max centroid condition off by %.3g", b, worst);
        CHECK(fabs((1 - e2) - hdc_lloyd_mse[b]) < 1e-9, "b=%d: mse %.12f vs table %.12f", b,
              1 - e2, hdc_lloyd_mse[b]);
    }
}

/* ---- transform ---- */

static void test_fwht(void) {
    unsigned long long rng = 11;
    enum kvc_isa lv[KVC_ISA_COUNT];
    int nl = isa_levels(lv);
    for (int D = 64; D <= 256; D *= 2) {
        float x[256], y[256], ref[256];
        randn_vec(x, D, &rng);
        for (int i = 0; i < D; i++) {
            double s = 0;
            for (int j = 0; j < D; j++)
                s += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * x[j];
            ref[i] = (float)(s / sqrt((double)D));
        }
        float first[256];
        for (int l = 0; l < nl; l++) {
            memcpy(y, x, sizeof y);
            hdc_fwht(y, D, lv[l]);
            char what[64];
            snprintf(what, sizeof what, "fwht D=%d %s vs explicit Hadamard", D, kvc_isa_name(lv[l]));
            check_tensor(what, y, ref, D, 1e-5, 1e-5);
            if (l == 0) memcpy(first, y, sizeof first);
            else CHECK(memcmp(first, y, (size_t)D * 4) == 0, "fwht D=%d %s bit-identical to scalar", D, kvc_isa_name(lv[l]));
            hdc_fwht(y, D, lv[l]); /* self-inverse */
            snprintf(what, sizeof what, "fwht D=%d %s twice = identity", D, kvc_isa_name(lv[l]));
            check_tensor(what, y, x, D, 1e-5, 1e-5);
        }
    }
}

static void test_roundtrip(void) {
    unsigned long long rng = 12;
    enum kvc_isa lv[KVC_ISA_COUNT];
    int nl = isa_levels(lv);
    const int d = 64;
    for (int m = 1; m <= 8; m *= 2)
        for (int rounds = 1; rounds <= 2; rounds++) {
            struct hdc_cfg cfg = {.bits = 2, .expand = m, .scale = HDC_SCALE_RMS, .qbits = 32, .rounds = rounds};
            struct hdc_state st;
            kvc_error err;
            if (hdc_state_init(&st, d, &cfg, 1234 + m, &err)) {
                CHECK(0, "state init: %s", err.msg);
                continue;
            }
            /* injection: distinct slots */
            int dup = 0;
            for (int i = 0; i < d; i++)
                for (int j = 0; j < i; j++) dup |= st.pos[i] == st.pos[j];
            CHECK(!dup, "m=%d: injection slots distinct", m);
            float x[64], y[64], h[512];
            randn_vec(x, d, &rng);
            for (int l = 0; l < nl; l++) {
                hdc_forward(&st, x, h, lv[l]);
                double nh = sqrt(dotd(h, h, st.D)), nx = sqrt(dotd(x, x, d));
                CHECK(fabs(nh - nx) < 1e-5 * nx, "m=%d rounds=%d: ||h|| %.7g = ||x|| %.7g", m, rounds, nh, nx);
                hdc_inverse(&st, h, y, lv[l]);
                char what[80];
                snprintf(what, sizeof what, "bind/unbind round trip m=%d rounds=%d %s", m, rounds, kvc_isa_name(lv[l]));
                check_tensor(what, y, x, d, 1e-5, 0);
            }
            /* spreading: with m > 1 the energy is spread over all D coordinates (no pair of
             * identical copies as zero padding would give) */
            if (m > 1 && rounds == 1) {
                float e[64] = {0};
                e[0] = 1;
                hdc_forward(&st, e, h, KVC_ISA_SCALAR);
                int zero = 0;
                for (int i = 0; i < st.D; i++) zero += h[i] == 0.0f;
                CHECK(zero == 0, "m=%d: e_0 spreads over all D coordinates (%d zeros)", m, zero);
                randn_vec(x, d, &rng);
                hdc_forward(&st, x, h, KVC_ISA_SCALAR);
                int copies = 1;
                for (int i = 0; i < d; i++) copies &= h[i] == h[i + st.D / 2];
                CHECK(!copies, "m=%d: halves are not copies", m);
            }
            hdc_state_release(&st);
        }
}

/* ---- the 1-bit estimator: unbiased, variance ~ ((pi/2) |q|^2 |k|^2 - (q.k)^2) / D ---- */

static void estimator_stats(const float *q, const float *k, int d, int m, int rounds, int seeds,
                            double *mean_err, double *se, double *var, double *theory) {
    struct hdc_cfg cfg = {.bits = 1, .expand = m, .scale = 0, .qbits = 32, .rounds = rounds};
    double s1 = 0, s2 = 0, qk = dotd(q, k, d);
    float h[512], *qp = malloc(sizeof(float) * (size_t)hdc_qp_floats(512, 1));
    uint8_t row[2 + 512 / 8];
    for (int sd = 0; sd < seeds; sd++) {
        struct hdc_state st;
        if (hdc_state_init(&st, d, &cfg, 0x9000ull + (uint64_t)sd * 7919, NULL)) {
            CHECK(0, "state");
            break;
        }
        hdc_forward(&st, k, h, KVC_ISA_SCALAR);
        hdc_quantize(&st, h, row);
        hdc_prepare(&st, q, qp, KVC_ISA_SCALAR);
        float est;
        hdc_ops[KVC_ISA_SCALAR].score(&st, qp, row, st.row_bytes, 1, &est);
        /* the f16 norm is a fixed rounding per k: compare with the estimator's own target */
        double e = est - qk * (double)kvc_f16_to_f32(kvc_f32_to_f16((float)sqrt(dotd(k, k, d)))) / sqrt(dotd(k, k, d));
        s1 += e;
        s2 += e * e;
        hdc_state_release(&st);
    }
    free(qp);
    double D = (double)d * m, nq = dotd(q, q, d), nk = dotd(k, k, d);
    *mean_err = s1 / seeds;
    *var = s2 / seeds - *mean_err * *mean_err;
    *se = sqrt(*var / seeds);
    /* random orthonormal spreading (docs/hdc.md): the part of q along k contributes
     * (pi/2 - 3/2) (q.k)^2, the orthogonal part (pi/2 - 1) (|q|^2|k|^2 - (q.k)^2) */
    *theory = ((M_PI / 2 - 1) * (nq * nk - qk * qk) + (M_PI / 2 - 1.5) * qk * qk) / D;
}

static void test_estimator(void) {
    unsigned long long rng = 99;
    const int d = 64, seeds = 2000;
    float q[64], k[64];
    for (int trial = 0; trial < 3; trial++) {
        randn_vec(q, d, &rng);
        randn_vec(k, d, &rng);
        if (trial == 1) /* strongly correlated pair: q.k ~ 0.8 |q||k| */
            for (int j = 0; j < d; j++) k[j] = 0.8f * q[j] + 0.6f * k[j];
        if (trial == 2) /* anti-correlated */
            for (int j = 0; j < d; j++) k[j] = -0.5f * q[j] + 0.87f * k[j];
        for (int m = 1; m <= 4; m *= 2)
            for (int rounds = 2; rounds >= 1; rounds--) {
                if (rounds == 1 && m > 1) continue;
                double me = 0, se = 0, var = 0, th = 1;
                estimator_stats(q, k, d, m, rounds, seeds, &me, &se, &var, &th);
                double qk = dotd(q, k, d);
                printf("b=1 estimator trial %d m=%d rounds=%d: q.k %+.4f  mean error %+.5f (%+.2f SE)  "
                       "var %.5f  theory %.5f (ratio %.3f)\n",
                       trial, m, rounds, qk, me, se > 0 ? me / se : 0, var, th, var / th);
                if (rounds == 1) continue; /* one round: biased for spiky or expanded rows */
                CHECK(fabs(me) < 3 * se, "b=1 estimator unbiased: trial %d m=%d mean error %.5f, SE %.5f", trial, m, me, se);
                CHECK(fabs(var / th - 1) < 0.2, "b=1 estimator variance: trial %d m=%d %.5f vs theory %.5f", trial, m, var, th);
            }
    }
}

/* ---- fused kernels against decode-then-dot (float64), all levels against scalar ---- */

static const char *const all_specs[] = {
    "hdc:bits=1", "hdc:bits=1,expand=2", "hdc:bits=1,expand=4,rounds=2", "hdc:bits=1,qbits=1",
    "hdc:bits=1,qbits=1,expand=8", "hdc:bits=2", "hdc:bits=2,expand=4,scale=ls,seed=77",
    "hdc:bits=3", "hdc:bits=3,scale=rms", "hdc:bits=3,expand=2,scale=norm", "hdc:bits=4",
    "hdc:bits=4,expand=2,rounds=2", "hdc:bits=2,expand=16", "hdc:bits=4,expand=8",
};

/* every spec's kernels at head dimension d (64 and 128) */
static void test_kernels(int d) {
    unsigned long long rng = 5;
    const int n = 37;
    enum kvc_isa lv[KVC_ISA_COUNT];
    int nl = isa_levels(lv);
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d);
    float q[128], w[37], sc[KVC_ISA_COUNT][37], out[KVC_ISA_COUNT][128];
    for (size_t si = 0; si < sizeof all_specs / sizeof *all_specs; si++) {
        const char *spec = all_specs[si];
        struct tslot ts[KVC_ISA_COUNT];
        int ok = 1;
        for (int l = 0; l < nl; l++) ok &= tslot_make(&ts[l], spec, d, 4242, 0, lv[l]);
        CHECK(ok, "slots for %s", spec);
        if (!ok) continue;
        /* float kernels here; the int8 scores have their own test (test_i8) */
        for (int l = 0; l < nl; l++) {
            ((struct hdc_state *)ts[l].slot.state)->use_i8 = 0;
            ((struct hdc_state *)ts[l].slot.state)->use_v8 = 0; /* int8 value sums: test_vsum */
        }
        const struct kv_slot *s0 = &ts[0].slot;
        const struct hdc_state *st = s0->state;
        for (int i = 0; i < n * d; i++) x[i] = t_randn(&rng) * (1.0f + (float)(i / d % 5));
        randn_vec(q, d, &rng);
        for (int i = 0; i < n; i++) w[i] = (i % 4 == 1) ? 0.0f : (float)fabs(t_randn(&rng));
        size_t rb = s0->row_bytes;
        CHECK(rb == st->row_bytes && rb == 2 + (size_t)st->bits * st->D / 8, "%s row bytes %zu", spec, rb);
        uint8_t *codes[KVC_ISA_COUNT];
        float *qp[KVC_ISA_COUNT], *acc[KVC_ISA_COUNT];
        for (int l = 0; l < nl; l++) {
            const struct kv_slot *s = &ts[l].slot;
            codes[l] = kvc_alloc_aligned(rb * n + 64);
            qp[l] = kvc_alloc_aligned(sizeof(float) * (size_t)s->qp_floats);
            acc[l] = kvc_alloc_aligned(sizeof(float) * (size_t)s->acc_floats);
            s->k->encode(s, x, 0, n, codes[l]);
            s->k->prepare_query(s, q, qp[l]);
            s->k->score(s, qp[l], codes[l], 0, n, sc[l]);
            s->k->accumulate(s, w, codes[l], 0, n, acc[l]);
            s->k->finish(s, acc[l], out[l]);
        }
        /* decode-then-dot in float64 */
        s0->k->decode(s0, codes[0], 0, n, y);
        double ref[37], refo[128] = {0}, mag = 0, omag = 0;
        for (int i = 0; i < n; i++) {
            ref[i] = dotd(q, y + i * d, d);
            mag = fmax(mag, sqrt(dotd(q, q, d) * dotd(y + i * d, y + i * d, d)));
            for (int j = 0; j < d; j++) refo[j] += (double)w[i] * y[i * d + j];
        }
        for (int j = 0; j < d; j++) omag = fmax(omag, fabs(refo[j]));
        float reff[37], refof[128];
        for (int i = 0; i < n; i++) reff[i] = (float)ref[i];
        for (int j = 0; j < d; j++) refof[j] = (float)refo[j];
        char what[128];
        if (st->qbits == 1) {
            /* popcount scores: ||q|| ||k|| cos(pi h / D) from the signs of Hq and the codes */
            float h[HDC_MAX_D];
            hdc_forward(st, q, h, KVC_ISA_SCALAR);
            for (int i = 0; i < n; i++) {
                const uint8_t *row = codes[0] + i * rb;
                int ham = 0;
                for (int c = 0; c < st->D; c++) ham += (h[c] >= 0) != ((row[2 + c / 8] >> (c % 8)) & 1);
                reff[i] = (float)(sqrt(dotd(q, q, d)) * hdc_row_f16(row)) * st->cos_tab[ham];
            }
            snprintf(what, sizeof what, "%s popcount score vs explicit Hamming", spec);
            check_tensor(what, sc[0], reff, n, 1e-5 * mag, 1e-5);
        } else {
            snprintf(what, sizeof what, "%s fused score vs decode-then-dot", spec);
            check_tensor(what, sc[0], reff, n, 2e-5 * mag, 1e-5);
        }
        snprintf(what, sizeof what, "%s accumulate+finish vs sum of decoded", spec);
        check_tensor(what, out[0], refof, d, 2e-5 * omag, 1e-5);
        /* decode is the quantized row: error small for b >= 3 */
        if (st->bits >= 3) {
            double e = 0, t = 0;
            for (int i = 0; i < n * d; i++) {
                e += (double)(y[i] - x[i]) * (y[i] - x[i]);
                t += (double)x[i] * x[i];
            }
            CHECK(e / t < (st->bits == 3 ? 0.06 : 0.02), "%s: relative reconstruction MSE %.4f", spec, e / t);
        }
        for (int l = 1; l < nl; l++) {
            const char *iname = kvc_isa_name(lv[l]);
            CHECK(memcmp(codes[0], codes[l], rb * n) == 0, "%s: %s encoder bytes equal scalar", spec, iname);
            snprintf(what, sizeof what, "%s %s prepared query", spec, iname);
            check_tensor(what, qp[l], qp[0], st->D, 1e-6, 1e-6);
            CHECK(memcmp(qp[l] + st->D, qp[0] + st->D, sizeof(float) * (size_t)(s0->qp_floats - st->D)) == 0 ||
                      memcmp(qp[l], qp[0], sizeof(float) * (size_t)st->D) != 0,
                  "%s: %s lookup tables bit-identical to scalar", spec, iname);
            snprintf(what, sizeof what, "%s %s score", spec, iname);
            if (st->qbits == 1) CHECK(memcmp(sc[l], sc[0], sizeof(float) * n) == 0, "%s: popcount scores exact", what);
            else check_tensor(what, sc[l], sc[0], n, 1e-5 * mag, 1e-5);
            snprintf(what, sizeof what, "%s %s accumulate+finish", spec, iname);
            check_tensor(what, out[l], out[0], d, 1e-5 * omag, 1e-5);
            /* decode at this level */
            float *y2 = malloc(sizeof(float) * n * d);
            ts[l].slot.k->decode(&ts[l].slot, codes[l], 0, n, y2);
            snprintf(what, sizeof what, "%s %s decode", spec, iname);
            check_tensor(what, y2, y, n * d, 1e-5, 1e-5);
            free(y2);
        }
        /* grouped kernels (3 query heads, 3 weight rows at once) vs the scalar per-head ones */
        for (int l = 1; l < nl; l++) {
            const struct kv_slot *s = &ts[l].slot;
            if (!s->k->score_g && !s->k->accumulate_g) continue;
            enum { G = 3 };
            const size_t qs = (size_t)s->qp_floats, as = (size_t)s->acc_floats;
            float *qg = kvc_alloc_aligned(sizeof(float) * G * qs), *ag = kvc_alloc_aligned(sizeof(float) * G * as);
            float *a1 = kvc_alloc_aligned(sizeof(float) * as), og[G * 37], wg[G * 37], one[37], q2[128];
            for (int g = 0; g < G; g++) {
                randn_vec(q2, d, &rng);
                s0->k->prepare_query(s0, q2, qg + g * qs);
                for (int i = 0; i < n; i++) wg[g * 37 + i] = (i + g) % 4 == 1 ? 0.0f : (float)fabs(t_randn(&rng));
            }
            memset(ag, 0, sizeof(float) * G * as);
            if (s->k->score_g) s->k->score_g(s, G, qg, qs, codes[0], 0, n, og, 37);
            if (s->k->accumulate_g) s->k->accumulate_g(s, G, wg, 37, codes[0], 0, n, ag, as);
            for (int g = 0; g < G; g++) {
                s0->k->score(s0, qg + g * qs, codes[0], 0, n, one);
                snprintf(what, sizeof what, "%s %s score_g head %d vs scalar", spec, kvc_isa_name(lv[l]), g);
                if (s->k->score_g) check_tensor(what, og + g * 37, one, n, 1e-5 * mag + 1e-4, 1e-5);
                memset(a1, 0, sizeof(float) * as);
                s0->k->accumulate(s0, wg + g * 37, codes[0], 0, n, a1);
                snprintf(what, sizeof what, "%s %s accumulate_g head %d vs scalar", spec, kvc_isa_name(lv[l]), g);
                if (s->k->accumulate_g) check_tensor(what, ag + g * as, a1, (int)as, 1e-5 * (omag + 1), 1e-5);
            }
            kvc_free_aligned(qg);
            kvc_free_aligned(ag);
            kvc_free_aligned(a1);
        }
        /* accumulate in pieces = at once (tails, zero weights) */
        {
            const struct kv_slot *s = &ts[nl - 1].slot;
            memset(acc[0], 0, sizeof(float) * (size_t)s->acc_floats);
            s->k->accumulate(s, w, codes[0], 0, 5, acc[0]);
            s->k->accumulate(s, w + 5, codes[0] + 5 * rb, 5, n - 5, acc[0]);
            float o2[128];
            s->k->finish(s, acc[0], o2);
            snprintf(what, sizeof what, "%s accumulate in two calls", spec);
            check_tensor(what, o2, out[nl - 1], d, 1e-5 * omag, 1e-5);
        }
        for (int l = 0; l < nl; l++) {
            kvc_free_aligned(codes[l]);
            kvc_free_aligned(qp[l]);
            kvc_free_aligned(acc[l]);
            tslot_free(&ts[l]);
        }
    }
    free(x);
    free(y);
}

/* ---- popcount kernels ---- */

static void test_popcount(void) {
    unsigned long long rng = 77;
    for (int D = 64; D <= 1024; D *= 2) {
        struct hdc_cfg cfg = {.bits = 1, .expand = D / 64, .qbits = 1, .rounds = 1};
        struct hdc_state st;
        if (hdc_state_init(&st, 64, &cfg, 5, NULL)) {
            CHECK(0, "state");
            continue;
        }
        const int n = 45;
        size_t stride = st.row_bytes + 6; /* as in hdc-select: rows at a larger stride */
        uint8_t *rows = malloc(stride * n);
        for (size_t i = 0; i < stride * n; i++) rows[i] = (uint8_t)t_rng_next(&rng);
        for (int i = 0; i < n; i++) {
            uint16_t f = kvc_f32_to_f16(1.0f + (float)i);
            memcpy(rows + i * stride, &f, 2);
        }
        float q[64], *qp = kvc_alloc_aligned(sizeof(float) * (size_t)hdc_qp_floats(D, 1));
        randn_vec(q, 64, &rng);
        hdc_prepare(&st, q, qp, KVC_ISA_SCALAR);
        float a[45], b[45], c[45];
        hdc_ham_scalar(&st, qp, rows, stride, n, a);
        /* explicit */
        for (int i = 0; i < n; i++) {
            int h = 0;
            for (int w = 0; w < st.W; w++) {
                uint64_t qw, kw;
                memcpy(&qw, (const char *)(qp + D + 16) + 8 * w, 8);
                kw = hdc_row_word(rows + i * stride, w);
                for (int bit = 0; bit < 64; bit++) h += ((qw ^ kw) >> bit) & 1;
            }
            c[i] = qp[D + 1] * hdc_row_f16(rows + i * stride) * st.cos_tab[h];
        }
        CHECK(memcmp(a, c, sizeof a) == 0, "D=%d: scalar popcount score exact", D);
        if (kvc_cpu_has_vpopcntdq()) {
            for (int nn = 1; nn <= n; nn += 11) {
                memset(b, 0, sizeof b);
                hdc_ham_vpopcnt(&st, qp, rows, stride, nn, b);
                CHECK(memcmp(a, b, sizeof(float) * nn) == 0, "D=%d n=%d: VPOPCNTDQ equals scalar popcount", D, nn);
                if (nn < n) CHECK(b[nn] == 0.0f, "D=%d n=%d: VPOPCNTDQ writes no further", D, nn);
            }
        } else {
            printf("SKIP: no AVX-512 VPOPCNTDQ on this CPU\n");
        }
        /* the AVX-512 kernel set with VPOPCNTDQ disabled (as on a CPU without it) */
        for (int l = 1; l < KVC_ISA_COUNT; l++) {
            if (!kvc_isa_supported((enum kvc_isa)l)) continue;
            for (int on = 0; on <= 1; on++) {
                st.use_vpopcnt = on && kvc_cpu_has_vpopcntdq();
                memset(b, 0, sizeof b);
                hdc_ops[l].ham(&st, qp, rows, stride, n, b);
                CHECK(memcmp(a, b, sizeof a) == 0, "D=%d %s (vpopcnt %d) popcount equals scalar", D,
                      kvc_isa_name((enum kvc_isa)l), st.use_vpopcnt);
            }
        }
        kvc_free_aligned(qp);
        free(rows);
        hdc_state_release(&st);
    }
}

/* ---- int8 (VNNI) scores ---- */

/* The int8 reference against float64 decode-then-dot within the rounding bound stated in
 * hdc_common.h, and the VNNI kernel (grouped and through the codec's entry points) bit-equal
 * to the int8 reference, on random rows at two strides. */
static void test_i8(void) {
    unsigned long long rng = 99;
    static const char *const specs[] = {"hdc:bits=2", "hdc:bits=3", "hdc:bits=4", "hdc:bits=3,expand=2",
                                        "hdc:bits=2,expand=4", "hdc:bits=4,expand=2"};
    const int d = 64, n = 45, G = 5;
    for (size_t si = 0; si < sizeof specs / sizeof *specs; si++) {
        struct tslot ts;
        if (!tslot_make(&ts, specs[si], d, 31, 0, KVC_ISA_SCALAR)) {
            CHECK(0, "slot %s", specs[si]);
            continue;
        }
        const struct kv_slot *s = &ts.slot;
        struct hdc_state *st = s->state;
        const int D = st->D;
        for (int extra = 0; extra <= 6; extra += 6) {
            size_t stride = st->row_bytes + (size_t)extra;
            uint8_t *rows = malloc(stride * n);
            for (size_t i = 0; i < stride * n; i++) rows[i] = (uint8_t)t_rng_next(&rng);
            for (int i = 0; i < n; i++) {
                uint16_t f = kvc_f32_to_f16((i % 7 == 3 ? -0.5f : 0.25f) * (1.0f + (float)i));
                memcpy(rows + i * stride, &f, 2);
            }
            const size_t qs = (size_t)s->qp_floats;
            float *qp = kvc_alloc_aligned(sizeof(float) * qs * G);
            float q[64], ref[45], fl[45], og[G * 48];
            for (int g = 0; g < G; g++) {
                randn_vec(q, d, &rng);
                if (g == 1) q[5] = 40.0f; /* an outlier coordinate: coarse int8 steps */
                s->k->prepare_query(s, q, qp + g * qs);
            }
            for (int g = 0; g < G; g++) {
                const float *qg = qp + g * qs;
                hdc_score_i8_scalar(st, qg, rows, stride, n, ref);
                hdc_ops[KVC_ISA_SCALAR].score(st, qg, rows, stride, n, fl);
                const float *p = qg + hdc_qp_i8off(D, st->bits);
                double sq = 0; /* max |Hq| / 127 */
                for (int i = 0; i < D; i++) sq = fmax(sq, fabs((double)qg[i]));
                sq /= 127.0;
                int bad = 0;
                for (int r = 0; r < n; r++) {
                    const uint8_t *row = rows + r * stride;
                    double dot = 0, sl = 0, sqa = 0;
                    for (int i = 0; i < D; i++) {
                        double lv = st->lev[hdc_code(st, row, i)];
                        dot += (double)qg[i] * lv;
                        sl += fabs(lv);
                        sqa += fabs((double)qg[i]);
                    }
                    double sc = hdc_row_f16(row), exact = sc * dot + qg[D + 2];
                    double bound = fabs(sc) * (sq / 2 * sl + sqa / (2 * st->l8s) + D * sq / (4 * st->l8s));
                    double tol = bound + 1e-5 * fabs(sc) * sqa * 3 + 1e-6;
                    if (!(fabs(ref[r] - exact) <= tol) || !(fabs(fl[r] - exact) <= 1e-5 * fabs(sc) * sqa * 3 + 1e-6))
                        bad++;
                }
                (void)p;
                CHECK(bad == 0, "%s stride +%d head %d: int8 scores within the rounding bound of float64 (%d rows off)",
                      specs[si], extra, g, bad);
            }
            if (kvc_cpu_has_vnni_vbmi()) {
                for (int nn = 1; nn <= n; nn += 11) {
                    for (int i = 0; i < G * 48; i++) og[i] = 0.0f;
                    hdc_rows_score_g_i8(st, G, qp, qs, rows, stride, nn, og, 48);
                    int eq = 1, past = 1;
                    for (int g = 0; g < G; g++) {
                        hdc_score_i8_scalar(st, qp + g * qs, rows, stride, nn, ref);
                        eq &= memcmp(og + g * 48, ref, sizeof(float) * nn) == 0;
                        for (int r = nn; r < 48; r++) past &= og[g * 48 + r] == 0.0f;
                    }
                    CHECK(eq, "%s stride +%d n=%d: VNNI int8 scores (5 heads) equal the scalar int8 reference",
                          specs[si], extra, nn);
                    CHECK(past, "%s n=%d: VNNI int8 scores write no further", specs[si], nn);
                }
                if (extra == 0) { /* the codec's AVX-512 entry points take the int8 path */
                    struct tslot t5;
                    if (tslot_make(&t5, specs[si], d, 31, 0, KVC_ISA_AVX512)) {
                        CHECK(((struct hdc_state *)t5.slot.state)->use_i8 == 1, "%s: int8 scores on", specs[si]);
                        t5.slot.k->score_g(&t5.slot, G, qp, qs, rows, 0, n, og, 48);
                        t5.slot.k->score(&t5.slot, qp + qs, rows, 0, n, fl);
                        hdc_score_i8_scalar(st, qp + qs, rows, stride, n, ref);
                        CHECK(memcmp(og + 48, ref, sizeof(float) * n) == 0 && memcmp(fl, ref, sizeof(float) * n) == 0,
                              "%s: AVX-512 score_g / score = int8 reference", specs[si]);
                        tslot_free(&t5);
                    }
                }
            } else {
                printf("SKIP: no AVX-512 VNNI + VBMI on this CPU (int8 kernel not run)\n");
            }
            kvc_free_aligned(qp);
            free(rows);
        }
        tslot_free(&ts);
    }
}

/* ---- int8 value sums ---- */

/* hdc_vsum_scalar against float64 sums of the decoded rows within the bound of hdc_common.h
 * (per chunk: (tmax / 510) sum |lev8v| / v8s + v8err sum t), the VNNI kernel and the codec's
 * AVX-512 accumulate / accumulate_g against the reference (bit-equal). Heads: dense weights,
 * one peak per chunk with the rest <= 1e-4, runs of zeros, a chunk with negative scales (the
 * float path), a chunk of zero weights. */
static void test_vsum(void) {
    unsigned long long rng = 123;
    static const char *const specs[] = {"hdc:bits=2", "hdc:bits=3", "hdc:bits=3,expand=2"};
    enum { N = 203, G = 5, AS = 130 };
    char what[160];
    for (size_t si = 0; si < sizeof specs / sizeof *specs; si++) {
        struct tslot ts;
        if (!tslot_make(&ts, specs[si], 64, 7, 1, KVC_ISA_SCALAR)) {
            CHECK(0, "slot %s", specs[si]);
            continue;
        }
        const struct hdc_state *st = ts.slot.state;
        const int D = st->D, L = 1 << st->bits;
        CHECK(st->v8err <= 0.5f / st->v8s && st->v8err < 0.006f, "%s: int8 value levels within %.4f of the levels",
              specs[si], st->v8err);
        for (int extra = 0; extra <= 6; extra += 6) {
            const size_t stride = st->row_bytes + (size_t)extra;
            uint8_t *rows = malloc(stride * N);
            for (size_t i = 0; i < stride * N; i++) rows[i] = (uint8_t)t_rng_next(&rng);
            for (int i = 0; i < N; i++) {
                float sc = 0.05f + (float)fabs(t_randn(&rng));
                if (i >= 70 && i < 74) sc = -sc; /* chunk 1: negative scales, head 3's float path */
                uint16_t f = kvc_f32_to_f16(sc);
                memcpy(rows + i * stride, &f, 2);
            }
            float w[G * N];
            for (int r = 0; r < N; r++) {
                w[0 * N + r] = (float)fabs(t_randn(&rng));
                w[1 * N + r] = r % 64 == 17 ? 1.0f : 1e-4f * fabsf(t_randf(&rng));
                w[2 * N + r] = (r >= 10 && r < 50) || r % 3 == 0 ? 0.0f : fabsf(t_randf(&rng));
                w[3 * N + r] = fabsf(t_randf(&rng));
                w[4 * N + r] = r >= 64 && r < 128 ? 0.0f : fabsf(t_randf(&rng));
            }
            /* heads 0-2, 4 never touch the negative rows through the int path: zero them there */
            for (int g = 0; g < G; g++)
                if (g != 3)
                    for (int r = 70; r < 74; r++) w[g * N + r] = 0.0f;
            float *ref = malloc(sizeof(float) * G * AS), *simd = malloc(sizeof(float) * G * AS);
            for (int i = 0; i < G * AS; i++) ref[i] = 0.5f * (float)t_randn(&rng);
            memcpy(simd, ref, sizeof(float) * G * AS);
            float *init = malloc(sizeof(float) * G * AS);
            memcpy(init, ref, sizeof(float) * G * AS);
            hdc_vsum_scalar(st, G, w, N, rows, stride, N, ref, AS);
            int bad = 0;
            double worst = 0;
            for (int g = 0; g < G; g++)
                for (int i = 0; i < D; i++) {
                    double exact = init[g * AS + i], bound = 1e-6 * fabs(init[g * AS + i]);
                    for (int c0 = 0; c0 < N; c0 += HDC_VSUM_CHUNK) {
                        const int nn = N - c0 < HDC_VSUM_CHUNK ? N - c0 : HDC_VSUM_CHUNK;
                        double tmax = 0, st_ = 0, sl = 0, mag = 0;
                        int neg = 0;
                        for (int r = c0; r < c0 + nn; r++) {
                            const uint8_t *row = rows + r * stride;
                            const int code = hdc_code(st, row, i);
                            double t = w[g * N + r] == 0.0f ? 0.0 : (double)w[g * N + r] * hdc_row_f16(row);
                            exact += t * st->lev[code];
                            neg |= t < 0;
                            tmax = fmax(tmax, t);
                            st_ += fabs(t);
                            sl += abs(st->lev8v[code]) / (double)st->v8s;
                            mag += fabs(t * st->lev[code]);
                        }
                        bound += neg ? 1e-5 * mag : tmax / 510 * sl + st->v8err * st_ + 1e-5 * mag;
                    }
                    const double e = fabs(ref[g * AS + i] - exact);
                    worst = fmax(worst, e / bound);
                    if (!(e <= bound)) bad++;
                }
            CHECK(bad == 0, "%s stride +%d: int8 value sums within the rounding bound of float64 (%d off, worst %.2f of it)",
                  specs[si], extra, bad, worst);
            (void)L;
            if (kvc_cpu_has_vnni_vbmi()) {
                static const int ns[] = {1, 3, 5, 64, 65, 130, N};
                for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
                    memcpy(ref, init, sizeof(float) * G * AS);
                    memcpy(simd, init, sizeof(float) * G * AS);
                    hdc_rows_vsum_g(st, G, w, N, rows, stride, ns[k], simd, AS);
                    if (hdc_vsum_fits(st, stride)) {
                        hdc_vsum_scalar(st, G, w, N, rows, stride, ns[k], ref, AS);
                        /* head 3 meets the negative scales (float kernels, other order) from n = 71 */
                        int eq = 1;
                        for (int g = 0; g < G; g++)
                            if (g != 3 || ns[k] <= 70) eq &= memcmp(ref + g * AS, simd + g * AS, sizeof(float) * AS) == 0;
                        CHECK(eq, "%s stride +%d n=%d: VNNI value sums (5 heads) equal the scalar reference", specs[si],
                              extra, ns[k]);
                        snprintf(what, sizeof what, "%s stride +%d n=%d: head 3 (float chunk)", specs[si], extra, ns[k]);
                        check_tensor(what, simd + 3 * AS, ref + 3 * AS, D, 1e-5, 1e-5);
                    } else { /* the float kernel: as the scalar float one */
                        for (int g = 0; g < G; g++)
                            hdc_ops[KVC_ISA_SCALAR].acc(st, w + g * N, rows, stride, ns[k], ref + g * AS);
                        snprintf(what, sizeof what, "%s stride +%d n=%d: float kernel for this shape", specs[si], extra, ns[k]);
                        check_tensor(what, simd, ref, G * AS, 1e-5, 1e-5);
                    }
                }
                if (extra == 0) { /* the codec's AVX-512 entry points */
                    struct tslot t5;
                    if (tslot_make(&t5, specs[si], 64, 7, 1, KVC_ISA_AVX512)) {
                        const int on = ((struct hdc_state *)t5.slot.state)->use_v8;
                        CHECK(on == hdc_vsum_fits(st, stride), "%s: int8 value sums on iff the shape fits", specs[si]);
                        if (on) {
                            memcpy(ref, init, sizeof(float) * G * AS);
                            memcpy(simd, init, sizeof(float) * G * AS);
                            hdc_vsum_scalar(st, G, w, N, rows, stride, N, ref, AS);
                            t5.slot.k->accumulate_g(&t5.slot, G, w, N, rows, 0, N, simd, AS);
                            int eq = 1;
                            for (int g = 0; g < G; g++)
                                if (g != 3) eq &= memcmp(ref + g * AS, simd + g * AS, sizeof(float) * AS) == 0;
                            CHECK(eq, "%s: AVX-512 accumulate_g = reference", specs[si]);
                            snprintf(what, sizeof what, "%s: AVX-512 accumulate_g head 3", specs[si]);
                            check_tensor(what, simd + 3 * AS, ref + 3 * AS, D, 1e-5, 1e-5);
                            memcpy(simd, init, sizeof(float) * AS);
                            t5.slot.k->accumulate(&t5.slot, w + 2 * N, rows, 0, N, simd);
                            memcpy(ref, init, sizeof(float) * AS);
                            hdc_vsum_scalar(st, 1, w + 2 * N, N, rows, stride, N, ref, AS);
                            CHECK(memcmp(ref, simd, sizeof(float) * D) == 0, "%s: AVX-512 accumulate = reference",
                                  specs[si]);
                        }
                        tslot_free(&t5);
                    }
                }
            } else {
                printf("SKIP: no AVX-512 VNNI + VBMI on this CPU (int8 value kernel not run)\n");
            }
            free(rows);
            free(ref);
            free(simd);
            free(init);
        }
        tslot_free(&ts);
    }
}

/* ---- hdc-select ---- */

static void test_topk(void) {
    unsigned long long rng = 3;
    static float v[20000];
    static uint8_t sel[20000];
    static int selx[20000];
    for (int trial = 0; trial < 80; trial++) {
        int n = 1 + (int)(t_rng_next(&rng) % (trial < 50 ? 300 : 20000));
        int k = 1 + (int)(t_rng_next(&rng) % (unsigned)(trial % 2 ? n : (n < 300 ? n : 300)));
        for (int i = 0; i < n; i++) {
            float r = t_randn(&rng);
            v[i] = trial % 3 == 0 ? (float)(int)(r * 3) : trial % 3 == 1 ? r : -fabsf(r) * 1e-30f;
            if (trial % 7 == 0 && i % 5 == 0) v[i] = -INFINITY;
        }
        int ties;
        uint32_t key = hdc_topk_key(v, n, k, &ties);
        int cnt = 0;
        float minsel = INFINITY, maxun = -INFINITY;
        for (int i = 0; i < n; i++) {
            uint32_t kr = hdc_fkey(v[i]);
            sel[i] = kr > key || (kr == key && ties-- > 0);
            cnt += sel[i];
            if (sel[i]) minsel = fminf(minsel, v[i]);
            else maxun = fmaxf(maxun, v[i]);
        }
        CHECK(cnt == k, "topk trial %d: %d selected, k %d", trial, cnt, k);
        CHECK(cnt == n || minsel >= maxun, "topk trial %d: selected min %g < unselected max %g", trial, minsel, maxun);
        /* hdc_select_topk (sampled threshold + compaction) gives the same set at every level */
        for (int l = 0; l < KVC_ISA_COUNT; l++) {
            if (!kvc_isa_supported((enum kvc_isa)l)) continue;
            int m = hdc_select_topk(v, n, k, selx, l), same = m == k, p = 0;
            for (int j = 0; j < n && same; j++)
                if (sel[j]) same = p < m && selx[p++] == j;
            same &= p == m;
            CHECK(same, "hdc_select_topk trial %d %s: same set as radix select (%d of %d)", trial,
                  kvc_isa_name((enum kvc_isa)l), m, k);
        }
        /* ties broken by lower index */
        int ok = 1;
        for (int i = 0; i < n && n <= 300; i++)
            for (int j = 0; j < i; j++)
                if (v[i] == v[j] && sel[i] && !sel[j]) ok = 0;
        CHECK(ok, "topk trial %d: ties go to lower indices", trial);
    }
}

static void test_select(void) {
    unsigned long long rng = 21;
    const int d = 64;
    enum kvc_isa lv[KVC_ISA_COUNT];
    int nl = isa_levels(lv);
    const char *inners[] = {"q8_0", "q4_0", "f16"};
    for (int ii = 0; ii < 3; ii++)
        for (int sim = 0; sim < 2; sim++) {
            for (int l = 0; l < nl; l++) {
                char spec[128], ispec[32];
                snprintf(spec, sizeof spec, "hdc-select:k=16,inner=%s%s", inners[ii], sim ? "" : ",sim=ham");
                snprintf(ispec, sizeof ispec, "%s", inners[ii]);
                struct tslot ts, ti;
                if (!tslot_make(&ts, spec, d, 777, 0, lv[l]) || !tslot_make(&ti, ispec, d, 777, 0, lv[l])) {
                    CHECK(0, "slots for %s", spec);
                    continue;
                }
                const struct kv_slot *s = &ts.slot, *si = &ti.slot;
                const int n = 200;
                CHECK(s->row_bytes == 2 + 128 / 8 + si->row_bytes, "%s row bytes %zu", spec, s->row_bytes);
                float *x = malloc(sizeof(float) * n * d), q[64];
                randn_vec(q, d, &rng);
                randn_vec(x, n * d, &rng);
                /* planted: 16 keys along q (the true top 16 by far) */
                int planted[16];
                for (int p = 0; p < 16; p++) {
                    planted[p] = 3 + p * 12 + (int)(t_rng_next(&rng) % 5);
                    for (int j = 0; j < d; j++) x[planted[p] * d + j] = 2.0f * q[j] + 0.3f * x[planted[p] * d + j];
                }
                uint8_t *codes = kvc_alloc_aligned(s->row_bytes * n), *icodes = kvc_alloc_aligned(si->row_bytes * n);
                float *qp = kvc_alloc_aligned(sizeof(float) * (size_t)s->qp_floats);
                float *qpi = kvc_alloc_aligned(sizeof(float) * (size_t)si->qp_floats);
                float out[200], iout[200];
                s->k->encode(s, x, 10, n, codes);
                si->k->encode(si, x, 10, n, icodes);
                s->k->prepare_query(s, q, qp);
                si->k->prepare_query(si, q, qpi);
                s->k->score(s, qp, codes, 10, n, out);
                si->k->score(si, qpi, icodes, 10, n, iout);
                int fin = 0, exact = 1, hit = 0;
                for (int i = 0; i < n; i++) {
                    if (out[i] == -INFINITY) continue;
                    fin++;
                    float one;
                    si->k->score(si, qpi, icodes + i * si->row_bytes, 10 + i, 1, &one);
                    exact &= out[i] == one && fabsf(one - iout[i]) <= 1e-5f * fabsf(iout[i]) + 1e-5f;
                    for (int p = 0; p < 16; p++) hit += planted[p] == i;
                }
                CHECK(fin == 16, "%s %s: %d finite scores, k = 16", spec, kvc_isa_name(lv[l]), fin);
                CHECK(exact, "%s %s: selected scores are the inner codec's", spec, kvc_isa_name(lv[l]));
                CHECK(hit == 16, "%s %s: planted top-16 found (%d)", spec, kvc_isa_name(lv[l]), hit);
                /* the selection is the top 16 of the sketch similarity */
                {
                    const struct hdc_state *sk = s->state; /* first member of the select state */
                    float *sims = malloc(sizeof(float) * n), *qs = kvc_alloc_aligned(sizeof(float) * (size_t)hdc_qp_floats(sk->D, 1));
                    hdc_prepare(sk, q, qs, KVC_ISA_SCALAR);
                    size_t stride = s->row_bytes;
                    if (sim) hdc_ops[KVC_ISA_SCALAR].score(sk, qs, codes, stride, n, sims);
                    else hdc_ham_scalar(sk, qs, codes, stride, n, sims);
                    float minsel = INFINITY, maxun = -INFINITY;
                    for (int i = 0; i < n; i++) {
                        if (out[i] != -INFINITY) minsel = fminf(minsel, sims[i]);
                        else maxun = fmaxf(maxun, sims[i]);
                    }
                    /* popcount sims are exact at every level; asym may differ by rounding */
                    CHECK(minsel >= maxun - (sim ? 1e-4f * fabsf(maxun) : 0.0f),
                          "%s %s: selection = sketch top-k (%g vs %g)", spec, kvc_isa_name(lv[l]), minsel, maxun);
                    free(sims);
                    kvc_free_aligned(qs);
                }
                /* n <= k: all exact */
                s->k->score(s, qp, codes, 10, 16, out);
                int allx = 1;
                for (int i = 0; i < 16; i++) {
                    float one;
                    si->k->score(si, qpi, icodes + i * si->row_bytes, 10 + i, 1, &one);
                    allx &= out[i] == one;
                }
                CHECK(allx, "%s %s: n <= k gives the inner scores", spec, kvc_isa_name(lv[l]));
                /* values: accumulate only non-zero weights, equal to the inner codec's */
                struct tslot tv;
                if (tslot_make(&tv, spec, d, 777, 1, lv[l])) {
                    const struct kv_slot *sv = &tv.slot;
                    uint8_t *vcodes = kvc_alloc_aligned(sv->row_bytes * n);
                    sv->k->encode(sv, x, 10, n, vcodes);
                    float w[200], *a1 = kvc_alloc_aligned(sizeof(float) * (size_t)sv->acc_floats),
                                  *a2 = kvc_alloc_aligned(sizeof(float) * (size_t)si->acc_floats);
                    for (int i = 0; i < n; i++) w[i] = i % 9 == 0 ? (float)fabs(t_randn(&rng)) : 0.0f;
                    sv->k->accumulate(sv, w, vcodes, 10, n, a1);
                    si->k->accumulate(si, w, icodes, 10, n, a2);
                    float o1[64], o2[64];
                    sv->k->finish(sv, a1, o1);
                    if (si->k->finish) si->k->finish(si, a2, o2);
                    else memcpy(o2, a2, sizeof o2);
                    char what[160];
                    snprintf(what, sizeof what, "%s %s values equal inner codec", spec, kvc_isa_name(lv[l]));
                    check_tensor(what, o1, o2, d, 1e-5, 1e-5);
                    float y1[64 * 4], y2[64 * 4];
                    sv->k->decode(sv, vcodes, 10, 4, y1);
                    si->k->decode(si, icodes, 10, 4, y2);
                    CHECK(memcmp(y1, y2, sizeof y1) == 0, "%s decode = inner decode", spec);
                    kvc_free_aligned(vcodes);
                    kvc_free_aligned(a1);
                    kvc_free_aligned(a2);
                    tslot_free(&tv);
                }
                free(x);
                kvc_free_aligned(codes);
                kvc_free_aligned(icodes);
                kvc_free_aligned(qp);
                kvc_free_aligned(qpi);
                tslot_free(&ts);
                tslot_free(&ti);
            }
        }
}

/* ---- centring on a calibrated mean (mean=auto|calib) ---- */

static void test_mean(void) {
    unsigned long long rng = 31;
    const int d = 64, n = 40;
    struct kvc_calib_id id = {.arch = "llama", .n_layer = 2, .n_head_kv = 2, .head_dim = d, .n_vocab = 10,
                              .rope_base = 10000.0f};
    struct kvc_calib *cal = NULL;
    kvc_error err = {0};
    if (kvc_calib_alloc(&id, &cal, &err)) {
        CHECK(0, "calib alloc: %s", err.msg);
        return;
    }
    float mu[2][64];
    for (int kind = 0; kind < 2; kind++)
        for (int j = 0; j < d; j++) mu[kind][j] = 3.0f * t_randn(&rng);
    memcpy(kvc_calib_slot_get(cal, 1, 0, KVC_CALIB_K_POST)->mean, mu[0], sizeof mu[0]);
    memcpy(kvc_calib_slot_get(cal, 1, 0, KVC_CALIB_V)->mean, mu[1], sizeof mu[1]);
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d), q[64], w[40];
    const char *specs[] = {"hdc:bits=3", "hdc:bits=1", "hdc:bits=2,expand=2", "hdc:bits=1,qbits=1,expand=2",
                           "hdc:bits=4,mean=calib"};
    for (size_t si = 0; si < sizeof specs / sizeof *specs; si++)
        for (int is_value = 0; is_value < 2; is_value++) {
            double err2[2] = {0, 0};
            for (int use = 0; use < 2; use++) {
                enum kvc_isa lv[KVC_ISA_COUNT];
                int nl = isa_levels(lv);
                float sc[KVC_ISA_COUNT][40], out[KVC_ISA_COUNT][64];
                static float ya0[40 * 128], ya[40 * 128]; /* decode_acc rows: scalar, this level */
                float refo_sum[64];
                for (int l = 0; l < nl; l++) {
                    struct kv_spec sp;
                    struct kv_slot sl;
                    if (kv_spec_parse(specs[si], &sp, &err)) {
                        CHECK(0, "%s", err.msg);
                        continue;
                    }
                    struct kv_slot_info info = {.d = d, .layer = 1, .head = 0, .is_value = is_value,
                                                .seed = 99, .calib = use ? cal : NULL};
                    kvc_status st = kv_slot_init(&sl, &sp, &info, lv[l], &err);
                    if (!use && strstr(specs[si], "mean=calib")) {
                        CHECK(st == KVC_ERR_CALIB && strstr(err.msg, "--kv-calib"), "%s without a calibration: %s",
                              specs[si], err.msg);
                        kv_spec_free(&sp);
                        continue;
                    }
                    if (st) {
                        CHECK(0, "%s: %s", specs[si], err.msg);
                        kv_spec_free(&sp);
                        continue;
                    }
                    struct hdc_state *hs = sl.state;
                    hs->use_i8 = 0; /* the float kernels (int8 scores: test_i8, centred rows included) */
                    hs->use_v8 = 0; /* (int8 value sums: test_vsum) */
                    CHECK(!hs->mu == !use, "%s: centred iff a calibration is given", specs[si]);
                    unsigned long long r2 = 77;
                    for (int i = 0; i < n * d; i++) x[i] = mu[is_value][i % d] + t_randn(&r2);
                    for (int j = 0; j < d; j++) q[j] = t_randn(&r2);
                    for (int i = 0; i < n; i++) w[i] = i % 3 ? (float)fabs(t_randn(&r2)) : 0.0f;
                    uint8_t *codes = kvc_alloc_aligned(sl.row_bytes * n);
                    float *qp = kvc_alloc_aligned(sizeof(float) * (size_t)sl.qp_floats);
                    float *acc = kvc_alloc_aligned(sizeof(float) * (size_t)sl.acc_floats);
                    sl.k->encode(&sl, x, 0, n, codes);
                    sl.k->decode(&sl, codes, 0, n, y);
                    sl.k->prepare_query(&sl, q, qp);
                    sl.k->score(&sl, qp, codes, 0, n, sc[l]);
                    sl.k->accumulate(&sl, w, codes, 0, 7, acc); /* in two calls */
                    sl.k->accumulate(&sl, w + 7, codes + 7 * sl.row_bytes, 7, n - 7, acc);
                    sl.k->finish(&sl, acc, out[l]);
                    /* decode_acc (value rows for batched attention): the same sums through finish,
                     * identical floats at every level */
                    const int DA = sp.codec->dec_acc_floats ? sp.codec->dec_acc_floats(sp.cfg, d) : 0;
                    CHECK(sl.k->decode_acc && DA == hs->D, "%s: decode_acc with D = %d floats per row", specs[si], DA);
                    float oda[64];
                    if (sl.k->decode_acc && DA == hs->D) {
                        sl.k->decode_acc(&sl, codes, 0, n, l == 0 ? ya0 : ya);
                        if (l > 0)
                            CHECK(memcmp(ya, ya0, sizeof(float) * (size_t)n * DA) == 0, "%s %s: decode_acc = scalar",
                                  specs[si], kvc_isa_name(lv[l]));
                        const float *yy = l == 0 ? ya0 : ya;
                        memset(acc, 0, sizeof(float) * (size_t)sl.acc_floats);
                        for (int j = 0; j < DA; j++) {
                            double a = 0;
                            for (int i = 0; i < n; i++) a += (double)w[i] * yy[(size_t)i * DA + j];
                            acc[j] = (float)a;
                        }
                        sl.k->finish(&sl, acc, oda);
                    }
                    if (l == 0) {
                        for (int i = 0; i < n * d; i++) err2[use] += (double)(y[i] - x[i]) * (y[i] - x[i]);
                        float ref[40], refo[64];
                        double mag = 0;
                        for (int i = 0; i < n; i++) {
                            ref[i] = (float)dotd(q, y + i * d, d);
                            mag = fmax(mag, sqrt(dotd(q, q, d) * dotd(y + i * d, y + i * d, d)));
                        }
                        for (int j = 0; j < d; j++) {
                            double a = 0;
                            for (int i = 0; i < n; i++) a += (double)w[i] * y[i * d + j];
                            refo[j] = (float)a;
                        }
                        char what[128];
                        snprintf(what, sizeof what, "%s %s centred=%d: fused score vs decode-then-dot", specs[si],
                                 is_value ? "V" : "K", use);
                        if (!hs->qbits || hs->qbits == 32) check_tensor(what, sc[0], ref, n, 3e-5 * mag, 1e-5);
                        snprintf(what, sizeof what, "%s %s centred=%d: accumulate+finish vs decoded sum", specs[si],
                                 is_value ? "V" : "K", use);
                        check_tensor(what, out[0], refo, d, 1e-4, 1e-5);
                        memcpy(refo_sum, refo, sizeof refo);
                    }
                    if (sl.k->decode_acc && DA == hs->D) {
                        char what[128];
                        snprintf(what, sizeof what, "%s %s centred=%d %s: decode_acc rows summed + finish vs decoded sum",
                                 specs[si], is_value ? "V" : "K", use, kvc_isa_name(lv[l]));
                        check_tensor(what, oda, refo_sum, d, 1e-4, 1e-5);
                    }
                    if (l == 0) {
                    } else {
                        char what[128];
                        snprintf(what, sizeof what, "%s centred=%d %s score = scalar", specs[si], use, kvc_isa_name(lv[l]));
                        check_tensor(what, sc[l], sc[0], n, 1e-3, 1e-5);
                        snprintf(what, sizeof what, "%s centred=%d %s finish = scalar", specs[si], use, kvc_isa_name(lv[l]));
                        check_tensor(what, out[l], out[0], d, 1e-4, 1e-5);
                    }
                    kvc_free_aligned(codes);
                    kvc_free_aligned(qp);
                    kvc_free_aligned(acc);
                    kv_slot_free(&sl);
                    kv_spec_free(&sp);
                }
            }
            if (!strstr(specs[si], "mean=calib"))
                CHECK(err2[1] < 0.5 * err2[0], "%s %s: centring on the mean cuts the error (%.3g vs %.3g)", specs[si],
                      is_value ? "V" : "K", err2[1], err2[0]);
        }
    free(x);
    free(y);
    kvc_calib_free(cal);
}

/* ---- parameters, sizes and errors ---- */

static void expect_err(const char *spec, kvc_status want, const char *needle) {
    struct kv_spec s;
    kvc_error err = {0};
    kvc_status st = kv_spec_parse(spec, &s, &err);
    CHECK(st == want, "'%s' gives status %d (want %d): %s", spec, st, want, err.msg);
    CHECK(!needle || strstr(err.msg, needle), "'%s' message '%s' mentions '%s'", spec, err.msg, needle);
    if (st == KVC_OK) kv_spec_free(&s);
}

static void test_params(void) {
    expect_err("hdc:bits=5", KVC_ERR_ARG, "bits must be 1, 2, 3 or 4");
    expect_err("hdc:bits=0", KVC_ERR_ARG, "bits");
    expect_err("hdc:expand=3", KVC_ERR_ARG, "power of two");
    expect_err("hdc:expand=0", KVC_ERR_ARG, "power of two");
    expect_err("hdc:scale=max", KVC_ERR_ARG, "rms, ls, norm or unbiased");
    expect_err("hdc:foo=1", KVC_ERR_ARG, "valid: bits=");
    expect_err("hdc:qbits=1", KVC_ERR_ARG, "needs bits=1");
    expect_err("hdc:qbits=8", KVC_ERR_ARG, "qbits");
    expect_err("hdc:rounds=3", KVC_ERR_ARG, "rounds");
    expect_err("hdc:mean=yes", KVC_ERR_ARG, "auto, calib or none");
    expect_err("hdc:seed=x", KVC_ERR_ARG, "seed");
    expect_err("hdc:bits", KVC_ERR_ARG, "malformed");
    expect_err("hdc-select:k=0", KVC_ERR_ARG, "k must be");
    expect_err("hdc-select:inner=nope", KVC_ERR_ARG, "q8_0");
    expect_err("hdc-select:inner=hdc-select", KVC_ERR_ARG, "not usable");
    expect_err("hdc-select:expand=6", KVC_ERR_ARG, "power of two");
    expect_err("hdc-select:sim=cos", KVC_ERR_ARG, "ham or asym");
    expect_err("hdc-select:bits=2", KVC_ERR_ARG, "valid: k=");
    expect_err("hdc:bits=1,expand=2", KVC_OK, NULL);
    expect_err("hdc:bits=3", KVC_OK, NULL);
    expect_err("hdc:bits=2,expand=4,scale=ls,seed=12345", KVC_OK, NULL);
    expect_err("hdc-select:k=256,inner=q8_0", KVC_OK, NULL);

    /* sizes: codes + f16 counted exactly */
    struct { const char *spec; int d; size_t rb; } sz[] = {
        {"hdc", 64, 34}, {"hdc:bits=1", 64, 10}, {"hdc:bits=1,expand=2", 64, 18},
        {"hdc:bits=2", 64, 18}, {"hdc:bits=3", 64, 26}, {"hdc:bits=4", 64, 34},
        {"hdc:bits=2,expand=4", 64, 66}, {"hdc:bits=3", 128, 50},
        {"hdc-select", 64, 2 + 16 + 68}, {"hdc-select:inner=f16,expand=1", 64, 2 + 8 + 128},
        {"hdc-select:inner=q4_0", 64, 2 + 16 + 36},
    };
    for (size_t i = 0; i < sizeof sz / sizeof *sz; i++) {
        struct kv_spec s;
        if (kv_spec_parse(sz[i].spec, &s, NULL)) {
            CHECK(0, "parse %s", sz[i].spec);
            continue;
        }
        size_t rb = s.codec->row_bytes(s.cfg, sz[i].d);
        CHECK(rb == sz[i].rb, "%s d=%d: row bytes %zu, want %zu", sz[i].spec, sz[i].d, rb, sz[i].rb);
        double bits = kv_spec_bits(&s, sz[i].d);
        CHECK(fabs(bits - 8.0 * (double)sz[i].rb / sz[i].d) < 1e-12, "%s bits %.4f", sz[i].spec, bits);
        kv_spec_free(&s);
    }
    /* head dims: D must be a power of two >= 64 */
    double bits;
    kvc_error err = {0};
    CHECK(kvc_codec_bits("hdc", 48, &bits, &err) == KVC_ERR_UNSUPPORTED && strstr(err.msg, "power of two"),
          "hdc d=48: %s", err.msg);
    CHECK(kvc_codec_bits("hdc", 32, &bits, &err) == KVC_ERR_UNSUPPORTED, "hdc d=32 (D=32 < 64): %s", err.msg);
    CHECK(kvc_codec_bits("hdc:expand=2", 32, &bits, &err) == KVC_OK && fabs(bits - 8.0 * 34 / 32) < 1e-12,
          "hdc:expand=2 d=32 works (%.3f bits)", bits);
    CHECK(kvc_codec_bits("hdc:bits=1,expand=2", 64, &bits, &err) == KVC_OK && bits == 2.25, "hdc:bits=1,expand=2 = 2.25 bits");
    {
        struct kv_spec sp;
        struct kv_slot sl;
        struct kv_slot_info info = {.d = 96, .seed = 1};
        CHECK(kv_spec_parse("hdc", &sp, &err) == KVC_OK, "parse hdc");
        CHECK(kv_slot_init(&sl, &sp, &info, KVC_ISA_SCALAR, &err) == KVC_ERR_UNSUPPORTED && strstr(err.msg, "96"),
              "hdc d=96 slot refused: %s", err.msg);
        kv_spec_free(&sp);
    }
}

/* ---- scale choices (b >= 2): reconstruction MSE ordering and dot-product slope ---- */

static void test_scales(void) {
    unsigned long long rng = 8;
    const int d = 64, n = 400;
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d);
    randn_vec(x, n * d, &rng);
    const char *names[] = {"rms", "ls", "norm", "unbiased"};
    for (int b = 2; b <= 4; b++) {
        double mse[4], slope[4];
        for (int sc = 0; sc < 4; sc++) {
            char spec[64];
            snprintf(spec, sizeof spec, "hdc:bits=%d,scale=%s", b, names[sc]);
            double e = 0, t = 0, sxy = 0, sxx = 0;
            for (int rep = 0; rep < 4; rep++) {
                struct tslot ts;
                if (!tslot_make(&ts, spec, d, 100 + rep, 0, KVC_ISA_SCALAR)) continue;
                uint8_t *codes = malloc(ts.slot.row_bytes * n);
                ts.slot.k->encode(&ts.slot, x, 0, n, codes);
                ts.slot.k->decode(&ts.slot, codes, 0, n, y);
                for (int i = 0; i < n * d; i++) {
                    e += (double)(y[i] - x[i]) * (y[i] - x[i]);
                    t += (double)x[i] * x[i];
                }
                /* slope of q.y on q.x over isotropic random q: E_q[(q.x)(q.y)] / E_q[(q.x)^2]
                 * = <x, y> / <x, x> (1 = unbiased dot products) */
                for (int i = 0; i < n; i++) {
                    sxy += dotd(x + i * d, y + i * d, d);
                    sxx += dotd(x + i * d, x + i * d, d);
                }
                free(codes);
                tslot_free(&ts);
            }
            mse[sc] = e / t;
            slope[sc] = sxy / sxx;
        }
        printf("b=%d relative MSE rms %.4f ls %.4f norm %.4f unbiased %.4f | dot slope rms %.4f ls %.4f norm %.4f unbiased %.4f\n",
               b, mse[0], mse[1], mse[2], mse[3], slope[0], slope[1], slope[2], slope[3]);
        double eps = hdc_lloyd_mse[b];
        CHECK(fabs(mse[0] / eps - 1) < 0.25, "b=%d rms MSE %.4f near Lloyd-Max %.4f", b, mse[0], eps);
        CHECK(mse[1] <= mse[0] * 1.001, "b=%d ls MSE %.4f <= rms %.4f", b, mse[1], mse[0]);
        CHECK(fabs(slope[3] - 1) < 0.005, "b=%d unbiased scale: dot slope %.4f", b, slope[3]);
        CHECK(fabs(slope[0] - (1 - eps)) < 0.01, "b=%d rms dot slope %.4f ~ 1 - eps = %.4f", b, slope[0], 1 - eps);
    }
    free(x);
    free(y);
}

int main(void) {
    test_lloyd();
    test_fwht();
    test_roundtrip();
    test_estimator();
    test_kernels(64);
    test_kernels(128);
    test_popcount();
    test_i8();
    test_vsum();
    test_topk();
    test_select();
    test_mean();
    test_params();
    test_scales();
    return test_summary("test_hdc");
}
