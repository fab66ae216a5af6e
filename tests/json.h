/* json.h - a minimal JSON reader for tests: parses a document into a tree of nodes
 * (object, array, number, string, bool, null) so tests can read reference figures. */
#ifndef KVC_TEST_JSON_H
#define KVC_TEST_JSON_H

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

static const char *j_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

static char *j_utf8(char *o, unsigned cp) {
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) { *o++ = (char)(0xc0 | cp >> 6); *o++ = (char)(0x80 | (cp & 63)); }
    else if (cp < 0x10000) { *o++ = (char)(0xe0 | cp >> 12); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
    else { *o++ = (char)(0xf0 | cp >> 18); *o++ = (char)(0x80 | (cp >> 12 & 63)); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
    return o;
}

static const char *j_string(const char *p, char **out, size_t *len) {
    const char *s = ++p;
    size_t cap = 16;
    while (*s && *s != '"') { if (*s == '\\' && s[1]) s++; s++; cap++; }
    char *o = malloc(cap * 4), *w = o;
    while (*p && *p != '"') {
        if (*p != '\\') { *w++ = *p++; continue; }
        p++;
        char c = *p++;
        if (c == 'n') *w++ = '\n'; else if (c == 't') *w++ = '\t'; else if (c == 'r') *w++ = '\r';
        else if (c == 'b') *w++ = '\b'; else if (c == 'f') *w++ = '\f';
        else if (c == 'u') {
            unsigned cp = (unsigned)strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = (unsigned)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            w = j_utf8(w, cp);
        } else *w++ = c;
    }
    *w = 0;
    *out = o;
    if (len) *len = (size_t)(w - o);
    return *p == '"' ? p + 1 : NULL;
}

static const char *j_value(const char *p, struct jnode *n) {
    memset(n, 0, sizeof *n);
    p = j_ws(p);
    if (*p == '"') { n->t = J_STR; return j_string(p, &n->str, &n->len); }
    if (*p == '[' || *p == '{') {
        int obj = *p == '{';
        n->t = obj ? J_OBJ : J_ARR;
        p = j_ws(p + 1);
        int cap = 0;
        if (*p == (obj ? '}' : ']')) return p + 1;
        for (;;) {
            if (n->n == cap) {
                cap = cap ? cap * 2 : 8;
                n->kids = realloc(n->kids, sizeof *n->kids * (size_t)cap);
                if (obj) n->keys = realloc(n->keys, sizeof *n->keys * (size_t)cap);
            }
            if (obj) {
                p = j_ws(p);
                if (*p != '"' || !(p = j_string(p, &n->keys[n->n], NULL))) return NULL;
                p = j_ws(p);
                if (*p++ != ':') return NULL;
            }
            if (!(p = j_value(p, &n->kids[n->n]))) return NULL;
            n->n++;
            p = j_ws(p);
            if (*p == ',') { p++; continue; }
            if (*p == (obj ? '}' : ']')) return p + 1;
            return NULL;
        }
    }
    if (!strncmp(p, "true", 4)) { n->t = J_BOOL; n->num = 1; return p + 4; }
    if (!strncmp(p, "false", 5)) { n->t = J_BOOL; return p + 5; }
    if (!strncmp(p, "null", 4)) { n->t = J_NULL; return p + 4; }
    char *end;
    n->t = J_NUM;
    n->num = strtod(p, &end);
    return end == p ? NULL : end;
}

static void j_free(struct jnode *n) {
    for (int i = 0; i < n->n; i++) {
        j_free(&n->kids[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->kids);
    free(n->keys);
    free(n->str);
}

static struct jnode *j_get(struct jnode *n, const char *key) {
    if (!n || n->t != J_OBJ) return NULL;
    for (int i = 0; i < n->n; i++)
        if (!strcmp(n->keys[i], key)) return &n->kids[i];
    return NULL;
}

/* Parse a whole file; returns 0 on success. */
static int j_load(const char *path, struct jnode *root) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    size_t rd = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    buf[rd] = 0;
    const char *e = j_value(buf, root);
    free(buf);
    return e ? 0 : -1;
}

#endif
