"""`pip install .` and `pip install -e .` install every package of the source tree.

Both installs run offline (no build isolation, no dependencies) into throwaway folders.
"""

import shutil
import subprocess
import sys

import pytest

from support.paths import REPO, venv_python

PACKAGES = sorted(str(p.parent.relative_to(REPO)).replace("/", ".")
                  for root in ("pyg_edge", "pyg_edge_convert")
                  for p in (REPO / root).rglob("__init__.py"))
FIND = ("import importlib.util as u, sys; "
        "print(*(u.find_spec(name).origin for name in sys.argv[1:]))")


def pip_install(*args):
    # --ignore-installed: never uninstall the pyg-edge this test session itself runs from.
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
               "--no-build-isolation", "--no-index", "--ignore-installed", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def find_origins(python, cwd, env=None, packages=PACKAGES):
    result = subprocess.run([python, "-c", FIND, *packages], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_source_tree_has_the_packages_the_layout_names():
    assert {"pyg_edge.generation", "pyg_edge.chat", "pyg_edge.cpu", "pyg_edge.server",
            "pyg_edge_convert"} <= set(PACKAGES)


def test_regular_install_installs_every_package_and_its_data(tmp_path):
    # From a copy: a regular build leaves a build/ folder behind in its source tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "pyg_edge_convert", "pyg_edge"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name)
    target = tmp_path / "site"
    pip_install("--target", str(target), str(source))
    origins = find_origins(sys.executable, tmp_path, env={"PYTHONPATH": str(target)})
    assert origins == [str(target / name.replace(".", "/") / "__init__.py") for name in PACKAGES]
    assert (target / "pyg_edge" / "server" / "webchat.html").is_file()
    assert (target / "pyg_edge" / "demo_data" / "pyg-demo-neo" / "config.json").is_file()


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs to run inside a venv")
def test_editable_install_maps_every_package_to_the_source_tree(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv_python(venv)
    pip_install("--prefix", str(venv), "-e", str(REPO))
    # The venv has no dependencies, and a subpackage's lookup imports its parent (numpy
    # and more): the top-level packages are mapped, so their folders come with them.
    top = ["pyg_edge", "pyg_edge_convert"]
    origins = find_origins(str(python), tmp_path, packages=top)
    assert origins == [str(REPO / name / "__init__.py") for name in top]
