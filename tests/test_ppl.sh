#!/usr/bin/env bash
# test_ppl.sh - perplexity of kvcodec's engine (f16 KV) against llama.cpp's figures in
# ../shared/reference/llamacpp-ppl.json: each must agree within 0.3 %. KVC_TEST_LEVEL=quick
# (used for the sanitizer build) runs the stories260K check only and says so.
set -u
BIN=${KVC_BIN:-build/kvcodec}
S=${KVC_SHARED:-../shared}
pass=0; fail=0
if [ ! -d "$S/reference" ]; then
    if [ "${CI:-}" = "true" ]; then echo "FAIL: $S is missing (CI=true)"; echo "test_ppl: 0 passed, 1 failed"; exit 1; fi
    echo "SKIP: $S is missing"; echo "test_ppl: 0 passed, 0 failed"; exit 0
fi
check() { # key model text ctx chunks(0=all)
    local key=$1 model=$2 text=$3 ctx=$4 chunks=$5 extra=""
    [ "$chunks" != 0 ] && extra="--chunks $chunks"
    local out mp="$S/models/$model"
    [ "$model" = kvref-q4_0.gguf ] && mp=models/kvref-q4_0.gguf   # the embedded default model
    out=$("$BIN" ppl -m "$mp" -f "$S/text/$text" -c "$ctx" $extra --json -q 2>&1)
    local verdict
    verdict=$(python3 - "$S/reference/llamacpp-ppl.json" "$key" "$out" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))[sys.argv[2]]
try:
    got = json.loads(sys.argv[3].strip().splitlines()[-1])
except Exception:
    print("FAIL no JSON from kvcodec ppl: " + sys.argv[3][-300:]); sys.exit()
rel = abs(got["ppl"] / ref - 1)
print(("PASS" if rel <= 0.003 else "FAIL") + " %s: kvcodec %.4f, llama.cpp %.4f, diff %.3f %% (limit 0.3 %%), %d tokens, %.1f s"
      % (sys.argv[2], got["ppl"], ref, 100 * rel, got["n_tokens"], got["seconds"]))
PY
)
    echo "$verdict"
    case "$verdict" in PASS*) pass=$((pass + 1)) ;; *) fail=$((fail + 1)) ;; esac
}
check stories260K_tinystories_f16_ctx128_all stories260K.gguf tinystories-sample.txt 128 0
if [ "${KVC_TEST_LEVEL:-full}" = "quick" ]; then
    echo "test_ppl: quick level: kvref checks run in the release build (KVC_TEST_LEVEL=full)"
else
    check wikitext2_f16_ctx2048_chunks10 kvref-f16.gguf wikitext-2-test.raw 2048 10
    check books_f16_ctx2048_chunks10 kvref-f16.gguf books-valid.txt 2048 10
    check kvref_q4_0_weights_wikitext2_f16_ctx2048_chunks10 kvref-q4_0.gguf wikitext-2-test.raw 2048 10
    check wikitext2_f16_ctx512_chunks40 kvref-f16.gguf wikitext-2-test.raw 512 40
    check wikitext2_f16_ctx2048_chunks40 kvref-f16.gguf wikitext-2-test.raw 2048 40
    check books_f16_ctx2048_chunks40 kvref-f16.gguf books-valid.txt 2048 40
fi
echo "test_ppl: $pass passed, $fail failed"
[ $fail -eq 0 ]
