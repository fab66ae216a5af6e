/* pca_pair.c - keys=pair of the `pca` codec: keys before RoPE coded with a transform that
 * does not mix RoPE pairs (per pair: mean removal, a 2x2 rotation onto the pair's principal
 * axes, the pair's metric weight; water-filled bits per coefficient), so that scoring is
 * O(d) per row: decode z, rotate it by RoPE (cos/sin of the block's first position from the
 * forward pass's table times a small table of k theta, k < 16: one complex multiply per pair),
 * dot with the G query heads' prepared queries V q / t. Layout and maths: pca_impl.h.
 * Scalar reference (encode / decode / prepare / score) and the AVX-512 grouped score (float,
 * and bf16 products: dot=bf16, or dot=auto (default) on AMD CPUs with AVX512-BF16). */
#include "pca_impl.h"
#include "../arch/tile_gemm.h"

/* Steps are the Gaussian-optimal ones for the pair coefficients' calibrated variances (the
 * calibration keeps no samples of them), times wide= (default PCA_PAIR_WIDE = 1.6: on held-out
 * calibration text, calib.txt from byte 1,000,000 on, kvref, 2 chunks, 4 sinks + 60 recent,
 * K bits=2.75 / V pca:bits=3.25, KLD 0.033 / 0.014 / 0.0057 / 0.0050 / 0.0080 / 0.017 at
 * wide 1 / 1.3 / 1.6 / 2 / 2.4 / 3; at K bits=2.25 / V 2.75: 0.0084 / 0.0093 / 0.0136 at
 * 1.6 / 2 / 2.4): the coefficients have heavier tails than a Gaussian's.
 * Max (1960): step and mean squared error of the MSE-optimal uniform quantizer of a unit
 * Gaussian with 2^b levels (b = 1..8); [0] = no bits (error = the variance). */
static const double pair_gauss_step[9] = {0, 1.596, 0.9957, 0.5860, 0.3352, 0.1881, 0.1041, 0.0569, 0.0308};
static const double pair_gauss_mse[9] = {1, 0.3634, 0.1188, 0.03744, 0.01154, 0.003490, 0.001035, 0.0003014,
                                         0.00008646};

void pca_pair_free(struct pca_pair *p) {
    if (!p) return;
    kvc_free_aligned(p->da);
    kvc_free_aligned(p->db);
    kvc_free_aligned(p->vc);
    kvc_free_aligned(p->vs);
    kvc_free_aligned(p->t);
    kvc_free_aligned(p->nb);
    kvc_free_aligned(p->bo);
    kvc_free_aligned(p->step);
    kvc_free_aligned(p->zoff);
    kvc_free_aligned(p->ym);
    kvc_free_aligned(p->widx);
    kvc_free_aligned(p->wsh);
    kvc_free_aligned(p->wmask);
    kvc_free_aligned(p->ck);
    kvc_free_aligned(p->sk);
    kvc_free_aligned(p->ra);
    kvc_free_aligned(p->rb);
    kvc_free_aligned(p->kt);
    kvc_free_aligned(p->xidx);
    kvc_free_aligned(p->xsh);
    kvc_free_aligned(p->xmask);
    kvc_free_aligned(p->bt);
    kvc_free_aligned(p->ht);
    kvc_free_aligned(p->hr);
    kvc_free_aligned(p->tt);
    kvc_free_aligned(p->tlut);
    kvc_free_aligned(p->tstep);
    kvc_free_aligned(p->thr);
    kvc_free_aligned(p->tdesc);
    kvc_free_aligned(p->toff);
    free(p);
}

/* Kernel slot of coefficient j (j < h: major of pair j; else minor of pair j - h). */
static inline int pair_slot(const struct pca_pair *p, int j) { return j < p->h ? j : p->hs + (j - p->h); }

kvc_status pca_pair_init(struct pca_state *s, const struct kvc_calib_slot *cs, const struct kv_slot_info *info,
                         int total_bits, int max_bits, float wide, int dot, kvc_error *err) {
    const int d = s->d, h = d / 2, hs = d <= 64 ? 32 : h, S = 2 * hs;
    struct pca_pair *p = calloc(1, sizeof *p);
    if (!p) return kvc_fail(err, KVC_ERR_NOMEM, "pca keys=pair: out of memory");
    s->pair = p;
    p->h = h;
    p->hs = hs;
    p->neox = info->rope_neox;
    p->da = kvc_alloc_aligned((size_t)h * sizeof(int));
    p->db = kvc_alloc_aligned((size_t)h * sizeof(int));
    p->vc = kvc_alloc_aligned((size_t)h * sizeof(float));
    p->vs = kvc_alloc_aligned((size_t)h * sizeof(float));
    p->t = kvc_alloc_aligned((size_t)h * sizeof(float));
    p->nb = kvc_alloc_aligned((size_t)S);
    p->bo = kvc_alloc_aligned((size_t)S * sizeof(int32_t));
    p->step = kvc_alloc_aligned((size_t)S * sizeof(float));
    p->zoff = kvc_alloc_aligned((size_t)S * sizeof(float));
    p->ym = kvc_alloc_aligned((size_t)S * sizeof(float));
    p->widx = kvc_alloc_aligned(64 * sizeof(uint16_t));
    p->wsh = kvc_alloc_aligned(64 * sizeof(uint16_t));
    p->wmask = kvc_alloc_aligned(64 * sizeof(uint16_t));
    p->ck = kvc_alloc_aligned((size_t)16 * hs * sizeof(float));
    p->sk = kvc_alloc_aligned((size_t)16 * hs * sizeof(float));
    p->ra = kvc_alloc_aligned((size_t)hs * sizeof(float));
    p->rb = kvc_alloc_aligned((size_t)hs * sizeof(float));
    p->kt = kvc_alloc_aligned((size_t)16 * 12 * 16 * sizeof(float));
    p->xidx = kvc_alloc_aligned(64 * sizeof(uint16_t));
    p->xsh = kvc_alloc_aligned(64 * sizeof(uint16_t));
    p->xmask = kvc_alloc_aligned(64 * sizeof(uint16_t));
    p->bt = kvc_alloc_aligned((size_t)16 * 2 * 64 * sizeof(float));
    p->ht = kvc_alloc_aligned((size_t)16 * 6 * 32 * sizeof(uint16_t));
    p->hr = kvc_alloc_aligned(32 * sizeof(float));
    double *Pk = malloc((size_t)d * d * sizeof(double));
    double *var = malloc((size_t)d * sizeof(double));
    if (!p->da || !p->db || !p->vc || !p->vs || !p->t || !p->nb || !p->bo || !p->step || !p->zoff || !p->ym ||
        !p->widx || !p->wsh || !p->wmask || !p->ck || !p->sk || !p->ra || !p->rb || !p->kt || !p->xidx || !p->xsh || !p->xmask || !p->bt || !p->ht || !p->hr || !Pk || !var) {
        free(Pk);
        free(var);
        return kvc_fail(err, KVC_ERR_NOMEM, "pca keys=pair: out of memory for layer %d head %d", info->layer,
                        info->head);
    }
    memset(p->nb, 0, (size_t)S);
    memset(p->bo, 0, (size_t)S * sizeof(int32_t));
    memset(p->step, 0, (size_t)S * sizeof(float));
    memset(p->zoff, 0, (size_t)S * sizeof(float));
    memset(p->ym, 0, (size_t)S * sizeof(float));
    memset(p->widx, 0, 64 * sizeof(uint16_t));
    memset(p->wsh, 0, 64 * sizeof(uint16_t));
    memset(p->wmask, 0, 64 * sizeof(uint16_t));
    memset(p->ra, 0, (size_t)hs * sizeof(float));
    memset(p->rb, 0, (size_t)hs * sizeof(float));
    /* x - mean = sum_k c_k T^-1 basis_k with var(c_k) = eigval_k: Pk row k = T^-1 basis_k */
    for (int k = 0; k < d; k++)
        for (int i = 0; i < d; i++) {
            double a = 0;
            for (int t = 0; t < d; t++) a += (double)cs->metric_inv[(size_t)i * d + t] * cs->basis[(size_t)k * d + t];
            Pk[(size_t)k * d + i] = a;
        }
    for (int i = 0; i < h; i++) {
        const int a = p->neox ? i : 2 * i, b = p->neox ? i + h : 2 * i + 1;
        p->da[i] = a;
        p->db[i] = b;
        double sxx = 0, sxy = 0, syy = 0, ta = 0, tb = 0;
        for (int k = 0; k < d; k++) {
            double l = cs->eigval[k] > 0 ? cs->eigval[k] : 0, u = Pk[(size_t)k * d + a], v = Pk[(size_t)k * d + b];
            sxx += l * u * u;
            sxy += l * u * v;
            syy += l * v * v;
        }
        /* the metric's weight of the pair: mean squared column norm of T over its two dims
         * (exact for the per-pair diagonal of kvcodec calibrate; 1 for plain PCA) */
        for (int r = 0; r < d; r++) {
            ta += (double)cs->metric[(size_t)r * d + a] * cs->metric[(size_t)r * d + a];
            tb += (double)cs->metric[(size_t)r * d + b] * cs->metric[(size_t)r * d + b];
        }
        double t = sqrt((ta + tb) / 2);
        if (!(t > 1e-20)) t = 1;
        double phi = 0.5 * atan2(2 * sxy, sxx - syy), c = cos(phi), sn = sin(phi);
        double mid = (sxx + syy) / 2, rad = sqrt((sxx - syy) * (sxx - syy) / 4 + sxy * sxy);
        p->vc[i] = (float)c;
        p->vs[i] = (float)sn;
        p->t[i] = (float)t;
        p->ra[i] = (float)(c / t);
        p->rb[i] = (float)(sn / t);
        var[i] = t * t * (mid + rad);
        var[h + i] = t * t * (mid - rad > 0 ? mid - rad : 0);
        double ma = cs->mean[a], mb = cs->mean[b];
        p->ym[i] = (float)(t * (c * ma + sn * mb));
        p->ym[hs + i] = (float)(t * (-sn * ma + c * mb));
    }
    /* reverse water-filling on the Gaussian model of each coefficient */
    uint8_t bits[PCA_MAX_D] = {0};
    if (max_bits > KVC_CALIB_MAX_BITS) max_bits = KVC_CALIB_MAX_BITS;
    if (total_bits > d * max_bits) total_bits = d * max_bits;
    for (int it = 0; it < total_bits; it++) {
        int best = -1;
        double gain = -INFINITY;
        for (int j = 0; j < d; j++) {
            if (bits[j] >= max_bits) continue;
            double g = var[j] * (pair_gauss_mse[bits[j]] - pair_gauss_mse[bits[j] + 1]);
            if (g > gain) {
                gain = g;
                best = j;
            }
        }
        if (best < 0) break;
        bits[best]++;
    }
    int o = 0;
    for (int j = 0; j < d; j++) {
        const int u = pair_slot(p, j), b = bits[j];
        double sg = sqrt(var[j]);
        p->nb[u] = (uint8_t)b;
        p->bo[u] = o;
        p->step[u] = b ? (float)(sg > 1e-30 ? pair_gauss_step[b] * sg * wide : 1.0) : 0.0f;
        p->zoff[u] = (b ? (0.5f - (float)(1 << (b - 1))) * p->step[u] : 0.0f) + p->ym[u];
        if (S <= 64 && b) {
            p->widx[u] = (uint16_t)(((o >> 3) >> 1) | (((o >> 3) & 1) << 5));
            p->wsh[u] = (uint16_t)(o & 7);
            p->wmask[u] = (uint16_t)((1 << b) - 1);
        }
        o += b;
    }
    /* cos / sin of k theta_i, theta_i as the forward pass computes it (float, repeated products;
     * divided by the pair's frequency factor and times the linear scale when the model has them) */
    float theta_scale = powf(s->rope_base, -2.0f / (float)d), th = 1.0f;
    for (int i = 0; i < hs; i++) {
        const double w = i < h ? (double)th / (s->rope_ff ? s->rope_ff[i] : 1.0f) * s->rope_scale : 0.0;
        for (int k = 0; k < 16; k++) {
            p->ck[(size_t)k * hs + i] = i < h ? (float)cos((double)k * w) : 1.0f;
            p->sk[(size_t)k * hs + i] = i < h ? (float)sin((double)k * w) : 0.0f;
        }
        th *= theta_scale;
    }
    /* kt: the AVX-512 kernels' rotation by k theta with the steps and offsets folded in (d <= 64) */
    memset(p->kt, 0, (size_t)16 * 12 * 16 * sizeof(float));
    if (hs == 32)
        for (int k = 0; k < 16; k++)
            for (int hh = 0; hh < 2; hh++)
                for (int j = 0; j < 16; j++) {
                    const int i = 16 * hh + j, ua = i, ub = hs + i;
                    const double c = p->ck[(size_t)k * hs + i], sn = p->sk[(size_t)k * hs + i];
                    float *e = p->kt + ((size_t)k * 12 + 6 * hh) * 16 + j;
                    e[0] = (float)(p->step[ua] * c);
                    e[16] = (float)(-p->step[ub] * sn);
                    e[32] = (float)((double)p->zoff[ua] * c - (double)p->zoff[ub] * sn);
                    e[48] = (float)(p->step[ua] * sn);
                    e[64] = (float)(p->step[ub] * c);
                    e[80] = (float)((double)p->zoff[ua] * sn + (double)p->zoff[ub] * c);
                }
    /* the bf16 kernel: indices up to 127 are exact as 128 + index in bf16 */
    int maxb = 0;
    for (int u = 0; u < S; u++) maxb = p->nb[u] > maxb ? p->nb[u] : maxb;
    p->bf16 = dot == PCA_DOT_BF16 && hs == 32 && s->rb <= 64 && maxb <= 7 && kvc_cpu_has_avx512bf16();
    memset(p->xidx, 0, 64 * sizeof(uint16_t));
    memset(p->xsh, 0, 64 * sizeof(uint16_t));
    memset(p->xmask, 0, 64 * sizeof(uint16_t));
    memset(p->bt, 0, (size_t)16 * 2 * 64 * sizeof(float));
    if (hs == 32) {
        for (int i = 0; i < 32; i++)
            for (int m = 0; m < 2; m++) { /* word 2 i + m of the 64 (i < 16: first vector) */
                const int u = m ? hs + i : i, w = 2 * i + m;
                p->xidx[w] = p->widx[u];
                p->xsh[w] = p->wsh[u];
                p->xmask[w] = p->wmask[u];
            }
        for (int k = 0; k < 16; k++)
            for (int hh = 0; hh < 2; hh++) {
                const float *e = p->kt + ((size_t)k * 12 + 6 * hh) * 16;
                float *o = p->bt + ((size_t)k * 2 + hh) * 64;
                uint16_t *ta = (uint16_t *)o, *tb = (uint16_t *)(o + 16);
                for (int j = 0; j < 16; j++) {
                    ta[2 * j] = kvc_f32_to_bf16(e[j]);
                    ta[2 * j + 1] = kvc_f32_to_bf16(e[16 + j]);
                    tb[2 * j] = kvc_f32_to_bf16(e[48 + j]);
                    tb[2 * j + 1] = kvc_f32_to_bf16(e[64 + j]);
                    o[32 + j] = (float)((double)e[32 + j] - 128.0 * ((double)kvc_bf16_to_f32(ta[2 * j]) + kvc_bf16_to_f32(ta[2 * j + 1])));
                    o[48 + j] = (float)((double)e[80 + j] - 128.0 * ((double)kvc_bf16_to_f32(tb[2 * j]) + kvc_bf16_to_f32(tb[2 * j + 1])));
                }
            }
    }
    /* the fp16 kernel: kt in fp16 (every entry below fp16's largest / 2), and hr: per pair the
     * largest |R_k z| of its two coordinates summed, so that a query with sum_i |qp pair i| hr_i
     * <= 2^15 keeps every product and partial sum below half of fp16's largest */
    memset(p->ht, 0, (size_t)16 * 6 * 32 * sizeof(uint16_t));
    memset(p->hr, 0, 32 * sizeof(float));
    int f16_ok = hs == 32 && s->rb <= 64;
    if (hs == 32)
        for (int l = 0; l < 32; l++) {
            const double ma = p->nb[l] ? (1 << p->nb[l]) - 1 : 0, mb = p->nb[hs + l] ? (1 << p->nb[hs + l]) - 1 : 0;
            double r0 = 0, r1 = 0;
            for (int k = 0; k < 16; k++) {
                const float *e = p->kt + ((size_t)k * 12 + 6 * (l >> 4)) * 16 + (l & 15);
                for (int v = 0; v < 6; v++) {
                    if (!(fabs((double)e[16 * v]) <= 0x1p15)) f16_ok = 0;
                    p->ht[((size_t)k * 6 + v) * 32 + l] = kvc_f32_to_f16(e[16 * v]);
                }
                r0 = fmax(r0, fabs(e[0]) * ma + fabs(e[16]) * mb + fabs(e[32]));
                r1 = fmax(r1, fabs(e[48]) * ma + fabs(e[64]) * mb + fabs(e[80]));
            }
            if (!(r0 + r1 <= 0x1p15)) f16_ok = 0;
            p->hr[l] = (float)(r0 + r1);
        }
    p->f16 = dot == PCA_DOT_F16 && f16_ok && kvc_cpu_has_avx512fp16();
    free(Pk);
    free(var);
    return pca_tile_init(s, info, err);
}

int pca_dot_auto(void) {
    if (kvc_cpu_prefers_bf16_dot()) return PCA_DOT_BF16;
    return kvc_cpu_has_avx512fp16() ? PCA_DOT_F16 : PCA_DOT_F32;
}

/* ------------------------------------------------------------------ scalar reference ---- */

static void pair_encode_rows(const struct kv_slot *sl, const float *x, int pos0, int n, void *dst) {
    const struct pca_state *s = sl->state;
    const struct pca_pair *p = s->pair;
    const int d = s->d, h = p->h, hs = p->hs;
    float buf[PCA_MAX_D], y[PCA_MAX_D];
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * d, *cs = rope_cs(s, pos0 + r, buf);
        for (int i = 0; i < h; i++) {
            float c = cs[2 * i], sn = cs[2 * i + 1], x0 = xr[p->da[i]], x1 = xr[p->db[i]];
            float u0 = x0 * c + x1 * sn - s->mean[p->da[i]], u1 = x1 * c - x0 * sn - s->mean[p->db[i]];
            y[i] = p->t[i] * (p->vc[i] * u0 + p->vs[i] * u1);
            y[h + i] = p->t[i] * (p->vc[i] * u1 - p->vs[i] * u0);
        }
        uint8_t *row = (uint8_t *)dst + (size_t)r * s->rb;
        memset(row, 0, s->rb);
        for (int j = 0; j < d; j++) {
            const int u = j < h ? j : hs + j - h, b = p->nb[u], o = p->bo[u];
            if (!b) continue;
            uint32_t q = (uint32_t)kvc_quant_index(y[j], p->step[u], b);
            for (int t = 0; t < b; t++)
                if (q >> t & 1) row[(o + t) >> 3] |= (uint8_t)(1u << ((o + t) & 7));
        }
    }
}

/* z of one row in kernel slots (2 hs floats; padding 0). */
static void pair_z(const struct pca_state *s, const uint8_t *row, float *z) {
    const struct pca_pair *p = s->pair;
    for (int u = 0; u < 2 * p->hs; u++) {
        const int b = p->nb[u], o = p->bo[u];
        uint32_t q = 0;
        for (int t = 0; t < b; t++) q |= (uint32_t)(row[(o + t) >> 3] >> ((o + t) & 7) & 1) << t;
        z[u] = (float)q * p->step[u] + p->zoff[u];
    }
}

static void pair_decode_rows(const struct kv_slot *sl, const void *src, int pos0, int n, float *y) {
    const struct pca_state *s = sl->state;
    const struct pca_pair *p = s->pair;
    const int d = s->d, hs = p->hs;
    float z[2 * PCA_MAX_D], buf[PCA_MAX_D];
    for (int r = 0; r < n; r++) {
        pair_z(s, (const uint8_t *)src + (size_t)r * s->rb, z);
        const float *cs = rope_cs(s, pos0 + r, buf);
        float *o = y + (size_t)r * d;
        for (int i = 0; i < p->h; i++) { /* pre-RoPE pair V^T z / t, then RoPE */
            float za = z[i], zb = z[hs + i], it = 1.0f / p->t[i];
            float x0 = (p->vc[i] * za - p->vs[i] * zb) * it, x1 = (p->vs[i] * za + p->vc[i] * zb) * it;
            o[p->da[i]] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
            o[p->db[i]] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
        }
    }
}

/* qp: kernel slots of V_i q_i / t_i (2 hs floats, padding 0). */
void pca_pair_prepare(const struct kv_slot *sl, const float *q, float *qp) {
    const struct pca_state *s = sl->state;
    const struct pca_pair *p = s->pair;
    memset(qp, 0, (size_t)2 * p->hs * sizeof(float));
    for (int i = 0; i < p->h; i++) {
        float q0 = q[p->da[i]], q1 = q[p->db[i]], it = 1.0f / p->t[i];
        qp[i] = (p->vc[i] * q0 + p->vs[i] * q1) * it;
        qp[p->hs + i] = (p->vc[i] * q1 - p->vs[i] * q0) * it;
    }
}

static void pair_score_rows(const struct kv_slot *sl, const float *qp, const void *keys, int pos0, int n,
                            float *out) {
    const struct pca_state *s = sl->state;
    const struct pca_pair *p = s->pair;
    const int hs = p->hs;
    float z[2 * PCA_MAX_D], buf[PCA_MAX_D];
    const float *cs = NULL;
    for (int r = 0; r < n; r++) {
        pair_z(s, (const uint8_t *)keys + (size_t)r * s->rb, z);
        /* RoPE of position pos0 + r: the table's cos / sin at the start of its block of 16
         * times those of k theta (k = r % 16), as the AVX-512 kernel computes them */
        const int k = r % 16;
        if (k == 0) cs = rope_cs(s, pos0 + r, buf);
        float a = 0;
        for (int i = 0; i < p->h; i++) {
            float ck = p->ck[(size_t)k * hs + i], sk = p->sk[(size_t)k * hs + i];
            float c = cs[2 * i] * ck - cs[2 * i + 1] * sk, sn = cs[2 * i + 1] * ck + cs[2 * i] * sk;
            float za = z[i], zb = z[hs + i];
            a += qp[i] * (za * c - zb * sn) + qp[hs + i] * (za * sn + zb * c);
        }
        out[r] = a;
    }
}

/* Tiled slots (pca_tile.c): the plain-row code above runs on rows gathered from / put into
 * the tiles, PAIR_CHUNK at a time (a multiple of 16: the score's blocks stay where they were;
 * tiled rows are at most 64 bytes: 64 fields of at most 8 bits, pca_tile_init). */
#define PAIR_CHUNK 64
/* CALL once per chunk of the rows pos0 .. pos0 + n - 1 of the tiled rows at SRC, with the chunk's
 * first row i (from pos0), its length m and its rows gathered as plain rows into buf. */
#define PAIR_GATHERED(s, SRC, pos0, n, CALL)                            \
    do {                                                                \
        uint8_t buf[PAIR_CHUNK * 64 + 64];                              \
        for (int i = 0; i < (n); i += PAIR_CHUNK) {                     \
            const int m = (n) - i < PAIR_CHUNK ? (n) - i : PAIR_CHUNK;  \
            pca_tile_gather(s, SRC, pos0, i, m, buf);                   \
            CALL;                                                       \
        }                                                               \
    } while (0)

void pca_pair_encode(const struct kv_slot *sl, const float *x, int pos0, int n, void *dst) {
    const struct pca_state *s = sl->state;
    if (!s->pair->tiled) {
        pair_encode_rows(sl, x, pos0, n, dst);
        return;
    }
    uint8_t buf[PAIR_CHUNK * 64];
    for (int i = 0; i < n; i += PAIR_CHUNK) {
        const int m = n - i < PAIR_CHUNK ? n - i : PAIR_CHUNK;
        pair_encode_rows(sl, x + (size_t)i * s->d, pos0 + i, m, buf);
        for (int r = 0; r < m; r++) {
            int k;
            uint8_t *t = (uint8_t *)pca_tile_of(s, dst, pos0, i + r, &k);
            pca_tile_put_row(s, buf + (size_t)r * s->rb, t, k);
        }
    }
}

void pca_pair_decode(const struct kv_slot *sl, const void *src, int pos0, int n, float *y) {
    const struct pca_state *s = sl->state;
    if (!s->pair->tiled) pair_decode_rows(sl, src, pos0, n, y);
    else PAIR_GATHERED(s, src, pos0, n, pair_decode_rows(sl, buf, pos0 + i, m, y + (size_t)i * s->d));
}

void pca_pair_score_scalar(const struct kv_slot *sl, const float *qp, const void *keys, int pos0, int n,
                           float *out) {
    const struct pca_state *s = sl->state;
    if (!s->pair->tiled) pair_score_rows(sl, qp, keys, pos0, n, out);
    else PAIR_GATHERED(s, keys, pos0, n, pair_score_rows(sl, qp, buf, pos0 + i, m, out + i));
}

/* ------------------------------------------------------------------ AVX-512 ---- */

static inline __mmask16 m16(int n) { return n <= 0 ? (__mmask16)0 : kv_mask16(n); }

/* What unpacking a row into z needs (d <= 64, rows of <= 64 bytes), loaded once per call by
 * the score and the decode kernel: the byte masks of the row's two loads (bytes 0.. and 1..),
 * the 16-bit permute tables (word index, shift, mask) of the two 32-slot halves (major, minor),
 * and the step and offset of the four 16-lane quarters of z. */
struct pair_unpack512 {
    __mmask64 m0, m1;
    __m512i ia, ib, ha, hb, ka, kb;
    __m512 st0, st1, st2, st3, zo0, zo1, zo2, zo3;
};

KVC_TARGET_AVX512 static inline __attribute__((always_inline)) struct pair_unpack512
pair_unpack512_load(const struct pca_state *s) {
    const struct pca_pair *p = s->pair;
    struct pair_unpack512 u;
    u.m0 = s->rb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << s->rb) - 1);
    u.m1 = u.m0 >> 1;
    u.ia = _mm512_loadu_si512(p->widx), u.ib = _mm512_loadu_si512(p->widx + 32);
    u.ha = _mm512_loadu_si512(p->wsh), u.hb = _mm512_loadu_si512(p->wsh + 32);
    u.ka = _mm512_loadu_si512(p->wmask), u.kb = _mm512_loadu_si512(p->wmask + 32);
    u.st0 = _mm512_loadu_ps(p->step), u.st1 = _mm512_loadu_ps(p->step + 16);
    u.st2 = _mm512_loadu_ps(p->step + 32), u.st3 = _mm512_loadu_ps(p->step + 48);
    u.zo0 = _mm512_loadu_ps(p->zoff), u.zo1 = _mm512_loadu_ps(p->zoff + 16);
    u.zo2 = _mm512_loadu_ps(p->zoff + 32), u.zo3 = _mm512_loadu_ps(p->zoff + 48);
    return u;
}

/* The integer fields of the row at rp as 16-bit words: ga the major indices of pairs 0-31, gb
 * the minor ones (one two-source word permute, shift and mask per half). */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
pair_fields512(const struct pair_unpack512 *u, const uint8_t *rp, __m512i *ga, __m512i *gb) {
    const __m512i w0 = _mm512_maskz_loadu_epi8(u->m0, rp), w1 = _mm512_maskz_loadu_epi8(u->m1, rp + 1);
    *ga = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutex2var_epi16(w0, u->ia, w1), u->ha), u->ka);
    *gb = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutex2var_epi16(w0, u->ib, w1), u->hb), u->kb);
}

/* z of the row at rp: za0 / za1 the major coefficients of pairs 0-15 / 16-31, zb0 / zb1 the
 * minor ones (one two-source word permute per half extracts its 32 fields). */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
pair_unpack512(const struct pair_unpack512 *u, const uint8_t *rp, __m512 *za0, __m512 *za1, __m512 *zb0, __m512 *zb1) {
    __m512i ga, gb;
    pair_fields512(u, rp, &ga, &gb);
    *za0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(ga))), u->st0, u->zo0);
    *za1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(ga, 1))), u->st1, u->zo1);
    *zb0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(gb))), u->st2, u->zo2);
    *zb1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(gb, 1))), u->st3, u->zo3);
}

/* The integer indices of the row at rp as floats (ia0 / ia1: majors of pairs 0-15 / 16-31,
 * ib0 / ib1: minors); the steps and offsets are in the kt table. */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
pair_index512(const struct pair_unpack512 *u, const uint8_t *rp, __m512 *ia0, __m512 *ia1, __m512 *ib0, __m512 *ib1) {
    __m512i ga, gb;
    pair_fields512(u, rp, &ga, &gb);
    *ia0 = _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(ga)));
    *ia1 = _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(ga, 1)));
    *ib0 = _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(gb)));
    *ib1 = _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(gb, 1)));
}

/* R_k z of the row at rp (k = its position in the block of 16) from its indices and the kt
 * table: ra0 / ra1 the first element of pairs 0-15 / 16-31, rb0 / rb1 the second. */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
pair_turned512(const struct pair_unpack512 *u, const float *kt, const uint8_t *rp, __m512 *ra0, __m512 *rb0,
               __m512 *ra1, __m512 *rb1) {
    __m512 ia0, ia1, ib0, ib1;
    pair_index512(u, rp, &ia0, &ia1, &ib0, &ib1);
    *ra0 = _mm512_fmadd_ps(ia0, _mm512_load_ps(kt), _mm512_fmadd_ps(ib0, _mm512_load_ps(kt + 16), _mm512_load_ps(kt + 32)));
    *rb0 = _mm512_fmadd_ps(ia0, _mm512_load_ps(kt + 48), _mm512_fmadd_ps(ib0, _mm512_load_ps(kt + 64), _mm512_load_ps(kt + 80)));
    *ra1 = _mm512_fmadd_ps(ia1, _mm512_load_ps(kt + 96), _mm512_fmadd_ps(ib1, _mm512_load_ps(kt + 112), _mm512_load_ps(kt + 128)));
    *rb1 = _mm512_fmadd_ps(ia1, _mm512_load_ps(kt + 144), _mm512_fmadd_ps(ib1, _mm512_load_ps(kt + 160), _mm512_load_ps(kt + 176)));
}

/* Per block of 16 positions: the base cos / sin of its first position from the forward
 * pass's table (deinterleaved by two permutes) turn the G queries back once (R_p0^T q), into
 * ua0 / ub0 (pairs 0-15) and ua1 / ub1 (pairs 16-31). */
/* The grouped kernels' G prepared queries (qp + g * qs: pairs' majors 0-31, minors 32-63) in
 * registers, and the permutes that deinterleave a RoPE table row into cos / sin. */
#define PAIR_LOAD_QUERIES(G)                                                                              \
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);    \
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));                                     \
    __m512 qa0[4], qa1[4], qb0[4], qb1[4];                                                                \
    _Pragma("GCC unroll 4") for (int g = 0; g < (G); g++) {                                               \
        const float *u = qp + (size_t)g * qs;                                                             \
        qa0[g] = _mm512_loadu_ps(u);                                                                      \
        qa1[g] = _mm512_loadu_ps(u + 16);                                                                 \
        qb0[g] = _mm512_loadu_ps(u + 32);                                                                 \
        qb1[g] = _mm512_loadu_ps(u + 48);                                                                 \
    }

/* The nb rows of a block through ROW(k) (a full block unrolled, so that the rows' latency
 * chains overlap; missing rows score 0), then each query's 16 sums reduced and stored. */
#define PAIR_BLOCK_ROWS(G, ROW)                                                                           \
    __m512 v[4][16];                                                                                      \
    if (nb == 16) {                                                                                       \
        _Pragma("GCC unroll 16") for (int k = 0; k < 16; k++) ROW(k);                                     \
    } else                                                                                                \
        for (int k = 0; k < 16; k++) {                                                                    \
            if (k < nb) {                                                                                 \
                ROW(k);                                                                                   \
            } else {                                                                                      \
                _Pragma("GCC unroll 4") for (int g = 0; g < (G); g++) v[g][k] = _mm512_setzero_ps();      \
            }                                                                                             \
        }                                                                                                 \
    _Pragma("GCC unroll 4") for (int g = 0; g < (G); g++)                                                 \
        _mm512_mask_storeu_ps(out + (size_t)g * os + i0, kv_mask16(nb), kv512_reduce16_ps(v[g]));

#define PAIR_BLOCK_QUERIES(G)                                                                             \
    const float *cs = rope_cs(s, pos0 + i0, buf);                                                         \
    if (s->rope && i0 + 32 < n) { /* the table row two blocks on: it misses cache at depth */            \
        const char *nx = (const char *)kvc_rope_row(s->rope, pos0 + i0 + 32);                            \
        if (nx)                                                                                           \
            for (int l = 0; l < d * 4; l += 64) _mm_prefetch(nx + l, _MM_HINT_T0);                       \
    }                                                                                                     \
    __m512 t0 = _mm512_maskz_loadu_ps(m16(d), cs), t1 = _mm512_maskz_loadu_ps(m16(d - 16), cs + 16);      \
    __m512 t2 = _mm512_maskz_loadu_ps(m16(d - 32), cs + 32), t3 = _mm512_maskz_loadu_ps(m16(d - 48), cs + 48); \
    const __m512 C0 = _mm512_permutex2var_ps(t0, even, t1), S0 = _mm512_permutex2var_ps(t0, odd, t1);    \
    const __m512 C1 = _mm512_permutex2var_ps(t2, even, t3), S1 = _mm512_permutex2var_ps(t2, odd, t3);    \
    __m512 ua0[4], ua1[4], ub0[4], ub1[4];                                                                \
    _Pragma("GCC unroll 4") for (int g = 0; g < (G); g++) {                                               \
        ua0[g] = _mm512_fmadd_ps(qa0[g], C0, _mm512_mul_ps(qb0[g], S0));                                  \
        ub0[g] = _mm512_fmsub_ps(qb0[g], C0, _mm512_mul_ps(qa0[g], S0));                                  \
        ua1[g] = _mm512_fmadd_ps(qa1[g], C1, _mm512_mul_ps(qb1[g], S1));                                  \
        ub1[g] = _mm512_fmsub_ps(qb1[g], C1, _mm512_mul_ps(qa1[g], S1));                                  \
    }

/* One row (k of the block) of the float kernel into v[g][k]. */
#define PAIR_F32_ROW(k)                                                                                           \
    do {                                                                                                          \
        const uint8_t *rp = base + (size_t)(i0 + (k)) * s->rb;                                                   \
        if (i0 + (k) + 32 < n) _mm_prefetch((const char *)(rp + 32 * s->rb), _MM_HINT_T0);                       \
        __m512 ra0, rb0, ra1, rb1;                                                                                \
        pair_turned512(&un, p->kt + (size_t)(k) * 192, rp, &ra0, &rb0, &ra1, &rb1);                              \
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) {                                                    \
            __m512 a = _mm512_mul_ps(ua0[g], ra0);                                                                \
            a = _mm512_fmadd_ps(ub0[g], rb0, a);                                                                  \
            a = _mm512_fmadd_ps(ua1[g], ra1, a);                                                                  \
            v[g][k] = _mm512_fmadd_ps(ub1[g], rb1, a);                                                            \
        }                                                                                                         \
    } while (0)

/* d <= 64 and rows of <= 64 bytes: kernel slots are 4 x 16 lanes (major 0-31, minor 32-63).
 * Per block of 16 positions the G queries are turned back by the block's base angle
 * (q . R_(p0+k) z = (R_p0^T q) . R_k z); per row, R_k z comes from the row's integer indices
 * and the kt table (8 FMAs) and is dotted with the G queries in float. */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
pair_score_g_impl(const struct pca_state *s, const int G, const float *qp, size_t qs, const void *keys, int pos0,
                  int n, float *out, size_t os) {
    const struct pca_pair *p = s->pair;
    const int d = s->d;
    const struct pair_unpack512 un = pair_unpack512_load(s);
    PAIR_LOAD_QUERIES(G)
    const uint8_t *base = keys;
    float buf[PCA_MAX_D];
    for (int i0 = 0; i0 < n; i0 += 16) {
        const int nb = n - i0 < 16 ? n - i0 : 16;
        PAIR_BLOCK_QUERIES(G)
        PAIR_BLOCK_ROWS(G, PAIR_F32_ROW)
    }
}

/* decode, d <= 64 and rows of <= 64 bytes: z unpacked as in the score, the pre-RoPE pair
 * (ra za - rb zb, rb za + ra zb), RoPE with the forward pass's cos / sin of the row's position,
 * then the pairs back to their dims (interleaved, or the two halves for NEOX). Other shapes:
 * the scalar decode. */
KVC_TARGET_AVX512 static void pair_decode_rows512(const struct kv_slot *sl, const void *src, int pos0, int n, float *y,
                                                  const float *zt /* (n, 64) z of the rows in place of src, or NULL */) {
    const struct pca_state *s = sl->state;
    const struct pca_pair *p = s->pair;
    const int d = s->d;
    if (d > 64 || s->rb > 64 || (p->neox && p->h != 32)) {
        pair_decode_rows(sl, src, pos0, n, y);
        return;
    }
    const struct pair_unpack512 un = pair_unpack512_load(s);
    const __m512 ra0 = _mm512_loadu_ps(p->ra), ra1 = _mm512_loadu_ps(p->ra + 16);
    const __m512 rb0 = _mm512_loadu_ps(p->rb), rb1 = _mm512_loadu_ps(p->rb + 16);
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ihi = _mm512_add_epi32(ilo, _mm512_set1_epi32(8));
    float buf[PCA_MAX_D];
    for (int r = 0; r < n; r++) {
        __m512 za0, za1, zb0, zb1;
        if (zt) {
            const float *z = zt + (size_t)r * 64;
            za0 = _mm512_load_ps(z), za1 = _mm512_load_ps(z + 16), zb0 = _mm512_load_ps(z + 32), zb1 = _mm512_load_ps(z + 48);
        } else {
            pair_unpack512(&un, (const uint8_t *)src + (size_t)r * s->rb, &za0, &za1, &zb0, &zb1);
        }
        /* pre-RoPE pairs */
        __m512 x00 = _mm512_fmsub_ps(ra0, za0, _mm512_mul_ps(rb0, zb0)), x10 = _mm512_fmadd_ps(rb0, za0, _mm512_mul_ps(ra0, zb0));
        __m512 x01 = _mm512_fmsub_ps(ra1, za1, _mm512_mul_ps(rb1, zb1)), x11 = _mm512_fmadd_ps(rb1, za1, _mm512_mul_ps(ra1, zb1));
        /* RoPE of the row's position */
        const float *cs = rope_cs(s, pos0 + r, buf);
        __m512 t0 = _mm512_maskz_loadu_ps(m16(d), cs), t1 = _mm512_maskz_loadu_ps(m16(d - 16), cs + 16);
        __m512 t2 = _mm512_maskz_loadu_ps(m16(d - 32), cs + 32), t3 = _mm512_maskz_loadu_ps(m16(d - 48), cs + 48);
        const __m512 C0 = _mm512_permutex2var_ps(t0, even, t1), S0 = _mm512_permutex2var_ps(t0, odd, t1);
        const __m512 C1 = _mm512_permutex2var_ps(t2, even, t3), S1 = _mm512_permutex2var_ps(t2, odd, t3);
        __m512 a0 = _mm512_fmsub_ps(x00, C0, _mm512_mul_ps(x10, S0)), b0 = _mm512_fmadd_ps(x00, S0, _mm512_mul_ps(x10, C0));
        __m512 a1 = _mm512_fmsub_ps(x01, C1, _mm512_mul_ps(x11, S1)), b1 = _mm512_fmadd_ps(x01, S1, _mm512_mul_ps(x11, C1));
        float *o = y + (size_t)r * d;
        if (p->neox) { /* h = 32: dims 0-31 the first of each pair, 32-63 the second */
            _mm512_storeu_ps(o, a0);
            _mm512_storeu_ps(o + 16, a1);
            _mm512_storeu_ps(o + 32, b0);
            _mm512_storeu_ps(o + 48, b1);
        } else {
            _mm512_mask_storeu_ps(o, m16(d), _mm512_permutex2var_ps(a0, ilo, b0));
            _mm512_mask_storeu_ps(o + 16, m16(d - 16), _mm512_permutex2var_ps(a0, ihi, b0));
            _mm512_mask_storeu_ps(o + 32, m16(d - 32), _mm512_permutex2var_ps(a1, ilo, b1));
            _mm512_mask_storeu_ps(o + 48, m16(d - 48), _mm512_permutex2var_ps(a1, ihi, b1));
        }
    }
}

#define KVC_TARGET_AVX512BF16 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")))

/* The bf16 kernel (AVX512-BF16, every field <= 7 bits). Per row: two word permutes, shifts and
 * one ternary-logic op ((field & mask) | 0x4300) give the bf16 numbers 128 + index of each
 * pair's (major, minor) in one dword; four vdpbf16ps with the bt table turn them by k theta
 * (R_k z = (128 + i) . (A0, A1) + A2 - 128 (A0 + A1), per pair and half); R_k z and the turned
 * queries are rounded to bf16 (vcvtne2ps2bf16) and each query's dot is two vdpbf16ps.
 * Error against the float kernel (u = 2^-8, bf16's unit roundoff; products of bf16 numbers
 * are exact in float, sums ~2^-24 per term): the A's rounded to bf16 move z_j by at most
 * u (|ia| st_a + |ib| st_b) per pair, and the bf16 operands of the final dot move it by at
 * most (2u + u^2) sum_j |u_j r_j|; with |qp_i| |z_i| = |q_i| |k_i| (the metric weight t
 * cancels), |score - exact| <= 2^-7 (|q| |k| + sum_i |q_i| (|ia| st_a + |ib| st_b) / t_i)
 * besides float rounding: ~1 % of the 2.75-bit keys' own error (~0.1-0.2 |k|). */
/* One row (k of the block) of the bf16 kernel into v[g][k]. */
#define PAIR_BF16_ROW(k)                                                                                          \
    do {                                                                                                          \
        const uint8_t *rp = base + (size_t)(i0 + (k)) * s->rb;                                                   \
        if (i0 + (k) + 32 < n) _mm_prefetch((const char *)(rp + 32 * s->rb), _MM_HINT_T0);                       \
        const __m512i w0 = _mm512_maskz_loadu_epi8(m0, rp), w1 = _mm512_maskz_loadu_epi8(m1, rp + 1);           \
        const __m512i f0 = _mm512_srlv_epi16(_mm512_permutex2var_epi16(w0, xi0, w1), xs0);                      \
        const __m512i f1 = _mm512_srlv_epi16(_mm512_permutex2var_epi16(w0, xi1, w1), xs1);                      \
        const __m512bh e0 = (__m512bh)_mm512_ternarylogic_epi32(f0, xm0, magic, 0xEA); /* (f & m) | magic */    \
        const __m512bh e1 = (__m512bh)_mm512_ternarylogic_epi32(f1, xm1, magic, 0xEA);                          \
        const float *t = p->bt + (size_t)(k) * 128;                                                               \
        const __m512 ra0 = _mm512_dpbf16_ps(_mm512_load_ps(t + 32), e0, (__m512bh)_mm512_load_si512(t));        \
        const __m512 rb0 = _mm512_dpbf16_ps(_mm512_load_ps(t + 48), e0, (__m512bh)_mm512_load_si512(t + 16));   \
        const __m512 ra1 = _mm512_dpbf16_ps(_mm512_load_ps(t + 96), e1, (__m512bh)_mm512_load_si512(t + 64));   \
        const __m512 rb1 = _mm512_dpbf16_ps(_mm512_load_ps(t + 112), e1, (__m512bh)_mm512_load_si512(t + 80));  \
        const __m512bh x = _mm512_cvtne2ps_pbh(ra0, rb0), y = _mm512_cvtne2ps_pbh(ra1, rb1);                    \
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) v[g][k] =                                            \
            _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), x, qx[g]), y, qy[g]);                         \
    } while (0)

KVC_TARGET_AVX512BF16 static inline __attribute__((always_inline)) void
pair_score_g_bf16_impl(const struct pca_state *s, const int G, const float *qp, size_t qs, const void *keys,
                       int pos0, int n, float *out, size_t os) {
    const struct pca_pair *p = s->pair;
    const int d = s->d;
    const __mmask64 m0 = s->rb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << s->rb) - 1), m1 = m0 >> 1;
    const __m512i xi0 = _mm512_loadu_si512(p->xidx), xi1 = _mm512_loadu_si512(p->xidx + 32);
    const __m512i xs0 = _mm512_loadu_si512(p->xsh), xs1 = _mm512_loadu_si512(p->xsh + 32);
    const __m512i xm0 = _mm512_loadu_si512(p->xmask), xm1 = _mm512_loadu_si512(p->xmask + 32);
    const __m512i magic = _mm512_set1_epi16(0x4300); /* bf16 128.0: 0x4300 | i = 128 + i for i < 128 */
    PAIR_LOAD_QUERIES(G)
    const uint8_t *base = keys;
    float buf[PCA_MAX_D];
    for (int i0 = 0; i0 < n; i0 += 16) {
        const int nb = n - i0 < 16 ? n - i0 : 16;
        PAIR_BLOCK_QUERIES(G)
        __m512bh qx[4], qy[4]; /* (pairs 0-15: ub0 | ua0), (pairs 16-31: ub1 | ua1) in bf16 */
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            qx[g] = _mm512_cvtne2ps_pbh(ua0[g], ub0[g]);
            qy[g] = _mm512_cvtne2ps_pbh(ua1[g], ub1[g]);
        }
        PAIR_BLOCK_ROWS(G, PAIR_BF16_ROW)
    }
}

KVC_TARGET_AVX512BF16 void pca_pair_score_g_bf16(const struct kv_slot *sl, int G, const float *qp, size_t qs,
                                                 const void *keys, int pos0, int n, float *out, size_t os) {
    const struct pca_state *s = sl->state;
#define PCA_CALL(GL, g0) pair_score_g_bf16_impl(s, GL, qp + (size_t)(g0) * qs, qs, keys, pos0, n, out + (size_t)(g0) * os, os)
    KV_G_PASSES(G, PCA_CALL)
#undef PCA_CALL
}

#define KVC_TARGET_AVX512FP16 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512fp16")))

/* The fp16 kernel (AVX512-FP16, d <= 64): a row's 32 major and 32 minor indices become fp16 in
 * one conversion each (vcvtuw2ph), the ht table turns all 32 pairs by k theta in 4 FMAs, each
 * query's dot is 2 FMAs over 32 lanes, and the rows' sums are reduced 16 at a time in fp16 (word,
 * dword, qword interleaves, then 128-bit lanes), converted to float once per block.
 * Error against the exact score of the decoded key (u = 2^-11, fp16's unit roundoff): each
 * turned coordinate is off by at most 3u E_i (E_i = |ia| st_a + |ib| st_b + |zoff_a| + |zoff_b|,
 * the A's rounded to fp16 and two FMAs), the query's fp16 rounding and the products and the
 * 6-level sum add at most 9u |qp_i| |R z_i| per pair; A's below fp16's normal range are off by
 * at most 2^-25 each: |score - exact| <= sum_i |qp pair i| (2^-6 E_i + 2^-23 (|ia| + |ib| + 1)),
 * besides float rounding; ~0.5 % of the 2.75-bit keys' own error. Queries past hr's range take
 * the float kernel (pair_f16_fits). */
KVC_TARGET_AVX512FP16 static inline __attribute__((always_inline)) __m512i
pair_f16_fold(__m512i a, __m512i b, int level) { /* interleave at 16/32/64 bits, add in fp16 */
    __m512i lo, hi;
    if (level == 0) lo = _mm512_unpacklo_epi16(a, b), hi = _mm512_unpackhi_epi16(a, b);
    else if (level == 1) lo = _mm512_unpacklo_epi32(a, b), hi = _mm512_unpackhi_epi32(a, b);
    else lo = _mm512_unpacklo_epi64(a, b), hi = _mm512_unpackhi_epi64(a, b);
    return _mm512_castph_si512(_mm512_add_ph(_mm512_castsi512_ph(lo), _mm512_castsi512_ph(hi)));
}

KVC_TARGET_AVX512FP16 static inline __attribute__((always_inline)) void
pair_score_g_f16_impl(const struct pca_state *s, const int G, const float *qp, size_t qs, const void *keys,
                      int pos0, int n, float *out, size_t os) {
    const struct pca_pair *p = s->pair;
    const int d = s->d;
    const struct pair_unpack512 un = pair_unpack512_load(s);
    PAIR_LOAD_QUERIES(G)
    const uint8_t *base = keys;
    float buf[PCA_MAX_D];
    for (int i0 = 0; i0 < n; i0 += 16) {
        const int nb = n - i0 < 16 ? n - i0 : 16;
        PAIR_BLOCK_QUERIES(G)
        __m512h ua[4], ub[4]; /* the turned queries, pairs 0-31, in fp16 */
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            ua[g] = _mm512_castsi512_ph(_mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_castph_si256(_mm512_cvtxps_ph(ua0[g]))),
                _mm256_castph_si256(_mm512_cvtxps_ph(ua1[g])), 1));
            ub[g] = _mm512_castsi512_ph(_mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_castph_si256(_mm512_cvtxps_ph(ub0[g]))),
                _mm256_castph_si256(_mm512_cvtxps_ph(ub1[g])), 1));
        }
        __m512i y[4][4]; /* per query, per 4 rows: their 32-lane sums folded to 8 lanes each */
#pragma GCC unroll 4
        for (int q4 = 0; q4 < 4; q4++) {
            __m512i r2[4][2];
#pragma GCC unroll 2
            for (int h2 = 0; h2 < 2; h2++) {
                __m512i sr[4][2];
#pragma GCC unroll 2
                for (int e = 0; e < 2; e++) {
                    const int k = 4 * q4 + 2 * h2 + e;
                    if (k >= nb) {
#pragma GCC unroll 4
                        for (int g = 0; g < G; g++) sr[g][e] = _mm512_setzero_si512();
                        continue;
                    }
                    const uint8_t *rp = base + (size_t)(i0 + k) * s->rb;
                    if (i0 + k + 32 < n) _mm_prefetch((const char *)(rp + 32 * s->rb), _MM_HINT_T0);
                    __m512i ga, gb;
                    pair_fields512(&un, rp, &ga, &gb);
                    const __m512h fa = _mm512_cvtepu16_ph(ga), fb = _mm512_cvtepu16_ph(gb);
                    const uint16_t *t = p->ht + (size_t)k * 6 * 32;
                    const __m512h ra = _mm512_fmadd_ph(fa, _mm512_load_ph(t), _mm512_fmadd_ph(fb, _mm512_load_ph(t + 32), _mm512_load_ph(t + 64)));
                    const __m512h rb = _mm512_fmadd_ph(fa, _mm512_load_ph(t + 96), _mm512_fmadd_ph(fb, _mm512_load_ph(t + 128), _mm512_load_ph(t + 160)));
#pragma GCC unroll 4
                    for (int g = 0; g < G; g++)
                        sr[g][e] = _mm512_castph_si512(_mm512_fmadd_ph(ua[g], ra, _mm512_mul_ph(ub[g], rb)));
                }
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) r2[g][h2] = pair_f16_fold(sr[g][0], sr[g][1], 0);
            }
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) y[g][q4] = pair_f16_fold(r2[g][0], r2[g][1], 1);
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            /* rows 0-7 and 8-15, one partial per 128-bit lane each */
            const __m512i z0 = pair_f16_fold(y[g][0], y[g][1], 2), z1 = pair_f16_fold(y[g][2], y[g][3], 2);
            const __m512h a = _mm512_castsi512_ph(_mm512_shuffle_i64x2(z0, z1, _MM_SHUFFLE(2, 0, 2, 0)));
            const __m512h b = _mm512_castsi512_ph(_mm512_shuffle_i64x2(z0, z1, _MM_SHUFFLE(3, 1, 3, 1)));
            const __m512i c = _mm512_castph_si512(_mm512_add_ph(a, b)); /* [0-7, 0-7, 8-15, 8-15] */
            const __m512i e = _mm512_shuffle_i64x2(c, c, _MM_SHUFFLE(3, 1, 2, 0)); /* [0-7, 8-15, 0-7, 8-15] */
            const __m256h f = _mm256_add_ph(_mm256_castsi256_ph(_mm512_castsi512_si256(e)),
                                            _mm256_castsi256_ph(_mm512_extracti64x4_epi64(e, 1)));
            _mm512_mask_storeu_ps(out + (size_t)g * os + i0, kv_mask16(nb), _mm512_cvtxph_ps(f));
        }
    }
}

/* 1 when each of the G queries has sum_i |qp pair i| hr_i <= 2^15 (the fp16 kernel's range; 0 for
 * NaN or infinite queries). */
KVC_TARGET_AVX512 static int pair_f16_fits(const struct pca_pair *p, int G, const float *qp, size_t qs) {
    for (int g = 0; g < G; g++) {
        const float *u = qp + (size_t)g * qs;
        __m512 m = _mm512_setzero_ps();
        for (int h = 0; h < 32; h += 16) {
            const __m512 a = _mm512_loadu_ps(u + h), b = _mm512_loadu_ps(u + p->hs + h);
            m = _mm512_fmadd_ps(_mm512_sqrt_ps(_mm512_fmadd_ps(a, a, _mm512_mul_ps(b, b))), _mm512_loadu_ps(p->hr + h), m);
        }
        if (!(_mm512_reduce_add_ps(m) <= 0x1p15f)) return 0;
    }
    return 1;
}

KVC_TARGET_AVX512FP16 void pca_pair_score_g_f16(const struct kv_slot *sl, int G, const float *qp, size_t qs,
                                                const void *keys, int pos0, int n, float *out, size_t os) {
    const struct pca_state *s = sl->state;
#define PCA_CALL(GL, g0) pair_score_g_f16_impl(s, GL, qp + (size_t)(g0) * qs, qs, keys, pos0, n, out + (size_t)(g0) * os, os)
    KV_G_PASSES(G, PCA_CALL)
#undef PCA_CALL
}

KVC_TARGET_AVX512 void pca_pair_score_g_f32(const struct kv_slot *sl, int G, const float *qp, size_t qs,
                                            const void *keys, int pos0, int n, float *out, size_t os) {
    const struct pca_state *s = sl->state;
    if (s->d > 64 || s->rb > 64) {
        for (int g = 0; g < G; g++) pca_pair_score_scalar(sl, qp + (size_t)g * qs, keys, pos0, n, out + (size_t)g * os);
        return;
    }
#define PCA_CALL(GL, g0) pair_score_g_impl(s, GL, qp + (size_t)(g0) * qs, qs, keys, pos0, n, out + (size_t)(g0) * os, os)
    KV_G_PASSES(G, PCA_CALL)
#undef PCA_CALL
}

KVC_TARGET_AVX512 void pca_pair_decode_avx512(const struct kv_slot *sl, const void *src, int pos0, int n, float *y) {
    const struct pca_state *s = sl->state;
    if (!s->pair->tiled) {
        pair_decode_rows512(sl, src, pos0, n, y, NULL);
        return;
    }
    /* per tile: the z of all its fields (slot-major), transposed to rows, then the row decode */
    _Alignas(64) float Z[64 * PCA_TILE], ZT[PCA_TILE * 64];
    int k;
    const uint8_t *tile = pca_tile_of(s, src, pos0, 0, &k);
    for (int r0 = -k; r0 < n; r0 += PCA_TILE, tile += (size_t)PCA_TILE * s->rb) {
        const int lo = r0 < 0 ? -r0 : 0, hi = n - r0 < PCA_TILE ? n - r0 : PCA_TILE;
        pca_tile_z(s, tile, Z);
        kvc_transpose_f32(KVC_ISA_AVX512, 64, PCA_TILE, Z, PCA_TILE, ZT, 64);
        pair_decode_rows512(sl, NULL, pos0 + r0 + lo, hi - lo, y + (size_t)(r0 + lo) * s->d, ZT + (size_t)lo * 64);
    }
}

/* Tiled slots: the tiled fp16 kernel; a query outside its range takes the float kernel on
 * gathered rows. */
void pca_pair_score_g_avx512(const struct kv_slot *sl, int G, const float *qp, size_t qs, const void *keys, int pos0,
                             int n, float *out, size_t os) {
    const struct pca_state *s = sl->state;
    if (s->pair->tiled) {
        if (!pca_tile_score_g_f16(sl, G, qp, qs, keys, pos0, n, out, os))
            PAIR_GATHERED(s, keys, pos0, n, pca_pair_score_g_f32(sl, G, qp, qs, buf, pos0 + i, m, out + i, os));
        return;
    }
    if (s->pair->bf16 && s->d <= 64 && s->rb <= 64) pca_pair_score_g_bf16(sl, G, qp, qs, keys, pos0, n, out, os);
    else if (s->pair->f16 && s->d <= 64 && s->rb <= 64 && pair_f16_fits(s->pair, G, qp, qs))
        pca_pair_score_g_f16(sl, G, qp, qs, keys, pos0, n, out, os);
    else pca_pair_score_g_f32(sl, G, qp, qs, keys, pos0, n, out, os);
}
