/* chat.c - the chat formats of chat.h, written from the models' published prompt formats:
 * Llama 3 (header ids, <|eot_id|>), ChatML (<|im_start|>/<|im_end|>), Llama 2 / Mistral
 * ([INST] ... [/INST], system in <<SYS>>), Zephyr (<|role|> ... </s>). BOS is not written:
 * the tokenizer adds it as the vocabulary asks. */
#include "chat.h"
#include "../util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *serve_chat_formats(void) { return "llama3, chatml, llama2, zephyr"; }

int serve_chat_known(const char *name) {
    return name && (!strcmp(name, "llama3") || !strcmp(name, "chatml") || !strcmp(name, "llama2") ||
                    !strcmp(name, "zephyr"));
}

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void put(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = 1; return; }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *t = realloc(b->p, cap);
        if (!t) { b->oom = 1; return; }
        b->p = t;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

kvc_status serve_chat_format(const char *name, const struct serve_msg *m, int n, char **out, kvc_error *err) {
    *out = NULL;
    if (!serve_chat_known(name))
        return kvc_fail(err, KVC_ERR_ARG, "chat: unknown format \"%s\" (known: %s)", name ? name : "", serve_chat_formats());
    for (int i = 0; i < n; i++)
        if (strcmp(m[i].role, "system") && strcmp(m[i].role, "user") && strcmp(m[i].role, "assistant"))
            return kvc_fail(err, KVC_ERR_ARG, "chat: messages[%d].role \"%s\" is not system, user or assistant", i, m[i].role);
    struct sbuf b = {0};
    put(&b, "%s", "");
    if (!strcmp(name, "llama3")) {
        for (int i = 0; i < n; i++)
            put(&b, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", m[i].role, m[i].content);
        put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else if (!strcmp(name, "chatml")) {
        for (int i = 0; i < n; i++) put(&b, "<|im_start|>%s\n%s<|im_end|>\n", m[i].role, m[i].content);
        put(&b, "<|im_start|>assistant\n");
    } else if (!strcmp(name, "zephyr")) {
        for (int i = 0; i < n; i++) put(&b, "<|%s|>\n%s</s>\n", m[i].role, m[i].content);
        put(&b, "<|assistant|>\n");
    } else { /* llama2: [INST] turns; a system message goes into the first user turn */
        const char *sys = NULL;
        int first = 1;
        for (int i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) {
                sys = m[i].content;
            } else if (!strcmp(m[i].role, "user")) {
                if (!first) put(&b, "<s>");
                if (sys) put(&b, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", sys, m[i].content);
                else put(&b, "[INST] %s [/INST]", m[i].content);
                sys = NULL;
                first = 0;
            } else {
                put(&b, " %s</s>", m[i].content);
            }
        }
        if (sys) put(&b, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n [/INST]", sys);
    }
    if (b.oom) {
        free(b.p);
        return kvc_fail(err, KVC_ERR_NOMEM, "chat: out of memory");
    }
    *out = b.p;
    return KVC_OK;
}
