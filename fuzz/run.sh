#!/usr/bin/env bash
# run.sh - builds the GGUF fuzz target (libFuzzer + ASan + UBSan) and fuzzes it for a bounded
# time on a scratch copy of fuzz/corpus (the committed seeds are never modified).
#   fuzz/run.sh [seconds, default 60] [extra libFuzzer flags...]
# Exits non-zero if the build fails or the fuzzer finds a crash, leak, timeout or invariant
# violation; the crashing input is kept in $FUZZ_ARTIFACTS (default build-fuzz/artifacts/).
# Environment: CC_FUZZ (default clang), FUZZ_JOBS (parallel workers, default 1),
# FUZZ_KEEP_CORPUS=1 to keep the grown corpus in build-fuzz/corpus-run/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
case $secs in ''|*[!0-9]*) echo "run.sh: seconds must be a number, got '$secs'" >&2; exit 2;; esac
cc=${CC_FUZZ:-clang}
jobs=${FUZZ_JOBS:-1}
out=build-fuzz
bin=$out/fuzz_gguf
artifacts=${FUZZ_ARTIFACTS:-$out/artifacts/}
mkdir -p "$out" "$artifacts"

echo "run.sh: building $bin with $cc"
"$cc" -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
    fuzz/fuzz_gguf.c src/gguf.c src/util.c src/types.c -lm -o "$bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_gguf.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
if [ -d fuzz/corpus ] && [ -n "$(ls -A fuzz/corpus 2>/dev/null)" ]; then
    cp fuzz/corpus/* "$work/corpus/"
else
    echo "run.sh: fuzz/corpus is empty, generating seeds" >&2
    python3 fuzz/make_corpus.py "$work/corpus" >/dev/null
fi

# a dictionary of the format's tokens: magic, versions, type ids, common keys, large counts
cat >"$work/gguf.dict" <<'EOF'
"GGUF"
"\x02\x00\x00\x00"
"\x03\x00\x00\x00"
"\x08\x00\x00\x00"
"\x09\x00\x00\x00"
"\x0c\x00\x00\x00"
"\x20\x00\x00\x00\x00\x00\x00\x00"
"\x00\x00\x00\x00\x00\x00\x00\x80"
"\xff\xff\xff\xff\xff\xff\xff\xff"
"\x00\x00\x00\x00\x01\x00\x00\x00"
"general.alignment"
"general.architecture"
"tokenizer.ggml.tokens"
"llama.block_count"
".weight"
EOF

echo "run.sh: fuzzing for ${secs}s (jobs $jobs) on $(ls "$work/corpus" | wc -l) seeds"
fork=()
[ "$jobs" -gt 1 ] && fork=(-fork="$jobs") # -fork runs parallel workers, stops at the first crash
set +e
"./$bin" "$work/corpus" -dict="$work/gguf.dict" -max_len=65536 -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$artifacts" -print_final_stats=1 ${fork[@]+"${fork[@]}"} "$@" \
    >"$work/log" 2>&1
rc=$?
set -e
sed '/^###### Recommended dictionary/,/^###### End of recommended dictionary/d' "$work/log" |
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' | tail -n 80 || true
grep -E '^#[0-9]+' "$work/log" | tail -n 1 || true
if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then
    rm -rf "$out/corpus-run" && cp -r "$work/corpus" "$out/corpus-run"
fi
if [ "$rc" -ne 0 ]; then
    echo "run.sh: FAILED (exit $rc); inputs in $artifacts:" >&2
    ls -l "$artifacts" >&2 || true
    exit 1
fi
echo "run.sh: no crash in ${secs}s"
