"""The int8 path check (pyg_edge.cpu.path_check) and what runs when it fails.

This machine's own int8 path is exact, so the saturating kernels of the machines it is
not are forced: oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA, what it runs on an AMD Zen 3),
oneMKL capped at AVX2 (MKL_ENABLE_INSTRUCTIONS, an Intel CPU before Ice Lake), or told so
by the extension (mkl-raw:5). Each scenario runs in a child process, since the backend is
fixed when CTranslate2 loads.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pyg_edge.cpu import backend_choice, gemm_backend, path_check, verdicts
from pyg_edge.cpu.backend_choice import PATH_CHECK
from support.paths import TESTS

CPU = gemm_backend.read_cpu()
X86 = gemm_backend.is_x86()
needs_avx2 = pytest.mark.skipif(not (X86 and CPU.has(gemm_backend.AVX2_FLAGS)),
                                reason="forcing AVX2 kernels needs an x86-64 CPU with AVX2")
# Caps every library's int8 kernels at AVX2 without VNNI, whichever backend runs.
AVX2_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path / "cache"))
    for name in ("CT2_USE_MKL", "PYG_EDGE_GEMM", *AVX2_KERNELS):
        monkeypatch.delenv(name, raising=False)


def run_child(code: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=TESTS, env={**os.environ, **(env or {})}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stderr": done.stderr}


def test_the_tiny_model_is_built_as_the_converter_writes_a_model():
    files = path_check.tiny_model_files(path_check.tiny_checkpoint(np.random.default_rng(1)))
    assert set(files) == {"model.bin", "config.json", "vocabulary.json"}
    assert len(files["model.bin"]) < 1_000_000  # a few hundred KB, built in about 0.1 s


def test_the_path_check_passes_what_this_process_runs():
    import ctranslate2

    for compute_type in ("int8", "float32"):
        verdict = path_check.check(ctranslate2, compute_type)
        assert verdict["ok"], verdict
        assert verdict["worst"] < 0.1  # far inside the tolerance, not just under it


def test_a_compute_type_ctranslate2_lacks_fails_with_the_reason():
    import ctranslate2

    verdict = path_check.check(ctranslate2, "bfloat16" if "bfloat16" not in
                               ctranslate2.get_supported_compute_types("cpu") else "int4")
    assert verdict["ok"] is False


@needs_avx2
@pytest.mark.parametrize("backend, env", [
    ("onednn", {"ONEDNN_MAX_CPU_ISA": "AVX2"}),  # oneDNN as on an AMD Zen 3
    pytest.param("mkl", {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, marks=pytest.mark.skipif(
        CPU.vendor != "GenuineIntel", reason="oneMKL picks its kernels itself on Intel")),
    pytest.param("mkl-raw:5", {}, marks=pytest.mark.skipif(
        not gemm_backend.shim_path(), reason="needs the C extension")),
])
def test_the_path_check_fails_saturating_int8_kernels(monkeypatch, backend, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    verdict = verdicts.run_check(PATH_CHECK, (backend, "int8"))
    assert verdict["ok"] is False, verdict
    assert "saturating" in verdict["detail"]
    assert verdict["worst"] > 100  # a saturated pair is 32,003 off; the tolerance 1,024


@needs_avx2
def test_float32_passes_where_int8_saturates(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert verdicts.run_check(PATH_CHECK, ("onednn", "float32"))["ok"]


def test_verdicts_are_kept_apart_by_the_variables_that_pick_kernels(monkeypatch):
    plain = verdicts.cache_key(PATH_CHECK, ("onednn", "int8"), CPU, "build")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert verdicts.cache_key(PATH_CHECK, ("onednn", "int8"), CPU, "build") != plain


LOAD_CHILD = """
import json, logging
logging.basicConfig(level=logging.WARNING)
{before}
from pyg_edge import demo
from pyg_edge.cpu import backend_choice
from pyg_edge.errors import ModelLoadError
from pyg_edge.generation.model import PygModel
out = {{}}
with PygModel(demo.demo_model(), device="cpu", gemm={gemm!r}) as model:
    out["compute_type"] = model.compute_type
    out["int8_path"] = model.int8_path
    out["reply"] = model.generate("You: Hello!\\nRobin:", temperature=0, max_new_tokens=8)
try:
    PygModel(demo.demo_model(), device="cpu", compute_type="int8").close()
    out["explicit_int8"] = "loaded"
except ModelLoadError as error:
    out["explicit_int8"] = str(error)
with PygModel(demo.demo_model(), device="cpu", allow_inexact=True) as model:
    out["inexact_compute_type"] = model.compute_type
print(json.dumps(out))
"""
FLOAT32_CHILD = """
import json
from pyg_edge import demo
from pyg_edge.generation.model import PygModel
with PygModel(demo.demo_model(), device="cpu", compute_type="float32") as model:
    print(json.dumps({"reply": model.generate("You: Hello!\\nRobin:", temperature=0,
                                              max_new_tokens=8)}))
"""
NO_EXTENSION = "from pyg_edge.cpu import gemm_backend\ngemm_backend.shim_path = lambda: None"


def assert_exact_fallback(result: dict) -> None:
    """int8 refused, the model in an exact type, told why, int8 only when insisted on."""
    assert result["compute_type"] in backend_choice.FALLBACK_TYPES
    assert result["int8_path"]["int8_exact"] is False
    assert result["compute_type"] in result["int8_path"]["exact_types"]
    assert "saturating" in result["int8_path"]["detail"]
    assert "int8 is not exact on this CPU" in result["stderr"]
    assert "allow_inexact" in result["explicit_int8"]
    assert result["inexact_compute_type"] == "int8"
    if result["compute_type"] == "float32":  # the int8 weights' own numbers
        assert result["reply"] == run_child(FLOAT32_CHILD)["reply"]


@needs_avx2
def test_a_saturating_backend_asked_for_runs_int8_models_in_an_exact_type():
    result = run_child(LOAD_CHILD.format(before="", gemm="onednn"),
                       {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert result["int8_path"]["backend"] == "onednn"
    assert_exact_fallback(result)


@needs_avx2
def test_without_the_extension_ctranslate2s_own_path_is_checked():
    """No C compiler at install: CTranslate2's default runs, and is checked like the rest."""
    result = run_child(LOAD_CHILD.format(before=NO_EXTENSION, gemm=None), AVX2_KERNELS)
    assert result["int8_path"]["backend"] == gemm_backend.default_backend(CPU)
    assert_exact_fallback(result)


@needs_avx2
def test_ctranslate2_imported_first_is_checked_in_process():
    """An app imported ctranslate2 (another library did) before pyg-edge could choose."""
    result = run_child(LOAD_CHILD.format(before="import ctranslate2", gemm=None), AVX2_KERNELS)
    assert result["int8_path"]["backend"] == "ctranslate2 default"
    assert_exact_fallback(result)


@pytest.mark.skipif(not CPU.has(gemm_backend.VNNI_FLAGS), reason="without VNNI, "
                    "ctranslate2's own int8 saturates: the test above is that case")
def test_ctranslate2_imported_first_keeps_int8_where_it_is_exact():
    result = run_child(LOAD_CHILD.format(before="import ctranslate2", gemm=None))
    assert result["int8_path"]["backend"] == "ctranslate2 default"
    assert result["int8_path"]["int8_exact"] is True
    assert result["compute_type"] == "int8"
    assert result["explicit_int8"] == "loaded"
