"""Work a request makes happens off the event loop, and what it may ask is bounded (issue
37): a big body tokenized or fitted stalls nobody else (finding 4), /tokenize counts at
most max_tokenize_tokens (5), the page cannot be framed (9)."""

import threading
import time

import pytest

from support.server_harness import RunningServer

JSON = {"Content-Type": "application/json"}
BIG = "word " * 2000


class SlowTokenizer:
    """The model's tokenizer, taking a second over a big text (as a 2 MB body does)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def encode(self, text):
        if len(text) >= len(BIG):
            time.sleep(1.0)  # the Rust tokenizer lets other threads run meanwhile
        return self._tokenizer.encode(text)

    def count(self, text):
        return len(self.encode(text))


class SlowTokenizing:
    def __init__(self, model):
        self._model, self.tokenizer = model, SlowTokenizer(model.tokenizer)

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.fixture(scope="module")
def slow_tokenizing(tiny_model):
    running = RunningServer(SlowTokenizing(tiny_model), max_length=8, max_tokenize_tokens=5000)
    yield running
    running.stop()


@pytest.mark.parametrize("path, body", [
    ("/tokenize", {"content": BIG}), ("/v1/internal/encode", {"text": BIG}),
    ("/api/extra/tokencount", {"prompt": BIG}),
    ("/v1/completions", {"prompt": BIG, "max_tokens": 1}),
    ("/api/v1/generate", {"prompt": BIG, "max_length": 1}),
])
def test_a_big_body_is_tokenized_while_other_clients_are_answered(slow_tokenizing, path,
                                                                   body):
    big = threading.Thread(target=slow_tokenizing.request, args=("POST", path, body, JSON))
    big.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert slow_tokenizing.request("GET", "/api/v1/model")[0] == 200
    waited = time.monotonic() - started
    big.join(30)
    assert waited < 0.5, f"{path}: a short request waited {waited:.2f} s"


def test_tokenize_counts_at_most_its_limit(slow_tokenizing):
    status, reply = slow_tokenizing.request("POST", "/tokenize",
                                            {"content": "a b " * 3000, "with_pieces": True},
                                            headers=JSON)
    assert status == 400 and "--max-tokenize-tokens" in reply["error"]["message"]
    status, reply = slow_tokenizing.request("POST", "/api/v1/token-count",
                                            {"prompt": "a b " * 3000}, headers=JSON)
    assert status == 400 and "--max-tokenize-tokens" in reply["detail"]["msg"]
    status, reply = slow_tokenizing.request("POST", "/tokenize", {"content": "a b"},
                                            headers=JSON)
    assert status == 200 and reply["count"] == len(reply["tokens"]) > 0


def test_no_other_site_may_frame_the_chat_page(slow_tokenizing):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", slow_tokenizing.port, timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    response.read()
    assert response.getheader("Content-Security-Policy") == "frame-ancestors 'none'"
    assert response.getheader("X-Frame-Options") == "DENY"


def test_past_max_waiting_a_generation_is_a_503_with_retry_after(tiny_model):
    """Issue 37, finding 9: the queue had no bound (a thread per waiting request)."""
    from support.slowed import SlowedModel

    def slow(item):
        if isinstance(item, str):
            time.sleep(0.05)

    running = RunningServer(SlowedModel(tiny_model, slow), max_length=60, max_waiting=1)
    body = {"prompt": "Hi", "max_length": 40, "temperature": 0}
    try:
        threads = [threading.Thread(target=running.request,
                                    args=("POST", "/api/v1/generate", body, JSON))
                   for _ in range(2)]  # one runs, one waits
        for thread in threads:
            thread.start()
            time.sleep(0.3)
        status, reply = running.request("POST", "/api/v1/generate", body, JSON)
        assert status == 503 and "--max-waiting" in reply["detail"]["msg"]
        status, reply = running.request("POST", "/v1/completions",
                                        {"prompt": "Hi", "stream": True}, JSON)
        assert status == 503 and reply["error"]["type"] == "server_error"
        for thread in threads:
            thread.join(30)
        assert running.request("POST", "/api/v1/generate", body, JSON)[0] == 200
    finally:
        running.stop()


def test_time_waiting_for_the_model_is_not_reported_as_reading_the_prompt(tiny_model):
    """Issue 37, finding 9: KoboldCpp's last_process and llama.cpp's prompt_ms counted the
    wait behind another generation, and the learned prompt speed with them."""
    from support.slowed import SlowedModel

    def slow(item):
        if isinstance(item, str):
            time.sleep(0.05)

    running = RunningServer(SlowedModel(tiny_model, slow), max_length=60)
    try:
        first = threading.Thread(target=running.request, args=(
            "POST", "/api/v1/generate", {"prompt": "Hi", "max_length": 40, "temperature": 0,
                                         "min_length": 40}, JSON))
        first.start()
        time.sleep(0.3)
        started = time.monotonic()
        status, reply = running.request("POST", "/completion", {
            "prompt": "Hi", "n_predict": 2, "temperature": 0}, JSON)
        waited = time.monotonic() - started
        first.join(30)
        assert status == 200 and waited > 1.0  # it queued behind 40 slow tokens
        assert reply["timings"]["prompt_ms"] < 500
        perf = running.request("GET", "/api/extra/perf")[1]
        assert perf["last_process"] < 0.5 and perf["last_eval"] < waited
    finally:
        running.stop()


def test_a_card_is_read_while_other_clients_are_answered(slow_tokenizing, monkeypatch):
    """Issue 37, finding 2: a card's inflate and parse ran on the event loop."""
    from pyg_edge.server import webchat

    read = webchat.card_from_bytes

    def slow_read(raw, name):
        time.sleep(1.0)  # zlib lets other threads run while it inflates
        return read(raw, name)

    monkeypatch.setattr(webchat, "card_from_bytes", slow_read)
    card = b'{"name": "Aqua"}'
    upload = threading.Thread(target=slow_tokenizing.request, kwargs=dict(
        method="POST", path="/api/pyg-edge/character", raw=card,
        headers={"Content-Type": "application/octet-stream"}))
    upload.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert slow_tokenizing.request("GET", "/api/v1/model")[0] == 200
    waited = time.monotonic() - started
    upload.join(30)
    assert waited < 0.5, f"a short request waited {waited:.2f} s"
