/* request.h - the server's request bodies: a /v1/completions or /v1/chat/completions JSON body
 * becomes the checked fields of one generation request (prompt text, or the messages in the
 * chat format; sampling, stop strings, stream), or the 4xx answer naming the field at fault.
 * No HTTP and no model here, so the fuzzer (fuzz/fuzz_request.c) calls it directly. */
#ifndef KVC_SERVE_REQUEST_H
#define KVC_SERVE_REQUEST_H

#include "sched.h"

#include <stddef.h>
#include <stdint.h>

struct serve_request {
    int stream;
    int max_tokens;          /* 1..2^24; default 16 for completions, 0 (to the context's end) for chat */
    double temperature;      /* 0..100, default 1 */
    double top_p;            /* 0..1, default 1 */
    int top_k;               /* 0..2^24, 0 = all */
    int has_seed;
    uint64_t seed;
    char *stop[SERVE_MAX_STOP];
    int n_stop;
    char *text;              /* the prompt, or the formatted conversation (holds special tokens) */
    size_t text_len;
};

/* What to answer instead: status 400 / 404 / 500, the field (empty when none) and a message. */
struct serve_request_error {
    int status;
    char param[48];
    char msg[512];
};

/* Where a body is checked against: the model id the server answers to, and the chat format
 * (NULL: chat requests get 400 with no_chat as the reason). */
struct serve_request_ctx {
    const char *model_id;
    const char *chat_format;
    const char *no_chat;
};

/* Parse body (len bytes, not NUL-terminated) of a completion (chat 0) or chat request into *r
 * (free with serve_request_free, also after an error). 0 on success, else -1 with *e set. */
int serve_request_parse(const struct serve_request_ctx *cx, const char *body, size_t len, int chat,
                        struct serve_request *r, struct serve_request_error *e);
void serve_request_free(struct serve_request *r);

#endif
