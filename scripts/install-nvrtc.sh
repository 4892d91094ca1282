#!/usr/bin/env bash
# Install NVIDIA's runtime compiler library (libnvrtc, CUDA 13.0) from the package registry's
# wheel into .whl/nvrtc (no root, no GPU needed) and print the directory that holds
# libnvrtc.so.* (for LD_LIBRARY_PATH). tp_mlp's NVRTC kernels (examples/tp_mlp/src/cuda.rs and
# skinny.rs) are compiled at run time; `examples/tp_mlp/tests/skinny_nvrtc.rs` runs this script
# so that a machine without CUDA (CI) really compiles them.
#
# Usage: export LD_LIBRARY_PATH="$(scripts/install-nvrtc.sh):${LD_LIBRARY_PATH:-}"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.whl/nvrtc"
find_lib() { if [ -d "$dest" ]; then find "$dest" -name 'libnvrtc.so*' -not -name '*builtins*' | sort | head -n 1; fi; }
lib="$(find_lib)"
if [ -z "$lib" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps -d "$tmp" "nvidia-cuda-nvrtc==13.0.*" >&2
  mkdir -p "$dest"
  for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$dest" >&2; done
  lib="$(find_lib)"
  if [ -z "$lib" ]; then
    echo "install-nvrtc.sh: the nvidia-cuda-nvrtc wheel holds no libnvrtc.so under $dest" >&2
    exit 1
  fi
fi
dirname "$lib"
