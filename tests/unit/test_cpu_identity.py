"""`pyg-edge info` names ARM machines from their recorded /proc/cpuinfo (and macOS's sysctl),
and the CPU checks' verdicts are kept apart per CPU: tests/fixtures/cpuinfo/."""

import pytest

from pyg_edge.cpu import identity, info, verdicts
from pyg_edge.cpu.identity import parse_cpuinfo, parse_sysctl
from support.paths import FIXTURES

SAMPLES = FIXTURES / "cpuinfo"


def sample(name: str, arch: str = "aarch64"):
    return parse_cpuinfo((SAMPLES / name).read_text(encoding="utf-8"), arch)


@pytest.mark.parametrize("name, core, cores, board, features", [
    ("raspberry-pi-5.txt", "Cortex-A76", ("0x41:0xd0b:r4p1",),
     "Raspberry Pi 5 Model B Rev 1.0", "asimddp, no i8mm, no sve"),
    ("raspberry-pi-4.txt", "Cortex-A72", ("0x41:0xd08:r0p3",),
     "Raspberry Pi 4 Model B Rev 1.5", "no asimddp, no i8mm, no sve"),
    ("aws-graviton2-c6g-large.txt", "Neoverse-N1", ("0x41:0xd0c:r3p1",), "",
     "asimddp, no i8mm, no sve"),
    ("aws-graviton4-r8g-large.txt", "Neoverse-V2", ("0x41:0xd4f:r0p1",), "",
     "asimddp, i8mm, sve"),
    ("ampere-altra-q80-30.txt", "Neoverse-N1", ("0x41:0xd0c:r3p1",), "",
     "asimddp, no i8mm, no sve"),
    ("rockchip-rk3588.txt", "4x Cortex-A55 + 4x Cortex-A76",
     ("0x41:0xd05:r2p0", "0x41:0xd0b:r4p0"), "", "asimddp, no i8mm, no sve"),
])
def test_arm_cpus_are_named_from_their_midr_and_features(name, core, cores, board, features):
    cpu = sample(name)
    assert (cpu.name, cpu.vendor, cpu.cores, cpu.board) == (core, "ARM", cores, board)
    assert cpu.int8_features() == features
    assert info.cpu_rows(cpu)[2] == ("isa", features)


def test_the_cpu_line_reads_as_a_user_would_paste_it():
    assert sample("raspberry-pi-5.txt").describe() == (
        "Cortex-A76 (ARM; 0x41:0xd0b:r4p1), Raspberry Pi 5 Model B Rev 1.0")
    assert sample("aws-graviton2-c6g-large.txt").describe() == "Neoverse-N1 (ARM; 0x41:0xd0c:r3p1)"


def test_an_unknown_part_is_named_by_its_numbers():
    text = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x51\nCPU variant\t: 0x1\n" \
           "CPU part\t: 0x001\nCPU revision\t: 2\n"
    assert parse_cpuinfo(text, "aarch64").name == "Qualcomm part 0x001"
    assert parse_cpuinfo("", "aarch64").describe() == "unknown aarch64 CPU"


def test_x86_cpuinfo_keeps_vendor_model_and_flags():
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
            "model name\t: AMD EPYC 9B14\nstepping\t: 1\nflags\t\t: fpu avx2 avx512_vnni\n")
    cpu = parse_cpuinfo(text, "x86_64")
    assert cpu.describe() == "AMD EPYC 9B14 (AuthenticAMD; family 25 model 17 stepping 1)"
    assert info.cpu_rows(cpu)[2] == ("isa", "avx2 avx512_vnni")
    assert info.kernel_rows(cpu, "Linux", {}) == []


def test_apple_silicon_from_sysctl():
    cpu = parse_sysctl((SAMPLES / "apple-m2-sysctl.txt").read_text(encoding="utf-8"))
    assert (cpu.name, cpu.vendor, cpu.int8_features()) == ("Apple M2", "Apple",
                                                           "asimddp, i8mm, no sve")
    assert dict(info.kernel_rows(cpu, "Darwin", {}))["float kernels"] == "Apple Accelerate"
    assert info.extension_absent("arm64", "Darwin") == (
        "none: it is for x86-64 Linux (this is arm64 macOS)")


def test_arm_reasons_name_ruy_and_the_extension_being_x86_only():
    pi4, pi5 = sample("raspberry-pi-4.txt"), sample("raspberry-pi-5.txt")
    assert dict(info.kernel_rows(pi5, "Linux", {})) == {
        "int8 kernels": "Ruy, NEON dot-product kernels (asimddp)", "float kernels": "OpenBLAS"}
    assert "plain NEON" in dict(info.kernel_rows(pi4, "Linux", {}))["int8 kernels"]
    forced = dict(info.kernel_rows(pi5, "Linux", {"RUY_PATHS": "0x10",
                                                  "OPENBLAS_CORETYPE": "NEOVERSEN1"}))
    assert "RUY_PATHS=0x10" in forced["int8 kernels"]
    assert forced["float kernels"].startswith("OpenBLAS (OPENBLAS_CORETYPE=NEOVERSEN1")
    absent = info.extension_absent("aarch64", "Linux")
    assert "compiler" not in absent and "x86-64 Linux" in absent
    assert info.extension_absent("x86_64", "Linux") == "not built (no C compiler at install)"
    assert "x86" in info.glibc_copies("aarch64", "Linux")


def test_a_verdict_cache_shared_between_boards_is_not_reused(monkeypatch, tmp_path):
    """An SD card moved from a Raspberry Pi 4 to a 5: the Pi 4's verdict (no dot product)
    must not stand for the Pi 5, whose Ruy runs other kernels."""
    monkeypatch.setattr(verdicts, "cache_dir", lambda: tmp_path)
    runs = []
    monkeypatch.setattr(verdicts, "run_check",
                        lambda module, args: runs.append(module) or {"ok": True})
    no_flags = identity.CpuIdentity("aarch64")  # gemm_backend's x86 fields are empty on ARM
    for board in ("raspberry-pi-4.txt", "raspberry-pi-5.txt", "raspberry-pi-5.txt"):
        monkeypatch.setattr(verdicts, "this_cpu", lambda board=board: sample(board))
        verdicts.cached_verdict("pyg_edge.cpu.path_check", ("x", "int8"),
                                _GemmCpu(no_flags), "build")
    assert len(runs) == 2  # Pi 4, Pi 5; the second Pi 5 call reads the cache


@pytest.mark.parametrize("variable", ["RUY_PATHS", "OPENBLAS_CORETYPE"])
def test_ruy_and_openblas_variables_keep_verdicts_apart(monkeypatch, variable):
    cpu = _GemmCpu(identity.CpuIdentity("aarch64"))
    plain = verdicts.cache_key("pyg_edge.cpu.path_check", ("x", "int8"), cpu, "build")
    monkeypatch.setenv(variable, "1")
    assert verdicts.cache_key("pyg_edge.cpu.path_check", ("x", "int8"), cpu, "build") != plain


def test_a_crashed_check_is_told_apart_from_an_inexact_one(monkeypatch, tmp_path):
    """Ruy's dot-product kernels on a core without them die with SIGILL: the verdict says so."""
    (tmp_path / "sigill_check.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    verdict = verdicts.run_check("sigill_check", ())
    assert verdict["ok"] is False
    assert "crashed with SIGILL (an instruction this CPU lacks)" in verdict["detail"]


class _GemmCpu:
    """gemm_backend.CpuInfo's fields as they read on ARM: no vendor, model or flags."""

    def __init__(self, cpu):
        self.vendor, self.model, self.flags = cpu.vendor, cpu.name, cpu.features
