/* test_codec_api.c - the public codec handle (kvc_codec_*): f32 attention over encoded rows
 * against float64 maths, q8_0 / hdc round trips within their error, encode bytes identical to
 * a second handle of the same slot and different for another slot's seed (hdc), and the
 * error paths (bad spec, head dim, key/value roles, NULL) returning a status with a message. */
#include "test.h"
#include "kvcodec.h"

static void attn_ref(const float *q, const float *k, const float *v, int n, int d, double *out) {
    double *s = malloc(sizeof(double) * (size_t)n), mx = -1e300, sum = 0;
    for (int i = 0; i < n; i++) {
        double a = 0;
        for (int j = 0; j < d; j++) a += (double)q[j] * k[(size_t)i * d + j];
        s[i] = a / sqrt((double)d);
        if (s[i] > mx) mx = s[i];
    }
    for (int i = 0; i < n; i++) { s[i] = exp(s[i] - mx); sum += s[i]; }
    for (int j = 0; j < d; j++) {
        double a = 0;
        for (int i = 0; i < n; i++) a += s[i] * v[(size_t)i * d + j];
        out[j] = a / sum;
    }
    free(s);
}

static kvc_codec *mk(const char *spec, int d, int layer, int is_value, kvc_error *e) {
    struct kvc_codec_params p = kvc_codec_default_params();
    p.spec = spec;
    p.head_dim = d;
    p.layer = layer;
    p.is_value = is_value;
    kvc_codec *c = NULL;
    return kvc_codec_create(&p, &c, e) == KVC_OK ? c : NULL;
}

int main(void) {
    const int d = 64, n = 600, nq = 4;
    unsigned long long rng = 42;
    float *k = malloc(sizeof(float) * n * d), *v = malloc(sizeof(float) * n * d), *q = malloc(sizeof(float) * nq * d);
    float *y = malloc(sizeof(float) * n * d), *out = malloc(sizeof(float) * nq * d);
    for (int i = 0; i < n * d; i++) { k[i] = t_randn(&rng); v[i] = t_randn(&rng); }
    for (int i = 0; i < nq * d; i++) q[i] = t_randn(&rng);
    kvc_error e = {0};
    /* f32: attention equals float64 softmax attention */
    kvc_codec *kc = mk("f32", d, 0, 0, &e), *vc = mk("f32", d, 0, 1, &e);
    CHECK(kc && vc, "create f32: %s", e.msg);
    if (kc && vc) {
        size_t rb = kvc_codec_row_bytes(kc);
        CHECK(rb == (size_t)d * 4, "f32 row bytes %zu", rb);
        uint8_t *kb = malloc(rb * n), *vb = malloc(rb * n);
        CHECK(kvc_codec_encode(kc, k, 0, n, kb, &e) == KVC_OK && kvc_codec_encode(vc, v, 0, n, vb, &e) == KVC_OK, "encode");
        CHECK(kvc_codec_attend(kc, vc, q, nq, kb, vb, 7, n, 0, out, &e) == KVC_OK, "attend: %s", e.msg);
        int bad = 0;
        for (int g = 0; g < nq; g++) {
            double ref[64];
            attn_ref(q + g * d, k, v, n, d, ref);
            for (int j = 0; j < d; j++) bad += fabs(out[g * d + j] - ref[j]) > 1e-5 + 1e-4 * fabs(ref[j]);
        }
        CHECK(bad == 0, "f32 attention vs float64: %d elements off", bad);
        CHECK(kvc_codec_attend(vc, kc, q, nq, kb, vb, 0, n, 0, out, &e) == KVC_ERR_ARG, "roles swapped: %s", e.msg);
        CHECK(kvc_codec_attend(kc, vc, q, 0, kb, vb, 0, n, 0, out, &e) == KVC_ERR_ARG, "no queries");
        free(kb);
        free(vb);
    }
    kvc_codec_free(kc);
    kvc_codec_free(vc);
    /* q8_0 and hdc round trips; hdc bytes depend on the slot seed */
    const char *specs[] = {"q8_0", "hdc:bits=3"};
    const double tol[] = {0.05, 2.5};
    for (int s = 0; s < 2; s++) {
        kvc_codec *a = mk(specs[s], d, 1, 0, &e), *b = mk(specs[s], d, 1, 0, &e), *o = mk(specs[s], d, 2, 0, &e);
        CHECK(a && b && o, "create %s: %s", specs[s], e.msg);
        if (a && b && o) {
            size_t rb = kvc_codec_row_bytes(a);
            uint8_t *c1 = malloc(rb * n), *c2 = malloc(rb * n), *c3 = malloc(rb * n);
            kvc_codec_encode(a, k, 0, n, c1, &e);
            kvc_codec_encode(b, k, 0, n, c2, &e);
            kvc_codec_encode(o, k, 0, n, c3, &e);
            CHECK(memcmp(c1, c2, rb * n) == 0, "%s: same slot, same bytes", specs[s]);
            if (s == 1) CHECK(memcmp(c1, c3, rb * n) != 0, "hdc: another layer's seed gives other bytes");
            CHECK(kvc_codec_decode(a, c1, 0, n, y, &e) == KVC_OK, "decode");
            double mx = 0;
            for (int i = 0; i < n * d; i++) mx = fmax(mx, fabs(y[i] - k[i]));
            CHECK(mx < tol[s], "%s round trip max error %.4f (limit %.2f)", specs[s], mx, tol[s]);
            free(c1);
            free(c2);
            free(c3);
        }
        kvc_codec_free(a);
        kvc_codec_free(b);
        kvc_codec_free(o);
    }
    /* errors */
    CHECK(mk("q9_9", d, 0, 0, &e) == NULL && e.status == KVC_ERR_ARG && strstr(e.msg, "q9_9"), "bad spec: %s", e.msg);
    CHECK(mk("q8_0", 0, 0, 0, &e) == NULL && e.status == KVC_ERR_ARG, "head dim 0: %s", e.msg);
    CHECK(mk("q8_0", 40, 0, 0, &e) == NULL && e.status != KVC_OK, "q8_0 at head dim 40: %s", e.msg);
    CHECK(mk("pca:bits=3", d, 0, 0, &e) == NULL && e.status == KVC_ERR_CALIB, "pca without calibration: %s", e.msg);
    CHECK(kvc_codec_create(NULL, NULL, &e) == KVC_ERR_ARG, "NULL params");
    CHECK(kvc_codec_encode(NULL, k, 0, 1, NULL, &e) == KVC_ERR_ARG, "NULL codec");
    kvc_codec_free(NULL);
    free(k); free(v); free(q); free(y); free(out);
    return test_summary("test_codec_api");
}
