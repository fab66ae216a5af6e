#!/usr/bin/env bash
# run.sh - builds the fuzz targets (libFuzzer + ASan + UBSan) and fuzzes each for a bounded time:
#   gguf       the GGUF parser, on a scratch copy of fuzz/corpus (the committed seeds are never
#              modified);
#   tokenizer  random bytes through every tokenizer family (BPE with each pre-tokenizer family,
#              SentencePiece; the real vocabularies of ../shared when present), seeded with a few
#              texts;
#   request    the server's request bodies (src/serve/request.c): JSON through jansson, every
#              field checked, chat messages formatted; seeded with valid and invalid bodies.
#   fuzz/run.sh [seconds per target, default 60] [extra libFuzzer flags...]
# Exits non-zero if a build fails or the fuzzer finds a crash, leak, timeout or invariant
# violation; the crashing input is kept in $FUZZ_ARTIFACTS (default build-fuzz/artifacts/).
# Environment: FUZZ_TARGETS (default "gguf tokenizer"), CC_FUZZ (default clang), FUZZ_JOBS
# (parallel workers, default 1), FUZZ_KEEP_CORPUS=1 to keep the grown corpora in
# build-fuzz/corpus-run-TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
case $secs in ''|*[!0-9]*) echo "run.sh: seconds must be a number, got '$secs'" >&2; exit 2;; esac
cc=${CC_FUZZ:-clang}
jobs=${FUZZ_JOBS:-1}
targets=${FUZZ_TARGETS:-gguf tokenizer}
out=build-fuzz
artifacts=${FUZZ_ARTIFACTS:-$out/artifacts/}
mkdir -p "$out" "$artifacts"
flags=(-std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc -Itests -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_kvc.XXXXXX")
trap 'rm -rf "$work"' EXIT

for target in $targets; do
    bin=$out/fuzz_$target
    corpus=$work/corpus-$target
    dict=$work/$target.dict
    mkdir -p "$corpus"
    echo "run.sh: building $bin with $cc"
    case $target in
    gguf)
        "$cc" "${flags[@]}" fuzz/fuzz_gguf.c src/gguf.c src/util.c src/types.c -lm -o "$bin"
        if [ -d fuzz/corpus ] && [ -n "$(ls -A fuzz/corpus 2>/dev/null)" ]; then
            cp fuzz/corpus/* "$corpus/"
        else
            echo "run.sh: fuzz/corpus is empty, generating seeds" >&2
            python3 fuzz/make_corpus.py "$corpus" >/dev/null
        fi
        # a dictionary of the format's tokens: magic, versions, type ids, common keys, large counts
        cat >"$dict" <<'DICT'
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
DICT
        max_len=65536
        ;;
    tokenizer)
        "$cc" "${flags[@]}" fuzz/fuzz_tokenizer.c src/tokenizer.c src/tokenizer_bpe.c src/tokenizer_spm.c \
            src/gguf.c src/util.c src/types.c -lpcre2-8 -lm -o "$bin"
        # seeds: byte 0 picks the tokenizer, byte 1 the flags, then text
        i=0
        for s in "Hello world, it's 123456 the end" "  \t\n\r\n  x  " "<|ctl|>a<|user|>b<|eot_id|>" \
                 "$(printf 'caf\xc3\xa9 \xe4\xb8\x80\xe4\xba\x8c \xf0\x9f\x99\x82 \xff\xc0\xaf\xed\xa0\x80')" \
                 "I'LL DON'T we've 3.14159 ~!@#\$%"; do
            for t in 0 1 2 3 5 6 7 8 11 12 13 15 16 17 18; do
                printf "\\x$(printf %02x $t)\\x0$((i % 4))%s" "$s" >"$corpus/seed-$t-$i"
            done
            i=$((i + 1))
        done
        cat >"$dict" <<'DICT'
"'s"
"'LL"
" the"
"\x0d\x0a"
"\xc2\xa0"
"\xe3\x80\x80"
"\xe1\xa0\x8e"
"\xed\xa0\x80"
"\xc0\xaf"
"\xf0\x9f\x99\x82"
"<|ctl|>"
"<|user|>"
"<|eot_id|>"
"<|endoftext|>"
"<s>"
"123"
DICT
        max_len=4096
        ;;
    request)
        "$cc" "${flags[@]}" fuzz/fuzz_request.c src/serve/request.c src/chat.c src/gguf.c src/util.c src/types.c \
            -ljansson -lm -o "$bin"
        # seeds: byte 0 picks the endpoint and chat format, then a JSON body
        i=0
        for s in '{"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}' \
                 '{"model": "kvref-q4_0", "prompt": ["x"], "stop": ["\n", "."], "stream": true, "seed": 7}' \
                 '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "top_p": 0.9, "top_k": 40}' \
                 '{"messages": [{"role": "robot", "content": "x"}], "max_tokens": 2.5}' \
                 '{"prompt": "a", "prompt": "b"}' '[1, 2]' '{"prompt": "caf\u00e9 \ud83d\ude42", "stop": "x"}'; do
            for t in 0 1 3 5 7 9; do
                printf "\\x$(printf %02x $t)%s" "$s" >"$corpus/seed-$t-$i"
            done
            i=$((i + 1))
        done
        cat >"$dict" <<'DICT'
"\"prompt\""
"\"messages\""
"\"role\""
"\"content\""
"\"user\""
"\"assistant\""
"\"system\""
"\"max_tokens\""
"\"temperature\""
"\"top_p\""
"\"top_k\""
"\"seed\""
"\"stop\""
"\"stream\""
"\"model\""
"true"
"null"
"\\u0000"
"\\ud800"
"1e308"
DICT
        max_len=8192
        ;;
    *) echo "run.sh: unknown target '$target' (gguf, tokenizer, request)" >&2; exit 2 ;;
    esac

    echo "run.sh: fuzzing $target for ${secs}s (jobs $jobs) on $(ls "$corpus" | wc -l) seeds"
    fork=()
    [ "$jobs" -gt 1 ] && fork=(-fork="$jobs") # -fork runs parallel workers, stops at the first crash
    set +e
    "./$bin" "$corpus" -dict="$dict" -max_len=$max_len -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$artifacts" -print_final_stats=1 ${fork[@]+"${fork[@]}"} "$@" \
        >"$work/log-$target" 2>&1
    rc=$?
    set -e
    sed '/^###### Recommended dictionary/,/^###### End of recommended dictionary/d' "$work/log-$target" |
        grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' | tail -n 80 || true
    grep -E '^#[0-9]+' "$work/log-$target" | tail -n 1 || true
    if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then
        rm -rf "$out/corpus-run-$target" && cp -r "$corpus" "$out/corpus-run-$target"
    fi
    if [ "$rc" -ne 0 ]; then
        echo "run.sh: $target FAILED (exit $rc); inputs in $artifacts:" >&2
        ls -l "$artifacts" >&2 || true
        exit 1
    fi
    echo "run.sh: $target: no crash in ${secs}s"
done
