#!/usr/bin/env bash
# Link-time stand-ins for the CUDA libraries that candle's `cuda` feature links (cudarc's
# `dynamic-linking`: libcuda, libcublas, libcublasLt, libcurand, libnvrtc), so that binaries of
# symmem-candle's CUDA path can be *linked* on a machine without CUDA (this one) and run on the
# GPU machine, where the real libraries are found by their sonames.
#
# Each stand-in is a shared library with the real library's soname that defines every function
# name cudarc's bindings declare for it (an empty function each: nothing ever calls them, the
# loader binds the real library's symbols at run time). Names are read from cudarc's binding
# sources in the local cargo registry, so they follow the cudarc version of Cargo.lock.
#
# Usage: eval "$(scripts/install-nvcc.sh)"; eval "$(scripts/cuda-link-stubs.sh)"
#        (prints `export CUDA_ROOT=...`: cudarc's build script then adds $CUDA_ROOT/lib64 to the
#        link path)
# The sonames are those of CUDA 13 (driver libcuda.so.1; cuBLAS 13; cuRAND 10; NVRTC 13).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.whl/cuda-stubs"
lib="$out/lib64"
mkdir -p "$lib"

version="$(awk '/^name = "cudarc"/{getline; gsub(/[" ]/,""); sub("version=",""); print; exit}' "$root/Cargo.lock")"
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$version"/src 2>/dev/null | head -n1)"
if [ -z "$src" ]; then
  echo "cuda-link-stubs: cudarc $version is not in the cargo registry; run \`cargo fetch\` first" >&2
  exit 1
fi

# name  soname  binding-file  symbol-pattern
make_stub() {
  local name="$1" soname="$2" file="$3" pattern="$4"
  local c="$out/$name.c"
  if [ -f "$lib/lib$name.so" ] && [ "$lib/lib$name.so" -nt "$file" ] && [ "$lib/lib$name.so" -nt "$0" ]; then
    return
  fi
  grep -oE "fn ($pattern)\(" "$file" | sed -E 's/^fn //; s/\($//' | sort -u |
    awk '{ printf "void %s(void) {}\n", $1 }' >"$c"
  if [ ! -s "$c" ]; then
    echo "cuda-link-stubs: no symbols for $name in $file" >&2
    exit 1
  fi
  cc -shared -fPIC -o "$lib/lib$name.so" -Wl,-soname,"$soname" "$c"
}

make_stub cuda libcuda.so.1 "$src/driver/sys/mod.rs" 'cu[A-Z][A-Za-z0-9_]*'
make_stub cublas libcublas.so.13 "$src/cublas/sys/mod.rs" 'cublas[A-Za-z0-9_]*'
make_stub cublasLt libcublasLt.so.13 "$src/cublaslt/sys/mod.rs" 'cublasLt[A-Za-z0-9_]*'
make_stub curand libcurand.so.10 "$src/curand/sys/mod.rs" 'curand[A-Za-z0-9_]*'
make_stub nvrtc libnvrtc.so.13 "$src/nvrtc/sys/mod.rs" 'nvrtc[A-Za-z0-9_]*'

# candle's kernels crate links the CUDA runtime (its statically built kernels register through
# it): the real libcudart.so.13 of the runtime wheel `scripts/install-nvcc.sh` installs, under
# the unversioned name the linker looks for.
cudart="$root/.whl/cuda/nvidia/cu13/lib/libcudart.so.13"
if [ ! -f "$cudart" ]; then
  echo "cuda-link-stubs: $cudart is missing; run scripts/install-nvcc.sh first" >&2
  exit 1
fi
ln -sf "$cudart" "$lib/libcudart.so"

# cudarc's build script adds `<root>/lib64` of every CUDA root variable to the link path;
# CUDA_ROOT leaves install-nvcc.sh's CUDA_HOME/CUDA_PATH (the compiler) as they are.
echo "export CUDA_ROOT='$out'"
