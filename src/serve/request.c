/* request.c - request bodies of the server (see request.h) through jansson: duplicate keys
 * rejected, every field type- and range-checked, messages limited to 4096 with roles system /
 * user / assistant, stop strings to SERVE_MAX_STOP. */
#include "request.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(struct serve_request_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct serve_request_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* Optional number field in [lo, hi] (an integer when asked). */
static int get_num(json_t *body, const char *key, double lo, double hi, int integer, double *val,
                   struct serve_request_error *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || (integer && !json_is_integer(v)))
        return fail(e, 400, key, "'%s' must be %s", key, integer ? "an integer" : "a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return fail(e, 400, key, "'%s' is %g; it must be in %g..%g", key, x, lo, hi);
    *val = x;
    return 0;
}

static int get_stop(json_t *j, struct serve_request *r, struct serve_request_error *e) {
    json_t *stop = json_object_get(j, "stop");
    if (!stop || json_is_null(stop)) return 0;
    if (json_is_string(stop)) {
        if (!(r->stop[r->n_stop++] = strdup(json_string_value(stop)))) return fail(e, 500, NULL, "out of memory");
        return 0;
    }
    if (!json_is_array(stop) || json_array_size(stop) > SERVE_MAX_STOP)
        return fail(e, 400, "stop", "'stop' must be a string or an array of up to %d strings", SERVE_MAX_STOP);
    for (size_t i = 0; i < json_array_size(stop); i++) {
        json_t *s = json_array_get(stop, i);
        if (!json_is_string(s)) return fail(e, 400, "stop", "'stop[%zu]' must be a string", i);
        if (!(r->stop[r->n_stop++] = strdup(json_string_value(s)))) return fail(e, 500, NULL, "out of memory");
    }
    return 0;
}

static int get_messages(const struct serve_request_ctx *cx, json_t *j, struct serve_request *r,
                        struct serve_request_error *e) {
    json_t *ms = json_object_get(j, "messages");
    if (!ms) return fail(e, 400, "messages", "'messages' is required");
    if (!json_is_array(ms) || json_array_size(ms) == 0 || json_array_size(ms) > 4096)
        return fail(e, 400, "messages", "'messages' must be an array of 1..4096 messages");
    if (!cx->chat_format)
        return fail(e, 400, "messages", "%s: chat needs the model's chat template or --chat-format NAME; or use /v1/completions",
                    cx->no_chat ? cx->no_chat : "no chat format");
    const size_t n = json_array_size(ms);
    struct kvc_chat_msg *msgs = calloc(n, sizeof *msgs);
    if (!msgs) return fail(e, 500, NULL, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *mi = json_array_get(ms, i), *role = json_object_get(mi, "role"), *content = json_object_get(mi, "content");
        char field[48];
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (!json_is_object(mi) || !json_is_string(role) || !json_is_string(content)) {
            rc = fail(e, 400, field, "'%s' must be an object with string 'role' and 'content'", field);
            break;
        }
        const char *rs = json_string_value(role);
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            rc = fail(e, 400, field, "'%s.role' must be \"system\", \"user\" or \"assistant\"", field);
        msgs[i] = (struct kvc_chat_msg){rs, json_string_value(content)};
    }
    kvc_error ke = {0};
    if (!rc && kvc_chat_apply(cx->chat_format, msgs, (int)n, 1, &r->text, &ke)) rc = fail(e, 400, "messages", "%s", ke.msg);
    if (!rc) r->text_len = strlen(r->text);
    free(msgs);
    return rc;
}

static int get_prompt(json_t *j, struct serve_request *r, struct serve_request_error *e) {
    json_t *pr = json_object_get(j, "prompt");
    if (pr && json_is_array(pr) && json_array_size(pr) == 1) pr = json_array_get(pr, 0);
    if (!pr) return fail(e, 400, "prompt", "'prompt' is required");
    if (!json_is_string(pr)) return fail(e, 400, "prompt", "'prompt' must be a string (or an array of one string)");
    r->text_len = json_string_length(pr);
    if (!(r->text = malloc(r->text_len + 1))) return fail(e, 500, NULL, "out of memory");
    memcpy(r->text, json_string_value(pr), r->text_len + 1);
    return 0;
}

int serve_request_parse(const struct serve_request_ctx *cx, const char *body, size_t len, int chat,
                        struct serve_request *r, struct serve_request_error *e) {
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return fail(e, 400, NULL, "invalid JSON in the request body (line %d, column %d): %s", je.line, je.column, je.text);
    int rc = -1;
    if (!json_is_object(j)) {
        fail(e, 400, NULL, "the request body must be a JSON object");
        goto out;
    }
    json_t *model = json_object_get(j, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) {
            fail(e, 400, "model", "'model' must be a string");
            goto out;
        }
        if (strcmp(json_string_value(model), cx->model_id)) {
            fail(e, 404, "model", "the model '%s' does not exist; this server has '%s'", json_string_value(model),
                 cx->model_id);
            goto out;
        }
    }
    double max_tokens = chat ? 0 : 16 /* the OpenAI default of /v1/completions */, temp = 1.0, top_p = 1.0, top_k = 0,
           seed = -1;
    if (get_num(j, "max_tokens", 1, 1 << 24, 1, &max_tokens, e) || get_num(j, "temperature", 0, 100, 0, &temp, e) ||
        get_num(j, "top_p", 0, 1, 0, &top_p, e) || get_num(j, "top_k", 0, 1 << 24, 1, &top_k, e) ||
        get_num(j, "seed", -9007199254740991.0, 9007199254740991.0, 1, &seed, e))
        goto out;
    json_t *st = json_object_get(j, "stream");
    if (st && !json_is_null(st) && !json_is_boolean(st)) {
        fail(e, 400, "stream", "'stream' must be true or false");
        goto out;
    }
    r->stream = st && json_is_true(st);
    if (get_stop(j, r, e) || (chat ? get_messages(cx, j, r, e) : get_prompt(j, r, e))) goto out;
    r->max_tokens = (int)max_tokens;
    r->temperature = temp;
    r->top_p = top_p;
    r->top_k = (int)top_k;
    r->has_seed = seed >= 0;
    r->seed = seed >= 0 ? (uint64_t)seed : 0;
    rc = 0;
out:
    json_decref(j);
    return rc;
}

void serve_request_free(struct serve_request *r) {
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->text);
    memset(r, 0, sizeof *r);
}
