"""The `pyg-edge` command starts itself again with glibc's copy threshold set."""

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
    assert "cache copies:" in untuned and "glibc's default" in untuned
