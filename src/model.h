/* model.h - a Llama-architecture model loaded from GGUF: hyper-parameters from metadata,
 * weight tensors pointing into the memory-mapped file (never copied), the tokenizer. */
#ifndef KVC_MODEL_H
#define KVC_MODEL_H

#include "arch/kernels.h"
#include "gguf.h"
#include "kvcodec.h"
#include "tokenizer.h"

struct kvc_layer {
    const float *attn_norm;     /* (n_embd) */
    struct kvc_weight wq;       /* (n_head*head_dim, n_embd) */
    struct kvc_weight wk;       /* (n_head_kv*head_dim, n_embd) */
    struct kvc_weight wv;       /* (n_head_kv*head_dim, n_embd) */
    struct kvc_weight wo;       /* (n_embd, n_head*head_dim) */
    const float *ffn_norm;      /* (n_embd) */
    struct kvc_weight w_gate;   /* (n_ff, n_embd) */
    struct kvc_weight w_up;     /* (n_ff, n_embd) */
    struct kvc_weight w_down;   /* (n_embd, n_ff) */
};

struct kvc_model {
    struct gguf_file *gguf;
    struct kvc_model_info info;
    struct kvc_weight tok_embd;  /* (n_vocab, n_embd) */
    const float *output_norm;    /* (n_embd) */
    struct kvc_weight output;    /* (n_vocab, n_embd); tok_embd when tied */
    struct kvc_layer *layers;    /* (n_layer) */
    struct kvc_tokenizer *tok;
    struct kvc_vocab vocab;      /* {gguf, tok}, borrowed by kvc_model_vocab */
    char path[256];
};

#endif
