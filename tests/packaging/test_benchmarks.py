"""The benchmarks' house rules: every measurement script is in run_all.py, shared helpers come
from bench_common.py, and no benchmark imports test code or another benchmark script."""

import ast
import re

from support.paths import REPO

BENCHMARKS = REPO / "benchmarks"
# scoring and sillytavern serve the tests too (pytest's path has benchmarks/).
HELPERS = {"bench_common", "make_synthetic_checkpoint", "runtime_engines", "scoring",
           "sillytavern", "server_attacks"}
NOT_MEASUREMENTS = HELPERS | {"run_all"}


def local_imports(path) -> set:
    """The names of benchmarks/ modules and test modules that path imports."""
    local = {p.stem for p in BENCHMARKS.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found |= {n.split(".")[0] for n in names
                  if n.split(".")[0] in local | {"support", "conftest"}
                  or n.split(".")[0].startswith("test_")}
    return found


def test_every_measurement_script_runs_in_run_all():
    listed = set(re.findall(r"\"(\w+)\.py", (BENCHMARKS / "run_all.py").read_text()))
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - NOT_MEASUREMENTS
    assert scripts - listed == set()


def test_benchmarks_import_only_their_helpers():
    wrong = {p.name: local_imports(p) - HELPERS for p in BENCHMARKS.glob("*.py")}
    assert {name: found for name, found in wrong.items() if found} == {}
