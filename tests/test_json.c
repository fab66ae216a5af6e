/* test_json.c - tests/json.h (the tests' JSON reader, on jansson): nested values, escapes
 * (\u0000 inside a string keeps its length, surrogate pairs), a value followed by other text
 * (j_value returns where it ends, as test_tokenizer reads JSON lines), syntax errors, files. */
#include "test.h"
#include "json.h"

#include <unistd.h>

int main(void) {
    struct jnode n;
    const char *s = "  {\"a\": [1, 2.5, \"x\\u0000y\", true, null], \"b\": {\"c\": \"\\ud83d\\ude00\"}} trailing";
    const char *e = j_value(s, &n);
    CHECK(e && !strcmp(e, " trailing"), "end of value: '%s'", e ? e : "(null)");
    CHECK(n.t == J_OBJ && n.n == 2, "object of 2 keys: type %d, %d", n.t, n.n);
    struct jnode *a = j_get(&n, "a");
    CHECK(a && a->t == J_ARR && a->n == 5, "array of 5");
    if (a && a->n == 5) {
        CHECK(a->kids[0].t == J_NUM && a->kids[0].num == 1 && a->kids[1].num == 2.5, "numbers");
        CHECK(a->kids[2].t == J_STR && a->kids[2].len == 3 && !memcmp(a->kids[2].str, "x\0y", 3), "\\u0000 kept");
        CHECK(a->kids[3].t == J_BOOL && a->kids[3].num == 1 && a->kids[4].t == J_NULL, "true, null");
    }
    struct jnode *c = j_get(j_get(&n, "b"), "c");
    CHECK(c && c->t == J_STR && !strcmp(c->str, "\xf0\x9f\x98\x80"), "surrogate pair to UTF-8");
    CHECK(j_get(&n, "zz") == NULL && j_get(a, "a") == NULL, "missing key / not an object");
    j_free(&n);
    const char *bad[] = {"{\"a\": ", "[1, 2", "{\"a\" 1}", "nul", "\"open", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(j_value(bad[i], &n) == NULL && n.n == 0, "syntax error rejected: '%s'", bad[i]);
        j_free(&n);
    }
    char path[] = "/tmp/test_json.XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(f != NULL, "temp file");
    if (f) {
        fputs("{\"ids\": [3, 4, 5], \"text\": \"caf\\u00e9\"}\n", f);
        fclose(f);
        CHECK(j_load(path, &n) == 0, "j_load");
        struct jnode *ids = j_get(&n, "ids"), *t = j_get(&n, "text");
        CHECK(ids && ids->n == 3 && ids->kids[2].num == 5 && t && !strcmp(t->str, "caf\xc3\xa9"), "file contents");
        j_free(&n);
        f = fopen(path, "w");
        if (f) { fputs("{\"ids\": [3,", f); fclose(f); }
        CHECK(j_load(path, &n) != 0, "truncated file rejected");
        unlink(path);
    }
    CHECK(j_load("/nonexistent/x.json", &n) != 0, "missing file rejected");
    return test_summary("test_json");
}
