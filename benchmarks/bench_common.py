"""What the benchmarks share: the machine line, medians, the synthetic 2.7B models, prompts.

Every script imports its helpers from here and from no other script (make_synthetic_checkpoint
writes the synthetic checkpoint; runtime_engines holds bench_runtime's engines; scoring and
sillytavern, which the tests use too, score chunked models and lay out SillyTavern prompts).
"""

import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from make_synthetic_checkpoint import write_checkpoint

from pyg_edge.cpu.copy_tuning import tuned_environment
from pyg_edge_convert import convert_checkpoint


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    python = platform.python_version()
    return (f"{cpu} ({isa()}), {os.cpu_count()} cores, {memory:.0f} GiB RAM, "
            f"Python {python}")


def isa() -> str:
    """The vector extensions that decide which int8 kernels run (pyg_edge.cpu.gemm_backend)."""
    from pyg_edge.cpu.gemm_backend import read_cpu

    flags = read_cpu().flags
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return " ".join(shown) or "no AVX2"


def spread(values: list, digits: int = 1) -> str:
    """The median, with [min-max] beside it when there was more than one run."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


WORK = Path(__file__).parent / "work"
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"  # ../shared/data
WORDS = ("the sea is calm tonight and the harbour lights shine over the old ships while "
         "sailors sing about far islands storms and treasure they never found").split()


# The int8 conversions of the synthetic checkpoint, by folder name: their prefill chunk.
# The converter's default is half the context (1,024); 0 is the one-pass prompt (before).
PREFILL_CHUNKS = {"neo27-st-int8": 0, "neo27-st-int8-chunk1024": 1024}
CHUNKED_MODEL = WORK / "neo27-st-int8-chunk1024"  # the converter's default


def ensure_model(path: Path) -> Path:
    """The converted model at path, made from the synthetic checkpoint if it is missing."""
    if not (path / "model.bin").exists():
        if path.name not in PREFILL_CHUNKS:
            raise SystemExit(f"{path} is missing; this script makes only "
                             + ", ".join(str(WORK / name) for name in PREFILL_CHUNKS))
        src = WORK / "neo27-st"
        if not (src / "model.safetensors").exists():
            write_checkpoint(src, "safetensors")
        convert_checkpoint(str(src), str(path), "int8", force=True,
                           prefill_chunk=PREFILL_CHUNKS[path.name])
    return path


def prompt_ids(count: int) -> list:
    """count token ids of plain words, as the 2.7B models' tokenizer reads them."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(CHUNKED_MODEL / "tokenizer.json"))
    text = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(2 * count))
    return tokenizer.encode(text).ids[:count]


def prompt_of(count: int) -> str:
    """prompt_ids(count) as text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(CHUNKED_MODEL / "tokenizer.json"))
    return tokenizer.decode(prompt_ids(count))


def prompt_text(model, tokens: int) -> str:
    """Plain words, cut to the given number of a model's tokens."""
    text = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(2 * tokens))
    return model.tokenizer.decode(model.tokenizer.encode(text)[:tokens])


ARRAY_BYTES = 512 << 20  # per thread; far beyond any L3


def read_bandwidth(passes: int = 10, threads: int | None = None) -> float:
    """Bytes per second read by `threads` threads summing their own arrays."""
    threads = threads or os.cpu_count() or 1
    arrays = [np.ones(ARRAY_BYTES // 4, np.float32) for _ in range(threads)]
    best = 0.0
    for _ in range(passes):
        workers = [threading.Thread(target=np.add.reduce, args=(a,)) for a in arrays]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = max(best, threads * ARRAY_BYTES / (time.perf_counter() - started))
    return best


# A chat scripted from the play in ../shared/data (bench_api_replay, smart_context_sweep).
def speeches(path: Path) -> list:
    """The play's speeches, each one line of text (its speaker's name left out)."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return [" ".join(b.strip().splitlines()[1:]) for b in blocks if ":" in b.split("\n")[0]]


def chat_script(turns: int, context: int, count, skip: int = 0) -> list:
    """(user message, scripted reply) per turn, sized to the context (2,048: <= 32, 64-128),
    from the play's speeches, the first `skip` left out."""
    lines = [s for s in speeches(DATA / "text" / "tinyshakespeare.txt")[skip:] if s][100:]
    script, i = [], 0
    for _ in range(turns):
        user = lines[i]
        reply, i = lines[i + 1], i + 2
        while count(reply) < context // 32:
            reply, i = f"{reply} {lines[i]}", i + 1
        script.append((keep_first(user, context // 64, count),
                       keep_first(reply, context // 16, count)))
    return script


def keep_first(text: str, tokens: int, count) -> str:
    words = text.split()
    while len(words) > 3 and count(" ".join(words)) > tokens:
        words.pop()
    return " ".join(words)


# A pyg-edge server in a child process, for the server benchmarks.
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return connection, connection.getresponse()


def wait_until_up(port, process) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit("pyg-edge serve exited early")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/api/v1/model")
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("pyg-edge serve did not start")


def run_child(script: str, args: list, as_command: bool = True, timeout: int = 3600) -> dict:
    """Runs `python script *args` in a fresh process and returns its last stdout line's JSON.

    Args:
      as_command: Start it as the `pyg-edge` command starts itself (glibc's copy threshold
        set at exec, pyg_edge.launcher), else as a plain python process (an app's).
    """
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if as_command:
        env = tuned_environment(env) or env
    done = subprocess.run([sys.executable, script, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])
