#!/usr/bin/env bash
# test_python.sh - the Python package's tests: builds a virtual environment (Debian python3 with
# --system-site-packages: numpy, pytest, setuptools), installs ./python into it the README's
# way (pip --no-deps --no-build-isolation --no-index; the package copies $KVC_BUILD's
# libkvcodec.so and CLI into itself), and runs pytest on python/tests from another directory
# so the package must find its library by itself. pytest's exit code 5 (nothing collected)
# is a failure. Sanitizer builds (build-san) run no Python: an ASan library cannot be loaded
# into an uninstrumented interpreter; the release build runs them, and this says so.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${KVC_BUILD:-build}
case $B in /*) ;; *) B=$ROOT/$B ;; esac
if [ "$(basename "$B")" = "build-san" ]; then
    echo "test_python: sanitizer build: the Python tests run in the release build (make test / make pytest)"
    echo "test_python: 0 passed, 0 failed"; exit 0
fi
PY=${KVC_PYTHON:-}
if [ -z "$PY" ]; then
    for c in /usr/bin/python3 python3; do
        if "$c" -c "import numpy, pytest, setuptools, venv" 2>/dev/null; then PY=$c; break; fi
    done
fi
if [ -z "$PY" ]; then
    echo "FAIL no python3 with numpy, pytest, setuptools and venv (apt-get install python3-numpy python3-pytest python3-setuptools python3-venv)"
    echo "test_python: 0 passed, 1 failed"; exit 1
fi
VENV=$B/pyvenv
rm -rf "$VENV" "$ROOT/python/build"
if ! "$PY" -m venv --system-site-packages "$VENV" > "$B/pyvenv.log" 2>&1 ||
   ! KVCODEC_BUILD=$B "$VENV/bin/pip" install -q --no-deps --no-build-isolation --no-index "$ROOT/python" >> "$B/pyvenv.log" 2>&1; then
    tail -n 20 "$B/pyvenv.log"
    echo "FAIL venv + pip install ./python (log: $B/pyvenv.log)"
    echo "test_python: 0 passed, 1 failed"; exit 1
fi
rm -rf "$ROOT/python/build" "$ROOT"/python/*.egg-info
cd "$(mktemp -d /tmp/test_python.XXXXXX)" || exit 1
out=$(KVC_BUILD=$B env -u KVCODEC_LIB "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/python/tests" 2>&1); rc=$?
printf '%s\n' "$out" | tail -n 40
line=$(printf '%s\n' "$out" | grep -E '[0-9]+ (passed|failed)' | tail -n 1)
p=$(printf '%s' "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+'); p=${p:-0}
f=$(printf '%s' "$line" | grep -oE '[0-9]+ (failed|errors?)' | awk '{s += $1} END {print s + 0}')
if [ $rc -eq 5 ]; then echo "FAIL pytest collected no tests (exit 5)"; f=$((f + 1)); fi
if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
# python -m kvcodec forwards to the CLI
if "$VENV/bin/python" -m kvcodec info --help 2>/dev/null | grep -q "usage: kvcodec info"; then p=$((p + 1)); echo "PASS python -m kvcodec info --help"
else f=$((f + 1)); echo "FAIL python -m kvcodec info --help"; fi
echo "test_python: $p passed, $f failed"
[ "$f" -eq 0 ]
