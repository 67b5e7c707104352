"""The `pyg-edge` command: starts the CLI under the glibc tunables that must be set at exec.

Kept apart from pyg_edge.cli so that the CLI itself (and tests that call it in-process)
never replaces the running process.
"""

import os
import sys

from pyg_edge.cpu.copy_tuning import tuned_environment


def run() -> None:
    environment = tuned_environment(os.environ)
    if environment is not None:
        command = [sys.executable, "-m", "pyg_edge.cli", *sys.argv[1:]]
        try:
            os.execve(sys.executable, command, environment)
        except OSError:
            pass  # run untuned rather than not at all
    from pyg_edge.cli import main

    main()
