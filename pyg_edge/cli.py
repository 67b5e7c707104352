"""The pyg-edge command line: commands parse options and call the library, nothing more."""

import signal
import sys

import click

from pyg_edge_convert import QUANTIZATIONS, ConversionError, convert_checkpoint


@click.group()
@click.version_option(package_name="pyg-edge")
def main():
    """Run Pygmalion dialogue models on your own machine."""


@main.command()
@click.argument("src")
@click.argument("dest", type=click.Path())
@click.option(
    "--quantization",
    "-q",
    type=click.Choice(QUANTIZATIONS),
    default="int8",
    show_default=True,
    help="Type of the converted weights.",
)
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
def convert(src, dest, quantization, force):
    """Convert the gpt-neo checkpoint folder SRC into a CTranslate2 model folder DEST."""
    _exit_cleanly_on_sigterm()
    with _ProgressBar("Converting") as progress:
        try:
            summary = convert_checkpoint(src, dest, quantization, force, progress=progress)
        except ConversionError as error:
            raise click.ClickException(str(error)) from None
    click.echo(
        f"Wrote {summary.dest}: {quantization}, {_size(summary.size_bytes)} "
        f"in {summary.seconds:.1f} s"
    )


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


if __name__ == "__main__":
    main()
