/* json.h - JSON for tests, on top of jansson: parses a document into a tree of nodes (object,
 * array, number, string, bool, null) so tests can read reference figures. The node tree and
 * the function names (j_value, j_load, j_get, j_free) are the tests' interface; the parsing
 * is jansson's. */
#ifndef KVC_TEST_JSON_H
#define KVC_TEST_JSON_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
struct jnode {
    enum jtype t;
    double num;
    char *str;              /* J_STR value (UTF-8, NUL-terminated) */
    size_t len;             /* J_STR bytes (a \u0000 escape may sit inside) */
    int n;                  /* children of J_ARR / J_OBJ */
    struct jnode *kids;
    char **keys;            /* J_OBJ keys */
};

/* Copy a jansson value into n (zeroed first); returns 0 on success. */
static int j_from(json_t *v, struct jnode *n) {
    memset(n, 0, sizeof *n);
    switch (json_typeof(v)) {
    case JSON_NULL: n->t = J_NULL; return 0;
    case JSON_TRUE: n->t = J_BOOL; n->num = 1; return 0;
    case JSON_FALSE: n->t = J_BOOL; return 0;
    case JSON_INTEGER: n->t = J_NUM; n->num = (double)json_integer_value(v); return 0;
    case JSON_REAL: n->t = J_NUM; n->num = json_real_value(v); return 0;
    case JSON_STRING:
        n->t = J_STR;
        n->len = json_string_length(v);
        n->str = malloc(n->len + 1);
        if (!n->str) return -1;
        memcpy(n->str, json_string_value(v), n->len);
        n->str[n->len] = 0;
        return 0;
    case JSON_ARRAY: {
        n->t = J_ARR;
        size_t cnt = json_array_size(v);
        n->kids = calloc(cnt ? cnt : 1, sizeof *n->kids);
        if (!n->kids) return -1;
        for (size_t i = 0; i < cnt; i++, n->n++)
            if (j_from(json_array_get(v, i), &n->kids[i])) { n->n++; return -1; }
        return 0;
    }
    case JSON_OBJECT: {
        n->t = J_OBJ;
        size_t cnt = json_object_size(v);
        n->kids = calloc(cnt ? cnt : 1, sizeof *n->kids);
        n->keys = calloc(cnt ? cnt : 1, sizeof *n->keys);
        if (!n->kids || !n->keys) return -1;
        const char *k;
        json_t *val;
        json_object_foreach(v, k, val) {
            n->keys[n->n] = strdup(k);
            int bad = !n->keys[n->n] || j_from(val, &n->kids[n->n]);
            n->n++;
            if (bad) return -1;
        }
        return 0;
    }
    }
    return -1;
}

static void j_free(struct jnode *n) {
    for (int i = 0; i < n->n; i++) {
        j_free(&n->kids[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->kids);
    free(n->keys);
    free(n->str);
    memset(n, 0, sizeof *n);
}

/* Parse one JSON value at the start of p (leading whitespace allowed, text may follow it).
 * Returns the position after the value, or NULL on a syntax error (n is then empty). */
static const char *j_value(const char *p, struct jnode *n) {
    memset(n, 0, sizeof *n);
    json_error_t err;
    json_t *v = json_loads(p, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &err);
    if (!v) return NULL;
    int bad = j_from(v, n);
    json_decref(v);
    if (bad) { j_free(n); return NULL; }
    return p + err.position;
}

static struct jnode *j_get(struct jnode *n, const char *key) {
    if (!n || n->t != J_OBJ) return NULL;
    for (int i = 0; i < n->n; i++)
        if (!strcmp(n->keys[i], key)) return &n->kids[i];
    return NULL;
}

/* Parse a whole file; returns 0 on success. */
static int j_load(const char *path, struct jnode *root) {
    memset(root, 0, sizeof *root);
    json_error_t err;
    json_t *v = json_load_file(path, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!v) return -1;
    int bad = j_from(v, root);
    json_decref(v);
    if (bad) { j_free(root); return -1; }
    return 0;
}

#endif
