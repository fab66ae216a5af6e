/* quantize.c - weight-type schemes and re-quantization (see quantize.h): the scheme table,
 * llama.cpp's per-tensor rules (kvc_quant_pick), and the file conversion, each tensor decoded
 * one chunk of rows at a time to f32 and encoded in its new type through the streaming writer. */
#include "quantize.h"
#include "arch/kernels.h"
#include "gguf.h"
#include "gguf_write.h"
#include "types.h"
#include "util.h"
#include "wtypes/wtype.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvc_encode_row(uint32_t type, const float *x, int64_t n, void *out) {
    const struct kvc_wtype *t = kvc_wtype_get(type);
    if (!t || !t->from_float) return -1;
    if (type == KVC_TYPE_Q8_0) kvc_quantize_row_q8_0(x, (block_q8_0 *)out, n, kvc_isa_best()); /* same bits, faster */
    else t->from_float(x, out, n);
    return 0;
}

static const struct {
    const char *name;
    struct kvc_quant_scheme s;
    uint32_t ftype; /* LLAMA_FTYPE_* */
} schemes[] = {
    {"f32", {KVC_TYPE_F32, 0}, 0},         {"f16", {KVC_TYPE_F16, 0}, 1},        {"bf16", {KVC_TYPE_BF16, 0}, 32},
    {"q8_0", {KVC_TYPE_Q8_0, 0}, 7},       {"q4_0", {KVC_TYPE_Q4_0, 0}, 2},      {"q4_1", {KVC_TYPE_Q4_1, 0}, 3},
    {"q5_0", {KVC_TYPE_Q5_0, 0}, 8},       {"q5_1", {KVC_TYPE_Q5_1, 0}, 9},      {"q2_k", {KVC_TYPE_Q2_K, 0}, 10},
    {"q3_k", {KVC_TYPE_Q3_K, 0}, 11},      {"q4_k", {KVC_TYPE_Q4_K, 0}, 14},     {"q5_k", {KVC_TYPE_Q5_K, 0}, 16},
    {"q6_k", {KVC_TYPE_Q6_K, 0}, 18},      {"iq4_nl", {KVC_TYPE_IQ4_NL, 0}, 25}, {"iq4_xs", {KVC_TYPE_IQ4_XS, 0}, 30},
    {"q3_k_m", {KVC_TYPE_Q3_K, KVC_MIX_Q3_K_M}, 12}, {"q4_k_m", {KVC_TYPE_Q4_K, KVC_MIX_Q4_K_M}, 15},
    {"q5_k_m", {KVC_TYPE_Q5_K, KVC_MIX_Q5_K_M}, 17},
};
#define N_SCHEMES (int)(sizeof schemes / sizeof schemes[0])

int kvc_quant_scheme_parse(const char *name, struct kvc_quant_scheme *out) {
    char low[16];
    size_t n = strlen(name);
    if (n >= sizeof low) return -1;
    for (size_t i = 0; i <= n; i++) low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    for (int i = 0; i < N_SCHEMES; i++)
        if (!strcmp(low, schemes[i].name)) {
            *out = schemes[i].s;
            return 0;
        }
    return -1;
}

const char *kvc_quant_scheme_names(void) {
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, "
           "q3_k_m, q4_k_m, q5_k_m";
}

uint32_t kvc_quant_ftype(const struct kvc_quant_scheme *s) {
    for (int i = 0; i < N_SCHEMES; i++)
        if (schemes[i].s.type == s->type && schemes[i].s.mix == s->mix) return schemes[i].ftype;
    return 0;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third between */
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

uint32_t kvc_quant_pick(const struct kvc_quant_scheme *s, const char *tensor, uint64_t ne0, int n_dims,
                        int n_layer, int has_output) {
    if (n_dims < 2) return KVC_TYPE_F32;
    uint32_t t = s->type;
    int layer = -1;
    if (!strncmp(tensor, "blk.", 4)) layer = atoi(tensor + 4);
    if (s->mix) {
        int q3 = s->mix == KVC_MIX_Q3_K_M;
        if (!strcmp(tensor, "output.weight") || (!has_output && !strcmp(tensor, "token_embd.weight"))) t = KVC_TYPE_Q6_K;
        else if (has_suffix(tensor, ".attn_v.weight") && layer >= 0)
            t = q3 ? (layer < 2 ? KVC_TYPE_Q5_K : KVC_TYPE_Q4_K) : more_bits(layer, n_layer) ? KVC_TYPE_Q6_K : t;
        else if (has_suffix(tensor, ".ffn_down.weight") && layer >= 0)
            /* Q3_K_M: llama.cpp keeps Q3_K only for Falcon's other layers: Q4_K here */
            t = q3 ? (layer < n_layer / 16 ? KVC_TYPE_Q5_K : KVC_TYPE_Q4_K) : more_bits(layer, n_layer) ? KVC_TYPE_Q6_K : t;
        else if (q3 && has_suffix(tensor, ".attn_output.weight")) t = KVC_TYPE_Q4_K;
    }
    const struct kvc_type_size *ti = kvc_type_info(t);
    if (ne0 % (uint64_t)ti->blck == 0) return t;
    switch (t) {
    case KVC_TYPE_Q2_K: case KVC_TYPE_Q3_K: case KVC_TYPE_IQ4_XS: t = KVC_TYPE_IQ4_NL; break;
    case KVC_TYPE_Q4_K: t = KVC_TYPE_Q5_0; break;
    case KVC_TYPE_Q5_K: t = KVC_TYPE_Q5_1; break;
    case KVC_TYPE_Q6_K: t = KVC_TYPE_Q8_0; break;
    default: return KVC_TYPE_F16;
    }
    return ne0 % 32 ? KVC_TYPE_F16 : t;
}

static int decodable(uint32_t t) {
    const struct kvc_wtype *w = kvc_wtype_get(t);
    return w && w->to_float;
}

kvc_status kvc_quantize_file(const char *in, const char *out, const struct kvc_quantize_params *p,
                             kvc_error *err) {
    const struct kvc_wtype *wt = kvc_wtype_get(p->scheme.type);
    if (!wt || !wt->from_float)
        return kvc_fail(err, KVC_ERR_ARG, "quantize: target type %u has no quantizer (%s)", p->scheme.type,
                        kvc_quant_scheme_names());
    struct gguf_file *f = NULL;
    kvc_status st = gguf_open(in, &f, err);
    if (st) return st;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        if (!decodable(t->type) || t->n_dims > 2) {
            const struct kvc_type_size *ti = kvc_type_info(t->type);
            st = kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: tensor '%.*s' of type %s with %u dims cannot be re-quantized "
                          "(sources: %s, 1-2 dims)", in, (int)(t->name.n < 64 ? t->name.n : 64),
                          t->name.p, ti ? ti->name : "?", t->n_dims, kvc_wtype_names());
            gguf_close(f);
            return st;
        }
    }
    struct gguf_writer *w = NULL;
    if ((st = gguf_writer_create(out, &w, err))) { gguf_close(f); return st; }
    for (uint64_t i = 0; !st && i < f->n_kv; i++) {
        const struct gguf_kv *kv = &f->kv[i];
        if (gguf_str_eq(kv->key, "general.file_type") || gguf_str_eq(kv->key, "general.alignment")) continue;
        if (gguf_writer_kv_copy(w, f, kv)) st = (*err = *gguf_writer_error(w)).status;
    }
    if (!st && gguf_writer_kv_u32(w, "general.file_type", kvc_quant_ftype(&p->scheme))) st = (*err = *gguf_writer_error(w)).status;
    int n_layer = 0, has_output = gguf_find_tensor(f, "output.weight") != NULL;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        if (t->name.n > 4 && !memcmp(t->name.p, "blk.", 4)) {
            int l = 0;
            for (uint64_t j = 4; j < t->name.n && t->name.p[j] >= '0' && t->name.p[j] <= '9' && l < 100000; j++)
                l = l * 10 + (t->name.p[j] - '0');
            if (l + 1 > n_layer) n_layer = l + 1;
        }
    }
    uint32_t *to_type = malloc(sizeof(uint32_t) * (size_t)(f->n_tensors + 1));
    if (!to_type) st = kvc_fail(err, KVC_ERR_NOMEM, "quantize: out of memory");
    uint64_t max_ne0 = 1;
    for (uint64_t i = 0; !st && i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.n < 127 ? t->name.n : 127), t->name.p);
        to_type[i] = kvc_quant_pick(&p->scheme, name, t->ne[0], (int)t->n_dims, n_layer, has_output);
        if (gguf_writer_add_tensor(w, name, (int)t->n_dims, t->ne, to_type[i]))
            st = (*err = *gguf_writer_error(w)).status;
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
    }
    if (!st && gguf_writer_begin_data(w)) st = (*err = *gguf_writer_error(w)).status;
    uint64_t chunk = ((uint64_t)1 << 20) / max_ne0 + 1; /* rows per chunk: ~4 MiB of floats */
    float *x = malloc(sizeof(float) * (size_t)(chunk * max_ne0));
    uint8_t *enc = malloc(sizeof(float) * (size_t)(chunk * max_ne0));
    if (!st && (!x || !enc)) st = kvc_fail(err, KVC_ERR_NOMEM, "quantize: out of memory");
    for (uint64_t i = 0; !st && i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        const struct kvc_type_size *si = kvc_type_info(t->type);
        uint32_t to = to_type[i];
        const struct kvc_type_size *ti = kvc_type_info(to);
        struct kvc_weight src = {.type = t->type, .n_in = (int64_t)t->ne[0], .n_out = (int64_t)t->ne[1],
                                 .row_bytes = (size_t)(t->ne[0] / (uint64_t)si->blck) * (size_t)si->bytes, .data = t->data};
        size_t ob = (size_t)(t->ne[0] / (uint64_t)ti->blck) * (size_t)ti->bytes;
        for (uint64_t r0 = 0; !st && r0 < t->ne[1]; r0 += chunk) {
            uint64_t nr = t->ne[1] - r0 < chunk ? t->ne[1] - r0 : chunk;
            for (uint64_t r = 0; r < nr; r++) {
                kvc_weight_row_to_f32(&src, (int64_t)(r0 + r), x);
                kvc_encode_row(to, x, (int64_t)t->ne[0], enc + r * ob);
            }
            if (gguf_writer_write_data(w, enc, ob * nr)) st = (*err = *gguf_writer_error(w)).status;
        }
        if (!st && p->progress) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(t->name.n < 127 ? t->name.n : 127), t->name.p);
            p->progress(p->ud, name, to, (int)i + 1, (int)f->n_tensors);
        }
    }
    if (!st && gguf_writer_finish(w)) st = (*err = *gguf_writer_error(w)).status;
    gguf_writer_free(w);
    free(to_type);
    free(x);
    free(enc);
    gguf_close(f);
    return st;
}
