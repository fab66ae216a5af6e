/* plot_svg.c - SVG line plots for the sweep report (see plot_svg.h). Plain SVG 1.1 text,
 * no scripts or external fonts, so the files render the same in browsers and on GitHub. */
#include "plot_svg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_PALETTE (int)(sizeof palette / sizeof palette[0])

static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

int svg_nice_ticks(double lo, double hi, int target, double *ticks, int cap, double *step) {
    if (!(hi > lo) || target < 2) {
        if (cap > 0) ticks[0] = lo;
        if (step) *step = 1;
        return cap > 0;
    }
    double raw = (hi - lo) / (target - 1), mag = pow(10, floor(log10(raw))), r = raw / mag, st;
    if (r <= 1) st = 1;
    else if (r <= 2) st = 2;
    else if (r <= 2.5) st = 2.5;
    else if (r <= 5) st = 5;
    else st = 10;
    st *= mag;
    int n = 0;
    for (double t = ceil(lo / st - 1e-9) * st; t <= hi + st * 1e-9 && n < cap; t += st)
        ticks[n++] = fabs(t) < st * 1e-9 ? 0 : t;
    if (step) *step = st;
    return n;
}

/* Round the range out to whole steps so the data never touches the frame. */
static void nice_range(double *lo, double *hi, int from_zero) {
    if (from_zero) {
        if (*lo > 0) *lo = 0;
        if (*hi < 0) *hi = 0;
    }
    if (*hi - *lo < 1e-12 * (fabs(*hi) + fabs(*lo)) || *hi == *lo) {
        double d = *hi != 0 ? fabs(*hi) * 0.1 : 1;
        *lo -= d;
        *hi += d;
        if (from_zero && *lo < 0 && *hi > 0 && *lo > -d * 1.01 && *hi - d > 0) *lo = 0;
    }
    double t[64], st;
    svg_nice_ticks(*lo, *hi, 6, t, 64, &st);
    double nlo = floor(*lo / st + 1e-9) * st, nhi = ceil(*hi / st - 1e-9) * st;
    *lo = nlo;
    *hi = nhi > nlo ? nhi : nlo + st;
}

static void tick_label(char *buf, size_t cap, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (step < 1 && fmod(step * pow(10, dec), 1.0) > 1e-6) dec++; /* 0.25 */
    if (dec > 8) dec = 8;
    if (v == 0) snprintf(buf, cap, "0");
    else if (fabs(v) >= 1e6 || step < 1e-4) snprintf(buf, cap, "%.3g", v);
    else snprintf(buf, cap, "%.*f", dec, v);
}

static void marker(FILE *f, int kind, double x, double y, const char *col) {
    switch (kind % 4) {
    case 0: fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\"/>\n", x, y, col); break;
    case 1: fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"8\" height=\"8\" fill=\"%s\"/>\n", x - 4, y - 4, col); break;
    case 2:
        fprintf(f, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\"/>\n", x, y - 5.5, x - 5, y + 4,
                x + 5, y + 4, col);
        break;
    default:
        fprintf(f, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"%s\"/>\n", x, y - 5.5,
                x + 5.5, y, x, y + 5.5, x - 5.5, y, col);
    }
}

int svg_line_plot(FILE *f, const struct svg_plot *p, const struct svg_series *s, int ns) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    size_t longest = 0;
    for (int i = 0; i < ns; i++) {
        size_t l = s[i].name ? strlen(s[i].name) : 0;
        if (l > longest) longest = l;
        for (int j = 0; j < s[i].n; j++) {
            double x = s[i].x[j], y = s[i].y[j];
            if (!isfinite(x) || !isfinite(y)) continue;
            xlo = fmin(xlo, x); xhi = fmax(xhi, x);
            ylo = fmin(ylo, y); yhi = fmax(yhi, y);
        }
    }
    if (!isfinite(xlo) || !isfinite(ylo)) return -1;
    nice_range(&xlo, &xhi, 0);
    nice_range(&ylo, &yhi, p->y_from_zero);
    int W = p->width > 0 ? p->width : 860, H = p->height > 0 ? p->height : 520;
    double legend_w = 44 + 7.2 * (double)(longest > 40 ? 40 : longest);
    double L = 84, R = W - legend_w - 24, T = 48, B = H - 64;
    if (R < L + 200) R = L + 200;
    /* data and ticks sit 10 px inside the frame so no marker is cut by it */
    const double pad = 10;
    double sx = (R - L - 2 * pad) / (xhi - xlo), sy = (B - T - 2 * pad) / (yhi - ylo);
#define PX(v) (L + pad + ((v) - xlo) * sx)
#define PY(v) (B - pad - ((v) - ylo) * sy)
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"13\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H, W, H);
    if (p->title) {
        fprintf(f, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">", (L + R) / 2);
        xml_text(f, p->title);
        fputs("</text>\n", f);
    }
    /* grid and ticks */
    double t[64], st;
    char buf[64];
    int n = svg_nice_ticks(xlo, xhi, 8, t, 64, &st);
    for (int i = 0; i < n; i++) {
        double x = PX(t[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", x, T, x, B);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, B, x, B + 5);
        tick_label(buf, sizeof buf, t[i], st);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, B + 20, buf);
    }
    n = svg_nice_ticks(ylo, yhi, 7, t, 64, &st);
    for (int i = 0; i < n; i++) {
        double y = PY(t[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", L, y, R, y);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L - 5, y, L, y);
        tick_label(buf, sizeof buf, t[i], st);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 8, y + 4.5, buf);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", L, T,
            R - L, B - T);
    if (p->xlabel) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\">", (L + R) / 2, (double)H - 18);
        xml_text(f, p->xlabel);
        fputs("</text>\n", f);
    }
    if (p->ylabel) {
        fprintf(f, "<text x=\"20\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" transform=\"rotate(-90 20 %.1f)\">",
                (T + B) / 2, (T + B) / 2);
        xml_text(f, p->ylabel);
        fputs("</text>\n", f);
    }
    /* point labels are placed after all series, avoiding each other and the markers */
    struct box { double x0, y0, x1, y1; };
    int nbox = 0, capbox = 0;
    for (int i = 0; i < ns; i++) capbox += 2 * s[i].n;
    struct box *boxes = capbox ? malloc(sizeof *boxes * (size_t)capbox) : NULL;
    for (int i = 0; boxes && i < ns; i++)
        for (int j = 0; j < s[i].n; j++)
            if (isfinite(s[i].x[j]) && isfinite(s[i].y[j]))
                boxes[nbox++] = (struct box){PX(s[i].x[j]) - 5, PY(s[i].y[j]) - 5, PX(s[i].x[j]) + 5, PY(s[i].y[j]) + 5};
    /* series */
    for (int i = 0; i < ns; i++) {
        const char *col = palette[i % N_PALETTE];
        if (!s[i].no_line) {
            int open = 0;
            for (int j = 0; j < s[i].n; j++) {
                if (!isfinite(s[i].x[j]) || !isfinite(s[i].y[j])) {
                    if (open) fputs("\"/>\n", f);
                    open = 0;
                    continue;
                }
                if (!open) fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
                fprintf(f, "%s%.1f,%.1f", open ? " " : "", PX(s[i].x[j]), PY(s[i].y[j]));
                open = 1;
            }
            if (open) fputs("\"/>\n", f);
        }
        for (int j = 0; j < s[i].n; j++) {
            if (!isfinite(s[i].x[j]) || !isfinite(s[i].y[j])) continue;
            double x = PX(s[i].x[j]), y = PY(s[i].y[j]);
            marker(f, i / N_PALETTE + i, x, y, col);
            if (s[i].labels && s[i].labels[j]) {
                /* candidate spots around the marker; the first that overlaps nothing placed */
                static const double cand[][2] = {{8, -7}, {8, 15}, {-8, -7}, {-8, 15}, {8, -19}, {-8, -19},
                                                 {8, 27}, {-8, 27}, {8, -31}, {-8, -31}};
                double w = 6.4 * (double)strlen(s[i].labels[j]), h = 12;
                int pick = -1, first_ok = -1;
                for (int c = 0; c < (int)(sizeof cand / sizeof cand[0]) && pick < 0; c++) {
                    int right = cand[c][0] > 0;
                    double bx0 = right ? x + cand[c][0] : x + cand[c][0] - w, by1 = y + cand[c][1] + 2;
                    struct box b = {bx0, by1 - h, bx0 + w, by1};
                    if (b.x0 < L || b.x1 > R || b.y0 < T || b.y1 > B) continue;
                    if (first_ok < 0) first_ok = c;
                    int hit = 0;
                    for (int k = 0; k < nbox && !hit; k++)
                        hit = b.x0 < boxes[k].x1 && boxes[k].x0 < b.x1 && b.y0 < boxes[k].y1 && boxes[k].y0 < b.y1;
                    if (!hit) pick = c;
                }
                if (pick < 0) pick = first_ok >= 0 ? first_ok : 0;
                int right = cand[pick][0] > 0;
                double bx0 = right ? x + cand[pick][0] : x + cand[pick][0] - w, by1 = y + cand[pick][1] + 2;
                if (boxes && nbox < capbox) boxes[nbox++] = (struct box){bx0, by1 - h, bx0 + w, by1};
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#333\" text-anchor=\"%s\">",
                        x + cand[pick][0], y + cand[pick][1], right ? "start" : "end");
                xml_text(f, s[i].labels[j]);
                fputs("</text>\n", f);
            }
        }
    }
    /* legend */
    double lx = R + 18, ly = T + 6;
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" stroke=\"#999\"/>\n", lx,
            ly, legend_w, 12 + 20.0 * ns);
    for (int i = 0; i < ns; i++) {
        const char *col = palette[i % N_PALETTE];
        double y = ly + 18 + 20.0 * i;
        if (!s[i].no_line)
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
                    lx + 6, y, lx + 30, y, col);
        marker(f, i / N_PALETTE + i, lx + 18, y, col);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", lx + 36, y + 4.5);
        xml_text(f, s[i].name ? s[i].name : "");
        fputs("</text>\n", f);
    }
    free(boxes);
    fputs("</svg>\n", f);
#undef PX
#undef PY
    return 0;
}
