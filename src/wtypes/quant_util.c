/* quant_util.c - scale searches shared by the reference quantizers: a symmetric grid
 * (x ~ s * L, L in [-nmax, nmax - 1]) and an affine one (x ~ s * L - m, L in [0, nmax]),
 * each trying a range of inverse scales and refitting by weighted least squares. */
#include "wtype.h"
#include <math.h>

float kvc_q_symmetric(int n, int nmax, const float *x, const float *w, uint8_t *q) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-30f) {
        for (int i = 0; i < n; i++) q[i] = (uint8_t)nmax;
        return 0;
    }
    /* the largest magnitude maps to -nmax (the longer side of the grid) */
    float best_scale = 0, best_err = INFINITY;
    for (int is = -9; is <= 9; is++) {
        const float iscale = -((float)nmax + 0.1f * (float)is) / max;
        double sxl = 0, sll = 0;
        for (int i = 0; i < n; i++) {
            const int l = kvc_q_clamp_round(iscale * x[i], -nmax, nmax - 1);
            const double wi = w ? w[i] : 1.0;
            sxl += wi * x[i] * l;
            sll += wi * (double)l * l;
        }
        if (sll <= 0) continue;
        const float scale = (float)(sxl / sll);
        double err = 0;
        for (int i = 0; i < n; i++) {
            const int l = kvc_q_clamp_round(iscale * x[i], -nmax, nmax - 1);
            const double wi = w ? w[i] : 1.0, e = x[i] - scale * l;
            err += wi * e * e;
        }
        if (err < best_err) {
            best_err = (float)err;
            best_scale = scale;
        }
    }
    const float id = best_scale != 0 ? 1.0f / best_scale : 0;
    for (int i = 0; i < n; i++) q[i] = (uint8_t)(kvc_q_clamp_round(x[i] * id, -nmax, nmax - 1) + nmax);
    return best_scale;
}

/* Weighted least-squares (s, m) for x ~ s * L - m with the given L; m clamped to >= 0. */
static void fit_affine(int n, const float *x, const float *w, const uint8_t *L, float *s, float *m) {
    double sw = 0, sl = 0, sll = 0, sx = 0, sxl = 0;
    for (int i = 0; i < n; i++) {
        const double wi = w ? w[i] : 1.0;
        sw += wi;
        sl += wi * L[i];
        sll += wi * (double)L[i] * L[i];
        sx += wi * x[i];
        sxl += wi * x[i] * L[i];
    }
    const double det = sw * sll - sl * sl;
    double ss = 0, mm = 0;
    if (det > 0) {
        ss = (sw * sxl - sx * sl) / det;
        mm = -(sll * sx - sl * sxl) / det; /* x ~ ss L + c, c = -mm */
    }
    if (mm < 0) { /* min is stored >= 0: refit the scale alone with m = 0 */
        mm = 0;
        ss = sll > 0 ? sxl / sll : 0;
    }
    *s = (float)ss;
    *m = (float)mm;
}

float kvc_q_affine(int n, int nmax, const float *x, const float *w, uint8_t *q, float *min_out) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (lo > 0) lo = 0;
    if (hi <= lo) {
        for (int i = 0; i < n; i++) q[i] = 0;
        *min_out = -lo;
        return 0;
    }
    uint8_t L[256];
    float best_s = (hi - lo) / (float)nmax, best_m = -lo;
    double best_err = INFINITY;
    for (int is = -10; is <= 10; is++) {
        const float iscale = ((float)nmax + 0.1f * (float)is) / (hi - lo);
        for (int i = 0; i < n; i++) L[i] = (uint8_t)kvc_q_clamp_round(iscale * (x[i] - lo), 0, nmax);
        float s, m;
        fit_affine(n, x, w, L, &s, &m);
        /* requantize with the fitted (s, m) and measure */
        const float is2 = s > 0 ? 1.0f / s : 0;
        double err = 0;
        for (int i = 0; i < n; i++) {
            const int l = kvc_q_clamp_round((x[i] + m) * is2, 0, nmax);
            const double wi = w ? w[i] : 1.0, e = x[i] - (s * l - m);
            err += wi * e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
            best_m = m;
        }
    }
    const float id = best_s > 0 ? 1.0f / best_s : 0;
    for (int i = 0; i < n; i++) q[i] = (uint8_t)kvc_q_clamp_round((x[i] + best_m) * id, 0, nmax);
    *min_out = best_m;
    return best_s;
}

float kvc_q_subblocks16(const float *x, int nmax, uint8_t *L, float sc[16]) {
    float amax = 0, max = 0;
    for (int g = 0; g < 16; g++) {
        float w[16];
        for (int l = 0; l < 16; l++) w[l] = x[16 * g + l] * x[16 * g + l];
        sc[g] = kvc_q_symmetric(16, nmax, x + 16 * g, w, L + 16 * g);
        if (fabsf(sc[g]) > amax) {
            amax = fabsf(sc[g]);
            max = sc[g];
        }
    }
    return max;
}
