# shellcheck shell=bash disable=SC2034  # BINFMT_PROBLEM, PROXIES, REFERENCES: read by arm64_lane.sh
# The host's side of scripts/arm64_lane.sh (sourced by it): packages, binfmt_misc, the arm64
# userland, what it needs from this machine (DNS, CA bundle, pip's index and proxies), mounts.

PACKAGES=(qemu-user-static binfmt-support debootstrap)
BINFMT=/proc/sys/fs/binfmt_misc
MOUNTED=()
PROXIES=()
REFERENCES=()

install_host_packages() {
    if command -v debootstrap >/dev/null && command -v update-binfmts >/dev/null \
            && ls /usr/libexec/qemu-binfmt/aarch64-binfmt-P /usr/bin/qemu-aarch64-static \
               >/dev/null 2>&1; then
        return 0
    fi
    command -v apt-get >/dev/null || return 1
    echo "== arm64 lane: apt-get install ${PACKAGES[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

register_binfmt() {  # sets BINFMT_PROBLEM when it cannot
    if [ ! -e "$BINFMT/status" ] && ! mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null; then
        BINFMT_PROBLEM="binfmt_misc cannot be mounted at $BINFMT (a container without the privilege?)"
        return 1
    fi
    if [ ! -e "$BINFMT/qemu-aarch64" ]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 \
            || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    fi
    if ! grep -q '^enabled' "$BINFMT/qemu-aarch64" 2>/dev/null; then
        BINFMT_PROBLEM="qemu-aarch64 cannot be registered with binfmt_misc"
        return 1
    fi
    # F: the kernel holds the interpreter open, so it runs inside a chroot without a copy.
    if ! grep -q '^flags: .*F' "$BINFMT/qemu-aarch64"; then
        BINFMT_PROBLEM="qemu-aarch64 is registered without the F flag (qemu-user-static's own)"
        return 1
    fi
    echo "== arm64 lane: binfmt_misc runs aarch64 programs with $(awk '/^interpreter/ {print $2}' \
"$BINFMT/qemu-aarch64")"
}

debian_mirror() {  # this machine's own Debian source, so that apt's route is ours too
    local uri
    uri=$(grep -h -o -E '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/*.sources \
          2>/dev/null | head -1 | sed 's/^URIs: *//')
    echo "${ARM64_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

make_root() {
    local root=$1 log=$1.debootstrap.log proxy=""
    eval "$(apt-config shell proxy Acquire::http::Proxy 2>/dev/null)"
    if ! http_proxy=${http_proxy:-$proxy} debootstrap --arch=arm64 --variant=minbase \
            --include=python3,python3-venv bookworm "$root" "$(debian_mirror)" >"$log" 2>&1; then
        tail -n 15 "$log" >&2
        return 1
    fi
    rm -f "$log"
}

prepare_root() {  # DNS, localhost, the CA bundle and pip's settings, then the mounts
    local root=$1 cpuinfo=$2
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    pip_settings "$root"
    mount_in "$root" proc -t proc proc
    mount_in "$root" proc/cpuinfo --bind "$cpuinfo"
    mount_in "$root" sys -t sysfs -o ro sysfs
    mount_in "$root" dev --bind /dev
    mount_in "$root" dev/pts --bind /dev/pts
    mount_in "$root" dev/shm --bind /dev/shm
}

mount_in() {
    local root=$1 target=$2
    shift 2
    mount "$@" "$root/$target"
    MOUNTED=("$root/$target" "${MOUNTED[@]}")
}

pip_settings() {
    # pip in the chroot reaches PyPI as this machine's pip does: its CA bundle (a proxy may
    # sign with its own), its index URLs (file:// ones hold this machine's wheels, not
    # aarch64's: left out), its proxies.
    local root=$1 bundle key value
    bundle=$(host_pip_config global.cert)
    bundle=${PIP_CERT:-${bundle:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
    mkdir -p "$root/etc/ssl/certs"
    cp -L "$bundle" "$root/etc/ssl/certs/pyg-edge-lane-ca.crt"
    {
        echo "[global]"
        echo "cert = /etc/ssl/certs/pyg-edge-lane-ca.crt"
        echo "disable-pip-version-check = true"
        echo "timeout = ${PIP_DEFAULT_TIMEOUT:-180}"
        for key in index-url extra-index-url trusted-host; do
            value=$(host_pip_config "global.$key" | tr ' ' '\n' | { grep -v '^file:' || true; } | xargs)
            [ -z "$value" ] || echo "$key = $value"
        done
    } >"$root/etc/pip.conf"
    for key in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
               PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
        [ -z "${!key:-}" ] || PROXIES+=("$key=${!key}")
    done
}

host_pip_config() {
    python3 -m pip config get "$1" 2>/dev/null || true
}

download_wheels() {
    # PyPI's aarch64 wheels of the runtime, its server extra, pytest, hypothesis (unit tests
    # use it) and the build backend, resolved and fetched by this machine's pip: under
    # emulation the same takes minutes.
    local dest=$1 platform arguments=()
    for platform in manylinux_2_36_aarch64 manylinux_2_28_aarch64 manylinux_2_17_aarch64 \
                    manylinux2014_aarch64; do
        arguments+=(--platform "$platform")
    done
    python3 - "$REPO/pyproject.toml" >"$dest.txt" <<'EOF' || return 1
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    toml = tomllib.load(f)
project = toml["project"]
extras = project["optional-dependencies"]
hypothesis = [d for d in extras["test"] if d.startswith("hypothesis")]
print("\n".join([*project["dependencies"], *extras["server"], "pytest", *hypothesis,
                 *toml["build-system"]["requires"]]))
EOF
    python3 -m pip download -q --only-binary=:all: "${arguments[@]}" --python-version 3.11 \
        --implementation cp --abi cp311 -d "$dest" -r "$dest.txt" || return 1
    rm -f "$dest.txt"
    REFERENCES+=(LANE_WHEELS=/wheels)
}

x86_references() {
    # This machine's conversion of the test checkpoint and its demo chat, when pyg-edge is
    # installed here (.ci/run's venv): the chroot's must be the same bytes and text.
    local ref=$1 checkpoint=neo_w16_safetensors_f32
    command -v pyg-edge >/dev/null || { echo "(no x86-64 pyg-edge here: no references)"; return 0; }
    mkdir -p "$ref"
    PYG_EDGE_CACHE="$ref/cache" pyg-edge convert \
        "$REPO/tests/fixtures/checkpoints/$checkpoint" "$ref/$checkpoint" >/dev/null
    printf 'Hello! Who are you?\n' | PYG_EDGE_CACHE="$ref/cache" \
        pyg-edge chat --temperature 0 --max-new-tokens 16 >"$ref/chat.txt" 2>/dev/null
    rm -rf "$ref/cache"
    REFERENCES+=(LANE_X86_CONVERTED="/ref/$checkpoint" LANE_X86_CHAT=/ref/chat.txt)
}

teardown() {
    local root=$1 target
    for target in "${MOUNTED[@]}"; do
        umount "$target" 2>/dev/null || umount -l "$target"
    done
    if grep -q " $root/" /proc/self/mounts; then
        echo "arm64 lane: $root still has mounts; left in place" >&2
    elif [ "${ARM64_LANE_KEEP:-0}" = 1 ]; then
        echo "arm64 lane: kept $root"
    else
        rm -rf --one-file-system "$root"
    fi
}
