/* cmd_serve.c - `kvcodec serve`: an OpenAI-compatible HTTP server (libmicrohttpd, one thread
 * per connection; JSON through jansson) over the engine of src/serve/: /v1/completions,
 * /v1/chat/completions (plain JSON or server-sent events), /v1/models, /health, /metrics.
 * Requests are checked before use (body and header sizes, JSON types, UTF-8, prompt length). */
#include "cli.h"
#include "serve/request.h"
#include "serve/sched.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY (1u << 20)          /* bytes of a request body */
#define MAX_HEADER_MEM (32u << 10)   /* per-connection memory for the request line and headers */
#define MAX_CONNECTIONS 512

struct server {
    const kvc_model *m;
    serve_sched *s;
    const char *model_id;
    const char *chat_format; /* NULL: chat answers 400 with chat_err */
    char chat_err[sizeof(((kvc_error *)0)->msg)];
    const char *api_key;
    pthread_mutex_t tok_mu;  /* tokenizer calls, one at a time */
    unsigned long next_id;
    time_t started;
};

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec serve [-m MODEL] --kv-budget SIZE [options]\n\n"
            "OpenAI-compatible HTTP server: POST /v1/completions, POST /v1/chat/completions (\"stream\": true\n"
            "for server-sent events), GET /v1/models, GET /health, GET /metrics (Prometheus text).\n"
            "All sequences share one KV pool; each step evaluates the next token of every active\n"
            "sequence and prompt chunks of new ones together (continuous batching).\n"
            "KV pool: a sequence takes blocks of 256 positions as it grows; a request is admitted when\n"
            "a slot (--parallel) and its prompt's blocks + 1 are free, else it waits in the queue (FIFO).\n"
            "When the pool runs out mid-generation, the youngest active sequence is preempted (as vLLM\n"
            "does): its blocks are freed at once and it waits at the head of the queue, then its prompt\n"
            "and the tokens it generated are evaluated again and generation goes on; text already\n"
            "streamed stays, greedy output is unchanged. A finished or cancelled sequence returns its\n"
            "blocks at once. /metrics: kvcodec_kv_blocks_used, kvcodec_preemptions_total.\n"
            "  --kv-budget SIZE     KV bytes for all sequences together: 512M, 1G, 1.5G, ... (default 256M);\n"
            "                       it must hold one sequence of --ctx-per-seq positions\n"
            "  --ctx-per-seq N      positions per sequence, prompt + generated (default 2048);\n"
            "                       a sequence that reaches it ends with finish_reason \"length\"\n"
            "  --parallel N         most sequences generated at once (default 4)\n"
            "  --queue N            most requests waiting; past it: 503 with Retry-After (default 64)\n"
            "  --alias NAME         model id in the API (default: the file's stem)\n"
            "  --chat-format NAME   chat format for /v1/chat/completions: %s\n"
            "                       (default: detected from the model's tokenizer.chat_template;\n"
            "                       without either, chat requests get 400)\n"
            "  --host ADDR          IPv4 address to bind (default 127.0.0.1)\n"
            "  --port N             TCP port (default 8080; 0 = any free port, printed on stderr)\n"
            "  --api-key KEY        require \"Authorization: Bearer KEY\" (not on /health)\n",
            kvc_chat_format_list());
    ctx_opts_help(f, 1);
}

/* ---- responses ---- */

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *type, const char *body,
                                 size_t len, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *j, const char *retry_after) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return send_text(conn, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 38, NULL);
    enum MHD_Result ret = send_text(conn, status, "application/json", s, strlen(s), retry_after);
    free(s);
    return ret;
}

/* OpenAI error shape: {"error": {"message", "type", "param", "code"}}. */
static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *param, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                     : status == 503 ? "server_overloaded" : status >= 500 ? "server_error" : "invalid_request_error";
    json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "message", msg, "type", type, "param",
                          param ? json_string(param) : json_null(), "code", json_null());
    return send_json(conn, status, json_pack("{s:o}", "error", e), status == 503 ? "1" : NULL);
}

/* ---- request parsing (src/serve/request.c checks the body; here it is tokenized) ---- */

struct gen_req {
    int chat, stream;
    struct serve_req_params p;
    struct serve_request rq;
    int32_t *ids;
};

static void gen_req_free(struct gen_req *g) {
    free(g->ids);
    serve_request_free(&g->rq);
}

/* Parse, check and tokenize a completion / chat body into g; on error an answer was queued (*ret). */
static int parse_gen(struct server *sv, struct MHD_Connection *conn, const char *body, size_t len, int chat,
                     struct gen_req *g, enum MHD_Result *ret) {
    memset(g, 0, sizeof *g);
    g->chat = chat;
    const struct serve_request_ctx cx = {.model_id = sv->model_id, .chat_format = sv->chat_format, .no_chat = sv->chat_err};
    struct serve_request_error re;
    if (serve_request_parse(&cx, body, len, chat, &g->rq, &re)) {
        *ret = send_error(conn, (unsigned)re.status, re.param[0] ? re.param : NULL, "%s", re.msg);
        return -1;
    }
    const struct serve_request *q = &g->rq;
    g->stream = q->stream;
    kvc_error e = {0};
    int n_ids = 0;
    pthread_mutex_lock(&sv->tok_mu);
    kvc_status ts = kvc_vocab_tokenize(kvc_model_vocab(sv->m), q->text, q->text_len, 1, chat, &g->ids, &n_ids, &e);
    pthread_mutex_unlock(&sv->tok_mu);
    if (ts) {
        *ret = send_error(conn, 400, chat ? "messages" : "prompt", "%s", e.msg);
        return -1;
    }
    g->p.prompt = g->ids;
    g->p.n_prompt = n_ids;
    g->p.max_tokens = q->max_tokens;
    g->p.temperature = q->temperature;
    g->p.top_p = q->top_p;
    g->p.top_k = q->top_k;
    for (int i = 0; i < q->n_stop; i++) g->p.stop[i] = q->stop[i];
    g->p.n_stop = q->n_stop;
    g->p.seed = q->has_seed ? q->seed
                            : (uint64_t)time(NULL) ^ ((uint64_t)__atomic_add_fetch(&sv->next_id, 1, __ATOMIC_RELAXED) << 32);
    return 0;
}

/* ---- generation answers ---- */

static json_t *usage_json(const struct serve_progress *pr) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", pr->n_prompt, "completion_tokens", pr->n_gen, "total_tokens",
                     pr->n_prompt + pr->n_gen);
}

static const char *finish_of(const struct serve_progress *pr) {
    return pr->finish && !strcmp(pr->finish, "length") ? "length" : "stop";
}

/* One chat choice: a final one (text = whole answer, finish set) or a stream chunk. */
static json_t *choice_json(int stream, const char *text, size_t n, int first, const char *finish) {
    json_t *fin = finish ? json_string(finish) : json_null();
    if (!stream)
        return json_pack("{s:i, s:{s:s, s:o}, s:o}", "index", 0, "message", "role", "assistant", "content",
                         cli_json_text(text, n), "finish_reason", fin);
    json_t *delta = finish ? json_object() : first ? json_pack("{s:s, s:o}", "role", "assistant", "content", cli_json_text(text, n))
                                                   : json_pack("{s:o}", "content", cli_json_text(text, n));
    return json_pack("{s:i, s:o, s:o}", "index", 0, "delta", delta, "finish_reason", fin);
}

static json_t *envelope(struct server *sv, int chat, int stream, unsigned long id, json_t *choice) {
    char ids[48];
    snprintf(ids, sizeof ids, "%s-%lu", chat ? "chatcmpl" : "cmpl", id);
    const char *obj = !chat ? "text_completion" : stream ? "chat.completion.chunk" : "chat.completion";
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", ids, "object", obj, "created", (json_int_t)time(NULL), "model",
                     sv->model_id, "choices", choice);
}

/* One /v1/completions choice ("logprobs": null). */
static json_t *completion_choice(const char *text, size_t n, const char *finish) {
    return json_pack("{s:o, s:i, s:n, s:o}", "text", cli_json_text(text, n), "index", 0, "logprobs", "finish_reason",
                     finish ? json_string(finish) : json_null());
}

struct stream_state {
    struct server *sv;
    serve_req *r;
    int chat, first, sent_final, finished;
    unsigned long id;
    size_t have;            /* bytes of generated text sent */
    char *tbuf;             /* new text from serve_wait */
    size_t tcap;
    char *out;              /* SSE bytes waiting to go out */
    size_t out_len, out_pos;
};

static int sse_event(struct stream_state *st, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return -1;
    size_t n = strlen(s);
    free(st->out);
    st->out = malloc(n + 9);
    if (!st->out) {
        free(s);
        return -1;
    }
    memcpy(st->out, "data: ", 6);
    memcpy(st->out + 6, s, n);
    memcpy(st->out + 6 + n, "\n\n", 3);
    st->out_len = n + 8;
    st->out_pos = 0;
    free(s);
    return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct stream_state *st = cls;
    while (st->out_pos >= st->out_len) {
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (st->sent_final) {
            free(st->out);
            st->out = strdup("data: [DONE]\n\n");
            if (!st->out) return MHD_CONTENT_READER_END_WITH_ERROR;
            st->out_len = strlen(st->out);
            st->out_pos = 0;
            st->finished = 1;
            break;
        }
        struct serve_progress pr;
        size_t n = serve_wait(st->r, st->have, &st->tbuf, &st->tcap, &pr, 1000);
        json_t *choice = NULL;
        if (n > 0 || (st->first && st->chat)) {
            choice = st->chat ? choice_json(1, st->tbuf ? st->tbuf : "", n, st->first, NULL)
                              : completion_choice(st->tbuf, n, NULL);
            st->first = 0;
            st->have += n;
        } else if (pr.done) {
            choice = st->chat ? choice_json(1, "", 0, 0, finish_of(&pr)) : completion_choice("", 0, finish_of(&pr));
            st->sent_final = 1;
        } else {
            continue; /* nothing new yet */
        }
        json_t *env = envelope(st->sv, st->chat, 1, st->id, choice);
        if (st->sent_final && env) json_object_set_new(env, "usage", usage_json(&pr));
        if (sse_event(st, env)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->out_len - st->out_pos < max ? st->out_len - st->out_pos : max;
    memcpy(buf, st->out + st->out_pos, n);
    st->out_pos += n;
    return (ssize_t)n;
}

/* The connection is gone or the stream ended: cancel the sequence (frees its KV at once). */
static void stream_free(void *cls) {
    struct stream_state *st = cls;
    serve_cancel(st->r);
    serve_release(st->r);
    free(st->tbuf);
    free(st->out);
    free(st);
}

static enum MHD_Result generate(struct server *sv, struct MHD_Connection *conn, const char *body, size_t len, int chat) {
    struct gen_req g;
    enum MHD_Result ret = MHD_NO;
    if (parse_gen(sv, conn, body, len, chat, &g, &ret)) {
        gen_req_free(&g);
        return ret;
    }
    serve_req *r = NULL;
    const enum serve_submit_status ss = serve_submit(sv->s, &g.p, &r);
    const int n_prompt = g.p.n_prompt;
    gen_req_free(&g);
    switch (ss) {
    case SERVE_QUEUED: break;
    case SERVE_TOO_LONG:
        return send_error(conn, 400, chat ? "messages" : "prompt",
                          "the prompt has %d tokens; --ctx-per-seq leaves no room to generate", n_prompt);
    case SERVE_FULL: return send_error(conn, 503, NULL, "the server is busy: the queue is full; retry later");
    case SERVE_CLOSED: return send_error(conn, 503, NULL, "the server is shutting down");
    default: return send_error(conn, 500, NULL, "out of memory");
    }
    const unsigned long id = __atomic_add_fetch(&sv->next_id, 1, __ATOMIC_RELAXED);
    if (g.stream) {
        struct stream_state *st = calloc(1, sizeof *st);
        if (!st) {
            serve_cancel(r);
            serve_release(r);
            return send_error(conn, 500, NULL, "out of memory");
        }
        *st = (struct stream_state){.sv = sv, .r = r, .chat = chat, .first = 1, .id = id};
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, st, stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        ret = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    char *buf = NULL;
    size_t cap = 0, have = 0;
    struct serve_progress pr = {0};
    char *text = NULL;
    size_t tlen = 0;
    for (;;) {
        size_t n = serve_wait(r, have, &buf, &cap, &pr, -1);
        if (n) {
            char *t = realloc(text, tlen + n + 1);
            if (!t) break;
            text = t;
            memcpy(text + tlen, buf, n);
            tlen += n;
            have += n;
        }
        if (pr.done) break;
    }
    free(buf);
    serve_release(r);
    if (!pr.done) {
        free(text);
        return send_error(conn, 500, NULL, "out of memory");
    }
    if (pr.finish && (!strcmp(pr.finish, "cancelled") || !strcmp(pr.finish, "error"))) {
        free(text);
        return send_error(conn, pr.finish[0] == 'c' ? 503 : 500, NULL, "the request was %s",
                          pr.finish[0] == 'c' ? "cancelled (server shutting down)" : "stopped by an engine error");
    }
    json_t *choice = chat ? choice_json(0, text ? text : "", tlen, 0, finish_of(&pr))
                          : completion_choice(text ? text : "", tlen, finish_of(&pr));
    free(text);
    json_t *env = envelope(sv, chat, 0, id, choice);
    if (env) json_object_set_new(env, "usage", usage_json(&pr));
    return send_json(conn, 200, env, NULL);
}

static enum MHD_Result metrics(struct server *sv, struct MHD_Connection *conn) {
    struct serve_stats st;
    serve_get_stats(sv->s, &st);
    char b[4096];
    int n = snprintf(b, sizeof b,
                     "# HELP kvcodec_requests_active Sequences being generated.\n# TYPE kvcodec_requests_active gauge\n"
                     "kvcodec_requests_active %d\n"
                     "# HELP kvcodec_requests_queued Requests waiting for a sequence slot or KV bytes.\n# TYPE kvcodec_requests_queued gauge\n"
                     "kvcodec_requests_queued %d\n"
                     "# HELP kvcodec_kv_bytes_used KV cache bytes held by active sequences (their blocks and f16 parts).\n# TYPE kvcodec_kv_bytes_used gauge\n"
                     "kvcodec_kv_bytes_used %llu\n"
                     "# HELP kvcodec_kv_bytes_budget KV cache budget (--kv-budget).\n# TYPE kvcodec_kv_bytes_budget gauge\n"
                     "kvcodec_kv_bytes_budget %llu\n"
                     "# HELP kvcodec_prompt_tokens_total Prompt tokens evaluated.\n# TYPE kvcodec_prompt_tokens_total counter\n"
                     "kvcodec_prompt_tokens_total %llu\n"
                     "# HELP kvcodec_generated_tokens_total Tokens generated.\n# TYPE kvcodec_generated_tokens_total counter\n"
                     "kvcodec_generated_tokens_total %llu\n"
                     "# HELP kvcodec_tokens_per_second Generated tokens per second over the last 10 s.\n# TYPE kvcodec_tokens_per_second gauge\n"
                     "kvcodec_tokens_per_second %.2f\n"
                     "# HELP kvcodec_requests_finished_total Requests finished (any reason).\n# TYPE kvcodec_requests_finished_total counter\n"
                     "kvcodec_requests_finished_total %llu\n"
                     "# HELP kvcodec_requests_rejected_total Requests answered 503 (queue full or shutting down).\n# TYPE kvcodec_requests_rejected_total counter\n"
                     "kvcodec_requests_rejected_total %llu\n"
                     "# HELP kvcodec_kv_blocks_used KV pool blocks held by active sequences.\n# TYPE kvcodec_kv_blocks_used gauge\n"
                     "kvcodec_kv_blocks_used %llu\n"
                     "# HELP kvcodec_kv_block_positions Positions per KV pool block.\n# TYPE kvcodec_kv_block_positions gauge\n"
                     "kvcodec_kv_block_positions %d\n"
                     "# HELP kvcodec_preemptions_total Sequences preempted when the KV pool ran out (recomputed later).\n# TYPE kvcodec_preemptions_total counter\n"
                     "kvcodec_preemptions_total %llu\n"
                     "# HELP kvcodec_recomputed_tokens_total Tokens evaluated again for preempted sequences.\n# TYPE kvcodec_recomputed_tokens_total counter\n"
                     "kvcodec_recomputed_tokens_total %llu\n",
                     st.active, st.queued, (unsigned long long)st.kv_used, (unsigned long long)st.kv_budget,
                     (unsigned long long)st.prompt_tokens, (unsigned long long)st.gen_tokens, st.tokens_per_s,
                     (unsigned long long)st.requests_done, (unsigned long long)st.requests_rejected,
                     (unsigned long long)st.blocks_used, st.block_positions, (unsigned long long)st.preemptions,
                     (unsigned long long)st.recomputed_tokens);
    return send_text(conn, 200, "text/plain; version=0.0.4", b, (size_t)n, NULL);
}

/* ---- routing ---- */

struct conn_state {
    char *body;
    size_t len, cap;
    int too_big;
};

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode code) {
    (void)cls, (void)conn, (void)code;
    struct conn_state *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
        *con_cls = NULL;
    }
}

static int authorized(struct server *sv, struct MHD_Connection *conn) {
    if (!sv->api_key) return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    const char *k = h + 7;
    size_t a = strlen(k), b = strlen(sv->api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned)(k[i] ^ sv->api_key[i]);
    return diff == 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    struct server *sv = cls;
    struct conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) { /* body data: keep up to MAX_BODY bytes, count the rest away */
        if (!cs->too_big && cs->len + *upload_size > MAX_BODY) {
            cs->too_big = 1;
            free(cs->body);
            cs->body = NULL;
        }
        if (!cs->too_big) {
            if (cs->len + *upload_size + 1 > cs->cap) {
                size_t cap = cs->cap ? cs->cap : 4096;
                while (cap < cs->len + *upload_size + 1) cap *= 2;
                char *t = realloc(cs->body, cap);
                if (!t) return MHD_NO;
                cs->body = t;
                cs->cap = cap;
            }
            memcpy(cs->body + cs->len, upload, *upload_size);
            cs->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) {
        if (!get) return send_error(conn, 405, NULL, "use GET for %s", url);
        return send_text(conn, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL);
    }
    const int known = !strcmp(url, "/v1/models") || !strcmp(url, "/metrics") || !strcmp(url, "/v1/completions") ||
                      !strcmp(url, "/v1/chat/completions");
    if (!known) return send_error(conn, 404, NULL, "unknown route %s %s", method, url);
    if (!authorized(sv, conn)) return send_error(conn, 401, NULL, "missing or wrong API key (Authorization: Bearer KEY)");
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/metrics")) {
        if (!get) return send_error(conn, 405, NULL, "use GET for %s", url);
        if (!strcmp(url, "/metrics")) return metrics(sv, conn);
        return send_json(conn, 200,
                         json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id", sv->model_id, "object",
                                   "model", "created", (json_int_t)sv->started, "owned_by", "kvcodec"),
                         NULL);
    }
    if (!post) return send_error(conn, 405, NULL, "use POST for %s", url);
    if (cs->too_big) return send_error(conn, 413, NULL, "the request body exceeds %u bytes", MAX_BODY);
    return generate(sv, conn, cs->body ? cs->body : "", cs->len, !strcmp(url, "/v1/chat/completions"));
}

/* ---- the command ---- */

static volatile sig_atomic_t g_quit;
static void on_signal(int sig) {
    (void)sig;
    g_quit = 1;
}

static const char *file_stem(const char *path, char *buf, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, cap, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
    return buf;
}

int cmd_serve(int argc, char **argv) {
    struct args a = {argc, 1, argv, "serve"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    struct serve_params sp = serve_default_params();
    const char *budget_s = NULL, *alias = NULL, *chat_format = NULL, *host = "127.0.0.1", *api_key = NULL;
    int port = 8080;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_str(&a, "--kv-budget", NULL, &budget_s) || arg_int(&a, "--ctx-per-seq", NULL, 2, 1 << 24, &sp.ctx_per_seq) ||
            arg_int(&a, "--parallel", NULL, 1, 4096, &sp.parallel) || arg_int(&a, "--queue", NULL, 0, 1000000, &sp.queue) ||
            arg_str(&a, "--alias", NULL, &alias) || arg_str(&a, "--chat-format", NULL, &chat_format) ||
            arg_str(&a, "--host", NULL, &host) || arg_int(&a, "--port", NULL, 0, 65535, &port) ||
            arg_str(&a, "--api-key", NULL, &api_key))
            continue;
        return arg_unknown(&a);
    }
    if (budget_s && cli_parse_size(budget_s, &sp.kv_budget))
        return usage_error(a.cmd, "--kv-budget \"%s\" is not a size (e.g. 512M, 1G, 1.5G)", budget_s);
    if (alias && (!alias[0] || strlen(alias) > 256)) return usage_error(a.cmd, "--alias must have 1..256 characters");
    if (api_key && !api_key[0]) return usage_error(a.cmd, "--api-key must not be empty");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return usage_error(a.cmd, "--host \"%s\" is not an IPv4 address (e.g. 127.0.0.1, 0.0.0.0)", host);
    kvc_model *m = NULL;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) return 1;
    const char *format = NULL;
    kvc_error fe = {0};
    if (kvc_model_chat_format(m, chat_format, &format, &fe) && chat_format) {
        kvc_model_free(m);
        return usage_error(a.cmd, "%s", fe.msg);
    }
    char stem[256];
    struct server sv = {.m = m, .chat_format = format, .api_key = api_key, .started = time(NULL),
                        .model_id = alias ? alias : file_stem(o.model ? o.model : default_model_path(), stem, sizeof stem)};
    snprintf(sv.chat_err, sizeof sv.chat_err, "%s", fe.msg);
    pthread_mutex_init(&sv.tok_mu, NULL);
    o.p.n_ctx = sp.ctx_per_seq;
    kvc_ctx *c = NULL;
    kvc_error e = {0};
    struct MHD_Daemon *d = NULL;
    int rc = 0;
    if (kvc_ctx_create(m, &o.p, &c, &e) || serve_create(c, m, &sp, &sv.s, &e)) {
        rc = lib_error(a.cmd, &e);
        goto done;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC, 0, NULL, NULL,
                         handler, &sv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)MAX_CONNECTIONS, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MAX_HEADER_MEM,
                         MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "kvcodec serve: error: cannot listen on %s:%d\n", host, port);
        rc = 1;
        goto done;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    struct kvc_kv_info kv;
    kvc_ctx_kv_info(c, &kv);
    fprintf(stderr,
            "kvcodec serve: model %s, KV %s/%s, budget %.1f MiB (%.0f KiB per full sequence of %d positions, %.0f KiB "
            "per block of 256), --parallel %d --queue %d\n",
            sv.model_id, kv.spec_k, kv.spec_v, (double)sp.kv_budget / 1048576.0,
            (double)kvc_ctx_seq_kv_bytes(c, sp.ctx_per_seq) / 1024.0, sp.ctx_per_seq,
            (double)(kvc_ctx_seq_kv_bytes_at(c, sp.ctx_per_seq, 512) - kvc_ctx_seq_kv_bytes_at(c, sp.ctx_per_seq, 256)) / 1024.0,
            sp.parallel, sp.queue);
    fprintf(stderr, "kvcodec serve: listening on http://%s:%u\n", host, di ? (unsigned)di->port : (unsigned)port);
    while (!g_quit) usleep(50 * 1000);
    fprintf(stderr, "kvcodec serve: shutting down\n");
    MHD_quiesce_daemon(d);   /* no new connections */
    serve_close(sv.s);       /* cancel what is in flight; waiting threads wake up */
    MHD_stop_daemon(d);      /* joins the connection threads */
done:
    serve_free(sv.s);
    kvc_ctx_free(c);
    kvc_model_free(m);
    pthread_mutex_destroy(&sv.tok_mu);
    return rc;
}
