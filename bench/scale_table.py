#!/usr/bin/env python3
"""scale_table.py - markdown tables from `kvcodec bench --json` output: decode t/s median with
the share of the bandwidth bound per depth, KV MiB at the deepest depth, and for each codec the
decode speed-up over the first pair against the speed-up its bytes allow (bytes read per token
of the first pair / of the codec, weights included), per depth.
Several files (e.g. a run of every codec to 32K and one of a few codecs at 64K) are merged; a
codec missing at a depth shows "-". Writes the merged rows as JSON with --merged OUT.json.
usage: scale_table.py BENCH.json [BENCH2.json ...] [--merged OUT.json]"""
import json
import sys

args = sys.argv[1:]
merged = None
if "--merged" in args:
    i = args.index("--merged")
    merged = args[i + 1]
    del args[i:i + 2]
rows = []
for f in args:
    rows += json.load(open(f))
if merged:
    json.dump(rows, open(merged, "w"), indent=1)
tg = [r for r in rows if r["test"].startswith("tg")]
depths = sorted({r["depth"] for r in tg})
pairs = []
for r in tg:
    key = (r["kv_k"], r["kv_v"])
    if key not in pairs:
        pairs.append(key)
cell = {(r["kv_k"], r["kv_v"], r["depth"]): r for r in tg}
first = pairs[0]


def name(k, v):
    return k if k == v else k + "/" + v


def kfmt(d):
    return "d0" if d == 0 else "d%dK" % (d // 1024) if d % 1024 == 0 else "d%d" % d


print("| codec K/V | bits/elem | " + " | ".join("tg %s t/s (of bound)" % kfmt(d) for d in depths) +
      " | KV MiB @ deepest | peak RSS MiB @ deepest |")
print("|---|---:|" + "---:|" * len(depths) + "---:|---:|")
for k, v in pairs:
    c = [cell.get((k, v, d)) for d in depths]
    bits = next(x for x in c if x)["bits_per_element"]
    cells = ["%.1f (%.0f %%)" % (x["tps_median"], 100 * x["fraction_of_bound"]) if x else "-" for x in c]
    last = [x for x in c if x][-1]
    print("| %s | %.2f | %s | %.0f (%s) | %.0f |" % (name(k, v), bits, " | ".join(cells),
                                                    last["kv_bytes_at_depth"] / 1048576, kfmt(last["depth"]),
                                                    last["peak_rss_bytes"] / 1048576))
print()
print("Speed-up over %s: measured (ratio of medians in the run) / allowed by the bytes read per token "
      "(weights + KV), and their quotient:" % name(*first))
print()
print("| codec K/V | " + " | ".join("%s measured / allowed (%%)" % kfmt(d) for d in depths if d) + " |")
print("|---|" + "---:|" * len([d for d in depths if d]))
for k, v in pairs[1:]:
    out = []
    for d in depths:
        if not d:
            continue
        x, f = cell.get((k, v, d)), cell.get((first[0], first[1], d))
        if not x or not f:
            out.append("-")
            continue
        allowed = f["bytes_read_per_token"] / x["bytes_read_per_token"]
        meas = x["tps_median"] / f["tps_median"]
        out.append("%.2f / %.2f (%.0f %%)" % (meas, allowed, 100 * meas / allowed))
    print("| %s | %s |" % (name(k, v), " | ".join(out)))
cpu = tg[0].get("cpu", "?")
print()
print("%s, -t %d, %d repetitions, fill: %s." % (cpu, tg[0]["threads"], tg[0]["reps"],
                                                  ", ".join(sorted({r.get("fill", "real") for r in tg}))))
