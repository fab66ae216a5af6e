#!/usr/bin/env bash
# test_install.sh - `make install PREFIX=tmp` gives a usable tree: header, static and shared
# libraries, CLI and kvcodec.pc; a tiny program compiled with `pkg-config --cflags --libs
# kvcodec` against it loads the embedded model through the installed libkvcodec.so and
# tokenizes. Also checks that libkvcodec.so exports only the public API (kvc_* of the header).
# Sanitizer builds: runs in the release build, and says so.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${KVC_BUILD:-build}
pass=0; fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
if [ "$(basename "$B")" = "build-san" ]; then
    echo "test_install: sanitizer build: the install check runs in the release build"
    echo "test_install: 0 passed, 0 failed"; exit 0
fi
if ! command -v pkg-config >/dev/null; then
    bad "pkg-config is missing (apt-get install pkg-config)"; echo "test_install: $pass passed, $fail failed"; exit 1
fi
T=$(mktemp -d /tmp/test_install.XXXXXX)
trap 'rm -rf "$T"' EXIT
if make -s -C "$ROOT" install PREFIX="$T/prefix" > "$T/install.log" 2>&1; then ok "make install PREFIX=$T/prefix"
else bad "make install: $(tail -n 5 "$T/install.log")"; echo "test_install: $pass passed, $fail failed"; exit 1; fi
for f in include/kvcodec.h lib/libkvcodec.a lib/libkvcodec.so lib/libkvcodec.so.0 lib/pkgconfig/kvcodec.pc bin/kvcodec; do
    if [ -e "$T/prefix/$f" ]; then ok "installed $f"; else bad "missing $f"; fi
done
cat > "$T/hello.c" <<'C'
#include <kvcodec.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    kvc_model *m; kvc_error e = {0};
    if (argc < 2 || kvc_model_load(argv[1], &m, &e)) { fprintf(stderr, "load: %s\n", e.msg); return 1; }
    int32_t *ids; int n;
    if (kvc_tokenize(m, "Hello world", 11, 1, &ids, &n, &e)) { fprintf(stderr, "tokenize: %s\n", e.msg); return 1; }
    printf("%d layers, %d ids, first %d\n", kvc_model_get_info(m)->n_layer, n, ids[0]);
    free(ids); kvc_model_free(m);
    return 0;
}
C
export PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs kvcodec 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$flags" | grep -q -- "-lkvcodec"; then ok "pkg-config --cflags --libs kvcodec: $flags"; else bad "pkg-config: $flags"; fi
if ${CC:-cc} "$T/hello.c" -o "$T/hello" $flags 2> "$T/cc.log"; then ok "a program compiles and links with pkg-config's flags"
else bad "compile against the installed tree: $(head -c 400 "$T/cc.log")"; fi
out=$(cd / && LD_LIBRARY_PATH="$T/prefix/lib" "$T/hello" "$ROOT/models/kvref-q4_0.gguf" 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$out" = "8 layers, 4 ids, first 1" ]; then ok "it runs on the installed libkvcodec.so: $out"
else bad "installed program: exit $rc: $out"; fi
if LD_LIBRARY_PATH="$T/prefix/lib" ldd "$T/hello" 2>/dev/null | grep -q "libkvcodec.so.0 => $T/prefix/lib"; then ok "it links the shared library (soname libkvcodec.so.0)"
else bad "hello does not use $T/prefix/lib/libkvcodec.so.0: $(LD_LIBRARY_PATH="$T/prefix/lib" ldd "$T/hello" | grep kvcodec)"; fi
# only the public API is exported: every dynamic symbol is a kvc_ function declared KVC_API
syms=$(nm -D --defined-only "$B/libkvcodec.so" | awk '$2 ~ /[TDBR]/ {print $3}' | sort)
hdr=$(grep -oE 'KVC_API [^(]*\(' "$ROOT/include/kvcodec.h" | grep -oE 'kvc_[a-z0-9_]+ *\($' | tr -d ' (' | sort)
extra=$(comm -23 <(printf '%s\n' "$syms") <(printf '%s\n' "$hdr"))
missing=$(comm -13 <(printf '%s\n' "$syms") <(printf '%s\n' "$hdr"))
if [ -z "$extra" ] && [ -z "$missing" ] && [ "$(printf '%s\n' "$syms" | wc -l)" -gt 30 ]; then
    ok "libkvcodec.so exports exactly the $(printf '%s\n' "$syms" | wc -l) KVC_API functions of kvcodec.h"
else bad "exports: not in the header: [$extra] not exported: [$missing]"; fi
out=$("$T/prefix/bin/kvcodec" --help 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q "ppl"; then ok "installed CLI runs"; else bad "installed CLI: exit $rc"; fi
echo "test_install: $pass passed, $fail failed"
[ $fail -eq 0 ]
