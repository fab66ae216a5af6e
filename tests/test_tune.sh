#!/usr/bin/env bash
# test_tune.sh - `kvcodec tune` end to end on stories260K in seconds: it calibrates on the fit
# part of a calibration text, scores the candidate rows on the held-out tail, and writes a
# preset that loads and runs (ppl --kv-preset equals the chosen setting by hand); every scored
# candidate's cache fits the budget, the lowest KLD is the one chosen, the budget is used (the
# chosen setting is within a grid step of it), a calibration that saw the held-out tokens is
# refused, and usage errors exit 2. Under CI=true a missing ../shared fails instead of skipping.
set -u
BIN=${KVC_BIN:-build/kvcodec}
S=${KVC_SHARED:-../shared}
TINY=$S/models/stories260K.gguf
pass=0; fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
if [ ! -f "$TINY" ]; then
    if [ "${CI:-}" = "true" ]; then echo "FAIL $TINY is missing (CI=true)"; exit 1; fi
    echo "SKIP test_tune: $TINY is missing"; exit 0
fi
TMP=$(mktemp -d /tmp/test_tune.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
head -c 40000 "$S/text/calib.txt" > "$TMP/cal.txt"

usage_err() { # NAME ARGS...: exit 2 and one line on stderr
    local name=$1; shift
    "$BIN" "$@" > /dev/null 2> "$TMP/ue"; local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l < "$TMP/ue")" -eq 1 ]; then ok "usage error: $name"
    else bad "usage error $name: exit $rc: $(cat "$TMP/ue")"; fi
}

t0=$(date +%s)
if "$BIN" tune -m "$TINY" -f "$TMP/cal.txt" --bits 6 -c 256 --heldout 2 --calib-tokens 2048 -t 2 --all --json \
       -o "$TMP/t.preset" > "$TMP/tune.json" 2> "$TMP/tune.err"; then
    ok "tune on stories260K ($(( $(date +%s) - t0 )) s)"
    v=$(python3 -c '
import json,sys
r=json.load(open(sys.argv[1])); B=r["budget_bits"]
sc=[c for c in r["candidates"] if c["scored"]]
b=r["candidates"][r["best"]]
print("PASS candidates scored: %d" % len(sc) if len(sc) >= 3 else "FAIL only %d candidates scored" % len(sc))
over=[c for c in sc if c["bits_per_element"] > B + 1e-9]
print("FAIL over budget: %s" % over if over else "PASS every scored cache fits %g bits" % B)
m=min(c["kld_mean"] for c in sc)
print("PASS the lowest held-out KLD is chosen" if b["kld_mean"] == m else "FAIL chose %s, min KLD %g" % (b, m))
both=[c for c in sc if c["kv_v"].startswith("pca") and c["kv_k"].startswith("pca")]
# head dim 8: a pca row is ceil(8 b / 8) bytes, so the sized bits move in steps of one bit per side
far=[c for c in both if B - c["bits_per_element"] > 1.0 + 1e-9]
print("FAIL budget left unused: %s" % far if far else "PASS sized settings use the budget (within one byte per row)")
print("PASS held-out split: %d fit, %d scored" % (r["n_fit"], r["n_heldout_scored"]) if r["n_heldout_scored"] == 2 * (256 - 128 - 1) and r["n_fit"] + 512 == r["n_tokens_text"] else "FAIL split %s" % r)
print("PASS scores are finite" if all(0 <= c["kld_mean"] < 50 and 0 <= c["top1_agree"] <= 1 for c in sc) else "FAIL scores %s" % sc)
json.dump(b, open(sys.argv[2], "w"))' "$TMP/tune.json" "$TMP/best.json" 2>&1)
    while IFS= read -r l; do case "$l" in PASS*) ok "${l#PASS }";; FAIL*) bad "${l#FAIL }";; *) echo "$l";; esac; done <<< "$v"
    grep -q "kvcodec tune: f16 reference" "$TMP/tune.err" && ok "progress on stderr" || bad "no progress lines: $(head -c 300 "$TMP/tune.err")"
    # the preset runs exactly the chosen setting
    read -r K V SI RE < <(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print(b["kv_k"], b["kv_v"], b["sinks"], b["recent"])' "$TMP/best.json")
    TXT=$S/text/tinystories-sample.txt
    a=$("$BIN" ppl -m "$TINY" -f "$TXT" -c 256 --chunks 1 --kv-preset "$TMP/t.preset" --json 2>/dev/null)
    b=$("$BIN" ppl -m "$TINY" -f "$TXT" -c 256 --chunks 1 --kv-k "$K" --kv-v "$V" --kv-sinks "$SI" --kv-recent "$RE" \
        --kv-calib "$TMP/t.preset" --json 2>/dev/null)
    v=$(python3 -c '
import json,sys
a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2])
print("PASS ppl --kv-preset of the tuned preset equals its setting by hand (%s / %s)" % (a["kv_k"], a["kv_v"]) if a["ppl"] == b["ppl"] and a["kld_mean"] == b["kld_mean"] and a["kv_k"] == sys.argv[3] and a["kv_v"] == sys.argv[4] else "FAIL %s vs %s" % (a, b))' "$a" "$b" "$K" "$V" 2>&1)
    while IFS= read -r l; do case "$l" in PASS*) ok "${l#PASS }";; FAIL*) bad "${l#FAIL }";; *) echo "$l";; esac; done <<< "$v"
    "$BIN" info -m "$TINY" -c 256 --kv-preset "$TMP/t.preset" 2>&1 | grep -q "kvcodec tune --bits 6" && ok "info prints the tune note" ||
        bad "info --kv-preset: no tune note"
    [ ! -e "$TMP/t.preset.tune-calib.tmp" ] && ok "temporary calibration removed" || bad "temporary calibration left behind"
    # per-layer bits (pca layers=): equal values are bits=B exactly; other values of the same mean
    # cost the same bytes (head dim 8: b bits = b bytes a row); a wrong count is one error line
    P="--kv-calib $TMP/t.preset -c 256 --chunks 1 --json"
    u=$("$BIN" ppl -m "$TINY" -f "$TXT" $P --kv-k pca:bits=3,keys=pre --kv-v pca:bits=3 2>/dev/null)
    l=$("$BIN" ppl -m "$TINY" -f "$TXT" $P --kv-k pca:layers=3/3/3/3/3,keys=pre --kv-v pca:layers=3/3/3/3/3 2>/dev/null)
    x=$("$BIN" ppl -m "$TINY" -f "$TXT" $P --kv-k pca:layers=2/4/3/3/3,keys=pre --kv-v pca:layers=4/2/3/4/2 2>/dev/null)
    v=$(python3 -c '
import json,sys
u,l,x=(json.loads(a) for a in sys.argv[1:4])
print("PASS layers= with equal values equals bits=" if u["ppl"] == l["ppl"] and u["kld_mean"] == l["kld_mean"] else "FAIL layers=3/.. %s vs bits=3 %s" % (l, u))
print("PASS layers= of mean 3 costs what bits=3 costs (%g bits)" % x["bits_per_element"] if x["bits_per_element"] == u["bits_per_element"] and x["ppl"] != u["ppl"] else "FAIL layers=2/4/.. %s vs %s" % (x, u))' "$u" "$l" "$x" 2>&1)
    while IFS= read -r l; do case "$l" in PASS*) ok "${l#PASS }";; FAIL*) bad "${l#FAIL }";; *) echo "$l";; esac; done <<< "$v"
    "$BIN" ppl -m "$TINY" -f "$TXT" -c 256 --chunks 1 --kv-calib "$TMP/t.preset" --kv-k pca:layers=3/3 --kv-v f16 > /dev/null 2> "$TMP/e"; rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l < "$TMP/e")" -eq 1 ] && grep -q "layers= lists 2 values; the model has 5 layers" "$TMP/e"; then ok "layers= with the wrong count: one line"
    else bad "layers= with the wrong count: exit $rc: $(cat "$TMP/e")"; fi
    grep -q '"name": "pre-w64-alloc", "scored": true, "kv_k": "pca:layers=' "$TMP/tune.json" && ok "tune scores a per-layer allocation row" ||
        bad "no per-layer row scored: $(head -c 600 "$TMP/tune.json")"
    # per-head bits (pca heads=, 5 layers x 4 KV heads): equal values are bits=B exactly; values of
    # the same mean cost the same bytes and change the result; a wrong count is one error line
    H3=$(python3 -c 'print("/".join(["3"] * 20))'); H24=$(python3 -c 'print("/".join(("2", "4")[i % 2] for i in range(20)))')
    h=$("$BIN" ppl -m "$TINY" -f "$TXT" $P --kv-k pca:heads=$H3,keys=pre --kv-v pca:heads=$H3 2>/dev/null)
    y=$("$BIN" ppl -m "$TINY" -f "$TXT" $P --kv-k pca:heads=$H24,keys=pre --kv-v pca:heads=$H24 2>/dev/null)
    v=$(python3 -c '
import json,sys
u,h,y=(json.loads(a) for a in sys.argv[1:4])
print("PASS heads= with equal values equals bits=" if u["ppl"] == h["ppl"] and u["kld_mean"] == h["kld_mean"] else "FAIL heads=3/.. %s vs bits=3 %s" % (h, u))
print("PASS heads= of mean 3 costs what bits=3 costs (%g bits)" % y["bits_per_element"] if y["bits_per_element"] == u["bits_per_element"] and y["ppl"] != u["ppl"] else "FAIL heads=2/4/.. %s vs %s" % (y, u))' "$u" "$h" "$y" 2>&1)
    while IFS= read -r l; do case "$l" in PASS*) ok "${l#PASS }";; FAIL*) bad "${l#FAIL }";; *) echo "$l";; esac; done <<< "$v"
    "$BIN" ppl -m "$TINY" -f "$TXT" -c 256 --chunks 1 --kv-calib "$TMP/t.preset" --kv-k pca:heads=3/3/3/3/3 --kv-v f16 > /dev/null 2> "$TMP/e"; rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l < "$TMP/e")" -eq 1 ] && grep -q "heads= lists 5 values; the model has 5 layers x 4 KV heads" "$TMP/e"; then ok "heads= with the wrong count: one line"
    else bad "heads= with the wrong count: exit $rc: $(cat "$TMP/e")"; fi
    grep -q '"name": "pre-w64-head", "scored": true, "kv_k": "pca:heads=' "$TMP/tune.json" && ok "tune scores a per-head allocation row" ||
        bad "no per-head row scored: $(head -c 600 "$TMP/tune.json")"
else bad "tune on stories260K: $(tail -n 3 "$TMP/tune.err")"; fi

# a calibration that ran over the held-out tail is refused (it may have seen the scored tokens)
"$BIN" calibrate -m "$TINY" -f "$TMP/cal.txt" -o "$TMP/all.calib" -c 128 --tokens 100000 -q > /dev/null 2>&1
"$BIN" tune -m "$TINY" -f "$TMP/cal.txt" --bits 4 -c 128 --kv-calib "$TMP/all.calib" -o "$TMP/x.preset" -q > /dev/null 2> "$TMP/e"; rc=$?
if [ $rc -eq 1 ] && grep -q "may have seen the tokens scored" "$TMP/e" && [ ! -e "$TMP/x.preset" ]; then ok "calibration over the held-out tail refused"
else bad "calibration over the held-out tail: exit $rc: $(cat "$TMP/e")"; fi
# a budget nothing fits
"$BIN" tune -m "$TINY" -f "$TMP/cal.txt" --bits 0.5 -c 128 --calib-tokens 512 -o "$TMP/y.preset" -q > /dev/null 2> "$TMP/e"; rc=$?
if [ $rc -eq 1 ] && grep -q "no candidate setting fits 0.500 bits" "$TMP/e"; then ok "budget nothing fits: one error line"
else bad "budget nothing fits: exit $rc: $(cat "$TMP/e")"; fi

# the default scores only the rows marked fast (--all adds the others); --rows names rows of either kind
if "$BIN" tune -m "$TINY" -f "$TMP/cal.txt" --bits 6 -c 256 --calib-tokens 2048 --kv-calib "$TMP/t.preset" -t 2 --json -q \
       -o "$TMP/f.preset" > "$TMP/fast.json" 2> "$TMP/e" &&
   "$BIN" tune -m "$TINY" -f "$TMP/cal.txt" --bits 6 -c 256 --calib-tokens 2048 --kv-calib "$TMP/t.preset" -t 2 --json -q \
       --rows pre-w64,pair-w64 -o "$TMP/r.preset" > "$TMP/rows.json" 2>> "$TMP/e"; then
    v=$(python3 -c '
import json,sys
f=json.load(open(sys.argv[1])); r=json.load(open(sys.argv[2]))
sc=[c for c in f["candidates"] if c["scored"]]
slow=[c["name"] for c in sc if not c["fast"]]
print("PASS tune scores only the fast rows by default (%d)" % len(sc) if sc and not slow else "FAIL default scored %d rows, slow ones: %s" % (len(sc), slow))
n=sorted(c["name"] for c in r["candidates"] if c["scored"])
print("PASS --rows scores the named rows, fast or not" if n == ["pair-w64", "pre-w64"] else "FAIL --rows scored %s" % n)' "$TMP/fast.json" "$TMP/rows.json" 2>&1)
    while IFS= read -r l; do case "$l" in PASS*) ok "${l#PASS }";; FAIL*) bad "${l#FAIL }";; *) echo "$l";; esac; done <<< "$v"
else bad "tune (default rows / --rows): $(tail -n 3 "$TMP/e")"; fi
usage_err "tune --fast (now the default)" tune -m "$TINY" -f "$TMP/cal.txt" --bits 3 -o "$TMP/z.preset" --fast
usage_err "tune without --bits" tune -m "$TINY" -f "$TMP/cal.txt" -o "$TMP/z.preset"
usage_err "tune without -f" tune -m "$TINY" --bits 3 -o "$TMP/z.preset"
usage_err "tune --metric bad" tune -m "$TINY" -f "$TMP/cal.txt" --bits 3 -o "$TMP/z.preset" --metric nope
"$BIN" tune --help | grep -q "held out" && ok "tune --help explains the split" || bad "tune --help"

echo "test_tune: $pass passed, $fail failed"
[ $fail -eq 0 ]
