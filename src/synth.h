/* synth.h - random-weight GGUF models in the exact shapes, tensor names and metadata of real
 * Llama-family models (presets), written straight in a chosen weight type through the
 * streaming GGUF writer, with a byte-level BPE vocabulary padded to the real size. */
#ifndef KVC_SYNTH_H
#define KVC_SYNTH_H

#include "kvcodec.h"
#include <stdint.h>

/* The shape and metadata of one model (a preset, possibly with overrides). */
struct kvc_synth_shape {
    char name[48];          /* preset name */
    char arch[16];          /* "llama" or "qwen2" */
    char general_name[64];  /* general.name of the real model */
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx;
    float rope_base, rms_eps;
    int tied;               /* output matrix = token_embd.weight */
    int qkv_bias;           /* attn_q/k/v.bias tensors (qwen2) */
    float rope_scale;       /* Llama-3 rope scaling factor (rope_freqs.weight); 0 = none */
    float rope_low, rope_high; /* Llama-3 low / high frequency factors */
    int rope_orig_ctx;      /* Llama-3 original context of the scaling */
    char pre[16];           /* tokenizer.ggml.pre */
    int spec0, n_spec;      /* control tokens: ids spec0 .. spec0 + n_spec - 1 */
    int n_pad;              /* UNUSED [PADi] tokens right after the control tokens */
    int bos, eos;           /* token ids */
    int add_bos;
    const char *spec_names[3]; /* names of the first control tokens (rest generic) */
};

struct kvc_synth_params {
    const char *preset;     /* required: see kvc_synth_preset_list() */
    uint32_t type;          /* enum kvc_type of the 2-D weight matrices (default Q4_0); 1-D tensors are F32 */
    int mix;                /* enum kvc_quant_mix: 0 = every matrix `type`; else llama.cpp's mix rules
                               (type then is the mix's base: Q3_K, Q4_K, Q5_K) */
    uint64_t seed;          /* default 1 */
    /* overrides; 0 keeps the preset's value */
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx;
    /* called after each tensor (may be NULL) */
    void (*progress)(void *ud, const char *tensor, uint64_t bytes_done, uint64_t bytes_total);
    void *ud;
};
struct kvc_synth_params kvc_synth_default_params(void);

/* Comma-separated preset names. */
const char *kvc_synth_preset_list(void);
/* Preset plus overrides, checked (KVC_ERR_ARG naming the field and the limit). */
kvc_status kvc_synth_resolve(const struct kvc_synth_params *p, struct kvc_synth_shape *out, kvc_error *err);
/* Bytes the file will have (header excluded), for disk checks before writing. */
uint64_t kvc_synth_data_bytes(const struct kvc_synth_shape *s, const struct kvc_synth_params *p);
/* Write the model to path. */
kvc_status kvc_synth_write(const char *path, const struct kvc_synth_params *p, kvc_error *err);
/* Llama-3 rope frequency factors (head_dim / 2 of them) of a shape with rope_scale > 0. */
void kvc_synth_rope_factors(const struct kvc_synth_shape *s, float *out);

#endif
