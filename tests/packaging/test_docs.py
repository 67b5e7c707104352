"""The commands the README and docs/ show, run as shown against the demo model.

Each command runs verbatim with bash in a fresh folder laid out as the docs assume: the
checkpoint at ~/models/pygmalion-2.7b (and SRC), a converted model at
models/converted/pygmalion-2.7b (and MODEL), the cards Aqua.png and card.json, a chat
chat.jsonl; all of them are the demo's. What cannot run here is named in NOT_RUN with the
reason, and a command that is neither run nor named there fails the test, so a new
command in the docs cannot drift unseen.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pyg_edge import demo
from pyg_edge_convert import convert_checkpoint
from support.cards import TAVERN_V1, b64, png_with_text
from support.paths import REPO, home_env
from support.server_harness import free_port

ROOT = REPO
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Command prefixes not run here, and why.
NOT_RUN = {
    "python3 -m venv": "the README's install line: .ci/run and test_wheel.py run it",
    "pip install": "installs: .ci/run and tests/packaging/test_wheel.py install the package",
    "python benchmarks/": "benchmarks take minutes to hours on the 2.7B shape",
    "python scripts/sillytavern_check.py": "needs a SillyTavern checkout, Node.js, Chromium",
}
CONVERTED_NAMES = ("models/converted/pygmalion-2.7b", "MODEL")
CHAT_JSONL = ('{"user_name":"You","character_name":"Aqua"}\n'
              '{"name":"Aqua","is_user":false,"mes":"Hello! Are you new here?"}\n')


def fenced(language: str) -> list:
    """(page, block text) of every ```language block in the pages."""
    pattern = re.compile(rf"^```{language}\n(.*?)^```", re.S | re.M)
    return [(page.name, block) for page in PAGES
            for block in pattern.findall(page.read_text(encoding="utf-8"))]


def commands() -> list:
    return [(page, line.strip()) for page, block in fenced("bash")
            for line in block.splitlines() if line.strip()]


def runnable() -> list:
    return [(page, command) for page, command in commands()
            if not any(command.startswith(prefix) for prefix in NOT_RUN)]


def test_every_command_is_run_or_named():
    shown = commands()
    assert len(shown) >= 10
    for page, command in shown:
        assert command.startswith(("pyg-edge ", "printf ", *NOT_RUN)), (page, command)


@pytest.fixture(scope="module")
def converted_demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs") / "converted"
    convert_checkpoint(str(demo.DEMO_CHECKPOINT), str(folder), "int8")
    return folder


def sandbox(root: Path, converted: Path, command: str) -> dict:
    """Lays out root as the docs assume; returns the environment to run command in."""
    (root / "models" / "converted").mkdir(parents=True)
    (root / "models" / "pygmalion-2.7b").symlink_to(demo.DEMO_CHECKPOINT)
    (root / "SRC").symlink_to(demo.DEMO_CHECKPOINT)
    if not command.startswith("pyg-edge convert"):  # convert makes its destination
        for name in CONVERTED_NAMES:
            (root / name).symlink_to(converted)
    (root / "Aqua.png").write_bytes(png_with_text({"chara": b64(TAVERN_V1)}))
    (root / "card.json").write_text(json.dumps(TAVERN_V1), encoding="utf-8")
    (root / "chat.jsonl").write_text(CHAT_JSONL, encoding="utf-8")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, **home_env(root), "PATH": path,
            "PYG_EDGE_CACHE": str(root / "cache"), "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("page, command", runnable())
def test_a_shown_command_runs_against_the_demo(page, command, converted_demo, tmp_path):
    env = sandbox(tmp_path, converted_demo, command)
    if command.startswith("pyg-edge serve"):
        return serve_and_probe(command, env, tmp_path)
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, text=True,
                            input="Hello!\n/quit\n", capture_output=True, timeout=300)
    assert result.returncode == 0, (page, command, result.stderr[-2000:])
    if command.startswith("pyg-edge convert"):
        assert any(tmp_path.glob("**/model.bin"))


def serve_and_probe(command: str, env: dict, cwd: Path) -> None:
    """Starts the server as shown (on a free port), waits for its chat page, stops it."""
    port = free_port()
    code = command.split("  #")[0] + f" --port {port}"
    server = subprocess.Popen(["bash", "-c", f"exec {code}"], cwd=cwd, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200 and b"pyg-edge" in page.read()
                return
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"{command}: no answer in 120 s"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_python_example_runs_against_the_demo(converted_demo, tmp_path):
    (example,) = [block for page, block in fenced("python") if page == "README.md"]
    env = sandbox(tmp_path, converted_demo, "python")
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=env,
                            text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() and (tmp_path / "aqua.jsonl").exists()


EMBEDDING_EXAMPLES = [block for page, block in fenced("python") if page == "embedding.md"]


@pytest.mark.parametrize("example", EMBEDDING_EXAMPLES, ids=["gui", "asyncio"])
def test_the_embedding_examples_run_against_the_demo(converted_demo, tmp_path, example):
    env = sandbox(tmp_path, converted_demo, "python")
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=env,
                            text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    if "Window" in example:  # the load's phases, the reply, its end, the history
        assert "[checking the CPU path]" in out and "[ready 100%]" in out
        assert "[reply ended: " in out and "messages" in out
    else:
        assert re.search(r"\[(stop|length), \d+ tokens\]", out)
