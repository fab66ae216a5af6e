/* kvcodec.c - entry point of the kvcodec command-line tool: dispatches to one command per
 * file (cmd_*.c) and prints the overview help. */
#include "cli.h"

#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *about;
};

static const struct command commands[] = {
    {"run", cmd_run, "generate text from a prompt (streams the continuation)"},
    {"ppl", cmd_ppl, "perplexity of a text file, and KLD / top-1 agreement of a KV codec vs f16"},
    {"info", cmd_info, "model architecture, tensor types, sizes, KV bytes per token per codec"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"logits", cmd_logits, "top-K logits at every position of a text (compare with another engine)"},
    {"bench", cmd_bench, "prefill / decode speed at several cache depths, codecs side by side"},
    {"passkey", cmd_passkey, "pass-key retrieval accuracy through the KV cache at depth fractions"},
    {"plan", cmd_plan, "longest context that fits a RAM budget, per KV codec"},
    {"sweep", cmd_sweep, "ppl + passkey + bench over the codec settings of a config: tables and plots"},
    {"serve", cmd_serve, "an OpenAI-compatible HTTP server: many sequences in one KV budget, continuous batching"},
    {"calibrate", cmd_calibrate, "fit PCA bases of keys and values on a calibration text (for --kv-calib)"},
    {"quantize", cmd_quantize, "re-quantize a GGUF's weight matrices (f32, f16, bf16, q8_0, q4_0)"},
    {"synth", cmd_synth, "write a random-weight GGUF in the shape of a real model (presets)"},
    {"preset", cmd_preset, "write a preset: a calibration plus one cache setting (for --kv-preset)"},
    {"tune", cmd_tune, "choose a cache setting under a bits budget on held-out calibration text; write a preset"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void help(FILE *f) {
    fprintf(f,
            "kvcodec - run GGUF Llama-family models with a compressed KV cache, and measure\n"
            "what each compression costs and saves.\n\n"
            "usage: kvcodec COMMAND [options]     (kvcodec COMMAND --help for its options)\n\n"
            "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].about);
    fprintf(f, "\nKV codecs (--kv-k / --kv-v): %s\n", kvc_codec_list());
    fprintf(f, "pca keys (--kv-k pca:bits=B,keys=K, with --kv-calib): post (default; basis of post-RoPE keys),\n"
               "  pre (full transform of pre-RoPE keys: most accurate, slow decode), pair (pre-RoPE keys,\n"
               "  per-RoPE-pair transform: near pre's accuracy with f16 windows, decode at post's speed)\n");
    fprintf(f, "Without -m, commands use the embedded default model models/kvref-q4_0.gguf.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        help(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        help(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kvcodec: unknown command '%s'; commands:", argv[1]);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(stderr, " %s", commands[i].name);
    fprintf(stderr, " (see kvcodec --help)\n");
    return 2;
}
