#!/usr/bin/env python3
"""Compress a K/V tensor dump from any framework with kvcodec's PCA and HDC codecs at 3 bits
and print the attention-output error per layer.

    python examples/kv_dump_error.py K.npy V.npy [--calib CALIB.gguf] [--queries Q.npy]
    python examples/kv_dump_error.py --demo

K.npy / V.npy: float arrays of shape (tokens, heads, dim) for one layer or (layers, tokens,
heads, dim); keys after RoPE, as the engine stores them. Queries: Q.npy of shape ([layers,]
n_q, heads, dim), else the last 16 key rows stand in for queries. For every layer and KV head,
the attention output of the queries over all tokens is computed in float64 from the original
rows and by kvcodec.Codec.attention on the encoded rows (the engine's kernels); the table
shows the relative L2 error, mean over heads. pca needs a calibration file fitted on the same
model (`kvcodec calibrate ... -o CALIB.gguf`): without --calib only the hdc rows are shown.
--demo uses random rows with a decaying spectrum in kvref's shape (no files needed; random rows do
not follow a calibration's principal directions, so pca does badly on them: use real dumps).
"""
import argparse
import sys

import numpy as np

import kvcodec


def attention_ref(q, k, v):
    s = q.astype(np.float64) @ k.astype(np.float64).T / np.sqrt(k.shape[1])
    w = np.exp(s - s.max(axis=1, keepdims=True))
    return (w / w.sum(axis=1, keepdims=True)) @ v.astype(np.float64)


def load(path, want_layers=None):
    a = np.load(path).astype(np.float32)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        sys.exit("%s: shape %s: expected (tokens, heads, dim) or (layers, tokens, heads, dim)" % (path, a.shape))
    return a


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("keys", nargs="?")
    ap.add_argument("values", nargs="?")
    ap.add_argument("--queries")
    ap.add_argument("--calib", help="calibration file for pca (from `kvcodec calibrate`)")
    ap.add_argument("--codecs", default="pca:bits=3,hdc:bits=3", help="comma-separated specs (default: %(default)s)")
    ap.add_argument("--demo", action="store_true", help="random rows instead of files")
    a = ap.parse_args()
    if a.demo:
        rng = np.random.default_rng(0)
        L_, T, H, D = 8, 512, 2, 64  # kvref's shape, so a kvref calibration file applies
        scale = np.exp(-np.arange(D) / 12.0).astype(np.float32)
        K = (rng.standard_normal((L_, T, H, D)) * scale).astype(np.float32)
        V = rng.standard_normal((L_, T, H, D)).astype(np.float32)
    else:
        if not a.keys or not a.values:
            ap.error("give K.npy and V.npy, or --demo")
        K, V = load(a.keys), load(a.values)
        if K.shape != V.shape:
            sys.exit("keys %s and values %s differ in shape" % (K.shape, V.shape))
    n_layer, T, H, D = K.shape
    Q = load(a.queries) if a.queries else K[:, -16:]
    specs = [s for s in a.codecs.split(",") if s]
    specs = [s.replace(";", ",") for s in specs]
    if not a.calib:
        dropped = [s for s in specs if s.startswith("pca")]
        if dropped:
            print("note: %s left out: pca needs --calib (a calibration file of the same model)" % ", ".join(dropped))
        specs = [s for s in specs if not s.startswith("pca")]
    print("%d layers x %d tokens x %d KV heads x dim %d, %d queries per head" % (n_layer, T, H, D, Q.shape[1]))
    print("relative L2 error of the attention output (mean over heads), bits per element in brackets")
    rows = {}
    for spec in specs:
        errs = []
        bits = None
        for layer in range(n_layer):
            e = []
            for h in range(H):
                ck = kvcodec.Codec(spec, D, layer=layer, head=h, role="k", calib=a.calib)
                cv = kvcodec.Codec(spec, D, layer=layer, head=h, role="v", calib=a.calib)
                bits = (ck.bits + cv.bits) / 2
                out = ck.attention(Q[layer, :, h], ck.encode(K[layer, :, h]), cv.encode(V[layer, :, h]), 0, value_codec=cv)
                ref = attention_ref(Q[layer, :, h], K[layer, :, h], V[layer, :, h])
                e.append(np.linalg.norm(out - ref) / np.linalg.norm(ref))
            errs.append(float(np.mean(e)))
        rows["%s (%.2f)" % (spec, bits)] = errs
    w = max(len(k) for k in rows) if rows else 10
    print("%-*s " % (w, "codec") + " ".join("%9s" % ("layer %d" % i) for i in range(n_layer)))
    for k, errs in rows.items():
        print("%-*s " % (w, k) + " ".join("%9.4f" % x for x in errs))


if __name__ == "__main__":
    main()
