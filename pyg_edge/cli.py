"""The pyg-edge command line: commands parse options and call the library, nothing more."""

import contextlib
import dataclasses
import signal
import sys

import click

from pyg_edge import demo
from pyg_edge.chat.chat_planner import plan_first_turn
from pyg_edge.chat.prompt import PYGMALION_BANNED
from pyg_edge.chat.session import ChatSession, read_chat
from pyg_edge.cli_cards import load_card, tell_lore
from pyg_edge.cli_chat import announce_reading, chat_loop
from pyg_edge.cpu.gemm_backend import CHOICES as GEMM_CHOICES
from pyg_edge.cpu.gemm_backend import ENV as GEMM_ENV
from pyg_edge.cpu.setup import prepare
from pyg_edge.errors import PygEdgeError
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.model_folder import DEVICES, read_metadata
from pyg_edge.generation.replies import MAX_REPLIES
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.tokenizer import TextTokenizer
from pyg_edge.server.settings import ServerSettings
from pyg_edge_convert import QUANTIZATIONS, ConversionError, convert_checkpoint


@click.group()
@click.version_option(package_name="pyg-edge")
def main():
    """Run Pygmalion dialogue models on your own machine."""


@main.command()
@click.argument("src")
@click.argument("dest", type=click.Path())
@click.option("--quantization", "-q", type=click.Choice(QUANTIZATIONS), default="int8",
              show_default=True, help="Type of the converted weights.")
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@click.option("--prefill-chunk", type=click.IntRange(min=0), default=None,
              show_default="half the context",
              help="Read long prompts exactly in chunks of this many tokens: faster and "
                   "leaner (a chunked model's forward_batch needs benchmarks/scoring.py); "
                   "0 reads them in one pass.")
def convert(src, dest, quantization, force, prefill_chunk):
    """Convert the gpt-neo checkpoint folder SRC into a CTranslate2 model folder DEST."""
    _exit_cleanly_on_sigterm()
    with _ProgressBar("Converting") as progress:
        try:
            summary = convert_checkpoint(src, dest, quantization, force, progress=progress,
                                         prefill_chunk=prefill_chunk)
        except ConversionError as error:
            raise click.ClickException(str(error)) from None
    click.echo(
        f"Wrote {summary.dest}: {quantization}, {_size(summary.size_bytes)} "
        f"in {summary.seconds:.1f} s"
    )


def _prepare(ctx, param, value):
    """With --gemm, pyg-edge's process-wide settings are made now, with that backend
    (pyg_edge.cpu.setup.prepare); else the first model load makes them."""
    if ctx.resilient_parsing or value is None:
        return
    try:
        prepare(value)
    except PygEdgeError as error:
        raise click.BadParameter(str(error), param=param) from None


gemm_option = click.option(
    "--gemm", type=click.Choice(GEMM_CHOICES), expose_value=False, callback=_prepare,
    help=f"CPU int8 GEMM backend [default: auto, or {GEMM_ENV}]; see `pyg-edge info`.")


def model_options(command):
    """Options that say where and how to run the model."""
    for option in reversed([
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True),
        click.option("--compute-type", default="auto", show_default=True,
                     help="CTranslate2 compute type (auto: fastest exact one for the device)."),
        click.option("--threads", type=int, default=0, help="CPU threads (0: automatic)."),
        click.option("--allow-inexact", is_flag=True,
                     help="Run int8 even on a CPU whose int8 path fails pyg-edge's check "
                          "(faster; logits can be off: `pyg-edge info` says)."),
        gemm_option,
    ]):
        command = option(command)
    return command


def sampling_options(command):
    """Flags for each SamplingOptions field; unset flags keep the defaults."""
    for option in reversed([
        click.option("--temperature", type=float, help="0 for greedy. [default: 0.5]"),
        click.option("--top-k", type=int, help="0 for no limit. [default: 0]"),
        click.option("--top-p", type=float, help="[default: 0.9]"),
        click.option("--repetition-penalty", type=float, help="[default: 1.05]"),
        click.option("--no-repeat-ngram-size", type=int, help="[default: 0]"),
        click.option("--max-new-tokens", type=int, help="[default: 196]"),
        click.option("--seed", type=int, help="Seed for repeatable output."),
        click.option("--stop", multiple=True, help="A string that ends the reply (repeatable)."),
    ]):
        command = option(command)
    return command


@main.command()
@click.argument("model_path", metavar="[MODEL]", type=click.Path(), required=False)
@click.option("--character", "-c", "card", type=click.Path(),
              help="Character card (.json or .png) [default: the demo's Robin].")
@click.option("--history", type=click.Path(), help="Chat (SillyTavern JSONL) to continue.")
@click.option("--replies", type=click.IntRange(1, MAX_REPLIES), default=1, show_default=True,
              help="Replies sampled per turn in one batch; the extras make /regen instant "
                   "(each costs memory and some speed).")
@model_options
@sampling_options
def chat(model_path, card, history, replies, device, compute_type, threads, allow_inexact,
         **sampling):
    """Chat with a character in the terminal; also reads messages piped on stdin.

    Without MODEL, chats with the bundled demo model (converted on first use).
    """
    with _user_errors():
        model_path = model_path or _demo_model()
        character = load_card(card or demo.DEMO_CHARACTER)
        options = _sampling(sampling)
        messages = read_chat(history, character.name) if history else None
        with PygModel(model_path, device, compute_type, threads, seed=options.seed,
                      allow_inexact=allow_inexact) as model:
            # The seed applies once, at load: /regen must give a new reply, not the same one.
            session = ChatSession(model, character, options.with_overrides(seed=None), messages,
                                  replies, on_long_prompt=announce_reading)
            chat_loop(session)


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--character", "-c", "card", required=True, type=click.Path())
@click.option("--message", "-m", required=True, help="The user's new message.")
@click.option("--history", type=click.Path(), help="Chat (SillyTavern JSONL) before it.")
@click.option("--max-context", type=int, help="Context in tokens [default: the model's].")
@click.option("--max-new-tokens", type=int, default=196, show_default=True)
@click.option("--lore", is_flag=True, help="List the lorebook entries that activate, and why.")
def prompt(model_path, card, message, history, max_context, max_new_tokens, lore):
    """Print exactly the prompt the model would get; nothing else goes to stdout."""
    with _user_errors():
        character = load_card(card)
        metadata = read_metadata(model_path)
        tokenizer = TextTokenizer.from_model_folder(model_path)
        messages = read_chat(history, character.name) if history else []
        context = max_context or metadata["context_length"]
        built = plan_first_turn(character, messages, message, tokenizer.count,
                                context, max_new_tokens, metadata.get("prefill_chunk", 0))
    if lore:
        tell_lore(character, messages, message, tokenizer.count, context)
    click.echo(built.text)


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path())
@click.option("--prompt", "prompt_text", help="The prompt.")
@click.option("--prompt-file", type=click.File(encoding="utf-8"), help="File holding the prompt.")
@model_options
@sampling_options
def generate(model_path, prompt_text, prompt_file, device, compute_type, threads, allow_inexact,
             **sampling):
    """Print the model's continuation of a prompt."""
    if (prompt_text is None) == (prompt_file is None):
        raise click.UsageError("give exactly one of --prompt and --prompt-file")
    text = prompt_text if prompt_text is not None else prompt_file.read()
    with _user_errors():
        # A raw prompt for a Pygmalion model: its markers stay banned, as in a chat.
        options = _sampling(sampling, banned=PYGMALION_BANNED)
        with PygModel(model_path, device, compute_type, threads, seed=options.seed,
                      allow_inexact=allow_inexact) as model:
            for piece in model.stream(text, options):
                click.echo(piece, nl=False)
    click.echo()


def server_options(command):
    """`pyg-edge serve`'s flags: one per ServerSettings field, with its default and help."""
    for setting in reversed(dataclasses.fields(ServerSettings)):
        if "help" in setting.metadata:
            command = _server_option(setting)(command)
    return command


def _server_option(setting):
    meta = dict(setting.metadata)
    flag = meta.pop("flag", "--" + setting.name.replace("_", "-"))
    low, high = meta.pop("low", None), meta.pop("high", None)
    kind = type(setting.default)
    if low is not None or high is not None:
        ranged = click.IntRange if kind is int else click.FloatRange
        meta["type"] = ranged(low, high, max_open=meta.pop("max_open", False))
    elif "/" not in flag and not meta.get("multiple"):
        meta["type"] = kind
    meta.setdefault("show_default", not meta.get("multiple"))
    return click.option(flag, setting.name, default=setting.default, **meta)


@main.command()
@click.argument("model_path", metavar="[MODEL]", type=click.Path(), required=False)
@server_options
@model_options
def serve(model_path, device, compute_type, threads, allow_inexact, **settings):
    """Serve MODEL to chat frontends (KoboldAI, KoboldCpp and OpenAI APIs) and a web page.

    Without MODEL, serves the bundled demo model (converted on first use).
    """
    try:
        from pyg_edge.server import serve as run_server
        from pyg_edge.server.cors import check_origins
    except ImportError:
        raise click.ClickException(
            "pyg-edge serve needs aiohttp: pip install 'pyg-edge[server]'") from None
    try:
        settings["cors_origins"] = check_origins(settings["cors_origins"])
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--cors-origin") from None
    settings = ServerSettings(**{name: tuple(value) if isinstance(value, list) else value
                                 for name, value in settings.items()})
    with _user_errors():
        model_path = model_path or _demo_model()
        run_server(model_path, settings, device=device, compute_type=compute_type,
                   cpu_threads=threads, allow_inexact=allow_inexact)


def _demo_model():
    click.echo("Using the bundled demo model (a small GPT-Neo; see `pyg-edge chat --help`).",
               err=True)
    with _ProgressBar("Converting the demo model") as progress:
        return demo.demo_model(progress)


@main.command()
@gemm_option
def info():
    """Show the CPU, the GEMM backend pyg-edge chose for it and why, and CTranslate2."""
    from pyg_edge.cpu.info import system_info

    with _user_errors():
        rows = system_info()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label + ':':<{width + 1}} {value}")


@main.command()
@click.argument("model_path", metavar="[MODEL]", type=click.Path(), required=False)
@click.option("--prompt-tokens", type=click.IntRange(min=1), multiple=True,
              help="A prompt length (repeatable) [default: 1/16, 1/4, 3/4 of the context].")
@click.option("--new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@model_options
def bench(model_path, prompt_tokens, new_tokens, repeats, device, compute_type, threads,
          allow_inexact):
    """Print first-token time, decode speed and peak memory here, as Markdown [MODEL: demo]."""
    from pyg_edge.bench import BenchOptions, run_bench

    options = BenchOptions(prompt_tokens, new_tokens, repeats, device, compute_type, threads,
                           allow_inexact=allow_inexact)
    with _user_errors():
        report = run_bench(model_path or _demo_model(), options, _progress_line)
    click.echo(report.markdown(), nl=False)


def _sampling(flags: dict, **defaults) -> SamplingOptions:
    overrides = defaults | {k: v for k, v in flags.items() if v is not None and v != ()}
    if "stop" in overrides:
        # "\n" typed on a command line arrives as backslash-n.
        overrides["stop"] = tuple(s.replace("\\n", "\n") for s in overrides["stop"])
    try:
        return SamplingOptions().with_overrides(**overrides)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@contextlib.contextmanager
def _user_errors():
    """Turns the library's errors into one-line CLI errors."""
    try:
        yield
    except PygEdgeError as error:
        raise click.ClickException(str(error)) from None


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e9:.2f} GB" if num_bytes >= 1e9 else f"{num_bytes / 1e6:.1f} MB"


def _exit_cleanly_on_sigterm() -> None:
    """Turns SIGTERM into SystemExit, so that cleanup (the staging folder) still runs."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


class _ProgressBar:
    """A progress(done, total) callback drawing a bar on a terminal's stderr, else nothing."""

    def __init__(self, label: str):
        self._label, self._bar, self._shown = label, None, 0

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self._label, file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._shown)
        self._shown = done

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _progress_line(done: int, total: int, what: str) -> None:
    """bench's progress on stderr: one line, rewritten in place on a terminal."""
    tty = sys.stderr.isatty()
    click.echo(("\r\033[K" if tty else "") + f"[{done}/{total}] {what}", err=True,
               nl=not tty or done == total)


if __name__ == "__main__":
    main(prog_name="pyg-edge")
