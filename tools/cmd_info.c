/* cmd_info.c - `kvcodec info`: architecture, sizes and tensor types of a model, and the KV
 * cache's memory per token for every codec in the table (and for the chosen --kv-k/--kv-v
 * with sinks and recent rows counted). */
#include "cli.h"

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
    if (load_model(a.cmd, o.model, &m)) return 1;
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
    if (json) {
        fprintf(f, "{\"model\": ");
        json_str(f, o.model ? o.model : default_model_path());
        fprintf(f, ", \"arch\": \"%s\", \"name\": ", in->arch);
        json_str(f, in->name);
        fprintf(f, ", \"n_layer\": %d, \"n_embd\": %d, \"n_head\": %d, \"n_head_kv\": %d, \"head_dim\": %d, \"n_ff\": %d, "
                   "\"n_vocab\": %d, \"n_ctx_train\": %d, \"rope_base\": %g, \"rms_eps\": %g, \"tied_output\": %s, "
                   "\"n_params\": %llu, \"weights_bytes\": %llu, \"decode_read_bytes\": %llu, \"file_bytes\": %llu, "
                   "\"tensor_types\": {",
                in->n_layer, in->n_embd, in->n_head, in->n_head_kv, in->head_dim, in->n_ff, in->n_vocab,
                in->n_ctx_train, in->rope_base, in->rms_eps, in->tied_output ? "true" : "false",
                (unsigned long long)in->n_params, (unsigned long long)in->weights_bytes,
                (unsigned long long)in->decode_read_bytes, (unsigned long long)in->file_bytes);
        for (int i = 0; i < nt; i++) fprintf(f, "%s\"%s\": %d", i ? ", " : "", tn[i], tc[i]);
        fprintf(f, "}, \"codecs\": [");
    } else {
        fprintf(f, "model      %s (%s, %s)\n", o.model ? o.model : default_model_path(), in->arch, in->name);
        fprintf(f, "layers %d, embedding %d, heads %d, KV heads %d, head dim %d, FFN %d, vocab %d\n",
                in->n_layer, in->n_embd, in->n_head, in->n_head_kv, in->head_dim, in->n_ff, in->n_vocab);
        fprintf(f, "trained context %d, RoPE base %g, RMS eps %g, output %s\n", in->n_ctx_train, in->rope_base,
                in->rms_eps, in->tied_output ? "tied to token_embd" : "separate");
        fprintf(f, "parameters %.2f M, weights %.2f MiB (memory-mapped), file %.2f MiB\ntensor types:",
                in->n_params / 1e6, in->weights_bytes / 1048576.0, in->file_bytes / 1048576.0);
        for (int i = 0; i < nt; i++) fprintf(f, " %s x%d", tn[i], tc[i]);
        fprintf(f, "\n\nKV cache per codec (K and V with the same codec, no sinks/recent):\n");
        fprintf(f, "  %-10s %12s %14s %18s\n", "codec", "bits/elem", "bytes/token", "at trained ctx");
    }
    int first = 1;
    for (char *save = NULL, *name = strtok_r(list, ", ", &save); name; name = strtok_r(NULL, ", ", &save)) {
        double bits;
        if (kvc_codec_bits(name, in->head_dim, &bits, &e)) continue; /* codec needs params or cannot do this head dim */
        double bpt = 2 * elems * bits / 8;
        if (json)
            fprintf(f, "%s{\"codec\": \"%s\", \"bits_per_element\": %.4f, \"kv_bytes_per_token\": %.1f, \"kv_bytes_trained_ctx\": %.0f}",
                    first ? "" : ", ", name, bits, bpt, bpt * in->n_ctx_train);
        else
            fprintf(f, "  %-10s %12.3f %14.1f %14.2f MiB\n", name, bits, bpt, bpt * in->n_ctx_train / 1048576.0);
        first = 0;
    }
    if (json) {
        fprintf(f, "]");
        if (chosen)
            fprintf(f, ", \"kv\": {\"kv_k\": \"%s\", \"kv_v\": \"%s\", \"ctx\": %d, \"kv_sinks\": %d, \"kv_recent\": %d, "
                       "\"bits_k\": %.4f, \"bits_v\": %.4f, \"bits_per_element\": %.4f, \"kv_bytes_per_token\": %.1f, \"kv_bytes\": %llu}",
                    kv.spec_k, kv.spec_v, kv.n_ctx, kv.sinks, kv.recent, kv.bits_k, kv.bits_v, kv.bits_per_element,
                    kv.bytes_per_token, (unsigned long long)kv.kv_bytes);
        fprintf(f, "}\n");
    } else if (chosen) {
        fprintf(f, "\nchosen: K %s, V %s, -c %d, sinks %d, recent %d (f16 rows counted):\n", kv.spec_k, kv.spec_v,
                kv.n_ctx, kv.sinks, kv.recent);
        fprintf(f, "  bits/element K %.3f, V %.3f, mean %.3f; %.1f bytes/token; %.2f MiB allocated\n", kv.bits_k,
                kv.bits_v, kv.bits_per_element, kv.bytes_per_token, kv.kv_bytes / 1048576.0);
        if (o.preset_path)
            fprintf(f, "preset %s: K %s, V %s, sinks %d, recent %d, %.3f bits/element at -c %d\n  %s\n", o.preset_path,
                    o.preset.kv_k, o.preset.kv_v, o.preset.sinks, o.preset.recent, o.preset.bits_per_element,
                    o.preset.ctx, o.preset.note);
    }
    free(list);
    kvc_model_free(m);
    return 0;
}
