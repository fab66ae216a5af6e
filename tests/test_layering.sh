#!/usr/bin/env bash
# test_layering.sh - the library's layering: nothing under src/kv/ or src/codecs/ includes
# forward.h or model.h (the KV layer and the codecs never call the forward pass; evaluation
# that runs the model lives in src/eval/). Names every offending file and line.
set -u
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0
for dir in src/kv src/codecs; do
    hits=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^">]*/)?(forward|model)\.h[">]' "$dir"/*.c "$dir"/*.h 2>/dev/null)
    if [ -z "$hits" ]; then
        echo "PASS no file under $dir/ includes forward.h or model.h"; pass=$((pass + 1))
    else
        echo "FAIL $dir/ includes the forward pass / model headers:"
        printf '%s\n' "$hits" | sed 's/^/    /'
        fail=$((fail + 1))
    fi
done
# the check itself can fail: it finds an include planted in a scratch copy
tmp=$(mktemp -d /tmp/test_layering.XXXXXX)
printf '#include "../forward.h"\n' > "$tmp/x.c"
if grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^">]*/)?(forward|model)\.h[">]' "$tmp/x.c"; then
    echo "PASS the include pattern finds a planted #include \"../forward.h\""; pass=$((pass + 1))
else echo "FAIL the include pattern misses a planted include"; fail=$((fail + 1)); fi
rm -rf "$tmp"
echo "test_layering: $pass passed, $fail failed"
[ $fail -eq 0 ]
