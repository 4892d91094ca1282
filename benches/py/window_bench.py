#!/usr/bin/env python3
"""CPU cost of Python pool-routing contexts (what symmem's Rust window replaces), ns per window.

Measured with time.perf_counter_ns around a loop of N iterations (N = --iters, reduced for slow
variants so that one repeat lasts about --target-seconds), per iteration, median (and min) of
--repeats rounds; each round times every variant once (interleaved), so drifts of a noisy host
spread evenly over the variants. Compare variants within one run, not across runs. Every variant runs with an empty body and with one
`torch.empty(2048, dtype=torch.float32, device='cuda')` (8 KiB) inside; that tensor is freed
right after the window closes (`del t`), so the "alloc_free_8k" rows are window + allocation +
free, like the Rust bench `window/alloc_free_8k` (benches/window.rs). The pool is warm: one 8 KiB
allocation went through it before timing, so no row calls the allocator behind the pool.

Variants
  loop_overhead            `for _ in range(n): pass` (subtracted in the `net` column)
  nullcontext              `with contextlib.nullcontext():` (SGLang/vLLM's disabled path)
  plain_torch_empty        no context at all (reference for the alloc rows)
  use_mem_pool             `with torch.cuda.use_mem_pool(pool):`
  private_calls            the bare trio torch._C._cuda_beginAllocateCurrentThreadToPool /
                           _cuda_endAllocateToPool / _cuda_releasePool (lower bound of Python)
  sglang_before            `with use_symmetric_memory(group):` at SGLang's call sites: the
                           factory, a new SymmetricMemoryContext, __enter__ and __exit__, with
                           the class as it was BEFORE sgl-project/sglang#24190
  sglang_after             the same, class AFTER #24190 (private calls instead of use_mem_pool)
  sglang_before_reuse      one SymmetricMemoryContext object entered/exited repeatedly (BEFORE:
                           re-creates the non-reentrant use_mem_pool CM on every re-entry)
  sglang_after_reuse       the same with the AFTER class
  vllm                     `with nccl_symm_mem_context(pynccl_comm):` (vLLM), including its
                           __exit__ pool snapshot() and registration scan

Sources read (reconstructed line by line; only the marked parts differ):
  SGLang python/sglang/srt/distributed/device_communicators/pynccl_allocator.py
    BEFORE: parent d9e8a4a7f8fc77303d45b11a354538fb1d25fd68 of the change below
            (same class as sgl-project/sglang@08bff3a1e377d4ff76cb143f9e4239985f40c5be except
            per-group pools there; earlier form at sgl-project/sglang@f7a018f97483).
    AFTER:  commit d48095ba5371f9c6c1bdd6f65f77ca73112e6f85 (2026-05-01, Cheng Wan,
            "Bypass torch.cuda.use_mem_pool generator-CM in SymmetricMemoryContext (#24190)"),
            read from the sgl-project/sglang history as mirrored in Kwai-Keye/sglang.
  vLLM vllm/distributed/device_communicators/pynccl_allocator.py at
    vllm-project/vllm@2afe1e8573cf51b73569ae1d35f59078a2032a91 (class nccl_symm_mem_context).

What differs from SGLang / vLLM (the per-window Python logic is what is timed):
  * The allocator behind the pool. SGLang compiles an NCCL pluggable allocator with
    torch.utils.cpp_extension.load_inline (ncclMemAlloc + ncclCommWindowRegister on the
    communicator whose address it reads from the env var SGLANG_TMP_NCCL_COMM_VALUE). Here
    `--allocator auto` (default) first tries to build a tiny C allocator with `cc` against the
    libnccl.so.2 of the nvidia-nccl wheel (ncclMemAlloc / ncclMemFree only: there is no
    communicator in this one-process bench, so no window registration), and falls back to a
    plain `torch.cuda.MemPool()` (cudaMalloc-backed private pool) if that fails; the RESULT
    lines name the allocator used. With a warm pool no timed iteration reaches the allocator.
  * The GroupCoordinator / PyNcclCommunicator are small stand-ins with the attributes the code
    reads (`pynccl_comm.comm.value` is a ctypes.c_void_p, `world_size` 2 so the context is not
    disabled); `get_global_server_args()` returns an object with enable_symm_mem=True;
    vLLM's `envs.VLLM_USE_NCCL_SYMM_MEM` is evaluated from os.environ on every access (default
    on here) and `current_platform.is_cuda()` compares an enum, as in vLLM;
    `pynccl_comm.register_comm_window_raw` is a no-op (in steady state it is never called).
  * vLLM parses versions with packaging.version on every context construction; if `packaging`
    is not importable, pip's or setuptools' vendored copy is used, else a stand-in parser (the
    RESULT line then says packaging="stand-in" and that row's cost is not faithful).
  * Graph capture branches (is_graph_capture) are reproduced but not taken: timing is eager.
If torch._C lacks the private pool functions, the variants that need them are reported as
unavailable (RESULT with "available": false) instead of failing.

Environment: NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and NVSHMEM_DISABLE_NVLS=1
are forced at start; nothing here uses multicast. Exit codes: 0 ok, 1 a variant failed its
routing check, 2 bad arguments, 3 CUDA/torch unavailable.
"""

import os

# Forced, not setdefault: never NVLS / multicast, whatever the caller's environment says.
os.environ["NCCL_NVLS_ENABLE"] = "0"
os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1"
os.environ["NVSHMEM_DISABLE_NVLS"] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import enum  # noqa: E402
import gc  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import nullcontext  # noqa: E402

PROG = "window_bench.py"
EXIT_FAILED = 1
EXIT_NO_CUDA = 3

torch = None  # bound in main(); the reconstructed classes read it as a module global, as in SGLang

# =============================================================================================
# Module state of SGLang's pynccl_allocator (shared by BEFORE and AFTER, as in the module)
# =============================================================================================
after_2_8_0 = True  # `torch_release >= (2, 8)`, computed once at import in SGLang; set in main()
_allocator = None
_mem_pool = None
_graph_pool_id = None
_cur_device = None
_active_symmetric_memory_context = None

# AFTER imports these from torch.cuda.memory at module import; bound in main().
_cuda_beginAllocateCurrentThreadToPool = None
_cuda_endAllocateToPool = None
_cuda_releasePool = None


class _ServerArgs:
    enable_symm_mem = True


_global_server_args = _ServerArgs()


def get_global_server_args():
    # sglang/srt/server_args.py
    if _global_server_args is None:
        raise ValueError("Global server args is not set yet!")
    return _global_server_args


def is_symmetric_memory_enabled():
    try:
        return get_global_server_args().enable_symm_mem
    except ValueError:
        return False


def get_nccl_mem_pool():
    # The pool is created before timing (see build_pool); SGLang's first call compiles and
    # creates it, every later call returns the cached pool, which is the path timed here.
    global _allocator, _mem_pool, _cur_device
    if _mem_pool is None:
        raise RuntimeError("pool not initialised")
    return _mem_pool


class _FakeNcclComm:
    def __init__(self):
        self.comm = ctypes.c_void_p(0x7F00DEADBEE0)  # ncclComm_t as in pynccl
        self.world_size = 2
        self.nccl_version = 22805
        self.registered = []

    def register_comm_window_raw(self, ptr, size):
        self.registered.append((ptr, size))


class _FakeGroupCoordinator:
    def __init__(self):
        self.unique_name = "tp:0"
        self.group_name = "tp"
        self.world_size = 2
        self.pynccl_comm = _FakeNcclComm()


# ---------------------------------------------------------------------------------------------
# SGLang BEFORE #24190 (d9e8a4a7..., python/sglang/srt/distributed/device_communicators/
# pynccl_allocator.py, class SymmetricMemoryContext + use_symmetric_memory), verbatim logic.
# ---------------------------------------------------------------------------------------------
class SymmetricMemoryContextBefore:
    def __init__(
        self,
        group_coordinator,
    ):
        self.group_coordinator = group_coordinator
        self._mem_pool_ctx = torch.cuda.use_mem_pool(get_nccl_mem_pool())
        self.is_graph_capture = torch.cuda.is_current_stream_capturing()
        self.exited = False

    def __enter__(self):
        assert (
            self.group_coordinator.pynccl_comm is not None
        ), f"Symmetric memory requires pynccl to be enabled in group '{self.group_coordinator.group_name}'"

        if self.is_graph_capture:
            assert (
                _graph_pool_id is not None
            ), "graph_pool_id is not set under graph capture"
            # Pause graph memory pool to use symmetric memory with cuda graph
            if after_2_8_0:
                torch._C._cuda_endAllocateToPool(_cur_device, _graph_pool_id)
            else:
                torch._C._cuda_endAllocateCurrentStreamToPool(
                    _cur_device, _graph_pool_id
                )

        if self.exited:
            # mempool ctx (@contextlib.contextmanager) is not re-entrant
            self._mem_pool_ctx = torch.cuda.use_mem_pool(get_nccl_mem_pool())
            self.exited = False
        self._mem_pool_ctx.__enter__()

        # Set the env var to pass this argument to the C functions.
        os.environ["SGLANG_TMP_NCCL_COMM_VALUE"] = str(
            self.group_coordinator.pynccl_comm.comm.value
        )

        global _active_symmetric_memory_context
        _active_symmetric_memory_context = self

        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self._mem_pool_ctx.__exit__(exc_type, exc_val, exc_tb)

        if self.is_graph_capture:
            if after_2_8_0:
                torch._C._cuda_beginAllocateCurrentThreadToPool(
                    _cur_device, _graph_pool_id
                )
            else:
                torch._C._cuda_beginAllocateToPool(_cur_device, _graph_pool_id)

        global _active_symmetric_memory_context
        _active_symmetric_memory_context = None

        self.exited = True


def use_symmetric_memory_before(group_coordinator, disabled: bool = False):
    disabled = (
        not is_symmetric_memory_enabled()
        or disabled
        or group_coordinator.world_size == 1
    )
    return SymmetricMemoryContextBefore(group_coordinator) if not disabled else nullcontext()


# ---------------------------------------------------------------------------------------------
# SGLang AFTER #24190 (d48095ba...): use_mem_pool replaced by the private torch._C calls.
# ---------------------------------------------------------------------------------------------
class SymmetricMemoryContextAfter:
    def __init__(
        self,
        group_coordinator,
    ):
        self.group_coordinator = group_coordinator
        self._pool_id = get_nccl_mem_pool().id
        self._device_index = torch.cuda.current_device()
        self.is_graph_capture = torch.cuda.is_current_stream_capturing()

    def __enter__(self):
        assert (
            self.group_coordinator.pynccl_comm is not None
        ), f"Symmetric memory requires pynccl to be enabled in group '{self.group_coordinator.group_name}'"

        if self.is_graph_capture:
            assert (
                _graph_pool_id is not None
            ), "graph_pool_id is not set under graph capture"
            # Pause graph memory pool to use symmetric memory with cuda graph
            if after_2_8_0:
                torch._C._cuda_endAllocateToPool(_cur_device, _graph_pool_id)
            else:
                torch._C._cuda_endAllocateCurrentStreamToPool(
                    _cur_device, _graph_pool_id
                )

        _cuda_beginAllocateCurrentThreadToPool(self._device_index, self._pool_id)

        # Set the env var to pass this argument to the C functions.
        os.environ["SGLANG_TMP_NCCL_COMM_VALUE"] = str(
            self.group_coordinator.pynccl_comm.comm.value
        )

        global _active_symmetric_memory_context
        _active_symmetric_memory_context = self

        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        _cuda_endAllocateToPool(self._device_index, self._pool_id)
        _cuda_releasePool(self._device_index, self._pool_id)

        if self.is_graph_capture:
            if after_2_8_0:
                torch._C._cuda_beginAllocateCurrentThreadToPool(
                    _cur_device, _graph_pool_id
                )
            else:
                torch._C._cuda_beginAllocateToPool(_cur_device, _graph_pool_id)

        global _active_symmetric_memory_context
        _active_symmetric_memory_context = None


def use_symmetric_memory_after(group_coordinator, disabled: bool = False):
    disabled = (
        not is_symmetric_memory_enabled()
        or disabled
        or group_coordinator.world_size == 1
    )
    return SymmetricMemoryContextAfter(group_coordinator) if not disabled else nullcontext()


# =============================================================================================
# vLLM (vllm-project/vllm@2afe1e85, vllm/distributed/device_communicators/pynccl_allocator.py)
# =============================================================================================
_vllm_mem_pool = None
_vllm_registered_base_addrs = set()
_vllm_graph_pool_id = None
_vllm_nccl_allocator_failed_to_compile = False
_vllm_cached_pool_snapshot = None


class _VllmEnvs:
    """vllm.envs: module __getattr__ evaluating the variable's lambda on each access."""

    environment_variables = {
        # Real default is "0" (off); "1" here so the context is not disabled.
        "VLLM_USE_NCCL_SYMM_MEM": lambda: bool(int(os.getenv("VLLM_USE_NCCL_SYMM_MEM", "1"))),
    }

    def __getattr__(self, name):
        if name in self.environment_variables:
            return self.environment_variables[name]()
        raise AttributeError(name)


envs = _VllmEnvs()


class _PlatformEnum(enum.Enum):
    CUDA = enum.auto()
    ROCM = enum.auto()


class _CudaPlatform:
    _enum = _PlatformEnum.CUDA

    def is_cuda(self) -> bool:
        return self._enum == _PlatformEnum.CUDA


current_platform = _CudaPlatform()


def _load_version_module():
    for modname in ("packaging.version", "pip._vendor.packaging.version",
                    "setuptools._vendor.packaging.version", "pkg_resources.extern.packaging.version"):
        try:
            mod = __import__(modname, fromlist=["parse"])
            return mod, modname.rsplit(".version", 1)[0]
        except Exception:  # noqa: BLE001
            continue

    class _StandIn:
        @staticmethod
        def parse(s):
            import re

            m = re.match(r"(\d+(?:\.\d+)*)(?:\.?(a|b|rc)(\d+))?", s)
            rel = tuple(int(p) for p in m.group(1).split("."))
            pre = (m.group(2) or "z", int(m.group(3) or 0))
            return (rel, pre)

    return _StandIn, "stand-in"


version, _version_source = _load_version_module()


def vllm_is_symmetric_memory_enabled():
    global _vllm_nccl_allocator_failed_to_compile
    return envs.VLLM_USE_NCCL_SYMM_MEM and not _vllm_nccl_allocator_failed_to_compile


def vllm_get_nccl_mem_pool():
    global _vllm_mem_pool, _vllm_nccl_allocator_failed_to_compile
    if _vllm_mem_pool is None and not _vllm_nccl_allocator_failed_to_compile:
        raise RuntimeError("pool not initialised")
    return _vllm_mem_pool


class nccl_symm_mem_context:
    def __init__(
        self,
        pynccl_comm,
        disabled: bool = False,
    ):
        self.disabled = (
            disabled
            or not vllm_is_symmetric_memory_enabled()
            or pynccl_comm.world_size == 1
            or not current_platform.is_cuda()
            or vllm_get_nccl_mem_pool() is None
            or version.parse(torch.__version__) < version.parse("2.8.0.a0")
        )
        if self.disabled:
            self.pynccl_comm = None
            self._mem_pool_ctx = contextlib.nullcontext()
            self.is_graph_capture = None
            self.device = None
        else:
            self.pynccl_comm = pynccl_comm
            self._mem_pool_ctx = torch.cuda.use_mem_pool(vllm_get_nccl_mem_pool())
            self.is_graph_capture = torch.cuda.is_current_stream_capturing()
            self.device = torch.cuda.current_device()

    def __enter__(self):
        if self.disabled:
            return self
        assert self.pynccl_comm is not None, (
            "Symmetric memory requires pynccl to be initalized"
        )
        assert self.pynccl_comm.nccl_version >= 22703, (
            "NCCL version 2.27.3 or higher is required for NCCL symmetric memory"
        )
        if self.is_graph_capture:
            assert _vllm_graph_pool_id is not None, (
                "graph_pool_id is not set under graph capture"
            )
            # Pause graph memory pool to use symmetric memory with cuda graph
            torch._C._cuda_endAllocateToPool(self.device, _vllm_graph_pool_id)
        self._mem_pool_ctx.__enter__()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        if self.disabled:
            return
        global _vllm_cached_pool_snapshot
        global _vllm_registered_base_addrs
        self._mem_pool_ctx.__exit__(exc_type, exc_val, exc_tb)
        _pool = vllm_get_nccl_mem_pool()
        assert _pool is not None
        _vllm_cached_pool_snapshot = _pool.snapshot()
        assert self.pynccl_comm is not None
        for segment in _vllm_cached_pool_snapshot:
            if segment["address"] not in _vllm_registered_base_addrs:
                self.pynccl_comm.register_comm_window_raw(
                    segment["address"], segment["total_size"]
                )
                _vllm_registered_base_addrs.add(segment["address"])
        if self.is_graph_capture:
            torch._C._cuda_beginAllocateCurrentThreadToPool(self.device, _vllm_graph_pool_id)


# =============================================================================================
# The pool
# =============================================================================================
_ALLOC_C = r"""
#include <stddef.h>
typedef int ncclResult_t;
ncclResult_t ncclMemAlloc(void** ptr, size_t size);
ncclResult_t ncclMemFree(void* ptr);
void* nccl_alloc_plug(size_t size, int device, void* stream) {
  void* ptr = NULL;
  if (ncclMemAlloc(&ptr, size) != 0) return NULL;
  return ptr;
}
void nccl_free_plug(void* ptr, size_t size, int device, void* stream) {
  (void)ncclMemFree(ptr);
}
"""


def _find_libnccl():
    cands = []
    try:
        import nvidia.nccl  # type: ignore

        for base in list(getattr(nvidia.nccl, "__path__", [])):
            cands += glob.glob(os.path.join(base, "lib", "libnccl.so*"))
    except Exception:  # noqa: BLE001
        pass
    tdir = os.path.join(os.path.dirname(torch.__file__), "lib")
    cands += glob.glob(os.path.join(tdir, "libnccl.so*"))
    for p in sys.path:
        cands += glob.glob(os.path.join(p, "nvidia", "nccl", "lib", "libnccl.so*"))
    for c in cands:
        if os.path.isfile(c):
            return c
    return None


def build_nccl_allocator():
    """Compile the ncclMemAlloc pluggable allocator; (allocator, description) or raise."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler (cc/gcc/clang) on PATH")
    lib = _find_libnccl()
    if lib is None:
        raise RuntimeError("libnccl.so not found (nvidia-nccl wheel or torch/lib)")
    out = tempfile.mkdtemp(prefix="window_bench_alloc_")
    src = os.path.join(out, "nccl_alloc.c")
    so = os.path.join(out, "nccl_alloc.so")
    with open(src, "w") as f:
        f.write(_ALLOC_C)
    libdir = os.path.dirname(lib)
    cmd = [cc, "-shared", "-fPIC", "-O2", "-o", so, src, lib, f"-Wl,-rpath,{libdir}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"compile failed: {' '.join(cmd)}: {r.stderr.strip()[:400]}")
    alloc = torch.cuda.memory.CUDAPluggableAllocator(so, "nccl_alloc_plug", "nccl_free_plug")
    return alloc, f"nccl (ncclMemAlloc via {os.path.basename(lib)}, no window registration)"


def build_pool(kind):
    """A torch.cuda.MemPool: ('nccl' | 'plain' | 'auto'); returns (pool, description, keepalive)."""
    errors = []
    if kind in ("auto", "nccl"):
        try:
            wrapper, desc = build_nccl_allocator()
            pool = torch.cuda.MemPool(wrapper.allocator())
            # Prove it allocates (ncclMemAlloc failing would surface as an OOM here).
            with torch.cuda.use_mem_pool(pool):
                t = torch.empty(2048, dtype=torch.float32, device="cuda")
            del t
            torch.cuda.synchronize()
            return pool, desc, wrapper
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
            if kind == "nccl":
                sys.stderr.write(f"{PROG}: --allocator nccl failed: {e}\n")
                sys.exit(EXIT_FAILED)
    pool = torch.cuda.MemPool()
    desc = "plain (torch.cuda.MemPool(), cudaMalloc-backed private pool)"
    if errors:
        desc += f"; NCCL allocator unavailable: {errors[0][:200]}"
    return pool, desc, None


def in_pool(pool, tensor):
    ptr = tensor.untyped_storage().data_ptr()
    for seg in pool.snapshot():
        if seg["address"] <= ptr < seg["address"] + seg["total_size"]:
            return True
    return False


# =============================================================================================
# Timed loops (one function per variant and body; each returns elapsed ns for n iterations)
# =============================================================================================
def make_loops(pool, group, comm):
    empty = torch.empty
    f32 = torch.float32
    use_mem_pool = torch.cuda.use_mem_pool
    pc = time.perf_counter_ns
    dev_index = torch.cuda.current_device()
    pool_id = pool.id
    begin = getattr(torch._C, "_cuda_beginAllocateCurrentThreadToPool", None)
    end = getattr(torch._C, "_cuda_endAllocateToPool", None)
    release = getattr(torch._C, "_cuda_releasePool", None)
    have_private = begin is not None and end is not None and release is not None

    def loop_overhead(n):
        t0 = pc()
        for _ in range(n):
            pass
        return pc() - t0

    def nullctx_empty(n):
        t0 = pc()
        for _ in range(n):
            with nullcontext():
                pass
        return pc() - t0

    def nullctx_alloc(n):
        t0 = pc()
        for _ in range(n):
            with nullcontext():
                t = empty(2048, dtype=f32, device="cuda")
            del t
        return pc() - t0

    def plain_alloc(n):
        t0 = pc()
        for _ in range(n):
            t = empty(2048, dtype=f32, device="cuda")
            del t
        return pc() - t0

    def ump_empty(n):
        t0 = pc()
        for _ in range(n):
            with use_mem_pool(pool):
                pass
        return pc() - t0

    def ump_alloc(n):
        t0 = pc()
        for _ in range(n):
            with use_mem_pool(pool):
                t = empty(2048, dtype=f32, device="cuda")
            del t
        return pc() - t0

    def priv_empty(n):
        t0 = pc()
        for _ in range(n):
            begin(dev_index, pool_id)
            end(dev_index, pool_id)
            release(dev_index, pool_id)
        return pc() - t0

    def priv_alloc(n):
        t0 = pc()
        for _ in range(n):
            begin(dev_index, pool_id)
            t = empty(2048, dtype=f32, device="cuda")
            end(dev_index, pool_id)
            release(dev_index, pool_id)
            del t
        return pc() - t0

    def mk_callsite(factory):
        def e(n):
            t0 = pc()
            for _ in range(n):
                with factory(group):
                    pass
            return pc() - t0

        def a(n):
            t0 = pc()
            for _ in range(n):
                with factory(group):
                    t = empty(2048, dtype=f32, device="cuda")
                del t
            return pc() - t0

        return e, a

    def mk_reuse(cls):
        def e(n):
            ctx = cls(group)
            t0 = pc()
            for _ in range(n):
                with ctx:
                    pass
            return pc() - t0

        def a(n):
            ctx = cls(group)
            t0 = pc()
            for _ in range(n):
                with ctx:
                    t = empty(2048, dtype=f32, device="cuda")
                del t
            return pc() - t0

        return e, a

    def vllm_empty(n):
        t0 = pc()
        for _ in range(n):
            with nccl_symm_mem_context(comm):
                pass
        return pc() - t0

    def vllm_alloc(n):
        t0 = pc()
        for _ in range(n):
            with nccl_symm_mem_context(comm):
                t = empty(2048, dtype=f32, device="cuda")
            del t
        return pc() - t0

    sb_e, sb_a = mk_callsite(use_symmetric_memory_before)
    sa_e, sa_a = mk_callsite(use_symmetric_memory_after)
    sbr_e, sbr_a = mk_reuse(SymmetricMemoryContextBefore)
    sar_e, sar_a = mk_reuse(SymmetricMemoryContextAfter)

    # One routed allocation per variant, for the routing check (not timed).
    def probe_ump():
        with use_mem_pool(pool):
            return empty(2048, dtype=f32, device="cuda")

    def probe_priv():
        begin(dev_index, pool_id)
        try:
            return empty(2048, dtype=f32, device="cuda")
        finally:
            end(dev_index, pool_id)
            release(dev_index, pool_id)

    def probe_factory(factory):
        def p():
            with factory(group):
                return empty(2048, dtype=f32, device="cuda")
        return p

    def probe_vllm():
        with nccl_symm_mem_context(comm):
            return empty(2048, dtype=f32, device="cuda")

    after_ok = have_private and _cuda_beginAllocateCurrentThreadToPool is not None
    why_private = None if have_private else "torch._C lacks _cuda_beginAllocateCurrentThreadToPool/_cuda_endAllocateToPool/_cuda_releasePool"

    # (variant, body, fn, available, why_unavailable, probe, expect_in_pool)
    rows = [
        ("loop_overhead", "empty", loop_overhead, True, None, None, None),
        ("plain_torch_empty", "alloc_free_8k", plain_alloc, True, None,
         lambda: empty(2048, dtype=f32, device="cuda"), False),
        ("nullcontext", "empty", nullctx_empty, True, None, None, None),
        ("nullcontext", "alloc_free_8k", nullctx_alloc, True, None, None, None),
        ("use_mem_pool", "empty", ump_empty, True, None, None, None),
        ("use_mem_pool", "alloc_free_8k", ump_alloc, True, None, probe_ump, True),
        ("private_calls", "empty", priv_empty, have_private, why_private, None, None),
        ("private_calls", "alloc_free_8k", priv_alloc, have_private, why_private, probe_priv, True),
        ("sglang_before", "empty", sb_e, True, None, None, None),
        ("sglang_before", "alloc_free_8k", sb_a, True, None, probe_factory(use_symmetric_memory_before), True),
        ("sglang_after", "empty", sa_e, after_ok, why_private, None, None),
        ("sglang_after", "alloc_free_8k", sa_a, after_ok, why_private,
         probe_factory(use_symmetric_memory_after), True),
        ("sglang_before_reuse", "empty", sbr_e, True, None, None, None),
        ("sglang_before_reuse", "alloc_free_8k", sbr_a, True, None, None, None),
        ("sglang_after_reuse", "empty", sar_e, after_ok, why_private, None, None),
        ("sglang_after_reuse", "alloc_free_8k", sar_a, after_ok, why_private, None, None),
        ("vllm", "empty", vllm_empty, True, None, None, None),
        ("vllm", "alloc_free_8k", vllm_alloc, True, None, probe_vllm, True),
    ]
    return rows


# =============================================================================================
# Driver
# =============================================================================================
def emit(rec):
    print("RESULT " + json.dumps(rec, separators=(",", ":"), default=str), flush=True)


def require_cuda():
    global torch
    try:
        import torch as _t
    except ImportError as e:
        sys.stderr.write(f"{PROG}: PyTorch is not installed ({e}); this benchmark needs torch with CUDA.\n")
        sys.exit(EXIT_NO_CUDA)
    if not _t.cuda.is_available():
        sys.stderr.write(
            f"{PROG}: CUDA is unavailable (torch {_t.__version__}, built for CUDA {_t.version.cuda}); "
            "this benchmark needs an NVIDIA GPU.\n")
        sys.exit(EXIT_NO_CUDA)
    torch = _t
    return _t


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="CPU cost per window of Python pool-routing contexts: torch.cuda.use_mem_pool, the "
        "private torch._C pool calls, SGLang's SymmetricMemoryContext before/after it replaced use_mem_pool "
        "with those calls, and vLLM's nccl_symm_mem_context; each with an empty body and with one 8 KiB "
        "torch.empty inside. See the module docstring for sources and differences.",
        epilog="Prints a table and one 'RESULT {json}' line per measurement. Exit codes: 0 ok, 1 a routing "
        "check failed, 2 bad arguments, 3 CUDA/torch unavailable.",
    )
    p.add_argument("--iters", type=int, default=200_000,
                   help="iterations per repeat (upper bound; slow variants use fewer, see --target-seconds)")
    p.add_argument("--repeats", type=int, default=7, help="repeats per variant; the median is reported (default 7)")
    p.add_argument("--target-seconds", type=float, default=0.5,
                   help="cap on one repeat's duration; iterations are reduced to fit (default 0.5)")
    p.add_argument("--allocator", choices=("auto", "nccl", "plain"), default="auto",
                   help="allocator behind the pool: try a compiled ncclMemAlloc allocator, else plain (default auto)")
    p.add_argument("--no-gc", action="store_true", help="disable Python's cyclic GC while timing (default: enabled)")
    p.add_argument("--only", default="", help="comma-separated variant names to run (default: all)")
    a = p.parse_args(argv)
    if a.iters < 1 or a.repeats < 1 or a.target_seconds <= 0:
        p.error("--iters and --repeats must be >= 1 and --target-seconds > 0")
    return a


def main(argv=None):
    global after_2_8_0, _mem_pool, _cur_device, _allocator, _vllm_mem_pool
    global _cuda_beginAllocateCurrentThreadToPool, _cuda_endAllocateToPool, _cuda_releasePool
    args = parse_args(argv)
    require_cuda()
    torch.cuda.init()
    dev_index = torch.cuda.current_device()
    dev_name = torch.cuda.get_device_name(dev_index)
    rel = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2] if x.isdigit())
    after_2_8_0 = rel >= (2, 8)
    for name in ("_cuda_beginAllocateCurrentThreadToPool", "_cuda_endAllocateToPool", "_cuda_releasePool"):
        fn = getattr(torch.cuda.memory, name, None) or getattr(torch._C, name, None)
        globals()[name] = fn

    pool, alloc_desc, keepalive = build_pool(args.allocator)
    _mem_pool = pool
    _vllm_mem_pool = pool
    _cur_device = dev_index
    _allocator = keepalive
    group = _FakeGroupCoordinator()
    comm = group.pynccl_comm

    # Warm both the pool and the default caching allocator with one 8 KiB block each.
    with torch.cuda.use_mem_pool(pool):
        w = torch.empty(2048, dtype=torch.float32, device="cuda")
    del w
    w = torch.empty(2048, dtype=torch.float32, device="cuda")
    del w
    torch.cuda.synchronize()

    rows = make_loops(pool, group, comm)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    common = {
        "bench": "window_bench",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "device": dev_name,
        "allocator": alloc_desc,
        "gc": not args.no_gc,
        "packaging": _version_source,
    }
    results = []
    failed = False
    # Phase 1: availability, routing check and calibration (iterations so that one repeat of a
    # variant lasts about --target-seconds).
    plan = []  # [variant, body, fn, n, routed, rec, per]
    for variant, body, fn, available, why, probe, expect_in in rows:
        if only and variant not in only and variant != "loop_overhead":
            continue
        rec = {**common, "variant": variant, "body": body}
        if not available:
            plan.append([variant, body, None, 0, None, {**rec, "available": False, "reason": why}, None])
            continue
        try:
            fn(200)
            probe_n = 2000
            est = max(fn(probe_n) / probe_n, 1.0)
            n = int(min(args.iters, max(1000, args.target_seconds * 1e9 / est)))
            routed = None
            if probe is not None:
                t = probe()
                routed = in_pool(pool, t)
                del t
                if expect_in is not None and routed != expect_in:
                    failed = True
            plan.append([variant, body, fn, n, routed, rec, []])
        except Exception as e:  # noqa: BLE001
            failed = True
            plan.append([variant, body, None, 0, None,
                         {**rec, "available": False, "reason": f"{type(e).__name__}: {e}"}, None])

    # Phase 2: rounds. Every round times each variant once, so slow drifts of the machine
    # (clock, neighbours) spread evenly over the variants instead of biasing some of them.
    gc_was = gc.isenabled()
    if args.no_gc:
        gc.disable()
    try:
        for _ in range(args.repeats):
            for item in plan:
                fn, n = item[2], item[3]
                if fn is None:
                    continue
                try:
                    item[6].append(fn(n) / n)
                except Exception as e:  # noqa: BLE001
                    failed = True
                    item[2] = None
                    item[5] = {**item[5], "available": False, "reason": f"{type(e).__name__}: {e}"}
                    item[6] = None
    finally:
        if gc_was:
            gc.enable()

    meds = {(it[0], it[1]): statistics.median(it[6]) for it in plan if it[2] is not None and it[6]}
    baseline = meds.get(("loop_overhead", "empty"))
    plain_alloc = meds.get(("plain_torch_empty", "alloc_free_8k"))
    for variant, body, fn, n, routed, rec, per in plan:
        if fn is None or not per:
            emit(rec)
            results.append((variant, body, None, None, None, None, rec.get("reason")))
            continue
        med = meds[(variant, body)]
        net = None if baseline is None or variant == "loop_overhead" else med - baseline
        over_plain = (med - plain_alloc if body == "alloc_free_8k" and plain_alloc is not None
                      and variant != "plain_torch_empty" else None)
        emit({**rec, "available": True, "ns_per_iter": med, "ns_min": min(per), "ns_net": net,
              "ns_over_plain_alloc": over_plain, "iters": n, "repeats": len(per),
              "routed_to_pool": routed, "ns_all": [round(x, 2) for x in per]})
        results.append((variant, body, med, min(per), net, over_plain, None if routed is None else
                        ("in pool" if routed else "NOT in pool")))

    torch.cuda.synchronize()
    print()
    print(f"{PROG}: CPU cost per pool-routing window, ns per iteration (median of {args.repeats} "
          "interleaved rounds)")
    print(f"  device     {dev_name}; torch {torch.__version__}; Python {sys.version.split()[0]}")
    print(f"  pool       {alloc_desc}")
    print(f"  gc         {'disabled while timing' if args.no_gc else 'enabled'}; vLLM version parser: {_version_source}")
    print("  net        = median - loop_overhead; alloc_free_8k = window + torch.empty(8 KiB) + free;")
    print("  +plain     = median - plain_torch_empty (the routing cost on top of a plain allocation)")
    print()
    print(f"  {'variant':<22} {'body':<14} {'median ns':>10} {'min ns':>10} {'net ns':>10} {'+plain ns':>10}  note")
    print("  " + "-" * 95)
    for variant, body, med, mn, net, over, note in results:
        if med is None:
            print(f"  {variant:<22} {body:<14} {'unavailable':>10}  {note}")
            continue
        nets = "-" if net is None else f"{net:.1f}"
        overs = "-" if over is None else f"{over:.1f}"
        print(f"  {variant:<22} {body:<14} {med:>10.1f} {mn:>10.1f} {nets:>10} {overs:>10}  {note or ''}")
    print()
    if failed:
        print("  FAIL: a variant raised or did not route its allocation as expected (see RESULT lines)")
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
