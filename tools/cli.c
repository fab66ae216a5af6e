/* cli.c - option parsing, default model lookup, timing and JSON helpers shared by the
 * kvcodec commands. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvcodec %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see kvcodec %s --help)\n", cmd);
    return 2;
}

int lib_error(const char *cmd, const kvc_error *e) {
    fprintf(stderr, "kvcodec %s: error: %s\n", cmd, e->msg[0] ? e->msg : kvc_status_str(e->status));
    return 1;
}

static int is_flag(struct args *a, const char *flag, const char *alt) {
    const char *s = a->argv[a->i];
    return strcmp(s, flag) == 0 || (alt && strcmp(s, alt) == 0);
}

static const char *take_value(struct args *a) {
    if (a->i + 1 >= a->argc) {
        usage_error(a->cmd, "%s needs a value", a->argv[a->i]);
        exit(2);
    }
    a->i++;
    return a->argv[a->i];
}

int arg_str(struct args *a, const char *flag, const char *alt, const char **val) {
    if (!is_flag(a, flag, alt)) return 0;
    *val = take_value(a);
    return 1;
}

int arg_int(struct args *a, const char *flag, const char *alt, long lo, long hi, int *val) {
    if (!is_flag(a, flag, alt)) return 0;
    const char *f = a->argv[a->i], *s = take_value(a);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        usage_error(a->cmd, "%s '%s': expected an integer in %ld..%ld", f, s, lo, hi);
        exit(2);
    }
    *val = (int)v;
    return 1;
}

int arg_u64(struct args *a, const char *flag, uint64_t *val) {
    if (!is_flag(a, flag, NULL)) return 0;
    const char *f = a->argv[a->i], *s = take_value(a);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-') {
        usage_error(a->cmd, "%s '%s': expected a non-negative integer", f, s);
        exit(2);
    }
    *val = v;
    return 1;
}

int arg_dbl(struct args *a, const char *flag, double lo, double hi, double *val) {
    if (!is_flag(a, flag, NULL)) return 0;
    const char *f = a->argv[a->i], *s = take_value(a);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        usage_error(a->cmd, "%s '%s': expected a number in %g..%g", f, s, lo, hi);
        exit(2);
    }
    *val = v;
    return 1;
}

int arg_flag(struct args *a, const char *flag) { return is_flag(a, flag, NULL); }

int arg_unknown(struct args *a) {
    return usage_error(a->cmd, "unknown argument '%s'", a->argv[a->i]);
}

void ctx_opts_init(struct ctx_opts *o) {
    memset(o, 0, sizeof *o);
    o->p = kvc_ctx_default_params();
    o->model = NULL;
}

int ctx_opts_parse(struct ctx_opts *o, struct args *a) {
    const char *s;
    if (arg_str(a, "-m", "--model", &o->model)) return 1;
    if (arg_int(a, "-c", "--ctx-size", 1, 1 << 24, &o->p.n_ctx)) return 1;
    if (arg_int(a, "-b", "--batch-size", 1, 65536, &o->p.n_batch)) return 1;
    if (arg_int(a, "-t", "--threads", 1, 256, &o->p.n_threads)) return 1;
    if (arg_flag(a, "--no-mmap")) {
        o->load_flags |= KVC_LOAD_NO_MMAP;
        return 1;
    }
    if (arg_flag(a, "--mmap")) {
        o->load_flags &= ~KVC_LOAD_NO_MMAP;
        return 1;
    }
    int r = arg_str(a, "--kv-k", NULL, &o->p.kv_k) || arg_str(a, "--kv-v", NULL, &o->p.kv_v) ||
            arg_int(a, "--kv-sinks", NULL, 0, 1 << 24, &o->p.kv_sinks) ||
            arg_int(a, "--kv-recent", NULL, 0, 1 << 24, &o->p.kv_recent) ||
            arg_str(a, "--kv-window", NULL, &o->p.kv_window) || arg_str(a, "--kv-calib", NULL, &o->p.kv_calib);
    if (r) o->kv_flags = 1;
    if (!r && arg_str(a, "--kv-preset", NULL, &o->preset_path)) {
        kvc_error e = {0};
        if (kvc_preset_read(o->preset_path, &o->preset, &e)) {
            fprintf(stderr, "kvcodec %s: error: %s\n", a->cmd, e.msg);
            return -1;
        }
        o->p.kv_k = o->preset.kv_k;
        o->p.kv_v = o->preset.kv_v;
        o->p.kv_sinks = o->preset.sinks;
        o->p.kv_recent = o->preset.recent;
        o->p.kv_window = o->preset.kv_window;
        o->p.kv_calib = o->preset_path;
        r = 1;
    }
    if (r && o->preset_path && o->kv_flags) {
        usage_error(a->cmd, "--kv-preset FILE replaces --kv-k, --kv-v, --kv-sinks, --kv-recent, --kv-window and --kv-calib: "
                            "give one or the other");
        return -1;
    }
    if (r) return 1;
    if (arg_u64(a, "--kv-seed", &o->p.seed)) return 1;
    if (arg_str(a, "--isa", NULL, &s)) {
        if (strcmp(s, "auto") == 0) o->p.isa = -1;
        else if (strcmp(s, "scalar") == 0) o->p.isa = 0;
        else if (strcmp(s, "avx2") == 0) o->p.isa = 1;
        else if (strcmp(s, "avx512") == 0) o->p.isa = 2;
        else {
            usage_error(a->cmd, "--isa '%s': expected auto, scalar, avx2 or avx512", s);
            return -1;
        }
        return 1;
    }
    return 0;
}

void ctx_opts_help(FILE *f, int with_kv) {
    fprintf(f,
            "  -m, --model FILE     GGUF model (default: models/kvref-q4_0.gguf, the embedded default)\n"
            "  -c, --ctx-size N     KV cache positions to allocate (default 2048)\n"
            "  -b, --batch-size N   tokens per forward call in prefill (default 512)\n"
            "  -t, --threads N      threads, including the main one (default 2)\n"
            "  --no-mmap, --mmap    read the model into memory (2 MiB pages where the kernel allows:\n"
            "                       slower start, faster decode; bench's default), or map it (the default\n"
            "                       of the other commands)\n"
            "  --isa LEVEL          kernels: auto (default), scalar, avx2, avx512\n");
    if (with_kv)
        fprintf(f,
                "  --kv-k SPEC          key codec (default f16); SPEC = name[:k=v,...], names: %s\n"
                "  --kv-v SPEC          value codec (default f16)\n"
                "  --kv-sinks N         keep the first N positions in the window codec (default 0)\n"
                "  --kv-recent N        keep the last N positions in the window codec (default 0)\n"
                "  --kv-window SPEC     codec of the sink and recent rows: f16 (default), q8_0, bf16, f32,\n"
                "                       q4_0 (their bits are counted in the cache's bits per element)\n"
                "  --kv-calib FILE      calibration file for codecs that need one (pca)\n"
                "  --kv-preset FILE     a preset (kvcodec preset): its codecs, sinks, recent window, window\n"
                "                       codec and calibration, in place of the six flags above\n"
                "  --kv-seed N          seed of codecs with random state (default 0x6b7663)\n",
                kvc_codec_list());
}

int cli_parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (!s[0] || s[0] == '-' || s[0] == '+') return -1;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0)) return -1;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1048576.0; end++; break;
    case 'g': case 'G': mul = 1073741824.0; end++; break;
    case 't': case 'T': mul = 1099511627776.0; end++; break;
    default: break;
    }
    if (mul > 1 && *end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    double b = floor(v * mul);
    if (!(b >= 1) || b > 1.8e19) return -1;
    *out = (uint64_t)b;
    return 0;
}

double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *default_model_path(void) {
    static char buf[4096 + 64];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"models/kvref-q4_0.gguf", "../models/kvref-q4_0.gguf"};
        for (int i = 0; i < 2; i++) {
            snprintf(buf, sizeof buf, "%s/%s", exe, rel[i]);
            if (file_exists(buf)) return buf;
        }
    }
    return "models/kvref-q4_0.gguf";
}

kvc_status load_model(const char *cmd, const char *path, unsigned flags, kvc_model **m) {
    kvc_error e = {0};
    kvc_status st = kvc_model_load_ex(path ? path : default_model_path(), flags, m, &e);
    if (st) lib_error(cmd, &e);
    return st;
}

/* Copy of text with invalid UTF-8 replaced by U+FFFD (jansson accepts only valid UTF-8). */
static char *utf8_clean(const char *s, size_t n, size_t *out_len) {
    char *o = malloc(3 * n + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        const unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        int ok = k > 0 && i + k <= n;
        for (size_t t = 1; ok && t < k; t++) ok = ((unsigned char)s[i + t] & 0xC0) == 0x80;
        if (ok && k == 3) {
            const unsigned char c1 = (unsigned char)s[i + 1];
            ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
        }
        if (ok && k == 4) {
            const unsigned char c1 = (unsigned char)s[i + 1];
            ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
        }
        if (ok) {
            memcpy(o + j, s + i, k);
            j += k;
            i += k;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        }
    }
    o[j] = 0;
    *out_len = j;
    return o;
}

json_t *cli_json_text(const char *s, size_t n) {
    size_t m;
    char *c = utf8_clean(s, n, &m);
    json_t *j = c ? json_stringn(c, m) : NULL;
    free(c);
    return j;
}

void json_str(FILE *f, const char *s) {
    json_t *j = cli_json_text(s, strlen(s));
    if (!j || json_dumpf(j, f, JSON_ENCODE_ANY)) fputs("\"\"", f);
    json_decref(j);
}

int cli_json_print(json_t *v) {
    int rc = v ? json_dumpf(v, stdout, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : -1;
    putchar('\n');
    json_decref(v);
    return rc;
}

char *read_file(const char *cmd, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "kvcodec %s: error: %s: cannot open: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "kvcodec %s: error: %s: %s\n", cmd, path, bad ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    /* NUL-terminate (callers may treat the text as a C string); len excludes it */
    char *nb = realloc(buf, n + 1);
    if (!nb) {
        free(buf);
        fprintf(stderr, "kvcodec %s: error: %s: out of memory\n", cmd, path);
        return NULL;
    }
    nb[n] = 0;
    *len = n;
    return nb;
}
