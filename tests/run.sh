#!/usr/bin/env bash
# run.sh - runs every test binary given on the command line, prints each one's summary
# and a final "N passed, N failed" line adding them up; exits 1 if any failed. Every "SKIP"
# line a test prints (a group left out for lack of ../shared) is shown and counted.
set -u
total_p=0; total_f=0; bad=0; skips=0
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        printf '%s\n' "$out" | grep -v '^PASS' | tail -n 40
    fi
    if [ -z "$line" ]; then
        echo "$t: crashed or printed no summary (exit $rc)"; total_f=$((total_f + 1)); bad=1; continue
    fi
    sk=$(printf '%s\n' "$out" | grep -E '^SKIP' | sort -u)
    if [ -n "$sk" ]; then printf '%s\n' "$sk" | sed "s|^|$(basename "$t"): |"; skips=$((skips + $(printf '%s\n' "$sk" | wc -l))); fi
    echo "$line"
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
    f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
    total_p=$((total_p + p)); total_f=$((total_f + f))
    [ $rc -ne 0 ] && bad=1
done
[ $skips -gt 0 ] && echo "skipped: $skips group(s) above need ../shared (set KVC_SHARED, or CI=true to make them fail)"
echo "tests: $total_p passed, $total_f failed"
[ $bad -eq 0 ] && [ $total_f -eq 0 ]
