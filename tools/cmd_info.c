/* cmd_info.c - `kvcodec info`: architecture, sizes and tensor types of a model, and the KV
 * cache's memory per token for every codec in the table (and for the chosen --kv-k/--kv-v
 * with sinks and recent rows counted). */
#include "cli.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec info [-m MODEL] [--kv-k SPEC --kv-v SPEC --kv-sinks N --kv-recent N -c CTX] [--json]\n\n"
            "Prints the model's architecture, sizes and tensor types, and the KV cache bytes per\n"
            "token and bits per element (scales and all metadata included) of every codec; with\n"
            "--kv-k/--kv-v, also the accounting of that configuration at context -c.\n"
            "  --json               one JSON object instead of text\n");
    ctx_opts_help(f, 1);
}

int cmd_info(int argc, char **argv) {
    struct args a = {argc, 1, argv, "info"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    int json = 0, chosen = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        const char *flag = argv[a.i];
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) {
            if (strncmp(flag, "--kv-", 5) == 0) chosen = 1;
            continue;
        }
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        return arg_unknown(&a);
    }
    kvc_model *m;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) return 1;
    const struct kvc_model_info *in = kvc_model_get_info(m);
    const char *tn[32];
    int tc[32];
    int nt = kvc_model_tensor_types(m, tn, tc, 32);
    /* elements of K (or V) per token over all layers and KV heads */
    double elems = (double)in->n_layer * in->n_head_kv * in->head_dim;
    struct kvc_kv_info kv = {0};
    kvc_error e = {0};
    if (chosen) {
        kvc_ctx *c;
        if (kvc_ctx_create(m, &o.p, &c, &e)) {
            kvc_model_free(m);
            return lib_error(a.cmd, &e);
        }
        kvc_ctx_kv_info(c, &kv);
        kvc_ctx_free(c);
    }
    char *list = strdup(kvc_codec_list());
    if (!list) { kvc_model_free(m); return 1; }
    FILE *f = stdout;
    json_t *jo = NULL, *jc = NULL;
    if (json) {
        jo = json_object();
        jc = json_array();
        json_t *tt = json_object();
        json_object_set_new(jo, "model", kvc_json_str(o.model ? o.model : default_model_path()));
        json_object_set_new(jo, "arch", kvc_json_str(in->arch));
        json_object_set_new(jo, "name", kvc_json_str(in->name));
        const char *ik[] = {"n_layer", "n_embd", "n_head", "n_head_kv", "head_dim", "n_ff", "n_vocab", "n_ctx_train"};
        const int iv[] = {in->n_layer, in->n_embd, in->n_head, in->n_head_kv, in->head_dim, in->n_ff, in->n_vocab, in->n_ctx_train};
        for (int i = 0; i < 8; i++) json_object_set_new(jo, ik[i], json_integer(iv[i]));
        json_object_set_new(jo, "rope_base", json_real(in->rope_base));
        json_object_set_new(jo, "rms_eps", json_real(in->rms_eps));
        json_object_set_new(jo, "tied_output", json_boolean(in->tied_output));
        json_object_set_new(jo, "rope_layout", kvc_json_str(in->rope_neox ? "neox" : "norm"));
        json_object_set_new(jo, "rope_freq_factors", json_boolean(in->rope_freq_factors));
        json_object_set_new(jo, "rope_freq_scale", json_real(in->rope_freq_scale));
        json_object_set_new(jo, "qkv_bias", json_boolean(in->qkv_bias));
        json_object_set_new(jo, "n_params", json_integer((json_int_t)in->n_params));
        json_object_set_new(jo, "weights_bytes", json_integer((json_int_t)in->weights_bytes));
        json_object_set_new(jo, "decode_read_bytes", json_integer((json_int_t)in->decode_read_bytes));
        json_object_set_new(jo, "file_bytes", json_integer((json_int_t)in->file_bytes));
        for (int i = 0; i < nt; i++) json_object_set_new(tt, tn[i], json_integer(tc[i]));
        json_object_set_new(jo, "tensor_types", tt);
        json_t *tb = json_object();
        for (int i = 0; i < nt; i++) json_object_set_new(tb, tn[i], kvc_json_real(kvc_tensor_type_bpw(tn[i]), 4));
        json_object_set_new(jo, "tensor_type_bits_per_weight", tb);
        json_object_set_new(jo, "weight_bits_per_param",
                            kvc_json_real(in->n_params ? 8.0 * (double)in->weights_bytes / (double)in->n_params : 0.0, 4));
    } else {
        fprintf(f, "model      %s (%s, %s)\n", o.model ? o.model : default_model_path(), in->arch, in->name);
        fprintf(f, "layers %d, embedding %d, heads %d, KV heads %d, head dim %d, FFN %d, vocab %d\n",
                in->n_layer, in->n_embd, in->n_head, in->n_head_kv, in->head_dim, in->n_ff, in->n_vocab);
        fprintf(f, "trained context %d, RoPE base %g (%s%s", in->n_ctx_train, in->rope_base,
                in->rope_neox ? "halves, NEOX" : "adjacent pairs", in->rope_freq_factors ? ", rope_freqs factors" : "");
        if (in->rope_freq_scale != 1) fprintf(f, ", linear scale %g", in->rope_freq_scale);
        fprintf(f, "), RMS eps %g, output %s%s\n", in->rms_eps, in->tied_output ? "tied to token_embd" : "separate",
                in->qkv_bias ? ", Q/K/V biases" : "");
        fprintf(f, "parameters %.2f M, weights %.2f MiB (memory-mapped), file %.2f MiB\ntensor types:",
                in->n_params / 1e6, in->weights_bytes / 1048576.0, in->file_bytes / 1048576.0);
        for (int i = 0; i < nt; i++) fprintf(f, " %s x%d (%.4g bits/weight)%s", tn[i], tc[i], kvc_tensor_type_bpw(tn[i]), i + 1 < nt ? "," : "");
        fprintf(f, "\nweights: %.3f bits per parameter on average", in->n_params ? 8.0 * (double)in->weights_bytes / (double)in->n_params : 0.0);
        fprintf(f, "\n\nKV cache per codec (K and V with the same codec, no sinks/recent):\n");
        fprintf(f, "  %-10s %12s %14s %18s\n", "codec", "bits/elem", "bytes/token", "at trained ctx");
    }
    for (char *save = NULL, *name = strtok_r(list, ", ", &save); name; name = strtok_r(NULL, ", ", &save)) {
        double bits;
        if (kvc_codec_bits(name, in->head_dim, &bits, &e)) continue; /* codec needs params or cannot do this head dim */
        double bpt = 2 * elems * bits / 8;
        if (json) {
            json_t *r = json_object();
            json_object_set_new(r, "codec", kvc_json_str(name));
            json_object_set_new(r, "bits_per_element", kvc_json_real(bits, 4));
            json_object_set_new(r, "kv_bytes_per_token", kvc_json_real(bpt, 1));
            json_object_set_new(r, "kv_bytes_trained_ctx", json_integer((json_int_t)llround(bpt * in->n_ctx_train)));
            json_array_append_new(jc, r);
        } else
            fprintf(f, "  %-10s %12.3f %14.1f %14.2f MiB\n", name, bits, bpt, bpt * in->n_ctx_train / 1048576.0);
    }
    if (json) {
        json_object_set_new(jo, "codecs", jc);
        if (chosen) {
            json_t *k = json_object();
            json_object_set_new(k, "kv_k", kvc_json_str(kv.spec_k));
            json_object_set_new(k, "kv_v", kvc_json_str(kv.spec_v));
            json_object_set_new(k, "ctx", json_integer(kv.n_ctx));
            json_object_set_new(k, "kv_sinks", json_integer(kv.sinks));
            json_object_set_new(k, "kv_recent", json_integer(kv.recent));
            json_object_set_new(k, "kv_window", kvc_json_str(kv.spec_window));
            json_object_set_new(k, "bits_k", kvc_json_real(kv.bits_k, 4));
            json_object_set_new(k, "bits_v", kvc_json_real(kv.bits_v, 4));
            json_object_set_new(k, "bits_per_element", kvc_json_real(kv.bits_per_element, 4));
            json_object_set_new(k, "kv_bytes_per_token", kvc_json_real(kv.bytes_per_token, 1));
            json_object_set_new(k, "kv_bytes", json_integer((json_int_t)kv.kv_bytes));
            json_object_set_new(jo, "kv", k);
        }
        cli_json_print(jo);
    } else if (chosen) {
        fprintf(f, "\nchosen: K %s, V %s, -c %d, sinks %d, recent %d (%s rows counted):\n", kv.spec_k, kv.spec_v,
                kv.n_ctx, kv.sinks, kv.recent, kv.spec_window);
        fprintf(f, "  bits/element K %.3f, V %.3f, mean %.3f; %.1f bytes/token; %.2f MiB allocated\n", kv.bits_k,
                kv.bits_v, kv.bits_per_element, kv.bytes_per_token, kv.kv_bytes / 1048576.0);
        if (o.preset_path)
            fprintf(f, "preset %s: K %s, V %s, sinks %d, recent %d in %s, %.3f bits/element at -c %d\n  %s\n",
                    o.preset_path, o.preset.kv_k, o.preset.kv_v, o.preset.sinks, o.preset.recent, o.preset.kv_window,
                    o.preset.bits_per_element, o.preset.ctx, o.preset.note);
    }
    free(list);
    kvc_model_free(m);
    return 0;
}
