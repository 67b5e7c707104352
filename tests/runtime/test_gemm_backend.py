"""The GEMM backend choice, its self-test, and exactness with the chosen backend active.

The backend is fixed per process when CTranslate2 loads, and this test process imported
ctranslate2 long ago (runs as CTranslate2 chooses), so every check of another backend runs
in a child process.
"""

import json
import os
import platform
import subprocess
import sys

import pytest

from pyg_edge.cpu import backend_choice, gemm_backend, verdicts
from pyg_edge.cpu.backend_choice import SELFTEST
from pyg_edge.cpu.gemm_backend import AVX2_FLAGS, VNNI_FLAGS, CpuInfo, plan
from pyg_edge.errors import PygEdgeError
from support.paths import CHECKPOINT_NAMES, TESTS, with_benchmarks

CPU = gemm_backend.read_cpu()
ON_X86_LINUX = platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")
needs_avx2_shim = pytest.mark.skipif(
    not (ON_X86_LINUX and gemm_backend.shim_path() and CPU.has(AVX2_FLAGS)),
    reason="needs x86-64 Linux, AVX2 and the built C extension")


def cpu(vendor="AuthenticAMD", *flags):
    return CpuInfo(vendor, "test cpu", frozenset(flags))


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CT2_USE_MKL", raising=False)
    monkeypatch.delenv("PYG_EDGE_GEMM", raising=False)


@pytest.mark.skipif(not ON_X86_LINUX, reason="the override is for x86-64 Linux")
@pytest.mark.parametrize("cpu_info, requested, expected", [
    (cpu("AuthenticAMD", *AVX2_FLAGS, *VNNI_FLAGS), "auto", "exact-vnni"),
    (cpu("AuthenticAMD", *AVX2_FLAGS, *VNNI_FLAGS), "mkl-vnni", "mkl-vnni"),
    (cpu("AuthenticAMD", *AVX2_FLAGS), "auto", "exact-avx2"),
    (cpu("AuthenticAMD", "sse4_2"), "auto", "onednn"),
    (cpu("GenuineIntel", *AVX2_FLAGS, *VNNI_FLAGS), "auto", "exact-vnni"),
    (cpu("GenuineIntel", *AVX2_FLAGS, "avx_vnni"), "auto", "mkl"),
    (cpu("GenuineIntel", *AVX2_FLAGS, "avx512f"), "auto", "exact-avx2"),  # saturating MKL
    (cpu("GenuineIntel", *AVX2_FLAGS), "exact-avx2", "exact-avx2"),
    (cpu("AuthenticAMD", *AVX2_FLAGS, *VNNI_FLAGS), "onednn", "onednn"),
    (cpu("AuthenticAMD", *AVX2_FLAGS), "mkl-vnni", "onednn"),  # the CPU cannot run it
    (cpu("AuthenticAMD", *AVX2_FLAGS), "exact-vnni", "onednn"),
    (cpu("GenuineIntel", *AVX2_FLAGS, "avx_vnni"), "exact-vnni", "mkl"),  # no AVX-512
    (cpu("HygonGenuine", *AVX2_FLAGS), "auto", "exact-avx2"),
])
def test_plan_picks_the_backend_the_cpu_can_run(cpu_info, requested, expected):
    backend, reason = plan(requested, cpu_info, shim_built=True)
    assert backend == expected
    assert reason


def test_plan_leaves_ctranslate2_alone_without_the_extension_or_when_told(monkeypatch):
    avx2 = cpu("AuthenticAMD", *AVX2_FLAGS)
    if ON_X86_LINUX:
        assert plan("auto", avx2, shim_built=False)[0] == "onednn"
        assert "not built" in plan("auto", avx2, shim_built=False)[1]
    monkeypatch.setenv("CT2_USE_MKL", "0")
    assert plan("auto", avx2, shim_built=True)[0] == "ctranslate2 default"


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(PygEdgeError, match="expected one of: auto, onednn"):
        gemm_backend.check_request("fastest")


@pytest.mark.parametrize("backend", ["onednn", "exact-vnni", "mkl-vnni", "exact-avx2"])
def test_x86_backends_are_refused_on_arm(backend):
    """CTranslate2 on ARM runs int8 through Ruy: it has no oneDNN or oneMKL to choose."""
    with pytest.raises(PygEdgeError, match="Ruy"):
        gemm_backend.check_request(backend, machine="aarch64")
    gemm_backend.check_request("auto", machine="aarch64")
    gemm_backend.check_request(backend, machine="x86_64")


@pytest.mark.parametrize("system, machine, expected", [
    ("Linux", "x86_64", "1"), ("Windows", "AMD64", None), ("Darwin", "arm64", None),
    ("Linux", "aarch64", None)])
def test_onemkl_variables_are_set_only_where_onemkl_runs_and_was_measured(
        monkeypatch, system, machine, expected):
    monkeypatch.delenv("MKL_DISABLE_FAST_MM", raising=False)
    monkeypatch.setattr(gemm_backend.platform, "system", lambda: system)
    monkeypatch.setattr(gemm_backend.platform, "machine", lambda: machine)
    gemm_backend.keep_mkl_memory_in_the_heap()
    assert os.environ.get("MKL_DISABLE_FAST_MM") == expected


@needs_avx2_shim
def test_the_selftest_passes_the_exact_avx2_backend():
    verdict = verdicts.run_check(SELFTEST, ("exact-avx2",))
    assert verdict["ok"], verdict
    assert verdict["cases"] >= 9


@needs_avx2_shim
def test_the_selftest_rejects_mkls_saturating_avx2_kernels():
    """oneMKL's AVX2 int8 kernels (CPU type 5) saturate on full-range inputs."""
    verdict = verdicts.run_check(SELFTEST, ("mkl-raw:5",))
    assert verdict["ok"] is False
    assert "outputs wrong" in verdict["detail"]


@needs_avx2_shim
def test_the_exact_vnni_selftest_passes_only_where_the_cpu_has_vnni():
    """vpdpbusd on a CPU without AVX-512 VNNI dies of SIGILL: in the self-test's process."""
    verdict = verdicts.run_check(SELFTEST, ("exact-vnni",))
    if CPU.has(VNNI_FLAGS):
        assert verdict["ok"], verdict
        assert verdict["cases"] >= 9
    else:
        assert verdict["ok"] is False
        assert "ended with code" in verdict["detail"]


@needs_avx2_shim
@pytest.mark.skipif(CPU.has(("avx512f",)), reason="this CPU runs AVX-512 kernels")
def test_a_kernel_the_cpu_cannot_run_fails_only_the_selftest_process():
    verdict = verdicts.run_check(SELFTEST, ("mkl-raw:7",))  # AVX-512 kernels on an AVX2 CPU
    assert verdict["ok"] is False
    assert "ended with code" in verdict["detail"]


def run_child(code: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=TESTS, env=with_benchmarks({**os.environ, **(env or {})}),
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


CHOICE_CHILD = """
import json
from pyg_edge import demo
from pyg_edge.cpu import backend_choice
from pyg_edge.generation.model import PygModel
model = PygModel(demo.demo_model(), device="cpu", gemm={gemm!r})
reply = model.generate("You: Hello!\\nRobin:", temperature=0, max_new_tokens=8)
choice = backend_choice.current_choice()
print(json.dumps({{"backend": choice.backend, "reason": choice.reason, "reply": reply,
                  "compute_type": model.compute_type, "exact": choice.int8_exact}}))
"""


@needs_avx2_shim
def test_the_runtime_falls_back_to_ctranslate2s_default_when_the_selftest_fails():
    result = run_child(CHOICE_CHILD.format(gemm="mkl-raw:5"))
    assert result["backend"] == gemm_backend.default_backend(CPU)
    assert "failed its self-test" in result["reason"]
    assert result["reply"]
    # Exact int8 where the default passes the path check (VNNI CPUs), a fallback where not.
    assert (result["compute_type"] == "int8") == result["exact"]


@needs_avx2_shim
def test_the_verdict_is_cached_per_cpu_and_library(tmp_path):
    cache = tmp_path / "verdicts"
    env = {"PYG_EDGE_CACHE": str(cache)}
    # exact-avx2 runs on any AVX2 CPU, where auto may pick another backend.
    first = run_child(CHOICE_CHILD.format(gemm="exact-avx2"), env)
    assert first["backend"] == "exact-avx2"
    cached = json.loads((cache / verdicts.CACHE_FILE).read_text())
    assert sorted(key.split("|")[0] for key in cached) == ["gemm_selftest", "path_check"]
    assert all(verdict["ok"] for verdict in cached.values())
    again = run_child(CHOICE_CHILD.format(gemm="exact-avx2"), env)
    assert again == first


def test_importing_ctranslate2_first_leaves_the_choice_to_ctranslate2():
    result = run_child("""
import json, logging, ctranslate2
from pyg_edge.cpu import backend_choice
backend_choice.load_ctranslate2()
choice = backend_choice.current_choice()
print(json.dumps({"backend": choice.backend, "reason": choice.reason}))
""")
    assert result["backend"] == "ctranslate2 default"
    assert "imported before" in result["reason"]


EXACTNESS_CHILD = """
import ctypes, json, sys
from pathlib import Path
from pyg_edge.cpu import backend_choice, gemm_backend
backend_choice.load_ctranslate2({gemm!r})
import numpy as np
from support.paths import reference
from support.exactness import generator, greedy, one_pass_logits, scorer
out = {{"backend": backend_choice.current_choice().backend}}
for name, folders in json.loads(sys.argv[1]).items():
    ref = reference(name)
    f32, i8 = Path(folders["float32"]), Path(folders["int8"])
    logits = one_pass_logits(scorer(f32), ref["prompt"])
    tokens = greedy(generator(f32), f32, ref["prompt"].tolist(), len(ref["greedy"]))
    int8 = one_pass_logits(scorer(i8, "int8"), ref["prompt"])
    # 1 to 8 sequences decode through the extension's multi-row kernels: each row's
    # products, so its tokens, must not depend on the rows beside it. (One-pass prompts:
    # CTranslate2's chunked prompt pass is not batch-consistent even in float32, see
    # docs/performance.md.)
    one_pass = Path(folders["int8_one_pass"])
    vocabulary = json.loads((one_pass / "vocabulary.json").read_text(encoding="utf-8"))
    model = generator(one_pass, "int8")
    length = len(ref["prompt"]) - 4  # five different rows, no padding
    prompts = [ref["prompt"].tolist()[shift:shift + length] for shift in range(5)]
    alone = [greedy(model, one_pass, p, 12) for p in prompts]
    batched = [r.sequences_ids[0] for r in model.generate_batch(
        [[vocabulary[i] for i in p] for p in prompts], max_length=12, min_length=12,
        sampling_topk=1, include_prompt_in_result=False)]
    out[name] = {{"float32_diff": float(np.abs(logits - ref["logits"]).max()),
                 "int8_rows_same": batched == alone,
                 "greedy_same": tokens == ref["greedy"].tolist(),
                 "int8_top1": float((int8.argmax(-1) == ref["logits"].argmax(-1)).mean()),
                 "int8_diff": float(np.abs(int8 - ref["logits"]).max())}}
shim = gemm_backend.shim_path()
out["shim_calls"] = ctypes.CDLL(str(shim)).pyg_mkl_shim_gemm_calls() if shim else 0
print(json.dumps(out))
"""


EXACT_BACKENDS = ["exact-avx2", pytest.param("exact-vnni", marks=pytest.mark.skipif(
    not CPU.has(VNNI_FLAGS), reason="needs AVX-512 VNNI (its refusal is tested above)"))]


@needs_avx2_shim
@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_exact_backends_keep_every_fixture_exact_and_int8_close(converted, backend):
    folders = {name: {"float32": str(converted(name, "float32")),
                      "int8": str(converted(name, "int8")),
                      "int8_one_pass": str(converted(name, "int8", prefill_chunk=0))}
               for name in CHECKPOINT_NAMES}
    code = EXACTNESS_CHILD.format(gemm=backend)
    done = subprocess.run([sys.executable, "-c", code, json.dumps(folders)], cwd=TESTS,
                          env=with_benchmarks(dict(os.environ)), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert result["shim_calls"] > 0  # CTranslate2's int8 products went through the extension
    for name in CHECKPOINT_NAMES:
        assert result[name]["float32_diff"] < 1e-3, name
        assert result[name]["greedy_same"], name
        assert result[name]["int8_top1"] >= 0.85, name
        assert result[name]["int8_rows_same"], name


INT8_CHILD = """
import json, numpy as np
from pyg_edge import demo
from pyg_edge.cpu import backend_choice
ct2 = backend_choice.load_ctranslate2({gemm!r})
from scoring import scoring_generator
from pyg_edge.generation.tokenizer import TextTokenizer
folder = demo.demo_model()
tokenizer = TextTokenizer.from_model_folder(str(folder))
text = open({text!r}, encoding="utf-8").read()[:2000]
tokens = tokenizer.tokens(tokenizer.encode(text)[:400])
def logits(path, compute_type):
    model = scoring_generator(path, ct2, device="cpu", compute_type=compute_type)
    return np.array(model.forward_batch([tokens]))[0]  # 400 tokens: past the demo's chunk
int8, f32 = logits(folder, "int8"), logits({f32!r}, "float32")
print(json.dumps({{"diff": float(np.abs(int8 - f32).max()),
                  "top1": float((int8.argmax(-1) == f32.argmax(-1)).mean())}}))
"""


@needs_avx2_shim
@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_exact_int8_stays_close_to_float32_on_the_trained_demo(tmp_path, backend):
    """Trained weights and real text: int8 products exact, only quantization differs.

    (oneDNN's int8 path on AVX2 CPUs without VNNI saturates 16-bit sums: on the project's
    AMD EPYC its logits on this text are 2.63 off float32, top-1 agreeing on 96.8% of
    tokens, where these are 0.85 and 99.5%; with the first demo 1.77 against 0.21. See
    benchmarks/int8_agreement.py.)
    """
    from pyg_edge import demo
    from pyg_edge_convert import convert_checkpoint

    f32 = tmp_path / "demo-f32"
    convert_checkpoint(str(demo.DEMO_CHECKPOINT), str(f32), "float32")
    text = TESTS.parent / "models" / "demo" / "heldout.txt"  # fixed dialogue text
    result = run_child(INT8_CHILD.format(gemm=backend, f32=str(f32), text=str(text)))
    assert result["diff"] < 1.0
    assert result["top1"] >= 0.98


MKL_MEMORY_CHILD = """
import json, os
from pyg_edge.cpu import backend_choice
backend_choice.load_ctranslate2({gemm!r})
print(json.dumps({{"backend": backend_choice.current_choice().backend,
                   "fast_mm": os.environ.get("MKL_DISABLE_FAST_MM")}}))
"""


@needs_avx2_shim
@pytest.mark.parametrize("gemm, user, expected", [
    ("exact-avx2", None, "1"), ("exact-avx2", "0", "0"), ("onednn", None, None),
    pytest.param("exact-vnni", None, "1", marks=pytest.mark.skipif(
        not CPU.has(VNNI_FLAGS), reason="needs AVX-512 VNNI"))])
def test_onemkl_memory_goes_to_the_heap_unless_the_user_says_otherwise(monkeypatch, gemm,
                                                                        user, expected):
    monkeypatch.delenv("MKL_DISABLE_FAST_MM", raising=False)
    env = {} if user is None else {"MKL_DISABLE_FAST_MM": user}
    result = run_child(MKL_MEMORY_CHILD.format(gemm=gemm), env)
    assert result == {"backend": gemm, "fast_mm": expected}


@pytest.mark.parametrize("backend, packed_env, expected", [
    (None, None, True), ("mkl-vnni", None, True), ("mkl", None, True),
    ("mkl-vnni", "0", False), ("exact-vnni", None, False), ("exact-avx2", None, False),
    ("onednn", None, False)])
def test_only_packed_loads_count_as_packing_their_weights(monkeypatch, backend, packed_env,
                                                          expected):
    choice = None if backend is None else backend_choice.GemmChoice(backend, "test")
    monkeypatch.setattr(backend_choice, "_choice", choice)
    if packed_env is None:
        monkeypatch.delenv("CT2_PACKED_GEMM", raising=False)
    else:
        monkeypatch.setenv("CT2_PACKED_GEMM", packed_env)
    assert backend_choice.packs_weights() is expected
