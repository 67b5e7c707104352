"""The arm64 lane's scripts (scripts/arm64_lane*.sh; the lane itself runs in .ci/run): they
parse, say why when they cannot run, and bind a recorded cpuinfo that matches each emulated
core."""

import re
import shutil
import subprocess

import pytest

from pyg_edge.cpu.identity import parse_cpuinfo
from support.paths import FIXTURES, REPO

SCRIPTS = sorted((REPO / "scripts").glob("arm64_lane*.sh"))
LANE = REPO / "scripts" / "arm64_lane.sh"
CORES = {"neoverse-n1": "Neoverse-N1", "cortex-a76": "Cortex-A76", "cortex-a72": "Cortex-A72"}


def run_lane(**env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LANE)], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True,
                              text=True, cwd=REPO)
        assert done.returncode == 0, done.stdout


def test_a_machine_that_cannot_run_it_gets_the_reason_and_77():
    done = run_lane(ARM64_LANE="0")
    assert done.returncode == 77  # .ci/run goes on, saying the lane was skipped
    assert "arm64 lane: not run on this machine: ARM64_LANE=0" in done.stderr
    assert run_lane(QEMU_CPU="cortex-a53").returncode == 2  # no recorded cpuinfo for it


def test_each_emulated_core_gets_a_cpuinfo_of_that_core():
    """qemu-user shows the host's cpuinfo, and Ruy picks kernels from it: the bound sample
    must name the core QEMU_CPU emulates, or dot-product kernels could run without it."""
    cases = re.findall(r"^\s+([\w-]+)\) SAMPLE=(\S+) EXPECT=(\S+) ;;$", LANE.read_text(),
                       re.M)
    assert {cpu for cpu, _, _ in cases} == set(CORES)
    for qemu_cpu, sample, expected in cases:
        cpu = parse_cpuinfo((FIXTURES / "cpuinfo" / sample).read_text(), "aarch64")
        assert cpu.name == expected == CORES[qemu_cpu], qemu_cpu
