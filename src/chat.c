/* chat.c - chat formats: pick one from a model's tokenizer.chat_template by the substrings
 * llama.cpp's template detection looks for (ChatML, Llama 3, Llama 2 / Mistral [INST],
 * Zephyr), and format a message list into the prompt text those models were trained on.
 * Not a Jinja interpreter: one fixed layout per format, strings as llama.cpp writes them. */
#include "kvcodec.h"
#include "model.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

enum chat_fmt {
    CF_CHATML, CF_LLAMA3, CF_LLAMA2, CF_LLAMA2_SYS, CF_LLAMA2_SYS_BOS, CF_LLAMA2_SYS_STRIP,
    CF_MISTRAL_V1, CF_MISTRAL_V3, CF_MISTRAL_V3_TEKKEN, CF_MISTRAL_V7, CF_ZEPHYR, CF_N
};

/* --chat-format names, in enum order (llama.cpp's names for the same layouts) */
static const char *const chat_names[CF_N] = {
    "chatml", "llama3", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip",
    "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7", "zephyr",
};

const char *kvc_chat_format_list(void) {
    return "chatml, llama3, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, mistral-v1, mistral-v3, "
           "mistral-v3-tekken, mistral-v7, zephyr";
}

static int fmt_by_name(const char *name) {
    for (int i = 0; i < CF_N; i++)
        if (strcmp(name, chat_names[i]) == 0) return i;
    return -1;
}

/* The format of a template text, or NULL when none of ours matches. The checks run in
 * llama.cpp's order, so a template that llama.cpp takes for another family (Phi 3,
 * Falcon 3, ...) is not mistaken for one of ours. */
const char *kvc_chat_detect(const char *tmpl) {
    if (!tmpl) return NULL;
    if (fmt_by_name(tmpl) >= 0) return chat_names[fmt_by_name(tmpl)];
#define HAS(s) (strstr(tmpl, s) != NULL)
    if (HAS("<|im_start|>")) return HAS("<|im_sep|>") ? NULL /* phi4 */ : "chatml";
    if (strncmp(tmpl, "mistral", 7) == 0 || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) return "mistral-v7";
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]")) return "mistral-v1";
            if (HAS("\"[INST]\"")) return "mistral-v3-tekken";
            return "mistral-v3";
        }
        if (HAS("content.strip()")) return "llama2-sys-strip";
        if (HAS("bos_token + '[INST]")) return "llama2-sys-bos";
        if (HAS("<<SYS>>")) return "llama2-sys";
        return "llama2";
    }
    if (HAS("<|assistant|>") && (HAS("<|end|>") || HAS("<|user|>"))) return NULL; /* phi3, falcon3, glmedge */
    if (HAS("<|user|>") && HAS("<|endoftext|>")) return "zephyr";
    if (HAS("bos_token + message['role']") || HAS("<start_of_turn>") || HAS("'\\n\\nAssistant: ' + eos_token") ||
        HAS("GPT4 Correct ") || (HAS("USER: ") && HAS("ASSISTANT: ")) || (HAS("### Instruction:") && HAS("<|EOT|>")) ||
        (HAS("<|START_OF_TURN_TOKEN|>") && HAS("<|USER_TOKEN|>")))
        return NULL; /* monarch, gemma, orion, openchat, vicuna, deepseek, command-r */
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) return "llama3";
#undef HAS
    return NULL;
}

/* a growing string */
struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_put(struct sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

/* s without leading and trailing white space (as llama.cpp's trim) */
static void sb_put_trim(struct sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    sb_putn(b, s, n);
}

kvc_status kvc_chat_apply(const char *format, const struct kvc_chat_msg *msgs, int n_msgs, int add_assistant,
                          char **out, kvc_error *err) {
    *out = NULL;
    int f = format ? fmt_by_name(format) : -1;
    if (f < 0)
        return kvc_fail(err, KVC_ERR_ARG, "chat: format '%s' is unknown; --chat-format values: %s",
                        format ? format : "(null)", kvc_chat_format_list());
    if (n_msgs < 0 || (n_msgs > 0 && !msgs)) return kvc_fail(err, KVC_ERR_ARG, "chat: %d messages", n_msgs);
    for (int i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content)
            return kvc_fail(err, KVC_ERR_ARG, "chat: message %d has no role or content", i);
    struct sbuf b = {0};
    sb_put(&b, "");
    if (f == CF_CHATML) {
        for (int i = 0; i < n_msgs; i++) {
            sb_put(&b, "<|im_start|>"); sb_put(&b, msgs[i].role); sb_put(&b, "\n");
            sb_put(&b, msgs[i].content); sb_put(&b, "<|im_end|>\n");
        }
        if (add_assistant) sb_put(&b, "<|im_start|>assistant\n");
    } else if (f == CF_LLAMA3) {
        for (int i = 0; i < n_msgs; i++) {
            sb_put(&b, "<|start_header_id|>"); sb_put(&b, msgs[i].role); sb_put(&b, "<|end_header_id|>\n\n");
            sb_put_trim(&b, msgs[i].content); sb_put(&b, "<|eot_id|>");
        }
        if (add_assistant) sb_put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else if (f == CF_ZEPHYR) {
        for (int i = 0; i < n_msgs; i++) {
            sb_put(&b, "<|"); sb_put(&b, msgs[i].role); sb_put(&b, "|>\n");
            sb_put(&b, msgs[i].content); sb_put(&b, "<|endoftext|>\n");
        }
        if (add_assistant) sb_put(&b, "<|assistant|>\n");
    } else if (f == CF_MISTRAL_V7) {
        for (int i = 0; i < n_msgs; i++) {
            const char *r = msgs[i].role, *c = msgs[i].content;
            if (strcmp(r, "system") == 0) { sb_put(&b, "[SYSTEM_PROMPT] "); sb_put(&b, c); sb_put(&b, "[/SYSTEM_PROMPT]"); }
            else if (strcmp(r, "user") == 0) { sb_put(&b, "[INST] "); sb_put(&b, c); sb_put(&b, "[/INST]"); }
            else { sb_put(&b, " "); sb_put(&b, c); sb_put(&b, "</s>"); }
        }
    } else if (f == CF_MISTRAL_V1 || f == CF_MISTRAL_V3 || f == CF_MISTRAL_V3_TEKKEN) {
        const char *lead = f == CF_MISTRAL_V1 ? " " : "", *trail = f == CF_MISTRAL_V3_TEKKEN ? "" : " ";
        int in_turn = 0;
        for (int i = 0; i < n_msgs; i++) {
            const char *r = msgs[i].role, *c = msgs[i].content;
            if (!in_turn) { sb_put(&b, lead); sb_put(&b, "[INST]"); sb_put(&b, trail); in_turn = 1; }
            if (strcmp(r, "system") == 0) { sb_put(&b, c); sb_put(&b, "\n\n"); }
            else if (strcmp(r, "user") == 0) { sb_put(&b, c); sb_put(&b, lead); sb_put(&b, "[/INST]"); }
            else {
                sb_put(&b, trail);
                if (f == CF_MISTRAL_V3) sb_put_trim(&b, c); else sb_put(&b, c);
                sb_put(&b, "</s>");
                in_turn = 0;
            }
        }
    } else { /* Llama 2 and its variants */
        const int sys = f != CF_LLAMA2, bos_inside = f == CF_LLAMA2_SYS_BOS, strip = f == CF_LLAMA2_SYS_STRIP;
        int in_turn = 1; /* the first [INST] comes without BOS (the tokenizer adds it) */
        sb_put(&b, "[INST] ");
        for (int i = 0; i < n_msgs; i++) {
            const char *r = msgs[i].role, *c = msgs[i].content;
            if (!in_turn) { in_turn = 1; sb_put(&b, bos_inside ? "<s>[INST] " : "[INST] "); }
            if (strcmp(r, "system") == 0) {
                if (sys) sb_put(&b, "<<SYS>>\n");
                if (strip) sb_put_trim(&b, c); else sb_put(&b, c);
                sb_put(&b, sys ? "\n<</SYS>>\n\n" : "\n");
            } else if (strcmp(r, "user") == 0) {
                if (strip) sb_put_trim(&b, c); else sb_put(&b, c);
                sb_put(&b, " [/INST]");
            } else {
                if (strip) sb_put_trim(&b, c); else sb_put(&b, c);
                sb_put(&b, "</s>");
                in_turn = 0;
            }
        }
    }
    if (b.oom) {
        free(b.p);
        return kvc_fail(err, KVC_ERR_NOMEM, "chat: out of memory formatting %d messages", n_msgs);
    }
    *out = b.p;
    return KVC_OK;
}

kvc_status kvc_model_chat_format(const kvc_model *m, const char *override, const char **format,
                                 kvc_error *err) {
    *format = NULL;
    if (override) {
        int f = fmt_by_name(override);
        if (f < 0)
            return kvc_fail(err, KVC_ERR_ARG, "--chat-format '%s' is unknown; values: %s", override,
                            kvc_chat_format_list());
        *format = chat_names[f];
        return KVC_OK;
    }
    struct gguf_str s;
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &s, NULL) != KVC_OK)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: no tokenizer.chat_template; choose one with --chat-format (%s)",
                        m->path, kvc_chat_format_list());
    char *t = malloc(s.n + 1);
    if (!t) return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory for the chat template", m->path);
    memcpy(t, s.p, s.n);
    t[s.n] = 0;
    const char *name = strlen(t) == s.n ? kvc_chat_detect(t) : NULL;
    free(t);
    if (!name)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: tokenizer.chat_template is not a format kvcodec recognises; "
                        "choose one with --chat-format (%s)", m->path, kvc_chat_format_list());
    *format = name;
    return KVC_OK;
}
