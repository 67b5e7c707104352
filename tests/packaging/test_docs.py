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
import shutil
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
GUI_DRIVER = ROOT / "tests" / "support" / "gui_drive.py"
STEP_S = 0.3  # a generation step in the GUI runs: the 2.7B's pace, so Stop lands mid-reply


def embedding_example(marker: str) -> str:
    (example,) = [block for block in EMBEDDING_EXAMPLES if marker in block]
    return example


def test_every_embedding_example_is_run_here():
    kinds = [next((kind for kind, marker in EXAMPLE_KINDS.items() if marker in block), None)
             for block in EMBEDDING_EXAMPLES]
    assert sorted(kinds) == sorted(EXAMPLE_KINDS), kinds


EXAMPLE_KINDS = {"tk": "import tkinter", "qt": "from PySide6", "asyncio": "asyncio.run(",
                 "windows": "model.waiting"}


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """A cache folder holding the converted demo model, converted once for the module."""
    folder = tmp_path_factory.mktemp("demo-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYG_EDGE_CACHE", str(folder))
        demo.demo_model()
    return folder


def embedding_sandbox(tmp_path, converted_demo, demo_cache) -> dict:
    """sandbox(), with pyg_edge.demo_model() finding the demo already converted."""
    env = sandbox(tmp_path, converted_demo, "python")
    (tmp_path / "cache").mkdir()
    for model in demo_cache.iterdir():
        (tmp_path / "cache" / model.name).symlink_to(model)
    return env


@pytest.mark.parametrize("kind", ["asyncio", "windows"])
def test_the_headless_embedding_examples_run_against_the_demo(
        converted_demo, demo_cache, tmp_path, kind):
    env = embedding_sandbox(tmp_path, converted_demo, demo_cache)
    result = subprocess.run([sys.executable, "-c", embedding_example(EXAMPLE_KINDS[kind])],
                            cwd=tmp_path, env=env, text=True, capture_output=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    if kind == "asyncio":
        assert re.search(r"\[(stop|length), \d+ tokens\]", result.stdout)
    else:  # both windows replied; one waited while the other's reply ran
        assert re.search(r"^Robin: \S", result.stdout, re.M), result.stdout
        assert re.search(r"^Aqua: \S", result.stdout, re.M), result.stdout
        # 1 unless one reply ended before the other window's thread asked for its turn
        assert re.search(r"^at most [01] queued$", result.stdout, re.M)


@pytest.fixture(scope="module")
def display():
    """An X display for the Tk example: $DISPLAY, else an Xvfb started for the module."""
    pytest.importorskip("tkinter", reason="no tkinter (Debian: apt-get install python3-tk)")
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("no display and no Xvfb to make one (Debian: apt-get install xvfb)")
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0",
                               "1024x768x24", "-nolisten", "tcp"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as number:
        name = f":{number.readline().strip()}"
    try:
        yield name
    finally:
        server.terminate()
        server.wait(timeout=30)


def drive_gui(kind, env, cwd, model="-") -> dict:
    """Runs docs/embedding.md's kind (tk, qt) window under gui_drive.py; what it saw."""
    (cwd / "chat_app.py").write_text(embedding_example(EXAMPLE_KINDS[kind]), encoding="utf-8")
    result = subprocess.run([sys.executable, str(GUI_DRIVER), kind, model, str(STEP_S)],
                            cwd=cwd, env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "main loop" not in result.stderr, \
        result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def gui_env(kind, tmp_path, converted_demo, demo_cache, request) -> dict:
    env = embedding_sandbox(tmp_path, converted_demo, demo_cache)
    if kind == "tk":
        return {**env, "DISPLAY": request.getfixturevalue("display")}
    pytest.importorskip("PySide6", reason="no PySide6 (pip install PySide6_Essentials): the "
                        "Qt example is compiled by test_every_embedding_example_compiles only")
    return {**env, "QT_QPA_PLATFORM": "offscreen"}


@pytest.mark.parametrize("kind", ["tk", "qt"])
def test_the_gui_examples_stop_and_close_mid_reply(kind, converted_demo, demo_cache,
                                                    tmp_path, request):
    seen = drive_gui(kind, gui_env(kind, tmp_path, converted_demo, demo_cache, request),
                     tmp_path)
    assert seen["loaded_log"].startswith("Robin: Hi!")  # the greeting, once loaded
    assert seen["stop_s"] < 1.0  # Stop gave the window back at once
    assert "stopped" in seen["status"]
    assert seen["closed_mid_reply"]
    assert seen["worker_ended_s"] < 10 * STEP_S  # the process ends: no hang on close
    assert seen["log"].count("Robin: ") == 3  # the greeting and two replies, in order
    assert seen["log"].index("the sea.") < seen["log"].index("mountains?")


@pytest.mark.parametrize("kind", ["tk", "qt"])
def test_the_gui_examples_show_a_load_error(kind, converted_demo, demo_cache, tmp_path,
                                            request):
    env = gui_env(kind, tmp_path, converted_demo, demo_cache, request)
    seen = drive_gui(kind, env, tmp_path, model=str(tmp_path / "no-such-model"))
    assert "cannot load the model" in seen["status"][-1]
    assert "no-such-model is not a folder" in seen["status"][-1]


def test_every_embedding_example_compiles():
    for block in EMBEDDING_EXAMPLES:
        compile(block, "embedding.md", "exec")
