#!/usr/bin/env bash
# The arm64 lane's user side: what someone on 64-bit ARM Linux does with pyg-edge, checked.
#
#   scripts/arm64_lane_inside.sh SOURCE_DIR
#
# Builds the wheel from SOURCE_DIR, installs it with its server extra (and pytest) from PyPI into
# a fresh venv (aarch64 wheels only: nothing is compiled), then, from outside the source tree
# so the installed package is what runs: `pyg-edge info`, the demo chat, the conversion of a
# test checkpoint, a `serve` request, `pyg-edge bench` at a tiny setting, and the unit and
# runtime test lanes. scripts/arm64_lane.sh runs it in an emulated Debian arm64 chroot; on
# an arm64 Linux machine it runs as it is.
#
# Environment: LANE_WORK (default /lane), LANE_WHEELS (a folder of aarch64 wheels to install
# from instead of PyPI), LANE_EXPECT_CPU (a core name `pyg-edge info` must
# show, e.g. Neoverse-N1), LANE_X86_CONVERTED (x86-64's conversion of the same checkpoint:
# the files must be byte-identical), LANE_X86_CHAT (x86-64's output of the same demo chat:
# greedy, so the text must be the same).
set -euo pipefail

SRC=$(cd "${1:?usage: arm64_lane_inside.sh SOURCE_DIR}" && pwd)
WORK=${LANE_WORK:-/lane}
CHECKPOINT=neo_w16_safetensors_f32
PORT=${LANE_PORT:-5077}
STARTED=$SECONDS
step() { printf '\n== arm64 lane: %s (%d s in)\n' "$1" "$((SECONDS - STARTED))"; }
fail() { echo "arm64 lane FAILED: $*" >&2; exit 1; }

mkdir -p "$WORK"
cd "$WORK"
export PYG_EDGE_CACHE="$WORK/cache"
[ "$(uname -m)" = aarch64 ] || fail "this is $(uname -m), not aarch64"

step "wheel and install ($(python3 --version))"
python3 -m venv "$WORK/venv"
# shellcheck disable=SC1091
. "$WORK/venv/bin/activate"
# LANE_WHEELS: PyPI's aarch64 wheels, fetched by the host's native pip (pip's own Python is
# slow under emulation: minutes for what takes seconds natively); else PyPI itself.
local_wheels=()
[ -z "${LANE_WHEELS:-}" ] || local_wheels=(--no-index --find-links "$LANE_WHEELS")
pip wheel -q --no-deps "${local_wheels[@]}" -w "$WORK/dist" "$SRC"
wheel=$(ls "$WORK"/dist/pyg_edge-*.whl)
case "$wheel" in *-py3-none-any.whl) ;; *) fail "expected a pure wheel on aarch64, got $wheel" ;; esac
# What a user installs (the server extra), pytest and hypothesis for the lanes: the test extra's browser
# and wheel-building tools serve lanes that do not run here. --no-compile: Python compiles
# what it imports anyway, and compiling every module of numpy & co. is slow under emulation.
if ! pip install -q --no-compile "${local_wheels[@]}" "${wheel}[server]" pytest hypothesis; then
    [ -n "${LANE_WHEELS:-}" ] || fail "pip install"
    echo "(a wheel is missing from $LANE_WHEELS: from PyPI)"
    pip install -q --no-compile --find-links "$LANE_WHEELS" "${wheel}[server]" pytest hypothesis
fi
python -c 'import pyg_edge, sys; sys.exit(pyg_edge.__file__.startswith(sys.prefix) == 0)' \
    || fail "pyg_edge is not imported from the venv"
pip list 2>/dev/null | grep -i -E '^(ctranslate2|numpy|tokenizers|sentencepiece) '

step "pyg-edge info"
pyg-edge info | tee info.txt
grep -q '^int8 path check: *passed' info.txt || fail "the int8 path check did not pass"
grep -q '^int8 kernels: *Ruy' info.txt || fail "info does not name Ruy"
if grep -q -E 'no C compiler|unknown' info.txt; then fail "an x86-only or unknown line on ARM"; fi
if [ -n "${LANE_EXPECT_CPU:-}" ]; then
    grep -q "^cpu: *$LANE_EXPECT_CPU" info.txt || fail "info does not name $LANE_EXPECT_CPU"
fi

step "the demo chat"
printf 'Hello! Who are you?\n' | pyg-edge chat --temperature 0 --max-new-tokens 16 | tee chat.txt
[ "$(grep -c '^Robin: .' chat.txt)" -ge 2 ] || fail "no reply from the demo's Robin"
if [ -n "${LANE_X86_CHAT:-}" ]; then
    diff "$LANE_X86_CHAT" chat.txt || fail "the greedy reply differs from x86-64's"
    echo "the same greedy reply as on x86-64"
fi

step "converting a test checkpoint"
pyg-edge convert "$SRC/tests/fixtures/checkpoints/$CHECKPOINT" "$WORK/$CHECKPOINT"
if [ -n "${LANE_X86_CONVERTED:-}" ]; then
    diff -r "$LANE_X86_CONVERTED" "$WORK/$CHECKPOINT" || fail "the conversion differs from x86-64's"
    echo "byte-identical to x86-64's conversion: $(cd "$WORK/$CHECKPOINT" && echo *)"
fi

step "serve and one /v1/completions request"
pyg-edge serve --port "$PORT" >serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
python - "$PORT" <<'EOF' || { cat serve.log; fail "serve did not answer"; }
import json, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(600):  # emulated start-up takes a while
    try:
        urllib.request.urlopen(url + "/v1/models", timeout=5).read()
        break
    except OSError:
        time.sleep(0.5)
body = json.dumps({"prompt": "You: Hello!\nRobin:", "max_tokens": 12, "temperature": 0}).encode()
request = urllib.request.Request(url + "/v1/completions", body,
                                 {"Content-Type": "application/json"})
reply = json.loads(urllib.request.urlopen(request, timeout=300).read())
text = reply["choices"][0]["text"]
print(f"/v1/completions: {text!r}")
sys.exit(0 if text.strip() else 1)
EOF
kill "$server"
wait "$server" 2>/dev/null || true
trap - EXIT

step "pyg-edge bench (tiny setting: emulated speed is not ARM speed)"
pyg-edge bench --prompt-tokens 32 --new-tokens 8 --repeats 1 | tee bench.md
grep -q '^| 32 | ' bench.md || fail "bench printed no row"

step "unit and runtime test lanes"
cd "$SRC"
# -P: the source folder is not on sys.path, so the tests import the installed wheel.
python -P -m pytest -q -p no:cacheprovider tests/unit tests/runtime

step "done in $(((SECONDS - STARTED) / 60)) min $(((SECONDS - STARTED) % 60)) s"
