#!/usr/bin/env python3
"""torch.distributed NCCL all_reduce latency (bf16, sum), eager and under CUDA graph replay.

Run with `torchrun --nproc-per-node N benches/py/allreduce_bench.py` (N GPUs on one host); run
without torchrun it starts a one-rank group by itself (N = 1, NCCL's one-rank all-reduce).
Sizes: 2 KiB * 4^k up to 64 MiB, plus 64 MiB itself (`--sizes` overrides). Buffers are plain
caching-allocator tensors (no NCCL window registration, no symmetric memory): this is the
baseline the symmem Rust numbers are compared with.

Per size, in-place `dist.all_reduce(x)` on a bf16 tensor of `bytes / 2` elements:
  * eager: median of per-call CUDA-event times on the current stream (`us_median`), and the
    mean over back-to-back calls (`us_mean`, wall clock synchronized at both ends, the method of
    the Rust example);
  * graph: `--graph-ops` (default 10) all-reduces captured in one `torch.cuda.graph`; the
    median replay time divided by that count (`us_median`) and the back-to-back mean.
  Also algbw = bytes / time and busbw = algbw * 2 (N - 1) / N (GB/s), nccl-tests' convention.
Each rank times itself; rank 0 prints, and the reported time is the slowest rank's (max over
ranks, gathered with an all_reduce MAX of the measurements). A correctness pass first checks
that an all-reduce of rank+1 gives N(N+1)/2 everywhere.

Only rank 0 prints the table and the `RESULT {json}` lines (grep '^RESULT ').
Environment: NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and NVSHMEM_DISABLE_NVLS=1
are forced at start (no NVLS / multicast). Exit codes: 0 ok, 1 check failed or run error,
2 bad arguments, 3 CUDA/torch unavailable or too few GPUs.
"""

import os

# Forced, not setdefault: never NVLS / multicast, whatever the caller's environment says.
os.environ["NCCL_NVLS_ENABLE"] = "0"
os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1"
os.environ["NVSHMEM_DISABLE_NVLS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

PROG = "allreduce_bench.py"
EXIT_FAILED = 1
EXIT_NO_CUDA = 3


def default_sizes():
    out = []
    b = 2 << 10
    while b <= 64 << 20:
        out.append(b)
        b *= 4
    if out[-1] != 64 << 20:
        out.append(64 << 20)
    return out


def parse_size(s):
    s = s.strip().lower()
    mult = 1
    for suf, m in (("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("k", 1 << 10), ("m", 1 << 20),
                   ("g", 1 << 30)):
        if s.endswith(suf):
            s, mult = s[: -len(suf)], m
            break
    try:
        v = int(s) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size `{s}` (bytes, or with k/m/g suffix)")
    if v < 2 or v % 2:
        raise argparse.ArgumentTypeError(f"size {v} must be a positive even number of bytes (bf16)")
    return v


def parse_sizes(s):
    return [parse_size(p) for p in s.split(",") if p.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="NCCL all_reduce latency through torch.distributed (bf16, sum), eager and CUDA-graph "
        "replay. Run with torchrun --nproc-per-node N; without torchrun it runs one rank.",
        epilog="Rank 0 prints a table and one 'RESULT {json}' line per measurement. Exit codes: 0 ok, 1 check "
        "failed or run error, 2 bad arguments, 3 CUDA/torch unavailable or too few GPUs.",
    )
    p.add_argument("--sizes", type=parse_sizes, default=default_sizes(),
                   help="comma-separated byte sizes, k/m/g suffixes allowed (default 2k*4^k..64m, plus 64m)")
    p.add_argument("--iters", type=int, default=100, help="timed calls per size and mode (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    p.add_argument("--graph-ops", type=int, default=10, help="all-reduces captured per graph (default 10)")
    p.add_argument("--no-graph", action="store_true", help="skip the CUDA graph measurements")
    a = p.parse_args(argv)
    if a.iters < 1 or a.warmup < 0 or a.graph_ops < 1 or not a.sizes:
        p.error("--iters and --graph-ops must be >= 1, --warmup >= 0, and --sizes non-empty")
    return a


def emit(rec):
    print("RESULT " + json.dumps(rec, separators=(",", ":"), default=str), flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    args = parse_args(argv)
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    say = (lambda msg: sys.stderr.write(f"{PROG}: {msg}\n")) if rank == 0 else (lambda msg: None)

    try:
        import torch
        import torch.distributed as dist
    except ImportError as e:
        say(f"PyTorch is not installed ({e}); this benchmark needs torch with CUDA and NCCL.")
        return EXIT_NO_CUDA
    if not torch.cuda.is_available():
        say(f"CUDA is unavailable (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "this benchmark needs NVIDIA GPUs.")
        return EXIT_NO_CUDA
    if not dist.is_available() or not dist.is_nccl_available():
        say("this torch build has no NCCL backend for torch.distributed.")
        return EXIT_NO_CUDA
    ngpu = torch.cuda.device_count()
    if local_rank >= ngpu:
        sys.stderr.write(f"{PROG}: rank {rank} has LOCAL_RANK {local_rank} but only {ngpu} GPU(s) are visible; "
                         "use --nproc-per-node <= the GPU count.\n")
        return EXIT_NO_CUDA
    if not under_torchrun:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"] = "0", "1", "0"

    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)
    try:
        dist.init_process_group("nccl", rank=rank, world_size=world, device_id=device)
    except TypeError:  # older torch without device_id
        dist.init_process_group("nccl", rank=rank, world_size=world)
    try:
        return run(args, torch, dist, rank, world, device, say)
    finally:
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass


def run(args, torch, dist, rank, world, device, say):
    try:
        nccl_version = ".".join(str(v) for v in torch.cuda.nccl.version())
    except Exception:  # noqa: BLE001
        nccl_version = "unknown"
    dev_name = torch.cuda.get_device_name(device)
    common = {"bench": "allreduce_bench", "op": "all_reduce", "reduce": "sum", "dtype": "bf16",
              "world_size": world, "device": dev_name, "torch": torch.__version__, "nccl": nccl_version,
              "nvls": os.environ.get("NCCL_NVLS_ENABLE")}
    busf = 2.0 * (world - 1) / world if world > 1 else 0.0

    # Correctness: all-reduce of rank+1 (exact in bf16 for small N).
    x = torch.full((4096,), float(rank + 1), dtype=torch.bfloat16, device=device)
    dist.all_reduce(x)
    torch.cuda.synchronize()
    want = world * (world + 1) / 2
    ok_local = bool(torch.all(x.float() == want))
    flag = torch.tensor([0 if ok_local else 1], dtype=torch.int32, device=device)
    dist.all_reduce(flag)
    check_ok = int(flag.item()) == 0
    if rank == 0:
        emit({**common, "kind": "check", "expected": want, "pass": check_ok})
    if not check_ok:
        say("FAIL: all-reduce of rank+1 did not give N(N+1)/2 on every rank")
        return EXIT_FAILED
    del x, flag

    def slowest(v):
        t = torch.tensor([v], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    rows = []
    for nbytes in args.sizes:
        numel = nbytes // 2
        x = torch.zeros(numel, dtype=torch.bfloat16, device=device)  # zeros: stays finite forever

        # ---- eager ------------------------------------------------------------------
        for _ in range(args.warmup):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        dist.barrier()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(args.iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(args.iters)]
        for i in range(args.iters):
            starts[i].record()
            dist.all_reduce(x)
            ends[i].record()
        torch.cuda.synchronize()
        med = statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)) * 1e3
        dist.barrier()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        mean = (time.perf_counter() - t0) / args.iters * 1e6
        med, mean = slowest(med), slowest(mean)
        res = {"eager": (med, mean)}

        # ---- graph ------------------------------------------------------------------
        if not args.no_graph:
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        dist.all_reduce(x)
                torch.cuda.current_stream().wait_stream(s)
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    for _ in range(args.graph_ops):
                        dist.all_reduce(x)
                torch.cuda.synchronize()
                for _ in range(max(1, args.warmup // args.graph_ops)):
                    g.replay()
                torch.cuda.synchronize()
                dist.barrier()
                reps = max(5, args.iters // args.graph_ops)
                starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
                ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
                for i in range(reps):
                    starts[i].record()
                    g.replay()
                    ends[i].record()
                torch.cuda.synchronize()
                gmed = statistics.median(s_.elapsed_time(e) for s_, e in zip(starts, ends)) * 1e3 / args.graph_ops
                dist.barrier()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(reps):
                    g.replay()
                torch.cuda.synchronize()
                gmean = (time.perf_counter() - t0) / (reps * args.graph_ops) * 1e6
                res["graph"] = (slowest(gmed), slowest(gmean))
                del g
            except Exception as e:  # noqa: BLE001
                res["graph"] = None
                if rank == 0:
                    emit({**common, "kind": "latency", "mode": "graph", "bytes": nbytes, "available": False,
                          "reason": f"{type(e).__name__}: {e}"})
                torch.cuda.synchronize()

        if rank == 0:
            for mode, v in res.items():
                if v is None:
                    continue
                us_med, us_mean = v
                algbw = nbytes / (us_med * 1e-6) / 1e9
                emit({**common, "kind": "latency", "mode": mode, "bytes": nbytes, "numel": numel,
                      "us_median": us_med, "us_mean": us_mean, "algbw_gbps": algbw, "busbw_gbps": algbw * busf,
                      "iters": args.iters, "graph_ops": args.graph_ops if mode == "graph" else None})
        rows.append((nbytes, res))
        del x
        torch.cuda.empty_cache()

    if rank == 0:
        print()
        print(f"{PROG}: NCCL all_reduce (bf16, sum, in place) through torch.distributed")
        print(f"  ranks      {world} x {dev_name}; torch {torch.__version__}; NCCL {nccl_version}; "
              f"NCCL_NVLS_ENABLE={os.environ.get('NCCL_NVLS_ENABLE')}")
        print(f"  timing     median of per-call CUDA events (graph: per replay / {args.graph_ops} ops); "
              "mean = back-to-back wall clock; slowest rank")
        print()
        print(f"  {'bytes':>10} | {'eager us':>9} | {'eager mean':>10} | {'graph us':>9} | {'graph mean':>10} | "
              f"{'busbw GB/s':>10}")
        print("  " + "-" * 74)
        for nbytes, res in rows:
            e = res["eager"]
            g = res.get("graph")
            gm = "-" if not g else f"{g[0]:.2f}"
            gmn = "-" if not g else f"{g[1]:.2f}"
            best = min(e[0], g[0]) if g else e[0]
            bus = nbytes / (best * 1e-6) / 1e9 * busf
            print(f"  {nbytes:>10} | {e[0]:>9.2f} | {e[1]:>10.2f} | {gm:>9} | {gmn:>10} | {bus:>10.1f}")
        print()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
