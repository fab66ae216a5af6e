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
 * once (inverse transform, signs, gather). Also holds the kernels that hdc-select reuses. */
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
    double euq = hdc_sphere_euq(D, st->lev, st->thr, L);
    st->unb = (float)(1.0 / euq);
    st->c1 = (float)(1.0 / (euq * sqrt((double)D)));
    return KVC_OK;
}

void hdc_state_release(struct hdc_state *st) {
    free(st->mu);
    free(st->pos);
    free(st->sgn);
    free(st->sgn2);
    free(st->cos_tab);
    memset(st, 0, sizeof *st);
}

kvc_status hdc_state_set_mean(struct hdc_state *st, const float *mu, kvc_error *err) {
    free(st->mu);
    st->mu = NULL;
    if (!mu) return KVC_OK;
    st->mu = malloc((size_t)st->d * sizeof *st->mu);
    if (!st->mu) return kvc_fail(err, KVC_ERR_NOMEM, "KV codec 'hdc': out of memory for slot state");
    memcpy(st->mu, mu, (size_t)st->d * sizeof *st->mu);
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

/* ---- code layout ----
 * b = 1, 2, 4: codes packed LSB first, coordinate i at bit b*i of the row's bit stream (never
 * straddling a byte). b = 3: the low two bits packed (bit 2i of a D/4-byte field), then the
 * top bit as a D-bit plane. */

static inline int hdc_code(const struct hdc_state *st, const uint8_t *row, int i) {
    const uint8_t *c = row + 2;
    switch (st->bits) {
    case 1: return (c[i >> 3] >> (i & 7)) & 1;
    case 2: return (c[i >> 2] >> (2 * (i & 3))) & 3;
    case 4: return (c[i >> 1] >> (4 * (i & 1))) & 15;
    default:
        return ((c[i >> 2] >> (2 * (i & 3))) & 3) | (((c[st->D / 4 + (i >> 3)] >> (i & 7)) & 1) << 2);
    }
}
static inline void hdc_set_code(const struct hdc_state *st, uint8_t *row, int i, int code) {
    uint8_t *c = row + 2;
    switch (st->bits) {
    case 1: c[i >> 3] |= (uint8_t)(code << (i & 7)); break;
    case 2: c[i >> 2] |= (uint8_t)(code << (2 * (i & 3))); break;
    case 4: c[i >> 1] |= (uint8_t)(code << (4 * (i & 1))); break;
    default:
        c[i >> 2] |= (uint8_t)((code & 3) << (2 * (i & 3)));
        c[st->D / 4 + (i >> 3)] |= (uint8_t)((code >> 2) << (i & 7));
        break;
    }
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
int hdc_qp_floats(int D, int bits) {
    return hdc_qp_toff(D) + (bits == 1 ? 4 * D : bits == 2 ? 8 * D : 0);
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
}

/* ---- scalar row kernels (the reference: float64 sums) ---- */

static void score_scalar(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                         size_t stride, int n, float *out) {
    const int D = st->D;
    for (int r = 0; r < n; r++) {
        const uint8_t *row = rows + (size_t)r * stride;
        double a = 0;
        if (st->bits == 1) {
            for (int i = 0; i < D; i++)
                if (hdc_code(st, row, i)) a += qp[i];
            a = 2.0 * a - (double)qp[D];
        } else {
            for (int i = 0; i < D; i++) a += (double)qp[i] * st->lev[hdc_code(st, row, i)];
        }
        out[r] = (float)(hdc_row_f16(row) * a) + qp[D + 2];
    }
}

/* Popcount score loop; CVT converts the row's f16 norm. */
#define HDC_HAM_BODY(CVT)                                                                     \
    const int W = st->W;                                                                      \
    uint64_t qw[HDC_MAX_D / 64];                                                              \
    memcpy(qw, hdc_qp_words(qp, st->D), (size_t)W * 8);                                      \
    const float qn = qp[st->D + 1], qmu = qp[st->D + 2];                                      \
    for (int r = 0; r < n; r++) {                                                             \
        const uint8_t *row = rows + (size_t)r * stride;                                       \
        int h = 0;                                                                            \
        for (int w = 0; w < W; w++) h += __builtin_popcountll(qw[w] ^ hdc_row_word(row, w));  \
        out[r] = qn * CVT(hdc_load16(row)) * st->cos_tab[h] + qmu;                            \
    }

void hdc_ham_scalar(const struct hdc_state *st, const float *qp, const uint8_t *rows,
                    size_t stride, int n, float *out) {
    HDC_HAM_BODY(kvc_f16_to_f32)
}
/* The same with the POPCNT and F16C instructions (every AVX2 / AVX-512 CPU has them). */
__attribute__((target("popcnt,f16c"))) static void ham_popcnt(const struct hdc_state *st,
                                                              const float *qp, const uint8_t *rows,
                                                              size_t stride, int n, float *out) {
    HDC_HAM_BODY(_cvtsh_ss)
}

static void acc_scalar(const struct hdc_state *st, const float *w, const uint8_t *rows,
                       size_t stride, int n, float *acc) {
    const int D = st->D;
    for (int r = 0; r < n; r++) {
        if (w[r] == 0.0f) continue;
        const uint8_t *row = rows + (size_t)r * stride;
        float t = w[r] * hdc_row_f16(row);
        if (st->bits == 1) t *= st->c1;
        for (int i = 0; i < D; i++) acc[i] += t * st->lev[hdc_code(st, row, i)];
    }
}

#define HDC_AI static inline __attribute__((always_inline))

/* ---- AVX2 row kernels: score with 8 rows in the 8 lanes (gathered code words, table
 * lookups by vpermps), accumulate row by row into D floats in registers ---- */

/* 16-entry lookup with 8-lane permutes: entries t[0..7] and t[8..15] by bit 3 of idx. */
KVC_TARGET_AVX2 HDC_AI __m256 lut16_avx2(__m256i idx, const float *t) {
    __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t), idx);
    __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t + 8), idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

KVC_TARGET_AVX2 HDC_AI void score_avx2_impl(const struct hdc_state *st, const float *qp,
                                            const uint8_t *rows, size_t stride, int n,
                                            float *out, const int D, const int B) {
    const float *T = qp + hdc_qp_toff(D);
    const __m256i vidx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)stride));
    const __m256i m3 = _mm256_set1_epi32(3), m4 = _mm256_set1_epi32(4);
    for (int r0 = 0; r0 < n; r0 += 8) {
        const int nb = n - r0 < 8 ? n - r0 : 8;
        const __m256i m = kv256_mask8(nb);
        const uint8_t *base = rows + (size_t)r0 * stride;
#define G2(off) _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(const void *)(base + (off)), vidx, m, 1)
        __m256i sw = G2(0);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        if (B == 1 || B == 2) {
            for (int w = 0; w < B * D / 32; w++) {
                __m256i x = G2(2 + 4 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k += 2) {
                    a0 = _mm256_add_ps(a0, lut16_avx2(_mm256_srli_epi32(x, 4 * k), T + 16 * (8 * w + k)));
                    a1 = _mm256_add_ps(a1, lut16_avx2(_mm256_srli_epi32(x, 4 * k + 4), T + 16 * (8 * w + k + 1)));
                }
            }
        } else if (B == 4) {
            for (int w = 0; w < D / 8; w++) {
                __m256i x = G2(2 + 4 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k += 2) {
                    a0 = _mm256_fmadd_ps(lut16_avx2(_mm256_srli_epi32(x, 4 * k), st->lev),
                                         _mm256_set1_ps(qp[8 * w + k]), a0);
                    a1 = _mm256_fmadd_ps(lut16_avx2(_mm256_srli_epi32(x, 4 * k + 4), st->lev),
                                         _mm256_set1_ps(qp[8 * w + k + 1]), a1);
                }
            }
        } else { /* B == 3 */
            const __m256 lev = _mm256_loadu_ps(st->lev);
            for (int w = 0; w < D / 32; w++) {
                __m256i hi = G2(2 + D / 4 + 4 * w), lo0 = G2(2 + 8 * w), lo1 = G2(6 + 8 * w);
#pragma GCC unroll 32
                for (int k = 0; k < 32; k++) {
                    __m256i ls = _mm256_srli_epi32(k < 16 ? lo0 : lo1, 2 * (k & 15));
                    __m256i hs = k >= 2 ? _mm256_srli_epi32(hi, k - 2) : _mm256_slli_epi32(hi, 2 - k);
                    __m256i idx = _mm256_or_si256(_mm256_and_si256(ls, m3), _mm256_and_si256(hs, m4));
                    __m256 v = _mm256_permutevar8x32_ps(lev, idx);
                    if (k & 1) a1 = _mm256_fmadd_ps(v, _mm256_set1_ps(qp[32 * w + k]), a1);
                    else a0 = _mm256_fmadd_ps(v, _mm256_set1_ps(qp[32 * w + k]), a0);
                }
            }
        }
#undef G2
        /* f16 scales: the low halves of the gathered dwords */
        __m128i h16 = _mm_packus_epi32(_mm256_castsi256_si128(_mm256_and_si256(sw, _mm256_set1_epi32(0xffff))),
                                       _mm256_extracti128_si256(_mm256_and_si256(sw, _mm256_set1_epi32(0xffff)), 1));
        __m256 res = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtph_ps(h16), _mm256_add_ps(a0, a1)),
                                   _mm256_set1_ps(qp[D + 2]));
        _mm256_maskstore_ps(out + r0, m, res);
    }
}

KVC_TARGET_AVX2 static void score_avx2(const struct hdc_state *st, const float *qp,
                                       const uint8_t *rows, size_t stride, int n, float *out) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: score_avx2_impl(st, qp, rows, stride, n, out, 64, 1); break;
    case 64 * 8 + 2: score_avx2_impl(st, qp, rows, stride, n, out, 64, 2); break;
    case 64 * 8 + 3: score_avx2_impl(st, qp, rows, stride, n, out, 64, 3); break;
    case 64 * 8 + 4: score_avx2_impl(st, qp, rows, stride, n, out, 64, 4); break;
    case 128 * 8 + 1: score_avx2_impl(st, qp, rows, stride, n, out, 128, 1); break;
    case 128 * 8 + 2: score_avx2_impl(st, qp, rows, stride, n, out, 128, 2); break;
    default:
        switch (st->bits) {
        case 1: score_avx2_impl(st, qp, rows, stride, n, out, st->D, 1); break;
        case 2: score_avx2_impl(st, qp, rows, stride, n, out, st->D, 2); break;
        case 3: score_avx2_impl(st, qp, rows, stride, n, out, st->D, 3); break;
        default: score_avx2_impl(st, qp, rows, stride, n, out, st->D, 4); break;
        }
    }
}

/* Lane masks (all ones where the bit is set) of 8 bits. */
KVC_TARGET_AVX2 HDC_AI __m256i bits8_avx2(unsigned byte) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)byte), sel), sel);
}

/* Decoded levels of coordinates 8c..8c+7 of one row (unscaled). */
KVC_TARGET_AVX2 HDC_AI __m256 levels8_avx2(const struct hdc_state *st, const uint8_t *c,
                                           int ci, const int D, const int B) {
    if (B == 2) {
        uint16_t v = hdc_load16(c + 2 * ci);
        __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
        return _mm256_permutevar8x32_ps(_mm256_loadu_ps(st->lev), _mm256_and_si256(idx, _mm256_set1_epi32(3)));
    } else if (B == 4) {
        uint32_t v;
        memcpy(&v, c + 4 * ci, 4);
        __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32((int)v), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
        return lut16_avx2(idx, st->lev);
    } else { /* B == 3 */
        uint16_t lo = hdc_load16(c + 2 * ci);
        unsigned hi = c[D / 4 + ci];
        __m256i ls = _mm256_srlv_epi32(_mm256_set1_epi32(lo), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
        __m256i hs = _mm256_srlv_epi32(_mm256_set1_epi32((int)(hi << 2)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256i idx = _mm256_or_si256(_mm256_and_si256(ls, _mm256_set1_epi32(3)),
                                      _mm256_and_si256(hs, _mm256_set1_epi32(4)));
        return _mm256_permutevar8x32_ps(_mm256_loadu_ps(st->lev), idx);
    }
}

/* One row into the accumulator registers a[0..nc); t = w * row scale (b = 1: times c1). */
KVC_TARGET_AVX2 HDC_AI void acc_row_avx2(const struct hdc_state *st, float t, const uint8_t *row,
                                         __m256 *a, const int nc, const int D, const int B) {
    __m256 vt = _mm256_set1_ps(t);
    if (B == 1) { /* bit l of byte c to bit 0 of lane l, looked up in (-1, +1, ...) */
        const __m256 pm = _mm256_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1);
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++) {
            uint32_t v; /* a dword inside the row holding byte c of the codes */
            memcpy(&v, row + (c ? c - 1 : 0), 4);
            __m256i sh = c ? _mm256_setr_epi32(24, 25, 26, 27, 28, 29, 30, 31)
                           : _mm256_setr_epi32(16, 17, 18, 19, 20, 21, 22, 23);
            __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32((int)v), sh);
            a[c] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(pm, idx), vt, a[c]);
        }
    } else {
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++) a[c] = _mm256_fmadd_ps(levels8_avx2(st, row + 2, c, D, B), vt, a[c]);
    }
}

KVC_TARGET_AVX2 HDC_AI void acc_avx2_impl(const struct hdc_state *st, const float *w,
                                          const uint8_t *rows, size_t stride, int n, float *acc,
                                          const int D, const int B) {
    const __m256i vidx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32((int)stride));
    float tv[8] __attribute__((aligned(32)));
    const float c1 = B == 1 ? st->c1 : 1.0f;
    for (int r0 = 0; r0 < n; r0 += 8) {
        const int nb = n - r0 < 8 ? n - r0 : 8;
        const __m256i m = kv256_mask8(nb);
        const uint8_t *base = rows + (size_t)r0 * stride;
        __m256i sw = _mm256_and_si256(_mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(const void *)base, vidx, m, 1),
                                      _mm256_set1_epi32(0xffff));
        __m128i h16 = _mm_packus_epi32(_mm256_castsi256_si128(sw), _mm256_extracti128_si256(sw, 1));
        __m256 t = _mm256_mul_ps(_mm256_maskload_ps(w + r0, m), _mm256_cvtph_ps(h16));
        _mm256_store_ps(tv, _mm256_mul_ps(t, _mm256_set1_ps(c1)));
        if (D <= 128) { /* acc in registers */
            const int nc = D / 8;
            __m256 a[16] = {0};
            for (int r = 0; r < nb; r++)
                if (w[r0 + r] != 0.0f) acc_row_avx2(st, tv[r], base + (size_t)r * stride, a, nc, D, B);
#pragma GCC unroll 16
            for (int c = 0; c < nc; c++) _mm256_storeu_ps(acc + 8 * c, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * c), a[c]));
        } else {
            for (int r = 0; r < nb; r++) {
                if (w[r0 + r] == 0.0f) continue;
                const uint8_t *row = base + (size_t)r * stride;
                __m256 vt = _mm256_set1_ps(tv[r]), vn = _mm256_set1_ps(-tv[r]);
                for (int c = 0; c < D / 8; c++) {
                    __m256 v = B == 1 ? _mm256_blendv_ps(vn, vt, _mm256_castsi256_ps(bits8_avx2(row[2 + c])))
                                      : _mm256_mul_ps(levels8_avx2(st, row + 2, c, D, B), vt);
                    _mm256_storeu_ps(acc + 8 * c, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * c), v));
                }
            }
        }
    }
}

KVC_TARGET_AVX2 static void acc_avx2(const struct hdc_state *st, const float *w,
                                     const uint8_t *rows, size_t stride, int n, float *acc) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: acc_avx2_impl(st, w, rows, stride, n, acc, 64, 1); break;
    case 64 * 8 + 2: acc_avx2_impl(st, w, rows, stride, n, acc, 64, 2); break;
    case 64 * 8 + 3: acc_avx2_impl(st, w, rows, stride, n, acc, 64, 3); break;
    case 64 * 8 + 4: acc_avx2_impl(st, w, rows, stride, n, acc, 64, 4); break;
    default:
        switch (st->bits) {
        case 1: acc_avx2_impl(st, w, rows, stride, n, acc, st->D, 1); break;
        case 2: acc_avx2_impl(st, w, rows, stride, n, acc, st->D, 2); break;
        case 3: acc_avx2_impl(st, w, rows, stride, n, acc, st->D, 3); break;
        default: acc_avx2_impl(st, w, rows, stride, n, acc, st->D, 4); break;
        }
    }
}

/* ---- AVX-512 row kernels: score with 16 rows in the 16 lanes (gathered code words, table
 * lookups by vpermps: 4 code bits per lookup for b = 1, 2), accumulate row by row ---- */

/* G query heads (1..4, a literal) against the same rows: the gathered code words (and for
 * b = 3, 4 the decoded levels) are shared by the heads; head g reads qp + g * qs and writes
 * out + g * os. */
KVC_TARGET_AVX512 HDC_AI void score_avx512_impl(const struct hdc_state *st, const float *qp,
                                                const uint8_t *rows, size_t stride, int n,
                                                float *out, const int D, const int B, const int G,
                                                size_t qs, size_t os) {
    const __m512i vidx = kv512_row_offsets16(stride);
    const __m512i m3 = _mm512_set1_epi32(3);
    /* 8 levels repeated twice for b = 3 (bit 3 of the index is ignored) */
    const __m512 lev = B == 3 ? _mm512_broadcast_f32x8(_mm256_loadu_ps(st->lev)) : _mm512_loadu_ps(st->lev);
    for (int r0 = 0; r0 < n; r0 += 16) {
        const __mmask16 m = kv_mask16(n - r0);
        const uint8_t *base = rows + (size_t)r0 * stride;
#define G5(off) _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)(base + (off)), 1)
        __m512i sw = G5(0);
        /* per head 4 accumulators (a[g][k & 3]), summed at the end */
        __m512 a[4][4];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[g][k] = _mm512_setzero_ps();
        if (B == 1 || B == 2) { /* per-head tables: the gathered words are what is shared */
            for (int w = 0; w < B * D / 32; w++) {
                __m512i x = G5(2 + 4 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    __m512i xs = k ? _mm512_srli_epi32(x, 4 * k) : x;
#pragma GCC unroll 4
                    for (int g = 0; g < G; g++) {
                        const float *t = qp + g * qs + hdc_qp_toff(D) + 128 * w + 16 * k;
                        a[g][k & 3] = _mm512_add_ps(a[g][k & 3], _mm512_permutexvar_ps(xs, _mm512_loadu_ps(t)));
                    }
                }
            }
        } else if (B == 4) {
            for (int w = 0; w < D / 8; w++) {
                __m512i x = G5(2 + 4 * w);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    const __m512 v = _mm512_permutexvar_ps(k ? _mm512_srli_epi32(x, 4 * k) : x, lev);
#pragma GCC unroll 4
                    for (int g = 0; g < G; g++)
                        a[g][k & 3] = _mm512_fmadd_ps(v, _mm512_set1_ps(qp[g * qs + 8 * w + k]), a[g][k & 3]);
                }
            }
        } else { /* B == 3: index = low 2 bits | top bit << 2 */
            for (int w = 0; w < D / 32; w++) {
                __m512i hi = G5(2 + D / 4 + 4 * w), lo0 = G5(2 + 8 * w), lo1 = G5(6 + 8 * w);
#pragma GCC unroll 32
                for (int k = 0; k < 32; k++) {
                    __m512i ls = _mm512_srli_epi32(k < 16 ? lo0 : lo1, 2 * (k & 15));
                    __m512i hs = k >= 2 ? _mm512_srli_epi32(hi, k - 2) : _mm512_slli_epi32(hi, 2 - k);
                    __m512i idx = _mm512_ternarylogic_epi32(ls, hs, m3, 0xE4); /* m3 ? ls : hs */
                    const __m512 v = _mm512_permutexvar_ps(idx, lev);
#pragma GCC unroll 4
                    for (int g = 0; g < G; g++)
                        a[g][k & 3] = _mm512_fmadd_ps(v, _mm512_set1_ps(qp[g * qs + 32 * w + k]), a[g][k & 3]);
                }
            }
        }
#undef G5
        __m512 scale = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sw));
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            __m512 res = _mm512_add_ps(
                _mm512_mul_ps(scale, _mm512_add_ps(_mm512_add_ps(a[g][0], a[g][1]), _mm512_add_ps(a[g][2], a[g][3]))),
                _mm512_set1_ps(qp[g * qs + D + 2]));
            _mm512_mask_storeu_ps(out + g * os + r0, m, res);
        }
    }
}

KVC_TARGET_AVX512 static void score_avx512(const struct hdc_state *st, const float *qp,
                                           const uint8_t *rows, size_t stride, int n, float *out) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: score_avx512_impl(st, qp, rows, stride, n, out, 64, 1, 1, 0, 0); break;
    case 64 * 8 + 2: score_avx512_impl(st, qp, rows, stride, n, out, 64, 2, 1, 0, 0); break;
    case 64 * 8 + 3: score_avx512_impl(st, qp, rows, stride, n, out, 64, 3, 1, 0, 0); break;
    case 64 * 8 + 4: score_avx512_impl(st, qp, rows, stride, n, out, 64, 4, 1, 0, 0); break;
    case 128 * 8 + 1: score_avx512_impl(st, qp, rows, stride, n, out, 128, 1, 1, 0, 0); break;
    case 128 * 8 + 2: score_avx512_impl(st, qp, rows, stride, n, out, 128, 2, 1, 0, 0); break;
    default:
        switch (st->bits) {
        case 1: score_avx512_impl(st, qp, rows, stride, n, out, st->D, 1, 1, 0, 0); break;
        case 2: score_avx512_impl(st, qp, rows, stride, n, out, st->D, 2, 1, 0, 0); break;
        case 3: score_avx512_impl(st, qp, rows, stride, n, out, st->D, 3, 1, 0, 0); break;
        default: score_avx512_impl(st, qp, rows, stride, n, out, st->D, 4, 1, 0, 0); break;
        }
    }
}

/* Grouped score: G heads at once for the specialised shapes (D = 64, any b; D = 128,
 * b <= 2), in passes of up to 4 heads; NULL-equivalent fallback (one head at a time)
 * otherwise. */
KVC_TARGET_AVX512 HDC_AI void score_g_shape(const struct hdc_state *st, const int D, const int B, int G,
                                            const float *qp, size_t qs, const uint8_t *rows, size_t stride,
                                            int n, float *out, size_t os) {
#define HDC_CALL(GL, g0) \
    score_avx512_impl(st, qp + (size_t)(g0) * qs, rows, stride, n, out + (size_t)(g0) * os, D, B, GL, qs, os)
    KV_G_PASSES(G, HDC_CALL)
#undef HDC_CALL
}
KVC_TARGET_AVX512 static void score_g_avx512(const struct hdc_state *st, int G, const float *qp, size_t qs,
                                             const uint8_t *rows, size_t stride, int n, float *out, size_t os) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: score_g_shape(st, 64, 1, G, qp, qs, rows, stride, n, out, os); break;
    case 64 * 8 + 2: score_g_shape(st, 64, 2, G, qp, qs, rows, stride, n, out, os); break;
    case 64 * 8 + 3: score_g_shape(st, 64, 3, G, qp, qs, rows, stride, n, out, os); break;
    case 64 * 8 + 4: score_g_shape(st, 64, 4, G, qp, qs, rows, stride, n, out, os); break;
    case 128 * 8 + 1: score_g_shape(st, 128, 1, G, qp, qs, rows, stride, n, out, os); break;
    case 128 * 8 + 2: score_g_shape(st, 128, 2, G, qp, qs, rows, stride, n, out, os); break;
    default:
        for (int g = 0; g < G; g++) score_avx512(st, qp + (size_t)g * qs, rows, stride, n, out + (size_t)g * os);
        break;
    }
}

KVC_TARGET_AVX512 HDC_AI __mmask16 mask16_at(const uint8_t *p) {
    return _cvtu32_mask16(hdc_load16(p));
}

/* Decoded levels (unscaled) of coordinates 16c..16c+15 of one row; lev16 holds the levels
 * repeated to 16 entries (the index bits above b are not cleared). */
KVC_TARGET_AVX512 HDC_AI __m512 levels16_avx512(const uint8_t *c, int ci, __m512 lev16,
                                                const int D, const int B) {
    if (B == 2) {
        uint32_t v;
        memcpy(&v, c + 4 * ci, 4);
        __m512i idx = _mm512_srlv_epi32(_mm512_set1_epi32((int)v),
                                        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
        return _mm512_permutexvar_ps(idx, lev16);
    } else if (B == 4) {
        uint64_t v;
        memcpy(&v, c + 8 * ci, 8);
        __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)(uint32_t)v)),
                                       _mm256_set1_epi32((int)(uint32_t)(v >> 32)), 1);
        __m512i idx = _mm512_srlv_epi32(x, _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28));
        return _mm512_permutexvar_ps(idx, lev16);
    } else { /* B == 3 */
        uint32_t lo;
        memcpy(&lo, c + 4 * ci, 4);
        uint32_t hi = hdc_load16(c + D / 4 + 2 * ci);
        __m512i ls = _mm512_srlv_epi32(_mm512_set1_epi32((int)lo),
                                       _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
        __m512i hs = _mm512_srlv_epi32(_mm512_set1_epi32((int)(hi << 2)),
                                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        return _mm512_permutexvar_ps(_mm512_ternarylogic_epi32(ls, hs, _mm512_set1_epi32(3), 0xE4), lev16);
    }
}

/* Levels of coordinates 16c..16c+15 of a whole row (after its 2-byte scale), unscaled; b = 1:
 * bit l of the chunk to bit 0 of lane l, looked up in lev16 = (-1, +1, -1, +1, ...) (faster
 * than k-masks). */
KVC_TARGET_AVX512 HDC_AI __m512 row_levels16_avx512(const uint8_t *row, int c, __m512 lev16, const int D,
                                                    const int B) {
    if (B == 1) {
        const __m512i shr = _mm512_setr_epi32(16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
        uint32_t v; /* the chunk's 16 bits are the upper half of the dword before them */
        memcpy(&v, row + 2 * c, 4);
        return _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi32((int)v), shr), lev16);
    }
    return levels16_avx512(row + 2, c, lev16, D, B);
}

/* One row into the accumulator registers a[0..nc); t = w * row scale (b = 1: times c1). */
KVC_TARGET_AVX512 HDC_AI void acc_row_avx512(float t, const uint8_t *row, __m512 *a, __m512 lev16,
                                             const int nc, const int D, const int B) {
    const __m512 vt = _mm512_set1_ps(t);
#pragma GCC unroll 16
    for (int c = 0; c < nc; c++) a[c] = _mm512_fmadd_ps(row_levels16_avx512(row, c, lev16, D, B), vt, a[c]);
}

/* t = w * scale (* c1 for b = 1) of 16 rows at a time, zero for the rows past n. */
KVC_TARGET_AVX512 HDC_AI __m512 acc_t16_avx512(const struct hdc_state *st, const float *w,
                                               const uint8_t *rows, __m512i vidx, int nb, const int B) {
    const __mmask16 m = kv_mask16(nb);
    __m512i sw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)rows, 1);
    __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sw)));
    return B == 1 ? _mm512_mul_ps(t, _mm512_set1_ps(st->c1)) : t;
}

/* The levels of b-bit codes repeated to 16 lanes (b = 1: -1, +1 alternating), for vpermps
 * lookups by code index. */
KVC_TARGET_AVX512 HDC_AI __m512 acc_lev16_avx512(const struct hdc_state *st, const int B) {
    if (B == 2) return _mm512_broadcast_f32x4(_mm_loadu_ps(st->lev));
    if (B == 3) return _mm512_broadcast_f32x8(_mm256_loadu_ps(st->lev));
    if (B == 1) return _mm512_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1);
    return _mm512_loadu_ps(st->lev);
}

KVC_TARGET_AVX512 HDC_AI void acc_avx512_impl(const struct hdc_state *st, const float *w,
                                              const uint8_t *rows, size_t stride, int n,
                                              float *acc, const int D, const int B) {
    const __m512 lev16 = acc_lev16_avx512(st, B);
    const __m512i vidx = kv512_row_offsets16(stride);
    float tv[16] __attribute__((aligned(64)));
    if (D <= 256) { /* acc in registers */
        const int nc = D / 16;
        __m512 a[16] = {0};
        for (int r0 = 0; r0 < n; r0 += 16) {
            const int nb = n - r0 < 16 ? n - r0 : 16;
            const uint8_t *base = rows + (size_t)r0 * stride;
            _mm512_store_ps(tv, acc_t16_avx512(st, w + r0, base, vidx, nb, B));
            for (int r = 0; r < nb; r++)
                if (w[r0 + r] != 0.0f) acc_row_avx512(tv[r], base + (size_t)r * stride, a, lev16, nc, D, B);
        }
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++) _mm512_storeu_ps(acc + 16 * c, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * c), a[c]));
        return;
    }
    for (int r0 = 0; r0 < n; r0 += 16) { /* large D: acc in memory */
        const int nb = n - r0 < 16 ? n - r0 : 16;
        const uint8_t *base = rows + (size_t)r0 * stride;
        _mm512_store_ps(tv, acc_t16_avx512(st, w + r0, base, vidx, nb, B));
        for (int r = 0; r < nb; r++) {
            if (w[r0 + r] == 0.0f) continue;
            const uint8_t *row = base + (size_t)r * stride;
            if (B == 1) {
                __m512 vt = _mm512_set1_ps(tv[r]), vn = _mm512_set1_ps(-tv[r]);
                for (int c = 0; c < D / 16; c++)
                    _mm512_storeu_ps(acc + 16 * c, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * c),
                                                                 _mm512_mask_blend_ps(mask16_at(row + 2 + 2 * c), vn, vt)));
            } else {
                __m512 vt = _mm512_set1_ps(tv[r]);
                for (int c = 0; c < D / 16; c++)
                    _mm512_storeu_ps(acc + 16 * c, _mm512_fmadd_ps(levels16_avx512(row + 2, c, lev16, D, B), vt,
                                                                   _mm512_loadu_ps(acc + 16 * c)));
            }
        }
    }
}

KVC_TARGET_AVX512 static void acc_avx512(const struct hdc_state *st, const float *w,
                                         const uint8_t *rows, size_t stride, int n, float *acc);

/* Grouped accumulate for D = 64: the G heads' weights (w + g * ws) share each row's decoded
 * levels; acc + g * as gets head g's sum. Rows whose G weights are all zero are not read. */
KVC_TARGET_AVX512 HDC_AI void acc_g64_avx512_impl(const struct hdc_state *st, const int G, const float *w,
                                                  size_t ws, const uint8_t *rows, size_t stride, int n,
                                                  float *acc, size_t as, const int B) {
    enum { D = 64, NC = 4 };
    const __m512 lev16 = acc_lev16_avx512(st, B);
    const __m512i vidx = kv512_row_offsets16(stride);
    float tv[4][16] __attribute__((aligned(64)));
    __m512 a[4][NC];
#pragma GCC unroll 4
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) a[g][c] = _mm512_setzero_ps();
    for (int r0 = 0; r0 < n; r0 += 16) {
        const int nb = n - r0 < 16 ? n - r0 : 16;
        const uint8_t *base = rows + (size_t)r0 * stride;
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) _mm512_store_ps(tv[g], acc_t16_avx512(st, w + g * ws + r0, base, vidx, nb, B));
        for (int r = 0; r < nb; r++) {
            int any = 0;
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) any |= w[g * ws + r0 + r] != 0.0f;
            if (!any) continue;
            const uint8_t *row = base + (size_t)r * stride;
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const __m512 lv = row_levels16_avx512(row, c, lev16, D, B);
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) a[g][c] = _mm512_fmadd_ps(lv, _mm512_set1_ps(tv[g][r]), a[g][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++)
            _mm512_storeu_ps(acc + g * as + 16 * c, _mm512_add_ps(_mm512_loadu_ps(acc + g * as + 16 * c), a[g][c]));
}

KVC_TARGET_AVX512 HDC_AI void acc_g64_bits(const struct hdc_state *st, const int B, int G, const float *w,
                                           size_t ws, const uint8_t *rows, size_t stride, int n, float *acc,
                                           size_t as) {
#define HDC_CALL(GL, g0) \
    acc_g64_avx512_impl(st, GL, w + (size_t)(g0) * ws, ws, rows, stride, n, acc + (size_t)(g0) * as, as, B)
    KV_G_PASSES(G, HDC_CALL)
#undef HDC_CALL
}
KVC_TARGET_AVX512 static void acc_g_avx512(const struct hdc_state *st, int G, const float *w, size_t ws,
                                           const uint8_t *rows, size_t stride, int n, float *acc, size_t as) {
    if (st->D != 64) {
        for (int g = 0; g < G; g++) acc_avx512(st, w + (size_t)g * ws, rows, stride, n, acc + (size_t)g * as);
        return;
    }
    switch (st->bits) {
    case 1: acc_g64_bits(st, 1, G, w, ws, rows, stride, n, acc, as); break;
    case 2: acc_g64_bits(st, 2, G, w, ws, rows, stride, n, acc, as); break;
    case 3: acc_g64_bits(st, 3, G, w, ws, rows, stride, n, acc, as); break;
    default: acc_g64_bits(st, 4, G, w, ws, rows, stride, n, acc, as); break;
    }
}

KVC_TARGET_AVX512 static void acc_avx512(const struct hdc_state *st, const float *w,
                                         const uint8_t *rows, size_t stride, int n, float *acc) {
    switch (st->D * 8 + st->bits) {
    case 64 * 8 + 1: acc_avx512_impl(st, w, rows, stride, n, acc, 64, 1); break;
    case 64 * 8 + 2: acc_avx512_impl(st, w, rows, stride, n, acc, 64, 2); break;
    case 64 * 8 + 3: acc_avx512_impl(st, w, rows, stride, n, acc, 64, 3); break;
    case 64 * 8 + 4: acc_avx512_impl(st, w, rows, stride, n, acc, 64, 4); break;
    case 128 * 8 + 1: acc_avx512_impl(st, w, rows, stride, n, acc, 128, 1); break;
    default:
        switch (st->bits) {
        case 1: acc_avx512_impl(st, w, rows, stride, n, acc, st->D, 1); break;
        case 2: acc_avx512_impl(st, w, rows, stride, n, acc, st->D, 2); break;
        case 3: acc_avx512_impl(st, w, rows, stride, n, acc, st->D, 3); break;
        default: acc_avx512_impl(st, w, rows, stride, n, acc, st->D, 4); break;
        }
    }
}

/* Popcount scores with VPOPCNTDQ: 16 rows in the 16 lanes, code dwords gathered. */
#define KVC_TARGET_VPOPCNT \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,avx2,fma,f16c,popcnt")))
KVC_TARGET_VPOPCNT void hdc_ham_vpopcnt(const struct hdc_state *st, const float *qp,
                                        const uint8_t *rows, size_t stride, int n, float *out) {
    const int nd = st->D / 32;
    const uint32_t *qwp = (const uint32_t *)(const void *)hdc_qp_words(qp, st->D);
    const __m512 qn = _mm512_set1_ps(qp[st->D + 1]);
    const __m512i vidx = kv512_row_offsets16(stride);
    for (int r0 = 0; r0 < n; r0 += 16) {
        const __mmask16 m = kv_mask16(n - r0);
        const uint8_t *base = rows + (size_t)r0 * stride;
        __m512i cnt = _mm512_setzero_si512();
        for (int w = 0; w < nd; w++) {
            uint32_t q;
            memcpy(&q, qwp + w, 4);
            __m512i x = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)(base + 2 + 4 * w), 1);
            cnt = _mm512_add_epi32(cnt, _mm512_popcnt_epi32(_mm512_xor_si512(x, _mm512_set1_epi32((int)q))));
        }
        __m512 cs = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, cnt, st->cos_tab, 4);
        __m512i sw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vidx, (const void *)base, 1);
        __m512 res = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(qn, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(sw))), cs),
                                   _mm512_set1_ps(qp[st->D + 2]));
        _mm512_mask_storeu_ps(out + r0, m, res);
    }
}
KVC_TARGET_AVX512 static void ham_avx512(const struct hdc_state *st, const float *qp,
                                         const uint8_t *rows, size_t stride, int n, float *out) {
    if (st->use_vpopcnt) hdc_ham_vpopcnt(st, qp, rows, stride, n, out);
    else ham_popcnt(st, qp, rows, stride, n, out);
}

const struct hdc_ops hdc_ops[KVC_ISA_COUNT] = {
    [KVC_ISA_SCALAR] = {score_scalar, hdc_ham_scalar, acc_scalar},
    [KVC_ISA_AVX2] = {score_avx2, ham_popcnt, acc_avx2},
    [KVC_ISA_AVX512] = {score_avx512, ham_avx512, acc_avx512},
};

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
    (st->qbits == 1 ? o->ham : o->score)(st, qp, keys, st->row_bytes, n, out);
}
static inline void hdc_acc_isa(const struct kv_slot *s, const float *w, const void *vals, int n,
                               float *acc, int isa) {
    const struct hdc_state *st = s->state;
    hdc_ops[isa].acc(st, w, vals, st->row_bytes, n, acc);
    if (st->mu) { /* centred values: acc[D] sums the weights, finish adds sum * mu */
        float sw = 0.0f;
        for (int r = 0; r < n; r++) sw += w[r];
        acc[st->D] += sw;
    }
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
    score_g_avx512(st, G, qp, qs, keys, st->row_bytes, n, out, os);
}
static void hdc_accumulate_g_avx512(const struct kv_slot *s, int G, const float *w, size_t ws, const void *vals,
                                    int pos0, int n, float *acc, size_t as) {
    (void)pos0;
    const struct hdc_state *st = s->state;
    acc_g_avx512(st, G, w, ws, vals, st->row_bytes, n, acc, as);
    if (st->mu) /* centred values: acc[D] sums the weights */
        for (int g = 0; g < G; g++) {
            float sw = 0.0f;
            for (int r = 0; r < n; r++) sw += w[(size_t)g * ws + r];
            acc[(size_t)g * as + st->D] += sw;
        }
}

#define HDC_KSET(SUF)                                                                     \
    {hdc_encode_##SUF, hdc_decode_##SUF, hdc_prepare_##SUF, hdc_score_##SUF,              \
     hdc_accumulate_##SUF, hdc_finish_##SUF}

const struct kv_codec kv_codec_hdc = {
    .name = "hdc",
    .id = KV_CODEC_HDC,
    .params = HDC_PARAMS,
    .about = "hypervectors: random binding + Walsh-Hadamard spreading, 1-4 bit codes, "
             "scores and sums in hyperspace (popcount scores with qbits=1)",
    .cfg_size = sizeof(struct hdc_cfg),
    .parse = hdc_parse,
    .row_bytes = hdc_row_bytes,
    .check_dim = hdc_check_dim,
    .state_create = hdc_state_create,
    .state_free = hdc_state_free,
    .qp_floats = hdc_qpf,
    .acc_floats = hdc_accf,
    .kern = {
        [KVC_ISA_SCALAR] = HDC_KSET(scalar),
        [KVC_ISA_AVX2] = HDC_KSET(avx2),
        [KVC_ISA_AVX512] = {hdc_encode_avx512, hdc_decode_avx512, hdc_prepare_avx512, hdc_score_avx512,
                            hdc_accumulate_avx512, hdc_finish_avx512, hdc_score_g_avx512,
                            hdc_accumulate_g_avx512},
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
