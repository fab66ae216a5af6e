/* fuzz_request.c - libFuzzer target for the server's request bodies (src/serve/request.c):
 * byte 0 picks the endpoint (completions / chat) and the chat format (chatml, llama3, llama2,
 * zephyr, none), the rest is the body. Invariants: success gives a NUL-terminated text of
 * text_len bytes, fields in their documented ranges and at most SERVE_MAX_STOP stop strings;
 * an error gives status 400, 404 or 500, a message and a field name that is a C string. */
#include "serve/request.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const char *formats[] = {"chatml", "llama3", "llama2", "zephyr", NULL};
    const int chat = data[0] & 1;
    const struct serve_request_ctx cx = {.model_id = "kvref-q4_0", .chat_format = formats[(data[0] >> 1) % 5],
                                         .no_chat = "fuzz: no chat template"};
    struct serve_request r;
    struct serve_request_error e;
    if (serve_request_parse(&cx, (const char *)data + 1, size - 1, chat, &r, &e) == 0) {
        if (!r.text || strlen(r.text) > r.text_len) abort(); /* JSON strings may hold \u0000 only if allowed */
        if (r.max_tokens < 0 || r.max_tokens > (1 << 24) || !(r.temperature >= 0 && r.temperature <= 100) ||
            !(r.top_p >= 0 && r.top_p <= 1) || r.top_k < 0 || r.top_k > (1 << 24) || r.n_stop < 0 ||
            r.n_stop > SERVE_MAX_STOP)
            abort();
        for (int i = 0; i < r.n_stop; i++)
            if (!r.stop[i]) abort();
        if (chat && !cx.chat_format) abort();
    } else {
        if ((e.status != 400 && e.status != 404 && e.status != 500) || !e.msg[0] ||
            strnlen(e.param, sizeof e.param) == sizeof e.param || strnlen(e.msg, sizeof e.msg) == sizeof e.msg)
            abort();
    }
    serve_request_free(&r);
    return 0;
}
