//! GPU micro-benchmarks of the CUDA backend (a `harness = false` bench binary).
//!
//! * window enter + exit;
//! * window + 8 KiB allocation + free from a warm symmetric pool, and the same from the default
//!   pool (no window);
//! * one-rank all-reduce launch cost through symmem vs a raw `ncclAllReduce` on the same
//!   registered buffer and stream (N back-to-back launches, then one synchronisation; reported
//!   per launch; the two paths alternate over 101 rounds and the ratio is the median of the
//!   per-round ratios, the difference the median of the per-round differences), for a few
//!   sizes, plus the replay of a captured graph of one all-reduce. The raw call is
//!   `ncclAllReduce` through its address in the library (as C calls it); symmem is also compared
//!   with cudarc's wrapper of it, and its communicator layer alone with the raw call.
//!
//! Each measurement is the median of several repeats. Prints a table and one
//! `RESULT {json}` line per measurement. Without a GPU it prints `skipped: no GPU` and exits 0
//! (exit 1 with `SYMMEM_REQUIRE_GPU=1`).
//!
//! Run: `cargo bench --bench cuda_bench` (or the binary from `scripts/gpu-run.sh`).

use std::hint::black_box;
use std::time::Instant;

use symmem::cuda::{self, cudarc::nccl::sys as nccl, nccl_comm};
use symmem::{Group, RankConfig, ReduceOp};

const REPEATS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median over repeats of the per-iteration time (ns) of `iters` calls of `f`.
fn time_ns(iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters.min(1000) {
        f();
    }
    median(
        (0..REPEATS)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                t.elapsed().as_nanos() as f64 / iters as f64
            })
            .collect(),
    )
}

struct Row {
    name: String,
    value: f64,
    unit: &'static str,
    json: String,
}

fn row(rows: &mut Vec<Row>, name: String, value: f64, unit: &'static str, extra: &str) {
    let json = format!("{{\"bench\":\"{name}\",\"value\":{value:.3},\"unit\":\"{unit}\"{extra}}}");
    println!("RESULT {json}");
    rows.push(Row {
        name,
        value,
        unit,
        json,
    });
}

/// Per-launch cost (µs) of `n` back-to-back launches followed by one synchronisation.
fn launches_us_once(n: usize, launch: &mut impl FnMut(), sync: &impl Fn()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        launch();
    }
    sync();
    t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
}

/// Two launch paths measured in alternation.
struct Paired {
    /// Median per-launch cost of the first path (µs).
    a_us: f64,
    /// Median per-launch cost of the second path (µs).
    b_us: f64,
    /// Median of the per-round ratios `a / b`.
    ratio: f64,
    /// Median of the per-round differences `a - b`, per launch (ns).
    diff_ns: f64,
}

/// Rounds of a paired measurement. A round is `n` launches of each path (about 0.4 ms at
/// n = 1000), so many rounds are cheap; they make the median ratio stable to well under 1%.
const ROUNDS: usize = 101;

/// Two launch paths measured in alternation (`ROUNDS` rounds, the order swapped every round,
/// so drift of clocks or queue state hits both alike).
fn launches_paired(n: usize, mut a: impl FnMut(), mut b: impl FnMut(), sync: impl Fn()) -> Paired {
    for _ in 0..200 {
        a();
        b();
    }
    sync();
    let (mut ta, mut tb, mut ratio, mut diff) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (x, y) = if round % 2 == 0 {
            let x = launches_us_once(n, &mut a, &sync);
            (x, launches_us_once(n, &mut b, &sync))
        } else {
            let y = launches_us_once(n, &mut b, &sync);
            (launches_us_once(n, &mut a, &sync), y)
        };
        ta.push(x);
        tb.push(y);
        ratio.push(x / y);
        diff.push((x - y) * 1000.0);
    }
    Paired {
        a_us: median(ta),
        b_us: median(tb),
        ratio: median(ratio),
        diff_ns: median(diff),
    }
}

/// Per-launch cost (µs) of `n` back-to-back launches followed by one synchronisation.
fn launches_us(n: usize, mut launch: impl FnMut(), sync: impl Fn()) -> f64 {
    for _ in 0..20 {
        launch();
    }
    sync();
    median(
        (0..REPEATS)
            .map(|_| launches_us_once(n, &mut launch, &sync))
            .collect(),
    )
}

/// The raw call inside one more (non-inlined) function: the control for a call frame.
#[inline(never)]
fn raw_call_frame(
    f: unsafe extern "C" fn(
        *const std::ffi::c_void,
        *mut std::ffi::c_void,
        usize,
        nccl::ncclDataType_t,
        nccl::ncclRedOp_t,
        nccl::ncclComm_t,
        nccl::cudaStream_t,
    ) -> nccl::ncclResult_t,
    ptr: u64,
    count: usize,
    comm: nccl::ncclComm_t,
    stream: nccl::cudaStream_t,
) {
    // SAFETY: the caller passes a live registered buffer of `count` f32, its communicator and
    // stream.
    let r = unsafe {
        f(
            ptr as *const std::ffi::c_void,
            ptr as *mut std::ffi::c_void,
            count,
            nccl::ncclDataType_t::ncclFloat32,
            nccl::ncclRedOp_t::ncclSum,
            comm,
            stream,
        )
    };
    assert_eq!(r, nccl::ncclResult_t::ncclSuccess);
}

/// Run `f` with the stack `depth * 128` bytes deeper.
#[inline(never)]
fn at_stack_depth(depth: usize, f: &mut dyn FnMut() -> f64) -> f64 {
    if depth == 0 {
        return f();
    }
    let pad = black_box([0u8; 128]);
    let r = at_stack_depth(depth - 1, f);
    black_box(&pad);
    r
}

/// `f` (a timing, ns) at 32 stack depths 128 bytes apart: (median, slowest).
fn over_stack_depths(mut f: impl FnMut() -> f64) -> (f64, f64) {
    let v: Vec<f64> = (0..32).map(|d| at_stack_depth(d, &mut f)).collect();
    let worst = v.iter().copied().fold(0.0, f64::max);
    (median(v), worst)
}

fn bench_rank(world: &Group, device: &str, rows: &mut Vec<Row>) {
    let dev = format!(",\"device\":\"{}\"", device.replace('"', "'"));
    // Window enter + exit, and window + allocation + free, at 32 depths of the stack 128 bytes
    // apart (4 KiB in all): how fast a loop of them runs depends on where the caller's stack
    // lies relative to the thread-local routing state (loads and stores 4 KiB apart are
    // falsely ordered by the CPU), which no library controls. Reported: the median over the
    // depths, and the slowest depth.
    let (ns, worst) = over_stack_depths(|| {
        time_ns(200_000, || {
            let w = world.window();
            black_box(&w);
        })
    });
    row(
        rows,
        "window_enter_exit".into(),
        ns,
        "ns (median of 32 stack depths)",
        &dev,
    );
    row(
        rows,
        "window_enter_exit_slowest_depth".into(),
        worst,
        "ns",
        &dev,
    );

    // What this host's CPU charges for the primitives the allocation path is made of (to read
    // the window + allocation figure against the development machine's): one uncontended
    // compare-and-swap + release store (the pool lock, taken once on allocation and once on
    // free), and an `Arc` clone + drop.
    let flag = std::sync::atomic::AtomicBool::new(false);
    let ns = time_ns(2_000_000, || {
        let f = black_box(&flag);
        while f
            .compare_exchange_weak(
                false,
                true,
                std::sync::atomic::Ordering::Acquire,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_err()
        {}
        f.store(false, std::sync::atomic::Ordering::Release);
    });
    row(rows, "cpu_cas_lock_unlock".into(), ns, "ns", &dev);
    let arc = std::sync::Arc::new(0u64);
    let ns = time_ns(2_000_000, || {
        let c = black_box(&arc).clone();
        black_box(&c);
    });
    row(rows, "cpu_arc_clone_drop".into(), ns, "ns", &dev);

    // Warm pools.
    world.reserve_symmetric(64 << 20).unwrap();
    drop(symmem::alloc::<u8>(8192).unwrap());
    let (ns, worst) = over_stack_depths(|| {
        time_ns(100_000, || {
            let _w = world.window();
            let b = symmem::alloc::<u8>(8192).unwrap();
            black_box(&b);
        })
    });
    row(
        rows,
        "window_alloc_free_8KiB_symmetric".into(),
        ns,
        "ns (median of 32 stack depths)",
        &dev,
    );
    row(
        rows,
        "window_alloc_free_8KiB_symmetric_slowest_depth".into(),
        worst,
        "ns",
        &dev,
    );
    let ns = time_ns(200_000, || {
        let b = symmem::alloc::<u8>(8192).unwrap();
        black_box(&b);
    });
    row(rows, "alloc_free_8KiB_default_pool".into(), ns, "ns", &dev);

    // All-reduce launches: symmem vs raw NCCL on the same registered buffer and stream. The
    // raw baseline is the strictest one: `ncclAllReduce` called through its address in the
    // loaded library, as C code calls it (cudarc's own wrapper adds a call and a lookup per
    // launch; symmem is also compared with it).
    let comm = nccl_comm(world).expect("a CUDA group has an NCCL communicator");
    // symmem's handle type; cudarc's NCCL bindings take their own (the same pointer).
    let raw = comm.raw_comm() as nccl::ncclComm_t;
    type AllReduceFn = unsafe extern "C" fn(
        *const std::ffi::c_void,
        *mut std::ffi::c_void,
        usize,
        nccl::ncclDataType_t,
        nccl::ncclRedOp_t,
        nccl::ncclComm_t,
        nccl::cudaStream_t,
    ) -> nccl::ncclResult_t;
    // SAFETY: the library is loaded (the communicator exists); the symbol has this signature.
    let direct: AllReduceFn = unsafe {
        *nccl::culib()
            .get::<AllReduceFn>(b"ncclAllReduce\0")
            .expect("libnccl exports ncclAllReduce")
    };
    let stream = symmem::current_stream().unwrap();
    let cu_stream = stream
        .backend()
        .as_any()
        .downcast_ref::<cuda::CudaRankStream>()
        .expect("a CUDA rank stream")
        .cu_stream();
    let sync = || symmem::synchronize().unwrap();
    for &bytes in &[8usize << 10, 256 << 10, 4 << 20] {
        let count = bytes / 4;
        let mut buf = {
            let _w = world.window();
            symmem::alloc_zeroed::<f32>(count).unwrap()
        };
        let symmetric = buf.is_symmetric();
        let ptr = buf.device_ptr();
        let n = 1000;
        let raw_direct = || {
            // SAFETY: `buf` is a live registered buffer of `count` f32 on this rank's GPU.
            let r = unsafe {
                direct(
                    ptr as *const std::ffi::c_void,
                    ptr as *mut std::ffi::c_void,
                    count,
                    nccl::ncclDataType_t::ncclFloat32,
                    nccl::ncclRedOp_t::ncclSum,
                    raw,
                    cu_stream as nccl::cudaStream_t,
                )
            };
            assert_eq!(r, nccl::ncclResult_t::ncclSuccess);
        };
        let raw_cudarc = || {
            // SAFETY: as above.
            let r = unsafe {
                nccl::ncclAllReduce(
                    ptr as *const std::ffi::c_void,
                    ptr as *mut std::ffi::c_void,
                    count,
                    nccl::ncclDataType_t::ncclFloat32,
                    nccl::ncclRedOp_t::ncclSum,
                    raw,
                    cu_stream as nccl::cudaStream_t,
                )
            };
            assert_eq!(r, nccl::ncclResult_t::ncclSuccess);
        };
        let full = launches_paired(
            n,
            || world.all_reduce(&mut buf, ReduceOp::Sum).unwrap(),
            raw_direct,
            sync,
        );
        let vs_cudarc = launches_paired(
            n,
            || world.all_reduce(&mut buf, ReduceOp::Sum).unwrap(),
            raw_cudarc,
            sync,
        );
        // Where the difference goes: the communicator layer alone (symmem's NCCL wrapper,
        // called through the backend trait, without the group's operand checks), paired
        // with the raw call the same way.
        let operand = symmem::backend::Operand { ptr, sym: None };
        let backend = stream.backend().clone();
        let world_comm = world.comm().clone();
        let comm_layer = launches_paired(
            n,
            || {
                world_comm
                    .all_reduce(
                        backend.as_ref(),
                        operand,
                        operand,
                        count,
                        symmem::DType::F32,
                        ReduceOp::Sum,
                    )
                    .unwrap()
            },
            raw_direct,
            sync,
        );
        // What this host charges for one more call frame around the raw call (a non-inlined
        // Rust function, and a call through a trait object): the scale against which the
        // layers above are read.
        let frame = launches_paired(
            n,
            || raw_call_frame(direct, ptr, count, raw, cu_stream as nccl::cudaStream_t),
            raw_direct,
            sync,
        );
        let dyn_raw: &dyn Fn() = &raw_direct;
        let virt = launches_paired(n, || black_box(dyn_raw)(), raw_direct, sync);
        let (mut graph, ()) =
            symmem::capture(|| world.all_reduce(&mut buf, ReduceOp::Sum)).unwrap();
        let us_graph = launches_us(n, || graph.replay().unwrap(), sync);
        let extra = format!(
            "{dev},\"bytes\":{bytes},\"symmetric\":{symmetric},\"launches\":{n},\"rounds\":{ROUNDS}"
        );
        let kib = bytes >> 10;
        let ratio_unit = "ratio (median of paired rounds)";
        for (name, value, unit) in [
            ("symmem", full.a_us, "us/launch"),
            ("raw_nccl", full.b_us, "us/launch"),
            ("symmem_over_raw", full.ratio, ratio_unit),
            (
                "symmem_minus_raw",
                full.diff_ns,
                "ns/launch (median of paired rounds)",
            ),
            ("raw_cudarc", vs_cudarc.b_us, "us/launch"),
            ("symmem_over_raw_cudarc", vs_cudarc.ratio, ratio_unit),
            ("comm_layer_over_raw", comm_layer.ratio, ratio_unit),
            (
                "comm_layer_minus_raw",
                comm_layer.diff_ns,
                "ns/launch (median of paired rounds)",
            ),
            ("control_frame_over_raw", frame.ratio, ratio_unit),
            ("control_dyn_over_raw", virt.ratio, ratio_unit),
            ("graph_replay", us_graph, "us/launch"),
        ] {
            row(
                rows,
                format!("all_reduce_{kib}KiB_{name}"),
                value,
                unit,
                &extra,
            );
        }
    }
}

fn main() {
    let report = symmem::detect();
    if let Some(why) = report.why_not_cuda(1) {
        println!("skipped: no GPU ({why})");
        if std::env::var("SYMMEM_REQUIRE_GPU")
            .map(|v| v == "1")
            .unwrap_or(false)
        {
            std::process::exit(1);
        }
        return;
    }
    println!("# symmem cuda_bench: {report}");
    let out = cuda::run_threads(1, RankConfig::new().with_validate(false), |ctx| {
        let mut rows = Vec::new();
        bench_rank(&ctx.world(), &ctx.device().describe(), &mut rows);
        rows
    });
    let rows = match out {
        Ok(mut r) => r.remove(0),
        Err(e) => {
            eprintln!("cuda_bench: {e}");
            std::process::exit(1);
        }
    };
    println!("\n{:<40} {:>14}  unit", "benchmark (median of 9)", "value");
    for r in &rows {
        println!("{:<40} {:>14.3}  {}", r.name, r.value, r.unit);
    }
    if let Ok(path) = std::env::var("SYMMEM_BENCH_JSON") {
        let body = rows
            .iter()
            .map(|r| r.json.clone())
            .collect::<Vec<_>>()
            .join(",\n");
        if let Err(e) = std::fs::write(&path, format!("[\n{body}\n]\n")) {
            eprintln!("cuda_bench: could not write {path}: {e}");
        }
    }
}
