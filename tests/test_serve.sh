#!/usr/bin/env bash
# test_serve.sh - the HTTP server on 127.0.0.1 (tests/serve_client.py: greedy answers vs
# `kvcodec run`, bad requests, disconnects, load test with an RSS bound, shutdown), on the
# embedded model; bounded by `timeout` so a hung server fails the test instead of CI.
set -u
BIN=${KVC_BIN:-build/kvcodec}
if ! command -v python3 >/dev/null; then echo "FAIL python3 is missing"; echo "test_serve: 0 passed, 1 failed"; exit 1; fi
KVC_BIN=$BIN timeout 600 python3 "$(dirname "$0")/serve_client.py"
rc=$?
if [ $rc -eq 124 ]; then echo "FAIL serve_client.py ran over 600 s"; echo "test_serve: 0 passed, 1 failed"; exit 1; fi
exit $rc
