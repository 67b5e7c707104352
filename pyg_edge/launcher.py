"""The `pyg-edge` command: starts the CLI under the glibc tunables that must be set at exec.

Kept apart from pyg_edge.cli so that the CLI itself (and tests that call it in-process)
never replaces the running process.
"""

import os
import sys

from pyg_edge.cpu.copy_tuning import tuned_environment
from pyg_edge.cpu.setup import as_command


def run() -> None:
    as_command()  # the command keeps glibc's heap (an app's process does not by default)
    environment = tuned_environment(os.environ)
    if environment is not None:
        command = [sys.executable, "-m", "pyg_edge.launcher", *sys.argv[1:]]
        try:
            os.execve(sys.executable, command, environment)
        except OSError:
            pass  # run untuned rather than not at all
    from pyg_edge.cli import main

    main(prog_name="pyg-edge")


if __name__ == "__main__":  # the command, started again under the tunables
    run()
