"""The layout docs/architecture.md describes holds: a library an app can import without the
CLI's or the server's dependencies, short modules, and a server that uses public calls."""

import ast
import json
import subprocess
import sys

from support.paths import REPO

LIBRARY = REPO / "pyg_edge"
MAX_MODULE_LINES = 400
MAX_PYGMODEL_LINES = 250

IMPORT_AND_CHAT = """
import json, sys
import pyg_edge
from pyg_edge import demo
with pyg_edge.PygModel(demo.demo_model(), device="cpu") as model:
    text = model.generate("You: Hello!\\nRobin:", max_new_tokens=4)
print(json.dumps({name: name in sys.modules for name in ("click", "aiohttp")}))
"""


def test_the_library_runs_a_model_without_importing_click_or_aiohttp():
    done = subprocess.run([sys.executable, "-c", IMPORT_AND_CHAT], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"click": False,
                                                                "aiohttp": False}


def test_no_module_is_over_about_400_lines():
    long = {str(p.relative_to(REPO)): n for p in [*LIBRARY.rglob("*.py"),
                                                  *(REPO / "pyg_edge_convert").rglob("*.py")]
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_pygmodel_only_generates():
    tree = ast.parse((LIBRARY / "generation" / "model.py").read_text(encoding="utf-8"))
    (model,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PygModel"]
    assert model.end_lineno - model.lineno + 1 <= MAX_PYGMODEL_LINES


def test_the_server_touches_no_private_attribute_of_anything_but_itself():
    touched = []
    for path in (LIBRARY / "server").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
                touched.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert touched == []


def imported_modules(path) -> set:
    """The pyg_edge modules a file imports (absolute imports, as the project writes them)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("pyg_edge")}


def test_generation_imports_nothing_from_chat_or_the_server():
    """generation/ takes a neutral request (ModelInput); prompt formats are chat/'s."""
    upward = {f"{path.name}: {name}" for path in (LIBRARY / "generation").glob("*.py")
              for name in imported_modules(path)
              if name.startswith(("pyg_edge.chat", "pyg_edge.server", "pyg_edge.cli"))}
    assert upward == set()


API_MODULES = ("kobold", "koboldcpp", "openai", "llamacpp", "textgen", "webchat")


def test_no_api_module_imports_another():
    """Each API's routes read bodies through server/parsing, never through another API's
    module (a change to the OpenAI body once changed llama.cpp's route)."""
    crossings = []
    for name in API_MODULES:
        tree = ast.parse((LIBRARY / "server" / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = {node.module.rpartition(".")[2]} | {a.name for a in node.names}
                crossings += [f"{name} -> {other}" for other in API_MODULES
                              if other != name and other in imported
                              and node.module.startswith("pyg_edge.server")]
    assert crossings == []
