/* synth.c - random-weight models in the shapes of real ones (see synth.h): the preset table,
 * the byte-level BPE vocabulary (GPT-2 byte-to-character map, merges building 2- and 3-byte
 * tokens), and the weights, drawn per tensor from a seeded generator and quantized row block
 * by row block while streaming, so no tensor is ever held whole in memory. */
#include "synth.h"
#include "arch/kernels.h"
#include "gguf_write.h"
#include "quantize.h"
#include "types.h"
#include "util.h"
#include "wtypes/wtype.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Real models' hyper-parameters (their Hugging Face config.json files). */
static const struct kvc_synth_shape presets[] = {
    {.name = "smollm2-360m", .arch = "llama", .general_name = "SmolLM2 360M", .n_layer = 32, .n_embd = 960,
     .n_ff = 2560, .n_head = 15, .n_head_kv = 5, .head_dim = 64, .n_vocab = 49152, .n_ctx = 8192,
     .rope_base = 100000.0f, .rms_eps = 1e-5f, .tied = 1, .pre = "smollm", .spec0 = 0, .n_spec = 17,
     .bos = 1, .eos = 2, .add_bos = 0, .spec_names = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}},
    {.name = "qwen2.5-0.5b", .arch = "qwen2", .general_name = "Qwen2.5 0.5B", .n_layer = 24, .n_embd = 896,
     .n_ff = 4864, .n_head = 14, .n_head_kv = 2, .head_dim = 64, .n_vocab = 151936, .n_ctx = 32768,
     .rope_base = 1000000.0f, .rms_eps = 1e-6f, .tied = 1, .qkv_bias = 1, .pre = "qwen2", .spec0 = 151643,
     .n_spec = 22, .n_pad = 271, .bos = 151643, .eos = 151645, .add_bos = 0,
     .spec_names = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}},
    {.name = "llama-3.2-1b", .arch = "llama", .general_name = "Llama 3.2 1B", .n_layer = 16, .n_embd = 2048,
     .n_ff = 8192, .n_head = 32, .n_head_kv = 8, .head_dim = 64, .n_vocab = 128256, .n_ctx = 131072,
     .rope_base = 500000.0f, .rms_eps = 1e-5f, .tied = 1, .rope_scale = 32, .rope_low = 1, .rope_high = 4,
     .rope_orig_ctx = 8192, .pre = "llama-bpe", .spec0 = 128000, .n_spec = 256, .bos = 128000, .eos = 128001,
     .add_bos = 1, .spec_names = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>"}},
    {.name = "llama-3.2-3b", .arch = "llama", .general_name = "Llama 3.2 3B", .n_layer = 28, .n_embd = 3072,
     .n_ff = 8192, .n_head = 24, .n_head_kv = 8, .head_dim = 128, .n_vocab = 128256, .n_ctx = 131072,
     .rope_base = 500000.0f, .rms_eps = 1e-5f, .tied = 1, .rope_scale = 32, .rope_low = 1, .rope_high = 4,
     .rope_orig_ctx = 8192, .pre = "llama-bpe", .spec0 = 128000, .n_spec = 256, .bos = 128000, .eos = 128001,
     .add_bos = 1, .spec_names = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>"}},
    {.name = "llama-3.1-8b", .arch = "llama", .general_name = "Llama 3.1 8B", .n_layer = 32, .n_embd = 4096,
     .n_ff = 14336, .n_head = 32, .n_head_kv = 8, .head_dim = 128, .n_vocab = 128256, .n_ctx = 131072,
     .rope_base = 500000.0f, .rms_eps = 1e-5f, .tied = 0, .rope_scale = 8, .rope_low = 1, .rope_high = 4,
     .rope_orig_ctx = 8192, .pre = "llama-bpe", .spec0 = 128000, .n_spec = 256, .bos = 128000, .eos = 128001,
     .add_bos = 1, .spec_names = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>"}},
    {.name = "mistral-7b", .arch = "llama", .general_name = "Mistral 7B v0.3", .n_layer = 32, .n_embd = 4096,
     .n_ff = 14336, .n_head = 32, .n_head_kv = 8, .head_dim = 128, .n_vocab = 32768, .n_ctx = 32768,
     .rope_base = 1000000.0f, .rms_eps = 1e-5f, .tied = 0, .pre = "default", .spec0 = 0, .n_spec = 3,
     .bos = 1, .eos = 2, .add_bos = 1, .spec_names = {"<unk>", "<s>", "</s>"}},
};
#define N_PRESETS (int)(sizeof presets / sizeof presets[0])

const char *kvc_synth_preset_list(void) {
    return "smollm2-360m, qwen2.5-0.5b, llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, mistral-7b";
}

struct kvc_synth_params kvc_synth_default_params(void) {
    struct kvc_synth_params p;
    memset(&p, 0, sizeof p);
    p.type = KVC_TYPE_Q4_0;
    p.seed = 1;
    return p;
}

kvc_status kvc_synth_resolve(const struct kvc_synth_params *p, struct kvc_synth_shape *out, kvc_error *err) {
    const struct kvc_synth_shape *s = NULL;
    for (int i = 0; p->preset && i < N_PRESETS; i++)
        if (strcmp(presets[i].name, p->preset) == 0) s = &presets[i];
    if (!s)
        return kvc_fail(err, KVC_ERR_ARG, "synth: unknown preset '%s' (presets: %s)", p->preset ? p->preset : "(none)",
                        kvc_synth_preset_list());
    *out = *s;
#define OVR(field, lo, hi)                                                                               \
    if (p->field) {                                                                                      \
        if (p->field < (lo) || p->field > (hi))                                                          \
            return kvc_fail(err, KVC_ERR_ARG, "synth: " #field " = %d outside %d..%d", p->field, lo, hi); \
        out->field = p->field;                                                                           \
    }
    OVR(n_layer, 1, 1024)
    OVR(n_embd, 32, 1 << 16)
    OVR(n_ff, 32, 1 << 18)
    OVR(n_head, 1, 1024)
    OVR(n_head_kv, 1, 1024)
    OVR(head_dim, 2, 1024)
    OVR(n_vocab, 300, 1 << 20)
    OVR(n_ctx, 16, 1 << 24)
#undef OVR
    if (out->n_head % out->n_head_kv)
        return kvc_fail(err, KVC_ERR_ARG, "synth: heads %d is not a multiple of KV heads %d", out->n_head, out->n_head_kv);
    if (out->head_dim % 2)
        return kvc_fail(err, KVC_ERR_ARG, "synth: head dim %d must be even (RoPE pairs)", out->head_dim);
    if (p->n_vocab && p->n_vocab != s->n_vocab) {
        /* a smaller vocabulary keeps the layout: control tokens (and pads) at the end when they
         * were above the normal ones, else at the start */
        int n_ctl = out->n_spec + out->n_pad;
        if (out->n_vocab < 256 + n_ctl + 1)
            return kvc_fail(err, KVC_ERR_ARG, "synth: vocab %d is too small for 256 byte tokens and %d control tokens",
                            out->n_vocab, n_ctl);
        if (out->spec0 > 0) {
            int shift = out->n_vocab - n_ctl - out->spec0;
            out->spec0 += shift;
            out->bos += shift;
            out->eos += shift;
        }
    }
    const struct kvc_wtype *wt = kvc_wtype_get(p->type);
    if (!wt || !wt->from_float)
        return kvc_fail(err, KVC_ERR_ARG, "synth: weight type %u has no quantizer (%s)", p->type, kvc_quant_scheme_names());
    int rows[3] = {out->n_embd, out->n_ff, out->n_head * out->head_dim};
    for (int i = 0; i < 3; i++) /* K-quant rows fall back to 32-element types, those to F16 */
        if (rows[i] % 32)
            return kvc_fail(err, KVC_ERR_ARG, "synth: row length %d is not a multiple of 32 (the smallest block)",
                            rows[i]);
    return KVC_OK;
}

void kvc_synth_rope_factors(const struct kvc_synth_shape *s, float *out) {
    /* Llama 3.1 scaling: wavelengths below orig/high keep their frequency, those above
     * orig/low are divided by the factor, in between a smooth blend (llama.cpp divides the
     * frequency of pair i by out[i]) */
    const double pi = 3.14159265358979323846;
    double lo_wl = s->rope_orig_ctx / s->rope_low, hi_wl = s->rope_orig_ctx / s->rope_high;
    for (int i = 0; i < s->head_dim / 2; i++) {
        double freq = pow(s->rope_base, -2.0 * i / s->head_dim), wl = 2 * pi / freq;
        double f;
        if (wl < hi_wl) f = 1;
        else if (wl > lo_wl) f = s->rope_scale;
        else {
            double smooth = (s->rope_orig_ctx / wl - s->rope_low) / (s->rope_high - s->rope_low);
            f = 1.0 / ((1 - smooth) / s->rope_scale + smooth);
        }
        out[i] = (float)f;
    }
}

/* ---- tensors ---- */

enum { T_EMBD, T_OUT, T_MAT, T_NORM, T_BIAS, T_ROPE };

struct tdesc {
    char name[64];
    int kind;
    uint64_t ne0, ne1;      /* ne1 = 1 for 1-D */
};

/* The model's tensors in file order; returns the count (fills d when non-NULL). */
static int tensor_list(const struct kvc_synth_shape *s, struct tdesc *d) {
    int n = 0;
    uint64_t E = (uint64_t)s->n_embd, H = (uint64_t)s->n_head * s->head_dim, KV = (uint64_t)s->n_head_kv * s->head_dim,
             F = (uint64_t)s->n_ff, V = (uint64_t)s->n_vocab;
#define ADD(kind_, ne0_, ne1_, ...)                                          \
    do {                                                                     \
        if (d) {                                                             \
            snprintf(d[n].name, sizeof d[n].name, __VA_ARGS__);              \
            d[n].kind = kind_;                                               \
            d[n].ne0 = ne0_;                                                 \
            d[n].ne1 = ne1_;                                                 \
        }                                                                    \
        n++;                                                                 \
    } while (0)
    if (s->rope_scale > 0) ADD(T_ROPE, (uint64_t)s->head_dim / 2, 1, "rope_freqs.weight");
    ADD(T_EMBD, E, V, "token_embd.weight");
    for (int l = 0; l < s->n_layer; l++) {
        ADD(T_NORM, E, 1, "blk.%d.attn_norm.weight", l);
        ADD(T_MAT, E, H, "blk.%d.attn_q.weight", l);
        ADD(T_MAT, E, KV, "blk.%d.attn_k.weight", l);
        ADD(T_MAT, E, KV, "blk.%d.attn_v.weight", l);
        if (s->qkv_bias) {
            ADD(T_BIAS, H, 1, "blk.%d.attn_q.bias", l);
            ADD(T_BIAS, KV, 1, "blk.%d.attn_k.bias", l);
            ADD(T_BIAS, KV, 1, "blk.%d.attn_v.bias", l);
        }
        ADD(T_MAT, H, E, "blk.%d.attn_output.weight", l);
        ADD(T_NORM, E, 1, "blk.%d.ffn_norm.weight", l);
        ADD(T_MAT, E, F, "blk.%d.ffn_gate.weight", l);
        ADD(T_MAT, E, F, "blk.%d.ffn_up.weight", l);
        ADD(T_MAT, F, E, "blk.%d.ffn_down.weight", l);
    }
    ADD(T_NORM, E, 1, "output_norm.weight");
    if (!s->tied) ADD(T_OUT, E, V, "output.weight");
#undef ADD
    return n;
}

static uint32_t tensor_type(const struct tdesc *t, const struct kvc_synth_shape *s, const struct kvc_synth_params *p) {
    struct kvc_quant_scheme q = {p->type, p->mix};
    return kvc_quant_pick(&q, t->name, t->ne0, t->ne1 > 1 ? 2 : 1, s->n_layer, !s->tied);
}

static uint64_t tensor_bytes(uint64_t ne0, uint64_t ne1, uint32_t type) {
    const struct kvc_type_size *ti = kvc_type_info(type);
    return ne0 / (uint64_t)ti->blck * (uint64_t)ti->bytes * ne1;
}

uint64_t kvc_synth_data_bytes(const struct kvc_synth_shape *s, const struct kvc_synth_params *p) {
    int n = tensor_list(s, NULL);
    struct tdesc *d = malloc(sizeof *d * (size_t)n);
    if (!d) return 0;
    tensor_list(s, d);
    uint64_t b = 0;
    for (int i = 0; i < n; i++) b += (tensor_bytes(d[i].ne0, d[i].ne1, tensor_type(&d[i], s, p)) + 31) / 32 * 32;
    free(d);
    return b;
}

/* Approximately normal draws: the sum of four 16-bit uniforms of one 64-bit draw,
 * standardised (Irwin-Hall, n = 4: tails end at +-3.46 sd). */
static inline float draw_normal(uint64_t *s) {
    uint64_t z = kvc_splitmix64(s);
    double u = (double)(z & 0xffff) + (double)((z >> 16) & 0xffff) + (double)((z >> 32) & 0xffff) + (double)(z >> 48);
    return (float)((u - 2 * 65535.0) * (1.0 / 37837.2)); /* sd of the sum: 65536 * sqrt(4/12) */
}

/* ---- vocabulary ---- */

struct vocab {
    char *buf;              /* all token and merge texts */
    size_t n, cap;
    size_t *tok_off, *merge_off;
    uint32_t *tok_len, *merge_len;
    int32_t *type;
    uint64_t n_merges;
};

static int vb_add(struct vocab *v, const char *p, size_t n, size_t *off) {
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 1 << 20;
        while (cap < v->n + n) cap *= 2;
        char *b = realloc(v->buf, cap);
        if (!b) return -1;
        v->buf = b;
        v->cap = cap;
    }
    memcpy(v->buf + v->n, p, n);
    *off = v->n;
    v->n += n;
    return 0;
}

/* GPT-2's byte-to-character map: printable bytes map to themselves, the others to U+0100 on,
 * in byte order; UTF-8 of the character into out, returns its length. */
static int byte_char(int b, char *out) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) cp = b;
    else {
        int k = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) k++;
        cp = 256 + k;
    }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

static void vocab_free(struct vocab *v) {
    free(v->buf);
    free(v->tok_off);
    free(v->merge_off);
    free(v->tok_len);
    free(v->merge_len);
    free(v->type);
}

/* Normal tokens: the 256 byte characters (printable ASCII first), then every pair of them
 * (merge "a b"), then pair + byte triples (merge "ab c"), in that order. */
static kvc_status vocab_build(const struct kvc_synth_shape *s, struct vocab *v, kvc_error *err) {
    memset(v, 0, sizeof *v);
    int V = s->n_vocab;
    v->tok_off = malloc(sizeof(size_t) * (size_t)V);
    v->tok_len = malloc(sizeof(uint32_t) * (size_t)V);
    v->type = malloc(sizeof(int32_t) * (size_t)V);
    v->merge_off = malloc(sizeof(size_t) * (size_t)V);
    v->merge_len = malloc(sizeof(uint32_t) * (size_t)V);
    if (!v->tok_off || !v->tok_len || !v->type || !v->merge_off || !v->merge_len) goto oom;
    char bc[256][2];
    int bl[256], order[256], k = 0;
    for (int b = 32; b < 127; b++) order[k++] = b;
    for (int b = 0; b < 256; b++)
        if (b < 32 || b >= 127) order[k++] = b;
    for (int b = 0; b < 256; b++) bl[b] = byte_char(b, bc[b]);
    int n_normal = 0;
    for (int id = 0; id < V; id++) {
        char t[64];
        size_t tl = 0;
        if (id >= s->spec0 && id < s->spec0 + s->n_spec) {
            int j = id - s->spec0;
            if (j < 3 && s->spec_names[j]) tl = (size_t)snprintf(t, sizeof t, "%s", s->spec_names[j]);
            else tl = (size_t)snprintf(t, sizeof t, "<|reserved_special_token_%d|>", j);
            v->type[id] = 3; /* CONTROL */
        } else if (id >= s->spec0 + s->n_spec && id < s->spec0 + s->n_spec + s->n_pad) {
            tl = (size_t)snprintf(t, sizeof t, "[PAD%d]", id);
            v->type[id] = 5; /* UNUSED */
        } else {
            int j = n_normal++;
            v->type[id] = 1; /* NORMAL */
            char m[64];
            size_t ml = 0;
            if (j < 256) {
                memcpy(t, bc[order[j]], (size_t)bl[order[j]]);
                tl = (size_t)bl[order[j]];
            } else if (j < 256 + 65536) {
                int a = order[(j - 256) / 256], b = order[(j - 256) % 256];
                memcpy(m, bc[a], (size_t)bl[a]); ml = (size_t)bl[a];
                m[ml++] = ' ';
                memcpy(m + ml, bc[b], (size_t)bl[b]); ml += (size_t)bl[b];
                memcpy(t, bc[a], (size_t)bl[a]); tl = (size_t)bl[a];
                memcpy(t + tl, bc[b], (size_t)bl[b]); tl += (size_t)bl[b];
            } else {
                int q = j - 256 - 65536, a = order[q / 256 / 256], b = order[(q / 256) % 256], c = order[q % 256];
                if (q / 256 >= 65536) return kvc_fail(err, KVC_ERR_ARG, "synth: vocab %d too large (limit %d normal tokens)", V, 256 + 65536 * 2);
                memcpy(t, bc[a], (size_t)bl[a]); tl = (size_t)bl[a];
                memcpy(t + tl, bc[b], (size_t)bl[b]); tl += (size_t)bl[b];
                memcpy(m, t, tl); ml = tl;
                m[ml++] = ' ';
                memcpy(m + ml, bc[c], (size_t)bl[c]); ml += (size_t)bl[c];
                memcpy(t + tl, bc[c], (size_t)bl[c]); tl += (size_t)bl[c];
            }
            if (ml) {
                if (vb_add(v, m, ml, &v->merge_off[v->n_merges])) goto oom;
                v->merge_len[v->n_merges++] = (uint32_t)ml;
            }
        }
        if (vb_add(v, t, tl, &v->tok_off[id])) goto oom;
        v->tok_len[id] = (uint32_t)tl;
    }
    if (n_normal < 256) return kvc_fail(err, KVC_ERR_ARG, "synth: vocab %d leaves %d normal tokens (need 256 bytes)", V, n_normal);
    return KVC_OK;
oom:
    return kvc_fail(err, KVC_ERR_NOMEM, "synth: out of memory for a vocabulary of %d tokens", V);
}

static kvc_status write_vocab(struct gguf_writer *w, const struct kvc_synth_shape *s, kvc_error *err) {
    struct vocab v;
    kvc_status st = vocab_build(s, &v, err);
    if (st) { vocab_free(&v); return st; }
    const char **tp = malloc(sizeof(char *) * (size_t)s->n_vocab);
    const char **mp = malloc(sizeof(char *) * (size_t)(v.n_merges + 1));
    if (!tp || !mp) st = kvc_fail(err, KVC_ERR_NOMEM, "synth: out of memory");
    for (int i = 0; !st && i < s->n_vocab; i++) tp[i] = v.buf + v.tok_off[i];
    for (uint64_t i = 0; !st && i < v.n_merges; i++) mp[i] = v.buf + v.merge_off[i];
    if (!st &&
        (gguf_writer_kv_str(w, "tokenizer.ggml.model", "gpt2") || gguf_writer_kv_str(w, "tokenizer.ggml.pre", s->pre) ||
         gguf_writer_kv_arr_str(w, "tokenizer.ggml.tokens", tp, v.tok_len, (uint64_t)s->n_vocab) ||
         gguf_writer_kv_arr_i32(w, "tokenizer.ggml.token_type", v.type, (uint64_t)s->n_vocab) ||
         gguf_writer_kv_arr_str(w, "tokenizer.ggml.merges", mp, v.merge_len, v.n_merges) ||
         gguf_writer_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)s->bos) ||
         gguf_writer_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)s->eos) ||
         gguf_writer_kv_bool(w, "tokenizer.ggml.add_bos_token", s->add_bos)))
        st = gguf_writer_error(w)->status, *err = *gguf_writer_error(w);
    free(tp);
    free(mp);
    vocab_free(&v);
    return st;
}

static kvc_status write_meta(struct gguf_writer *w, const struct kvc_synth_shape *s, const struct kvc_synth_params *p,
                             kvc_error *err) {
    struct kvc_quant_scheme q = {p->type, p->mix};
    char k[96];
    const char *a = s->arch;
#define KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, a), k)
    if (gguf_writer_kv_str(w, "general.architecture", a) || gguf_writer_kv_str(w, "general.name", s->general_name) ||
        gguf_writer_kv_u32(w, "general.file_type", kvc_quant_ftype(&q)) ||
        gguf_writer_kv_u32(w, "general.quantization_version", 2) ||
        gguf_writer_kv_u32(w, KEY("block_count"), (uint32_t)s->n_layer) ||
        gguf_writer_kv_u32(w, KEY("context_length"), (uint32_t)s->n_ctx) ||
        gguf_writer_kv_u32(w, KEY("embedding_length"), (uint32_t)s->n_embd) ||
        gguf_writer_kv_u32(w, KEY("feed_forward_length"), (uint32_t)s->n_ff) ||
        gguf_writer_kv_u32(w, KEY("attention.head_count"), (uint32_t)s->n_head) ||
        gguf_writer_kv_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->n_head_kv) ||
        gguf_writer_kv_u32(w, KEY("attention.key_length"), (uint32_t)s->head_dim) ||
        gguf_writer_kv_u32(w, KEY("attention.value_length"), (uint32_t)s->head_dim) ||
        gguf_writer_kv_f32(w, KEY("attention.layer_norm_rms_epsilon"), s->rms_eps) ||
        gguf_writer_kv_f32(w, KEY("rope.freq_base"), s->rope_base) ||
        gguf_writer_kv_u32(w, KEY("rope.dimension_count"), (uint32_t)s->head_dim) ||
        gguf_writer_kv_u32(w, KEY("vocab_size"), (uint32_t)s->n_vocab)) {
        *err = *gguf_writer_error(w);
        return err->status;
    }
#undef KEY
    return write_vocab(w, s, err);
}

/* Stream one tensor: rows drawn from the generator, encoded, written in chunks. */
static kvc_status write_tensor(struct gguf_writer *w, const struct kvc_synth_shape *s, const struct tdesc *t,
                               uint32_t type, uint64_t seed, float *rows, uint8_t *enc, uint64_t chunk_rows,
                               const float *rope, kvc_error *err) {
    uint64_t rs = seed;
    float sd = 0, mean = 0;
    switch (t->kind) {
    case T_EMBD: sd = s->tied ? 3.0f / sqrtf((float)s->n_embd) : 1.0f; break;
    case T_OUT: sd = 1.0f / sqrtf((float)t->ne0); break;
    case T_MAT: sd = 1.0f / sqrtf((float)t->ne0); break;
    case T_NORM: mean = 1; sd = 0.1f; break;
    case T_BIAS: sd = 0.1f; break;
    case T_ROPE: break;
    }
    const struct kvc_type_size *ti = kvc_type_info(type);
    size_t row_bytes = (size_t)(t->ne0 / (uint64_t)ti->blck) * (size_t)ti->bytes;
    for (uint64_t r0 = 0; r0 < t->ne1; r0 += chunk_rows) {
        uint64_t nr = t->ne1 - r0 < chunk_rows ? t->ne1 - r0 : chunk_rows;
        for (uint64_t r = 0; r < nr; r++) {
            float *x = rows + r * t->ne0;
            if (t->kind == T_ROPE) memcpy(x, rope, t->ne0 * sizeof(float));
            else
                for (uint64_t i = 0; i < t->ne0; i++) x[i] = mean + sd * draw_normal(&rs);
            kvc_encode_row(type, x, (int64_t)t->ne0, enc + r * row_bytes);
        }
        if (gguf_writer_write_data(w, enc, row_bytes * nr)) {
            *err = *gguf_writer_error(w);
            return err->status;
        }
    }
    return KVC_OK;
}

kvc_status kvc_synth_write(const char *path, const struct kvc_synth_params *p, kvc_error *err) {
    struct kvc_synth_shape s;
    kvc_status st = kvc_synth_resolve(p, &s, err);
    if (st) return st;
    int n = tensor_list(&s, NULL);
    struct tdesc *d = malloc(sizeof *d * (size_t)n);
    float *rope = calloc((size_t)s.head_dim / 2 + 1, sizeof(float));
    uint64_t max_ne0 = 0;
    if (!d || !rope) { free(d); free(rope); return kvc_fail(err, KVC_ERR_NOMEM, "synth: out of memory"); }
    tensor_list(&s, d);
    if (s.rope_scale > 0) kvc_synth_rope_factors(&s, rope);
    for (int i = 0; i < n; i++) max_ne0 = d[i].ne0 > max_ne0 ? d[i].ne0 : max_ne0;
    uint64_t chunk_rows = ((uint64_t)1 << 22) / max_ne0 + 1; /* ~16 MiB of floats per chunk */
    float *rows = malloc(sizeof(float) * (size_t)(chunk_rows * max_ne0));
    uint8_t *enc = malloc(sizeof(float) * (size_t)(chunk_rows * max_ne0));
    struct gguf_writer *w = NULL;
    if (!rows || !enc) st = kvc_fail(err, KVC_ERR_NOMEM, "synth: out of memory");
    if (!st) st = gguf_writer_create(path, &w, err);
    if (!st) st = write_meta(w, &s, p, err);
    uint64_t total = 0, done = 0;
    for (int i = 0; !st && i < n; i++) {
        uint64_t ne[2] = {d[i].ne0, d[i].ne1};
        uint32_t ty = tensor_type(&d[i], &s, p);
        total += tensor_bytes(d[i].ne0, d[i].ne1, ty);
        if (gguf_writer_add_tensor(w, d[i].name, d[i].ne1 > 1 ? 2 : 1, ne, ty)) *err = *gguf_writer_error(w), st = err->status;
    }
    if (!st && gguf_writer_begin_data(w)) *err = *gguf_writer_error(w), st = err->status;
    for (int i = 0; !st && i < n; i++) {
        uint64_t ts = p->seed * 0x100000001b3ull + (uint64_t)i * 0x9e3779b97f4a7c15ull;
        uint32_t ty = tensor_type(&d[i], &s, p);
        st = write_tensor(w, &s, &d[i], ty, ts, rows, enc, chunk_rows, rope, err);
        done += tensor_bytes(d[i].ne0, d[i].ne1, ty);
        if (!st && p->progress) p->progress(p->ud, d[i].name, done, total);
    }
    if (!st && gguf_writer_finish(w)) *err = *gguf_writer_error(w), st = err->status;
    gguf_writer_free(w);
    free(rows);
    free(enc);
    free(rope);
    free(d);
    return st;
}
