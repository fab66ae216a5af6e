#!/usr/bin/env python3
"""serve_client.py - checks `kvcodec serve` over HTTP on 127.0.0.1 (called by test_serve.sh).

Greedy answers of 16 concurrent requests (half streamed) equal `kvcodec run --temp 0`; chat
through --chat-format equals `run` on the formatted prompt; finish_reason "length" at
--ctx-per-seq; bad requests get the right status and an OpenAI-shaped JSON error naming the
field, and the server keeps serving; a client that drops a stream frees its KV bytes; a load
test of 200 requests from 32 clients completes or gets 503 + Retry-After, within an RSS bound;
SIGTERM shuts down cleanly. Prints PASS/FAIL lines and exits 1 on any failure."""
import http.client, json, os, re, signal, socket, subprocess, sys, threading, time

BIN = os.environ.get("KVC_BIN", "build/kvcodec")
QUICK = os.environ.get("KVC_TEST_LEVEL") == "quick"
SAN = "build-san" in BIN
MODEL = "models/kvref-q4_0.gguf"
SHARED = os.environ.get("KVC_SHARED", "../shared")
KEY = "sk-test-123"
npass = nfail = 0


def check(cond, what):
    global npass, nfail
    if cond:
        npass += 1
        print("PASS", what)
    else:
        nfail += 1
        print("FAIL", what)
    sys.stdout.flush()
    return cond


class Server:
    def __init__(self, *args, model=MODEL):
        self.p = subprocess.Popen([BIN, "serve", "-m", model, "--port", "0", "--isa", "avx2", *args],
                                  stderr=subprocess.PIPE, text=True)
        self.port = None
        t0 = time.time()
        self.err = []
        while time.time() - t0 < 60:
            line = self.p.stderr.readline()
            if not line:
                break
            self.err.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        threading.Thread(target=self._drain, daemon=True).start()
        if self.port is None:
            raise RuntimeError("server did not start: " + "".join(self.err))

    def _drain(self):
        for line in self.p.stderr:
            self.err.append(line)

    def req(self, method, path, body=None, headers=None, key=KEY, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if key:
            h["Authorization"] = "Bearer " + key
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = dict(r.getheaders())
        c.close()
        return r.status, hdrs, data

    def post(self, path, body, **kw):
        return self.req("POST", path, body, **kw)

    def stream(self, path, body, key=KEY):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request("POST", path, body=json.dumps(body), headers={"Authorization": "Bearer " + key})
        r = c.getresponse()
        events = []
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                events.append(line[6:])
        c.close()
        return r.status, events

    def metrics(self):
        st, _, data = self.req("GET", "/metrics")
        out = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.split()
                out[k] = float(v)
        return out

    def stop(self, timeout=30):
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return None


def run_ref(prompt, n, ctx, extra=(), model=MODEL):
    out = subprocess.run([BIN, "run", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "--no-prompt",
                          "-c", str(ctx), "--isa", "avx2", *extra], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout


def stream_text(events, chat):
    txt, finish, usage = "", None, None
    for e in events:
        if e == "[DONE]":
            break
        j = json.loads(e)
        ch = j["choices"][0]
        txt += (ch["delta"].get("content", "") if chat else ch["text"])
        if ch.get("finish_reason"):
            finish = ch["finish_reason"]
            usage = j.get("usage")
    return txt, finish, usage, events[-1:] == ["[DONE]"]


def is_error(st, data, want, param=None):
    try:
        j = json.loads(data)
        e = j["error"]
        ok = st == want and isinstance(e["message"], str) and e["message"] and "type" in e
        if param is not None:
            ok = ok and e.get("param") == param
        return ok, e.get("message")
    except Exception as ex:
        return False, "not a JSON error: %r (%s)" % (data[:200], ex)


PROMPTS = ["Once upon a time", "The little dog", "She opened the door and", "In the morning the sun",
           "Tom and Anna went to the park. They saw", "The king said", "A bird sat on the tree and sang",
           "It was a cold night", "Lily had a red ball. One day", "The old man walked slowly",
           "Once there was a big forest with many animals. The animals liked to play together every day, and",
           "He said hello", "The cat", "Max wanted to fly", "Mom made a cake for", "The ship sailed"]


def test_greedy(sv, ctx):
    n = 8 if QUICK else 24
    want = [run_ref(p, n, ctx) for p in PROMPTS]
    got = [None] * len(PROMPTS)

    def one(i):
        body = {"prompt": PROMPTS[i], "max_tokens": n, "temperature": 0}
        if i % 2:
            body["stream"] = True
            st, ev = sv.stream("/v1/completions", body)
            txt, fin, usage, done = stream_text(ev, False)
            got[i] = (st, txt, fin, done)
        else:
            if i % 4 == 0:
                body["model"] = "kvref-q4_0"
            st, _, data = sv.post("/v1/completions", body)
            j = json.loads(data)
            got[i] = (st, j["choices"][0]["text"], j["choices"][0]["finish_reason"], j["object"] == "text_completion")
    th = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    same = sum(1 for i in range(len(PROMPTS)) if got[i] and got[i][0] == 200 and got[i][1] == want[i])
    check(same == len(PROMPTS), "greedy: %d/%d concurrent requests (8 streamed) equal `kvcodec run --temp 0`" % (same, len(PROMPTS)))
    for i in range(len(PROMPTS)):
        if not got[i] or got[i][1] != want[i]:
            print("  prompt %d: run %r\n  serve %r" % (i, want[i], got[i]))
    check(all(g and g[3] for g in got), "greedy: streams end with data: [DONE]; plain answers are text_completion objects")


def test_length(sv, ctx):
    p = PROMPTS[0]
    want = run_ref(p, 100000, ctx)
    st, _, data = sv.post("/v1/completions", {"prompt": p, "max_tokens": 100000, "temperature": 0})
    j = json.loads(data)
    u = j["usage"]
    check(st == 200 and j["choices"][0]["finish_reason"] == "length" and j["choices"][0]["text"] == want and
          u["prompt_tokens"] + u["completion_tokens"] == ctx + 1,
          "length: a sequence that reaches --ctx-per-seq %d ends with finish_reason length, same text as run -c %d (%s)" %
          (ctx, ctx, u))


def test_chat(sv, ctx):
    msgs = [{"role": "system", "content": "You tell short stories."}, {"role": "user", "content": "Tell me about a cat."}]
    text = "<|im_start|>system\nYou tell short stories.<|im_end|>\n<|im_start|>user\nTell me about a cat.<|im_end|>\n<|im_start|>assistant\n"
    n = 8 if QUICK else 16
    want = run_ref(text, n, ctx)
    st, _, data = sv.post("/v1/chat/completions", {"messages": msgs, "max_tokens": n, "temperature": 0})
    j = json.loads(data)
    check(st == 200 and j["object"] == "chat.completion" and j["choices"][0]["message"]["role"] == "assistant" and
          j["choices"][0]["message"]["content"] == want, "chat (chatml): answer equals run on the formatted prompt")
    st, ev = sv.stream("/v1/chat/completions", {"messages": msgs, "max_tokens": n, "temperature": 0, "stream": True})
    txt, fin, usage, done = stream_text(ev, True)
    first = json.loads(ev[0]) if ev else {}
    check(st == 200 and txt == want and done and fin == "length" and first.get("object") == "chat.completion.chunk" and
          first["choices"][0]["delta"].get("role") == "assistant", "chat stream: chunks add up to the same answer")
    st, _, data = sv.post("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]})
    ok, msg = is_error(st, data, 400, "messages[0]")
    check(ok, "chat: unknown role -> 400 naming messages[0] (%s)" % msg)


def test_bad(sv):
    cases = [
        ("malformed JSON", "POST", "/v1/completions", '{"prompt": "x", ', 400, None),
        ("not an object", "POST", "/v1/completions", '[1, 2]', 400, None),
        ("missing prompt", "POST", "/v1/completions", {"max_tokens": 4}, 400, "prompt"),
        ("prompt of wrong type", "POST", "/v1/completions", {"prompt": 12}, 400, "prompt"),
        ("max_tokens of wrong type", "POST", "/v1/completions", {"prompt": "x", "max_tokens": "4"}, 400, "max_tokens"),
        ("max_tokens not an integer", "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2.5}, 400, "max_tokens"),
        ("temperature out of range", "POST", "/v1/completions", {"prompt": "x", "temperature": -1}, 400, "temperature"),
        ("top_p of wrong type", "POST", "/v1/completions", {"prompt": "x", "top_p": "high"}, 400, "top_p"),
        ("stream of wrong type", "POST", "/v1/completions", {"prompt": "x", "stream": "yes"}, 400, "stream"),
        ("stop of wrong type", "POST", "/v1/completions", {"prompt": "x", "stop": [1]}, 400, "stop"),
        ("unknown model", "POST", "/v1/completions", {"prompt": "x", "model": "gpt-4"}, 404, "model"),
        ("missing messages", "POST", "/v1/chat/completions", {"prompt": "x"}, 400, "messages"),
        ("messages not an array", "POST", "/v1/chat/completions", {"messages": "hi"}, 400, "messages"),
        ("message content of wrong type", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0]"),
        ("over-long prompt", "POST", "/v1/completions", {"prompt": "the cat sat on the mat " * 300}, 400, "prompt"),
        ("body over 1 MiB", "POST", "/v1/completions", '{"prompt": "' + "a" * (1 << 20) + '"}', 413, None),
        ("bad UTF-8", "POST", "/v1/completions", b'{"prompt": "caf\xc3\x28"}', 400, None),
        ("unknown route", "GET", "/v1/engines", None, 404, None),
        ("unknown POST route", "POST", "/v2/completions", {"prompt": "x"}, 404, None),
        ("wrong method", "GET", "/v1/completions", None, 405, None),
    ]
    for name, method, path, body, want, param in cases:
        st, _, data = sv.req(method, path, body)
        ok, msg = is_error(st, data, want, param)
        check(ok, "bad request: %s -> %d%s (%s)" % (name, want, " naming " + param if param else "", msg))
    st, _, data = sv.req("GET", "/v1/models", key=None)
    ok, msg = is_error(st, data, 401)
    check(ok, "no API key -> 401 (%s)" % msg)
    st, _, data = sv.req("POST", "/v1/completions", {"prompt": "x"}, key="sk-wrong")
    ok, msg = is_error(st, data, 401)
    check(ok, "wrong API key -> 401 (%s)" % msg)
    st, _, _ = sv.req("GET", "/health", key=None)
    check(st == 200, "/health answers without a key")
    st, _, _ = sv.req("GET", "/v1/models", headers={"X-Big": "a" * 40000})
    check(st == 431, "headers over 32 KiB -> 431 from libmicrohttpd (status %d)" % st)
    st, _, data = sv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0})
    check(st == 200 and json.loads(data)["usage"]["completion_tokens"] == 4, "the server keeps serving after bad requests")
    st, _, data = sv.req("GET", "/v1/models")
    j = json.loads(data)
    check(st == 200 and j["data"][0]["id"] == "kvref-q4_0", "/v1/models lists the file stem as the id")
    m = sv.metrics()
    need = ["kvcodec_requests_active", "kvcodec_requests_queued", "kvcodec_kv_bytes_used", "kvcodec_kv_bytes_budget",
            "kvcodec_prompt_tokens_total", "kvcodec_generated_tokens_total", "kvcodec_tokens_per_second"]
    check(all(k in m for k in need), "/metrics has %s" % ", ".join(need))


def test_stop_sampling(sv, ctx):
    base = run_ref("Once upon a time", 24, ctx)
    cut = base.find(" player")
    st, _, data = sv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stop": [" player"]})
    j = json.loads(data)
    check(st == 200 and cut > 0 and j["choices"][0]["text"] == base[:cut] and j["choices"][0]["finish_reason"] == "stop",
          "stop string cuts the answer before it, finish_reason stop")
    a = sv.post("/v1/completions", {"prompt": "The cat", "max_tokens": 12, "temperature": 0.9, "top_p": 0.9, "top_k": 20, "seed": 7})
    b = sv.post("/v1/completions", {"prompt": "The cat", "max_tokens": 12, "temperature": 0.9, "top_p": 0.9, "top_k": 20, "seed": 7})
    ta, tb = json.loads(a[2])["choices"][0]["text"], json.loads(b[2])["choices"][0]["text"]
    check(a[0] == 200 and ta == tb and len(ta) > 0, "sampling with a seed repeats")


def test_disconnect(sv):
    time.sleep(0.2)
    before = sv.metrics()
    s = socket.create_connection(("127.0.0.1", sv.port))
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 100000, "temperature": 0, "stream": True})
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (KEY, len(body), body)).encode())
    got = b""
    while got.count(b"data: ") < 3:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    during = sv.metrics()
    s.close()
    t0 = time.time()
    after = during
    while time.time() - t0 < 10:
        after = sv.metrics()
        if after["kvcodec_kv_bytes_used"] == before["kvcodec_kv_bytes_used"] and after["kvcodec_requests_active"] == 0:
            break
        time.sleep(0.05)
    gen = after["kvcodec_generated_tokens_total"] - before["kvcodec_generated_tokens_total"]
    check(during["kvcodec_kv_bytes_used"] > before["kvcodec_kv_bytes_used"] and
          after["kvcodec_kv_bytes_used"] == before["kvcodec_kv_bytes_used"] and gen < 200,
          "disconnect mid-stream: KV bytes %d -> %d -> %d in %.2f s (%d tokens generated of up to ~250)" %
          (before["kvcodec_kv_bytes_used"], during["kvcodec_kv_bytes_used"], after["kvcodec_kv_bytes_used"],
           time.time() - t0, gen))


def test_pool():
    """The KV pool grows block by block: a sequence is admitted with its prompt's blocks + 1 and
    takes a block per 256 positions; when the pool runs out the youngest sequence is preempted
    and recomputed (greedy output unchanged); finished sequences return their blocks at once."""
    ctx = 768  # 3 blocks of 256
    # an f32 cache: its rows are scored by the same kernels whether a batch (the recompute) or
    # one token reads them, so a recomputed sequence continues bit for bit; batch-decoded caches
    # (f16, q8_0, q4_0, hdc, pca: register-tiled products for batches) round differently from
    # their one-token kernels, and a long greedy text can part at a near tie after a recompute
    kv = ("--kv-k", "f32", "--kv-v", "f32")
    probe = Server("--kv-budget", "64M", "--ctx-per-seq", str(ctx), *kv)
    probe.stop()
    m = re.search(r"\(([\d.]+) KiB per full sequence of %d positions, ([\d.]+) KiB per block of 256\)" % ctx,
                  "".join(probe.err))
    if not check(m is not None, "pool: serve prints the bytes of a full sequence and of a block"):
        return
    full, block = float(m.group(1)) * 1024, float(m.group(2)) * 1024
    fixed = full - 3 * block
    n_req = 3 if QUICK else 4
    # room for n_req - 1 sequences at admission (2 blocks each) and one more block: the first to
    # pass 512 positions takes it, the next one preempts the youngest
    budget = int((n_req - 1) * (fixed + 2 * block) + block) + 4096
    sv = Server("--kv-budget", str(budget), "--ctx-per-seq", str(ctx), "--parallel", str(n_req), *kv)
    try:
        # one sequence alone: blocks 2 at admission, 3 once it passes 512 positions, 0 when done
        seen = set()
        done = threading.Event()

        def poll():
            while not done.is_set():
                mm = sv.metrics()
                seen.add((int(mm["kvcodec_kv_blocks_used"]), int(mm["kvcodec_kv_bytes_used"])))
                time.sleep(0.02)
        th = threading.Thread(target=poll)
        th.start()
        st, _, data = sv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 600, "temperature": 0})
        after = sv.metrics()
        done.set()
        th.join()
        blocks = sorted({b for b, _ in seen if b})
        by_blocks = {b: kv for b, kv in seen if b}
        check(st == 200 and blocks == [2, 3] and abs(by_blocks[3] - by_blocks[2] - block) < 1024 and
              after["kvcodec_kv_blocks_used"] == 0 and after["kvcodec_kv_bytes_used"] == 0,
              "pool: a sequence grows 2 -> 3 blocks (+%d bytes per block), returns them when done (%s; after: %d blocks, "
              "%d bytes)" % (block, sorted(seen), after["kvcodec_kv_blocks_used"], after["kvcodec_kv_bytes_used"]))
        # n_req sequences that do not fit together: preemption, then the same greedy text as `run`
        n = 600
        prompts = PROMPTS[:n_req]
        want = [run_ref(p, n, ctx, kv) for p in prompts]
        got = [None] * n_req

        def one(i):
            body = {"prompt": prompts[i], "max_tokens": n, "temperature": 0}
            if i % 2:
                body["stream"] = True
                st, ev = sv.stream("/v1/completions", body)
                txt, fin, usage, _ = stream_text(ev, False)
                got[i] = (st, txt, fin, usage)
            else:
                st, _, data = sv.post("/v1/completions", body)
                j = json.loads(data)
                got[i] = (st, j["choices"][0]["text"], j["choices"][0]["finish_reason"], j.get("usage"))
        ths = [threading.Thread(target=one, args=(i,)) for i in range(n_req)]
        for t in ths:
            t.start()
            time.sleep(0.05)  # arrival order = index
        for t in ths:
            t.join()
        mm = sv.metrics()
        same = sum(1 for i in range(n_req) if got[i] and got[i][0] == 200 and got[i][1] == want[i])
        check(same == n_req and mm["kvcodec_preemptions_total"] >= 1 and mm["kvcodec_recomputed_tokens_total"] > 0,
              "pool: %d sequences in a pool too small for all: %d preemptions, %d tokens recomputed; greedy text "
              "equals `run --temp 0` for %d/%d" % (n_req, mm["kvcodec_preemptions_total"],
                                                    mm["kvcodec_recomputed_tokens_total"], same, n_req))
        for i in range(n_req):
            if not got[i] or got[i][1] != want[i]:
                print("  prompt %d: run %r\n  serve %r" % (i, want[i][:200], got[i] and got[i][1][:200]))
        usage_ok = all(g and g[2] == "length" and g[3] and g[3]["completion_tokens"] == n for g in got)
        check(usage_ok and mm["kvcodec_kv_blocks_used"] == 0 and mm["kvcodec_kv_bytes_used"] == 0 and
              mm["kvcodec_requests_active"] == 0,
              "pool: usage counts each token once (no recomputed tokens), finish 'length'; blocks and bytes back to 0")
    finally:
        sv.stop()


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def test_load(budget_mib):
    sv = Server("--kv-budget", "%dM" % budget_mib, "--ctx-per-seq", "512", "--parallel", "8", "--queue", "16",
                "--api-key", KEY)
    words = "the little girl saw a big dog in the park and they played with a ball all day long".split()
    results = []
    lock = threading.Lock()
    todo = list(range(200))
    n_gen = 4 if QUICK else 12
    maxlen = 40 if QUICK else 300

    def client(k):
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            plen = 3 + (i * 37) % maxlen
            prompt = " ".join(words[j % len(words)] for j in range(i, i + plen))
            body = {"prompt": prompt, "max_tokens": n_gen, "temperature": 0, "stream": i % 3 == 0}
            try:
                if body["stream"]:
                    c = http.client.HTTPConnection("127.0.0.1", sv.port, timeout=300)
                    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Authorization": "Bearer " + KEY})
                    r = c.getresponse()
                    data = r.read().decode()
                    hdr = dict(r.getheaders())
                    c.close()
                    if r.status == 200:
                        ev = [l[6:] for l in data.splitlines() if l.startswith("data: ")]
                        _, fin, _, done = stream_text(ev, False)
                        res = ("ok", fin) if done and fin else ("bad", data[-200:])
                    else:
                        res = (r.status, hdr.get("Retry-After"), data)
                else:
                    st, hdr, data = sv.post("/v1/completions", body, timeout=300)
                    if st == 200:
                        res = ("ok", json.loads(data)["choices"][0]["finish_reason"])
                    else:
                        res = (st, hdr.get("Retry-After"), data)
            except Exception as ex:
                res = ("exception", repr(ex))
            with lock:
                results.append(res)
            if res[0] == 503:
                time.sleep(0.2)  # as Retry-After asks (shortened)
    t0 = time.time()
    th = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    dt = time.time() - t0
    ok = sum(1 for r in results if r[0] == "ok")
    busy = [r for r in results if r[0] == 503]
    busy_ok = all(r[1] is not None and is_error(503, r[2], 503)[0] for r in busy)
    other = [r for r in results if r[0] != "ok" and r[0] != 503]
    check(len(results) == 200 and not other and busy_ok,
          "load: 200 requests from 32 clients in %.1f s: %d completed, %d got 503 + Retry-After, %d other %s" %
          (dt, ok, len(busy), len(other), other[:3]))
    m = sv.metrics()
    check(m["kvcodec_kv_bytes_used"] == 0 and m["kvcodec_requests_active"] == 0 and m["kvcodec_requests_queued"] == 0,
          "load: KV bytes, active and queued back to 0")
    hwm = vm_hwm(sv.p.pid)
    limit = os.path.getsize(MODEL) + budget_mib * 2**20 + 96 * 2**20
    if SAN:
        print("note: peak RSS %.1f MiB not checked under AddressSanitizer (shadow memory); the release run checks it" % (hwm / 2**20))
    else:
        check(hwm < limit, "load: peak RSS %.1f MiB < weights + --kv-budget + 96 MiB = %.1f MiB" % (hwm / 2**20, limit / 2**20))
    rc = sv.stop()
    check(rc == 0, "load server: SIGTERM exit status %s" % rc)


def test_shutdown():
    sv = Server("--kv-budget", "16M", "--ctx-per-seq", "512", "--parallel", "2", "--api-key", KEY)
    box = {}

    def streamer():
        try:
            box["r"] = sv.stream("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 100000, "temperature": 0,
                                                     "stream": True})
        except Exception as ex:
            box["r"] = ("exception", repr(ex))
    t = threading.Thread(target=streamer)
    t.start()
    time.sleep(0.5)
    t0 = time.time()
    rc = sv.stop()
    t.join(10)
    check(rc == 0 and time.time() - t0 < 10 and not t.is_alive() and any("shutting down" in l for l in sv.err),
          "SIGTERM with a stream in flight: exit 0 in %.2f s, the stream ends" % (time.time() - t0))


def shared_model(path):
    """A model of ../shared: None (with a SKIP line) when missing, a failure under CI=true."""
    if os.path.exists(path):
        return path
    if os.environ.get("CI") == "true":
        check(False, "%s is missing (CI=true)" % path)
    else:
        print("SKIP %s is missing" % path)
    return None


def test_template_chat():
    """A model with a ChatML tokenizer.chat_template serves chat without --chat-format: the answer
    equals `kvcodec run --chat` (format from the template, special tokens parsed)."""
    model = shared_model(os.path.join(SHARED, "models/synth/qwen2-q5km.gguf"))
    if not model:
        return
    n = 12
    sys_msg, user = "You tell short stories.", "Tell me about a cat."
    out = subprocess.run([BIN, "run", "-m", model, "--chat", "--system", sys_msg, "--temp", "0", "-n", str(n), "-c", "256",
                          "--isa", "avx2"], input=user + "\n", capture_output=True, text=True, timeout=120)
    want = out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout
    sv = Server("--kv-budget", "4M", "--ctx-per-seq", "256", model=model)
    try:
        msgs = [{"role": "system", "content": sys_msg}, {"role": "user", "content": user}]
        st, _, data = sv.post("/v1/chat/completions", {"messages": msgs, "max_tokens": n, "temperature": 0})
        j = json.loads(data) if st == 200 else {}
        got = j.get("choices", [{}])[0].get("message", {}).get("content") if j else data[:200]
        check(out.returncode == 0 and st == 200 and got == want and want != "",
              "chat on a model with a ChatML template, no --chat-format: equals run --chat (%r vs %r)" % (got, want))
    finally:
        sv.stop()


def test_preset():
    """--kv-preset FILE: the server runs the preset's setting (greedy answer equals `run --kv-preset`);
    with --kv-k it is a usage error."""
    tiny = shared_model(os.path.join(SHARED, "models/stories260K.gguf"))
    if not tiny:
        return
    tmp = "build/serve-preset-%d" % os.getpid()
    os.makedirs(tmp, exist_ok=True)
    calib, preset = tmp + "/t.calib", tmp + "/t.preset"
    ok = subprocess.run([BIN, "calibrate", "-m", tiny, "-f", os.path.join(SHARED, "text/calib.txt"), "-o", calib,
                         "--tokens", "1024", "-c", "256", "-q"], capture_output=True, timeout=300).returncode == 0
    ok = ok and subprocess.run([BIN, "preset", "-m", tiny, "--kv-calib", calib, "--kv-k", "pca:bits=3,keys=pre",
                                "--kv-v", "pca:bits=3", "--kv-sinks", "2", "-c", "256", "-o", preset],
                               capture_output=True, timeout=300).returncode == 0
    if not check(ok, "calibrate + preset on stories260K for serve"):
        return
    prompt, n = "Once upon a time", 24
    want = run_ref(prompt, n, 256, ("--kv-preset", preset), model=tiny)
    sv = Server("--kv-budget", "4M", "--ctx-per-seq", "256", "--kv-preset", preset, model=tiny)
    try:
        started = any("pca:bits=3,keys=pre/pca:bits=3" in l for l in sv.err)
        st, _, data = sv.post("/v1/completions", {"prompt": prompt, "max_tokens": n, "temperature": 0})
        got = json.loads(data)["choices"][0]["text"] if st == 200 else data[:200]
        check(started and got == want, "serve --kv-preset: the preset's codecs, answer equals run --kv-preset (%r)" % got)
    finally:
        sv.stop()
    r = subprocess.run([BIN, "serve", "-m", tiny, "--port", "0", "--kv-preset", preset, "--kv-k", "f16"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 2 and "--kv-preset" in r.stderr, "serve --kv-preset with --kv-k: usage error, exit 2 (%s)" %
          r.stderr.strip()[:200])
    for f in (calib, preset):
        os.remove(f)
    os.rmdir(tmp)


def main():
    ctx = 256
    sv = Server("--kv-budget", "8M", "--ctx-per-seq", str(ctx), "--parallel", "8", "--queue", "64", "--api-key", KEY,
                "--chat-format", "chatml")
    try:
        test_greedy(sv, ctx)
        test_length(sv, ctx)
        test_chat(sv, ctx)
        test_bad(sv)
        test_stop_sampling(sv, ctx)
        test_disconnect(sv)
    finally:
        rc = sv.stop()
    check(rc == 0, "SIGTERM: exit status 0 (%s)" % rc)
    sv2 = Server("--kv-budget", "8M", "--ctx-per-seq", "256")
    st, _, data = sv2.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, key=None)
    ok, msg = is_error(st, data, 400, "messages")
    check(ok and "--chat-format" in msg, "chat without a template or --chat-format -> 400 that says so (%s)" % msg)
    sv2.stop()
    test_template_chat()
    test_preset()
    test_pool()
    test_load(32)
    test_shutdown()
    print("test_serve: %d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
