#!/usr/bin/env bash
# Build symmem's GPU test, bench and example binaries here, and stage them for the GPU machine.
#
# The GPU machine has no Rust toolchain: this script builds release binaries on this machine
# (x86-64, older glibc than the GPU machine), strips them and copies them into the git-ignored
# folder `.device-bin/`, together with `run-on-device.sh`. Then, with the device tool:
#
#     run(command="bash .device-bin/run-on-device.sh tests", carry=[".device-bin"], timeout_s=600)
#     run(command="bash .device-bin/run-on-device.sh example", carry=[".device-bin"], timeout_s=600)
#
# (the second right after the first, while the machine is warm; with no phase, everything runs in
# one call under a shorter time budget per step).
#
# `run-on-device.sh` sets NCCL_NVLS_ENABLE=0 and the library path of the pip NCCL package,
# prints the machine (nvidia-smi, NCCL version), runs the GPU suite with SYMMEM_REQUIRE_GPU=1
# (a missing GPU is a failure there), the CUDA bench, the Python benches in benches/py/ (if
# present) and the tp_mlp example (small, then Llama-3-8B sizes next to its PyTorch twin, compared
# by benches/py/mlp_targets.py), and writes its logs under $OUT. It keeps
# every step under a time limit so that the whole run stays under about 8 minutes.
#
# Usage: scripts/gpu-run.sh            (build and stage)
#        scripts/gpu-run.sh --list     (also list what was staged)
#
# To compare the launch path with an older build in the same lease, build that commit's
# `cuda_bench` (e.g. `git worktree add ../old <commit> && (cd ../old && cargo bench --no-run
# --bench cuda_bench)`) and pass its executable in SYMMEM_BASELINE_BENCH: it is staged as
# `bench/cuda_bench_base`, and the device script then runs the two alternately (new, base,
# new, ..., three processes each) into cuda-bench.log and cuda-bench-base.log.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
stage=.device-bin
rm -rf "$stage"
mkdir -p "$stage/tests" "$stage/bench" "$stage/examples"

json="$(mktemp)"
trap 'rm -f "$json"' EXIT

echo "== building test binaries (release)"
cargo test --release --workspace --no-run --message-format=json-render-diagnostics >"$json"
echo "== building benches (release)"
cargo bench --workspace --no-run --message-format=json-render-diagnostics >>"$json"
# The example: the root package's thin examples/tp_mlp.rs runs the library of the workspace
# member examples/tp_mlp/ (package tp-mlp), whose tests (tests/tp_mlp) the --workspace build above
# already built.
if [ -f examples/tp_mlp.rs ]; then
  echo "== building example tp_mlp (release)"
  if ! cargo build --release --example tp_mlp --message-format=json-render-diagnostics >>"$json"; then
    echo "warning: the tp_mlp example does not build; staging everything else" >&2
  fi
fi

# Executables of integration tests, benches and examples (not unit-test binaries of libraries,
# which run in CI anyway).
# Each binary is stripped of debug info and xz-compressed (the device tool carries at most 64 MiB;
# candle's CUDA binaries alone are 45 MB each stripped, 5 MB compressed); the device script
# unpacks them into /tmp before running anything.
copy() { # kind name path
  local dst="$stage/$1/$2"
  cp "$3" "$dst"
  strip --strip-debug "$dst" 2>/dev/null || true
  xz -T2 -6 -f "$dst"
  echo "   staged $1/$2 ($(du -h "$dst.xz" | cut -f1) compressed)"
}
while IFS=$'\t' read -r kind name exe; do
  case "$kind" in
    test) copy tests "$name" "$exe" ;;
    bench) copy bench "$name" "$exe" ;;
    example) copy examples "$name" "$exe" ;;
  esac
# (Not the CPU-only members symmem-candle and tests/edition2024: CI runs them, and their
# binaries would not fit the device tool's carry limit; symmem-candle's tests/tp_mlp.rs would
# also overwrite the example's tests/tp_mlp.)
done < <(jq -r 'select(.reason == "compiler-artifact" and .executable != null
                and (.package_id | test("symmem-candle|edition2024") | not))
                | [(.target.kind[0]), .target.name, .executable] | @tsv' "$json" | sort -u)

if [ -f examples/tp_mlp.rs ] && [ ! -f "$stage/examples/tp_mlp.xz" ]; then
  echo "warning: the tp_mlp example binary was not staged" >&2
fi
if [ -f examples/tp_mlp/Cargo.toml ] && [ ! -f "$stage/tests/tp_mlp.xz" ]; then
  echo "warning: the tp_mlp example's tests (examples/tp_mlp/tests/tp_mlp.rs) were not staged" >&2
fi

# symmem-candle's CUDA path (its GPU test and bench): candle's `cuda` feature compiles candle's
# kernels with nvcc (installed from the registry's wheels) and links the CUDA libraries, which
# this machine does not have: the link uses stand-ins with the real sonames
# (scripts/cuda-link-stubs.sh), and the GPU machine's libraries are loaded at run time. Its own
# target folder (other cudarc features than the rest). SYMMEM_SKIP_CANDLE_CUDA=1 skips it.
if [ "${SYMMEM_SKIP_CANDLE_CUDA:-0}" != 1 ]; then
  echo "== building symmem-candle's CUDA test and bench (release, candle cuda feature)"
  cjson="$(mktemp)"
  if (
    eval "$(scripts/install-nvcc.sh 2>/dev/null)" && eval "$(scripts/cuda-link-stubs.sh)" &&
      export CARGO_TARGET_DIR="$root/target/candle-cuda" CUDA_COMPUTE_CAP=90 &&
      cargo test --release -p symmem-candle --features cuda --test cuda --no-run \
        --message-format=json-render-diagnostics &&
      cargo bench -p symmem-candle --features cuda --bench candle_cuda --no-run \
        --message-format=json-render-diagnostics
  ) >"$cjson"; then
    while IFS=$'\t' read -r kind name exe; do
      case "$kind/$name" in
        test/cuda) copy tests candle-cuda "$exe" ;;
        bench/candle_cuda) copy bench candle_cuda "$exe" ;;
      esac
    done < <(jq -r 'select(.reason == "compiler-artifact" and .executable != null
                    and (.package_id | test("symmem-candle")))
                    | [(.target.kind[0]), .target.name, .executable] | @tsv' "$cjson" | sort -u)
  else
    echo "warning: symmem-candle's CUDA binaries do not build; staging everything else" >&2
  fi
  rm -f "$cjson"
fi

if [ -n "${SYMMEM_BASELINE_BENCH:-}" ]; then
  copy bench cuda_bench_base "$SYMMEM_BASELINE_BENCH"
fi

if [ ! -f "$stage/tests/gpu.xz" ]; then
  echo "error: tests/gpu.rs was not built (is it in the facade crate?)" >&2
  exit 1
fi

cat >"$stage/run-on-device.sh" <<'DEVICE'
#!/usr/bin/env bash
# Runs on the GPU machine from the repository root: bash .device-bin/run-on-device.sh [PHASE]
# PHASE: all (default), tests (the GPU suite, candle's CUDA test, the skinny GEMM test, the
# benches) or example (tp_mlp at every --gemm mode next to the PyTorch twin, then the other
# integration tests). One call of the device tool is at most 10 minutes: run `tests`, then
# `example` on the same warm machine, each within about 9 minutes. `skinny` runs only the
# skinny GEMM test, tp_mlp at Llama sizes (auto, next to the PyTorch twin; skinny; lt) and ncu.
set -uo pipefail
phase="${1:-all}"
want() { [ "$phase" = all ] || [ "$phase" = "$1" ]; }
staged="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-/tmp/symmem-out}"
# Unpack the xz-compressed binaries (xz, or Python's lzma where xz is missing).
bin=/tmp/symmem-bin
rm -rf "$bin"
for f in $(cd "$staged" && find . -name '*.xz'); do
  dst="$bin/${f%.xz}"
  mkdir -p "$(dirname "$dst")"
  if command -v xz >/dev/null; then
    xz -dc "$staged/$f" >"$dst"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$staged/$f" "$dst"
  fi
  chmod +x "$dst"
done
mkdir -p "$out"
start=$(date +%s)
budget=${SYMMEM_DEVICE_BUDGET:-$([ "$phase" = all ] && echo 470 || echo 530)}
left() { echo $(( budget - ($(date +%s) - start) )); }   # seconds left of the phase's budget
step() { # seconds log-file command...
  local t=$1 log=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 20 ]; then echo "## skipped (time budget): $*" | tee -a "$log"; return 0; fi
  [ "$t" -gt "$l" ] && t=$l
  echo "## $* (limit ${t}s)" | tee -a "$log"
  timeout --kill-after=10 "$t" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "## exit $rc: $*" | tee -a "$log"
  return 0
}

# Never use NVLink SHARP multicast on this shared machine.
export NCCL_NVLS_ENABLE=0
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export RUST_BACKTRACE=1 PYTHONUNBUFFERED=1 SYMMEM_REQUIRE_GPU=1
NCCL_LIB=$(python3 -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib'))" 2>/dev/null || true)
# symmem loads libnccl.so.2 itself (what the pip package ships): the GPU suite and the example
# run with the package's folder as it is. The benches' raw-NCCL baselines call cudarc's own NCCL
# bindings, which look for libnccl.so only: they run with a shim folder holding that name.
shim=/tmp/symmem-nccl-shim
mkdir -p "$shim"
if [ -n "$NCCL_LIB" ] && [ ! -e "$NCCL_LIB/libnccl.so" ] && [ -e "$NCCL_LIB/libnccl.so.2" ]; then
  ln -sf "$NCCL_LIB/libnccl.so.2" "$shim/libnccl.so"
fi
export LD_LIBRARY_PATH="${NCCL_LIB:+$NCCL_LIB:}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
# (`step` runs commands under `timeout`, which cannot run a shell function: an `env` prefix.)
with_shim=(env "LD_LIBRARY_PATH=$shim:$LD_LIBRARY_PATH")

env_log="$out/gpu-tests.log"   # the machine first, then the GPU suite (few files come back)
{
  echo "date: $(date -u)"; uname -a
  lscpu 2>/dev/null | grep -E "Model name|^CPU\(s\)|MHz|Hypervisor|L2|L3" || true
  nvidia-smi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  echo "NCCL_LIB=$NCCL_LIB"; ls -l "$NCCL_LIB" 2>&1
  python3 -c "import importlib.metadata as m; print('nvidia-nccl-cu13', m.version('nvidia-nccl-cu13'))" 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version())" 2>&1
  echo "NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
} >"$env_log" 2>&1
cat "$env_log"

if want tests; then
# 1. The GPU suite (a missing GPU fails it).
step 240 "$out/gpu-tests.log" "$bin/tests/gpu" --test-threads=1

# 1b. symmem-candle's CUDA path (candle CUDA tensors, the all-reduce op, the TP MLP).
if [ -x "$bin/tests/candle-cuda" ]; then
  step 120 "$out/gpu-tests.log" "$bin/tests/candle-cuda" --test-threads=1
fi

# 1c. The example's skinny decode GEMM kernels against an f64 reference (every dtype, token
#     count and decode shape), bit-identical reruns, fallbacks.
if [ -x "$bin/tests/skinny_gpu" ]; then
  step 180 "$out/gpu-tests.log" "$bin/tests/skinny_gpu" --test-threads=1
fi
fi # tests

if [ "$phase" = skinny ]; then
  # The skinny kernels' test, then the issue's figures in one run: tp_mlp at Llama sizes with
  # --gemm auto next to the PyTorch twin, the other GEMM modes, and ncu's per-kernel view.
  [ -x "$bin/tests/skinny_gpu" ] && step 200 "$out/gpu-tests.log" "$bin/tests/skinny_gpu" --test-threads=1
  step 120 "$out/example-llama.log" "$bin/examples/tp_mlp" --backend cuda --preset llama3-8b \
    --dtype bf16 --graph --tokens 1,8,32,64,4096 --iters 50 --warmup 5
  step 120 "$out/py-mlp.log" python3 benches/py/tp_mlp_torch.py --dtype bf16 \
    --tokens 1,8,32,64,4096 --iters 50 --warmup 5
  step 20 "$out/py-mlp.log" python3 benches/py/mlp_targets.py "$out/example-llama.log" "$out/py-mlp.log"
  for mode in skinny lt; do
    step 100 "$out/example-gemm-$mode.log" "$bin/examples/tp_mlp" --backend cuda --preset llama3-8b \
      --dtype bf16 --graph --tokens 1,8,32,64,4096 --iters 50 --warmup 5 --gemm "$mode"
  done
  # Per-kernel time and DRAM traffic of the decode GEMMs (skinny and cuBLASLt), where ncu runs.
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
  if [ -n "$ncu" ]; then
    for mode in skinny lt; do
      step 90 "$out/ncu-$mode.log" "$ncu" --target-processes all -k 'regex:skinny|gemm|gemv|Kernel|silu|mul' \
        --launch-count 200 --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \
        "$bin/examples/tp_mlp" --backend cuda --preset llama3-8b --dtype bf16 --tokens 1,8,64 \
        --iters 2 --warmup 1 --gemm "$mode"
    done
  fi
fi

if want tests; then

# 2. The CUDA bench.
if [ -x "$bin/bench/cuda_bench" ] && [ -x "$bin/bench/cuda_bench_base" ]; then
  # Side by side with a baseline build: alternate the two, three processes each (what fits
  # the time budget next to the GPU suite and the example).
  for i in 1 2 3; do
    step 60 "$out/cuda-bench.log" "${with_shim[@]}" "$bin/bench/cuda_bench" --bench
    step 60 "$out/cuda-bench-base.log" "${with_shim[@]}" "$bin/bench/cuda_bench_base" --bench
  done
  if [ -f benches/py/cuda_bench_summary.py ]; then
    step 20 "$out/cuda-bench-base.log" python3 benches/py/cuda_bench_summary.py "$out/cuda-bench-base.log" --check
  fi
elif [ -x "$bin/bench/cuda_bench" ]; then
  step 120 "$out/cuda-bench.log" "${with_shim[@]}" "$bin/bench/cuda_bench" --bench
  # Four more processes: the launch ratios move by a few percent from one process to the
  # next on these hosts, so the figure reported is the median over all five.
  for i in 2 3 4 5; do
    step 60 "$out/cuda-bench.log" "${with_shim[@]}" "$bin/bench/cuda_bench" --bench
  done
fi
if [ -x "$bin/bench/cuda_bench" ]; then
  # Medians over the five processes, checked against the targets.
  if [ -f benches/py/cuda_bench_summary.py ]; then
    step 20 "$out/cuda-bench.log" python3 benches/py/cuda_bench_summary.py "$out/cuda-bench.log" --check
  fi
fi

# 2b. All-reduce sweep over every GPU (symmem symmetric / plain / raw registered, eager and
#     graph). With several GPUs, also which NCCL kernels run (TUNING lines) for a small
#     symmetric and plain all-reduce, PyTorch's ordinary all-reduce on the same sizes, and the
#     MLP at tp = number of GPUs.
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
ngpu=${ngpu:-0}
if [ -x "$bin/bench/cuda_allreduce" ]; then
  step 150 "$out/allreduce.log" "${with_shim[@]}" "$bin/bench/cuda_allreduce"
  if [ "$ngpu" -ge 2 ]; then
    NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=TUNING step 60 "$out/allreduce.log" "${with_shim[@]}" "$bin/bench/cuda_allreduce" --sizes 8192
    if [ -f benches/py/allreduce_bench.py ]; then
      step 150 "$out/allreduce.log" env TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
        torchrun --nproc-per-node "$ngpu" benches/py/allreduce_bench.py
    fi
  fi
fi

# 2c. symmem-candle: its all-reduce op against the plain NCCL op of mistral.rs, copies, MLP step.
if [ -x "$bin/bench/candle_cuda" ]; then
  step 120 "$out/candle-bench.log" "$bin/bench/candle_cuda"
fi

fi # tests

if want example; then
# 3. The example: a quick small run, then Llama-3-8B MLP sizes in bf16 (the issue's targets) with
#    --gemm auto (the skinny kernels timed against cuBLASLt), then each GEMM mode alone.
if [ -x "$bin/examples/tp_mlp" ]; then
  step 60 "$out/example-other.log" "$bin/examples/tp_mlp" --backend cuda --graph
  step 180 "$out/example-llama.log" "$bin/examples/tp_mlp" --backend cuda --preset llama3-8b \
    --dtype bf16 --graph --tokens 1,8,32,64,4096 --iters 50 --warmup 5
  for mode in skinny lt cublas; do
    step 120 "$out/example-gemm-$mode.log" "$bin/examples/tp_mlp" --backend cuda --preset llama3-8b \
      --dtype bf16 --graph --tokens 1,8,32,64,4096 --iters 50 --warmup 5 --gemm "$mode"
  done
  # The skinny kernels' other storage types, end to end against the f64 reference.
  step 60 "$out/example-other.log" "$bin/examples/tp_mlp" --backend cuda --preset llama3-8b \
    --dtype f16 --graph --tokens 1,8,33,64 --gemm skinny
  step 60 "$out/example-other.log" "$bin/examples/tp_mlp" --backend cuda --preset llama3-8b \
    --dtype f32 --graph --tokens 1,8 --gemm skinny
  if [ "$ngpu" -ge 2 ]; then
    step 180 "$out/example-other.log" "$bin/examples/tp_mlp" --backend cuda --tp "$ngpu" \
      --preset llama3-8b --dtype bf16 --graph --tokens 1,8,32,64,4096 --iters 50 --warmup 5
  fi
fi

# 4. Python side-by-side benches (PyTorch is the python3 there): the window/pool contexts,
#    and the PyTorch twin of the MLP (same sizes, dtype, seed and iterations as step 3).
[ "$phase" = all ] && [ -f benches/py/window_bench.py ] && step 90 "$out/py-bench.log" python3 benches/py/window_bench.py
if [ -f benches/py/tp_mlp_torch.py ]; then
  step 150 "$out/py-mlp.log" python3 benches/py/tp_mlp_torch.py --dtype bf16 \
    --tokens 1,8,32,64,4096 --iters 50 --warmup 5
  if [ -f "$out/example-llama.log" ]; then
    step 20 "$out/py-mlp.log" python3 benches/py/mlp_targets.py "$out/example-llama.log" "$out/py-mlp.log"
  fi
fi

# 5. Other integration tests (CPU-level; quick), if time is left.
for t in "$bin"/tests/*; do
  name=$(basename "$t")
  # (ui, module_graph, drift, doc_sync and public_paths read the sources, features and candle_cuda run cargo: not here)
  # (docs and msrv run cargo too; candle-cuda ran in step 1b)
  # (skinny_gpu ran in step 1c; skinny_nvrtc downloads NVRTC's wheel, and this machine is offline)
  case "$name" in gpu|ui|trybuild*|compile*|module_graph|drift|doc_sync|public_paths|features|candle_cuda|candle-cuda|docs|msrv|skinny_gpu|skinny_nvrtc) continue ;; esac
  step 60 "$out/other-tests.log" "$t"
done
fi # example

echo "== done in $(( $(date +%s) - start ))s; logs in $out:"; ls -l "$out"
DEVICE
chmod +x "$stage/run-on-device.sh"

echo "== staged in $stage ($(du -sh "$stage" | cut -f1)); run on the GPU machine with:"
echo "   bash .device-bin/run-on-device.sh   (device tool: carry [\".device-bin\"])"
if [ "${1:-}" = "--list" ]; then find "$stage" -type f | sort; fi
