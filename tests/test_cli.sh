#!/usr/bin/env bash
# test_cli.sh - checks the measuring commands of the kvcodec CLI on real outputs: plan (one row
# recomputed by hand), bench and passkey JSON (fields, ranges, counts), sweep (files written,
# resume re-runs nothing), usage errors (exit 2, one line), and the command list of --help.
# Runs $KVC_BIN (default build/kvcodec) on the models in ${KVC_SHARED:-../shared}.
# KVC_TEST_LEVEL=quick (sanitizer build) skips the kvref pass-key check and says so.
# Under CI=true a missing ../shared fails instead of skipping.
set -u
BIN=${KVC_BIN:-build/kvcodec}
S=${KVC_SHARED:-../shared}
TINY=$S/models/stories260K.gguf
KVREF=$S/models/kvref-f16.gguf
pass=0; fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
# verdict TEXT: counts a line that starts with PASS or FAIL (what the python checks print)
verdict() {
    local v
    while IFS= read -r v; do
        case "$v" in PASS*) ok "${v#PASS }" ;; FAIL*) bad "${v#FAIL }" ;; *) [ -n "$v" ] && echo "$v" ;; esac
    done <<< "$1"
}

if [ ! -x "$BIN" ]; then
    bad "$BIN is not an executable (build it with make)"
    # ---- tokenize --json through jansson: byte tokens (pieces that are not UTF-8 alone) stay valid JSON
out=$("$BIN" tokenize -p "a😀" --json --pieces 2>&1)
if printf '%s' "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.buffer.read().decode("utf-8"))
assert len(d["ids"]) == len(d["pieces"]) >= 3 and d["pieces"][-1] == "\ufffd", d' 2>/dev/null; then ok "tokenize --json --pieces: byte tokens as U+FFFD, valid JSON"
else bad "tokenize --json --pieces on byte tokens: $out"; fi
echo "test_cli: $pass passed, $fail failed"; exit 1
fi
# Without ../shared (not under CI): help, usage errors, plan and passkey JSON run on the embedded
# model (models/kvref-q4_0.gguf, kvref's shapes); the groups that need ../shared are named.
NOSHARED=0
if [ ! -f "$TINY" ] || [ ! -f "$KVREF" ]; then
    if [ "${CI:-}" = "true" ]; then bad "$S/models is missing (CI=true)"; # ---- tokenize --json through jansson: byte tokens (pieces that are not UTF-8 alone) stay valid JSON
out=$("$BIN" tokenize -p "a😀" --json --pieces 2>&1)
if printf '%s' "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.buffer.read().decode("utf-8"))
assert len(d["ids"]) == len(d["pieces"]) >= 3 and d["pieces"][-1] == "\ufffd", d' 2>/dev/null; then ok "tokenize --json --pieces: byte tokens as U+FFFD, valid JSON"
else bad "tokenize --json --pieces on byte tokens: $out"; fi
echo "test_cli: $pass passed, $fail failed"; exit 1; fi
    NOSHARED=1
    TINY=models/kvref-q4_0.gguf; KVREF=models/kvref-q4_0.gguf
    echo "SKIP: $S/models is missing: running help, usage errors, plan and passkey on the embedded $KVREF;" \
         "skipped groups (need $S): plan defaults on stories260K, bench, passkey books, passkey on kvref-f16, sweep"
fi
TMP=$(mktemp -d /tmp/test_cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# ---- --help lists every command; every command has --help
help=$("$BIN" --help); rc=$?
# every command of the table in tools/kvcodec.c (and at least these)
cmds=$(sed -nE 's/^ *\{"([a-z_-]+)", cmd_[a-z_]+,.*/\1/p' "$(dirname "$0")/../tools/kvcodec.c" 2>/dev/null)
for c in $(printf '%s\n' $cmds run ppl info tokenize bench passkey plan sweep | awk '!seen[$0]++'); do
    if [ $rc -eq 0 ] && printf '%s\n' "$help" | grep -qE "^  $c +[a-z]"; then ok "--help lists $c"; else bad "--help does not list $c"; fi
    h=$("$BIN" $c --help 2>&1); hrc=$?
    if [ $hrc -eq 0 ] && printf '%s\n' "$h" | grep -q "usage: kvcodec $c"; then ok "$c --help"; else bad "$c --help (exit $hrc)"; fi
done

# ---- usage errors: exit 2, nothing on stdout, one line on stderr naming the command
usage_err() { # description, args...
    local d=$1; shift
    "$BIN" "$@" > "$TMP/o" 2> "$TMP/e"; local rc=$?
    local n; n=$(wc -l < "$TMP/e")
    if [ $rc -eq 2 ] && [ ! -s "$TMP/o" ] && [ "$n" -eq 1 ] && grep -q "^kvcodec" "$TMP/e"; then ok "usage error: $d"
    else bad "usage error: $d: exit $rc, $n stderr lines: $(head -c 300 "$TMP/e")"; fi
}
for c in bench passkey plan sweep; do usage_err "$c --no-such-flag" $c --no-such-flag; done
usage_err "unknown command" no-such-command
usage_err "bench --depths x" bench -m "$TINY" --depths 0,x
usage_err "bench -r 0" bench -m "$TINY" -r 0
usage_err "bench -c" bench -m "$TINY" -c 100
usage_err "bench --codecs empty" bench -m "$TINY" --codecs ";"
usage_err "bench --bandwidth 0" bench -m "$TINY" --bandwidth 0
usage_err "bench --fill bogus" bench -m "$TINY" --fill bogus
usage_err "synth without --preset" synth -o "$TMP/x.gguf"
usage_err "synth --type q9_9" synth --preset llama-3.2-1b --type q9_9 -o "$TMP/x.gguf"
usage_err "quantize two args" quantize a.gguf b.gguf
usage_err "passkey --depths 1.5" passkey -m "$TINY" --depths 1.5
usage_err "passkey --filler nope" passkey -m "$TINY" --filler nope
usage_err "passkey --trials missing value" passkey -m "$TINY" --trials
usage_err "plan --ram 2X" plan -m "$TINY" --ram 2X
usage_err "plan without --ram" plan -m "$TINY"
usage_err "plan --ram -1G" plan -m "$TINY" --ram -1G
usage_err "sweep without --config" sweep --out "$TMP/x"
usage_err "sweep --resume --force" sweep --config x --out "$TMP/x" --resume --force

# ---- plan: recompute rows by hand
"$BIN" plan -m "$KVREF" --ram 512M,2G,1.5G,3000000000 --codecs "f16;q8_0;q4_0;q8_0/q4_0" --json > "$TMP/plan.json" 2> "$TMP/plan.err"
rc=$?
"$BIN" info -m "$KVREF" --json > "$TMP/info.json" 2>/dev/null
verdict "$(python3 - "$TMP/plan.json" "$TMP/info.json" $rc <<'PY'
import json, sys, math
if sys.argv[3] != "0": print("FAIL plan --json exit " + sys.argv[3]); sys.exit()
try:
    rows = json.load(open(sys.argv[1]))
except Exception as e:
    print("FAIL plan --json is not JSON: %s" % e); sys.exit()
info = json.load(open(sys.argv[2]))
need = ["codec", "ram_bytes", "max_context", "kv_bytes_per_token", "kv_bytes_trained_ctx", "weights_bytes", "overhead_bytes"]
miss = [k for r in rows for k in need if k not in r]
print(("FAIL plan rows miss %s" % miss) if miss else "PASS plan rows have %s" % ", ".join(need))
print(("PASS" if len(rows) == 16 else "FAIL") + " plan: 4 codecs x 4 budgets = %d rows" % len(rows))
rams = sorted(set(r["ram_bytes"] for r in rows))
want = sorted([512 << 20, 2 << 30, int(1.5 * 2**30), 3000000000])
print(("PASS" if rams == want else "FAIL") + " plan parses 512M, 2G, 1.5G, 3000000000 as %s" % rams)
bpt = {r["codec"]: r["kv_bytes_per_token"] for r in rows}
# kvref: 8 layers x 2 KV heads x 64 dims, K and V: 1024 elements per token per side
exp = {"f16": 4096, "q8_0": 2 * 1024 * 8.5 / 8, "q4_0": 2 * 1024 * 4.5 / 8, "q8_0/q4_0": 1024 * (8.5 + 4.5) / 8}
print(("PASS" if all(abs(bpt[k] - v) < 1e-9 for k, v in exp.items()) else "FAIL") + " plan bytes/token %s (expected %s)" % (bpt, exp))
ok = True
for r in rows:
    if r["weights_bytes"] != info["weights_bytes"]: ok = False
    if r["kv_bytes_trained_ctx"] != r["kv_bytes_per_token"] * info["n_ctx_train"]: ok = False
print(("PASS" if ok else "FAIL") + " plan weights = info's weights_bytes, KV at trained ctx = bytes/token x %d" % info["n_ctx_train"])
bad = []
for r in rows:
    n = r["max_context"]
    def used(n):  # weights + buffers at context n + KV of n positions
        return r["weights_bytes"] + r["overhead_fixed_bytes"] + r["overhead_per_token_bytes"] * n + r["kv_bytes_per_token"] * n
    hand = math.floor((r["ram_bytes"] - r["weights_bytes"] - r["overhead_fixed_bytes"]) / (r["kv_bytes_per_token"] + r["overhead_per_token_bytes"]))
    if hand != n or used(n) > r["ram_bytes"] or used(n + 1) <= r["ram_bytes"] or \
       r["overhead_bytes"] != r["overhead_fixed_bytes"] + r["overhead_per_token_bytes"] * n:
        bad.append((r["codec"], r["ram_bytes"], n, hand))
print(("FAIL plan rows not reproduced: %s" % bad) if bad else "PASS plan: every max_context = floor((ram - weights - overhead) / bytes per token), it fits and +1 does not")
r = [r for r in rows if r["codec"] == "f16" and r["ram_bytes"] == 2 << 30][0]
print(("PASS" if r["max_context"] > 4096 * 100 else "FAIL") + " plan: f16 at 2 GiB fits %d positions" % r["max_context"])
PY
)"
# ---- plan's memory model (kvc_plan_memory) recomputed from the model's shape with the formula of
# `plan --help`: buffers for -b 64 -t 3, sinks/recent rows in f16 (and in q8_0: --kv-window), --ctx
# peaks and --ram rows in one run
for win in f16 q8_0; do
"$BIN" plan -m "$KVREF" --ctx 1,300,5000 --ram 64M,1G --codecs "q8_0/q4_0;f16" --kv-sinks 4 --kv-recent 32 \
    --kv-window $win -b 64 -t 3 --reserve 5M --json > "$TMP/plan2.json" 2> "$TMP/plan2.err"; rc=$?
verdict "$(python3 - "$TMP/plan2.json" "$TMP/info.json" $rc $win <<'PY'
import json, sys, math
if sys.argv[3] != "0": print("FAIL plan --ctx --ram --json exit " + sys.argv[3]); sys.exit()
d, i, win = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[4]
B, T, S, R, res = 64, 3, 4, 32, 5 << 20
w = {"f16": 2, "q8_0": 34 / 32}[win]  # window bytes per element
E, Q, KV = i["n_embd"], i["n_head"] * i["head_dim"], i["n_head_kv"] * i["head_dim"]
F, V, hd = i["n_ff"], i["n_vocab"], i["head_dim"]
quant = any(t[0] in "qQ" for t in i["tensor_types"])
fixed = (4 * B * (2 * E + 2 * Q + 2 * KV + 2 * F + V + hd) + 4 * T * 2 * B * hd + round(2 * w * KV * B)
         + (B * (max(E, Q, F) // 32) * 34 if quant else 0) + T * 4 * (65536 + 256 * 5 * hd + 512 + 768 * hd)
         + 4 * T * 256 * (4 + 2 * hd) * 4 + res)
bpt = {c["codec"]: c["kv_bytes_per_token"] for c in i["codecs"]}
pair = {("q8_0", "q4_0"): (bpt["q8_0"] + bpt["q4_0"]) / 2, ("f16", "f16"): bpt["f16"]}
bad = []
for r in d["ctx"]:
    N, b = r["n_ctx"], pair[(r["kv_k"], r["kv_v"])]
    kv = (N - S) * b + (S + R) * bpt[win]
    want = i["weights_bytes"] + fixed + 4 * T * N + kv
    if abs(r["predicted_peak_bytes"] - want) > 0.5 or abs(r["kv_bytes"] - kv) > 0.5: bad.append((r, want))
for r in d["ram"]:
    b = pair[(r["kv_k"], r["kv_v"])]
    kv_fixed = S * (bpt[win] - b) + R * bpt[win]
    mc = max(0, math.floor((r["ram_bytes"] - i["weights_bytes"] - fixed - kv_fixed) / (b + 4 * T)))
    if mc < S + R + 1: mc = 0
    if r["overhead_fixed_bytes"] != fixed or r["max_context"] != mc or r["kv_fixed_bytes"] != round(kv_fixed):
        bad.append((r, fixed, mc))
n = (len(d["ctx"]), len(d["ram"]))
print(("FAIL plan model not reproduced: %s" % bad[:2]) if bad or n != (6, 4) else
      "PASS plan model (-b 64 -t 3, sinks 4, recent 32 in %s, reserve 5M): %d --ctx peaks and %d --ram rows = help's formula from info's shape (buffers %d bytes)" % (win, n[0], n[1], fixed))
small = [r for r in d["ram"] if r["ram_bytes"] == 64 << 20 and r["kv_k"] == "f16"][0]
print(("PASS" if 0 < small["max_context"] < 20000 else "FAIL") + " plan: f16 at 64 MiB fits %d positions (weights and buffers first)" % small["max_context"])
PY
)"
done
if [ $NOSHARED = 0 ]; then
# defaults: every codec that runs here without calibration; text table
out=$("$BIN" plan -m "$TINY" --ram 64M 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q "| f16 " && ! printf '%s\n' "$out" | grep -q "| q8_0 "; then
    ok "plan on stories260K lists f16 and leaves out q8_0 (head dim 8)"
else bad "plan default codecs on stories260K: exit $rc: $out"; fi

# ---- bench --fill synthetic --plot: the JSON says which pairs were filled how, the SVG exists
"$BIN" bench -m "$S/models/kvref-q4_0.gguf" --depths 0,600 --pp 8 --tg 4 -r 1 --fill synthetic --fill-prefix 64 \
    --codecs "q4_0;hdc-select:k=64,inner=q8_0/q8_0" --plot "$TMP/speed.svg" --json > "$TMP/fill.json" 2>/dev/null; rc=$?
verdict "$(python3 - "$TMP/fill.json" $rc "$TMP/speed.svg" <<'PY'
import json, os, sys
if sys.argv[2] != "0": print("FAIL bench --fill synthetic exit " + sys.argv[2]); sys.exit()
rows = json.load(open(sys.argv[1]))
fill = {(r["kv_k"], r["fill"]) for r in rows}
ok = ("q4_0", "synthetic") in fill and any(k.startswith("hdc-select") and f == "real" for k, f in fill)
print(("PASS" if ok else "FAIL") + " bench --fill synthetic: q4_0 synthetic, hdc-select real: %s" % sorted(fill))
print(("PASS" if all(r["max_rss_bytes"] >= r["peak_rss_bytes"] > 0 for r in rows) else "FAIL") + " bench: max_rss_bytes >= per-depth peak")
svg = open(sys.argv[3]).read() if os.path.exists(sys.argv[3]) else ""
print(("PASS" if svg.startswith("<?xml") and "q4_0/q4_0" in svg else "FAIL") + " bench --plot writes an SVG with the pairs")
PY
)"

# ---- bench with a recent window: depths cut back from one synthetic fill (no refill), positions checked
"$BIN" bench -m "$S/models/kvref-q4_0.gguf" --depths 100,300 --pp 8 --tg 4 -r 2 --fill synthetic --fill-prefix 64 \
    --kv-recent 16 --kv-sinks 2 --codecs "q4_0/q8_0" --json > "$TMP/recent.json" 2>"$TMP/recent.err"; rc=$?
verdict "$(python3 - "$TMP/recent.json" $rc "$TMP/recent.err" <<'PY'
import json, sys
if sys.argv[2] != "0": print("FAIL bench --kv-recent --fill synthetic exit " + sys.argv[2] + ": " + open(sys.argv[3]).read()[-300:]); sys.exit()
rows = json.load(open(sys.argv[1]))
ok = len(rows) == 4 and all(r["fill"] == "synthetic" and r["kv_recent"] == 16 for r in rows)
print(("PASS" if ok else "FAIL") + " bench --kv-recent 16 --fill synthetic: 2 depths x pp/tg timed from one fill: %s" % [(r.get("depth"), r.get("fill")) for r in rows])
PY
)"

# ---- bench --json on stories260K
"$BIN" bench -m "$TINY" --depths 0,64 -r 2 --json > "$TMP/bench.json" 2> "$TMP/bench.err"; rc=$?
"$BIN" info -m "$TINY" --json > "$TMP/tinyinfo.json" 2>/dev/null
verdict "$(python3 - "$TMP/bench.json" $rc "$TMP/tinyinfo.json" <<'PY'
import json, sys
if sys.argv[2] != "0": print("FAIL bench exit " + sys.argv[2]); sys.exit()
info = json.load(open(sys.argv[3]))
try: rows = json.load(open(sys.argv[1]))
except Exception as e: print("FAIL bench --json is not JSON: %s" % e); sys.exit()
need = ["depth", "test", "tps_median", "tps_sd", "kv_k", "kv_v", "bits_per_element", "kv_bytes", "peak_rss_bytes", "reps", "threads", "mmap"]
miss = sorted(set(k for r in rows for k in need if k not in r))
print(("FAIL bench rows miss %s" % miss) if miss else "PASS bench rows have all required fields")
got = sorted((r["depth"], r["test"]) for r in rows)
print(("PASS" if got == [(0, "pp512"), (0, "tg64"), (64, "pp512"), (64, "tg64")] else "FAIL") + " bench rows: %s" % got)
print(("PASS" if all(r["mmap"] is False for r in rows) else "FAIL") + " bench: weights read into memory by default")
print(("PASS" if all(r["tps_median"] > 0 and r["tps_sd"] >= 0 and r["reps"] == 2 and len(r["tps_all"]) == 2 for r in rows) else "FAIL")
      + " bench: positive t/s, 2 repetitions each: %s" % [round(r["tps_median"], 1) for r in rows])
print(("PASS" if all(r["peak_rss_bytes"] > r["kv_bytes"] > 0 and r["bits_per_element"] == 16 and r["kv_k"] == "f16" for r in rows) else "FAIL")
      + " bench: KV bytes, peak RSS and bits per element are plausible")
# decode bound recomputed by hand: bandwidth / (weights read + KV bytes/token x (depth + tg/2));
# stories260K has its own output matrix, so a token reads one row of the f32 embedding table
bad = []
skip = (info["n_vocab"] - 1) * info["n_embd"] * 4
if info["tied_output"] or info["weights_bytes"] - info["decode_read_bytes"] != skip:
    bad.append(("decode_read_bytes", info["weights_bytes"], info["decode_read_bytes"], skip))
for r in rows:
    if r["test"] != "tg64":
        if r["bound_tps"] is not None: bad.append(("pp has a bound", r["depth"]))
        continue
    b = info["decode_read_bytes"] + r["kv_bytes_per_token"] * (r["depth"] + 32)
    if abs(r["bytes_read_per_token"] - b) > 1: bad.append(("bytes", r["depth"], r["bytes_read_per_token"], b))
    if abs(r["bound_tps"] - r["read_bandwidth_bytes_per_s"] / b) > 1e-3 * r["bound_tps"]: bad.append(("bound", r["depth"]))
    if abs(r["fraction_of_bound"] - r["tps_median"] / r["bound_tps"]) > 1e-3: bad.append(("fraction", r["depth"]))
    if not 1e6 < r["read_bandwidth_bytes_per_s"] < 1e13: bad.append(("bandwidth", r["read_bandwidth_bytes_per_s"]))  # plausibility, not speed
print(("FAIL %s" % bad) if bad else "PASS bench: decode bound = bandwidth / (weights + KV of depth + tg/2), recomputed")
PY
)"
# --mmap: the file mapped instead (one depth, one rep)
out=$("$BIN" bench -m "$TINY" --mmap --depths 0 -r 1 --pp 8 --tg 4 --json -q 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r and all(x["mmap"] is True and x["tps_median"] > 0 for x in r) else 1)'; then
    ok "bench --mmap: rows say mmap true"
else bad "bench --mmap: exit $rc: $(printf '%s' "$out" | head -c 300)"; fi
# two codec pairs side by side, text table with ratios
out=$("$BIN" bench -m "$TINY" --depths 0 -r 1 --pp 32 --tg 4 --codecs "f16/f16;f32/bf16" -q 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q "| f32/bf16 | 24.00 | pp32 @ d0" && printf '%s\n' "$out" | grep -q "vs first"; then
    ok "bench --codecs: two pairs side by side with ratios"
else bad "bench --codecs: exit $rc: $(printf '%s' "$out" | head -c 400)"; fi

fi
# ---- passkey --json on stories260K
"$BIN" passkey -m "$TINY" -c 256 --trials 2 --depths 0.2,0.8 --json -q > "$TMP/pk.json" 2> "$TMP/pk.err"; rc=$?
verdict "$(python3 - "$TMP/pk.json" $rc <<'PY'
import json, sys
if sys.argv[2] != "0": print("FAIL passkey exit " + sys.argv[2]); sys.exit()
try: r = json.load(open(sys.argv[1]))
except Exception as e: print("FAIL passkey --json is not JSON: %s" % e); sys.exit()
good = 0 <= r["accuracy"] <= 1 and r["total"] == 4 and len(r["depths"]) == 2 and \
    all(d["trials"] == 2 and 0 <= d["correct"] <= 2 for d in r["depths"]) and \
    abs(r["accuracy"] - sum(d["correct"] for d in r["depths"]) / 4) < 1e-9 and \
    [d["depth"] for d in r["depths"]] == [0.2, 0.8] and "kv_k" in r and "bits_per_element" in r
print(("PASS" if good else "FAIL") + " passkey --json: accuracy %s over %d trials, depths %s" % (r.get("accuracy"), r.get("total", 0), r.get("depths")))
PY
)"
if [ $NOSHARED = 0 ]; then
"$BIN" passkey -m "$TINY" -c 256 --trials 1 --filler books --filler-file "$S/text/tinystories-sample.txt" --json -q > "$TMP/pkb.json" 2>&1; rc=$?
if [ $rc -eq 0 ] && python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['filler']=='books' and r['total']==3" "$TMP/pkb.json" 2>/dev/null; then
    ok "passkey --filler books runs"
else bad "passkey --filler books: exit $rc: $(head -c 300 "$TMP/pkb.json")"; fi
if [ "${KVC_TEST_LEVEL:-full}" = "quick" ]; then
    echo "test_cli: quick level: the kvref pass-key check runs in the release build (KVC_TEST_LEVEL=full)"
else
    # kvref was trained with pass-key tasks: 20/20 at 512 tokens in PyTorch (kvref-recipe/eval.json)
    "$BIN" passkey -m "$KVREF" -c 512 --trials 2 --json -q > "$TMP/pkr.json" 2>&1; rc=$?
    acc=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['correct'])" "$TMP/pkr.json" 2>/dev/null)
    if [ $rc -eq 0 ] && [ "$acc" = "6" ]; then ok "passkey on kvref-f16, -c 512: 6/6"
    else bad "passkey on kvref-f16, -c 512: exit $rc, correct '$acc' of 6: $(head -c 300 "$TMP/pkr.json")"; fi
fi

# ---- sweep on a tiny config, then resume
cat > "$TMP/sweep.txt" <<EOF
# tiny sweep for test_cli.sh
text: $S/text/tinystories-sample.txt
ppl: -c 128 --chunks 2
passkey: -c 200 --trials 1
bench: --depths 0,32 -r 1 --pp 32 --tg 4
f16: --kv-k f16 --kv-v f16
bf16: --kv-k bf16 --kv-v bf16   # a second family
f32k: --kv-k f32 --kv-v f16
hdcn: --kv-k f16 --kv-v hdc:bits=4,expand=8   # a spec with a comma: quoted in results.csv
EOF
"$BIN" sweep -m "$TINY" --config "$TMP/sweep.txt" --out "$TMP/sw" > "$TMP/sw1.out" 2> "$TMP/sw1.err"; rc=$?
if [ $rc -eq 0 ] && grep -q "12 points run, 0 skipped" "$TMP/sw1.err"; then ok "sweep ran 12 points"
else bad "sweep: exit $rc: $(tail -n 5 "$TMP/sw1.err")"; fi
verdict "$(python3 - "$TMP/sw" <<'PY'
import json, sys, os, csv
import xml.etree.ElementTree as ET
d = sys.argv[1]
for f in ["results.json", "results.csv", "report.md", "pareto.svg", "pareto-ppl.svg", "speed.svg"]:
    print(("PASS" if os.path.getsize(os.path.join(d, f)) > 100 else "FAIL") + " sweep wrote " + f) if os.path.exists(os.path.join(d, f)) else print("FAIL sweep did not write " + f)
try:
    r = json.load(open(os.path.join(d, "results.json")))
    names = [s["name"] for s in r["settings"]]
    s = {x["name"]: x for x in r["settings"]}
    good = names == ["f16", "bf16", "f32k", "hdcn"] and s["f16"]["reference"] and s["f32k"]["bits_per_element"] == 24 and \
        0 <= s["bf16"]["passkey_accuracy"] <= 1 and s["bf16"]["points"]["ppl-tinystories-sample"]["kld_mean"] >= 0
    print(("PASS" if good else "FAIL") + " results.json: settings %s, bits, passkey, ppl points" % names)
except Exception as e:
    print("FAIL results.json: %r" % e)
try:
    rows = list(csv.DictReader(open(os.path.join(d, "results.csv"))))
    good = len(rows) == 4 and float(rows[2]["bits_k"]) == 32 and float(rows[0]["ppl_change_pct_tinystories-sample"]) == 0 \
        and float(rows[1]["tg_tps_d32"]) > 0 and float(rows[1]["kld_mean_tinystories-sample"]) >= 0 \
        and rows[3]["kv_v"] == "hdc:bits=4,expand=8" and float(rows[3]["bits_k"]) == 16 and rows[3]["family"] != ""
    print(("PASS" if good else "FAIL") + " results.csv: 4 rows with bits, PPL change, KLD, tg t/s; a spec with a comma stays one field")
except Exception as e:
    print("FAIL results.csv: %r" % e)
md = open(os.path.join(d, "report.md")).read()
good = "| setting | bits/elem K | V | mean | PPL | PPL change % | KLD mean | KLD p99 | top-1 | passkey | tg t/s d0 | tg t/s d32 |" in md \
    and "| f32k | 32.00 | 16.00 | 24.00 |" in md and "pareto.svg" in md and "speed.svg" in md
print(("PASS" if good else "FAIL") + " report.md has the table and the plots")
for f in ["pareto.svg", "speed.svg"]:
    try:
        root = ET.parse(os.path.join(d, f)).getroot()
        texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
        lines = len(list(root.iter("{http://www.w3.org/2000/svg}polyline")))
        want = ["bits per element", "f16", "bf16", "f32"] if f == "pareto.svg" else ["depth", "tokens/s", "f16", "bf16", "f32k"]
        miss = [w for w in want if w not in texts]
        print(("PASS" if not miss and lines >= (1 if f == "pareto.svg" else 3) else "FAIL") + " %s is SVG with axis labels and legend (%d lines, missing %s)" % (f, lines, miss))
    except Exception as e:
        print("FAIL %s: %r" % (f, e))
PY
)"
# in-process ppl / passkey points: the same figures as the commands' --json, progress in the point's log
"$BIN" ppl -m "$TINY" -f "$S/text/tinystories-sample.txt" -c 128 --chunks 2 --kv-k bf16 --kv-v bf16 --json 2>/dev/null > "$TMP/ppl-direct.json"
"$BIN" passkey -m "$TINY" -c 200 --trials 1 --kv-k bf16 --kv-v bf16 --json 2>/dev/null > "$TMP/pk-direct.json"
verdict "$(python3 - "$TMP" <<'PY'
import json, sys, os
t = sys.argv[1]
pt = json.load(open(os.path.join(t, "sw/points/bf16-ppl-tinystories-sample.json")))["result"]
di = json.load(open(os.path.join(t, "ppl-direct.json")))
keys = [k for k in di if k not in ("seconds",)]
same = all(pt.get(k) == di[k] for k in keys) and len(keys) > 8
print(("PASS" if same else "FAIL") + " sweep's in-process ppl point equals ppl --json (%d fields)" % len(keys))
pk = json.load(open(os.path.join(t, "sw/points/bf16-passkey.json")))["result"]
dk = json.load(open(os.path.join(t, "pk-direct.json")))
keys = [k for k in dk if k not in ("seconds",)]
print(("PASS" if all(pk.get(k) == dk[k] for k in keys) else "FAIL") + " sweep's in-process passkey point equals passkey --json")
log = open(os.path.join(t, "sw/points/bf16-ppl-tinystories-sample.log")).read()
print(("PASS" if "[2/2] ppl" in log else "FAIL") + " the in-process point's progress is in its log")
PY
)"
"$BIN" sweep -m "$TINY" --config "$TMP/sweep.txt" --out "$TMP/sw" --resume > /dev/null 2> "$TMP/sw2.err"; rc=$?
n_skip=$(grep -c ": skipped (finished earlier" "$TMP/sw2.err")
if [ $rc -eq 0 ] && [ "$n_skip" -eq 12 ] && grep -q "0 points run, 12 skipped" "$TMP/sw2.err" && ! grep -q "running kvcodec" "$TMP/sw2.err"; then
    ok "sweep --resume re-runs nothing (12 points skipped)"
else bad "sweep --resume: exit $rc, $n_skip skipped: $(tail -n 3 "$TMP/sw2.err")"; fi
"$BIN" sweep -m "$TINY" --config "$TMP/sweep.txt" --out "$TMP/sw" > /dev/null 2> "$TMP/sw3.err"; rc=$?
if [ $rc -eq 2 ] && grep -q "already holds 12 finished points" "$TMP/sw3.err"; then ok "sweep refuses a DIR with points without --resume/--force"
else bad "sweep without --resume on a used DIR: exit $rc: $(cat "$TMP/sw3.err")"; fi
# a changed setting is run again, the others are kept
sed -i 's/^f32k:.*/f32k: --kv-k f32 --kv-v bf16/' "$TMP/sweep.txt"
"$BIN" sweep -m "$TINY" --config "$TMP/sweep.txt" --out "$TMP/sw" --resume > /dev/null 2> "$TMP/sw4.err"; rc=$?
if [ $rc -eq 0 ] && grep -q "3 points run, 9 skipped" "$TMP/sw4.err"; then ok "sweep --resume re-runs only the changed setting's 3 points"
else bad "sweep --resume after a config change: exit $rc: $(tail -n 3 "$TMP/sw4.err")"; fi
# a failing point: the sweep goes on, says so and exits 1
printf 'text: %s\nppl: -c 128 --chunks 1\nf16: --kv-k f16\nq8: --kv-k q8_0 --kv-v q8_0\n' "$S/text/tinystories-sample.txt" > "$TMP/bad.txt"
"$BIN" sweep -m "$TINY" --config "$TMP/bad.txt" --out "$TMP/swb" > /dev/null 2> "$TMP/swb.err"; rc=$?
if [ $rc -eq 1 ] && grep -q "q8 ppl-tinystories-sample: FAILED" "$TMP/swb.err" && grep -q "1 point run, 0 skipped (finished earlier), 1 failed" "$TMP/swb.err" && [ -f "$TMP/swb/report.md" ]; then
    ok "sweep: a failing point is reported, the rest is written, exit 1"
else bad "sweep with a failing point: exit $rc: $(tail -n 4 "$TMP/swb.err")"; fi
printf 'f16 --kv-k f16\n' > "$TMP/bad2.txt"
usage_err "sweep config line without ':'" sweep --config "$TMP/bad2.txt" --out "$TMP/swc"

# ---- presets on stories260K: calibrate, write a preset, and check --kv-preset runs exactly the
# setting it names (ppl equal to the same flags given by hand), info prints it, bench takes
# preset=FILE, and a preset with the flags it replaces is a usage error
TXT=$S/text/tinystories-sample.txt
if "$BIN" calibrate -m "$TINY" -f "$S/text/calib.txt" -o "$TMP/t.calib" --tokens 1024 -c 256 -q > /dev/null 2> "$TMP/cal.err" &&
   "$BIN" preset -m "$TINY" --kv-calib "$TMP/t.calib" --kv-k pca:bits=3,keys=pre --kv-v pca:bits=3 --kv-sinks 2 --kv-recent 8 \
       -c 256 --note "cli test" -o "$TMP/t.preset" > "$TMP/pr.out" 2>&1; then
    ok "calibrate + preset on stories260K"
    a=$("$BIN" ppl -m "$TINY" -f "$TXT" -c 128 --chunks 1 --kv-preset "$TMP/t.preset" --json 2>/dev/null)
    b=$("$BIN" ppl -m "$TINY" -f "$TXT" -c 128 --chunks 1 --kv-k pca:bits=3,keys=pre --kv-v pca:bits=3 --kv-sinks 2 \
        --kv-recent 8 --kv-calib "$TMP/t.preset" --json 2>/dev/null)
    v=$(python3 -c '
import json,sys
a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2])
same = a["ppl"] == b["ppl"] and a["kld_mean"] == b["kld_mean"] and a["kv_k"] == "pca:bits=3,keys=pre" and a["kv_recent"] == 8 and a["kv_sinks"] == 2
print("PASS ppl --kv-preset equals the same setting by hand" if same else "FAIL ppl --kv-preset %s vs %s" % (a, b))' "$a" "$b" 2>&1)
    verdict "$v"
    out=$("$BIN" info -m "$TINY" -c 256 --kv-preset "$TMP/t.preset" 2>&1)
    if printf '%s' "$out" | grep -q "preset $TMP/t.preset: K pca:bits=3,keys=pre, V pca:bits=3, sinks 2, recent 8" &&
       printf '%s' "$out" | grep -q "cli test"; then ok "info --kv-preset prints the setting"
    else bad "info --kv-preset: $out"; fi
    out=$("$BIN" bench -m "$TINY" --codecs "f16/f16;preset=$TMP/t.preset" --depths 0 --pp 8 --tg 4 -r 1 --json -q 2>&1)
    if printf '%s' "$out" | grep -q '"kv_k": "pca:bits=3,keys=pre"'; then ok "bench --codecs preset=FILE"
    else bad "bench --codecs preset=FILE: $(printf '%s' "$out" | head -c 300)"; fi
    usage_err "--kv-preset with --kv-k" ppl -m "$TINY" -f "$TXT" --kv-preset "$TMP/t.preset" --kv-k f16
    "$BIN" ppl -m "$TINY" -f "$TXT" --kv-preset "$TMP/t.calib" > "$TMP/o" 2> "$TMP/e"; rc=$?
    if [ $rc -ne 0 ] && [ "$(wc -l < "$TMP/e")" -eq 1 ] && grep -q "not a preset" "$TMP/e" && grep -q "t.calib" "$TMP/e"; then
        ok "--kv-preset of a plain calibration: one line naming the file"
    else bad "--kv-preset of a plain calibration: exit $rc: $(cat "$TMP/e")"; fi
else bad "calibrate + preset on stories260K: $(cat "$TMP/cal.err" "$TMP/pr.out" | head -c 400)"; fi

# ---- per-layer specs of a 30-layer model (SmolLM2's depth) are longer than 127 characters: a
# tiny random 30-layer model, pca:layers=B0/.../B29 for K and V (about 200 characters each),
# through a preset file: info --kv-preset prints them whole, ppl --kv-preset runs them; a spec
# beyond the limit (KVC_SPEC_MAX - 1 = 1023 characters) is one line naming it
if "$BIN" synth --preset smollm2-360m --layers 30 --embd 128 --ff 128 --heads 2 --kv-heads 1 --head-dim 64 --vocab 400 \
        -o "$TMP/l30.gguf" -q 2> "$TMP/l30.err" &&
   "$BIN" calibrate -m "$TMP/l30.gguf" -f "$S/text/calib.txt" -o "$TMP/l30.calib" --tokens 512 -c 128 -q 2>> "$TMP/l30.err"; then
    LK="pca:layers=$(python3 -c 'print("/".join(("2.125", "3.375", "2.75")[i % 3] for i in range(30)))'),keys=pre"
    LV="pca:layers=$(python3 -c 'print("/".join(("3.625", "2.875")[i % 2] for i in range(30)))')"
    if "$BIN" preset -m "$TMP/l30.gguf" --kv-calib "$TMP/l30.calib" --kv-k "$LK" --kv-v "$LV" -c 128 -o "$TMP/l30.preset" \
            > /dev/null 2>> "$TMP/l30.err"; then
        out=$("$BIN" info -m "$TMP/l30.gguf" -c 128 --kv-preset "$TMP/l30.preset" 2>&1)
        if printf '%s' "$out" | grep -qF "K $LK, V $LV,"; then ok "30-layer specs (${#LK} / ${#LV} characters) round-trip through a preset (info --kv-preset)"
        else bad "30-layer preset: info --kv-preset: $(printf '%s' "$out" | grep preset | head -c 600)"; fi
        out=$("$BIN" ppl -m "$TMP/l30.gguf" -f "$TXT" -c 128 --chunks 1 --kv-preset "$TMP/l30.preset" --json -q 2>/dev/null)
        v=$(python3 -c '
import json,sys
try: a=json.loads(sys.argv[1])
except Exception: a={}
print("PASS ppl --kv-preset runs the 30-layer specs" if a.get("kv_k") == sys.argv[2] and a.get("kv_v") == sys.argv[3] and a.get("kld_mean", -1) >= 0
      else "FAIL ppl --kv-preset 30-layer: %s" % sys.argv[1][:600])' "$out" "$LK" "$LV" 2>&1)
        verdict "$v"
    else bad "30-layer preset: $(head -c 600 "$TMP/l30.err")"; fi
    LONG="pca:layers=$(python3 -c 'print("/".join(["2.123456789012345"] * 60))')"
    "$BIN" ppl -m "$TMP/l30.gguf" -f "$TXT" -c 128 --chunks 1 --kv-k "$LONG" --kv-calib "$TMP/l30.calib" > /dev/null 2> "$TMP/e"; rc=$?
    if [ $rc -ne 0 ] && [ "$(wc -l < "$TMP/e")" -eq 1 ] && grep -q "1023" "$TMP/e"; then ok "--kv-k of ${#LONG} characters: one line naming the limit"
    else bad "--kv-k of ${#LONG} characters: exit $rc: $(head -c 300 "$TMP/e")"; fi
else bad "30-layer model: synth + calibrate: $(head -c 400 "$TMP/l30.err")"; fi

fi
# ---- tokenize --json through jansson: byte tokens (pieces that are not UTF-8 alone) stay valid JSON
out=$("$BIN" tokenize -p "a😀" --json --pieces 2>&1)
if printf '%s' "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.buffer.read().decode("utf-8"))
assert len(d["ids"]) == len(d["pieces"]) >= 3 and d["pieces"][-1] == "\ufffd", d' 2>/dev/null; then ok "tokenize --json --pieces: byte tokens as U+FFFD, valid JSON"
else bad "tokenize --json --pieces on byte tokens: $out"; fi
echo "test_cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
