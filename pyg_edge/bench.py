"""`pyg-edge bench`: how fast a model runs on this machine, in a form to paste into a report.

One model load, one warm-up call, then for each prompt length a few greedy generations of
a fixed number of tokens (the end token cannot cut them short): the time to the first token
(the prompt pass and one decode step) and the decode speed after it, medians over the
repeats, and the process's peak resident memory so far. The machine rows say what ran:
the CPU, the GEMM backend and whether int8 is exact on it (pyg_edge.cpu.info).

The numbers are this machine's, under whatever else it runs; nothing is sent anywhere.
"""

import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyg_edge.errors import OptionsError
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge_convert.version import __version__

logger = logging.getLogger("pyg_edge")

# Prompt lengths as fractions of the context: 128, 512 and 1,536 tokens on a 2,048 context
# (a chat's start, middle and a long one), 32, 128 and 384 on the demo's 512.
CONTEXT_FRACTIONS = (1 / 16, 1 / 4, 3 / 4)
# The machine rows of `pyg-edge info` a report needs.
MACHINE_ROWS = ("cpu", "cores", "isa", "gemm backend", "int8 kernels", "float kernels",
                "int8 path check", "cpu threads", "ctranslate2")
# A text that tokenizes like chat: words, punctuation, names (cut to each prompt length).
FILLER = ("You: The harbour was quiet this morning, wasn't it? Tell me what you saw.\n"
          "Robin: Three ships came in before dawn, one with red sails and a broken mast. "
          "The sailors sang while they unloaded crates of oranges and salt fish.\n")


@dataclass(frozen=True)
class BenchOptions:
    """What to measure.

    Attributes:
      prompt_tokens: Prompt lengths in tokens; () picks CONTEXT_FRACTIONS of the context.
      new_tokens: Tokens generated per run.
      repeats: Runs per prompt length (medians are reported).
      device, compute_type, cpu_threads, gemm, allow_inexact: As PygModel's.
    """

    prompt_tokens: tuple = ()
    new_tokens: int = 64
    repeats: int = 3
    device: str = "cpu"
    compute_type: str = "auto"
    cpu_threads: int = 0
    gemm: str | None = None
    allow_inexact: bool = False


@dataclass(frozen=True)
class BenchRow:
    """The figures of one prompt length (medians over the repeats).

    Attributes:
      prompt_tokens: Tokens in the prompt.
      first_token_seconds: From the call to the first generated token.
      decode_tokens_per_second: Tokens after the first, per second.
      peak_rss_bytes: The process's peak resident memory once these runs ended (None
        where the OS does not say).
    """

    prompt_tokens: int
    first_token_seconds: float
    decode_tokens_per_second: float
    peak_rss_bytes: int | None


@dataclass
class BenchReport:
    """What `pyg-edge bench` prints.

    Attributes:
      machine: (label, value) rows: the CPU, the backend, the versions.
      model: The model's folder name, and what it runs in.
      options: The BenchOptions measured with.
      load_seconds: The model's load time.
      rows: One BenchRow per prompt length.
      skipped: Prompt lengths that do not fit the model's context with new_tokens.
    """

    machine: list
    model: str
    options: BenchOptions
    load_seconds: float
    rows: list = field(default_factory=list)
    skipped: tuple = ()

    def markdown(self) -> str:
        """The report as Markdown: a machine table, then one row per prompt length."""
        lines = ["### pyg-edge bench", "", "| | |", "|---|---|"]
        lines += [f"| {label} | {_cell(value)} |" for label, value in self.machine]
        lines += [f"| model | {_cell(self.model)} |",
                  f"| run | {self.options.new_tokens} new tokens, median of "
                  f"{self.options.repeats}; load {self.load_seconds:.1f} s |", "",
                  "| prompt tokens | first token (s) | decode (tokens/s) | peak RSS (MB) |",
                  "|---:|---:|---:|---:|"]
        for row in self.rows:
            rss = f"{row.peak_rss_bytes / 1e6:,.0f}" if row.peak_rss_bytes else "?"
            lines.append(f"| {row.prompt_tokens:,} | {row.first_token_seconds:.3f} | "
                         f"{row.decode_tokens_per_second:.1f} | {rss} |")
        if self.skipped:
            lines += ["", f"Not measured (over the context): {', '.join(map(str, self.skipped))}"
                      " prompt tokens."]
        return "\n".join(lines) + "\n"


def run_bench(model_path, options: BenchOptions | None = None,
              progress: Callable | None = None) -> BenchReport:
    """Measures a converted model on this machine.

    Args:
      model_path: A converted model folder.
      options: What to measure (default BenchOptions()).
      progress: Called as progress(done, total, what) before each run and once at the end
        (done == total), what a short text ("prompt 512 tokens, run 2/3").

    Returns:
      The BenchReport.

    Raises:
      OptionsError: new_tokens or repeats below 1, or a prompt length below 1.
      ModelLoadError: the model cannot be loaded.
    """
    options = options or BenchOptions()
    _check(options)
    report = progress or (lambda done, total, what: None)
    report(0, 1, "loading the model")
    started = time.monotonic()
    with PygModel(model_path, options.device, options.compute_type, options.cpu_threads,
                  gemm=options.gemm, allow_inexact=options.allow_inexact) as model:
        load_seconds = time.monotonic() - started
        lengths, skipped = prompt_lengths(options, model.context_length)
        total = 1 + len(lengths) * options.repeats
        report(0, total, "warming up")
        _measure(model, 8, min(8, options.new_tokens))
        rows = []
        for index, length in enumerate(lengths):
            runs = []
            for repeat in range(options.repeats):
                done = 1 + index * options.repeats + repeat
                report(done, total, f"prompt {length:,} tokens, run {repeat + 1}/{options.repeats}")
                runs.append(_measure(model, length, options.new_tokens))
            rows.append(_row(runs))
        name = f"{os.path.basename(os.path.normpath(model.path))} ({_model_types(model)})"
    report(total, total, "done")
    return BenchReport(machine_rows(options.gemm), name, options, load_seconds, rows, skipped)


def prompt_lengths(options: BenchOptions, context_length: int) -> tuple:
    """(the lengths to measure, those that do not fit the context with new_tokens)."""
    wanted = options.prompt_tokens or tuple(
        max(1, int(context_length * f)) for f in CONTEXT_FRACTIONS)
    room = context_length - options.new_tokens
    fits = tuple(dict.fromkeys(n for n in wanted if n <= room))
    return fits, tuple(n for n in wanted if n > room)


def machine_rows(gemm: str | None = None) -> list:
    """The rows of `pyg-edge info` a report needs, the OS, memory and versions."""
    from pyg_edge.cpu.info import system_info

    rows = [(label, value) for label, value in system_info(gemm) if label in MACHINE_ROWS]
    memory = _total_memory()
    return [("pyg-edge", __version__), *rows,
            ("memory", f"{memory / 2**30:.1f} GiB" if memory else "unknown"),
            ("os", f"{platform.system()} {platform.release()} ({platform.machine()})"),
            ("python", platform.python_version())]


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory, or None where the OS does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes; Linux: KiB


def _measure(model: PygModel, prompt_tokens: int, new_tokens: int):
    prompt = model.tokenizer.keep_last(FILLER * (prompt_tokens // 30 + 2), prompt_tokens)
    greedy = SamplingOptions(temperature=0, repetition_penalty=1, banned=(),
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    stream = model.stream(prompt, greedy)
    for _ in stream:
        pass
    return stream.stats


def _row(runs: list) -> BenchRow:
    first = statistics.median(s.first_token_seconds for s in runs)
    speeds = [(s.new_tokens - 1) / (s.seconds - s.first_token_seconds)
              for s in runs if s.new_tokens > 1 and s.seconds > s.first_token_seconds]
    return BenchRow(runs[0].prompt_tokens, first, statistics.median(speeds) if speeds else 0.0,
                    peak_rss_bytes())


def _model_types(model: PygModel) -> str:
    stored = model.metadata.get("quantization", "?")
    return (f"{stored} weights, running {model.compute_type} on {model.device}, "
            f"context {model.context_length:,}")


def _check(options: BenchOptions) -> None:
    if options.new_tokens < 1 or options.repeats < 1:
        raise OptionsError(f"new_tokens and repeats must be at least 1, not "
                           f"{options.new_tokens} and {options.repeats}")
    if any(n < 1 for n in options.prompt_tokens):
        raise OptionsError(f"prompt lengths must be at least 1 token: {options.prompt_tokens}")


def _total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _cell(value) -> str:
    return str(value).replace("|", "\\|")
