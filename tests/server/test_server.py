#!/usr/bin/env python3
"""specq serve, end to end: the real binary on stories260K (CPU), driven over HTTP.

Usage: test_server.py SPECQ_BINARY SHARED_DIR PHASE
Phases: openai (the official client: chat and completions, streamed and not, stop strings, usage, seeds,
API key), spec (--spec eagle), template (--chat-template), errors (every error status and body, the server still serving), load (1,000 requests from 16
clients, a third streamed, some disconnecting; RSS before/after), queue (a small --max-queue answers 503
at once), shutdown (SIGTERM finishes the in-flight stream and exits 0), page (the chat page in headless
Chromium via Selenium; exit 77 = skipped when Chromium is not installed).
Every greedy answer is compared with `specq generate --json` for the same prompt.
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    import openai
    import requests
except ImportError as e:  # CI installs them (scripts/test.sh); a missing one is a failure, not a skip
    sys.exit(f"missing Python package ({e}); run: python3 -m pip install openai requests selenium")

BINARY, SHARED, PHASE = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = os.path.join(SHARED, "models", "stories260K")
TIMEOUT = 30  # seconds, on every client call: a hang fails the test instead of stalling it


def check(cond, message):
    if not cond:
        raise AssertionError(message)


class Server:
    """`specq serve` on a free port (--port 0; the port is read from its first line of output)."""

    def __init__(self, *extra):
        self.log = tempfile.NamedTemporaryFile(prefix="specq_serve_", suffix=".log", delete=False)
        self.proc = subprocess.Popen([BINARY, "serve", "--model", MODEL, "--port", "0", "--threads", "1", *extra],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self._first_line(60)
        m = re.search(r"http://([\d.]+):(\d+)", line)
        check(m is not None, f"no listening line from specq serve: {line!r}\n{self.stderr()}")
        self.url = f"http://{m.group(1)}:{m.group(2)}"

    def _first_line(self, seconds):
        result = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(seconds)
        check(result, f"specq serve did not start within {seconds} s\n{self.stderr()}")
        return result[0]

    def stderr(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=60):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"specq serve did not exit within {timeout} s of SIGTERM\n{self.stderr()}")
        os.unlink(self.log.name)
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.alive():
            code = self.stop()
            check(code == 0 or exc[0] is not None, f"specq serve exited with {code}")


_references = {}


def reference(prompt, max_tokens, temperature=0.0, seed=0, extra=()):
    """`specq generate --json` for the same prompt: the text and token counts the server must match."""
    key = (prompt, max_tokens, temperature, seed, tuple(extra))
    if key not in _references:
        out = subprocess.run([BINARY, "generate", "--model", MODEL, "--threads", "1", "--prompt", prompt,
                              "--max-new-tokens", str(max_tokens), "--temperature", str(temperature),
                              "--seed", str(seed), "--json", *extra], capture_output=True, text=True, timeout=TIMEOUT)
        check(out.returncode == 0, f"specq generate failed: {out.stderr}")
        _references[key] = json.loads(out.stdout)
    return _references[key]


def expected(prompt, max_tokens, stops=(), temperature=0.0, seed=0, extra=()):
    """(text, finish_reason, prompt_tokens, completion_tokens) the server should answer with: the reference
    text cut at the first stop string."""
    ref = reference(prompt, max_tokens, temperature, seed, extra)
    text, finish, n = ref["text"], "length", ref["new_tokens"]
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    if cut >= 0:
        text, finish = text[:cut], "stop"
    return text, finish, ref["prompt_tokens"], n


def chat_prompt(messages):
    """The plain chat layout (docs/SERVER.md) that models without a chat template get."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "".join(f"{names[m['role']]}: {m['content']}\n" for m in messages) + "Assistant:"


def client(server, key="none"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, timeout=TIMEOUT, max_retries=0)


# ---- phase: openai ------------------------------------------------------------------------------------

def phase_openai():
    with Server() as server:
        c = client(server)
        models = c.models.list()
        check([m.id for m in models.data] == ["stories260K"], f"models: {models}")

        prompt = "Once upon a time"
        text, finish, n_prompt, n_new = expected(prompt, 24)
        check(finish == "length" and n_new == 24, "the reference should run to max_tokens")
        r = c.completions.create(model="stories260K", prompt=prompt, max_tokens=24, temperature=0)
        check(r.object == "text_completion", r)
        check(r.choices[0].text == text, f"completion {r.choices[0].text!r} != generate {text!r}")
        check(r.choices[0].finish_reason == "length", r)
        check((r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (n_prompt, 24, n_prompt + 24),
              f"usage {r.usage}")

        pieces, finishes, usage = [], [], None
        for chunk in c.completions.create(model="stories260K", prompt=prompt, max_tokens=24, stream=True,
                                          stream_options={"include_usage": True}):
            check(chunk.object == "text_completion", chunk)
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                pieces.append(choice.text)
                finishes.append(choice.finish_reason)
        check("".join(pieces) == text, f"streamed {''.join(pieces)!r} != {text!r}")
        check(len(pieces) > 5, "the answer should arrive in many chunks")
        check(finishes[-1] == "length" and all(f is None for f in finishes[:-1]), f"finish reasons {finishes}")
        check(usage is not None and usage.completion_tokens == 24 and usage.prompt_tokens == n_prompt, f"usage {usage}")

        # Stop strings: a piece from the middle of the answer, given alone and in a list.
        stop = text[10:14]
        want, want_finish, _, _ = expected(prompt, 24, [stop])
        check(want_finish == "stop" and len(want) < len(text), "the stop string should cut the answer")
        for stops in (stop, ["no such text", stop]):
            r = c.completions.create(model="m", prompt=prompt, max_tokens=24, stop=stops)
            check(r.choices[0].text == want and r.choices[0].finish_reason == "stop", f"stop {stops!r}: {r}")
            check(r.usage.completion_tokens < 24, f"generation should end at the stop string: {r.usage}")
            streamed = "".join(ch.choices[0].text for ch in c.completions.create(
                model="m", prompt=prompt, max_tokens=24, stop=stops, stream=True) if ch.choices)
            check(streamed == want, f"streamed with stop {stops!r}: {streamed!r} != {want!r}")

        # Chat, through the plain layout stories260K gets.
        messages = [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Tell me a story."}]
        text, finish, n_prompt, n_new = expected(chat_prompt(messages), 20, ["\nUser:"])
        r = c.chat.completions.create(model="stories260K", messages=messages, max_tokens=20, temperature=0)
        check(r.object == "chat.completion", r)
        check(r.choices[0].message.role == "assistant", r)
        check(r.choices[0].message.content == text, f"chat {r.choices[0].message.content!r} != generate {text!r}")
        check(r.choices[0].finish_reason == finish, r)
        check(r.usage.prompt_tokens == n_prompt, f"usage {r.usage}")
        deltas, roles, finishes = [], [], []
        for chunk in c.chat.completions.create(model="stories260K", messages=messages, max_tokens=20, stream=True):
            check(chunk.object == "chat.completion.chunk", chunk)
            for choice in chunk.choices:
                roles.append(choice.delta.role)
                deltas.append(choice.delta.content or "")
                finishes.append(choice.finish_reason)
        check("".join(deltas) == text, f"streamed chat {''.join(deltas)!r} != {text!r}")
        check(roles[0] == "assistant" and finishes[-1] == finish, f"roles {roles[:2]}, finish {finishes[-1:]}")

        # Sampling with a seed: reproducible, and the same draw as `specq generate --seed`.
        text, _, _, _ = expected(prompt, 16, temperature=0.8, seed=7)
        for _ in range(2):
            r = c.completions.create(model="m", prompt=prompt, max_tokens=16, temperature=0.8, seed=7)
            check(r.choices[0].text == text, f"seeded sample {r.choices[0].text!r} != generate {text!r}")
        r = c.completions.create(model="m", prompt=prompt, max_tokens=16, temperature=0.8, top_p=0.9, seed=7)
        check(r.usage.completion_tokens == 16, r)

        # No max_tokens: the answer runs to EOS or the end of the context.
        r = c.completions.create(model="m", prompt=prompt)
        check(r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens > 24, r.usage)

        health = requests.get(server.url + "/health", timeout=TIMEOUT)
        check(health.status_code == 200 and health.json() == {"status": "ok"}, health.text)
        metrics = requests.get(server.url + "/metrics", timeout=TIMEOUT).text
        for line in ('specq_requests_total{status="200"}', "specq_generated_tokens_total", "specq_tokens_per_second",
                     "specq_mean_accepted_length 1.0000", "specq_queue_length 0"):
            check(line in metrics, f"/metrics lacks {line!r}:\n{metrics}")
        tokens = int(re.search(r"^specq_generated_tokens_total (\d+)$", metrics, re.M).group(1))
        check(tokens > 200, f"generated tokens {tokens}")

    with Server("--api-key", "s3cret") as server:
        check(client(server, "s3cret").completions.create(model="m", prompt="Hi", max_tokens=2).usage.completion_tokens == 2,
              "the right key should work")
        for key in ("wrong", None):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            r = requests.post(server.url + "/v1/completions", json={"prompt": "Hi"}, headers=headers, timeout=TIMEOUT)
            check(r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", f"key {key}: {r.text}")
        try:
            client(server, "wrong").models.list()
            raise AssertionError("a wrong key must fail")
        except openai.AuthenticationError:
            pass
        check(requests.get(server.url + "/health", timeout=TIMEOUT).status_code == 200, "/health needs no key")


# ---- phase: spec -------------------------------------------------------------------------------------

def phase_spec():
    """--spec eagle (a seeded random head): greedy answers still equal plain generation; tau is reported."""
    prompt = "Once upon a time"
    text, finish, n_prompt, _ = expected(prompt, 24)
    with Server("--spec", "eagle", "--eagle", "random:3") as server:
        c = client(server)
        r = requests.post(server.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 24}, timeout=TIMEOUT)
        body = r.json()
        check(body["choices"][0]["text"] == text, f"speculative {body['choices'][0]['text']!r} != generate {text!r}")
        check(body["usage"]["completion_tokens"] == 24 and body["usage"]["prompt_tokens"] == n_prompt, body["usage"])
        check(body["timings"]["mean_accepted_length"] >= 1.0, body["timings"])
        streamed = "".join(ch.choices[0].text for ch in c.completions.create(
            model="m", prompt=prompt, max_tokens=24, stream=True) if ch.choices)
        check(streamed == text, f"speculative stream {streamed!r} != {text!r}")
        tau = metric(server.url, "specq_mean_accepted_length")
        check(tau >= 1.0, f"/metrics mean accepted length {tau}")
        print(f"spec: eagle (random head) greedy answers equal plain generation; mean accepted length {tau:.2f}")


# ---- phase: template ---------------------------------------------------------------------------------

def phase_template():
    """--chat-template chatml: chat requests are rendered with the template, as `generate --chat` does."""
    messages = [{"role": "user", "content": "Tell me a story."}]
    text, finish, n_prompt, _ = expected("Tell me a story.", 20, extra=("--chat", "--chat-template", "chatml"))
    plain, _, _, _ = expected(chat_prompt(messages), 20, ["\nUser:"])
    check(text != plain, "the template and the plain layout should give different answers")
    with Server("--chat-template", "chatml") as server:
        r = client(server).chat.completions.create(model="m", messages=messages, max_tokens=20)
        check(r.choices[0].message.content == text, f"templated chat {r.choices[0].message.content!r} != {text!r}")
        check(r.usage.prompt_tokens == n_prompt, f"usage {r.usage}, want {n_prompt} prompt tokens")


# ---- phase: errors ------------------------------------------------------------------------------------

def phase_errors():
    with Server("--max-body-bytes", "4096") as server:
        good = {"prompt": "Once upon a time", "max_tokens": 8}
        want = expected("Once upon a time", 8)[0]

        def still_serving():
            r = requests.post(server.url + "/v1/completions", json=good, timeout=TIMEOUT)
            check(r.status_code == 200 and r.json()["choices"][0]["text"] == want, f"after an error: {r.text}")

        def expect_error(status, method, path, param=None, code=None, **kwargs):
            r = requests.request(method, server.url + path, timeout=TIMEOUT, **kwargs)
            check(r.status_code == status, f"{method} {path} {str(kwargs)[:200]}: status {r.status_code}, want {status}: "
                                           f"{r.text}")
            check(r.headers.get("Content-Type", "").startswith("application/json"), r.headers)
            body = r.json()
            check(set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body)
            check(body["error"]["message"], body)
            check(body["error"]["type"] == ("server_error" if status >= 500 else "invalid_request_error"), body)
            if param is not None:
                check(body["error"]["param"] == param, f"param {body['error']['param']!r}, want {param!r}")
            if code is not None:
                check(body["error"]["code"] == code, f"code {body['error']['code']!r}, want {code!r}")
            still_serving()

        post = "/v1/completions"
        chat = "/v1/chat/completions"
        json_header = {"Content-Type": "application/json"}
        expect_error(400, "POST", post, code="invalid_json", data="{\"prompt\": ", headers=json_header)
        expect_error(400, "POST", post, code="invalid_json", data="[1, 2]", headers=json_header)
        expect_error(400, "POST", post, param="prompt", json={"max_tokens": 3})
        expect_error(400, "POST", post, param="prompt", code="invalid_type", json={"prompt": 17})
        expect_error(400, "POST", post, param="max_tokens", code="invalid_type", json={**good, "max_tokens": "8"})
        expect_error(400, "POST", post, param="temperature", code="invalid_type", json={**good, "temperature": "hot"})
        expect_error(400, "POST", post, param="stream", code="invalid_type", json={**good, "stream": "yes"})
        expect_error(400, "POST", post, param="stop", code="invalid_type", json={**good, "stop": [1, 2]})
        expect_error(400, "POST", post, param="seed", code="invalid_type", json={**good, "seed": 1.5})
        expect_error(400, "POST", post, param="max_tokens", code="invalid_value", json={**good, "max_tokens": 0})
        expect_error(400, "POST", post, param="temperature", code="invalid_value", json={**good, "temperature": -1})
        expect_error(400, "POST", post, param="top_p", code="invalid_value", json={**good, "top_p": 0})
        expect_error(400, "POST", post, param="top_p", code="invalid_value", json={**good, "top_p": 1.01})
        expect_error(400, "POST", post, param="n", json={**good, "n": 3})
        expect_error(400, "POST", chat, param="messages", json={"messages": "hi"})
        expect_error(400, "POST", chat, param="messages[0].role", json={"messages": [{"role": "bot", "content": "x"}]})
        long_prompt = "Once upon a time there was a cat. " * 100  # > 512 tokens, < 4096 bytes
        expect_error(400, "POST", post, param="prompt", code="context_length_exceeded",
                     json={"prompt": long_prompt, "max_tokens": 4})
        expect_error(400, "POST", chat, param="messages", code="context_length_exceeded",
                     json={"messages": [{"role": "user", "content": long_prompt}]})
        expect_error(413, "POST", post, code="request_too_large", json={"prompt": "x" * 5000})
        big = json.dumps({"prompt": "x" * 5000}).encode()
        expect_error(413, "POST", post, code="request_too_large", headers=json_header,
                     data=(big[i:i + 1000] for i in range(0, len(big), 1000)))  # chunked: no Content-Length
        expect_error(404, "GET", "/v1/nothing", code="not_found")
        expect_error(404, "POST", "/v2/completions", code="not_found", json=good)

        # The official client surfaces them as its typed errors.
        c = client(server)
        for call, error in ((lambda: c.completions.create(model="m", prompt="x", max_tokens=2, temperature=5),
                             openai.BadRequestError),
                            (lambda: c.completions.create(model="m", prompt=long_prompt), openai.BadRequestError)):
            try:
                call()
                raise AssertionError("expected an error")
            except error as e:
                check(e.status_code == 400 and e.body["code"] in ("invalid_value", "context_length_exceeded"), e.body)

        metrics = requests.get(server.url + "/metrics", timeout=TIMEOUT).text
        for status in (400, 404, 413):
            check(f'specq_requests_total{{status="{status}"}}' in metrics, f"no {status} count in /metrics")


# ---- phase: load --------------------------------------------------------------------------------------

PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went", "One day, a bird",
           "Tom had a red ball", "The sun was hot", "Mom said", "There was a big tree"]


def one_request(url, i, session):
    """Request i of the load mix; returns 'ok' or 'disconnected'. Raises on any wrong answer."""
    prompt = PROMPTS[i % len(PROMPTS)]
    max_tokens = (8, 12, 16)[i % 3]
    use_chat = i % 2 == 1
    stream = i % 3 == 0
    disconnect = stream and i % 4 == 0  # one streamed request in four leaves mid-stream
    if disconnect:
        max_tokens = 400  # long enough that the client leaves while the engine still decodes it
    if use_chat:
        messages = [{"role": "user", "content": prompt}]
        path, body = "/v1/chat/completions", {"messages": messages}
    else:
        path, body = "/v1/completions", {"prompt": prompt}
    if not disconnect:
        want, finish, n_prompt, _ = (expected(chat_prompt(messages), max_tokens, ["\nUser:"]) if use_chat
                                     else expected(prompt, max_tokens))
    body.update(model="m", max_tokens=max_tokens, stream=stream)
    if stream:
        body["stream_options"] = {"include_usage": True}
    r = session.post(url + path, json=body, stream=stream, timeout=TIMEOUT)
    if r.status_code != 200:  # (not check(): its message would read a streamed body to the end)
        raise AssertionError(f"request {i}: {r.status_code} {r.text[:300]}")
    if not stream:
        got = r.json()
        choice = got["choices"][0]
        text = choice["message"]["content"] if use_chat else choice["text"]
        check(text == want and choice["finish_reason"] == finish, f"request {i}: {text!r} != {want!r}")
        check(got["usage"]["prompt_tokens"] == n_prompt, f"request {i}: usage {got['usage']}")
        return "ok"
    pieces, finishes, usage, done, events = [], [], None, False, 0
    for line in r.iter_lines(decode_unicode=True):
        if not line:
            continue
        check(line.startswith("data: "), f"request {i}: bad SSE line {line!r}")
        events += 1
        if disconnect and events == 2:
            r.close()  # drops the connection: the server must cancel this generation
            return "disconnected"
        if line == "data: [DONE]":
            done = True
            continue
        check(not done, f"request {i}: data after [DONE]")
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            pieces.append(choice["delta"].get("content", "") if use_chat else choice["text"])
            finishes.append(choice["finish_reason"])
    text = "".join(pieces)
    check(done, f"request {i}: the stream did not end with [DONE]")
    check(text == want and finishes[-1] == finish, f"request {i}: streamed {text!r} != {want!r}")
    check(usage and usage["prompt_tokens"] == n_prompt, f"request {i}: usage {usage}")
    return "ok"


def run_load(url, count, clients):
    sessions = threading.local()

    def task(i):
        if not hasattr(sessions, "s"):
            sessions.s = requests.Session()
        return one_request(url, i, sessions.s)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(task, range(count)))


def metric(url, name):
    text = requests.get(url + "/metrics", timeout=TIMEOUT).text
    m = re.search(rf"^{re.escape(name)} ([\d.]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def sanitized():
    """ASan keeps freed memory in quarantine by design, so RSS says nothing about leaks there."""
    with open(BINARY, "rb") as f:
        return b"AddressSanitizer" in f.read()


def phase_load():
    for i in range(24):  # references first, so the load itself is all server
        one_request_reference(i)
    with Server("--max-queue", "64") as server:
        run_load(server.url, 240, 16)  # warm-up: connection threads, allocator arenas, buffers
        rss_before = server.rss_kib()
        cancelled_before = metric(server.url, 'specq_generations_total{end="cancelled"}')
        start = time.monotonic()
        results = run_load(server.url, 1000, 16)
        seconds = time.monotonic() - start
        rss_after = server.rss_kib()
        check(server.alive(), "the server died under load")
        disconnected = results.count("disconnected")
        cancelled = metric(server.url, 'specq_generations_total{end="cancelled"}') - cancelled_before
        print(f"load: 1000 requests from 16 clients in {seconds:.1f} s ({1000 / seconds:.0f} req/s): "
              f"{results.count('ok')} whole and correct, {disconnected} disconnected mid-stream "
              f"({cancelled:.0f} generations cancelled); RSS {rss_before} KiB before, {rss_after} KiB after "
              f"({100 * (rss_after - rss_before) / rss_before:+.1f}%)")
        check(results.count("ok") + disconnected == 1000 and disconnected > 0, "every request accounted for")
        check(cancelled >= disconnected / 4, f"only {cancelled:.0f} of {disconnected} disconnects cancelled a generation")
        if sanitized():
            print("load: AddressSanitizer build: RSS not compared (freed memory sits in ASan's quarantine)")
        else:
            check(abs(rss_after - rss_before) <= 0.10 * rss_before, f"RSS {rss_before} -> {rss_after} KiB (> 10%)")
        check(metric(server.url, "specq_queue_length") == 0, "the queue should be empty after the load")
        check(metric(server.url, 'specq_requests_total{status="503"}') == 0, "no 503 with a 64-deep queue")


def one_request_reference(i):
    prompt = PROMPTS[i % len(PROMPTS)]
    max_tokens = (8, 12, 16)[i % 3]
    if i % 3 == 0 and i % 4 == 0:
        return  # a disconnecting request: nothing to compare
    if i % 2 == 1:
        expected(chat_prompt([{"role": "user", "content": prompt}]), max_tokens, ["\nUser:"])
    else:
        expected(prompt, max_tokens)


# ---- phase: queue -------------------------------------------------------------------------------------

def phase_queue():
    prompt = "Once upon a time"
    want, _, _, _ = expected(prompt, 400)
    with Server("--max-queue", "2") as server:
        def task(_):
            start = time.monotonic()
            r = requests.post(server.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 400},
                              timeout=TIMEOUT)
            return r, time.monotonic() - start

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(task, range(16)))
        busy = [(r, t) for r, t in results if r.status_code == 503]
        served = [r for r, _ in results if r.status_code == 200]
        print(f"queue: 16 concurrent requests, --max-queue 2: {len(served)} served, {len(busy)} answered 503; "
              f"slowest 503 after {max((t for _, t in busy), default=0):.3f} s")
        check(len(served) + len(busy) == 16, f"statuses {[r.status_code for r, _ in results]}")
        check(len(served) >= 3 and len(busy) >= 1, "a 2-deep queue must both serve and refuse")
        for r, t in busy:
            check(r.json()["error"]["code"] == "queue_full" and r.json()["error"]["type"] == "server_error", r.text)
            check(t < 2.0, f"a queue-full answer took {t:.2f} s; it must come at once")
        for r in served:
            check(r.json()["choices"][0]["text"] == want, "a served answer differs from generate")
        check(metric(server.url, 'specq_requests_total{status="503"}') == len(busy), "503s counted in /metrics")


# ---- phase: shutdown ----------------------------------------------------------------------------------

def phase_shutdown():
    """SIGTERM while one stream runs and two requests wait: all three finish whole, then exit 0."""
    prompt = "Once upon a time"
    want, _, _, _ = expected(prompt, 480)
    server = Server()
    body = {"prompt": prompt, "max_tokens": 480}
    first_chunk = threading.Event()

    def streamed():
        pieces, done = [], False
        with requests.post(server.url + "/v1/completions", json={**body, "stream": True}, stream=True,
                           timeout=TIMEOUT) as r:
            for line in r.iter_lines(decode_unicode=True):
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    first_chunk.set()
                    pieces.extend(ch["text"] for ch in json.loads(line[6:])["choices"])
        return "".join(pieces) if done else None, time.monotonic()

    def whole():
        r = requests.post(server.url + "/v1/completions", json=body, timeout=TIMEOUT)
        return r.json()["choices"][0]["text"], time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        stream_future = pool.submit(streamed)
        check(first_chunk.wait(TIMEOUT), "the stream did not start")
        waiting = [pool.submit(whole) for _ in range(2)]
        while metric(server.url, "specq_queue_length") < 2:
            time.sleep(0.001)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        results = [f.result(TIMEOUT) for f in [stream_future, *waiting]]
    code = server.stop()
    check(code == 0, f"exit code {code} after SIGTERM")
    for text, _ in results:
        check(text == want, f"a request accepted before SIGTERM should finish whole: {text!r}")
    after = sum(1 for _, t in results if t > signalled)
    check(after >= 2, f"only {after} requests finished after the signal: the test did not test the drain")
    try:
        requests.get(server.url + "/health", timeout=2)
        raise AssertionError("the listener should be closed after shutdown")
    except requests.ConnectionError:
        pass
    print(f"shutdown: SIGTERM with 1 request streaming and 2 waiting: all 3 finished whole, exit code 0")


# ---- phase: page --------------------------------------------------------------------------------------

def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def phase_page():
    browser = find_chromium()
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        print("SKIP: Chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)")
        sys.exit(77)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    question = "Tell me a story."
    want, _, _, _ = expected(chat_prompt([{"role": "user", "content": question}]), 32, ["\nUser:"])
    workdir = tempfile.mkdtemp(prefix="specq_page_")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--user-data-dir={workdir}/profile", "--window-size=1000,800"):
        options.add_argument(flag)
    with Server() as server:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.set_page_load_timeout(TIMEOUT)
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, TIMEOUT)
            wait.until(lambda d: "stories260K" in d.find_element(By.ID, "model").text)
            tokens = driver.find_element(By.ID, "max-tokens")
            tokens.clear()
            tokens.send_keys("32")
            driver.find_element(By.ID, "prompt").send_keys(question)
            driver.find_element(By.ID, "send").click()
            answer = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".message.assistant.done"))[0]
            shot = os.path.join(workdir, "chat_page.png")
            driver.save_screenshot(shot)
            check(answer.text.strip() == want.strip(), f"page answer {answer.text!r} != {want!r}")
            chunks = int(answer.get_attribute("data-chunks") or 0)
            check(chunks > 5, f"the answer should arrive in many streamed chunks (got {chunks})")
            tps = driver.find_element(By.ID, "tps").text
            mal = driver.find_element(By.ID, "mal").text
            check(float(tps) > 0 and float(mal) == 1.0, f"stats tokens/s {tps!r}, mean accepted length {mal!r}")
            user = driver.find_elements(By.CSS_SELECTOR, ".message.user")
            check(len(user) == 1 and user[0].text == question, "the question should be shown")
            print(f"page: streamed answer shown ({len(want)} chars in {chunks} chunks, {tps} tokens/s); screenshot {shot}")
        finally:
            driver.quit()
        served = metric(server.url, 'specq_requests_total{status="200"}')
        check(served >= 3, "the page should have fetched /, /v1/models and the chat completion")


PHASES = {"openai": phase_openai, "spec": phase_spec, "template": phase_template, "errors": phase_errors,
          "load": phase_load, "queue": phase_queue, "shutdown": phase_shutdown, "page": phase_page}

if __name__ == "__main__":
    PHASES[PHASE]()
    print(f"server {PHASE}: OK")
