//! All-reduce latency sweep on every visible GPU (a `harness = false` bench binary): the
//! measurement table of the multi-GPU issue, runnable on any number of GPUs (one rank per GPU,
//! ranks as threads of this process).
//!
//! Per size (bf16, sum, in place; 2 KiB x 4^k up to 32 MiB, and 64 MiB):
//! * `symmem_sym`: `group.all_reduce` on a buffer allocated in a window (symmetric memory);
//! * `symmem_plain`: the same on a buffer of the default pool (NCCL's ordinary path);
//! * `raw_registered`: raw `ncclAllReduce` on an `ncclMemAlloc` buffer registered by hand with
//!   `ncclCommWindowRegister(..., NCCL_WIN_COLL_SYMMETRIC)` on the same communicator and stream
//!   (the reference symmem's symmetric path must match: target within 1.02x);
//! * `graph_sym`, `graph_raw`: 8 all-reduces captured in one CUDA graph, replayed, per operation.
//!
//! Each measurement: 7 rounds of (barrier, `n` back-to-back operations, synchronise); the time
//! per operation is the median over rounds on each rank and the slowest rank's is reported.
//! Before timing, each variant is checked once: every rank's buffer of `rank + 1` must all-reduce
//! to `N (N + 1) / 2` everywhere. The runtime puts `NCCL_NVLS_ENABLE=0` in the environment
//! before the first communicator (unless it is set). Prints a table and one
//! `RESULT {json}` line per measurement. Without a GPU: `skipped: no GPU` (exit 1 with
//! `SYMMEM_REQUIRE_GPU=1`). `--sizes 2048,8192` restricts the sizes (bytes).
//!
//! Run: `cargo bench --bench cuda_allreduce` (or the binary staged by `scripts/gpu-run.sh`).
//! To see which NCCL kernels run, add `NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=TUNING`.

use std::ffi::c_void;
use std::time::Instant;

use symmem::cuda::{self, cudarc::nccl::sys as nccl, nccl_comm, NCCL_WIN_COLL_SYMMETRIC};
use symmem::{bf16, capture, Buffer, Group, RankConfig, RankContext, ReduceOp};

const ROUNDS: usize = 7;
const GRAPH_OPS: usize = 8;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ops_for(bytes: usize) -> usize {
    match bytes {
        b if b <= 512 << 10 => 200,
        b if b <= 8 << 20 => 50,
        _ => 10,
    }
}

/// Median over rounds of the per-operation time (µs) of `n` calls of `op`, aligned across ranks.
fn time_us(world: &Group, n: usize, mut op: impl FnMut()) -> f64 {
    for _ in 0..5 {
        op();
    }
    median(
        (0..ROUNDS)
            .map(|_| {
                world.barrier().expect("barrier");
                symmem::synchronize().expect("synchronize");
                let t = Instant::now();
                for _ in 0..n {
                    op();
                }
                symmem::synchronize().expect("synchronize");
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            })
            .collect(),
    )
}

/// An `ncclMemAlloc` buffer registered by hand as a symmetric window (collective).
struct RawWindow {
    ptr: *mut c_void,
    win: nccl::ncclWindow_t,
    comm: nccl::ncclComm_t,
}

impl RawWindow {
    fn new(comm: nccl::ncclComm_t, bytes: usize) -> Self {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: out-parameter; the rank's CUDA context is current on this thread.
        let r = unsafe { nccl::ncclMemAlloc(&mut ptr, bytes) };
        assert_eq!(r, nccl::ncclResult_t::ncclSuccess, "ncclMemAlloc");
        let mut win: nccl::ncclWindow_t = std::ptr::null_mut();
        // SAFETY: a live ncclMemAlloc allocation of `bytes`; every rank registers in lockstep.
        let r = unsafe {
            nccl::ncclCommWindowRegister(comm, ptr, bytes, &mut win, NCCL_WIN_COLL_SYMMETRIC)
        };
        assert_eq!(r, nccl::ncclResult_t::ncclSuccess, "ncclCommWindowRegister");
        RawWindow { ptr, win, comm }
    }
}

impl Drop for RawWindow {
    fn drop(&mut self) {
        // SAFETY: the stream was synchronised by the caller; ours.
        unsafe {
            if !self.win.is_null() {
                nccl::ncclCommWindowDeregister(self.comm, self.win);
            }
            nccl::ncclMemFree(self.ptr);
        }
    }
}

fn check(name: &str, world: &Group, buf: &mut Buffer<bf16>, rank: usize) {
    let n = world.size() as f32;
    buf.copy_from_host(&vec![bf16::from_f32(rank as f32 + 1.0); buf.len()])
        .expect("fill");
    world.all_reduce(buf, ReduceOp::Sum).expect("all_reduce");
    let want = bf16::from_f32(n * (n + 1.0) / 2.0);
    let got = buf.to_host_vec().expect("read back");
    assert!(
        got.iter().all(|&x| x == want),
        "{name}: all-reduce of rank + 1 over {n} ranks is not {want} everywhere"
    );
}

struct Row {
    variant: &'static str,
    bytes: usize,
    us: f64,
}

fn bench_rank(ctx: &RankContext, sizes: &[usize]) -> Vec<Row> {
    let world = ctx.world();
    let rank = ctx.rank();
    let comm = nccl_comm(&world).expect("a CUDA group has an NCCL communicator");
    // symmem's handle type; cudarc's NCCL bindings take their own (the same pointer).
    let raw = comm.raw_comm() as nccl::ncclComm_t;
    let cu_stream = cuda::cuda_stream(ctx).expect("a CUDA stream").cu_stream();
    let max = sizes.iter().copied().max().unwrap_or(0);
    world.reserve_symmetric(max + (1 << 20)).expect("reserve");
    let mut rows = Vec::new();
    for &bytes in sizes {
        let count = bytes / 2;
        let n = ops_for(bytes);
        let mut sym = {
            let _w = world.window();
            symmem::alloc_zeroed::<bf16>(count).expect("symmetric buffer")
        };
        let mut plain = symmem::alloc_zeroed::<bf16>(count).expect("plain buffer");
        check("symmem_sym", &world, &mut sym, rank);
        check("symmem_plain", &world, &mut plain, rank);
        let rw = RawWindow::new(raw, bytes);
        let raw_op = || {
            // SAFETY: `rw` holds `bytes` bytes of registered memory on this rank's GPU.
            let r = unsafe {
                nccl::ncclAllReduce(
                    rw.ptr,
                    rw.ptr,
                    count,
                    nccl::ncclDataType_t::ncclBfloat16,
                    nccl::ncclRedOp_t::ncclSum,
                    raw,
                    cu_stream as nccl::cudaStream_t,
                )
            };
            assert_eq!(r, nccl::ncclResult_t::ncclSuccess, "ncclAllReduce");
        };
        let us = time_us(&world, n, || {
            world
                .all_reduce(&mut sym, ReduceOp::Sum)
                .expect("all_reduce")
        });
        rows.push(Row {
            variant: "symmem_sym",
            bytes,
            us,
        });
        let us = time_us(&world, n, || {
            world
                .all_reduce(&mut plain, ReduceOp::Sum)
                .expect("all_reduce")
        });
        rows.push(Row {
            variant: "symmem_plain",
            bytes,
            us,
        });
        let us = time_us(&world, n, raw_op);
        rows.push(Row {
            variant: "raw_registered",
            bytes,
            us,
        });
        let (mut g, ()) = capture(|| {
            for _ in 0..GRAPH_OPS {
                world.all_reduce(&mut sym, ReduceOp::Sum)?;
            }
            Ok(())
        })
        .expect("capture symmem");
        let us = time_us(&world, n.div_ceil(GRAPH_OPS), || {
            g.replay().expect("replay")
        });
        rows.push(Row {
            variant: "graph_sym",
            bytes,
            us: us / GRAPH_OPS as f64,
        });
        drop(g);
        let (mut g, ()) = capture(|| {
            for _ in 0..GRAPH_OPS {
                raw_op();
            }
            Ok(())
        })
        .expect("capture raw");
        let us = time_us(&world, n.div_ceil(GRAPH_OPS), || {
            g.replay().expect("replay")
        });
        rows.push(Row {
            variant: "graph_raw",
            bytes,
            us: us / GRAPH_OPS as f64,
        });
        drop(g);
        symmem::synchronize().expect("synchronize");
        drop(rw);
    }
    rows
}

fn parse_sizes() -> Vec<usize> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--sizes" {
            let list = args.next().unwrap_or_default();
            let sizes: Vec<usize> = list
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .filter(|&b: &usize| b >= 2 && b % 2 == 0)
                .collect();
            if sizes.is_empty() {
                eprintln!("cuda_allreduce: --sizes wants even byte counts, like 2048,8192");
                std::process::exit(2);
            }
            return sizes;
        }
    }
    let mut v: Vec<usize> = (0..=7).map(|k| 2048usize << (2 * k)).collect();
    v.push(64 << 20);
    v
}

fn main() {
    let sizes = parse_sizes();
    let report = symmem::detect();
    if let Some(why) = report.why_not_cuda(1) {
        println!("skipped: no GPU ({why})");
        if std::env::var("SYMMEM_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            std::process::exit(1);
        }
        return;
    }
    let gpus = cuda::gpu_count().unwrap_or(1).max(1);
    println!("# symmem cuda_allreduce: {report}; ranks: {gpus} (one per GPU)");
    let out = cuda::run_threads(gpus, RankConfig::new().with_validate(false), |ctx| {
        bench_rank(ctx, &sizes)
    });
    let per_rank = match out {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cuda_allreduce: {e}");
            std::process::exit(1);
        }
    };
    // Slowest rank per (variant, size).
    let mut rows: Vec<Row> = Vec::new();
    for r in per_rank.into_iter().flatten() {
        match rows
            .iter_mut()
            .find(|x| x.variant == r.variant && x.bytes == r.bytes)
        {
            Some(x) => x.us = x.us.max(r.us),
            None => rows.push(r),
        }
    }
    for r in &rows {
        println!(
            "RESULT {{\"bench\":\"cuda_allreduce\",\"ranks\":{gpus},\"dtype\":\"bf16\",\"variant\":\"{}\",\"bytes\":{},\"us\":{:.3}}}",
            r.variant, r.bytes, r.us
        );
    }
    println!(
        "\n{:>10} | {:>10} {:>12} {:>14} {:>10} {:>10} | {:>9} {:>9}",
        "bytes",
        "sym us",
        "plain us",
        "raw reg us",
        "graph sym",
        "graph raw",
        "sym/raw",
        "g sym/raw"
    );
    for &bytes in &sizes {
        let get = |v: &str| {
            rows.iter()
                .find(|r| r.variant == v && r.bytes == bytes)
                .map_or(f64::NAN, |r| r.us)
        };
        let (s, p, w, gs, gw) = (
            get("symmem_sym"),
            get("symmem_plain"),
            get("raw_registered"),
            get("graph_sym"),
            get("graph_raw"),
        );
        println!(
            "{bytes:>10} | {s:>10.2} {p:>12.2} {w:>14.2} {gs:>10.2} {gw:>10.2} | {:>9.3} {:>9.3}",
            s / w,
            gs / gw
        );
    }
}
