#!/usr/bin/env python3
"""Bits per element vs KL divergence on a model: kvcodec.perplexity with compare=True for a list
of codec settings (the f16 cache on the same chunks is the reference), printed as a table and
plotted to bits_vs_kld.png when matplotlib is installed.

    python examples/bits_vs_kld.py [-m MODEL] -f TEXT [-c 512] [--chunks 4] [--calib CALIB.gguf]

Default model: the embedded models/kvref-q4_0.gguf. pca settings are added with --calib.
"""
import argparse
import os

import kvcodec

SETTINGS = [("q8_0", "q8_0"), ("q8_0", "q4_0"), ("q4_0", "q4_0"), ("q4_0h", "q4_0h"),
            ("hdc:bits=4", "hdc:bits=4"), ("hdc:bits=3", "hdc:bits=3"), ("hdc:bits=2", "hdc:bits=2")]
PCA = [("pca:bits=4", "pca:bits=4"), ("pca:bits=3", "pca:bits=3")]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=os.path.join(here, "..", "models", "kvref-q4_0.gguf"))
    ap.add_argument("-f", "--file", required=True, help="evaluation text")
    ap.add_argument("-c", "--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--calib", help="calibration file: adds the pca settings")
    ap.add_argument("-o", "--out", default="bits_vs_kld.png")
    a = ap.parse_args()
    model = kvcodec.Model(a.model)
    settings = SETTINGS + (PCA if a.calib else [])
    res = []
    print("| K / V | bits/elem | PPL | PPL change % | KLD mean | KLD p99 | top-1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, v in settings:
        r = kvcodec.perplexity(model, a.file, ctx=a.ctx, chunks=a.chunks, kv_k=k, kv_v=v, compare=True,
                               kv_calib=a.calib if k.startswith("pca") else None)
        res.append((k, v, r))
        print("| %s / %s | %.2f | %.4f | %+.3f | %.5f | %.4f | %.4f |" % (
            k, v, r["bits_per_element"], r["ppl"], r["ppl_change_pct"], r["kld_mean"], r["kld_p99"], r["top1_agree"]))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fams = {}
    for k, v, r in res:
        fams.setdefault(k.split(":")[0], []).append((r["bits_per_element"], r["kld_mean"], "%s/%s" % (k, v)))
    fig, ax = plt.subplots(figsize=(6, 4))
    for fam, pts in fams.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=fam)
    ax.set_xlabel("bits per element (K and V mean)")
    ax.set_ylabel("mean KLD vs f16 cache")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(os.path.basename(a.model))
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
