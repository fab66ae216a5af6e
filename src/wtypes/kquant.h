/* kquant.h - helpers shared by the K-quant files: the 6-bit scale/min packing of Q4_K and
 * Q5_K (12 bytes for 8 scales and 8 mins) and the affine sub-block quantizer they use. */
#ifndef KVC_WTYPES_KQUANT_H
#define KVC_WTYPES_KQUANT_H

#include "wtype.h"
#include "util.h"
#include <math.h>
#include <string.h>

/* Scale and min of sub-block j (0..7): j < 4 in the low 6 bits of bytes j / j + 4; j >= 4
 * low 4 bits in byte j + 4 (scale low nibble, min high nibble), high 2 bits in the top bits
 * of bytes j - 4 (scale) and j (min). */
static inline void k4_get(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}
/* The per-16 a = d * sc and b = -dmin * m of all 8 sub-blocks (a[2j] = a[2j + 1], ...). */
static inline void k4_ab(const uint8_t *q, float d, float dmin, float *a, float *b) {
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_get(q, j, &sc, &m);
        a[2 * j] = a[2 * j + 1] = d * (float)sc;
        b[2 * j] = b[2 * j + 1] = -dmin * (float)m;
    }
}
static inline void k4_set(uint8_t *q, const uint8_t *sc, const uint8_t *m) {
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] |= sc[j];
            q[j + 4] |= m[j];
        } else {
            q[j + 4] = (uint8_t)((sc[j] & 15) | (m[j] & 15) << 4);
            q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            q[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

/* Quantize one super-block of 256 as 8 sub-blocks of 32 with L in [0, nmax] and 6-bit
 * scales/mins: writes L (256), the packed 12 scale bytes, d and dmin (f16). */
static inline void k4_quantize(const float *x, int nmax, uint8_t *L, uint8_t *scales,
                               uint16_t *d_out, uint16_t *dmin_out) {
    float sc[8], mn[8], w[32], max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float s2 = 0;
        for (int l = 0; l < 32; l++) s2 += xs[l] * xs[l];
        const float av = sqrtf(s2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
        sc[j] = kvc_q_affine(32, nmax, xs, w, L + 32 * j, &mn[j]);
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    const float is = max_sc > 0 ? 63.0f / max_sc : 0, im = max_mn > 0 ? 63.0f / max_mn : 0;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)kvc_q_clamp_round(is * sc[j], 0, 63);
        lm[j] = (uint8_t)kvc_q_clamp_round(im * mn[j], 0, 63);
    }
    k4_set(scales, ls, lm);
    *d_out = kvc_f32_to_f16(max_sc / 63.0f);
    *dmin_out = kvc_f32_to_f16(max_mn / 63.0f);
    const float d = kvc_f16_to_f32(*d_out), dmin = kvc_f16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        const float dl = d * ls[j], ml = dmin * lm[j], idl = dl > 0 ? 1.0f / dl : 0;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)kvc_q_clamp_round((x[32 * j + l] + ml) * idl, 0, nmax);
    }
}

#endif
