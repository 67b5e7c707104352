"""The `pyg-edge` command driven in-process, as the CLI tests drive it."""

import json

from click.testing import CliRunner


def invoke(*args, input=None):
    """Runs `pyg-edge ARGS` with input as its stdin; returns click's Result."""
    from pyg_edge.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def card_file(folder, card: dict):
    """card written as folder/aqua.json; returns its path."""
    path = folder / "aqua.json"
    path.write_text(json.dumps(card))
    return path
