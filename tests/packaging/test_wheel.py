"""The built wheel, installed alone in a fresh virtual environment, chats and serves the demo.

Offline: the wheel is built without build isolation, installed without an index, and the
runtime dependencies come from this test session's own environment through a .pth path
line (which adds the folder but runs none of its .pth files, so this checkout's editable
install stays invisible). Everything runs from a folder outside the checkout.
"""

import http.client
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

from support.paths import REPO, home_env, venv_python
from support.server_harness import free_port

SOURCES = ("pyproject.toml", "README.md", "setup.py", "pyg_edge_convert", "pyg_edge")
MAX_WHEEL_BYTES = 25 * 1000 * 1000
SHIPPED = ("pyg_edge/demo_data/robin.json", "pyg_edge/demo_data/pyg-demo-neo/config.json",
           "pyg_edge/demo_data/pyg-demo-neo/model.safetensors",
           "pyg_edge/demo_data/pyg-demo-neo/tokenizer.json")

pytestmark = pytest.mark.wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # From a copy: building in place leaves build/ and *.egg-info in the checkout.
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name, **({"ignore": _ignored} if copy is shutil.copytree
                                             else {}))
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
               "--no-index", "-w", str(work / "dist"), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (found,) = (work / "dist").glob("pyg_edge-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh venv holding only the wheel; returns the environment and paths to run it."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv_python(venv)
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                             "-q", "--no-deps", "--no-index", str(wheel)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    site = Path(_run_python(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])"))
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_test_dependencies.pth").write_text("\n".join(sorted(outer)) + "\n")
    env = {**os.environ, "PYG_EDGE_CACHE": str(root / "cache"), **home_env(root / "home")}
    env.pop("PYTHONPATH", None)
    bin_dir = python.parent
    return {"python": python, "site": site, "env": env, "cwd": root, "cache": root / "cache",
            "pyg_edge": bin_dir / ("pyg-edge.exe" if os.name == "nt" else "pyg-edge")}


def _ignored(folder, names):
    return [n for n in names if n == "__pycache__" or n.endswith(".pyc")]


def _run_python(python, code, **kwargs) -> str:
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                            timeout=60, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_wheel_ships_the_demo_as_plain_files_and_stays_small(wheel):
    assert wheel.stat().st_size < MAX_WHEEL_BYTES
    with zipfile.ZipFile(wheel) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    for name in SHIPPED:
        assert name in infos, name
        assert not stat.S_ISLNK(infos[name].external_attr >> 16), f"{name} is a link"
    assert infos["pyg_edge/demo_data/pyg-demo-neo/tokenizer.json"].file_size > 1_000_000
    assert not any(name.startswith(("models/", "tests/")) for name in infos)


def test_the_installed_package_is_the_wheels_not_the_checkout(installed):
    where = _run_python(installed["python"],
                        "import pyg_edge.demo as d; print(d.DEMO_CHECKPOINT)",
                        cwd=installed["cwd"], env=installed["env"])
    assert Path(where).is_relative_to(installed["site"])
    assert not Path(where).is_relative_to(REPO.resolve())


def test_chat_from_the_wheel_answers_piped_messages(installed):
    shipped = sorted(p.name for p in (installed["site"] / "pyg_edge" / "demo_data").rglob("*"))
    result = subprocess.run(
        [str(installed["pyg_edge"]), "chat", "--temperature", "0", "--max-new-tokens", "30"],
        input="Hello!\nWhat do you like to do?\n", capture_output=True, text=True,
        cwd=installed["cwd"], env=installed["env"], timeout=300)
    assert result.returncode == 0, result.stderr
    replies = [line for line in result.stdout.splitlines() if line.startswith("Robin: ")]
    assert len(replies) == 3, result.stdout  # the greeting, then one reply per message
    assert all(len(reply) > len("Robin: ") for reply in replies)
    converted = list(installed["cache"].glob("pyg-demo-neo-int8-*/pyg_edge.json"))
    assert len(converted) == 1
    after = sorted(p.name for p in (installed["site"] / "pyg_edge" / "demo_data").rglob("*"))
    assert after == shipped  # nothing was written into the installed package


def test_serve_from_the_wheel_answers_a_generate_request(installed):
    port = free_port()
    server = subprocess.Popen(
        [str(installed["pyg_edge"]), "serve", "--port", str(port)], cwd=installed["cwd"],
        env=installed["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = {"prompt": "Robin's Persona: a friendly companion.\n<START>\nYou: Hi!\nRobin:",
                "max_length": 20, "temperature": 0.01}
        status, reply = _post_when_up(port, "/api/v1/generate", body, server)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert status == 200, output
    assert reply["results"][0]["text"].strip(), reply


def _post_when_up(port, path, body, server, timeout=120.0):
    """POSTs once the server listens; the first start converts the demo model."""
    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, server.communicate()[0]
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connection.request("POST", path, body=json.dumps(body),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
