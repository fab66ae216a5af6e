/* cmd_tokenize.c - `kvcodec tokenize`: token ids of a text, as llama.cpp's llama_tokenize gives
 * them (BOS first when the vocabulary adds it, as run and ppl do). Loads only the vocabulary,
 * so vocab-only GGUFs and models of any architecture or tensor type work. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec tokenize [-m MODEL] (-p TEXT | -f FILE) [--no-bos] [--special] [--pieces] [--json]\n\n"
            "Prints the token ids of TEXT, BOS first when the vocabulary adds it (as run and ppl do).\n"
            "Only the tokenizer metadata is read: vocab-only GGUF files work too.\n"
            "  -m, --model FILE   GGUF model or vocabulary (default: the embedded models/kvref-q4_0.gguf)\n"
            "  -p, --prompt TEXT  text to tokenize\n"
            "  -f, --file FILE    tokenize the contents of FILE instead\n"
            "  --no-bos           do not add BOS/EOS (llama.cpp's add_special = false)\n"
            "  --special          recognise control tokens written in the text (<|begin_of_text|>,\n"
            "                     <|im_start|>, ...; llama.cpp's parse_special); without it they are text\n"
            "  --pieces           print each id with its text (control tokens shown)\n"
            "  --json             print {\"ids\": [...]} (with --pieces also \"pieces\"; bytes that are\n"
            "                     not UTF-8 on their own show as U+FFFD there) instead\n");
}

int cmd_tokenize(int argc, char **argv) {
    struct args a = {argc, 1, argv, "tokenize"};
    const char *model = NULL, *text = NULL, *file = NULL;
    int json = 0, bos = 1, special = 0, pieces = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        if (arg_str(&a, "-m", "--model", &model) || arg_str(&a, "-p", "--prompt", &text) ||
            arg_str(&a, "-f", "--file", &file)) continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "--no-bos")) { bos = 0; continue; }
        if (arg_flag(&a, "--special")) { special = 1; continue; }
        if (arg_flag(&a, "--pieces")) { pieces = 1; continue; }
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
    kvc_vocab *v;
    kvc_error e = {0};
    if (kvc_vocab_load(model ? model : default_model_path(), &v, &e)) {
        free(buf);
        return lib_error(a.cmd, &e);
    }
    int32_t *ids = NULL;
    int n = 0;
    int rc = 0;
    if (kvc_vocab_tokenize(v, text, len, bos, special, &ids, &n, &e)) rc = lib_error(a.cmd, &e);
    else if (json) {
        json_t *o = json_object(), *ja = json_array(), *jp = pieces ? json_array() : NULL;
        for (int i = 0; i < n; i++) json_array_append_new(ja, json_integer(ids[i]));
        json_object_set_new(o, "ids", ja);
        for (int i = 0; jp && i < n; i++) {
            char p[512];
            int k = kvc_vocab_token_to_piece(v, ids[i], 1, p, (int)sizeof p - 1);
            json_array_append_new(jp, cli_json_text(p, (size_t)(k > 0 ? k : 0)));
        }
        if (jp) json_object_set_new(o, "pieces", jp);
        if (cli_json_print(o)) rc = 1;
    } else if (pieces) {
        for (int i = 0; i < n; i++) {
            char p[512];
            int k = kvc_vocab_token_to_piece(v, ids[i], 1, p, (int)sizeof p - 1);
            p[k] = 0;
            printf("%6d ", ids[i]);
            json_str(stdout, p);
            printf("\n");
        }
    } else {
        for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    free(ids);
    free(buf);
    kvc_vocab_free(v);
    return rc;
}
