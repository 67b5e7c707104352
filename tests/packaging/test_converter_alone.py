"""The converter imports alone: a fresh virtual environment with numpy and pyg_edge_convert
but neither tokenizers, CTranslate2 nor the runtime can `import pyg_edge_convert` and read a
checkpoint; and the version is read without importing anything."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import pyg_edge
import pyg_edge_convert
from support.paths import CHECKPOINTS, REPO, venv_python

PROBE = """
import importlib.util, json, sys
missing = [m for m in ("tokenizers", "ctranslate2", "pyg_edge")
           if importlib.util.find_spec(m) is not None]
import pyg_edge_convert
from pyg_edge_convert.checkpoint import open_checkpoint
checkpoint = open_checkpoint(sys.argv[1])
print(json.dumps({"present": missing, "version": pyg_edge_convert.__version__,
                  "error_root": pyg_edge_convert.ConversionError.__mro__[1].__name__,
                  "layers": checkpoint.config["num_layers"],
                  "loaded": sorted(m for m in sys.modules
                                   if m.split(".")[0] in ("tokenizers", "ctranslate2",
                                                          "pyg_edge"))}))
"""


@pytest.fixture(scope="module")
def numpy_only_venv(tmp_path_factory) -> Path:
    """A venv whose only packages are numpy and the converter (links to this session's)."""
    root = tmp_path_factory.mktemp("converter-alone")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    packages = root / "packages"
    packages.mkdir()
    numpy_dir = Path(numpy.__file__).parent
    for source in [numpy_dir, *numpy_dir.parent.glob("numpy.libs"),
                   Path(pyg_edge_convert.__file__).parent]:
        (packages / source.name).symlink_to(source, target_is_directory=True)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "packages.pth").write_text(f"{packages}\n", encoding="utf-8")
    return venv


def test_the_converter_imports_and_reads_a_checkpoint_without_tokenizers_or_ctranslate2(
        numpy_only_venv, tmp_path):
    checkpoint = CHECKPOINTS / "neo_w16_safetensors_f32"
    done = subprocess.run([str(venv_python(numpy_only_venv)), "-c", PROBE, str(checkpoint)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["present"] == []  # the environment really lacks them
    assert result["loaded"] == []
    assert result["version"] == pyg_edge.__version__
    assert result["error_root"] == "PygEdgeError"
    assert result["layers"] == json.loads((checkpoint / "config.json").read_text())["num_layers"]


def test_the_version_is_read_from_a_file_that_imports_nothing():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" in project["project"]["dynamic"]
    module, _, name = project["tool"]["setuptools"]["dynamic"]["version"]["attr"].rpartition(".")
    path = REPO / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    (value,) = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
                and [t.id for t in n.targets] == [name]]
    assert value == pyg_edge.__version__ == pyg_edge_convert.__version__


def _imported_modules(path: Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_no_converter_module_imports_the_runtime():
    wrong = {p.name: sorted(m for m in _imported_modules(p) if m.split(".")[0] == "pyg_edge")
             for p in (REPO / "pyg_edge_convert").glob("*.py")}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_the_cpu_floor_does_not_import_the_whole_library():
    """pyg_edge/cpu/ is below the rest: `from pyg_edge import X` would run the package's
    __init__ (every module) from there."""
    wrong = {p.name: sorted(m for m in _imported_modules(p)
                            if m.startswith("pyg_edge.") and m.count(".") == 1
                            and m not in ("pyg_edge.cpu", "pyg_edge.errors",
                                          "pyg_edge.user_cache"))
             for p in (REPO / "pyg_edge" / "cpu").glob("*.py")}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_test_and_benchmark_helpers_are_not_shipped():
    assert not (REPO / "pyg_edge" / "chat" / "sillytavern.py").exists()
    assert not (REPO / "pyg_edge" / "generation" / "scoring.py").exists()
