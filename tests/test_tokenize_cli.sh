#!/usr/bin/env bash
# test_tokenize_cli.sh - `kvcodec tokenize` on vocabularies: vocab-only GGUFs (no tensors), a
# model whose tensor types the engine may not run (only the metadata is read), --special
# (control tokens parsed or kept as text), --no-bos, --json/--pieces, and one-line errors for an
# unknown pre-tokenizer and a missing file. Ids are llama.cpp's (from tokenize-bpe.jsonl).
# Under CI=true a missing ../shared fails instead of skipping.
set -u
BIN=${KVC_BIN:-build/kvcodec}
S=${KVC_SHARED:-../shared}
V=$S/models/vocab
pass=0; fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi; }

if [ ! -f "$V/ggml-vocab-gpt-2.gguf" ] || [ ! -f "$V/llama3-vocab.gguf.gz" ]; then
    if [ "${CI:-}" = "true" ]; then bad "$V is missing (CI=true)"; echo "test_tokenize_cli: $pass passed, $fail failed"; exit 1; fi
    echo "SKIP: $V is missing"; echo "test_tokenize_cli: 0 passed, 0 failed"; exit 0
fi
TMP=$(mktemp -d /tmp/test_tokcli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
gunzip -c "$V/llama3-vocab.gguf.gz" >"$TMP/llama3.gguf"
L3=$TMP/llama3.gguf

# vocab-only GPT-2 (general.architecture gpt2, no tensors)
check "gpt-2 vocab-only: 'Hello world'" "$("$BIN" tokenize -m "$V/ggml-vocab-gpt-2.gguf" -p "Hello world" 2>&1)" "15496 995"
# Llama 3: BOS from the metadata, --no-bos, ids of llama.cpp
check "llama3: 'Hello world' with BOS" "$("$BIN" tokenize -m "$L3" -p "Hello world" 2>&1)" "128000 9906 1917"
check "llama3: --no-bos" "$("$BIN" tokenize -m "$L3" -p " Hello world" --no-bos 2>&1)" "22691 1917"
check "llama3: --special parses control tokens" \
    "$("$BIN" tokenize -m "$L3" -p "<|begin_of_text|>Hello world<|eot_id|>" --special 2>&1)" "128000 128000 9906 1917 128009"
out=$("$BIN" tokenize -m "$L3" -p "<|eot_id|>" 2>&1)
check "llama3: control text without --special is text" "$(echo "$out" | awk '{print ($1 == 128000 && NF > 2 && $NF != 128009) ? "text" : "parsed"}')" "text"
check "llama3: --json" "$("$BIN" tokenize -m "$L3" -p "Hello" --json 2>&1)" '{"ids": [128000, 9906]}'
check "llama3: --json --pieces" "$("$BIN" tokenize -m "$L3" -p "Hello world" --json --pieces 2>&1)" \
    '{"ids": [128000, 9906, 1917], "pieces": ["<|begin_of_text|>", "Hello", " world"]}'
# a model file: only its tokenizer metadata is read, whatever its tensor types
if [ -f "$S/models/synth/qwen2-iq4.gguf" ]; then
    check "qwen2-iq4 (IQ4 tensors): tokenizer only, no BOS" "$("$BIN" tokenize -m "$S/models/synth/qwen2-iq4.gguf" -p "Hello world" 2>&1)" \
        "$("$BIN" tokenize -m "$S/models/synth/qwen2-q5km.gguf" -p "Hello world" 2>&1)"
fi
# unknown pre-tokenizer: the value of tokenizer.ggml.pre patched to 'gpt-9'
python3 - "$V/ggml-vocab-gpt-2.gguf" "$TMP/badpre.gguf" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
k = b.find(b'tokenizer.ggml.pre')
v = b.find(b'gpt-2', k)
assert k > 0 and 0 < v - k < 40
b[v:v + 5] = b'gpt-9'
open(sys.argv[2], 'wb').write(b)
PY
err=$("$BIN" tokenize -m "$TMP/badpre.gguf" -p "x" 2>&1 >/dev/null); rc=$?
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && printf '%s' "$err" | grep -q "'gpt-9' is not supported" &&
    printf '%s' "$err" | grep -q "llama-bpe"; then ok "unknown pre: one-line error naming it and the supported ones"
else bad "unknown pre: rc $rc, '$err'"; fi
err=$("$BIN" tokenize -m "$TMP/none.gguf" -p "x" 2>&1 >/dev/null); rc=$?
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]; then ok "missing file: one-line error"; else bad "missing file: rc $rc '$err'"; fi
echo "test_tokenize_cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
