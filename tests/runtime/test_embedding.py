"""Embedding the library: the thread contract, a Stop that stops, asyncio, load progress,
typed errors and the CUDA fallback (issue 28). A slow big model is simulated on the tiny one
by slowing CTranslate2's generate_tokens: a pause before the first step is a prompt pass
that nothing can interrupt."""

import asyncio
import logging
import threading
import time

import ctranslate2
import pytest

from pyg_edge.chat.completions import Completions
from pyg_edge.errors import GenerationError, ModelLoadError, ReentryError
from pyg_edge.generation import loading
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions

GREEDY = SamplingOptions(temperature=0, repetition_penalty=1.0, banned=(), max_new_tokens=24)
PROMPT = "You: Tell me about the sea, the ships and the harbour.\nAqua:"
STOP_WITHIN_S = 1.0  # the bound: control back within a second of Stop


def read_all(stream, into: list):
    for piece in stream:
        into.append((time.monotonic(), piece))


def reading(stream) -> tuple:
    """A thread reading stream, started, and the list it fills."""
    pieces = []
    reader = threading.Thread(target=read_all, args=(stream, pieces))
    reader.start()
    return reader, pieces


def assert_stop_returns_at_once(stream, reader, press):
    """press() (Stop) ends the reader's loop within STOP_WITHIN_S, the call cancelled."""
    pressed = time.monotonic()
    press()
    reader.join(STOP_WITHIN_S)
    assert not reader.is_alive() and time.monotonic() - pressed < STOP_WITHIN_S
    assert stream.stats.finish_reason == "cancelled"


def test_two_threads_are_served_in_arrival_order_each_with_its_own_figures(
        tiny_model, slow_engine):
    slow_engine["step_s"] = 0.01
    first = tiny_model.stream(PROMPT, GREEDY, max_new_tokens=20)
    second = tiny_model.stream(PROMPT + " Yes.", GREEDY, max_new_tokens=5)
    got = {"first": [], "second": []}
    a = threading.Thread(target=read_all, args=(first, got["first"]))
    a.start()
    time.sleep(0.05)  # the first holds the turn before the second asks
    b = threading.Thread(target=read_all, args=(second, got["second"]))
    b.start()
    a.join(30)
    b.join(30)
    assert got["first"] and got["second"]
    assert got["first"][-1][0] <= got["second"][0][0]  # no interleaving: one at a time
    assert first.stats.new_tokens == 20 and second.stats.new_tokens == 5
    assert first.stats.prompt_tokens < second.stats.prompt_tokens


def test_a_thread_that_starts_a_reply_while_reading_another_gets_a_clear_error(tiny_model):
    earlier = tiny_model.stream(PROMPT, GREEDY)
    next(earlier)
    with pytest.raises(ReentryError, match="close"):
        next(tiny_model.stream(PROMPT, GREEDY))
    earlier.close()
    assert tiny_model.generate(PROMPT, GREEDY, max_new_tokens=3)  # works once it is closed


def test_stop_while_queued_returns_at_once_and_never_runs(tiny_model, slow_engine):
    slow_engine["step_s"] = 0.05
    running = tiny_model.stream(PROMPT, GREEDY, max_new_tokens=40)
    holder = threading.Thread(target=read_all, args=(running, []))
    holder.start()
    time.sleep(0.1)
    cancel = threading.Event()
    queued = tiny_model.stream(PROMPT, GREEDY, cancel=cancel)
    waiter, pieces = reading(queued)
    time.sleep(0.2)
    assert queued.state == "queued"
    assert_stop_returns_at_once(queued, waiter, cancel.set)
    assert pieces == []
    running.close()
    holder.join(10)


def test_stop_during_a_prompt_pass_returns_within_a_second(tiny_model, slow_engine):
    slow_engine["pass_s"] = 3.0  # CTranslate2 cannot be interrupted inside it
    stream = tiny_model.stream(PROMPT, GREEDY)
    reader, pieces = reading(stream)
    time.sleep(0.5)
    assert stream.state == "running"
    assert_stop_returns_at_once(stream, reader, stream.cancel)
    assert pieces == []
    # The pass ends in the background; the next call waits its turn and is served.
    slow_engine["pass_s"] = 0.0
    assert tiny_model.generate(PROMPT, GREEDY, max_new_tokens=3)


def test_stop_during_a_reload_returns_within_a_second(tiny_model, monkeypatch):
    original = loading.LoadedGenerator.load

    def slow_load(self, seed):
        time.sleep(2.0)
        original(self, seed)

    monkeypatch.setattr(loading.LoadedGenerator, "load", slow_load)
    stream = tiny_model.stream(PROMPT, GREEDY, seed=12345)  # a new seed reloads the model
    reader, _ = reading(stream)
    time.sleep(0.3)
    assert_stop_returns_at_once(stream, reader, stream.cancel)
    assert tiny_model.generate(PROMPT, GREEDY, max_new_tokens=3)  # after the reload


def test_the_async_iterator_gives_the_same_reply_as_the_sync_one(tiny_model):
    expected = tiny_model.generate(PROMPT, GREEDY)

    async def main():
        async def one():
            return "".join([piece async for piece in tiny_model.stream(PROMPT, GREEDY)])
        return await asyncio.gather(one(), one())  # two tasks of one loop thread queue

    assert asyncio.run(main()) == [expected, expected]


def test_async_chat_completion_streams_chunks_and_ends_with_usage(tiny_model):
    messages = [{"role": "system", "content": "Aqua's Persona: a goddess of water."},
                {"role": "user", "content": "Hello! Who are you?"}]
    completions = Completions(tiny_model)

    async def main():
        stream = completions.create_chat_completion(messages, GREEDY, max_new_tokens=8)
        return [chunk async for chunk in stream], stream

    chunks, stream = asyncio.run(main())
    last = chunks[-1]
    assert last.finish_reason in ("stop", "length") and all(c.finish_reason is None
                                                           for c in chunks[:-1])
    assert last.usage.completion_tokens == stream.stats.new_tokens
    assert last.usage.prompt_tokens == stream.stats.prompt_tokens > 0
    sync = completions.create_chat_completion(messages, GREEDY, max_new_tokens=8).text()
    assert "".join(c.text for c in chunks) == sync


def test_a_cancelled_async_task_stops_its_generation(tiny_model, slow_engine):
    slow_engine["step_s"] = 0.05
    stream = tiny_model.stream(PROMPT, GREEDY, max_new_tokens=60)

    async def main():
        async def read():
            return [piece async for piece in stream]
        task = asyncio.create_task(read())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert stream.stats.finish_reason == "cancelled"


def test_load_progress_reports_each_phase_in_order(converted):
    phases = []
    with PygModel(converted("neo_w16_safetensors_f32"), device="cpu",
                  progress=lambda phase, fraction: phases.append((phase, fraction))):
        pass
    assert phases == [(loading.CHECKING_CPU, None), (loading.READING_WEIGHTS, 0.0),
                      (loading.READING_WEIGHTS, 1.0), (loading.READY, 1.0)]


def test_a_ctranslate2_failure_while_generating_is_a_generation_error(tiny_model, monkeypatch):
    def failing(self, *args, **kwargs):
        raise RuntimeError("CUDA failed with error out of memory")
        yield

    monkeypatch.setattr(ctranslate2.Generator, "generate_tokens", failing)
    with pytest.raises(GenerationError, match="out of memory"):
        tiny_model.generate(PROMPT, GREEDY)


class CudaWithoutLibraries:
    """ctranslate2 on a machine with a CUDA driver but no cuBLAS: loads, fails to compute."""

    def __init__(self):
        self.loads = []

    def __getattr__(self, name):
        return getattr(ctranslate2, name)

    def get_cuda_device_count(self):
        return 1

    def Generator(self, path, device="cpu", **kwargs):  # noqa: N802  (ctranslate2's name)
        self.loads.append(device)
        if device == "cuda":
            return _NoComputeGenerator()
        return ctranslate2.Generator(path, device=device, **kwargs)


class _NoComputeGenerator:
    def generate_batch(self, *args, **kwargs):
        raise RuntimeError("Library libcublas.so.12 is not found or cannot be loaded")

    def unload_model(self):
        pass


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_cuda_that_cannot_compute_falls_back_or_names_the_library(converted, monkeypatch,
                                                                  caplog, device):
    import pyg_edge.generation.model as model_module

    fake = CudaWithoutLibraries()
    monkeypatch.setattr(model_module, "ctranslate2_module", lambda *args, **kw: fake)
    folder = converted("neo_w16_safetensors_f32")
    if device == "cuda":
        with pytest.raises(ModelLoadError, match="libcublas.so.12"):
            PygModel(folder, device="cuda")
        return
    caplog.set_level(logging.WARNING, logger="pyg_edge")
    with PygModel(folder, device="auto") as model:
        assert model.device == "cpu" and fake.loads == ["cuda", "cpu"]
        assert model.generate(PROMPT, GREEDY, max_new_tokens=2)
    assert "CUDA cannot compute" in caplog.text and "libcublas" in caplog.text


PREPARE_TOO_LATE = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING)
import ctranslate2  # as an app that loaded faster-whisper first would have
from pyg_edge.cpu import prepare
first = prepare()
print(json.dumps({"too_late": first.too_late, "backend": first.gemm.backend,
                  "again": prepare() is first}))
"""


def test_prepare_warns_when_ctranslate2_came_first():
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PREPARE_TOO_LATE], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"too_late": True, "backend": "ctranslate2 default", "again": True}
    assert "imported before pyg_edge.cpu.prepare()" in done.stderr
