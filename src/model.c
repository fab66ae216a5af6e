/* model.c - load a Llama-architecture GGUF: read and check hyper-parameters, bind every
 * weight tensor (shape and type checked, data left in the mapping), load the tokenizer. */
#include "model.h"
#include "types.h"
#include "wtypes/wtype.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kvc_status bind_weight(struct kvc_model *m, const char *name, int64_t n_in, int64_t n_out,
                              struct kvc_weight *w, int optional, int *found, kvc_error *err) {
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (found) *found = t != NULL;
    if (!t) {
        if (optional) return KVC_OK;
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s' is missing", m->path, name);
    }
    const struct kvc_type_size *ti = kvc_type_info(t->type);
    if (!ti || !kvc_wtype_get(t->type))
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s (id %u); supported: %s",
                        m->path, name, ti ? ti->name : "unknown", t->type, kvc_wtype_names());
    if (t->n_dims > 2 || (int64_t)t->ne[0] != n_in || (int64_t)t->ne[1] != n_out)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s' has shape [%llu, %llu], expected [%lld, %lld]",
                        m->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                        (long long)n_in, (long long)n_out);
    if (ti->blck > 1 && n_in % ti->blck)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s': rows of %lld are not whole %s blocks",
                        m->path, name, (long long)n_in, ti->name);
    /* blocks hold f16 fields (f32 rows: floats): the kernels read them as such */
    const unsigned align = t->type == KVC_TYPE_F32 ? 4 : 2;
    if ((uintptr_t)t->data % align)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s' data is not %u-byte aligned (general.alignment)",
                        m->path, name, align);
    w->type = t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->row_bytes = (size_t)(n_in / ti->blck) * (size_t)ti->bytes;
    w->data = t->data;
    return KVC_OK;
}

/* An f32 vector tensor of n elements (norms, biases, rope_freqs); optional ones leave *out
 * NULL when absent. */
static kvc_status bind_vec(struct kvc_model *m, const char *name, int64_t n, const float **out,
                           int optional, kvc_error *err) {
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    *out = NULL;
    if (!t && optional) return KVC_OK;
    if (!t) return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s' is missing", m->path, name);
    if (t->type != KVC_TYPE_F32 || t->n_dims != 1 || (int64_t)t->ne[0] != n)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s' must be f32 of shape [%lld]",
                        m->path, name, (long long)n);
    if ((uintptr_t)t->data % 4)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor '%s' data is not 4-byte aligned", m->path, name);
    *out = t->data;
    return KVC_OK;
}

static kvc_status bind_norm(struct kvc_model *m, const char *name, int64_t n, const float **out,
                            kvc_error *err) {
    return bind_vec(m, name, n, out, 0, err);
}

/* Metadata key "<arch>.<suffix>" of the model's architecture. */
static const char *akey(const struct kvc_model *m, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", m->info.arch, suffix);
    return buf;
}

static kvc_status get_dim(struct kvc_model *m, const char *suffix, int *out, int lo, int hi,
                          kvc_error *err) {
    char key[96];
    uint32_t v;
    kvc_status st = gguf_get_u32(m->gguf, akey(m, suffix, key, sizeof key), &v, err);
    if (st) return st;
    if ((int64_t)v < lo || (int64_t)v > hi)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' = %u outside %d..%d", m->path, key, v, lo, hi);
    *out = (int)v;
    return KVC_OK;
}

static int has_key(const struct kvc_model *m, const char *suffix) {
    char key[96];
    return gguf_find(m->gguf, akey(m, suffix, key, sizeof key)) != NULL;
}

/* Architectures this loader runs, and their RoPE layout (llama.cpp's NORM / NEOX). */
static const struct {
    const char *name;
    int rope_neox;
} kvc_archs[] = {
    {"llama", 0},
    {"qwen2", 1},
};
#define KVC_ARCH_LIST "llama, qwen2"

static kvc_status load_hparams(struct kvc_model *m, kvc_error *err) {
    struct kvc_model_info *in = &m->info;
    struct gguf_str s;
    char key[96];
    kvc_status st = gguf_get_str(m->gguf, "general.architecture", &s, err);
    if (st) return st;
    int ai = -1;
    for (size_t i = 0; i < sizeof kvc_archs / sizeof kvc_archs[0]; i++)
        if (gguf_str_eq(s, kvc_archs[i].name)) ai = (int)i;
    if (ai < 0)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: general.architecture = '%.*s' is not supported; supported: "
                        KVC_ARCH_LIST, m->path, (int)(s.n < 32 ? s.n : 32), s.p);
    snprintf(in->arch, sizeof in->arch, "%s", kvc_archs[ai].name);
    in->rope_neox = kvc_archs[ai].rope_neox;
    if (gguf_get_str(m->gguf, "general.name", &s, NULL) == KVC_OK)
        snprintf(in->name, sizeof in->name, "%.*s", (int)(s.n < 63 ? s.n : 63), s.p);
    if ((st = get_dim(m, "block_count", &in->n_layer, 1, 4096, err))) return st;
    if ((st = get_dim(m, "embedding_length", &in->n_embd, 1, 1 << 17, err))) return st;
    if ((st = get_dim(m, "feed_forward_length", &in->n_ff, 1, 1 << 20, err))) return st;
    if ((st = get_dim(m, "attention.head_count", &in->n_head, 1, 4096, err))) return st;
    in->n_head_kv = in->n_head;
    if (has_key(m, "attention.head_count_kv") &&
        (st = get_dim(m, "attention.head_count_kv", &in->n_head_kv, 1, in->n_head, err)))
        return st;
    if (in->n_head % in->n_head_kv)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d",
                        m->path, in->n_head, in->n_head_kv);
    /* head dimension: attention.key_length where present (n_head * head_dim may differ from
     * n_embd, as in Llama 3 shapes), else n_embd / n_head */
    int kl = 0, vl = 0;
    if (has_key(m, "attention.key_length") && (st = get_dim(m, "attention.key_length", &kl, 2, 1024, err)))
        return st;
    if (has_key(m, "attention.value_length") && (st = get_dim(m, "attention.value_length", &vl, 2, 1024, err)))
        return st;
    if (!kl) {
        if (in->n_embd % in->n_head)
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: embedding_length %d is not a multiple of head_count %d "
                            "and %s is absent", m->path, in->n_embd, in->n_head, akey(m, "attention.key_length", key, sizeof key));
        kl = in->n_embd / in->n_head;
    }
    if (vl && vl != kl)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: %s.attention.value_length %d differs from key_length %d "
                        "(the KV cache needs one head dimension)", m->path, in->arch, vl, kl);
    in->head_dim = kl;
    if (in->head_dim % 2 || in->head_dim > 1024)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: head dim %d must be even (RoPE pairs) and at most 1024",
                        m->path, in->head_dim);
    if (has_key(m, "rope.dimension_count")) {
        int rd;
        if ((st = get_dim(m, "rope.dimension_count", &rd, 1, 1 << 16, err))) return st;
        if (rd != in->head_dim)
            return kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: %s.rope.dimension_count %d: partial RoPE is not supported (head dim %d)",
                            m->path, in->arch, rd, in->head_dim);
    }
    if ((st = get_dim(m, "context_length", &in->n_ctx_train, 1, 1 << 24, err))) return st;
    if ((st = gguf_get_f32(m->gguf, akey(m, "attention.layer_norm_rms_epsilon", key, sizeof key), &in->rms_eps, err)))
        return st;
    if (!(in->rms_eps > 0 && in->rms_eps < 1))
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: %s = %g outside (0, 1)", m->path, key, in->rms_eps);
    in->rope_base = 10000.0f;
    if (has_key(m, "rope.freq_base") &&
        (st = gguf_get_f32(m->gguf, akey(m, "rope.freq_base", key, sizeof key), &in->rope_base, err)))
        return st;
    if (!(in->rope_base > 1 && in->rope_base < 1e12f))
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: %s.rope.freq_base %g must be in (1, 1e12)", m->path, in->arch, in->rope_base);
    /* RoPE scaling as llama.cpp reads it: the factor (rope.scaling.factor, else the older
     * rope.scale_linear) divides every angle unless the type is yarn; type none and linear
     * both apply it. Llama 3's scaling travels in rope_freqs.weight instead (load_tensors). */
    if (gguf_get_str(m->gguf, akey(m, "rope.scaling.type", key, sizeof key), &s, NULL) == KVC_OK &&
        !gguf_str_eq(s, "none") && !gguf_str_eq(s, "linear"))
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: %s = '%.*s' is not supported; supported: none, linear "
                        "(Llama 3 scaling comes from rope_freqs.weight)", m->path, key, (int)(s.n < 32 ? s.n : 32), s.p);
    float factor = 0;
    const char *fk = has_key(m, "rope.scaling.factor") ? "rope.scaling.factor"
                   : has_key(m, "rope.scale_linear") ? "rope.scale_linear" : NULL;
    if (fk && (st = gguf_get_f32(m->gguf, akey(m, fk, key, sizeof key), &factor, err))) return st;
    if (fk && !(factor == 0 || (factor >= 1e-3f && factor <= 1e3f)))
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: %s = %g outside 0.001..1000", m->path, key, factor);
    in->rope_freq_scale = factor == 0 ? 1.0f : 1.0f / factor;
    return KVC_OK;
}

static kvc_status load_tensors(struct kvc_model *m, kvc_error *err) {
    struct kvc_model_info *in = &m->info;
    const struct gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return kvc_fail(err, KVC_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", m->path);
    if (te->ne[1] > (1u << 24))
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: token_embd.weight has %llu rows (vocabulary), limit 2^24",
                        m->path, (unsigned long long)te->ne[1]);
    in->n_vocab = (int)te->ne[1];
    int E = in->n_embd, H = in->n_head * in->head_dim, KV = in->n_head_kv * in->head_dim, F = in->n_ff;
    kvc_status st;
    int found;
    if ((st = bind_weight(m, "token_embd.weight", E, in->n_vocab, &m->tok_embd, 0, NULL, err))) return st;
    if ((st = bind_norm(m, "output_norm.weight", E, &m->output_norm, err))) return st;
    if ((st = bind_weight(m, "output.weight", E, in->n_vocab, &m->output, 1, &found, err))) return st;
    in->tied_output = !found;
    if (!found) m->output = m->tok_embd;
    if ((st = bind_vec(m, "rope_freqs.weight", in->head_dim / 2, &m->rope_freqs, 1, err))) return st;
    for (int i = 0; m->rope_freqs && i < in->head_dim / 2; i++)
        if (!(m->rope_freqs[i] >= 1e-3f && m->rope_freqs[i] <= 1e6f))
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: rope_freqs.weight[%d] = %g outside 0.001..1e6", m->path, i,
                            m->rope_freqs[i]);
    in->rope_freq_factors = m->rope_freqs != NULL;
    m->layers = calloc((size_t)in->n_layer, sizeof *m->layers);
    if (!m->layers) return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory", m->path);
    for (int l = 0; l < in->n_layer; l++) {
        struct kvc_layer *L = &m->layers[l];
        char nm[96];
#define W(field, suffix, nin, nout)                                                   \
        snprintf(nm, sizeof nm, "blk.%d." suffix ".weight", l);                       \
        if ((st = bind_weight(m, nm, nin, nout, &L->field, 0, NULL, err))) return st;
        W(wq, "attn_q", E, H)
        W(wk, "attn_k", E, KV)
        W(wv, "attn_v", E, KV)
        W(wo, "attn_output", H, E)
        W(w_gate, "ffn_gate", E, F)
        W(w_up, "ffn_up", E, F)
        W(w_down, "ffn_down", F, E)
#undef W
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);
        if ((st = bind_norm(m, nm, E, &L->attn_norm, err))) return st;
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l);
        if ((st = bind_norm(m, nm, E, &L->ffn_norm, err))) return st;
        /* Q/K/V biases: qwen2 has them; llama.cpp also reads them when a llama file has them */
#define B(field, suffix, n)                                                           \
        snprintf(nm, sizeof nm, "blk.%d." suffix ".bias", l);                         \
        if ((st = bind_vec(m, nm, n, &L->field, 1, err))) return st;
        B(bq, "attn_q", H)
        B(bk, "attn_k", KV)
        B(bv, "attn_v", KV)
#undef B
        int nb = (L->bq != NULL) + (L->bk != NULL) + (L->bv != NULL);
        if (nb != 0 && nb != 3)
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: layer %d has %d of the 3 attn_q/k/v biases", m->path, l, nb);
        if (l > 0 && (nb == 3) != in->qkv_bias)
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: layer %d %s Q/K/V biases but layer 0 %s", m->path, l,
                            nb ? "has" : "lacks", in->qkv_bias ? "has them" : "does not");
        if (l == 0) in->qkv_bias = nb == 3;
    }
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const struct gguf_tensor *t = &m->gguf->tensors[i];
        uint64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        in->n_params += nel;
        in->weights_bytes += t->nbytes;
    }
    /* decode reads every weight once per token except the embedding table (one row), unless
     * the table is also the output matrix */
    in->decode_read_bytes = in->weights_bytes;
    if (!in->tied_output)
        in->decode_read_bytes -= (uint64_t)m->tok_embd.n_out * m->tok_embd.row_bytes - m->tok_embd.row_bytes;
    return KVC_OK;
}

kvc_status kvc_model_load(const char *path, kvc_model **out, kvc_error *err) {
    return kvc_model_load_ex(path, 0, out, err);
}

kvc_status kvc_model_load_ex(const char *path, unsigned flags, kvc_model **out, kvc_error *err) {
    *out = NULL;
    if (flags & ~KVC_LOAD_NO_MMAP) return kvc_fail(err, KVC_ERR_ARG, "%s: load flags: unknown bits 0x%x", path, flags & ~KVC_LOAD_NO_MMAP);
    struct kvc_model *m = calloc(1, sizeof *m);
    if (!m) return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory", path);
    snprintf(m->path, sizeof m->path, "%s", path);
    kvc_status st = (flags & KVC_LOAD_NO_MMAP) ? gguf_open_read(path, &m->gguf, err) : gguf_open(path, &m->gguf, err);
    if (!st) st = load_hparams(m, err);
    if (!st) st = load_tensors(m, err);
    if (!st) st = kvc_tokenizer_load(m->gguf, &m->tok, err);
    if (!st && kvc_tokenizer_n_vocab(m->tok) != m->info.n_vocab)
        st = kvc_fail(err, KVC_ERR_FORMAT, "%s: tokenizer has %d tokens but token_embd.weight has %d rows",
                      path, kvc_tokenizer_n_vocab(m->tok), m->info.n_vocab);
    if (st) {
        kvc_model_free(m);
        return st;
    }
    m->info.file_bytes = m->gguf->size;
    m->vocab = (struct kvc_vocab){m->gguf, m->tok};
    m->info.bos_id = kvc_tokenizer_bos(m->tok);
    m->info.eos_id = kvc_tokenizer_eos(m->tok);
    *out = m;
    return KVC_OK;
}

void kvc_model_free(kvc_model *m) {
    if (!m) return;
    kvc_tokenizer_free(m->tok);
    free(m->layers);
    gguf_close(m->gguf);
    free(m);
}

const struct kvc_model_info *kvc_model_get_info(const kvc_model *m) { return &m->info; }

int kvc_model_tensor_types(const kvc_model *m, const char **names, int *counts, int n) {
    int k = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const struct kvc_type_size *ti = kvc_type_info(m->gguf->tensors[i].type);
        const char *nm = ti ? ti->name : "?";
        int j;
        for (j = 0; j < k; j++)
            if (strcmp(names[j], nm) == 0) break;
        if (j == k) {
            if (k == n) continue;
            names[k] = nm;
            counts[k++] = 0;
        }
        counts[j]++;
    }
    return k;
}

double kvc_tensor_type_bpw(const char *name) {
    for (uint32_t id = 0; id < 64; id++) {
        const struct kvc_type_size *ti = kvc_type_info(id);
        if (ti && strcmp(ti->name, name) == 0) return 8.0 * ti->bytes / ti->blck;
    }
    return 0;
}

kvc_status kvc_tokenize(const kvc_model *m, const char *text, size_t len, int add_bos,
                        int32_t **ids, int *n_ids, kvc_error *err) {
    return kvc_tokenizer_encode(m->tok, text, len, add_bos, ids, n_ids, err);
}

int kvc_token_to_text(const kvc_model *m, int32_t id, char *buf, int cap) {
    return kvc_tokenizer_piece(m->tok, id, buf, cap);
}

int kvc_token_is_eog(const kvc_model *m, int32_t id) { return kvc_tokenizer_is_eog(m->tok, id); }

const kvc_vocab *kvc_model_vocab(const kvc_model *m) { return &m->vocab; }
