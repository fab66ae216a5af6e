/* cmd_tokenize.c - `kvcodec tokenize`: token ids of a text (BOS first, as run and ppl add it). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec tokenize [-m MODEL] (-p TEXT | -f FILE) [--no-bos] [--json]\n\n"
            "Prints the token ids of TEXT, BOS first (as run and ppl add it).\n"
            "  -m, --model FILE   GGUF model (default: the embedded models/kvref-q4_0.gguf)\n"
            "  -p, --prompt TEXT  text to tokenize\n"
            "  -f, --file FILE    tokenize the contents of FILE instead\n"
            "  --no-bos           do not add BOS\n"
            "  --json             print {\"ids\": [...]} instead of one line of ids\n");
}

int cmd_tokenize(int argc, char **argv) {
    struct args a = {argc, 1, argv, "tokenize"};
    const char *model = NULL, *text = NULL, *file = NULL;
    int json = 0, bos = 1;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        if (arg_str(&a, "-m", "--model", &model) || arg_str(&a, "-p", "--prompt", &text) ||
            arg_str(&a, "-f", "--file", &file)) continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "--no-bos")) { bos = 0; continue; }
        return arg_unknown(&a);
    }
    if (!text == !file) return usage_error(a.cmd, "give exactly one of -p TEXT or -f FILE");
    size_t len = 0;
    char *buf = NULL;
    if (file) {
        if (!(buf = read_file(a.cmd, file, &len))) return 1;
        text = buf;
    } else {
        len = strlen(text);
    }
    kvc_model *m;
    if (load_model(a.cmd, model, &m)) { free(buf); return 1; }
    int32_t *ids = NULL;
    int n = 0;
    kvc_error e = {0};
    int rc = 0;
    if (kvc_tokenize(m, text, len, bos, &ids, &n, &e)) rc = lib_error(a.cmd, &e);
    else {
        if (json) printf("{\"ids\": [");
        for (int i = 0; i < n; i++) printf("%s%d", i ? (json ? ", " : " ") : "", ids[i]);
        printf(json ? "]}\n" : "\n");
    }
    free(ids);
    free(buf);
    kvc_model_free(m);
    return rc;
}
