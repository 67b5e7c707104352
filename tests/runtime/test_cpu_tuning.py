"""The CPU settings applied at load: what is picked, the user's override, and exactness."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pyg_edge.cpu.tuning import CpuTuning, choose_cpu_tuning
from support.paths import FIXTURES, REPO

LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's mallopt is Linux-only")


def in_child(env: dict, code: str = "") -> dict:
    """Applies the automatic settings in a fresh process, runs code; returns `result`."""
    script = textwrap.dedent("""
        import json
        from pyg_edge.cpu.tuning import apply_cpu_tuning, choose_cpu_tuning
        result = {"keep_heap": apply_cpu_tuning(choose_cpu_tuning()).keep_heap}
    """) + textwrap.dedent(code) + "\nprint(json.dumps(result))\n"
    clean = {k: v for k, v in os.environ.items() if k != "PYG_EDGE_CPU_TUNING"}
    out = subprocess.run([sys.executable, "-c", script], env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_only_glibc_linux_keeps_the_heap():
    assert choose_cpu_tuning("Darwin") == CpuTuning(keep_heap=False)
    assert choose_cpu_tuning("Windows") == CpuTuning(keep_heap=False)


@LINUX_ONLY
def test_linux_keeps_freed_memory_unless_the_user_turns_it_off():
    assert in_child({}) == {"keep_heap": True}
    assert in_child({"PYG_EDGE_CPU_TUNING": "0"}) == {"keep_heap": False}


def test_the_chosen_settings_stay_exact(converted):
    """float32 logits under this machine's automatic settings still match transformers."""
    folder = converted("neo_w16_safetensors_f32")
    result = in_child({}, f"""
        import sys
        sys.path.insert(0, {str(REPO / "benchmarks")!r})  # scoring.py is not in the package
        import ctranslate2, numpy as np
        from scoring import scoring_generator
        ref = np.load({str(FIXTURES / "reference_neo_w16_safetensors_f32.npz")!r})
        model = scoring_generator({str(folder)!r}, ctranslate2, device="cpu",
                                  compute_type="float32")
        logits = np.array(model.forward_batch([ref["prompt"].tolist()]))[0]
        result["diff"] = float(np.abs(logits - ref["logits"]).max())
    """)
    assert result["diff"] < 1e-3


@LINUX_ONLY
def test_the_kept_heap_is_not_trimmed_even_past_two_gigabytes_free():
    """glibc's largest positive trim threshold (2 GB) still gave a freed model back to the
    system, so its reload and the next pass faulted every page in again."""
    result = in_child({}, """
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p
        libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
        libc.sbrk.argtypes = [ctypes.c_ssize_t]
        block = libc.malloc(5 * 2**29)  # 2.5 GB of address space, never touched
        grown = libc.sbrk(0)
        libc.free(block)
        result["kept"] = libc.sbrk(0) == grown and block is not None
    """)
    assert result == {"keep_heap": True, "kept": True}
