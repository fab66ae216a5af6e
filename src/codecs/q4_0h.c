/* q4_0h.c - the q4_0h KV codec: a randomized Hadamard rotation x -> H diag(s) x / sqrt(d)
 * (s: per-slot random signs, H: Walsh-Hadamard) followed by q4_0 blocks. The rotation spreads
 * outlier channels over the whole row, so the 4-bit blocks lose less. The query is rotated
 * the same way (scores are dots in the rotated space), values are summed rotated, and
 * finish applies the inverse rotation once per output. */
#include "codec_impl.h"
#include <math.h>
#include <stdlib.h>

#define Q4_0H_MAX_D 1024 /* rows are rotated in a stack buffer of this many floats */

extern const struct kv_codec kv_codec_q4_0;

static size_t q4_0h_row_bytes(const void *cfg, int d) {
    (void)cfg;
    if (d < 32 || d > Q4_0H_MAX_D || (d & (d - 1)) != 0) return 0;
    return (size_t)(d / QK4_0) * sizeof(block_q4_0);
}
static kvc_status q4_0h_check_dim(const void *cfg, int d, kvc_error *err) {
    if (q4_0h_row_bytes(cfg, d) == 0)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                        "KV codec 'q4_0h' needs a head dim that is a power of two, a multiple "
                        "of 32 and at most %d; head dim is %d",
                        Q4_0H_MAX_D, d);
    return KVC_OK;
}
static int q4_0h_qp_floats(const void *cfg, int d) {
    (void)cfg;
    return kv_q16_floats(d);
}
static int q4_0h_acc_floats(const void *cfg, int d) {
    (void)cfg;
    return d;
}

/* State: d random signs (+-1.0f), 64 per splitmix64 draw from the slot's seed. */
static kvc_status q4_0h_state_create(const void *cfg, const struct kv_slot_info *info,
                                     void **state, kvc_error *err) {
    (void)cfg;
    const int d = info->d;
    float *sign = (float *)kvc_alloc_aligned((size_t)d * sizeof(float));
    if (!sign) return kvc_fail(err, KVC_ERR_NOMEM, "KV codec 'q4_0h': out of memory for signs");
    uint64_t st = info->seed, bits = 0;
    for (int j = 0; j < d; j++) {
        if (j % 64 == 0) bits = kvc_splitmix64(&st);
        sign[j] = (bits >> (j % 64)) & 1 ? -1.0f : 1.0f;
    }
    *state = sign;
    return KVC_OK;
}
static void q4_0h_state_free(void *state) { kvc_free_aligned(state); }

/* ---- rotation ---- */

void kv_fwht(float *x, int d) {
    for (int h = 1; h < d; h <<= 1)
        for (int i = 0; i < d; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                const float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

/* SIMD transforms: the same butterflies (a + b, a - b) in the same stage order as kv_fwht,
 * so the results are bit-identical (float addition is commutative). Stages h < lanes swap
 * lanes inside a register and blend sums / differences. */
KVC_TARGET_AVX2 static void fwht_avx2(float *x, int d) {
    for (int k = 0; k < d; k += 8) {
        __m256 v = _mm256_loadu_ps(x + k), sw;
        sw = _mm256_permute_ps(v, 0xb1); /* h = 1 */
        v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xaa);
        sw = _mm256_permute_ps(v, 0x4e); /* h = 2 */
        v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xcc);
        sw = _mm256_permute2f128_ps(v, v, 0x01); /* h = 4 */
        v = _mm256_blend_ps(_mm256_add_ps(v, sw), _mm256_sub_ps(sw, v), 0xf0);
        _mm256_storeu_ps(x + k, v);
    }
    for (int h = 8; h < d; h <<= 1)
        for (int i = 0; i < d; i += 2 * h)
            for (int j = i; j < i + h; j += 8) {
                __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
                _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
                _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
            }
}
KVC_TARGET_AVX512 static void fwht_avx512(float *x, int d) {
    for (int k = 0; k < d; k += 16) {
        __m512 v = _mm512_loadu_ps(x + k), sw;
        sw = _mm512_permute_ps(v, 0xb1); /* h = 1 */
        v = _mm512_mask_sub_ps(_mm512_add_ps(v, sw), 0xaaaa, sw, v);
        sw = _mm512_permute_ps(v, 0x4e); /* h = 2 */
        v = _mm512_mask_sub_ps(_mm512_add_ps(v, sw), 0xcccc, sw, v);
        sw = _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)); /* h = 4 */
        v = _mm512_mask_sub_ps(_mm512_add_ps(v, sw), 0xf0f0, sw, v);
        sw = _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)); /* h = 8 */
        v = _mm512_mask_sub_ps(_mm512_add_ps(v, sw), 0xff00, sw, v);
        _mm512_storeu_ps(x + k, v);
    }
    for (int h = 16; h < d; h <<= 1)
        for (int i = 0; i < d; i += 2 * h)
            for (int j = i; j < i + h; j += 16) {
                __m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + h);
                _mm512_storeu_ps(x + j, _mm512_add_ps(a, b));
                _mm512_storeu_ps(x + j + h, _mm512_sub_ps(a, b));
            }
}

/* Element-wise y = x * a (or (x * a) * b when b != NULL), vectorised at the given level:
 * the same single roundings as the scalar loops, so all levels agree bit for bit. */
KVC_TARGET_AVX2 static void scale_avx2(const float *x, const float *a, float av, const float *b,
                                       float *y, int d) {
    for (int j = 0; j < d; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j), a ? _mm256_loadu_ps(a + j) : _mm256_set1_ps(av));
        if (b) v = _mm256_mul_ps(v, _mm256_loadu_ps(b + j));
        _mm256_storeu_ps(y + j, v);
    }
}
KVC_TARGET_AVX512 static void scale_avx512(const float *x, const float *a, float av,
                                           const float *b, float *y, int d) {
    for (int j = 0; j < d; j += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + j), a ? _mm512_loadu_ps(a + j) : _mm512_set1_ps(av));
        if (b) v = _mm512_mul_ps(v, _mm512_loadu_ps(b + j));
        _mm512_storeu_ps(y + j, v);
    }
}
/* y = x * (a ? a : av) [* b], at level l. */
static void scale_at(enum kvc_isa l, const float *x, const float *a, float av, const float *b,
                     float *y, int d) {
    if (l == KVC_ISA_AVX512) scale_avx512(x, a, av, b, y, d);
    else if (l == KVC_ISA_AVX2) scale_avx2(x, a, av, b, y, d);
    else
        for (int j = 0; j < d; j++) {
            float v = x[j] * (a ? a[j] : av);
            y[j] = b ? v * b[j] : v;
        }
}

/* The transform of level l (d is a power of two >= 32 here). */
static void fwht_at(enum kvc_isa l, float *x, int d) {
    if (l == KVC_ISA_AVX512) fwht_avx512(x, d);
    else if (l == KVC_ISA_AVX2) fwht_avx2(x, d);
    else kv_fwht(x, d);
}

/* y = H diag(sign) x / sqrt(d) */
static void rotate_at(enum kvc_isa l, const struct kv_slot *s, const float *x, float *y) {
    const int d = s->info.d;
    const float norm = (float)(1.0 / sqrt((double)d));
    scale_at(l, x, (const float *)s->state, 0.0f, NULL, y, d);
    fwht_at(l, y, d);
    scale_at(l, y, NULL, norm, NULL, y, d);
}

/* x = diag(sign) H y / sqrt(d) */
static void unrotate_at(enum kvc_isa l, const struct kv_slot *s, const float *y, float *x) {
    const int d = s->info.d;
    const float norm = (float)(1.0 / sqrt((double)d));
    if (x != y) memcpy(x, y, (size_t)d * sizeof(float));
    fwht_at(l, x, d);
    scale_at(l, x, NULL, norm, (const float *)s->state, x, d);
}

void kv_q4_0h_rotate(const struct kv_slot *s, const float *x, float *y) {
    rotate_at(KVC_ISA_SCALAR, s, x, y);
}
void kv_q4_0h_unrotate(const struct kv_slot *s, const float *y, float *x) {
    unrotate_at(KVC_ISA_SCALAR, s, y, x);
}

/* ---- kernels: rotation + the q4_0 kernels of the same level ---- */

static void q4_0h_encode_at(enum kvc_isa l, const struct kv_slot *s, const float *x, int pos0,
                            int n, void *dst) {
    const int d = s->info.d;
    float tmp[Q4_0H_MAX_D];
    for (int i = 0; i < n; i++) {
        rotate_at(l, s, x + (size_t)i * d, tmp);
        kv_codec_q4_0.kern[l].encode(s, tmp, pos0 + i, 1, (char *)dst + (size_t)i * s->row_bytes);
    }
}
static void q4_0h_decode(const struct kv_slot *s, const void *src, int pos0, int n, float *y) {
    const int d = s->info.d;
    kv_codec_q4_0.kern[KVC_ISA_SCALAR].decode(s, src, pos0, n, y);
    for (int i = 0; i < n; i++) kv_q4_0h_unrotate(s, y + (size_t)i * d, y + (size_t)i * d);
}
/* decode_acc: rows in the rotated space the values are summed in (finish unrotates once). */
static void q4_0h_decode_acc_at(enum kvc_isa l, const struct kv_slot *s, const void *src, int pos0, int n,
                                float *y) {
    kv_codec_q4_0.kern[l].decode(s, src, pos0, n, y);
}
static int q4_0h_dec_accf(const void *cfg, int d) {
    (void)cfg;
    return d;
}
static void q4_0h_prepare_at(enum kvc_isa l, const struct kv_slot *s, const float *q, float *qp) {
    float tmp[Q4_0H_MAX_D];
    rotate_at(l, s, q, tmp);
    kv_codec_q4_0.kern[l].prepare_query(s, tmp, qp);
}

#define Q4_0H_LEVEL(L, suffix)                                                                  \
    static void q4_0h_encode_##suffix(const struct kv_slot *s, const float *x, int pos0, int n, \
                                      void *dst) {                                              \
        q4_0h_encode_at(L, s, x, pos0, n, dst);                                                 \
    }                                                                                           \
    static void q4_0h_prepare_##suffix(const struct kv_slot *s, const float *q, float *qp) {    \
        q4_0h_prepare_at(L, s, q, qp);                                                          \
    }                                                                                           \
    static void q4_0h_score_##suffix(const struct kv_slot *s, const float *qp, const void *k,   \
                                     int pos0, int n, float *out) {                             \
        kv_codec_q4_0.kern[L].score(s, qp, k, pos0, n, out);                                    \
    }                                                                                           \
    static void q4_0h_accumulate_##suffix(const struct kv_slot *s, const float *w,              \
                                          const void *v, int pos0, int n, float *acc) {         \
        kv_codec_q4_0.kern[L].accumulate(s, w, v, pos0, n, acc);                                \
    }                                                                                           \
    static void q4_0h_finish_##suffix(const struct kv_slot *s, const float *acc, float *out) {  \
        unrotate_at(L, s, acc, out);                                                            \
    }                                                                                           \
    static void q4_0h_decode_acc_##suffix(const struct kv_slot *s, const void *src, int pos0,   \
                                          int n, float *y) {                                    \
        q4_0h_decode_acc_at(L, s, src, pos0, n, y);                                             \
    }
Q4_0H_LEVEL(KVC_ISA_SCALAR, scalar)
Q4_0H_LEVEL(KVC_ISA_AVX2, avx2)
Q4_0H_LEVEL(KVC_ISA_AVX512, avx512)

/* Grouped kernels: the rotated queries and sums are q4_0's, so q4_0's grouped kernels apply. */
static void q4_0h_score_g_avx512(const struct kv_slot *s, int G, const float *qp, size_t qs, const void *k,
                                 int pos0, int n, float *out, size_t os) {
    kv_codec_q4_0.kern[KVC_ISA_AVX512].score_g(s, G, qp, qs, k, pos0, n, out, os);
}
static void q4_0h_acc_g_avx512(const struct kv_slot *s, int G, const float *w, size_t ws, const void *v,
                               int pos0, int n, float *acc, size_t as) {
    kv_codec_q4_0.kern[KVC_ISA_AVX512].accumulate_g(s, G, w, ws, v, pos0, n, acc, as);
}

const struct kv_codec kv_codec_q4_0h = {
    .name = "q4_0h",
    .id = KV_CODEC_Q4_0H,
    .params = "",
    .about = "randomized Hadamard rotation + GGML Q4_0 blocks (4.5 bits per element)",
    .cfg_size = 0,
    .batch_decode = kv_batch_decode_values,
    .dec_acc_floats = q4_0h_dec_accf,
    .parse = NULL,
    .row_bytes = q4_0h_row_bytes,
    .check_dim = q4_0h_check_dim,
    .state_create = q4_0h_state_create,
    .state_free = q4_0h_state_free,
    .qp_floats = q4_0h_qp_floats,
    .acc_floats = q4_0h_acc_floats,
    .kern = {
        [KVC_ISA_SCALAR] = {q4_0h_encode_scalar, q4_0h_decode, q4_0h_prepare_scalar,
                            q4_0h_score_scalar, q4_0h_accumulate_scalar, q4_0h_finish_scalar, NULL, NULL,
                            q4_0h_decode_acc_scalar},
        [KVC_ISA_AVX2] = {q4_0h_encode_avx2, q4_0h_decode, q4_0h_prepare_avx2, q4_0h_score_avx2,
                          q4_0h_accumulate_avx2, q4_0h_finish_avx2, NULL, NULL, q4_0h_decode_acc_avx2},
        [KVC_ISA_AVX512] = {q4_0h_encode_avx512, q4_0h_decode, q4_0h_prepare_avx512,
                            q4_0h_score_avx512, q4_0h_accumulate_avx512, q4_0h_finish_avx512,
                            q4_0h_score_g_avx512, q4_0h_acc_g_avx512, q4_0h_decode_acc_avx512},
    },
};
