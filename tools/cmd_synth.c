/* cmd_synth.c - `kvcodec synth`: write a random-weight GGUF in the shape of a real model
 * (src/synth.c does the work; this file parses flags, checks the disk and prints progress). */
#include "cli.h"
#include "quantize.h"
#include "synth.h"
#include "types.h"

#include <string.h>
#include <sys/statvfs.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec synth --preset NAME [--type T] [--seed S] [overrides] -o FILE\n\n"
            "Write a GGUF with random weights in the exact shape, tensor names and metadata of a real\n"
            "model (layers, widths, heads / KV heads, head dim, FFN, vocabulary size, RoPE base and\n"
            "Llama-3 rope_freqs.weight, tied or untied output, qwen2's q/k/v biases) and a byte-level\n"
            "BPE vocabulary (tokenizer.ggml.model gpt2) padded to the real size. Data is streamed: the\n"
            "file may be larger than RAM. Normal draws (sd): matrices 1/sqrt(fan_in); norms 1 + 0.1;\n"
            "biases 0.1; token_embd 1 (3/sqrt(n_embd) when it is also the output matrix).\n"
            "  --preset NAME   %s\n"
            "  --type T        weight type of the 2-D matrices (default q4_0): a type (f32, f16, bf16, q8_0,\n"
            "                  q4_0, q4_1, q5_0, q5_1, q2_k .. q6_k, iq4_nl, iq4_xs: every matrix in it, like\n"
            "                  llama-quantize --pure) or a mix (q3_k_m, q4_k_m, q5_k_m: llama.cpp's per-tensor\n"
            "                  rules); rows that are not whole blocks fall back as llama.cpp does; 1-D f32\n"
            "  --seed S        generator seed (default 1)\n"
            "  --layers N --embd N --ff N --heads N --kv-heads N --head-dim N --vocab N --ctx N\n"
            "                  override the preset's values (e.g. small models for tests)\n"
            "  -o FILE         output path (required)\n"
            "  -q, --quiet     no progress on stderr\n",
            kvc_synth_preset_list());
}

static void progress(void *ud, const char *tensor, uint64_t done, uint64_t total) {
    double *last = ud;
    double t = now_sec();
    if (t - *last < 2 && done < total) return;
    *last = t;
    fprintf(stderr, "[synth] %s: %.0f / %.0f MiB\n", tensor, done / 1048576.0, total / 1048576.0);
}

int cmd_synth(int argc, char **argv) {
    struct args a = {argc, 1, argv, "synth"};
    struct kvc_synth_params p = kvc_synth_default_params();
    const char *out = NULL, *type = "q4_0";
    int quiet = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        if (arg_str(&a, "--preset", NULL, &p.preset) || arg_str(&a, "--type", NULL, &type) ||
            arg_u64(&a, "--seed", &p.seed) || arg_str(&a, "-o", "--output", &out) ||
            arg_int(&a, "--layers", NULL, 1, 1024, &p.n_layer) || arg_int(&a, "--embd", NULL, 32, 1 << 16, &p.n_embd) ||
            arg_int(&a, "--ff", NULL, 32, 1 << 18, &p.n_ff) || arg_int(&a, "--heads", NULL, 1, 1024, &p.n_head) ||
            arg_int(&a, "--kv-heads", NULL, 1, 1024, &p.n_head_kv) ||
            arg_int(&a, "--head-dim", NULL, 2, 1024, &p.head_dim) ||
            arg_int(&a, "--vocab", NULL, 300, 1 << 20, &p.n_vocab) || arg_int(&a, "--ctx", NULL, 16, 1 << 24, &p.n_ctx))
            continue;
        if (arg_flag(&a, "-q") || arg_flag(&a, "--quiet")) { quiet = 1; continue; }
        return arg_unknown(&a);
    }
    if (!p.preset) return usage_error(a.cmd, "--preset is required (%s)", kvc_synth_preset_list());
    if (!out) return usage_error(a.cmd, "-o FILE is required");
    struct kvc_quant_scheme qs;
    if (kvc_quant_scheme_parse(type, &qs)) return usage_error(a.cmd, "--type %s: expected one of %s", type, kvc_quant_scheme_names());
    p.type = qs.type;
    p.mix = qs.mix;
    kvc_error e = {0};
    struct kvc_synth_shape s;
    if (kvc_synth_resolve(&p, &s, &e)) return usage_error(a.cmd, "%s", e.msg);
    uint64_t need = kvc_synth_data_bytes(&s, &p) + ((uint64_t)64 << 20);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", out);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0; else snprintf(dir, sizeof dir, ".");
    struct statvfs vs;
    if (statvfs(dir, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < need) {
        fprintf(stderr, "kvcodec synth: error: %s needs about %.2f GiB, %s has %.2f GiB free\n", out,
                need / 1073741824.0, dir, (double)vs.f_bavail * vs.f_frsize / 1073741824.0);
        return 1;
    }
    double last = 0;
    if (!quiet) {
        p.progress = progress;
        p.ud = &last;
        fprintf(stderr, "[synth] %s (%s): %d layers, n_embd %d, heads %d/%d x %d, n_ff %d, vocab %d, %s weights, "
                "%.2f GiB\n", s.name, s.arch, s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.head_dim, s.n_ff,
                s.n_vocab, type, need / 1073741824.0);
    }
    double t0 = now_sec();
    if (kvc_synth_write(out, &p, &e)) return lib_error(a.cmd, &e);
    if (!quiet) fprintf(stderr, "[synth] wrote %s in %.1f s\n", out, now_sec() - t0);
    return 0;
}
