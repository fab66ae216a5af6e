/* cmd_quantize.c - `kvcodec quantize IN OUT TYPE`: re-quantize a GGUF's matrices (the work is
 * src/quantize.c; this file parses the arguments and prints progress). */
#include "cli.h"
#include "quantize.h"
#include "types.h"

#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec quantize [-q] IN OUT TYPE\n\n"
            "Write OUT: IN with its 2-D weight matrices converted. TYPE is a type (f32, f16, bf16, q8_0,\n"
            "q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs: every matrix, the token\n"
            "embedding included, like llama-quantize --pure) or a mix (q3_k_m, q4_k_m, q5_k_m: llama.cpp's\n"
            "rules: output / tied embedding Q6_K, attn_v and ffn_down with more bits in the first and\n"
            "last eighth of the layers and every third between, ...). Rows that are not whole blocks\n"
            "fall back as in llama.cpp (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K/IQ4_XS ->\n"
            "IQ4_NL; 32-element types -> F16). 1-D tensors (norms, biases, rope factors) stay F32;\n"
            "metadata is copied with general.file_type updated. Sources: any type kvcodec computes with\n"
            "(requantizing quantized weights adds their error). Streams tensor by tensor.\n"
            "  -q, --quiet   no progress on stderr\n");
}

static void progress(void *ud, const char *tensor, uint32_t type, int done, int total) {
    (void)ud;
    const struct kvc_type_size *ti = kvc_type_info(type);
    fprintf(stderr, "[quantize] %d/%d %s -> %s\n", done, total, tensor, ti ? ti->name : "?");
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3];
    int np = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { help(stdout); return 0; }
        if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) { quiet = 1; continue; }
        if (argv[i][0] == '-' && argv[i][1]) return usage_error("quantize", "unknown option %s (see --help)", argv[i]);
        if (np == 3) return usage_error("quantize", "too many arguments: expected IN OUT TYPE");
        pos[np++] = argv[i];
    }
    if (np != 3) return usage_error("quantize", "expected IN OUT TYPE (see --help)");
    if (!strcmp(pos[0], pos[1])) return usage_error("quantize", "IN and OUT are the same file");
    struct kvc_quantize_params p = {0};
    if (kvc_quant_scheme_parse(pos[2], &p.scheme))
        return usage_error("quantize", "TYPE %s: expected one of %s", pos[2], kvc_quant_scheme_names());
    if (!quiet) p.progress = progress;
    kvc_error e = {0};
    double t0 = now_sec();
    if (kvc_quantize_file(pos[0], pos[1], &p, &e)) return lib_error("quantize", &e);
    if (!quiet) fprintf(stderr, "[quantize] wrote %s in %.1f s\n", pos[1], now_sec() - t0);
    return 0;
}
