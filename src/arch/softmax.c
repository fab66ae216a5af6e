/* softmax.c - scaled softmax of attention scores: scalar reference and AVX2 / AVX-512
 * versions. exp(x) = 2^k * p(r) with k = round(x / ln 2), r = x - k ln 2 (split in two parts
 * for accuracy), p a degree-6 Taylor polynomial on |r| <= ln2/2; inputs below -87.3 give 0.
 * The fast online step (kvc_softmax_online_fast) uses 2^y = 2^k p3(y - k) instead. */
#include "softmax.h"

#include <immintrin.h>
#include <math.h>

static void softmax_scalar(float *x, int n, float scale) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        x[i] *= scale;
        if (x[i] > mx) mx = x[i];
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        float e = x[i] == -INFINITY ? 0.0f : expf(x[i] - mx);
        x[i] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* Online step (see softmax.h): scale, block max, exp against the new running max, sum. */
static float online_finish(float *m, float *l, float m_new, double sum) {
    float alpha = *m == m_new ? 1.0f : expf(*m - m_new); /* *m = -inf gives 0 */
    *l = (float)((double)*l * alpha + sum);
    *m = m_new;
    return alpha;
}

/* The new running max from the block's scaled max; 0 when it is still -inf (no finite score
 * yet): then the block's weights are zeroed and the step is over (alpha 1). */
static int online_begin(float *x, int n, float block_max, const float *m, float *mx) {
    *mx = *m > block_max ? *m : block_max;
    if (*mx != -INFINITY) return 1;
    for (int i = 0; i < n; i++) x[i] = 0.0f;
    return 0;
}

static float online_scalar(float *x, int n, float scale, float *m, float *l) {
    float bmax = -INFINITY, mx;
    for (int i = 0; i < n; i++) {
        x[i] *= scale;
        if (x[i] > bmax) bmax = x[i];
    }
    if (!online_begin(x, n, bmax, m, &mx)) return 1.0f;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        float e = x[i] == -INFINITY ? 0.0f : expf(x[i] - mx);
        x[i] = e;
        sum += e;
    }
    return online_finish(m, l, mx, sum);
}

#define LN2_HI 0.693145751953125f
#define LN2_LO 1.428606765330187045e-06f
#define LOG2E 1.44269504088896341f
/* 1/k! for k = 2..6 */
#define C2 0.5f
#define C3 0.16666666666666666f
#define C4 0.041666666666666664f
#define C5 0.008333333333333333f
#define C6 0.001388888888888889f

static KVC_TARGET_AVX512 __m512 exp512(__m512 x) {
    __m512 lo = _mm512_set1_ps(-87.3f);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(C6);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512 e = _mm512_scalef_ps(p, k);
    return _mm512_maskz_mov_ps((__mmask16)~under, e);
}

/* x *= scale in place; returns the max of the scaled values. */
static KVC_TARGET_AVX512 float scale_max512(float *x, int n, float scale) {
    __m512 vs = _mm512_set1_ps(scale), vmx = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
        _mm512_storeu_ps(x + i, v);
        vmx = _mm512_max_ps(vmx, v);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
        _mm512_mask_storeu_ps(x + i, m, v);
        vmx = _mm512_mask_max_ps(vmx, m, vmx, v);
    }
    return _mm512_reduce_max_ps(vmx);
}

/* x = exp(x - mx) in place (mx finite); returns the sum. */
static KVC_TARGET_AVX512 float exp_sum512(float *x, int n, float mxs) {
    __m512 mx = _mm512_set1_ps(mxs), vsum = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mx));
        _mm512_storeu_ps(x + i, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx)));
        _mm512_mask_storeu_ps(x + i, m, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    return _mm512_reduce_add_ps(vsum);
}

static KVC_TARGET_AVX512 void softmax_avx512(float *x, int n, float scale) {
    float mx = scale_max512(x, n, scale);
    __m512 inv = _mm512_set1_ps(1.0f / exp_sum512(x, n, mx));
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

static KVC_TARGET_AVX512 float online_avx512(float *x, int n, float scale, float *m, float *l) {
    float mx;
    if (!online_begin(x, n, scale_max512(x, n, scale), m, &mx)) return 1.0f;
    return online_finish(m, l, mx, exp_sum512(x, n, mx));
}

static KVC_TARGET_AVX2 __m256 exp256(__m256 x) {
    __m256 lo = _mm256_set1_ps(-87.3f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HI), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(C6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^k by building the exponent bits; k >= -126 since x >= -87.3 */
    __m256i ki = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(ki));
    return _mm256_andnot_ps(under, e);
}

static KVC_TARGET_AVX2 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static KVC_TARGET_AVX2 float scale_max256(float *x, int n, float scale) {
    __m256 vs = _mm256_set1_ps(scale), vmx = _mm256_set1_ps(-INFINITY);
    int i = 0;
    float mx = -INFINITY;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        _mm256_storeu_ps(x + i, v);
        vmx = _mm256_max_ps(vmx, v);
    }
    for (; i < n; i++) {
        x[i] *= scale;
        if (x[i] > mx) mx = x[i];
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vmx);
    for (int j = 0; j < 8; j++)
        if (lanes[j] > mx) mx = lanes[j];
    return mx;
}

static KVC_TARGET_AVX2 float exp_sum256(float *x, int n, float mx) {
    __m256 vmax = _mm256_set1_ps(mx), vsum = _mm256_setzero_ps();
    float sum = 0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    for (; i < n; i++) {
        float e = x[i] == -INFINITY ? 0.0f : expf(x[i] - mx);
        x[i] = e;
        sum += e;
    }
    return sum + hsum256(vsum);
}

static KVC_TARGET_AVX2 void softmax_avx2(float *x, int n, float scale) {
    float mx = scale_max256(x, n, scale);
    __m256 inv = _mm256_set1_ps(1.0f / exp_sum256(x, n, mx));
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    float fi = _mm256_cvtss_f32(inv);
    for (; i < n; i++) x[i] *= fi;
}

static KVC_TARGET_AVX2 float online_avx2(float *x, int n, float scale, float *m, float *l) {
    float mx;
    if (!online_begin(x, n, scale_max256(x, n, scale), m, &mx)) return 1.0f;
    return online_finish(m, l, mx, exp_sum256(x, n, mx));
}

/* ---- the fast online step: 2^y = 2^k p3(f), k = round(y), f = y - k in [-1/2, 1/2]; p3
 * fitted to 2^f for the smallest relative error (7.5e-5 on [-1/2, 1/2]) ---- */
#define P3_0 0.9999281167984009f
#define P3_1 0.6932609677314758f
#define P3_2 0.24261052906513214f
#define P3_3 0.055171314626932144f

float kvc_exp_fast_ref(float y) {
    if (!(y >= -126.0f)) return 0.0f; /* also -inf and NaN */
    const float k = nearbyintf(y), f = y - k;
    const float p = ((P3_3 * f + P3_2) * f + P3_1) * f + P3_0;
    return ldexpf(p, (int)k);
}

static KVC_TARGET_AVX512 float online_fast512(float *x, int n, float scale, float *m, float *l) {
    /* block max of the raw scores (scale > 0 keeps the order) */
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= n; i += 16) vmx = _mm512_max_ps(vmx, _mm512_loadu_ps(x + i));
    if (i < n) vmx = _mm512_mask_max_ps(vmx, (__mmask16)((1u << (n - i)) - 1), vmx, _mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1), x + i));
    float mx;
    if (!online_begin(x, n, _mm512_reduce_max_ps(vmx) * scale, m, &mx)) return 1.0f;
    /* y = x scale log2e - mx log2e; lanes with y < -126 (or -inf, NaN) give 0 */
    const __m512 c = _mm512_set1_ps(scale * LOG2E), mc = _mm512_set1_ps(mx * LOG2E), lo = _mm512_set1_ps(-126.0f);
    __m512 vsum = _mm512_setzero_ps();
    for (i = 0; i < n; i += 16) {
        const __mmask16 ld = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 y = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(ld, x + i), c, mc);
        const __mmask16 ok = _mm512_mask_cmp_ps_mask(ld, y, lo, _CMP_GE_OQ);
        const __m512 k = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512 f = _mm512_sub_ps(y, k);
        __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(P3_3), f, _mm512_set1_ps(P3_2));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(P3_1));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(P3_0));
        const __m512 e = _mm512_maskz_scalef_ps(ok, p, k);
        _mm512_mask_storeu_ps(x + i, ld, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    return online_finish(m, l, mx, _mm512_reduce_add_ps(vsum));
}

/* Scalar reference of the fast step (same y, same polynomial; the sum in double). */
static float online_fast_scalar(float *x, int n, float scale, float *m, float *l) {
    float bmax = -INFINITY, mx;
    for (int i = 0; i < n; i++) bmax = x[i] > bmax ? x[i] : bmax;
    if (!online_begin(x, n, bmax * scale, m, &mx)) return 1.0f;
    const float c = scale * LOG2E, mc = mx * LOG2E;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = kvc_exp_fast_ref(fmaf(x[i], c, -mc));
        sum += x[i];
    }
    return online_finish(m, l, mx, sum);
}

float kvc_softmax_online_fast(enum kvc_isa isa, float *x, int n, float scale, float *m, float *l) {
    if (!(scale > 0.0f && scale < INFINITY) || isa == KVC_ISA_AVX2) return kvc_softmax_online(isa, x, n, scale, m, l);
    if (isa >= KVC_ISA_AVX512) return online_fast512(x, n, scale, m, l);
    return online_fast_scalar(x, n, scale, m, l);
}

void kvc_softmax_f32(enum kvc_isa isa, float *x, int n, float scale) {
    if (isa >= KVC_ISA_AVX512) softmax_avx512(x, n, scale);
    else if (isa == KVC_ISA_AVX2) softmax_avx2(x, n, scale);
    else softmax_scalar(x, n, scale);
}

float kvc_softmax_online(enum kvc_isa isa, float *x, int n, float scale, float *m, float *l) {
    if (isa >= KVC_ISA_AVX512) return online_avx512(x, n, scale, m, l);
    if (isa == KVC_ISA_AVX2) return online_avx2(x, n, scale, m, l);
    return online_scalar(x, n, scale, m, l);
}
