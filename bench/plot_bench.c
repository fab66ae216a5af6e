/* plot_bench.c - decode speed vs cache depth from `kvcodec bench --json` files: one line per
 * codec pair (tg rows' medians), written as SVG with tools/plot_svg.c; several JSON files
 * (e.g. two model shapes) give one plot each.
 *   usage: plot_bench OUT.svg TITLE IN.json */
#include "../tools/plot_svg.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 32
#define MAXD 32

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: plot_bench OUT.svg TITLE IN.json\n");
        return 2;
    }
    json_error_t je;
    json_t *root = json_load_file(argv[3], 0, &je);
    if (!root || !json_is_array(root)) {
        fprintf(stderr, "plot_bench: %s: %s (line %d)\n", argv[3], root ? "not a JSON list" : je.text, je.line);
        return 1;
    }
    char names[MAXP][260];
    double xs[MAXP][MAXD], ys[MAXP][MAXD];
    int np = 0, nd[MAXP] = {0};
    size_t i;
    json_t *row;
    json_array_foreach(root, i, row) {
        const char *test = json_string_value(json_object_get(row, "test"));
        const char *k = json_string_value(json_object_get(row, "kv_k")), *v = json_string_value(json_object_get(row, "kv_v"));
        json_t *dj = json_object_get(row, "depth"), *tj = json_object_get(row, "tps_median");
        if (!test || strncmp(test, "tg", 2) || !k || !v || !json_is_integer(dj) || !json_is_number(tj)) continue;
        char name[260];
        if (!strcmp(k, v)) snprintf(name, sizeof name, "%s", k);
        else snprintf(name, sizeof name, "%.127s / %.127s", k, v);
        int p = 0;
        while (p < np && strcmp(names[p], name)) p++;
        if (p == np) {
            if (np == MAXP) continue;
            snprintf(names[np++], sizeof names[0], "%s", name);
        }
        if (nd[p] == MAXD) continue;
        xs[p][nd[p]] = (double)json_integer_value(dj) / 1024.0;
        ys[p][nd[p]++] = json_number_value(tj);
    }
    struct svg_series s[MAXP];
    const char *np_names[MAXP];
    for (int p = 0; p < np; p++) {
        np_names[p] = names[p];
        s[p] = (struct svg_series){.name = np_names[p], .n = nd[p], .x = xs[p], .y = ys[p]};
    }
    struct svg_plot pl = {.title = argv[2], .xlabel = "cache depth (K positions)", .ylabel = "decode t/s (median)",
                          .y_from_zero = 1};
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        fprintf(stderr, "plot_bench: cannot write %s\n", argv[1]);
        return 1;
    }
    int rc = svg_line_plot(f, &pl, s, np);
    if (fclose(f) || rc) {
        fprintf(stderr, "plot_bench: no decode rows in %s\n", argv[3]);
        return 1;
    }
    json_decref(root);
    return 0;
}
