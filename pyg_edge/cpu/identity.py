"""Which CPU this is, by name, and the features that decide its int8 speed.

- Linux on x86-64: vendor, model name, family/model/stepping and flags from /proc/cpuinfo.
- Linux on 64-bit ARM: each core's MIDR fields (implementer, part, variant, revision) and
  Features from /proc/cpuinfo, named from the public part numbers (those of Linux's
  arch/arm64/include/asm/cputype.h), and the board from the Model line some kernels add
  (Raspberry Pi OS's). A big.LITTLE chip lists each kind of core.
- macOS: sysctl's brand string and hw.optional.arm.FEAT_* flags.

On ARM, CTranslate2 runs int8 products through Ruy, which has plain NEON kernels and NEON
dot-product ones (SDOT, the "asimddp" feature): the dot product roughly doubles int8
throughput. i8mm (SMMLA) and SVE are shown for the record; Ruy has no kernels for them.
"""

import functools
import hashlib
import platform
import subprocess
from collections import Counter
from dataclasses import dataclass, field

# The ARM features that decide int8 speed, in the order `pyg-edge info` shows them.
ARM_INT8_FEATURES = ("asimddp", "i8mm", "sve")
IMPLEMENTERS = {0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu",
                0x48: "HiSilicon", 0x4E: "NVIDIA", 0x51: "Qualcomm", 0x61: "Apple",
                0xC0: "Ampere"}
# (implementer, part) -> core name; Ampere's Altra reports ARM's own Neoverse-N1.
PARTS = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77", (0x41, 0xD40): "Neoverse-V1", (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD44): "Cortex-X1", (0x41, 0xD46): "Cortex-A510", (0x41, 0xD47): "Cortex-A710",
    (0x41, 0xD48): "Cortex-X2", (0x41, 0xD49): "Neoverse-N2", (0x41, 0xD4B): "Cortex-A78C",
    (0x41, 0xD4D): "Cortex-A715", (0x41, 0xD4E): "Cortex-X3", (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD80): "Cortex-A520", (0x41, 0xD81): "Cortex-A720", (0x41, 0xD82): "Cortex-X4",
    (0x41, 0xD84): "Neoverse-V3", (0x41, 0xD8E): "Neoverse-N3",
    (0x46, 0x001): "A64FX", (0x61, 0x022): "Apple M1 Icestorm",
    (0x61, 0x023): "Apple M1 Firestorm", (0xC0, 0xAC3): "AmpereOne",
}
MIDR_FIELDS = {"CPU implementer": "implementer", "CPU part": "part",
               "CPU variant": "variant", "CPU revision": "revision"}
# macOS's names for the features above (sysctl hw.optional.arm.*).
SYSCTL_FEATURES = {"FEAT_DotProd": "asimddp", "FEAT_I8MM": "i8mm", "FEAT_SVE": "sve",
                   "FEAT_SME": "sme", "FEAT_BF16": "bf16"}
SYSCTL_KEYS = ("machdep.cpu.brand_string", "hw.ncpu", "hw.optional.arm")


@dataclass(frozen=True)
class CpuIdentity:
    """What names a CPU: enough to tell two machines' int8 kernels apart.

    Attributes:
      arch: "x86_64", "aarch64", or what the OS calls it.
      name: The core or model name ("Cortex-A76", "4x Cortex-A55 + 4x Cortex-A76",
        "AMD EPYC 7B13", "Apple M2"), "" when unknown.
      vendor: "ARM", "Ampere", "Apple", "AuthenticAMD", ...
      cores: One entry per kind of core: "0x41:0xd0b:r4p1" on ARM (implementer, part,
        variant and revision), "family 25 model 1 stepping 1" on x86.
      features: The kernel's feature names (x86 flags, ARM Features).
      board: The board's model where the system says it ("Raspberry Pi 5 Model B Rev 1.0").
    """

    arch: str
    name: str = ""
    vendor: str = ""
    cores: tuple = ()
    features: frozenset = field(default_factory=frozenset)
    board: str = ""

    @property
    def is_arm(self) -> bool:
        return self.arch.lower() in ("aarch64", "arm64")

    def key(self) -> str:
        """Names this CPU in cache keys: two CPUs that may pick other kernels differ."""
        features = hashlib.sha256(" ".join(sorted(self.features)).encode()).hexdigest()[:16]
        return ";".join([self.arch, self.vendor, self.name, ",".join(self.cores), features])

    def describe(self) -> str:
        """One line: the name, its identification, and the board."""
        name = self.name or f"unknown {self.arch} CPU"
        ids = ", ".join(self.cores)
        vendor = f"{self.vendor}; {ids}" if ids and self.vendor else self.vendor or ids
        line = f"{name} ({vendor})" if vendor else name
        return f"{line}, {self.board}" if self.board else line

    def int8_features(self) -> str:
        """ARM: each of asimddp, i8mm, sve, present or not ("" elsewhere)."""
        if not self.is_arm:
            return ""
        return ", ".join(name if name in self.features else f"no {name}"
                         for name in ARM_INT8_FEATURES)


def parse_cpuinfo(text: str, arch: str) -> CpuIdentity:
    """A CpuIdentity from the text of Linux's /proc/cpuinfo."""
    blocks = [dict(_fields(block)) for block in text.split("\n\n") if block.strip()]
    if arch.lower() in ("aarch64", "arm64"):
        return _arm_identity(blocks, arch)
    first = next((b for b in blocks if "vendor_id" in b), {})
    core = " ".join(f"{label} {first[key]}" for key, label in
                    (("cpu family", "family"), ("model", "model"), ("stepping", "stepping"))
                    if key in first)
    return CpuIdentity(arch, first.get("model name", ""), first.get("vendor_id", ""),
                       (core,) if core else (), frozenset(first.get("flags", "").split()))


def parse_sysctl(text: str, arch: str = "arm64") -> CpuIdentity:
    """A CpuIdentity from `sysctl machdep.cpu.brand_string hw.ncpu hw.optional.arm` (macOS)."""
    values = dict(_fields(text))
    name = values.get("machdep.cpu.brand_string", "")
    features = {ours for key, ours in SYSCTL_FEATURES.items()
                if values.get(f"hw.optional.arm.{key}") == "1"}
    vendor = "Apple" if name.startswith("Apple") else ""
    return CpuIdentity(arch, name, vendor, (), frozenset(features))


@functools.cache
def this_cpu() -> CpuIdentity:
    """This machine's CpuIdentity, read once per process (unknown fields stay empty)."""
    arch = platform.machine() or "unknown"
    if platform.system() == "Darwin":
        return parse_sysctl(_sysctl(), arch)
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return parse_cpuinfo(f.read(), arch)
    except OSError:
        return CpuIdentity(arch, platform.processor())


def _arm_identity(blocks: list, arch: str) -> CpuIdentity:
    cores, features, board = Counter(), set(), ""
    for block in blocks:
        board = block.get("Model", board)
        midr = {ours: block[theirs] for theirs, ours in MIDR_FIELDS.items() if theirs in block}
        if "implementer" in midr and "part" in midr:
            cores[_midr(midr)] += 1
            features |= set(block.get("Features", "").split())
    names = [(_core_name(core), count) for core, count in cores.items()]
    kinds = len(names)
    name = " + ".join(f"{count}x {core}" if kinds > 1 else core
                      for core, count in sorted(names, key=lambda n: n[0]))
    vendors = sorted({IMPLEMENTERS.get(_int(c.split(":")[0]), c.split(":")[0]) for c in cores})
    return CpuIdentity(arch, name, "/".join(vendors), tuple(sorted(cores)), frozenset(features),
                       board)


def _midr(midr: dict) -> str:
    variant, revision = _int(midr.get("variant", "")), _int(midr.get("revision", ""))
    step = f"r{variant}p{revision}" if variant is not None and revision is not None else "r?p?"
    return f"{midr['implementer'].lower()}:{midr['part'].lower()}:{step}"


def _core_name(core: str) -> str:
    implementer, part, _ = core.split(":")
    known = PARTS.get((_int(implementer), _int(part)))
    return known or f"{IMPLEMENTERS.get(_int(implementer), implementer)} part {part}"


def _int(text: str):
    try:
        return int(text, 0)
    except ValueError:
        return None


def _fields(text: str):
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            yield name.strip(), value.strip()


def _sysctl() -> str:
    try:
        return subprocess.run(["sysctl", *SYSCTL_KEYS], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
