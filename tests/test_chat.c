/* test_chat.c - chat formats: the exact prompt text of every --chat-format for one
 * conversation (system, user, assistant, user + the assistant's opening), written out by hand
 * from llama.cpp's llm_chat_apply_template layouts; trimming where a format trims; template
 * detection by llama.cpp's substrings (and its order: Phi 3 / Falcon 3 style templates are
 * not taken for ours); errors that list the format names. */
#include "kvcodec.h"
#include "test.h"

static const struct kvc_chat_msg conv[] = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Why?"},
};

static void expect(const char *fmt, const struct kvc_chat_msg *m, int n, int add, const char *want) {
    char *got = NULL;
    kvc_error e = {0};
    kvc_status st = kvc_chat_apply(fmt, m, n, add, &got, &e);
    CHECK(st == KVC_OK && got && strcmp(got, want) == 0, "%s: got [%s] want [%s] (%s)", fmt, got ? got : "(null)",
          want, e.msg);
    free(got);
}

static void test_formats(void) {
    expect("chatml", conv, 4, 1,
           "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
           "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n");
    expect("chatml", conv, 2, 0, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    expect("llama3", conv, 4, 1,
           "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi"
           "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user"
           "<|end_header_id|>\n\nWhy?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    expect("zephyr", conv, 4, 1,
           "<|system|>\nBe brief.<|endoftext|>\n<|user|>\nHi<|endoftext|>\n<|assistant|>\nHello!<|endoftext|>\n"
           "<|user|>\nWhy?<|endoftext|>\n<|assistant|>\n");
    /* Llama 2: no BOS before the first [INST] (the tokenizer adds it); the system text goes
     * into the first turn, in <<SYS>> for the -sys variants */
    expect("llama2", conv, 4, 1, "[INST] Be brief.\nHi [/INST]Hello!</s>[INST] Why? [/INST]");
    expect("llama2-sys", conv, 4, 1, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] Why? [/INST]");
    expect("llama2-sys-bos", conv, 4, 1, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello!</s><s>[INST] Why? [/INST]");
    expect("llama2-sys-strip", conv, 4, 1, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] Why? [/INST]");
    expect("mistral-v1", conv, 4, 1, " [INST] Be brief.\n\nHi [/INST] Hello!</s> [INST] Why? [/INST]");
    expect("mistral-v3", conv, 4, 1, "[INST] Be brief.\n\nHi[/INST] Hello!</s>[INST] Why?[/INST]");
    expect("mistral-v3-tekken", conv, 4, 1, "[INST]Be brief.\n\nHi[/INST]Hello!</s>[INST]Why?[/INST]");
    expect("mistral-v7", conv, 4, 1, "[SYSTEM_PROMPT] Be brief.[/SYSTEM_PROMPT][INST] Hi[/INST] Hello!</s>[INST] Why?[/INST]");
    /* trimming: llama3 trims every message, llama2-sys-strip too, mistral-v3 the replies */
    static const struct kvc_chat_msg sp[] = {{"user", "  Hi \n"}, {"assistant", " Yo  "}};
    expect("llama3", sp, 2, 0,
           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>");
    expect("llama2-sys-strip", sp, 2, 0, "[INST] Hi [/INST]Yo</s>");
    expect("llama2-sys", sp, 2, 0, "[INST]   Hi \n [/INST] Yo  </s>");
    expect("mistral-v3", sp, 2, 0, "[INST]   Hi \n[/INST] Yo</s>");
    expect("chatml", sp, 1, 0, "<|im_start|>user\n  Hi \n<|im_end|>\n");
    expect("chatml", conv, 0, 1, "<|im_start|>assistant\n");
}

static void test_detect(void) {
    static const struct {
        const char *tmpl, *want;
    } cases[] = {
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
         "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}", "chatml"},
        {"{{ '<|begin_of_text|>' }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
         "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}", "llama3"},
        {"{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] | trim "
         "+ '\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}", "llama2-sys-strip"},
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
         "message['content'] + ' [/INST]' }}<<SYS>>{% endif %}{% endfor %}", "llama2-sys-bos"},
        {"{% for m in messages %}<<SYS>>[INST]{{ m['content'] }}{% endfor %}", "llama2-sys"},
        {"{{ bos_token }}{% for message in messages %}[INST] {{ message['content'] }} [/INST]{% endfor %}", "llama2"},
        {"{{ bos_token }}{% for m in messages %}{{ ' [INST] ' + system_message }}{% endfor %}", "mistral-v1"},
        {"{%- for m in messages %}[AVAILABLE_TOOLS]{{- '[INST] ' + m['content'] + '[/INST]' }}{% endfor %}", "mistral-v3"},
        {"{%- for m in messages %}[AVAILABLE_TOOLS]{{- \"[INST]\" + m['content'] + \"[/INST]\" }}{% endfor %}", "mistral-v3-tekken"},
        {"[SYSTEM_PROMPT]{{ system }}[/SYSTEM_PROMPT][INST]", "mistral-v7"},
        {"{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|endoftext|>' }}"
         "{% endfor %}{{ '<|user|>' }}", "zephyr"},
        {"chatml", "chatml"}, /* a format name as the template, as llama.cpp accepts */
        {"zephyr", "zephyr"},
        /* llama.cpp takes these for other families (Phi 3, Falcon 3 / GLM-Edge, Gemma, Phi 4): not ours */
        {"{{ '<|user|>\\n' + m['content'] + '<|end|>' + '<|assistant|>' }}", NULL},
        {"{{ '<|user|>\\n' + m['content'] + '<|assistant|>' + '</s>' }}", NULL},
        {"<start_of_turn>user\\n{{ m['content'] }}<end_of_turn>", NULL},
        {"<|im_start|>user<|im_sep|>{{ m['content'] }}<|im_end|>", NULL},
        {"{{ message['content'] }}", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = kvc_chat_detect(cases[i].tmpl);
        CHECK((got == NULL && cases[i].want == NULL) || (got && cases[i].want && strcmp(got, cases[i].want) == 0),
              "detect case %zu: got %s want %s", i, got ? got : "NULL", cases[i].want ? cases[i].want : "NULL");
    }
    CHECK(kvc_chat_detect(NULL) == NULL, "NULL template");
}

static void test_errors(void) {
    char *out = (char *)1;
    kvc_error e = {0};
    CHECK(kvc_chat_apply("vicuna", conv, 4, 1, &out, &e) == KVC_ERR_ARG && out == NULL && strstr(e.msg, "'vicuna'") &&
          strstr(e.msg, "chatml, llama3") && strstr(e.msg, "zephyr") && !strchr(e.msg, '\n'),
          "unknown format: %s", e.msg);
    static const struct kvc_chat_msg bad[] = {{"user", NULL}};
    CHECK(kvc_chat_apply("chatml", bad, 1, 1, &out, &e) == KVC_ERR_ARG, "message without content: %s", e.msg);
    CHECK(kvc_chat_apply("chatml", NULL, 2, 1, &out, &e) == KVC_ERR_ARG, "NULL messages: %s", e.msg);
    const char *list = kvc_chat_format_list();
    int n = 0;
    for (const char *p = list; *p; p++) n += *p == ',';
    CHECK(n + 1 == 11, "%d formats listed: %s", n + 1, list);
}

int main(void) {
    test_formats();
    test_detect();
    test_errors();
    return test_summary("test_chat");
}
