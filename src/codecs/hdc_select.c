/* hdc_select.c - the hdc-select KV codec: sparse attention through hypervector sketches.
 * Each key row holds a 1-bit sketch sign(H S P k) of D = expand*d bits with the f16 norm
 * ||k|| (the hdc bits=1 row) and the same row in a finer inner codec (inner=q8_0|q4_0|f16|...,
 * called through the codec table). score ranks all n rows by the popcount similarity
 * ||k|| cos(pi hamming / D) (or sim=asym: the unbiased 1-bit estimate, ||k|| <Hq, sign>),
 * keeps the top k (O(n) radix select), scores those exactly with the inner codec and gives
 * -INFINITY to the others, which the cache's softmax turns into weight 0. accumulate calls the
 * inner codec for the rows of non-zero weight only. As a value codec the sketch is unused
 * (not computed; its bytes are still allocated since row_bytes cannot depend on K/V). */
#include "hdc_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { SEL_SIM_HAM = 0, SEL_SIM_ASYM = 1 };

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
    size_t sk_bytes, stride;
};

#define SEL_PARAMS                                                                        \
    "k=N top keys scored exactly (default 256), inner=q8_0|q4_0|f16|... codec of the rows " \
    "(default q8_0), expand=1|2|4|8|16|32|64 sketch bits D = expand*d (default 2), "        \
    "sim=ham|asym sketch similarity (default ham: popcount), seed=N (default 0)"

static kvc_status sel_param(void *cfgp, const char *key, const char *val, kvc_error *err) {
    struct hdcsel_cfg *c = cfgp;
    char *end;
    if (strcmp(key, "k") == 0) {
        long v = strtol(val, &end, 10);
        if (end == val || *end || v < 1 || v > 1000000000L)
            return kvc_fail(err, KVC_ERR_ARG, "KV codec 'hdc-select': k must be an integer >= 1, got '%s'", val);
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
    c->sim = SEL_SIM_HAM;
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
    if (!st) st = kv_slot_init(&s->inner, &s->spec, info, kvc_isa_best(), err);
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
    *state = s;
    return KVC_OK;
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

static inline void sel_score_isa(const struct kv_slot *sl, const float *qp, const void *keys,
                                 int pos0, int n, float *out, int isa) {
    const struct hdcsel_state *s = sl->state;
    const uint8_t *rows = keys;
    const struct kv_kernels *ik = s->ik[isa];
    if (n <= s->k) {
        for (int r = 0; r < n; r++)
            ik->score(&s->inner, qp, rows + (size_t)r * s->stride + s->sk_bytes, pos0 + r, 1, out + r);
        return;
    }
    /* sketch similarities of all rows into out, then the top k by radix select */
    const struct hdc_ops *o = &hdc_ops[isa];
    (s->sim == SEL_SIM_ASYM ? o->score : o->ham)(&s->sk, qp + s->qoff, rows, s->stride, n, out);
    int ties;
    uint32_t key = hdc_topk_key(out, n, s->k, &ties);
    for (int r = 0; r < n; r++) {
        uint32_t kr = hdc_fkey(out[r]);
        if (kr > key || (kr == key && ties-- > 0))
            ik->score(&s->inner, qp, rows + (size_t)r * s->stride + s->sk_bytes, pos0 + r, 1, out + r);
        else
            out[r] = -INFINITY;
    }
}

static inline void sel_acc_isa(const struct kv_slot *sl, const float *w, const void *vals,
                               int pos0, int n, float *acc, int isa) {
    const struct hdcsel_state *s = sl->state;
    const uint8_t *rows = vals;
    for (int r = 0; r < n; r++)
        if (w[r] != 0.0f)
            s->ik[isa]->accumulate(&s->inner, w + r, rows + (size_t)r * s->stride + s->sk_bytes,
                                   pos0 + r, 1, acc);
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
