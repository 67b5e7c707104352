#!/usr/bin/env bash
# The arm64 lane: pyg-edge as a user on 64-bit ARM Linux gets it, checked under emulation.
#
#   scripts/arm64_lane.sh            (as root, on x86-64 Debian or Ubuntu; or on arm64 Linux)
#
# Makes a Debian bookworm arm64 userland (debootstrap, minbase: python3 and python3-venv only)
# run by qemu-user through binfmt_misc, copies this checkout into it, and runs
# scripts/arm64_lane_inside.sh there: the wheel built there and installed with PyPI's aarch64
# wheels (fetched by this machine's pip, which is minutes faster than pip under emulation),
# `pyg-edge info`, the demo chat (the same greedy text as on x86-64), a test checkpoint converted
# (byte-identical to x86-64's), a `serve` request, `pyg-edge bench`, the unit and runtime
# test lanes. On an arm64 machine the inside script runs natively instead.
#
# Emulation proves behaviour, not speed: figures come from `pyg-edge bench` on real boards.
#
# Exit status: 0 passed; 77 this machine cannot run the lane (the reason is printed: not
# root, no binfmt_misc, packages that cannot be installed or fetched); anything else failed.
#
# Environment: ARM64_LANE=0 skips it; QEMU_CPU (neoverse-n1, cortex-a76 or cortex-a72) picks
# the emulated core, and the recorded /proc/cpuinfo of a machine with that core is bound over
# the chroot's (qemu-user shows the host's, and Ruy reads it to pick its kernels: a wrong one
# runs dot-product instructions on a core without them, SIGILL); ARM64_MIRROR, the Debian
# mirror (default: this machine's apt source); ARM64_LANE_KEEP=1 keeps the chroot.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SKIP=77
STARTED=$SECONDS
export QEMU_CPU=${QEMU_CPU:-neoverse-n1}

skip() { echo "arm64 lane: not run on this machine: $*" >&2; exit "$SKIP"; }
minutes() { printf '%d min %02d s' "$(($1 / 60))" "$(($1 % 60))"; }

case "$QEMU_CPU" in
    neoverse-n1) SAMPLE=aws-graviton2-c6g-large.txt EXPECT=Neoverse-N1 ;;
    cortex-a76) SAMPLE=raspberry-pi-5.txt EXPECT=Cortex-A76 ;;
    cortex-a72) SAMPLE=raspberry-pi-4.txt EXPECT=Cortex-A72 ;;
    *) echo "arm64 lane: QEMU_CPU=$QEMU_CPU has no recorded cpuinfo (neoverse-n1, cortex-a76," \
            "cortex-a72)" >&2; exit 2 ;;
esac

[ "${ARM64_LANE:-1}" != 0 ] || skip "ARM64_LANE=0"
[ "$(uname -s)" = Linux ] || skip "it needs Linux (this is $(uname -s))"

copy_checkout() {  # tracked and untracked files, not ignored ones (no venv, no x86 build)
    mkdir -p "$1"
    (cd "$REPO" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$1"
}

if [ "$(uname -m)" = aarch64 ]; then  # real ARM: no emulation, no chroot
    work=$(mktemp -d)
    copy_checkout "$work/src"
    LANE_WORK="$work/lane" LANE_EXPECT_CPU="" "$REPO/scripts/arm64_lane_inside.sh" "$work/src"
    rm -rf "$work"
    exit 0
fi
[ "$(id -u)" = 0 ] || skip "it needs root (binfmt_misc, debootstrap, chroot); run it with sudo"
# shellcheck source=scripts/arm64_lane_host.sh
. "$REPO/scripts/arm64_lane_host.sh"

install_host_packages || skip "qemu-user-static, binfmt-support and debootstrap cannot be installed"
register_binfmt || skip "$BINFMT_PROBLEM"

ROOT=$(mktemp -d /var/tmp/pyg-edge-arm64.XXXXXX)
trap 'teardown "$ROOT"' EXIT
echo "== arm64 lane: debootstrap bookworm arm64 into $ROOT (emulated $QEMU_CPU)"
make_root "$ROOT" || skip "debootstrap could not make the arm64 userland (log tail above)"
BOOTSTRAPPED=$SECONDS
prepare_root "$ROOT" "$REPO/tests/fixtures/cpuinfo/$SAMPLE"
copy_checkout "$ROOT/src"
download_wheels "$ROOT/wheels" || skip "PyPI's aarch64 wheels cannot be fetched"
x86_references "$ROOT/ref"

echo "== arm64 lane: the user's side, in the chroot ($(minutes $((SECONDS - STARTED))) so far)"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    QEMU_CPU="$QEMU_CPU" LANE_EXPECT_CPU="$EXPECT" "${REFERENCES[@]}" "${PROXIES[@]}" \
    /bin/bash /src/scripts/arm64_lane_inside.sh /src
echo "arm64 lane: passed in $(minutes $((SECONDS - STARTED))) (userland $(minutes \
$((BOOTSTRAPPED - STARTED))), the rest under emulation $(minutes $((SECONDS - BOOTSTRAPPED))))"
