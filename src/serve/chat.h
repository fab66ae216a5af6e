/* chat.h - chat formats for the server: a message list (role, content) becomes the prompt
 * text of one of the common templates, ending with the assistant's header. A small interface
 * to swap for the library's template support (arch branch) once merged. */
#ifndef KVC_SERVE_CHAT_H
#define KVC_SERVE_CHAT_H

#include "kvcodec.h"

struct serve_msg {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content;
};

/* Names accepted by serve_chat_format, comma-separated (for help and errors). */
const char *serve_chat_formats(void);
/* 1 when name is a known format. */
int serve_chat_known(const char *name);
/* Format the messages with template `name`; *out is malloc'ed (free it). */
kvc_status serve_chat_format(const char *name, const struct serve_msg *msgs, int n, char **out, kvc_error *err);

#endif
