/* test_tune_size.c - the tuner's sizing of candidate rows to a budget (src/eval/tune.c): for
 * every row of the table and budgets 2.5..4 at ctx 2048, head dim 64, the bits it reports
 * equal an independent count (pca row = ceil(64 b / 8) bytes, hdc:bits=N row (N = 2..4) = 8 N code
 * bytes + an f16 scale, sinks and recent rows at 16 bits (f16) or 8.5 (q8_0: 34 bytes per 32),
 * codec rows for positions sinks..ctx-1), they fit
 * the budget, and the next grid step (1/16 bit more on each sized side) would not. The
 * per-layer bit allocation (kvc_tune_alloc_layers) sums to the budget, stays in its bounds,
 * gives more bits to layers with more distortion (absolute) and equal bits to layers whose
 * distortion curves are the same up to scale (relative). */
#include "test.h"
#include "eval/tune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* bytes of one row of head dim 64 for the specs the table uses; -1 if unknown */
static double row_bytes(const char *spec) {
    const char *b = strstr(spec, "bits=");
    if (!b) return -1;
    double x = atof(b + 5);
    if (strncmp(spec, "pca:", 4) == 0) return ceil(x * 64 / 8 - 1e-9);
    if (strncmp(spec, "hdc:bits=", 9) == 0 && x >= 2 && x <= 4) return 64 * x / 8 + 2; /* Lloyd-Max codes + f16 scale */
    return -1;
}

static const char *win; /* window codec of the row being checked (NULL: f16) */
static double side(double bytes, int ctx, int s, int r) {
    const double wb = win && !strcmp(win, "q8_0") ? 8.5 : 16.0;
    return (bytes * 8 * (ctx - s) + wb * 64 * (s + r)) / (64.0 * ctx);
}

/* spec with its bits= value raised by dx */
static void bump(const char *spec, double dx, char *out, size_t cap) {
    const char *b = strstr(spec, "bits=");
    char *end;
    double x = strtod(b + 5, &end);
    snprintf(out, cap, "%.*s%.6g%s", (int)(b + 5 - spec), spec, x + dx, end);
}

/* Synthetic calibration: L layers, 2 heads, dim 16; coefficient k of layer l has variance
 * 10^l * 0.8^k and error var * 4^-b at b bits (the water-filling's textbook case). */
static struct kvc_calib *alloc_calib(int L) {
    struct kvc_calib_id id = {.arch = "llama", .n_layer = L, .n_head_kv = 2, .head_dim = 16, .n_vocab = 10,
                              .rope_base = 10000.0f};
    struct kvc_calib *c = NULL;
    kvc_error e = {0};
    if (kvc_calib_alloc(&id, &c, &e)) return NULL;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < 2; h++)
            for (int kind = 0; kind < KVC_CALIB_NKIND; kind++) {
                struct kvc_calib_slot *s = (struct kvc_calib_slot *)kvc_calib_slot_get(c, l, h, kind);
                for (int b = 0; b <= c->max_bits; b++)
                    for (int k = 0; k < 16; k++) s->mse[b * 16 + k] = (float)(pow(10, l) * pow(0.8, k) * pow(4, -b));
            }
    return c;
}

static void test_alloc(void) {
    struct kvc_calib *c = alloc_calib(4);
    CHECK(c != NULL, "synthetic calibration");
    if (!c) return;
    for (int rel = 0; rel < 2; rel++) {
        const double means[] = {1.0, 2.5, 3.0, 3.375, 4.25};
        for (int i = 0; i < 5; i++) {
            double b[4];
            CHECK(kvc_tune_alloc_layers(c, KVC_CALIB_V, means[i], 0.125, 1.0, 8.0, rel, b) == 4, "alloc %g", means[i]);
            double s = 0;
            for (int l = 0; l < 4; l++) {
                s += b[l];
                CHECK(b[l] >= 1.0 && b[l] <= 8.0 && fabs(b[l] * 8 - round(b[l] * 8)) < 1e-9, "layer %d: %g bits", l, b[l]);
            }
            CHECK(fabs(s - 4 * means[i]) < 1e-9, "rel %d mean %g: layers sum to %g, not %g", rel, means[i], s, 4 * means[i]);
            if (rel) CHECK(b[0] == b[3] && b[1] == b[2] && fabs(b[0] - b[1]) <= 0.125,
                           "relative: equal curves got %g %g %g %g bits", b[0], b[1], b[2], b[3]);
            else if (means[i] > 1.0)
                CHECK(b[0] <= b[1] && b[1] <= b[2] && b[2] <= b[3] && b[3] > b[0],
                      "absolute: 10x the distortion per layer got %g %g %g %g bits", b[0], b[1], b[2], b[3]);
        }
    }
    double b[4];
    CHECK(kvc_tune_alloc_layers(c, KVC_CALIB_V, 0.5, 0.125, 1.0, 8.0, 0, b) == 0, "mean below the floor refused");
    /* per (layer, KV head): head 1 of every layer made 100x as costly as head 0 */
    for (int l = 0; l < 4; l++) {
        struct kvc_calib_slot *s = (struct kvc_calib_slot *)kvc_calib_slot_get(c, l, 1, KVC_CALIB_V);
        for (int k = 0; k < (c->max_bits + 1) * 16; k++) s->mse[k] *= 100.0f;
    }
    const double means[] = {1.5, 3.0, 4.25};
    for (int i = 0; i < 3; i++) {
        double hb[8], s = 0;
        CHECK(kvc_tune_alloc_heads(c, KVC_CALIB_V, means[i], 0.125, 1.0, 8.0, hb) == 8, "heads alloc %g", means[i]);
        for (int u = 0; u < 8; u++) {
            s += hb[u];
            CHECK(hb[u] >= 1.0 && hb[u] <= 8.0 && fabs(hb[u] * 8 - round(hb[u] * 8)) < 1e-9, "unit %d: %g bits", u, hb[u]);
        }
        CHECK(fabs(s - 8 * means[i]) < 1e-9, "heads mean %g: units sum to %g, not %g", means[i], s, 8 * means[i]);
        /* never fewer bits for the costlier head; more in the layers where bits go above the floor */
        int more = 0;
        for (int l = 0; l < 4; l++) {
            CHECK(hb[2 * l + 1] >= hb[2 * l], "mean %g layer %d: the 100x head got %g bits, the other %g", means[i], l,
                  hb[2 * l + 1], hb[2 * l]);
            more += hb[2 * l + 1] > hb[2 * l];
        }
        CHECK(more > 0 && hb[7] > hb[6], "mean %g: the 100x heads got more bits in %d layers (last: %g vs %g)", means[i],
              more, hb[7], hb[6]);
    }
    kvc_calib_free(c);
}

int main(void) {
    test_alloc();
    int n;
    const struct kvc_tune_row *rows = kvc_tune_rows(&n);
    const double budgets[] = {2.5, 3.0, 3.5, 4.0};
    int sized = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) {
            char k[128], v[128];
            double bits = -1, B = budgets[j];
            if (!kvc_tune_size_row(&rows[i], B, 2048, 64, 1.0, k, v, sizeof k, &bits)) continue;
            sized++;
            win = rows[i].window;
            CHECK(!win || !strcmp(win, "q8_0"), "row %s: window %s unknown to this test", rows[i].name, win);
            double rk = row_bytes(k), rv = row_bytes(v);
            CHECK(rk > 0 && rv > 0, "row %s: specs %s / %s", rows[i].name, k, v);
            double want = 0.5 * (side(rk, 2048, rows[i].sinks, rows[i].recent) + side(rv, 2048, rows[i].sinks, rows[i].recent));
            CHECK(fabs(bits - want) < 1e-9, "row %s at %g: %s / %s reports %.6f bits, counted %.6f", rows[i].name, B, k, v,
                  bits, want);
            CHECK(bits <= B + 1e-9, "row %s at %g: %.6f bits over the budget", rows[i].name, B, bits);
            /* one grid step more on the sized sides no longer fits */
            int kf = strstr(rows[i].k, "{b}") != NULL, vf = strstr(rows[i].v, "{b}") != NULL;
            char k2[128], v2[128];
            if (kf) bump(k, 1.0 / 16, k2, sizeof k2); else snprintf(k2, sizeof k2, "%s", k);
            if (vf) bump(v, 1.0 / 16, v2, sizeof v2); else snprintf(v2, sizeof v2, "%s", v);
            double more = 0.5 * (side(row_bytes(k2), 2048, rows[i].sinks, rows[i].recent) +
                                 side(row_bytes(v2), 2048, rows[i].sinks, rows[i].recent));
            CHECK(more > B + 1e-9 || more == bits, "row %s at %g: %s / %s (%.4f) would fit too, so %s / %s wastes budget",
                  rows[i].name, B, k2, v2, more, k, v);
            CHECK(B - bits < 0.125 + 1e-9, "row %s at %g: %.4f bits leaves more than 1/8 bit unused", rows[i].name, B, bits);
        }
    CHECK(sized >= 20, "only %d (row, budget) pairs sized", sized);
    /* a budget below every row */
    char k[128], v[128];
    double bits;
    for (int i = 0; i < n; i++) CHECK(!kvc_tune_size_row(&rows[i], 0.5, 2048, 64, 1.0, k, v, sizeof k, &bits), "0.5 bits sized row %d", i);
    return test_summary("test_tune_size");
}
