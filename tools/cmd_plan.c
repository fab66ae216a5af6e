/* cmd_plan.c - `kvcodec plan`: for each KV codec and RAM budget, the longest context that
 * fits in memory, or the predicted peak at given contexts. Parses flags, calls
 * kvc_plan_memory (src/plan.c: the memory model, sized by the code that allocates) and prints;
 * see help() for the formula. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CODECS 64
#define MAX_RAMS 32
#define ENGINE_MAX_CTX KVC_PLAN_MAX_CTX

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec plan [-m MODEL] --ram LIST [--codecs LIST] [-b BATCH] [-t N] [--json]\n\n"
            "For each KV codec and RAM budget, the longest context (KV cache positions) that fits.\n"
            "  --ram LIST           comma-separated budgets: 512M, 2G, 1.5G, 3000000000 (K/M/G/T are\n"
            "                       binary: 1G = 1073741824 bytes; a trailing B or iB is accepted)\n"
            "  --codecs LIST        codec specs separated by ';' (or by ',' when no spec has parameters);\n"
            "                       \"K/V\" gives keys and values different codecs. Default: --kv-k/--kv-v\n"
            "                       if given, else every codec of the table that runs on this model's\n"
            "                       head dim without calibration\n"
            "  --ctx LIST           instead of (or with) --ram: the predicted peak memory at these contexts\n"
            "                       (comma-separated positions), per codec: weights + buffers + KV, the\n"
            "                       figure bench's peak RSS is checked against\n"
            "  --reserve BYTES      memory counted for the process itself: code, libraries, tokenizer,\n"
            "                       stacks (default 16M); add the OS's share to it if the budget is a device's\n"
            "  --json               one JSON list of rows instead of the table (with both --ctx and --ram:\n"
            "                       one object {\"ctx\": [...], \"ram\": [...]})\n"
            "  -m, --model FILE     GGUF model (default: the embedded models/kvref-q4_0.gguf)\n"
            "  -b, --batch-size N   prefill batch the buffers are sized for (default 512)\n"
            "  -t, --threads N      threads (each has its own attention scratch) (default 2)\n"
            "  --kv-k SPEC, --kv-v SPEC, --kv-sinks N, --kv-recent N, --kv-window SPEC, --kv-calib FILE:\n"
            "                       as for run (sinks and recent rows are counted in their window codec,\n"
            "                       f16 by default)\n\n"
            "Memory model (bytes; B = batch, T = threads, E = n_embd, Q = n_head*hd, KV = n_head_kv*hd,\n"
            "F = n_ff, V = n_vocab, hd = head dim, N = context):\n"
            "  weights    tensor data of the GGUF (memory-mapped, all pages touched)\n"
            "  buffers    4*B*(2E + 2Q + 2KV + 2F + V + hd)   x, xb, q, att, k, v, hb, hb2, logits, rope\n"
            "             + 4*T*2*B*hd                        per-thread K/V row staging\n"
            "             + 2*w*KV*B                          stage of the batch's K and V rows in the window\n"
            "                                                 codec, w bytes per element (f16 2, q8_0 34/32)\n"
            "             + B*max(E,Q,F)/32*34                Q8_0 activation rows (quantized weights only)\n"
            "             + T*4*(N + 65536 + 256*5*hd + 512   per-thread attention scratch: scores of N\n"
            "                    + 768*hd)                    (at least 256 x 256), 256 query rows' prepared\n"
            "                                                 queries and sums, a block of 256 K and V rows\n"
            "                                                 decoded and the K block transposed\n"
            "                                                 (codec-space sizes taken as hd)\n"
            "             + 4*T*256*(4 + 2*hd)*4              partial results of split attention\n"
            "             + reserve\n"
            "  KV         (N - sinks)*bpt + (sinks + recent)*bpt_w, bpt = n_layer*KV*(bits_K + bits_V)/8,\n"
            "             bpt_w the same for the window codec on both sides\n"
            "  max_context = floor((ram - weights - overhead_fixed - kv_fixed) / (bpt + 4*T)), where\n"
            "  overhead_fixed is the buffers without the 4*T*N term and kv_fixed the window rows' extra.\n"
            "  overhead_bytes in the output is the buffers at max_context.\n");
}

struct pair {
    char k[KVC_SPEC_MAX], v[KVC_SPEC_MAX];
};

/* Split "a/b" into a pair (K = V when there is no '/'). */
static int split_pair(const char *item, struct pair *p) {
    const char *sl = strchr(item, '/');
    size_t lk = sl ? (size_t)(sl - item) : strlen(item);
    const char *v = sl ? sl + 1 : item;
    if (lk == 0 || lk >= sizeof p->k || !*v || strlen(v) >= sizeof p->v || strchr(v, '/')) return -1;
    memcpy(p->k, item, lk);
    p->k[lk] = 0;
    strcpy(p->v, v);
    return 0;
}

/* ';'-separated list, or ','-separated when there is no ';' and no parameter ('='). */
static int parse_codec_list(const char *cmd, const char *s, struct pair *out, int cap) {
    char *buf = strdup(s);
    if (!buf) return -1;
    const char *sep = strchr(s, ';') || strchr(s, '=') ? ";" : ",";
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, sep, &save); t; t = strtok_r(NULL, sep, &save)) {
        while (*t == ' ') t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ') t[--l] = 0;
        if (!*t) continue;
        if (n == cap) { free(buf); usage_error(cmd, "--codecs: more than %d entries", cap); return -1; }
        if (split_pair(t, &out[n])) { usage_error(cmd, "--codecs: bad entry '%s' (expected SPEC or K/V)", t); free(buf); return -1; }
        n++;
    }
    free(buf);
    if (n == 0) { usage_error(cmd, "--codecs '%s': no codec given", s); return -1; }
    return n;
}

/* The plan of one K/V pair at context n_ctx (0 = none) and budget ram (0 = none). */
static kvc_status plan_pair(const kvc_model *m, const struct ctx_opts *o, uint64_t reserve, const char *k,
                            const char *v, long n_ctx, uint64_t ram, struct kvc_plan_result *r, kvc_error *e) {
    struct kvc_plan_params p = kvc_plan_default_params();
    p.ctx = o->p;
    p.ctx.kv_k = k;
    p.ctx.kv_v = v;
    p.ctx.n_ctx = (int)n_ctx;
    p.reserve_bytes = reserve;
    p.ram_bytes = ram;
    return kvc_plan_memory(m, &p, r, e);
}

int cmd_plan(int argc, char **argv) {
    struct args a = {argc, 1, argv, "plan"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    const char *rams_s = NULL, *codecs_s = NULL, *reserve_s = NULL, *ctx_s = NULL;
    int json = 0, kv_given = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        const char *flag = argv[a.i];
        if (arg_flag(&a, "-c") || arg_flag(&a, "--ctx-size"))
            return usage_error(a.cmd, "-c: plan computes the context; it takes no -c");
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) {
            if (!strcmp(flag, "--kv-k") || !strcmp(flag, "--kv-v")) kv_given = 1;
            continue;
        }
        if (arg_str(&a, "--ram", NULL, &rams_s) || arg_str(&a, "--codecs", NULL, &codecs_s) ||
            arg_str(&a, "--reserve", NULL, &reserve_s) || arg_str(&a, "--ctx", NULL, &ctx_s))
            continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        return arg_unknown(&a);
    }
    if (!rams_s && !ctx_s) return usage_error(a.cmd, "--ram LIST or --ctx LIST is required (e.g. --ram 2G,4G,8G)");
    long ctxs[MAX_RAMS];
    int n_ctx = 0;
    if (ctx_s) {
        const char *q = ctx_s;
        for (;;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q || v < 1 || v > ENGINE_MAX_CTX || (*end && *end != ',') || n_ctx == MAX_RAMS)
                return usage_error(a.cmd, "--ctx '%s': expected up to %d comma-separated positions in 1..%d", ctx_s,
                                   MAX_RAMS, ENGINE_MAX_CTX);
            ctxs[n_ctx++] = v;
            if (!*end) break;
            q = end + 1;
        }
    }
    if (codecs_s && kv_given) return usage_error(a.cmd, "give either --codecs or --kv-k/--kv-v, not both");
    uint64_t rams[MAX_RAMS], reserve = kvc_plan_default_params().reserve_bytes;
    int n_ram = 0;
    if (rams_s) {
        char *buf = strdup(rams_s);
        if (!buf) return 1;
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (n_ram == MAX_RAMS) { free(buf); return usage_error(a.cmd, "--ram: more than %d budgets", MAX_RAMS); }
            if (cli_parse_size(t, &rams[n_ram])) {
                int rc = usage_error(a.cmd, "--ram '%s': expected sizes like 512M, 2G, 1.5G or 3000000000", t);
                free(buf);
                return rc;
            }
            n_ram++;
        }
        free(buf);
        if (!n_ram) return usage_error(a.cmd, "--ram '%s': no budget given", rams_s);
    }
    if (reserve_s && strcmp(reserve_s, "0") != 0 && cli_parse_size(reserve_s, &reserve))
        return usage_error(a.cmd, "--reserve '%s': expected a size like 16M", reserve_s);
    if (reserve_s && strcmp(reserve_s, "0") == 0) reserve = 0;

    struct pair pairs[MAX_CODECS];
    int n_pair = 0, defaults = 0;
    if (codecs_s) {
        if ((n_pair = parse_codec_list(a.cmd, codecs_s, pairs, MAX_CODECS)) < 0) return 2;
    } else if (kv_given) {
        snprintf(pairs[0].k, sizeof pairs[0].k, "%s", o.p.kv_k);
        snprintf(pairs[0].v, sizeof pairs[0].v, "%s", o.p.kv_v);
        n_pair = 1;
    } else {
        defaults = 1;
    }

    kvc_model *m;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) return 1;
    const struct kvc_model_info *in = kvc_model_get_info(m);
    kvc_error e = {0};
    if (defaults) {
        char *list = strdup(kvc_codec_list());
        if (!list) { kvc_model_free(m); return 1; }
        for (char *save = NULL, *t = strtok_r(list, ", ", &save); t && n_pair < MAX_CODECS; t = strtok_r(NULL, ", ", &save)) {
            double bits;
            if (kvc_codec_bits(t, in->head_dim, &bits, &e)) continue;
            snprintf(pairs[n_pair].k, sizeof pairs[n_pair].k, "%s", t);
            snprintf(pairs[n_pair].v, sizeof pairs[n_pair].v, "%s", t);
            n_pair++;
        }
        free(list);
    }

    struct kvc_plan_result base; /* f16/f16: the fixed parts for the header */
    if (plan_pair(m, &o, reserve, "f16", "f16", 0, 0, &base, &e)) { kvc_model_free(m); return lib_error(a.cmd, &e); }
    const double weights = base.weights_bytes, over_fixed = base.overhead_fixed_bytes;
    const double per_tok_over = base.overhead_per_token_bytes;

    json_t *jctx = NULL; /* --json with --ctx and --ram: one object {"ctx": [...], "ram": [...]} */
    if (n_ctx) { /* predicted peak memory at given contexts */
        jctx = json ? json_array() : NULL;
        if (!json)
            printf("| codec K/V | context | weights MiB | buffers MiB | KV MiB | predicted peak MiB |\n"
                   "|---|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < n_pair; i++) {
            for (int j = 0; j < n_ctx; j++) {
                struct kvc_plan_result pr;
                if (plan_pair(m, &o, reserve, pairs[i].k, pairs[i].v, ctxs[j], 0, &pr, &e)) {
                    if (defaults) break;
                    json_decref(jctx);
                    kvc_model_free(m);
                    return e.status == KVC_ERR_ARG ? (fprintf(stderr, "kvcodec plan: %s\n", e.msg), 2) : lib_error(a.cmd, &e);
                }
                double over = pr.overhead_bytes_at_ctx, kv = pr.kv_bytes_at_ctx, total = pr.predicted_peak_bytes;
                if (json) {
                    json_t *r = json_object();
                    json_object_set_new(r, "kv_k", kvc_json_str(pairs[i].k));
                    json_object_set_new(r, "kv_v", kvc_json_str(pairs[i].v));
                    json_object_set_new(r, "n_ctx", json_integer(ctxs[j]));
                    json_object_set_new(r, "weights_bytes", json_integer((json_int_t)llround(weights)));
                    json_object_set_new(r, "overhead_bytes", json_integer((json_int_t)llround(over)));
                    json_object_set_new(r, "kv_bytes", json_integer((json_int_t)llround(kv)));
                    json_object_set_new(r, "predicted_peak_bytes", json_integer((json_int_t)llround(total)));
                    json_object_set_new(r, "batch", json_integer(o.p.n_batch));
                    json_object_set_new(r, "threads", json_integer(o.p.n_threads));
                    json_array_append_new(jctx, r);
                } else {
                    printf("| %s/%s | %ld | %.1f | %.1f | %.1f | %.1f |\n", pairs[i].k, pairs[i].v, ctxs[j],
                           weights / 1048576.0, over / 1048576.0, kv / 1048576.0, total / 1048576.0);
                }
            }
        }
        if (!n_ram) {
            kvc_model_free(m);
            return json && cli_json_print(jctx) ? 1 : 0;
        }
    }
    if (!json) {
        printf("model %s: %s, weights %.1f MiB mapped, trained context %d, head dim %d\n",
               o.model ? o.model : default_model_path(), in->name, weights / 1048576.0, in->n_ctx_train, in->head_dim);
        printf("buffers for -b %d -t %d: %.1f MiB fixed (incl. reserve %.1f MiB) + %.0f bytes per context position\n",
               o.p.n_batch, o.p.n_threads, over_fixed / 1048576.0, (double)reserve / 1048576.0, per_tok_over);
        if (o.p.kv_sinks || o.p.kv_recent) printf("sinks %d, recent %d rows kept in f16\n", o.p.kv_sinks, o.p.kv_recent);
        printf("\n| %-22s | %9s | %11s | %14s |", "codec K/V", "bits/elem", "bytes/token", "KV @ trained");
        for (int r = 0; r < n_ram; r++) {
            char h[32];
            double g = (double)rams[r] / 1073741824.0;
            if (rams[r] % (1ull << 20) == 0 && rams[r] < (1ull << 30)) snprintf(h, sizeof h, "%.0f MiB", rams[r] / 1048576.0);
            else snprintf(h, sizeof h, "%.4g GiB", g);
            printf(" ctx @ %-10s |", h);
        }
        printf("\n|%s|%s|%s|%s|", "------------------------", "----------:", "------------:", "---------------:");
        for (int r = 0; r < n_ram; r++) printf("-----------------:|");
        printf("\n");
    }
    json_t *jrows = json ? json_array() : NULL;
    int rc = 0;
    for (int i = 0; i < n_pair; i++) {
        struct kvc_plan_result pr;
        kvc_status st = plan_pair(m, &o, reserve, pairs[i].k, pairs[i].v, 0, 0, &pr, &e);
        if (st) {
            if (defaults) continue; /* needs calibration or parameters: not a default */
            json_decref(jrows);
            json_decref(jctx);
            rc = st == KVC_ERR_ARG ? (fprintf(stderr, "kvcodec plan: %s\n", e.msg), 2) : lib_error(a.cmd, &e);
            kvc_model_free(m);
            return rc;
        }
        int S = o.p.kv_sinks, R = o.p.kv_recent;
        double bpt = pr.kv_bytes_per_token, bk = pr.bits_k, bv = pr.bits_v;
        double kv_fixed = pr.kv_fixed_bytes, kv_train = pr.kv_bytes_trained_ctx;
        char name[2 * KVC_SPEC_MAX];
        const int w = KVC_SPEC_MAX - 1;
        if (strcmp(pairs[i].k, pairs[i].v) == 0) snprintf(name, sizeof name, "%.*s", w, pairs[i].k);
        else snprintf(name, sizeof name, "%.*s/%.*s", w, pairs[i].k, w, pairs[i].v);
        if (!json) printf("| %-22s | %9.3f | %11.0f | %10.2f MiB |", name, (bk + bv) / 2, bpt, kv_train / 1048576.0);
        for (int r = 0; r < n_ram; r++) {
            if ((st = plan_pair(m, &o, reserve, pairs[i].k, pairs[i].v, 0, rams[r], &pr, &e))) {
                json_decref(jrows);
                json_decref(jctx);
                kvc_model_free(m);
                return lib_error(a.cmd, &e);
            }
            double mc = (double)pr.max_context, over = pr.overhead_bytes_at_max, kv_at = pr.kv_bytes_at_max;
            int capped = pr.capped_at_engine_limit;
            if (json) {
                json_t *j = json_object();
#define JI(k, v) json_object_set_new(j, k, json_integer((json_int_t)llround(v)))
                json_object_set_new(j, "codec", kvc_json_str(name));
                json_object_set_new(j, "kv_k", kvc_json_str(pairs[i].k));
                json_object_set_new(j, "kv_v", kvc_json_str(pairs[i].v));
                JI("ram_bytes", (double)rams[r]);
                JI("max_context", mc);
                json_object_set_new(j, "capped_at_engine_limit", json_boolean(capped));
                json_object_set_new(j, "fits_trained_ctx", json_boolean(pr.fits_trained_ctx));
                json_object_set_new(j, "bits_k", kvc_json_real(bk, 4));
                json_object_set_new(j, "bits_v", kvc_json_real(bv, 4));
                json_object_set_new(j, "bits_per_element", kvc_json_real((bk + bv) / 2, 4));
                JI("kv_bytes_per_token", bpt);
                JI("kv_fixed_bytes", kv_fixed);
                JI("kv_bytes_at_max", kv_at);
                JI("kv_bytes_trained_ctx", kv_train);
                JI("n_ctx_train", in->n_ctx_train);
                JI("weights_bytes", weights);
                JI("overhead_bytes", over);
                JI("overhead_fixed_bytes", over_fixed);
                JI("overhead_per_token_bytes", per_tok_over);
                JI("reserve_bytes", (double)reserve);
                JI("batch", o.p.n_batch);
                JI("threads", o.p.n_threads);
                JI("kv_sinks", S);
                JI("kv_recent", R);
#undef JI
                json_array_append_new(jrows, j);
            } else {
                printf(" %17.0f |", mc);
            }
        }
        if (!json) printf("\n");
    }
    if (json && jctx) rc = cli_json_print(json_pack("{s:o, s:o}", "ctx", jctx, "ram", jrows)) ? 1 : rc;
    else if (json) rc = cli_json_print(jrows) ? 1 : rc;
    else
        printf("\nmax context = floor((RAM - weights - buffers - f16 rows) / (KV bytes per token + %.0f)); "
               "contexts beyond the trained %d run but are not what the model learned.\n",
               per_tok_over, in->n_ctx_train);
    kvc_model_free(m);
    return rc;
}
