"""`pip install .` and `pip install -e .` both expose the converter as pyg_edge_convert only.

Both installs run offline (no build isolation, no dependencies) into throwaway folders.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
FIND = ("import importlib.util as u; "
        "print(u.find_spec('pyg_edge_convert').origin, u.find_spec('convert'))")


def pip_install(*args):
    # --ignore-installed: never uninstall the pyg-edge this test session itself runs from.
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
               "--no-build-isolation", "--no-index", "--ignore-installed", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def find_specs(python, cwd, env=None):
    result = subprocess.run([python, "-c", FIND], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_regular_install_maps_convert_folder_to_pyg_edge_convert(tmp_path):
    # From a copy: a regular build leaves a build/ folder behind in its source tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "convert", "pyg_edge"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name)
    target = tmp_path / "site"
    pip_install("--target", str(target), str(source))
    assert (target / "pyg_edge_convert" / "convert.py").is_file()
    assert not (target / "convert").exists()
    origin, bare = find_specs(sys.executable, tmp_path, env={"PYTHONPATH": str(target)})
    assert origin == str(target / "pyg_edge_convert" / "__init__.py")
    assert bare == "None"


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs to run inside a venv")
def test_editable_install_maps_convert_folder_to_pyg_edge_convert(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip_install("--prefix", str(venv), "-e", str(REPO))
    origin, bare = find_specs(str(python), tmp_path)
    assert origin == str(REPO / "convert" / "__init__.py")
    assert bare == "None"
