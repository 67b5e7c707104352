"""The `pyg-edge` command starts itself again with glibc's copy threshold set."""

import ctypes
import json
import os
import platform
import subprocess
import sys

import pytest

from pyg_edge.cpu.copy_tuning import THRESHOLD, TUNABLE, tuned_environment

SETTING = f"{TUNABLE}={THRESHOLD:#x}"


def test_the_threshold_is_added_to_the_environment():
    assert tuned_environment({"PATH": "/bin"}, "x86_64", "Linux") == {
        "PATH": "/bin", "GLIBC_TUNABLES": SETTING}


def test_the_users_other_tunables_are_kept():
    environment = tuned_environment({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"},
                                    "x86_64", "Linux")
    assert environment["GLIBC_TUNABLES"] == f"glibc.malloc.tcache_count=0:{SETTING}"


@pytest.mark.parametrize("environ, machine, system", [
    ({"GLIBC_TUNABLES": SETTING}, "x86_64", "Linux"),  # already started tuned: no loop
    ({"GLIBC_TUNABLES": f"{TUNABLE}=0x100000"}, "x86_64", "Linux"),  # the user's own value
    ({"PYG_EDGE_CPU_TUNING": "0"}, "x86_64", "Linux"),
    ({}, "aarch64", "Linux"),
    ({}, "x86_64", "Darwin"),
])
def test_nothing_changes_where_it_does_not_apply(environ, machine, system):
    assert tuned_environment(environ, machine, system) is None


def run_command(*args, **environment):
    """`pyg-edge ARGS` as its console script starts it, in a child process."""
    code = "from pyg_edge.launcher import run; run()"
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    return subprocess.run([sys.executable, "-c", code, *args], env={**env, **environment},
                          capture_output=True, text=True, timeout=300, check=True).stdout


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="glibc's x86 copy tunable")
def test_the_command_runs_under_the_threshold_it_set():
    tuned = run_command("info")
    assert f"non-temporal stores from {THRESHOLD:#x} bytes" in tuned
    untuned = run_command("info", PYG_EDGE_CPU_TUNING="0")
    assert "glibc copies:" in untuned and "glibc's default" in untuned
    assert "cache copies:      left to glibc (its non-temporal threshold was set" in tuned
    assert "cache copies:      left to glibc (PYG_EDGE_CPU_TUNING=0)" in untuned


IN_PROCESS_CHILD = """
import ctypes, json, os, sys
from pyg_edge.cpu import copy_tuning, gemm_backend, prepare
prepare()
from pyg_edge import PygModel, SamplingOptions
greedy = SamplingOptions(temperature=0, banned=(), max_new_tokens=40)
prompt = "You: Tell me about the sea, the ships and the harbour.\\nAqua:"
with PygModel(sys.argv[1], device="cpu") as model:
    before = [model.generate(prompt, greedy) for _ in range(2)]
copies = copy_tuning.install_copy(os.environ, threshold=64)  # as prepare() did, far lower
shim = ctypes.CDLL(str(gemm_backend.shim_path()))
with PygModel(sys.argv[1], device="cpu") as model:
    after = model.generate(prompt, greedy)
print(json.dumps({"before": before, "after": after, "copies": copies,
                  "count": shim.pyg_nt_copy_count()}))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="pyg-edge's streaming copy is built for x86-64 Linux")
def test_an_app_process_streams_ctranslate2s_large_copies_and_the_text_is_the_same(converted):
    """A plain process (no GLIBC_TUNABLES): prepare() points CTranslate2's memcpy/memmove at
    pyg-edge's copy; with the threshold lowered to 64 bytes the cache copies of the tiny
    model reach it, and greedy text is what glibc's copies gave."""
    folder = converted("neo_w16_safetensors_f32", "int8")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", IN_PROCESS_CHILD, str(folder)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "streamed from 0x20000 bytes by pyg-edge" in result["copies"]  # prepare()'s
    assert result["count"] > 0 and result["after"] == result["before"][0] == result["before"][1]


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="pyg-edge's streaming copy is built for x86-64 Linux")
@pytest.mark.parametrize("threshold", [64, 4096, THRESHOLD])
def test_the_streaming_copy_leaves_every_byte_as_memmove_does(threshold):
    from pyg_edge.cpu.gemm_backend import shim_path

    shim = ctypes.CDLL(str(shim_path()))
    shim.pyg_nt_copy_check.argtypes = [ctypes.c_size_t]
    assert shim.pyg_nt_copy_check(threshold) == 0
