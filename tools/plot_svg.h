/* plot_svg.h - a small SVG line-plot writer for the sweep report: linear axes with "nice"
 * ticks (1, 2, 5 x 10^k), grid, axis labels with units, a title, one polyline with markers
 * per series, optional per-point labels, and a legend to the right of the plot area. */
#ifndef KVC_PLOT_SVG_H
#define KVC_PLOT_SVG_H

#include <stddef.h>
#include <stdio.h>

struct svg_series {
    const char *name;     /* legend entry */
    int n;                /* points */
    const double *x, *y;  /* n values each; NaN points are skipped (and break the line) */
    const char **labels;  /* optional: n point labels (NULL entries allowed), or NULL */
    int no_line;          /* 1: markers only */
};

struct svg_plot {
    const char *title;
    const char *xlabel, *ylabel; /* with units, e.g. "KV bits per element" */
    int width, height;           /* pixels; 0 = 860 x 520 */
    int y_from_zero;             /* 1: the y axis includes 0 */
};

/* Ticks from lo to hi at a "nice" step: fills up to cap values, returns how many; *step gets
 * the step. Exposed for tests. */
int svg_nice_ticks(double lo, double hi, int target, double *ticks, int cap, double *step);

/* Writes the plot to f. Returns 0, or -1 when there is no finite point to draw. */
int svg_line_plot(FILE *f, const struct svg_plot *p, const struct svg_series *s, int ns);

#endif
