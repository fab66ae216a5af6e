/* cli.h - shared pieces of the kvcodec command-line tool: strict option parsing (numbers
 * range-checked, unknown flags rejected), the default model lookup, common context flags
 * (-c -b -t --kv-k --kv-v --kv-sinks --kv-recent --kv-calib --kv-preset --isa), timing and JSON output. */
#ifndef KVC_CLI_H
#define KVC_CLI_H

#include "kvcodec.h"
#include "eval/eval_util.h"
#include <jansson.h>
#include <stdio.h>

/* One argument cursor over argv. */
struct args {
    int argc, i;
    char **argv;
    const char *cmd;  /* "ppl", "run", ... for messages */
};

/* Returns 1 and sets *val when argv[i] is flag (takes a value); errors exit the command. */
int arg_str(struct args *a, const char *flag, const char *alt, const char **val);
int arg_int(struct args *a, const char *flag, const char *alt, long lo, long hi, int *val);
int arg_u64(struct args *a, const char *flag, uint64_t *val);
int arg_dbl(struct args *a, const char *flag, double lo, double hi, double *val);
int arg_flag(struct args *a, const char *flag);
/* Report an unknown argument and return 2 (the exit code for usage errors). */
int arg_unknown(struct args *a);
/* Error printer for usage errors: "kvcodec CMD: message". Returns 2. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Error printer for library errors. Returns 1. */
int lib_error(const char *cmd, const kvc_error *e);

/* Context options shared by run, ppl, bench, ... */
struct ctx_opts {
    struct kvc_ctx_params p;
    const char *model;
    int kv_flags;              /* --kv-k/--kv-v/--kv-sinks/--kv-recent/--kv-calib given */
    const char *preset_path;   /* --kv-preset FILE: its setting is copied into p */
    struct kvc_preset preset;
    unsigned load_flags;       /* --no-mmap: KVC_LOAD_NO_MMAP */
};
void ctx_opts_init(struct ctx_opts *o);
/* Consumes one of the shared flags at a->i; returns 1 if consumed, 0 if not, -1 on error. */
int ctx_opts_parse(struct ctx_opts *o, struct args *a);
/* Help text of the shared flags. */
void ctx_opts_help(FILE *f, int with_kv);
/* Model path: -m, else models/kvref-q4_0.gguf beside the executable or in the cwd. */
const char *default_model_path(void);
/* flags: KVC_LOAD_* (kvc_model_load_ex) */
kvc_status load_model(const char *cmd, const char *path, unsigned flags, kvc_model **m);

/* A byte size: "512M", "1.5G", "2GiB", "16k", "3000000000" (binary multiples k/M/G/T, optional
 * "i" and "B"); 0 on success, -1 when s is not a size of at least one byte. */
int cli_parse_size(const char *s, uint64_t *out);
double now_sec(void);
/* Write s as a JSON string literal (through jansson; invalid UTF-8 as U+FFFD). */
void json_str(FILE *f, const char *s);
/* --json output through jansson: numbers and strings with the library's own helpers
 * (eval/eval_util.h: kvc_json_real rounds to `decimals` digits, null when not finite;
 * kvc_json_str, null for NULL), and printing a value on one line to stdout (released). */
int cli_json_print(json_t *v);
/* A JSON string of n bytes of text (token pieces, generated text): invalid UTF-8 bytes become
 * U+FFFD (jansson takes only valid UTF-8). NULL when out of memory. */
json_t *cli_json_text(const char *s, size_t n);
/* Read a whole file (NUL-terminated; *len excludes the NUL); NULL with a message on error. */
char *read_file(const char *cmd, const char *path, size_t *len);

int cmd_run(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_passkey(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_preset(int argc, char **argv);
/* ppl and passkey with their --json object as a jansson value in *out instead of on stdout
 * (the sweep runs these points in-process); returns the command's exit status. */
int cmd_ppl_json(int argc, char **argv, json_t **out);
int cmd_passkey_json(int argc, char **argv, json_t **out);
int cmd_tune(int argc, char **argv);

#endif
