"""An app's process stays the app's (issue 36): by default pyg-edge leaves how the host's
freed memory goes back to the system as it was, and keeps CTranslate2's own large blocks
for reuse instead (pyg_edge.cpu.block_cache); the `pyg-edge` command keeps glibc's heap."""

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

GLIBC_X86 = pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64"
    or platform.libc_ver()[0] != "glibc",
    reason="glibc's heap settings, and the block cache built for x86-64 Linux")

FREE_A_BIG_BLOCK = """
import ctypes
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

def rss_mb():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024

block = libc.malloc(400 << 20)  # the host's own 400 MB, touched, then freed
libc.memset(block, 1, 400 << 20)
result["held_mb"] = rss_mb()
libc.free(block)
result["after_free_mb"] = rss_mb()
"""


def in_app(code: str, setup: str = "pyg_edge.cpu.prepare()", env: dict | None = None):
    """Runs code in a fresh plain python process (an app's) after setup; returns `result`."""
    script = "import json, os, pyg_edge\nresult = {}\n" + setup + "\n" + \
        textwrap.dedent(code) + "\nprint(json.dumps(result))\n"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYG_EDGE_CPU_TUNING", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", script], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


CHAT = """
from pyg_edge import PygModel, SamplingOptions
from pyg_edge.cpu import block_cache
greedy = SamplingOptions(temperature=0, banned=(), max_new_tokens=40)
with PygModel(pyg_edge.demo_model(), device="cpu") as model:
    result["texts"] = [model.generate("You: Tell me about the sea.\\nRobin:", greedy)
                       for _ in range(2)]
    result["cache"] = block_cache.stats()
prepared = pyg_edge.cpu.setup.prepared()
result["keep_heap"], result["blocks"] = prepared.keep_heap, prepared.blocks
"""


@GLIBC_X86
def test_an_apps_freed_memory_goes_back_to_the_system_after_a_chat():
    """Before: prepare() kept glibc's heap for the whole process; a host that freed 400 MB
    kept it resident."""
    result = in_app(CHAT + FREE_A_BIG_BLOCK)
    assert result["keep_heap"] is False
    assert result["held_mb"] - result["after_free_mb"] > 350


@GLIBC_X86
def test_ctranslate2s_own_blocks_are_kept_for_reuse_and_the_text_is_the_same():
    cached = in_app(CHAT)
    assert cached["blocks"].startswith("kept for reuse by pyg-edge")
    assert cached["cache"]["reused"] > 0 and cached["cache"]["mapped"] > 0
    plain = in_app(CHAT, env={"PYG_EDGE_CPU_TUNING": "0"})
    assert plain["blocks"] == "left to glibc (PYG_EDGE_CPU_TUNING=0)"
    assert plain["cache"] is None
    assert cached["texts"] == plain["texts"] and cached["texts"][0]


@GLIBC_X86
def test_an_app_that_asks_for_keep_heap_gets_glibcs_heap_and_keeps_its_freed_memory():
    result = in_app(FREE_A_BIG_BLOCK, setup="pyg_edge.cpu.prepare(keep_heap=True)\n"
                    "prepared = pyg_edge.cpu.setup.prepared()\n"
                    "result['keep_heap'], result['blocks'] = prepared.keep_heap, "
                    "prepared.blocks")
    assert result["keep_heap"] is True and result["blocks"] == "kept in glibc's heap (keep_heap)"
    assert result["held_mb"] - result["after_free_mb"] < 50  # the documented trade


@GLIBC_X86
def test_the_command_keeps_glibcs_heap():
    done = subprocess.run([sys.executable, "-c", "from pyg_edge.launcher import run; run()",
                           "info"], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("PYG_EDGE_CPU_TUNING", "GLIBC_TUNABLES")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "freed blocks:      kept in glibc's heap (keep_heap)" in done.stdout


@GLIBC_X86
def test_the_block_caches_own_check_passes():
    import ctypes

    from pyg_edge.cpu.gemm_backend import shim_path

    assert ctypes.CDLL(str(shim_path())).pyg_block_cache_check() == 0
