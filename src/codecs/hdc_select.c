/* hdc_select.c - the hdc-select KV codec: sparse attention through hypervector sketches.
 * Each key row holds a 1-bit sketch sign(H S P k) of D = expand*d bits with the f16 norm
 * ||k|| (the hdc bits=1 row) and the same row in a finer inner codec (inner=q8_0|q4_0|f16|...,
 * called through the codec table). score ranks all n rows by the popcount similarity
 * ||k|| c1 <Hq, sign(Hk)> (sim=asym, the unbiased 1-bit estimate; the default: better recall
 * at the same cost) or ||k|| cos(pi hamming / D) (sim=ham, XOR + popcount of the query's sketch),
 * keeps the top k (O(n) radix select), scores those exactly with the inner codec and gives
 * -INFINITY to the others, which the cache's softmax turns into weight 0. accumulate calls the
 * inner codec for the rows of non-zero weight only. As a value codec the sketch is unused
 * (not computed; its bytes are still allocated since row_bytes cannot depend on K/V). */
#include "hdc_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { SEL_SIM_HAM = 0, SEL_SIM_ASYM = 1 };
#define SEL_MAX_K 4096 /* largest k (indices on the stack) */
#define SEL_BATCH_BYTES 16384

/* Inner codecs whose kernels ignore positions: their selected rows can be copied together and
 * scored / accumulated in one call (others get one call per row, with its position). */
static int inner_pos_free(int id) {
    return id == KV_CODEC_F32 || id == KV_CODEC_F16 || id == KV_CODEC_BF16 || id == KV_CODEC_Q8_0 ||
           id == KV_CODEC_Q4_0 || id == KV_CODEC_Q4_0H;
}

struct hdcsel_cfg {
    struct hdc_cfg sk; /* the sketch: bits=1 */
    int k;
    int sim;
    char inner[32];
    _Alignas(16) unsigned char inner_cfg[128]; /* the inner codec's default parameters */
};

struct hdcsel_state {
    struct hdc_state sk;
    struct kv_spec spec;  /* inner codec spec */
    struct kv_slot inner; /* inner codec slot */
    const struct kv_kernels *ik[KVC_ISA_COUNT];
    int k, sim, is_value, qoff;
    int batch; /* inner kernels ignore positions: batch the selected rows */
    size_t sk_bytes, stride;
};

#define SEL_PARAMS                                                                        \
    "k=1..4096 top keys scored exactly (default 256), inner=q8_0|q4_0|f16|... codec of the rows " \
    "(default q8_0), expand=1|2|4|8|16|32|64 sketch bits D = expand*d (default 2), "        \
    "sim=asym|ham sketch similarity (asym: unbiased 1-bit estimate, default; ham: popcount), "   \
    "seed=N (default 0)"

static kvc_status sel_param(void *cfgp, const char *key, const char *val, kvc_error *err) {
    struct hdcsel_cfg *c = cfgp;
    char *end;
    if (strcmp(key, "k") == 0) {
        long v = strtol(val, &end, 10);
        if (end == val || *end || v < 1 || v > SEL_MAX_K)
            return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc-select': k must be an integer in [1, %d], got '%s'",
                            SEL_MAX_K, val);
        c->k = (int)v;
    } else if (strcmp(key, "inner") == 0) {
        if (strlen(val) >= sizeof c->inner)
            return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc-select': inner codec name '%s' too long", val);
        strcpy(c->inner, val);
    } else if (strcmp(key, "expand") == 0) {
        long v = strtol(val, &end, 10);
        if (end == val || *end || v < 1 || v > 64 || (v & (v - 1)))
            return kvc_fail(err, KVC_ERR_ARG,
                            "KV codec 'hdc-select': expand must be a power of two 1..64, got '%s'", val);
        c->sk.expand = (int)v;
    } else if (strcmp(key, "sim") == 0) {
        if (strcmp(val, "ham") == 0) c->sim = SEL_SIM_HAM;
        else if (strcmp(val, "asym") == 0) c->sim = SEL_SIM_ASYM;
        else return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc-select': sim must be ham or asym, got '%s'", val);
    } else if (strcmp(key, "seed") == 0) {
        unsigned long long s = strtoull(val, &end, 0);
        if (end == val || *end || val[0] == '-')
            return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc-select': seed must be an unsigned integer, got '%s'", val);
        c->sk.seed = (uint64_t)s;
    } else {
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc-select': unknown parameter '%s' (valid: %s)",
                        key, SEL_PARAMS);
    }
    return KVC_OK;
}

static const struct kv_codec *sel_inner(const struct hdcsel_cfg *c) {
    return kv_codec_find(c->inner);
}

static kvc_status sel_parse(void *cfgp, const char *params, kvc_error *err) {
    struct hdcsel_cfg *c = cfgp;
    c->sk = (struct hdc_cfg){.bits = 1, .expand = 2, .scale = 0, .qbits = 1, .rounds = 1, .seed = 0};
    c->k = 256;
    c->sim = SEL_SIM_ASYM;
    strcpy(c->inner, "q8_0");
    kvc_status st = kv_params_each("hdc-select", params, cfgp, sel_param, err);
    if (st) return st;
    const struct kv_codec *in = sel_inner(c);
    if (!in || in->id == KV_CODEC_HDC_SELECT)
        return kvc_fail(err, KVC_ERR_ARG,
                        "KV codec 'hdc-select': inner codec '%s' is not usable (valid: any codec "
                        "of the table but hdc-select, with its default parameters: %s)",
                        c->inner, kvc_codec_list());
    if (in->parse) {
        if (in->cfg_size > sizeof c->inner_cfg)
            return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                            "KV codec 'hdc-select': inner codec '%s' has a %zu-byte configuration (max %zu)",
                            c->inner, in->cfg_size, sizeof c->inner_cfg);
        memset(c->inner_cfg, 0, sizeof c->inner_cfg);
        if ((st = in->parse(c->inner_cfg, "", err))) return st;
    }
    return KVC_OK;
}

static kvc_status sel_check_dim(const void *cfgp, int d, kvc_error *err) {
    const struct hdcsel_cfg *c = cfgp;
    kvc_status st = hdc_check_D("hdc-select", d, c->sk.expand, err);
    if (st) return st;
    const struct kv_codec *in = sel_inner(c);
    if (in->check_dim) return in->check_dim(c->inner_cfg, d, err);
    return KVC_OK;
}

static size_t sel_row_bytes(const void *cfgp, int d) {
    const struct hdcsel_cfg *c = cfgp;
    if (hdc_check_D("hdc-select", d, c->sk.expand, NULL)) return 0;
    size_t in = sel_inner(c)->row_bytes(c->inner_cfg, d);
    if (!in) return 0;
    return 2 + (size_t)d * c->sk.expand / 8 + in;
}

static int round16(int x) { return (x + 15) & ~15; }
static int sel_inner_qpf(const struct hdcsel_cfg *c, int d) {
    const struct kv_codec *in = sel_inner(c);
    return in->qp_floats ? in->qp_floats(c->inner_cfg, d) : d;
}
static int sel_qpf(const void *cfgp, int d) {
    const struct hdcsel_cfg *c = cfgp;
    return round16(sel_inner_qpf(c, d)) + hdc_qp_floats(d * c->sk.expand, 1);
}
static int sel_accf(const void *cfgp, int d) {
    const struct hdcsel_cfg *c = cfgp;
    const struct kv_codec *in = sel_inner(c);
    return in->acc_floats ? in->acc_floats(c->inner_cfg, d) : d;
}

static void sel_state_free(void *state) {
    struct hdcsel_state *s = state;
    if (!s) return;
    kv_slot_free(&s->inner);
    kv_spec_free(&s->spec);
    hdc_state_release(&s->sk);
    free(s);
}

static kvc_status sel_state_create(const void *cfgp, const struct kv_slot_info *info,
                                   void **state, kvc_error *err) {
    const struct hdcsel_cfg *c = cfgp;
    struct hdcsel_state *s = calloc(1, sizeof *s);
    if (!s) return kvc_fail(err, KVC_ERR_NOMEM, "KV codec 'hdc-select': out of memory for slot state");
    kvc_status st = hdc_state_init(&s->sk, info->d, &c->sk, info->seed ^ 0x5e1ec7ull, err);
    if (!st) st = kv_spec_parse(c->inner, &s->spec, err);
    struct kv_slot_info ii = *info;
    ii.store_tiles = 0; /* the inner codec's rows sit inside this codec's rows: plain rows */
    if (!st) st = kv_slot_init(&s->inner, &s->spec, &ii, kvc_isa_best(), err);
    if (st) {
        sel_state_free(s);
        return st;
    }
    for (int l = 0; l < KVC_ISA_COUNT; l++) s->ik[l] = kv_codec_kernels(s->spec.codec, (enum kvc_isa)l);
    s->k = c->k;
    s->sim = c->sim;
    s->is_value = info->is_value;
    s->qoff = round16(sel_inner_qpf(c, info->d));
    s->sk_bytes = s->sk.row_bytes;
    s->stride = s->sk_bytes + s->inner.row_bytes;
    s->batch = inner_pos_free(s->spec.codec->id) && s->inner.row_bytes <= SEL_BATCH_BYTES / 16 &&
               s->inner.row_bytes % 2 == 0;
    *state = s;
    return KVC_OK;
}

/* ---- top-k selection ----
 * A sample of 256 similarities gives a threshold t that about 2k rows pass; one pass over all
 * n rows compacts the indices of rows with v >= t (AVX-512: vcompressps), and a radix select
 * on the keys of those few candidates finds the exact k-th largest. If the sample was unlucky
 * (fewer than k or more than SEL_CAND_CAP candidates) a three-pass radix select over all n
 * rows does it. Either way the selection is exact: the k largest, ties to lower indices. */

#define SEL_CAND_CAP 8192
#define SEL_SAMPLE 256

/* j-th largest (1-based) of a[0..m), m >= j >= 1; a is scratch (Hoare quickselect). */
static float kth_largest(float *a, int m, int j) {
    int lo = 0, hi = m - 1, want = j - 1;
    while (lo < hi) {
        float piv = a[lo + (hi - lo) / 2];
        int i = lo, k = hi;
        while (i <= k) {
            while (a[i] > piv) i++;
            while (a[k] < piv) k--;
            if (i <= k) {
                float t = a[i];
                a[i] = a[k];
                a[k] = t;
                i++;
                k--;
            }
        }
        if (want <= k) hi = k;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

/* Key of the k-th largest of v[idx[0..c)] (k <= c) and how many of its ties to take: four
 * passes of 8 bits over the candidates. */
static uint32_t cand_topk_key(const float *v, const int *idx, int c, int k, int *ties,
                              uint32_t *keys) {
    uint32_t prefix = 0, pmask = 0, hist[256], kmin = 0xffffffffu, kmax = 0;
    int need = k;
    for (int j = 0; j < c; j++) {
        uint32_t key = hdc_fkey(v[idx[j]]);
        keys[j] = key;
        kmin = key < kmin ? key : kmin;
        kmax = key > kmax ? key : kmax;
    }
    /* the bytes above the highest one where min and max differ are common to all */
    int sh = 24;
    while (sh > 0 && !((kmin ^ kmax) >> sh)) {
        pmask |= 255u << sh;
        sh -= 8;
    }
    prefix = kmax & pmask;
    for (; sh >= 0; sh -= 8) {
        memset(hist, 0, sizeof hist);
        for (int j = 0; j < c; j++) {
            uint32_t key = keys[j];
            if ((key & pmask) == prefix) hist[(key >> sh) & 255u]++;
        }
        int b = 255;
        for (; b > 0; b--) {
            if ((int)hist[b] >= need) break;
            need -= (int)hist[b];
        }
        prefix |= (uint32_t)b << sh;
        pmask |= 255u << sh;
    }
    *ties = need;
    return prefix;
}

/* Indices of v >= t into cand (ascending); returns the count (it may exceed cap: then only
 * the first cap are stored; cand holds cap + 16 entries). */
static int compact_ge_scalar(const float *v, int n, float t, int *cand, int cap) {
    int c = 0;
    for (int i = 0; i < n; i++) {
        cand[c < cap ? c : cap] = i;
        c += v[i] >= t;
    }
    return c;
}
KVC_TARGET_AVX512 static int compact_ge_avx512(const float *v, int n, float t, int *cand, int cap) {
    const __m512 vt = _mm512_set1_ps(t);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(16);
    int c = 0;
    for (int i = 0; i < n; i += 16) {
        __mmask16 lm = kv_mask16(n - i);
        __mmask16 m = _mm512_mask_cmp_ps_mask(lm, _mm512_maskz_loadu_ps(lm, v + i), vt, _CMP_GE_OQ);
        int cnt = __builtin_popcount((unsigned)m);
        if (c + cnt <= cap) _mm512_mask_compressstoreu_epi32(cand + c, m, idx);
        c += cnt;
        idx = _mm512_add_epi32(idx, step);
    }
    return c;
}

int hdc_select_topk(const float *v, int n, int k, int *sel, int isa) {
    if (k >= n) {
        for (int i = 0; i < n; i++) sel[i] = i;
        return n;
    }
    int m = 0, ties;
    long jj = ((long)2 * k * SEL_SAMPLE + n - 1) / n; /* sample rank of about 2k rows of n */
    if (n > 2 * k && jj <= SEL_SAMPLE / 2) {
        float smp[SEL_SAMPLE];
        for (int i = 0; i < SEL_SAMPLE; i++) smp[i] = v[(int)((long)i * n / SEL_SAMPLE)];
        for (int i = 0; i < SEL_SAMPLE; i++) /* NaN would break the quickselect */
            if (smp[i] != smp[i]) smp[i] = INFINITY;
        float t = kth_largest(smp, SEL_SAMPLE, (int)(jj < 1 ? 1 : jj));
        int cand[SEL_CAND_CAP + 16];
        int c = isa >= KVC_ISA_AVX512 ? compact_ge_avx512(v, n, t, cand, SEL_CAND_CAP)
                                      : compact_ge_scalar(v, n, t, cand, SEL_CAND_CAP);
        if (c >= k && c <= SEL_CAND_CAP) {
            uint32_t keys[SEL_CAND_CAP];
            uint32_t key = cand_topk_key(v, cand, c, k, &ties, keys);
            for (int j = 0; j < c; j++) {
                uint32_t kj = keys[j];
                if (kj > key || (kj == key && ties-- > 0)) sel[m++] = cand[j];
            }
            return m;
        }
    }
    uint32_t key = hdc_topk_key(v, n, k, &ties);
    for (int i = 0; i < n; i++) {
        uint32_t ki = hdc_fkey(v[i]);
        if (ki > key || (ki == key && ties-- > 0)) sel[m++] = i;
    }
    return m;
}

/* ---- kernels ---- */

static inline void sel_encode_isa(const struct kv_slot *sl, const float *x, int pos0, int n,
                                  void *dst, int isa) {
    const struct hdcsel_state *s = sl->state;
    const int d = sl->info.d;
    float h[HDC_MAX_D] __attribute__((aligned(64)));
    for (int r = 0; r < n; r++) {
        uint8_t *row = (uint8_t *)dst + (size_t)r * s->stride;
        if (s->is_value) {
            memset(row, 0, s->sk_bytes);
        } else {
            hdc_forward(&s->sk, x + (size_t)r * d, h, isa);
            hdc_quantize(&s->sk, h, row);
        }
        s->ik[isa]->encode(&s->inner, x + (size_t)r * d, pos0 + r, 1, row + s->sk_bytes);
    }
}

static inline void sel_decode_isa(const struct kv_slot *sl, const void *src, int pos0, int n,
                                  float *y, int isa) {
    const struct hdcsel_state *s = sl->state;
    for (int r = 0; r < n; r++)
        s->ik[isa]->decode(&s->inner, (const uint8_t *)src + (size_t)r * s->stride + s->sk_bytes,
                           pos0 + r, 1, y + (size_t)r * sl->info.d);
}

static inline void sel_prepare_isa(const struct kv_slot *sl, const float *q, float *qp, int isa) {
    const struct hdcsel_state *s = sl->state;
    s->ik[isa]->prepare_query(&s->inner, q, qp);
    hdc_prepare(&s->sk, q, qp + s->qoff, isa);
}


/* Copy one inner row (rb even, rows 2-byte aligned) without a library call per row. */
static inline void copy_row(uint8_t *dst, const uint8_t *src, size_t rb) {
    size_t b = 0;
    for (; b + 8 <= rb; b += 8) memcpy(dst + b, src + b, 8);
    for (; b < rb; b += 2) memcpy(dst + b, src + b, 2);
}

/* Inner scores of the rows idx[0..m) into out[idx[j]]. */
static inline void inner_scores(const struct hdcsel_state *s, const struct kv_kernels *ik,
                                const float *qp, const uint8_t *rows, int pos0, const int *idx, int m,
                                float *out) {
    const size_t rb = s->inner.row_bytes;
    if (!s->batch) {
        for (int j = 0; j < m; j++)
            ik->score(&s->inner, qp, rows + (size_t)idx[j] * s->stride + s->sk_bytes, pos0 + idx[j], 1, out + idx[j]);
        return;
    }
    _Alignas(64) uint8_t buf[SEL_BATCH_BYTES];
    float sc[SEL_BATCH_BYTES / 2];
    const int chunk = (int)(SEL_BATCH_BYTES / rb);
    for (int j0 = 0; j0 < m; j0 += chunk) {
        int nb = m - j0 < chunk ? m - j0 : chunk;
        for (int j = 0; j < nb; j++) copy_row(buf + (size_t)j * rb, rows + (size_t)idx[j0 + j] * s->stride + s->sk_bytes, rb);
        ik->score(&s->inner, qp, buf, 0, nb, sc);
        for (int j = 0; j < nb; j++) out[idx[j0 + j]] = sc[j];
    }
}

static inline void sel_score_isa(const struct kv_slot *sl, const float *qp, const void *keys,
                                 int pos0, int n, float *out, int isa) {
    const struct hdcsel_state *s = sl->state;
    const uint8_t *rows = keys;
    const struct kv_kernels *ik = s->ik[isa];
    int sel[SEL_MAX_K], m;
    if (n <= s->k) {
        for (int r = 0; r < n; r++) sel[r] = r;
        m = n;
    } else {
        /* sketch similarities of all rows into out, then the exact top k of them */
        const struct hdc_ops *o = &hdc_ops[isa];
        (s->sim == SEL_SIM_ASYM ? o->score : o->ham)(&s->sk, qp + s->qoff, rows, s->stride, n, out);
        m = hdc_select_topk(out, n, s->k, sel, isa);
        for (int r = 0; r < n; r++) out[r] = -INFINITY;
    }
    inner_scores(s, ik, qp, rows, pos0, sel, m, out);
}

static inline void sel_acc_isa(const struct kv_slot *sl, const float *w, const void *vals,
                               int pos0, int n, float *acc, int isa) {
    const struct hdcsel_state *s = sl->state;
    const uint8_t *rows = vals;
    const struct kv_kernels *ik = s->ik[isa];
    const size_t rb = s->inner.row_bytes;
    if (!s->batch) {
        for (int r = 0; r < n; r++)
            if (w[r] != 0.0f)
                ik->accumulate(&s->inner, w + r, rows + (size_t)r * s->stride + s->sk_bytes, pos0 + r, 1, acc);
        return;
    }
    /* rows of non-zero weight copied together, one inner call per batch */
    _Alignas(64) uint8_t buf[SEL_BATCH_BYTES];
    float wb[SEL_BATCH_BYTES / 2];
    const int chunk = (int)(SEL_BATCH_BYTES / rb);
    int nb = 0;
    for (int r = 0; r < n; r++) {
        if (w[r] == 0.0f) continue;
        copy_row(buf + (size_t)nb * rb, rows + (size_t)r * s->stride + s->sk_bytes, rb);
        wb[nb++] = w[r];
        if (nb == chunk) {
            ik->accumulate(&s->inner, wb, buf, 0, nb, acc);
            nb = 0;
        }
    }
    if (nb) ik->accumulate(&s->inner, wb, buf, 0, nb, acc);
}

static inline void sel_finish_isa(const struct kv_slot *sl, const float *acc, float *out, int isa) {
    const struct hdcsel_state *s = sl->state;
    if (s->ik[isa]->finish) s->ik[isa]->finish(&s->inner, acc, out);
    else memcpy(out, acc, (size_t)sl->info.d * sizeof *out);
}

#define SEL_KERNELS(SUF, ISA)                                                                 \
    static void sel_encode_##SUF(const struct kv_slot *s, const float *x, int pos0, int n,    \
                                 void *dst) {                                                 \
        sel_encode_isa(s, x, pos0, n, dst, ISA);                                              \
    }                                                                                         \
    static void sel_decode_##SUF(const struct kv_slot *s, const void *src, int pos0, int n,   \
                                 float *y) {                                                  \
        sel_decode_isa(s, src, pos0, n, y, ISA);                                              \
    }                                                                                         \
    static void sel_prepare_##SUF(const struct kv_slot *s, const float *q, float *qp) {       \
        sel_prepare_isa(s, q, qp, ISA);                                                       \
    }                                                                                         \
    static void sel_score_##SUF(const struct kv_slot *s, const float *qp, const void *keys,   \
                                int pos0, int n, float *out) {                                \
        sel_score_isa(s, qp, keys, pos0, n, out, ISA);                                        \
    }                                                                                         \
    static void sel_accumulate_##SUF(const struct kv_slot *s, const float *w, const void *v,  \
                                     int pos0, int n, float *acc) {                           \
        sel_acc_isa(s, w, v, pos0, n, acc, ISA);                                              \
    }                                                                                         \
    static void sel_finish_##SUF(const struct kv_slot *s, const float *acc, float *out) {     \
        sel_finish_isa(s, acc, out, ISA);                                                     \
    }

SEL_KERNELS(scalar, KVC_ISA_SCALAR)
SEL_KERNELS(avx2, KVC_ISA_AVX2)
SEL_KERNELS(avx512, KVC_ISA_AVX512)

#define SEL_KSET(SUF)                                                                     \
    {sel_encode_##SUF, sel_decode_##SUF, sel_prepare_##SUF, sel_score_##SUF,              \
     sel_accumulate_##SUF, sel_finish_##SUF}

const struct kv_codec kv_codec_hdc_select = {
    .name = "hdc-select",
    .id = KV_CODEC_HDC_SELECT,
    .params = SEL_PARAMS,
    .about = "sparse attention: 1-bit hypervector sketches pick the top-k keys by popcount, "
             "which are scored exactly by an inner codec (q8_0 by default)",
    .cfg_size = sizeof(struct hdcsel_cfg),
    .score_whole = 1,
    .parse = sel_parse,
    .row_bytes = sel_row_bytes,
    .check_dim = sel_check_dim,
    .state_create = sel_state_create,
    .state_free = sel_state_free,
    .qp_floats = sel_qpf,
    .acc_floats = sel_accf,
    .kern = {
        [KVC_ISA_SCALAR] = SEL_KSET(scalar),
        [KVC_ISA_AVX2] = SEL_KSET(avx2),
        [KVC_ISA_AVX512] = SEL_KSET(avx512),
    },
};
