#!/usr/bin/env bash
# test_quantize.sh - `kvcodec quantize` of kvref-f16 to Q8_0, then perplexity (WikiText-2, ctx
# 2048, 10 chunks, f16 cache) against llama.cpp's figure for kvref with Q8_0 weights made by
# llama-quantize (48.03, ../shared/models/README.md): within 0.3 %. Release level only (the
# sanitizer build's quick level says so).
set -u
BIN=${KVC_BIN:-build/kvcodec}
S=${KVC_SHARED:-../shared}
if [ ! -f "$S/models/kvref-f16.gguf" ]; then
    if [ "${CI:-}" = "true" ]; then echo "FAIL: $S is missing (CI=true)"; echo "test_quantize_sh: 0 passed, 1 failed"; exit 1; fi
    echo "SKIP: $S is missing"; echo "test_quantize_sh: 0 passed, 0 failed"; exit 0
fi
if [ "${KVC_TEST_LEVEL:-full}" = "quick" ]; then
    echo "test_quantize_sh: quick level: the Q8_0 perplexity check runs in the release build"
    echo "test_quantize_sh: 0 passed, 0 failed"; exit 0
fi
out=$(mktemp /tmp/kvc-test-quantize-XXXXXX.gguf)
trap 'rm -f "$out"' EXIT
pass=0; fail=0
if "$BIN" quantize -q "$S/models/kvref-f16.gguf" "$out" q8_0; then pass=$((pass + 1)); else echo "FAIL: quantize"; fail=$((fail + 1)); fi
json=$("$BIN" ppl -m "$out" -f "$S/text/wikitext-2-test.raw" -c 2048 --chunks 10 --json -q 2>&1 | tail -n 1)
verdict=$(python3 - "$json" <<'PY'
import json, sys
try:
    got = json.loads(sys.argv[1])
except Exception:
    print("FAIL no JSON from kvcodec ppl: " + sys.argv[1][-300:]); sys.exit()
ref = 48.03  # llama.cpp, kvref with Q8_0 weights, ../shared/models/README.md
rel = abs(got["ppl"] / ref - 1)
print(("PASS" if rel <= 0.003 else "FAIL") + " quantized q8_0: kvcodec %.4f, llama.cpp %.2f, diff %.3f %% (limit 0.3 %%)" % (got["ppl"], ref, 100 * rel))
PY
)
echo "$verdict"
case "$verdict" in PASS*) pass=$((pass + 1)) ;; *) fail=$((fail + 1)) ;; esac
echo "test_quantize_sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
