"""pyg-edge's per-user cache folder: converted demo models, GEMM self-test verdicts."""

import os
import sys
from pathlib import Path

CACHE_ENV = "PYG_EDGE_CACHE"


def cache_dir() -> Path:
    """$PYG_EDGE_CACHE if set; else %LOCALAPPDATA%\\pyg-edge on Windows, and
    $XDG_CACHE_HOME/pyg-edge (default ~/.cache/pyg-edge) elsewhere."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "pyg-edge"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pyg-edge"
