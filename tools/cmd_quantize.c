/* cmd_quantize.c - `kvcodec quantize IN OUT TYPE`: re-quantize a GGUF's matrices (the work is
 * src/quantize.c; this file parses the arguments and prints progress). */
#include "cli.h"
#include "quantize.h"
#include "types.h"

#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec quantize [-q] IN OUT TYPE\n\n"
            "Write OUT: IN with every 2-D weight matrix converted to TYPE (f32, f16, bf16, q8_0, q4_0; the\n"
            "token embedding included, like llama-quantize --pure), matrices whose rows are not whole\n"
            "blocks of TYPE in F16, 1-D tensors (norms, biases, rope factors) in F32, metadata copied with\n"
            "general.file_type updated. Sources may be f32, f16, bf16, q8_0 or q4_0 (requantizing\n"
            "quantized weights adds their error). Streams tensor by tensor.\n"
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
    if (kvc_quant_type_parse(pos[2], &p.type))
        return usage_error("quantize", "TYPE %s: expected f32, f16, bf16, q8_0 or q4_0", pos[2]);
    if (!quiet) p.progress = progress;
    kvc_error e = {0};
    double t0 = now_sec();
    if (kvc_quantize_file(pos[0], pos[1], &p, &e)) return lib_error("quantize", &e);
    if (!quiet) fprintf(stderr, "[quantize] wrote %s in %.1f s\n", pos[1], now_sec() - t0);
    return 0;
}
