#!/usr/bin/env bash
# Install NVIDIA's CUDA 13.0 compiler from the package registry's wheels into .whl/cuda (no root,
# no GPU needed) and print the environment that points builds at it. candle's `cuda` feature
# compiles its kernels with nvcc at build time (and cudarc's `cuda-version-from-build-system`
# asks nvcc for the version), so `tests/candle_cuda.rs`'s `cargo check` of checks/candle-cuda
# needs it. The nvcc wheel alone is not enough: the host-config headers (`crt/`), the device
# compiler (`nvvm/`, cicc) and libcu++'s headers (`nv/target`, from CCCL) come in separate
# wheels.
#
# Usage: eval "$(scripts/install-nvcc.sh)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.whl/cuda"
cuda="$dest/nvidia/cu13"
if [ ! -x "$cuda/bin/nvcc" ] || [ ! -d "$cuda/nvvm" ] || [ ! -d "$cuda/include/crt" ] || [ ! -d "$cuda/include/nv" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps -d "$tmp" \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" \
    "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*" >&2
  mkdir -p "$dest"
  for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$dest" >&2; done
  chmod -R u+x "$cuda/bin" "$cuda/nvvm/bin"
fi
"$cuda/bin/nvcc" --version >&2
echo "export CUDA_HOME='$cuda' CUDA_PATH='$cuda' PATH='$cuda/bin':\"\$PATH\""
