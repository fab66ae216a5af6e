/* hdc.c - the hdc KV codec: rows as hypervectors. A row x (d floats) is placed in d random
 * slots of a D = m*d vector (random injection; identity for m = 1), bound with random signs
 * and spread by a normalised fast Walsh-Hadamard transform (orthonormal, O(D log D)); the
 * hypervector h is then quantized per coordinate to b bits:
 *   b = 1      bipolar sign(h), plus the f16 norm ||x||; decoded h = c1 ||x|| sign(h) with
 *              c1 = 1 / E||u||_1 for u uniform on the unit sphere of R^D (about
 *              sqrt(pi/2) / sqrt(D)), which makes dot products unbiased (docs/hdc.md);
 *   b = 2..4   Lloyd-Max levels of a unit Gaussian, plus one f16 scale per row
 *              (scale=rms|ls|norm|unbiased, see docs/hdc.md for the measurements).
 * Keys: the query is transformed once per head (prepare_query) and scored against the codes
 * without reconstructing keys: b = 1 adds the query coordinates where bits are set
 * (<Hq, sign> = 2 * sum over set bits - sum), b >= 2 looks levels up; with qbits=1 the
 * query is a sign sketch too and scores are ||q|| ||k|| cos(pi * hamming / D) (popcount).
 * Values: accumulate bundles weighted hypervectors in hyperspace (D floats), finish unbinds
 * once (inverse transform, signs, gather). The row kernels (shared with hdc-select) are in
 * hdc_kernels.c. */
#include "hdc_common.h"
#include "../kv/calib_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- quantizer constants: Lloyd-Max for N(0, 1), computed by iterating Lloyd's algorithm
 * (centroid / midpoint conditions) in float64 to convergence; tests/test_hdc.c re-checks the
 * centroid conditions. ---- */
#define L1A 0.797884560803
#define L2A 0.452780034636
#define L2B 1.510417608499
#define L3A 0.245094178944
#define L3B 0.756005281206
#define L3C 1.343909278505
#define L3D 2.151945704537
#define L4A 0.128395029851
#define L4B 0.388048299490
#define L4C 0.656759118532
#define L4D 0.942340456487
#define L4E 1.256231197347
#define L4F 1.618046386022
#define L4G 2.069017226531
#define L4H 2.732589570995
const double hdc_lloyd_levels[5][16] = {
    {0},
    {-L1A, L1A},
    {-L2B, -L2A, L2A, L2B},
    {-L3D, -L3C, -L3B, -L3A, L3A, L3B, L3C, L3D},
    {-L4H, -L4G, -L4F, -L4E, -L4D, -L4C, -L4B, -L4A, L4A, L4B, L4C, L4D, L4E, L4F, L4G, L4H},
};
const double hdc_lloyd_mse[5] = {1.0, 0.363380227632, 0.117481847829, 0.034547760789,
                                 0.009501008008};

/* ---- parameters ---- */

static const char *const scale_names[] = {"rms", "ls", "norm", "unbiased"};

#define HDC_PARAMS                                                                          \
    "bits=1..4 (default 4), expand=1|2|4|8|16|32|64 (D = expand*d, default 1), "            \
    "scale=rms|ls|norm|unbiased (bits >= 2, default unbiased), qbits=32|1 (1: popcount "    \
    "scores, bits=1 only; default 32), rounds=1|2 (default 2), mean=auto|calib|none (subtract "      \
    "the calibrated mean of the rows: auto = when --kv-calib is given), seed=N (default 0)"

static int parse_int(const char *val, long lo, long hi, long *out) {
    char *end;
    long v = strtol(val, &end, 10);
    if (end == val || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static kvc_status hdc_param(void *cfgp, const char *key, const char *val, kvc_error *err) {
    struct hdc_cfg *c = cfgp;
    long v;
    if (strcmp(key, "bits") == 0) {
        if (!parse_int(val, 1, 4, &v))
            return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc': bits must be 1, 2, 3 or 4, got '%s'", val);
        c->bits = (int)v;
    } else if (strcmp(key, "expand") == 0) {
        if (!parse_int(val, 1, 64, &v) || (v & (v - 1)))
            return kvc_fail(err, KVC_ERR_ARG,
                            "KV codec 'hdc': expand must be a power of two 1..64 (D = expand*d "
                            "must be a power of two for the Walsh-Hadamard transform), got '%s'",
                            val);
        c->expand = (int)v;
    } else if (strcmp(key, "scale") == 0) {
        int f = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(val, scale_names[i]) == 0) f = i;
        if (f < 0)
            return kvc_fail(err, KVC_ERR_ARG,
                            "KV codec 'hdc': scale must be rms, ls, norm or unbiased, got '%s'", val);
        c->scale = f;
    } else if (strcmp(key, "qbits") == 0) {
        if (!parse_int(val, 1, 32, &v) || (v != 1 && v != 32))
            return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc': qbits must be 32 or 1, got '%s'", val);
        c->qbits = (int)v;
    } else if (strcmp(key, "rounds") == 0) {
        if (!parse_int(val, 1, 2, &v))
            return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc': rounds must be 1 or 2, got '%s'", val);
        c->rounds = (int)v;
    } else if (strcmp(key, "mean") == 0) {
        if (strcmp(val, "none") == 0) c->mean = HDC_MEAN_NONE;
        else if (strcmp(val, "auto") == 0) c->mean = HDC_MEAN_AUTO;
        else if (strcmp(val, "calib") == 0) c->mean = HDC_MEAN_CALIB;
        else return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc': mean must be auto, calib or none, got '%s'", val);
    } else if (strcmp(key, "seed") == 0) {
        char *end;
        unsigned long long s = strtoull(val, &end, 0);
        if (end == val || *end || val[0] == '-')
            return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc': seed must be an unsigned integer, got '%s'", val);
        c->seed = (uint64_t)s;
    } else {
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc': unknown parameter '%s' (valid: %s)", key,
                        HDC_PARAMS);
    }
    return KVC_OK;
}

static kvc_status hdc_parse(void *cfgp, const char *params, kvc_error *err) {
    struct hdc_cfg *c = cfgp;
    c->bits = 4;
    c->expand = 1;
    c->scale = HDC_SCALE_UNBIASED;
    c->qbits = 32;
    c->rounds = 2;
    c->mean = HDC_MEAN_AUTO;
    c->seed = 0;
    kvc_status st = kv_params_each("hdc", params, cfgp, hdc_param, err);
    if (st) return st;
    if (c->qbits == 1 && c->bits != 1)
        return kvc_fail(err, KVC_ERR_ARG,
                        "KV codec 'hdc': qbits=1 (popcount scores) needs bits=1, got bits=%d", c->bits);
    return KVC_OK;
}

kvc_status hdc_check_D(const char *codec, int d, int expand, kvc_error *err) {
    long D = (long)d * expand;
    if (d <= 0 || D < HDC_MIN_D || D > HDC_MAX_D || (D & (D - 1)))
        return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                        "KV codec '%s': D = expand*d = %d*%d = %ld must be a power of two in "
                        "[%d, %d]",
                        codec, expand, d, D, HDC_MIN_D, HDC_MAX_D);
    return KVC_OK;
}

static kvc_status hdc_check_dim(const void *cfgp, int d, kvc_error *err) {
    const struct hdc_cfg *c = cfgp;
    return hdc_check_D("hdc", d, c->expand, err);
}
static size_t hdc_row_bytes(const void *cfgp, int d) {
    const struct hdc_cfg *c = cfgp;
    if (hdc_check_D("hdc", d, c->expand, NULL)) return 0;
    return 2 + (size_t)c->bits * (size_t)(d * c->expand) / 8;
}

static int hdc_qpf(const void *cfgp, int d) {
    const struct hdc_cfg *c = cfgp;
    return hdc_qp_floats(d * c->expand, c->bits);
}
static int hdc_accf(const void *cfgp, int d) {
    const struct hdc_cfg *c = cfgp;
    return d * c->expand + 16; /* [D]: sum of weights (centred values) */
}

static int hdc_dec_accf(const void *cfgp, int d) {
    const struct hdc_cfg *c = cfgp;
    return d * c->expand; /* decode_acc rows: the D coordinates (the mean folded in) */
}

/* ---- state ---- */

/* E[u Q(u)] for u = sqrt(D) x_1, x uniform on the unit sphere S^(D-1) (the coordinate
 * distribution of a randomly rotated row, density C (1 - u^2/D)^((D-3)/2) on |u| < sqrt(D)):
 * the integral of u f(u) over a cell (a, b) is K (g(a) - g(b)) with g(t) = (1 - t^2/D)^((D-1)/2)
 * and K = C D / (D - 1). As D grows it tends to the Gaussian E[u Q(u)] = E[Q^2]. */
double hdc_sphere_euq(int D, const float *lev, const float *thr, int L) {
    double Dd = (double)D;
    double logC = lgamma(Dd / 2) - lgamma((Dd - 1) / 2) - 0.5 * log(M_PI * Dd);
    double K = exp(logC) * Dd / (Dd - 1);
    double s = 0;
    for (int c = 0; c < L; c++) {
        double a = c ? (double)thr[c - 1] : -INFINITY, b = c + 1 < L ? (double)thr[c] : INFINITY;
        double ga = a * a >= Dd ? 0.0 : exp((Dd - 1) / 2 * log1p(-a * a / Dd));
        double gb = b * b >= Dd ? 0.0 : exp((Dd - 1) / 2 * log1p(-b * b / Dd));
        s += (double)lev[c] * K * (ga - gb);
    }
    return s;
}

kvc_status hdc_state_init(struct hdc_state *st, int d, const struct hdc_cfg *c, uint64_t seed,
                          kvc_error *err) {
    memset(st, 0, sizeof *st);
    kvc_status s = hdc_check_D("hdc", d, c->expand, err);
    if (s) return s;
    int D = d * c->expand;
    st->d = d;
    st->D = D;
    st->W = D / 64;
    st->bits = c->bits;
    st->scale = c->scale;
    st->qbits = c->qbits;
    st->rounds = c->rounds;
    st->use_vpopcnt = kvc_cpu_has_vpopcntdq();
    st->use_i8 = c->bits >= 2 && kvc_cpu_has_vnni_vbmi();
    st->row_bytes = 2 + (size_t)c->bits * D / 8;
    st->pos = malloc((size_t)d * sizeof *st->pos);
    st->sgn = malloc((size_t)d * sizeof *st->sgn);
    st->cos_tab = malloc((size_t)(D + 1) * sizeof *st->cos_tab);
    int *perm = malloc((size_t)D * sizeof *perm);
    if (c->rounds == 2) st->sgn2 = malloc((size_t)D * sizeof *st->sgn2);
    if (!st->pos || !st->sgn || !st->cos_tab || !perm || (c->rounds == 2 && !st->sgn2)) {
        free(perm);
        hdc_state_release(st);
        return kvc_fail(err, KVC_ERR_NOMEM, "KV codec 'hdc': out of memory for slot state");
    }
    uint64_t r = seed ^ (c->seed * 0xd1342543de82ef95ull);
    (void)kvc_splitmix64(&r);
    /* random injection: the first d of a Fisher-Yates shuffle of [0, D) (identity for m=1,
     * where a permutation would add nothing to the random signs) */
    for (int i = 0; i < D; i++) perm[i] = i;
    if (D > d)
        for (int i = 0; i < d; i++) {
            uint64_t z = kvc_splitmix64(&r);
            int j = i + (int)(((z >> 32) * (uint64_t)(D - i)) >> 32);
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    for (int i = 0; i < d; i++) st->pos[i] = perm[i];
    free(perm);
    uint64_t bits = 0;
    for (int i = 0; i < d; i++) {
        if ((i & 63) == 0) bits = kvc_splitmix64(&r);
        st->sgn[i] = (bits >> (i & 63)) & 1 ? -1.0f : 1.0f;
    }
    if (st->sgn2)
        for (int i = 0; i < D; i++) {
            if ((i & 63) == 0) bits = kvc_splitmix64(&r);
            st->sgn2[i] = (bits >> (i & 63)) & 1 ? -1.0f : 1.0f;
        }
    for (int h = 0; h <= D; h++) st->cos_tab[h] = (float)cos(M_PI * (double)h / (double)D);
    int L = 1 << c->bits;
    if (c->bits == 1) {
        st->lev[0] = -1.0f;
        st->lev[1] = 1.0f;
    } else {
        for (int i = 0; i < L; i++) st->lev[i] = (float)hdc_lloyd_levels[c->bits][i];
    }
    for (int i = L; i < 16; i++) st->lev[i] = 0.0f;
    for (int i = 0; i + 1 < L; i++) st->thr[i] = (st->lev[i] + st->lev[i + 1]) * 0.5f;
    if (c->bits >= 2) { /* int8 levels (offset by 128 to be unsigned) for the VNNI scores */
        st->l8s = 127.0f / st->lev[L - 1];
        for (int i = 0; i < 64; i++) st->lev8u[i] = (uint8_t)(128 + lrintf(st->lev[i % L] * st->l8s));
        hdc_int8_init(st);
        st->use_v8 = kvc_cpu_has_vnni_vbmi() && hdc_vsum_fits(st, st->row_bytes);
    }
    double euq = hdc_sphere_euq(D, st->lev, st->thr, L);
    st->unb = (float)(1.0 / euq);
    st->c1 = (float)(1.0 / (euq * sqrt((double)D)));
    return KVC_OK;
}

void hdc_state_release(struct hdc_state *st) {
    free(st->mu);
    free(st->mu_h);
    free(st->pos);
    free(st->sgn);
    free(st->sgn2);
    free(st->cos_tab);
    memset(st, 0, sizeof *st);
}

kvc_status hdc_state_set_mean(struct hdc_state *st, const float *mu, kvc_error *err) {
    free(st->mu);
    free(st->mu_h);
    st->mu = st->mu_h = NULL;
    if (!mu) return KVC_OK;
    st->mu = malloc((size_t)st->d * sizeof *st->mu);
    if (!st->mu) return kvc_fail(err, KVC_ERR_NOMEM, "KV codec 'hdc': out of memory for slot state");
    memcpy(st->mu, mu, (size_t)st->d * sizeof *st->mu);
    free(st->mu_h);
    st->mu_h = malloc((size_t)st->D * sizeof *st->mu_h);
    if (!st->mu_h) return kvc_fail(err, KVC_ERR_NOMEM, "KV codec 'hdc': out of memory for slot state");
    hdc_forward(st, st->mu, st->mu_h, KVC_ISA_SCALAR);
    return KVC_OK;
}

static void hdc_state_free(void *state);

static kvc_status hdc_state_create(const void *cfgp, const struct kv_slot_info *info,
                                   void **state, kvc_error *err) {
    struct hdc_state *st = malloc(sizeof *st);
    if (!st) return kvc_fail(err, KVC_ERR_NOMEM, "KV codec 'hdc': out of memory for slot state");
    const struct hdc_cfg *c = cfgp;
    kvc_status s = hdc_state_init(st, info->d, c, info->seed, err);
    if (s) {
        free(st);
        return s;
    }
    if (c->mean == HDC_MEAN_CALIB && !info->calib) {
        hdc_state_free(st);
        return kvc_fail(err, KVC_ERR_CALIB,
                        "KV codec 'hdc': mean=calib needs a calibration file (--kv-calib FILE, made "
                        "by 'kvcodec calibrate'); mean=auto uses one only when given");
    }
    if (c->mean != HDC_MEAN_NONE && info->calib) {
        const struct kvc_calib *cal = info->calib;
        if (cal->id.head_dim != info->d || info->layer >= cal->id.n_layer || info->head >= cal->id.n_head_kv) {
            hdc_state_free(st);
            return kvc_fail(err, KVC_ERR_CALIB,
                            "KV codec 'hdc': calibration shape (%d layers, %d KV heads, head dim %d) does "
                            "not fit slot layer %d head %d dim %d",
                            cal->id.n_layer, cal->id.n_head_kv, cal->id.head_dim, info->layer,
                            info->head, info->d);
        }
        const struct kvc_calib_slot *cs =
            kvc_calib_slot_get(cal, info->layer, info->head, info->is_value ? KVC_CALIB_V : KVC_CALIB_K_POST);
        if ((s = hdc_state_set_mean(st, cs->mean, err))) {
            hdc_state_free(st);
            return s;
        }
    }
    *state = st;
    return KVC_OK;
}
static void hdc_state_free(void *state) {
    if (!state) return;
    hdc_state_release(state);
    free(state);
}

/* ---- the transform ---- */

static void fwht_scalar(float *x, int D) {
    for (int h = 1; h < D; h *= 2)
        for (int i = 0; i < D; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float r = (float)(1.0 / sqrt((double)D));
    for (int i = 0; i < D; i++) x[i] *= r;
}

/* Butterflies across vectors (stride h >= lanes), same order as the scalar code. */
KVC_TARGET_AVX2 static void fwht_avx2(float *x, int D) {
    /* within 8 lanes: y = x * s_h + swap_h(x), s_h = -1 on lanes with bit h set: for the
     * lower partner a + b, for the upper one a - b, exactly as the scalar butterfly */
    const __m256 s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
    const __m256 s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
    const __m256 s4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
    for (int c = 0; c < D; c += 8) {
        __m256 v = _mm256_loadu_ps(x + c);
        v = _mm256_fmadd_ps(v, s1, _mm256_permute_ps(v, 0xB1));
        v = _mm256_fmadd_ps(v, s2, _mm256_permute_ps(v, 0x4E));
        v = _mm256_fmadd_ps(v, s4, _mm256_permute2f128_ps(v, v, 0x01));
        _mm256_storeu_ps(x + c, v);
    }
    for (int h = 8; h < D; h *= 2)
        for (int i = 0; i < D; i += 2 * h)
            for (int j = i; j < i + h; j += 8) {
                __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
                _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
                _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
            }
    const __m256 r = _mm256_set1_ps((float)(1.0 / sqrt((double)D)));
    for (int i = 0; i < D; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), r));
}

KVC_TARGET_AVX512 static void fwht_avx512(float *x, int D) {
    const __m512 s1 = _mm512_setr_ps(1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1);
    const __m512 s2 = _mm512_setr_ps(1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1);
    const __m512 s4 = _mm512_setr_ps(1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1);
    const __m512 s8 = _mm512_setr_ps(1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1);
    for (int c = 0; c < D; c += 16) {
        __m512 v = _mm512_loadu_ps(x + c);
        v = _mm512_fmadd_ps(v, s1, _mm512_permute_ps(v, 0xB1));
        v = _mm512_fmadd_ps(v, s2, _mm512_permute_ps(v, 0x4E));
        v = _mm512_fmadd_ps(v, s4, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
        v = _mm512_fmadd_ps(v, s8, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
        _mm512_storeu_ps(x + c, v);
    }
    for (int h = 16; h < D; h *= 2)
        for (int i = 0; i < D; i += 2 * h)
            for (int j = i; j < i + h; j += 16) {
                __m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + h);
                _mm512_storeu_ps(x + j, _mm512_add_ps(a, b));
                _mm512_storeu_ps(x + j + h, _mm512_sub_ps(a, b));
            }
    const __m512 r = _mm512_set1_ps((float)(1.0 / sqrt((double)D)));
    for (int i = 0; i < D; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), r));
}

void hdc_fwht(float *x, int D, int isa) {
    if (isa >= KVC_ISA_AVX512 && D >= 16) fwht_avx512(x, D);
    else if (isa == KVC_ISA_AVX2 && D >= 8) fwht_avx2(x, D);
    else fwht_scalar(x, D);
}

void hdc_forward(const struct hdc_state *st, const float *x, float *h, int isa) {
    memset(h, 0, (size_t)st->D * sizeof *h);
    for (int j = 0; j < st->d; j++) h[st->pos[j]] = st->sgn[j] * x[j];
    hdc_fwht(h, st->D, isa);
    if (st->rounds == 2) {
        for (int i = 0; i < st->D; i++) h[i] *= st->sgn2[i];
        hdc_fwht(h, st->D, isa);
    }
}

void hdc_inverse(const struct hdc_state *st, float *h, float *x, int isa) {
    hdc_fwht(h, st->D, isa);
    if (st->rounds == 2) {
        for (int i = 0; i < st->D; i++) h[i] *= st->sgn2[i];
        hdc_fwht(h, st->D, isa);
    }
    for (int j = 0; j < st->d; j++) x[j] = st->sgn[j] * h[st->pos[j]];
}

/* ---- quantizer (scalar, shared by every level: encoders give the same bytes) ---- */

void hdc_quantize(const struct hdc_state *st, const float *h, uint8_t *row) {
    const int D = st->D, b = st->bits, nt = (1 << b) - 1;
    double s4[4] = {0, 0, 0, 0};
    for (int i = 0; i < D; i += 4)
        for (int j = 0; j < 4; j++) s4[j] += (double)h[i + j] * h[i + j];
    double norm = sqrt((s4[0] + s4[1]) + (s4[2] + s4[3]));
    memset(row, 0, st->row_bytes);
    if (b == 1) {
        for (int i = 0; i < D; i++) hdc_set_code(st, row, i, h[i] >= 0.0f);
        uint16_t f = kvc_f32_to_f16((float)norm);
        memcpy(row, &f, 2);
        return;
    }
    double sigma = norm / sqrt((double)D);
    if (!(sigma > 0) || !isfinite(sigma)) return; /* zero row (or non-finite): scale 0 */
    float inv = (float)(1.0 / sigma);
    int cnt[16] = {0};
    double hsum[16] = {0};
    for (int i = 0; i < D; i++) {
        float u = h[i] * inv;
        int code = 0;
        for (int t = 0; t < nt; t++) code += u > st->thr[t];
        hdc_set_code(st, row, i, code);
        cnt[code]++;
        hsum[code] += h[i];
    }
    double hl = 0, ll = 0;
    for (int c = 0; c <= nt; c++) {
        hl += hsum[c] * st->lev[c];
        ll += (double)cnt[c] * st->lev[c] * st->lev[c];
    }
    double scale;
    switch (st->scale) {
    case HDC_SCALE_RMS: scale = sigma; break;
    case HDC_SCALE_LS: scale = ll > 0 ? hl / ll : 0; break;
    case HDC_SCALE_NORM: scale = ll > 0 ? norm / sqrt(ll) : 0; break;
    default: scale = sigma * st->unb; break;
    }
    uint16_t f = kvc_f32_to_f16((float)scale);
    memcpy(row, &f, 2);
}

void hdc_dequant(const struct hdc_state *st, const uint8_t *row, float *h) {
    float sc = hdc_row_f16(row);
    if (st->bits == 1) sc *= st->c1;
    for (int i = 0; i < st->D; i++) h[i] = sc * st->lev[hdc_code(st, row, i)];
}

/* ---- prepared query ---- */

KVC_TARGET_AVX512 static void tables_avx512(const struct hdc_state *st, const float *qp, float *T) {
    if (st->bits == 1) {
        const __m512 s0 = _mm512_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1);
        const __m512 s1 = _mm512_setr_ps(-1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1);
        const __m512 s2 = _mm512_setr_ps(-1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1);
        const __m512 s3 = _mm512_setr_ps(-1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1, 1);
        for (int t = 0; t < st->D / 4; t++) {
            __m512 a = _mm512_mul_ps(_mm512_set1_ps(qp[4 * t]), s0);
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(qp[4 * t + 1]), s1));
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(qp[4 * t + 2]), s2));
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(qp[4 * t + 3]), s3));
            _mm512_storeu_ps(T + 16 * t, a);
        }
    } else {
        const __m512 l0 = _mm512_broadcast_f32x4(_mm_loadu_ps(st->lev)); /* lev[v & 3] */
        const __m512 l1 = _mm512_permutexvar_ps(                           /* lev[v >> 2] */
            _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), _mm512_loadu_ps(st->lev));
        for (int t = 0; t < st->D / 2; t++) {
            __m512 a = _mm512_mul_ps(_mm512_set1_ps(qp[2 * t]), l0);
            __m512 b = _mm512_mul_ps(_mm512_set1_ps(qp[2 * t + 1]), l1);
            _mm512_storeu_ps(T + 16 * t, _mm512_add_ps(a, b));
        }
    }
}

int hdc_qp_toff(int D) { return (D + 16 + D / 32 + 15) & ~15; }
int hdc_qp_i8off(int D, int bits) {
    return hdc_qp_toff(D) + (bits == 1 ? 4 * D : bits == 2 ? 8 * D : 0);
}
int hdc_qp_floats(int D, int bits) {
    return hdc_qp_i8off(D, bits) + (bits >= 2 ? D / 4 + 16 : 0);
}

/* The int8 query of the VNNI scores (scalar; every level gives the same bytes). */
static void prepare_i8(const struct hdc_state *st, float *qp) {
    const int D = st->D;
    float *p = qp + hdc_qp_i8off(D, st->bits);
    int8_t *q8 = (int8_t *)(void *)p;
    float mx = 0.0f;
    int finite = 1;
    for (int i = 0; i < D; i++) {
        if (!isfinite(qp[i])) finite = 0;
        else mx = fmaxf(mx, fabsf(qp[i]));
    }
    float sq = mx > 0.0f ? mx / 127.0f : 1.0f;
    int32_t sum = 0;
    for (int i = 0; i < D; i++) {
        long v = finite ? lrintf(qp[i] / sq) : 0;
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        q8[i] = (int8_t)v;
        sum += (int32_t)v;
    }
    p[D / 4] = finite ? sq / st->l8s : NAN; /* non-finite queries give NaN scores, as in float */
    int32_t off = 128 * sum;
    memcpy(p + D / 4 + 1, &off, 4);
    for (int i = D / 4 + 2; i < D / 4 + 16; i++) p[i] = 0.0f;
}

void hdc_prepare(const struct hdc_state *st, const float *q, float *qp, int isa) {
    const int D = st->D;
    hdc_forward(st, q, qp, isa);
    double nq = 0;
    for (int j = 0; j < st->d; j++) nq += (double)q[j] * q[j];
    if (st->bits == 1)
        for (int i = 0; i < D; i++) qp[i] *= st->c1;
    double s = 0;
    for (int i = 0; i < D; i++) s += qp[i];
    for (int i = D; i < D + 16; i++) qp[i] = 0.0f;
    qp[D] = (float)s;
    qp[D + 1] = (float)sqrt(nq);
    if (st->mu) { /* centred keys: the scores add q.mu back */
        double qm = 0;
        for (int j = 0; j < st->d; j++) qm += (double)q[j] * st->mu[j];
        qp[D + 2] = (float)qm;
    }
    for (int w = 0; w < D / 64; w++) {
        uint64_t word = 0;
        for (int i = 0; i < 64; i++)
            if (qp[64 * w + i] >= 0.0f) word |= 1ull << i;
        memcpy(qp + D + 16 + 2 * w, &word, 8);
    }
    /* nibble lookup tables: entry v of table t is the score contribution of the 4 code bits
     * v at bit stream position 4t (b = 1: 4 coordinates of +-qp, b = 2: 2 coordinates); the
     * SIMD builders do the same operations in the same order (bit-identical) */
    float *T = qp + hdc_qp_toff(D);
    if (isa >= KVC_ISA_AVX512 && st->bits <= 2) {
        tables_avx512(st, qp, T);
    } else if (st->bits == 1) {
        for (int t = 0; t < D / 4; t++)
            for (int v = 0; v < 16; v++) {
                float a = (v & 1) ? qp[4 * t] : -qp[4 * t];
                a = a + ((v & 2) ? qp[4 * t + 1] : -qp[4 * t + 1]);
                a = a + ((v & 4) ? qp[4 * t + 2] : -qp[4 * t + 2]);
                a = a + ((v & 8) ? qp[4 * t + 3] : -qp[4 * t + 3]);
                T[16 * t + v] = a;
            }
    } else if (st->bits == 2) {
        for (int t = 0; t < D / 2; t++)
            for (int v = 0; v < 16; v++) {
                float a = qp[2 * t] * st->lev[v & 3], b = qp[2 * t + 1] * st->lev[v >> 2];
                T[16 * t + v] = a + b;
            }
    }
    if (st->bits >= 2) prepare_i8(st, qp);
}

/* ---- codec kernels ---- */

static inline void hdc_encode_isa(const struct kv_slot *s, const float *x, int n, void *dst,
                                  int isa) {
    const struct hdc_state *st = s->state;
    float h[HDC_MAX_D] __attribute__((aligned(64)));
    uint8_t *out = dst;
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * st->d;
        float xc[HDC_MAX_D];
        if (st->mu) { /* centred rows */
            for (int j = 0; j < st->d; j++) xc[j] = xr[j] - st->mu[j];
            xr = xc;
        }
        hdc_forward(st, xr, h, isa);
        hdc_quantize(st, h, out + (size_t)r * st->row_bytes);
    }
}
static inline void hdc_decode_isa(const struct kv_slot *s, const void *src, int n, float *y,
                                  int isa) {
    const struct hdc_state *st = s->state;
    float h[HDC_MAX_D] __attribute__((aligned(64)));
    const uint8_t *in = src;
    for (int r = 0; r < n; r++) {
        hdc_dequant(st, in + (size_t)r * st->row_bytes, h);
        hdc_inverse(st, h, y + (size_t)r * st->d, isa);
        if (st->mu)
            for (int j = 0; j < st->d; j++) y[(size_t)r * st->d + j] += st->mu[j];
    }
}
static inline void hdc_score_isa(const struct kv_slot *s, const float *qp, const void *keys,
                                 int n, float *out, int isa) {
    const struct hdc_state *st = s->state;
    const struct hdc_ops *o = &hdc_ops[isa];
    if (isa == KVC_ISA_AVX512 && st->use_i8 && st->qbits != 1) {
        hdc_rows_score_g_i8(st, 1, qp, 0, keys, st->row_bytes, n, out, 0);
        return;
    }
    (st->qbits == 1 ? o->ham : o->score)(st, qp, keys, st->row_bytes, n, out);
}
/* Sum of n weights in 8 independent partial sums (one serial chain of n adds is latency-bound). */
static inline float hdc_wsum(const float *w, int n) {
    float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int r = 0;
    for (; r + 8 <= n; r += 8)
        for (int j = 0; j < 8; j++) p[j] += w[r + j];
    for (; r < n; r++) p[0] += w[r];
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}
static inline void hdc_acc_isa(const struct kv_slot *s, const float *w, const void *vals, int n,
                               float *acc, int isa) {
    const struct hdc_state *st = s->state;
    if (isa == KVC_ISA_AVX512 && st->use_v8) /* int8 weights x int8 levels, as grouped */
        hdc_rows_vsum_g(st, 1, w, 0, vals, st->row_bytes, n, acc, 0);
    else
        hdc_ops[isa].acc(st, w, vals, st->row_bytes, n, acc);
    if (st->mu) /* centred values: acc[D] sums the weights, finish adds sum * mu */
        acc[st->D] += hdc_wsum(w, n);
}
static inline void hdc_finish_isa(const struct kv_slot *s, const float *acc, float *out, int isa) {
    const struct hdc_state *st = s->state;
    float h[HDC_MAX_D] __attribute__((aligned(64)));
    memcpy(h, acc, (size_t)st->D * sizeof *h);
    hdc_inverse(st, h, out, isa);
    if (st->mu)
        for (int j = 0; j < st->d; j++) out[j] += acc[st->D] * st->mu[j];
}

#define HDC_KERNELS(SUF, ISA)                                                                  \
    static void hdc_encode_##SUF(const struct kv_slot *s, const float *x, int pos0, int n,     \
                                 void *dst) {                                                  \
        (void)pos0;                                                                            \
        hdc_encode_isa(s, x, n, dst, ISA);                                                     \
    }                                                                                          \
    static void hdc_decode_##SUF(const struct kv_slot *s, const void *src, int pos0, int n,    \
                                 float *y) {                                                   \
        (void)pos0;                                                                            \
        hdc_decode_isa(s, src, n, y, ISA);                                                     \
    }                                                                                          \
    static void hdc_prepare_##SUF(const struct kv_slot *s, const float *q, float *qp) {        \
        const struct hdc_state *st = s->state;                                                 \
        hdc_prepare(st, q, qp, ISA);                                                           \
    }                                                                                          \
    static void hdc_score_##SUF(const struct kv_slot *s, const float *qp, const void *keys,    \
                                int pos0, int n, float *out) {                                 \
        (void)pos0;                                                                            \
        hdc_score_isa(s, qp, keys, n, out, ISA);                                               \
    }                                                                                          \
    static void hdc_accumulate_##SUF(const struct kv_slot *s, const float *w, const void *v,   \
                                     int pos0, int n, float *acc) {                            \
        (void)pos0;                                                                            \
        hdc_acc_isa(s, w, v, n, acc, ISA);                                                     \
    }                                                                                          \
    static void hdc_finish_##SUF(const struct kv_slot *s, const float *acc, float *out) {      \
        hdc_finish_isa(s, acc, out, ISA);                                                      \
    }                                                                                          \
    static void hdc_decode_acc_##SUF(const struct kv_slot *s, const void *src, int pos0, int n, \
                                     float *y) {                                               \
        (void)pos0;                                                                            \
        const struct hdc_state *st = s->state;                                                 \
        hdc_rows_dequant(st, src, st->row_bytes, n, y, ISA);                                   \
    }

HDC_KERNELS(scalar, KVC_ISA_SCALAR)
HDC_KERNELS(avx2, KVC_ISA_AVX2)
HDC_KERNELS(avx512, KVC_ISA_AVX512)

/* Grouped (GQA) kernels at the AVX-512 level; 1-bit queries (popcount scores) go one head at
 * a time. */
static void hdc_score_g_avx512(const struct kv_slot *s, int G, const float *qp, size_t qs, const void *keys,
                               int pos0, int n, float *out, size_t os) {
    const struct hdc_state *st = s->state;
    if (st->qbits == 1) {
        for (int g = 0; g < G; g++) hdc_score_avx512(s, qp + (size_t)g * qs, keys, pos0, n, out + (size_t)g * os);
        return;
    }
    if (st->use_i8) { /* int8 query x int8 levels, VNNI */
        hdc_rows_score_g_i8(st, G, qp, qs, keys, st->row_bytes, n, out, os);
        return;
    }
    hdc_rows_score_g_avx512(st, G, qp, qs, keys, st->row_bytes, n, out, os);
}
static void hdc_accumulate_g_avx512(const struct kv_slot *s, int G, const float *w, size_t ws, const void *vals,
                                    int pos0, int n, float *acc, size_t as) {
    (void)pos0;
    const struct hdc_state *st = s->state;
    if (st->use_v8) /* int8 weights x int8 levels, VNNI */
        hdc_rows_vsum_g(st, G, w, ws, vals, st->row_bytes, n, acc, as);
    else
        hdc_rows_acc_g_avx512(st, G, w, ws, vals, st->row_bytes, n, acc, as);
    if (st->mu) /* centred values: acc[D] sums the weights */
        for (int g = 0; g < G; g++) acc[(size_t)g * as + st->D] += hdc_wsum(w + (size_t)g * ws, n);
}

/* The AVX-512 grouped value sums with use_v8 round the weights to 8 bits (hdc_vsum.c). */
extern const struct kv_codec kv_codec_hdc;
static int hdc_weights_8bit(const struct kv_slot *s) {
    const struct hdc_state *st = s->state;
    return st && st->use_v8 && s->k == &kv_codec_hdc.kern[KVC_ISA_AVX512];
}

#define HDC_KSET(SUF)                                                                     \
    {hdc_encode_##SUF, hdc_decode_##SUF, hdc_prepare_##SUF, hdc_score_##SUF,              \
     hdc_accumulate_##SUF, hdc_finish_##SUF, NULL, NULL, hdc_decode_acc_##SUF}

const struct kv_codec kv_codec_hdc = {
    .name = "hdc",
    .id = KV_CODEC_HDC,
    .params = HDC_PARAMS,
    .about = "hypervectors: random binding + Walsh-Hadamard spreading, 1-4 bit codes, "
             "scores and sums in hyperspace (popcount scores with qbits=1)",
    .cfg_size = sizeof(struct hdc_cfg),
    .batch_decode = kv_batch_decode_values,
    .parse = hdc_parse,
    .row_bytes = hdc_row_bytes,
    .check_dim = hdc_check_dim,
    .state_create = hdc_state_create,
    .state_free = hdc_state_free,
    .qp_floats = hdc_qpf,
    .acc_floats = hdc_accf,
    .dec_acc_floats = hdc_dec_accf,
    .weights_8bit = hdc_weights_8bit,
    .kern = {
        [KVC_ISA_SCALAR] = HDC_KSET(scalar),
        [KVC_ISA_AVX2] = HDC_KSET(avx2),
        [KVC_ISA_AVX512] = {hdc_encode_avx512, hdc_decode_avx512, hdc_prepare_avx512, hdc_score_avx512,
                            hdc_accumulate_avx512, hdc_finish_avx512, hdc_score_g_avx512,
                            hdc_accumulate_g_avx512, hdc_decode_acc_avx512},
    },
};

/* ---- top-k radix select (used by hdc-select) ---- */

uint32_t hdc_topk_key(const float *v, int n, int k, int *ties) {
    /* three passes of 11, 11 and 10 bits from the top; prefix/pmask select candidates */
    static const int shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
    uint32_t prefix = 0, pmask = 0;
    int need = k; /* how many of the candidates (keys matching prefix) still to take */
    uint32_t hist[2048];
    for (int pass = 0; pass < 3; pass++) {
        int sh = shifts[pass], nb = 1 << widths[pass];
        memset(hist, 0, (size_t)nb * sizeof *hist);
        for (int i = 0; i < n; i++) {
            uint32_t key = hdc_fkey(v[i]);
            if ((key & pmask) == prefix) hist[(key >> sh) & (uint32_t)(nb - 1)]++;
        }
        int bkt = nb - 1;
        for (; bkt > 0; bkt--) {
            if ((int)hist[bkt] >= need) break;
            need -= (int)hist[bkt];
        }
        prefix |= (uint32_t)bkt << sh;
        pmask |= (uint32_t)(nb - 1) << sh;
    }
    *ties = need;
    return prefix;
}
