//! GPU suite of the CUDA/NCCL backend, through the facade.
//!
//! Without a usable GPU every GPU test prints a visible `skipped: no GPU (...)` line and returns
//! (so CI machines pass); with `SYMMEM_REQUIRE_GPU=1` (set by `scripts/gpu-run.sh` on the GPU
//! machine) a missing GPU is a failure instead. The tests are written for any number of GPUs:
//! world-sized tests use one rank per visible GPU, and one-rank groups run on every machine.
//! GPU tests run one at a time (a process-wide lock), so memory measurements are not disturbed.

#![cfg(feature = "cuda")]

use std::io::Write;
use std::sync::{Mutex, MutexGuard};

use symmem::cuda::cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use symmem::cuda::{self, cuda_context, cuda_stream, gpu_count, BufferCudaExt};
use symmem::launch::{detect, run, BackendChoice};
use symmem::{
    bf16, f16, BackendKind, Buffer, DType, Element, Error, RankConfig, RankContext, ReduceOp,
};

static GPU: Mutex<()> = Mutex::new(());

/// The runtime's log (the NCCL line, fallbacks, segments with `RUST_LOG=symmem=debug`) in the
/// test output: `symmem=info` unless `RUST_LOG` says otherwise.
fn log_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("symmem=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Visible line, not swallowed by the test harness's output capture.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The number of GPUs, or `None` after printing the skip line (a failure when
/// `SYMMEM_REQUIRE_GPU=1`). Holds the GPU lock while the test runs.
fn gpus(test: &str) -> Option<(usize, MutexGuard<'static, ()>)> {
    let guard = GPU.lock().unwrap_or_else(|e| e.into_inner());
    log_once();
    let report = detect();
    let require = std::env::var("SYMMEM_REQUIRE_GPU")
        .map(|v| v == "1")
        .unwrap_or(false);
    match report.why_not_cuda(1) {
        None => Some((
            gpu_count().expect("gpu_count after a positive detect"),
            guard,
        )),
        Some(why) => {
            if require {
                panic!("{test}: SYMMEM_REQUIRE_GPU=1 but no GPU can be used: {why} ({report})");
            }
            say(&format!("skipped: no GPU ({test}: {why})"));
            None
        }
    }
}

fn cfg() -> RankConfig {
    RankConfig::new().with_validate(false)
}

/// Deterministic small integers (exact in every element type, also after sums of a few ranks).
fn pattern(rank: usize, n: usize, salt: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i * 7 + rank * 3 + salt * 5) % 9) as f64) - 2.0)
        .collect()
}

fn positive(rank: usize, n: usize, salt: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i + rank + salt) % 3) + 1) as f64)
        .collect()
}

fn to<T: Element>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

// ------------------------------------------------------------------------------------------
// Backend selection (runs everywhere, GPU or not)
// ------------------------------------------------------------------------------------------

#[test]
fn backend_selection_is_clear_without_enough_gpus() {
    let report = detect();
    say(&format!("symmem backend report: {report}"));
    if let Ok(info) = symmem::cuda::probe::probe_nccl() {
        // The pip package ships only libnccl.so.2: symmem loads that name first.
        say(&format!(
            "NCCL loaded as {} ({})",
            info.name,
            info.path
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
        assert_eq!(info.name, "libnccl.so.2");
    }
    let too_many = report.gpus + 1;
    // Auto falls back to the host backend, with a reason.
    let why = report
        .why_not_cuda(too_many)
        .expect("more ranks than GPUs cannot run on CUDA");
    assert!(!why.is_empty());
    let kinds = run(BackendChoice::Auto, too_many, cfg(), |ctx| {
        ctx.backend_kind()
    })
    .unwrap();
    assert!(kinds.iter().all(|k| *k == BackendKind::Host));
    // Forcing CUDA is an error that says why, never a panic.
    let err = run(BackendChoice::Cuda, too_many, cfg(), |_| ()).unwrap_err();
    assert!(matches!(err, Error::BackendUnavailable(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("CUDA") || msg.contains("GPU"), "{msg}");
    // So does the CUDA launcher itself.
    let err = cuda::run_threads(too_many, cfg(), |_| ()).unwrap_err();
    assert!(matches!(err, Error::BackendUnavailable(_)), "{err}");
    if report.why_not_cuda(1).is_some() {
        say(&format!(
            "skipped: no GPU (backend selection ran on the host: {})",
            report.why_not_cuda(1).unwrap_or_default()
        ));
        assert!(gpu_count().map(|n| n == 0).unwrap_or(true));
    }
}

#[test]
fn backend_choice_from_env_text() {
    assert_eq!(
        "cuda".parse::<BackendChoice>().unwrap(),
        BackendChoice::Cuda
    );
    assert_eq!(
        "Host".parse::<BackendChoice>().unwrap(),
        BackendChoice::Host
    );
    assert!("vulkan".parse::<BackendChoice>().is_err());
}

// ------------------------------------------------------------------------------------------
// Symmetric memory
// ------------------------------------------------------------------------------------------

#[test]
fn window_allocations_are_registered_symmetric_memory() {
    let Some((n, _g)) = gpus("window_allocations_are_registered_symmetric_memory") else {
        return;
    };
    let windows = detect().symmetric_windows;
    let out = cuda::run_threads(n, cfg(), |ctx| {
        let world = ctx.world();
        let b = {
            let _w = world.window();
            symmem::alloc::<f32>(1 << 16).unwrap()
        };
        let plain = symmem::alloc::<f32>(1 << 16).unwrap();
        assert!(!plain.is_symmetric());
        if windows {
            assert!(world.symmetric_supported(), "NCCL returned a NULL window");
            assert!(b.is_symmetric());
            let info = b.symmetric().unwrap();
            assert_eq!(&*info.group, "world");
        } else {
            assert!(!b.is_symmetric());
        }
        // The group's all-reduce launches through the communicator's direct entry (no trait
        // dispatch: `docs/design.md`, "The launch path"); a split group's too.
        let stream = symmem::current_stream().unwrap();
        assert!(
            world
                .comm()
                .direct_all_reduce(stream.backend().as_ref())
                .is_some(),
            "an NCCL communicator offers a direct all-reduce entry on its rank stream"
        );
        let tp = ctx
            .split_group("direct_tp", &world, 0, ctx.rank() as u32)
            .unwrap();
        assert!(tp
            .comm()
            .direct_all_reduce(stream.backend().as_ref())
            .is_some());
        let stats = world.stats();
        assert!(
            stats.reserved_bytes >= 2 << 20,
            "segments are rounded to the allocation granularity"
        );
        assert_eq!(stats.reserved_bytes % (2 << 20), 0);
        // Same offsets on every rank.
        b.symmetric().map(|s| (s.window, s.offset))
    })
    .unwrap();
    assert!(out.windows(2).all(|w| w[0] == w[1]));
    say(&format!(
        "symmetric windows: {windows}, {n} rank(s), placement {:?}",
        out[0]
    ));
}

#[test]
fn one_rank_groups_work_on_every_gpu_count() {
    let Some((n, _g)) = gpus("one_rank_groups_work_on_every_gpu_count") else {
        return;
    };
    cuda::run_threads(n, cfg(), |ctx| {
        let solo = ctx
            .split_group("solo", &ctx.world(), ctx.rank() as u32, 0)
            .unwrap();
        assert_eq!(solo.size(), 1);
        let mut b = {
            let _w = solo.window();
            symmem::alloc_from_host(&[ctx.rank() as f32 + 1.5; 1000]).unwrap()
        };
        solo.all_reduce(&mut b, ReduceOp::Sum).unwrap();
        assert_eq!(
            b.to_host_vec().unwrap(),
            vec![ctx.rank() as f32 + 1.5; 1000]
        );
        if n >= 2 {
            let pairs = ctx
                .split_group(
                    "pairs",
                    &ctx.world(),
                    (ctx.rank() / 2) as u32,
                    ctx.rank() as u32,
                )
                .unwrap();
            let mut x = {
                let _w = pairs.window();
                symmem::alloc_from_host(&[1i32; 64]).unwrap()
            };
            pairs.all_reduce(&mut x, ReduceOp::Sum).unwrap();
            assert_eq!(x.to_host_vec().unwrap(), vec![pairs.size() as i32; 64]);
        }
    })
    .unwrap();
}

// ------------------------------------------------------------------------------------------
// Collectives against host references
// ------------------------------------------------------------------------------------------

fn reference_reduce<T: Element>(inputs: &[Vec<T>], op: ReduceOp) -> Vec<T> {
    let mut acc = inputs[0].clone();
    for inp in &inputs[1..] {
        for (a, b) in acc.iter_mut().zip(inp) {
            *a = T::combine(*a, *b, op);
        }
    }
    if op == ReduceOp::Avg {
        for a in &mut acc {
            *a = T::div_count(*a, inputs.len());
        }
    }
    acc
}

fn check_dtype<T: Element>(ctx: &RankContext, symmetric: bool) {
    let world = ctx.world();
    let (r, n) = (ctx.rank(), ctx.world_size());
    let len = 1000 + 37;
    let alloc = |v: &[T]| -> Buffer<T> {
        let _w = symmetric.then(|| world.window());
        symmem::alloc_from_host(v).unwrap()
    };
    let ops: &[ReduceOp] = &[
        ReduceOp::Sum,
        ReduceOp::Prod,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Avg,
    ];
    for (salt, &op) in ops.iter().enumerate() {
        let gen = |q: usize| -> Vec<T> {
            if op == ReduceOp::Prod
                || T::DTYPE == DType::U8
                || T::DTYPE == DType::U32
                || T::DTYPE == DType::U64
            {
                to::<T>(&positive(q, len, salt))
            } else {
                to::<T>(&pattern(q, len, salt))
            }
        };
        let inputs: Vec<Vec<T>> = (0..n).map(gen).collect();
        let want = reference_reduce(&inputs, op);
        // In place.
        let mut b = alloc(&inputs[r]);
        assert_eq!(b.is_symmetric(), symmetric && world.symmetric_supported());
        world.all_reduce(&mut b, op).unwrap();
        assert_eq!(
            b.to_host_vec().unwrap(),
            want,
            "all_reduce {:?} {op:?} symmetric={symmetric}",
            T::DTYPE
        );
        // Out of place.
        let src = alloc(&inputs[r]);
        let mut dst = alloc(&vec![T::ZERO; len]);
        world.all_reduce_into(&src, &mut dst, op).unwrap();
        assert_eq!(
            dst.to_host_vec().unwrap(),
            want,
            "all_reduce_into {:?} {op:?}",
            T::DTYPE
        );
        // Reduce-scatter: every rank contributes n * chunk elements.
        let chunk = 129;
        let rs_inputs: Vec<Vec<T>> = (0..n)
            .map(|q| to::<T>(&positive(q, chunk * n, salt)))
            .collect();
        let rs_full = reference_reduce(&rs_inputs, op);
        let src = alloc(&rs_inputs[r]);
        let mut dst = alloc(&vec![T::ZERO; chunk]);
        world.reduce_scatter(&src, &mut dst, op).unwrap();
        assert_eq!(
            dst.to_host_vec().unwrap(),
            rs_full[r * chunk..(r + 1) * chunk].to_vec(),
            "reduce_scatter {:?} {op:?}",
            T::DTYPE
        );
    }
    // All-gather.
    let mine = to::<T>(&positive(r, 333, 1));
    let src = alloc(&mine);
    let mut dst = alloc(&vec![T::ZERO; 333 * n]);
    world.all_gather(&src, &mut dst).unwrap();
    let want: Vec<T> = (0..n).flat_map(|q| to::<T>(&positive(q, 333, 1))).collect();
    assert_eq!(
        dst.to_host_vec().unwrap(),
        want,
        "all_gather {:?}",
        T::DTYPE
    );
    // Broadcast from every root.
    for root in 0..n {
        let mut b = alloc(&to::<T>(&positive(r, 77, root)));
        world.broadcast(&mut b, root).unwrap();
        assert_eq!(
            b.to_host_vec().unwrap(),
            to::<T>(&positive(root, 77, root)),
            "broadcast {:?} root {root}",
            T::DTYPE
        );
    }
    world.barrier().unwrap();
    symmem::synchronize().unwrap();
}

#[test]
fn every_collective_and_dtype_matches_the_host_reference() {
    let Some((n, _g)) = gpus("every_collective_and_dtype_matches_the_host_reference") else {
        return;
    };
    cuda::run_threads(n, cfg(), |ctx| {
        for symmetric in [true, false] {
            check_dtype::<u8>(ctx, symmetric);
            check_dtype::<i32>(ctx, symmetric);
            check_dtype::<u32>(ctx, symmetric);
            check_dtype::<i64>(ctx, symmetric);
            check_dtype::<u64>(ctx, symmetric);
            check_dtype::<f16>(ctx, symmetric);
            check_dtype::<bf16>(ctx, symmetric);
            check_dtype::<f32>(ctx, symmetric);
            check_dtype::<f64>(ctx, symmetric);
        }
    })
    .unwrap();
    say(&format!(
        "collectives: 9 dtypes x 5 ops x (symmetric, plain) checked on {n} rank(s)"
    ));
}

#[test]
fn validation_mode_exchanges_while_capturing() {
    let Some((n, _g)) = gpus("validation_mode_exchanges_while_capturing") else {
        return;
    };
    let cfg = RankConfig::new().with_validate(true);
    cuda::run_threads(n, cfg, |ctx| {
        let world = ctx.world();
        world.reserve_symmetric(1 << 20).unwrap();
        let mut x = {
            let _w = world.window();
            symmem::alloc_from_host(&[1.0f32; 4096]).unwrap()
        };
        world.all_reduce(&mut x, ReduceOp::Sum).unwrap();
        let (mut graph, ()) = symmem::capture(|| {
            world.all_reduce(&mut x, ReduceOp::Sum)?;
            world.barrier()
        })
        .unwrap();
        graph.replay().unwrap();
        graph.replay().unwrap();
        let want = (n as f32).powi(3);
        assert!(x.to_host_vec().unwrap().iter().all(|&v| v == want));
        if n >= 2 {
            // A rank-dependent count is caught before NCCL sees it.
            let len = if ctx.rank() == 0 { 16 } else { 32 };
            let mut y = symmem::alloc_zeroed::<f32>(len).unwrap();
            let err = world.all_reduce(&mut y, ReduceOp::Sum).unwrap_err();
            assert!(matches!(err, Error::RankDivergence { .. }), "{err}");
        }
    })
    .unwrap();
}

// ------------------------------------------------------------------------------------------
// Capture: a step with cuBLAS and NCCL, replayed 1000 times
// ------------------------------------------------------------------------------------------

#[test]
fn captured_gemm_all_reduce_step_replays_bit_for_bit() {
    let Some((n, _g)) = gpus("captured_gemm_all_reduce_step_replays_bit_for_bit") else {
        return;
    };
    cuda::run_threads(n, cfg(), |ctx| {
        let world = ctx.world();
        let stream = cuda_stream(ctx).expect("a CUDA rank has a cudarc stream");
        assert!(cuda_context(ctx).is_some());
        let blas = CudaBlas::new(stream).unwrap();
        // Give cuBLAS its workspace up front: it must not allocate during capture.
        let workspace = symmem::alloc::<u8>(32 << 20).unwrap();
        // SAFETY: the workspace outlives every use of `blas` (both live until the end of this closure).
        let st = unsafe {
            symmem::cuda::cudarc::cublas::sys::cublasSetWorkspace_v2(
                *blas.handle(),
                workspace.device_ptr() as *mut std::ffi::c_void,
                32 << 20,
            )
        };
        assert_eq!(
            st,
            symmem::cuda::cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS
        );
        let (m, k, cols) = (256usize, 512usize, 64usize);
        // Integer-valued inputs: every sum is exact in f32, so eager and replayed results must
        // agree to the bit whatever algorithm cuBLAS picks.
        let a: Vec<f32> = pattern(ctx.rank(), m * k, 1)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let x: Vec<f32> = pattern(ctx.rank(), k * cols, 2)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let a = symmem::alloc_from_host(&a).unwrap();
        let x = symmem::alloc_from_host(&x).unwrap();
        let step = || -> Result<Buffer<f32>, Error> {
            let mut y = {
                let _w = world.window();
                symmem::alloc::<f32>(m * cols)?
            };
            let cfg = GemmConfig {
                transa: cublasOperation_t::CUBLAS_OP_N,
                transb: cublasOperation_t::CUBLAS_OP_N,
                m: m as i32,
                n: cols as i32,
                k: k as i32,
                alpha: 1.0f32,
                lda: m as i32,
                ldb: k as i32,
                beta: 0.0f32,
                ldc: m as i32,
            };
            {
                let (av, xv) = (a.cuda_view()?, x.cuda_view()?);
                let mut yv = y.cuda_view_mut()?;
                // SAFETY: shapes match the buffers (m*k, k*cols, m*cols, column-major).
                unsafe { blas.gemm(cfg, &av, &xv, &mut yv) }.map_err(|e| {
                    Error::InvalidArgument {
                        op: "cublas gemm",
                        detail: format!("{e:?}"),
                    }
                })?;
            }
            world.all_reduce(&mut y, ReduceOp::Sum)?;
            Ok(y)
        };
        // Eager first (also lets cuBLAS allocate its workspace outside capture).
        let eager = step().unwrap();
        let eager_host = eager.to_host_vec().unwrap();
        assert!(eager.is_symmetric() || !world.symmetric_supported());
        world.reserve_symmetric(m * cols * 4).unwrap();
        let (mut graph, y) = symmem::capture(step).unwrap();
        assert!(y.is_graph_owned());
        for _ in 0..1000 {
            graph.replay().unwrap();
        }
        symmem::synchronize().unwrap();
        let replayed = y.to_host_vec().unwrap();
        assert_eq!(graph.replays(), 1000);
        assert!(
            eager_host
                .iter()
                .zip(&replayed)
                .all(|(e, r)| e.to_bits() == r.to_bits()),
            "replayed result differs from eager"
        );
        assert!(eager_host.iter().any(|&v| v != 0.0));
    })
    .unwrap();
    say(&format!(
        "capture: GEMM + all-reduce step replayed 1000x, bit-identical to eager ({n} rank(s))"
    ));
}

#[test]
fn capture_misuse_gives_actionable_errors() {
    let Some((n, _g)) = gpus("capture_misuse_gives_actionable_errors") else {
        return;
    };
    cuda::run_threads(n, cfg(), |ctx| {
        let world = ctx.world();
        world.reserve_symmetric(1 << 20).unwrap();
        let mut x = {
            let _w = world.window();
            symmem::alloc_from_host(&[2.0f32; 1024]).unwrap()
        };
        // More symmetric memory than reserved.
        let err = symmem::capture(|| {
            let _w = world.window();
            symmem::alloc::<f32>(64 << 20).map(|_| ())
        })
        .unwrap_err();
        match &err {
            Error::CaptureReserveExceeded { group, reserve, .. } => {
                assert_eq!(&**group, "world");
                assert!(
                    err.to_string()
                        .contains(&format!("reserve_symmetric({reserve})")),
                    "{err}"
                );
            }
            e => panic!("expected CaptureReserveExceeded, got {e}"),
        }
        // Blocking operations under capture.
        let err = symmem::capture(symmem::synchronize).unwrap_err();
        assert!(
            matches!(err, Error::NotAllowedDuringCapture { .. }),
            "{err}"
        );
        let err = symmem::capture(|| x.to_host_vec().map(|_| ())).unwrap_err();
        assert!(
            matches!(err, Error::NotAllowedDuringCapture { .. }),
            "{err}"
        );
        let err = symmem::capture(|| x.copy_from_host(&[1.0; 1024])).unwrap_err();
        assert!(
            matches!(err, Error::NotAllowedDuringCapture { .. }),
            "{err}"
        );
        let err =
            symmem::capture(|| symmem::alloc_from_host(&[1.0f32; 8]).map(|_| ())).unwrap_err();
        assert!(
            matches!(err, Error::NotAllowedDuringCapture { .. }),
            "{err}"
        );
        // Collective set-up under capture.
        let err = symmem::capture(|| world.reserve_symmetric(1 << 20)).unwrap_err();
        assert!(
            matches!(err, Error::NotAllowedDuringCapture { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("reserve_symmetric"), "{err}");
        let err =
            symmem::capture(|| ctx.split_group("late", &world, 0, 0).map(|_| ())).unwrap_err();
        assert!(
            matches!(err, Error::NotAllowedDuringCapture { .. }),
            "{err}"
        );
        // Nested capture.
        let err = symmem::capture(|| symmem::capture(|| Ok(())).map(|_| ())).unwrap_err();
        assert!(
            matches!(err, Error::NotAllowedDuringCapture { .. }),
            "{err}"
        );
        // The stream is fine afterwards.
        world.all_reduce(&mut x, ReduceOp::Sum).unwrap();
        assert!(x
            .to_host_vec()
            .unwrap()
            .iter()
            .all(|&v| v == 2.0 * n as f32));
        // And a good capture still works.
        let (mut g, ()) = symmem::capture(|| world.all_reduce(&mut x, ReduceOp::Max)).unwrap();
        g.replay().unwrap();
        symmem::synchronize().unwrap();
    })
    .unwrap();
}

#[test]
fn a_panicking_rank_is_propagated() {
    let Some((n, _g)) = gpus("a_panicking_rank_is_propagated") else {
        return;
    };
    let r = std::panic::catch_unwind(|| {
        cuda::run_threads(n, cfg(), |ctx| {
            if ctx.rank() == n - 1 {
                panic!("rank {} fails on purpose", ctx.rank());
            }
            // Peers block in a collective: the abort must release them.
            let mut x = symmem::alloc_zeroed::<f32>(16).unwrap();
            let _ = ctx.world().all_reduce(&mut x, ReduceOp::Sum);
            let _ = symmem::synchronize();
        })
    });
    assert!(r.is_err(), "the panic must reach the caller");
}

#[test]
fn a_rank_that_returns_early_fails_its_peers_collectives_at_once() {
    let Some((n, _g)) = gpus("a_rank_that_returns_early_fails_its_peers_collectives_at_once")
    else {
        return;
    };
    if n < 2 {
        say("skipped: a_rank_that_returns_early_fails_its_peers_collectives_at_once needs 2 GPUs (one rank per GPU)");
        return;
    }
    let started = std::time::Instant::now();
    let out = cuda::run_threads(n, cfg(), |ctx| -> Option<String> {
        let mut x = symmem::alloc_zeroed::<f32>(16).unwrap();
        ctx.world().all_reduce(&mut x, ReduceOp::Sum).unwrap();
        symmem::synchronize().unwrap();
        if ctx.rank() == 0 {
            return None; // leaves after one all-reduce
        }
        // The second all-reduce needs rank 0, which never makes it: an error, never a hang,
        // whether rank 0 left before this call (refused at once) or after it was queued (the
        // communicator is aborted and the synchronisation reports it).
        let r = ctx
            .world()
            .all_reduce(&mut x, ReduceOp::Sum)
            .and_then(|_| symmem::synchronize());
        Some(format!("{r:?}"))
    })
    .unwrap();
    for (rank, r) in out.iter().enumerate().skip(1) {
        let r = r.as_deref().unwrap_or_default();
        assert!(
            r.contains("Aborted") && r.contains("rank 0 returned from its closure"),
            "rank {rank}: {r}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    say(&format!(
        "departure: {} peer(s) got Aborted naming rank 0 after {:.2} s",
        n - 1,
        started.elapsed().as_secs_f64()
    ));
}

#[test]
fn buffer_views_and_their_slices_are_kernel_arguments() {
    use symmem::cuda::cudarc::driver::{LaunchConfig, PushKernelArg};
    let Some((_n, _g)) = gpus("buffer_views_and_their_slices_are_kernel_arguments") else {
        return;
    };
    const SRC: &str = r#"
extern "C" __global__ void add_to(float* out, const float* in, unsigned n) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] += in[i];
}"#;
    cuda::run_threads(1, cfg(), |ctx| {
        let ptx = symmem::cuda::cudarc::nvrtc::compile_ptx(SRC).expect("NVRTC compiles");
        let module = cuda_context(ctx).unwrap().load_module(ptx).unwrap();
        let f = module.load_function("add_to").unwrap();
        let stream = cuda_stream(ctx).unwrap();
        let mut out = symmem::alloc_from_host(&[0f32; 64]).unwrap();
        let input =
            symmem::alloc_from_host(&(0..64).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
        {
            let iv = input.cuda_view().unwrap();
            let src = iv.slice(8..40).unwrap();
            let mut ov = out.cuda_view_mut().unwrap();
            let mut dst = ov.slice_mut(16..48).unwrap();
            assert!(ov_len_is_checked(&src));
            let n = 32u32;
            let mut launch = stream.launch_builder(&f);
            launch.arg(&mut dst).arg(&src).arg(&n);
            // SAFETY: the kernel's signature is (float*, const float*, unsigned) and it touches
            // `n` = 32 elements of each 32-element slice; it runs on the rank's stream.
            unsafe { launch.launch(LaunchConfig::for_num_elems(n)) }.unwrap();
        }
        let got = out.to_host_vec().unwrap();
        let want: Vec<f32> = (0..64)
            .map(|i| {
                if (16..48).contains(&i) {
                    (i - 8) as f32
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(got, want);
    })
    .unwrap();
    say("interop: BufferView/BufferViewMut slices passed as kernel arguments");
}

#[test]
fn a_cudarc_slice_becomes_a_plain_buffer_in_place() {
    let Some((_n, _g)) = gpus("a_cudarc_slice_becomes_a_plain_buffer_in_place") else {
        return;
    };
    cuda::run_threads(1, cfg(), |ctx| {
        let stream = cuda_stream(ctx).unwrap();
        let host: Vec<f32> = (0..4096).map(|i| i as f32).collect();
        let slice = stream.clone_htod(&host).unwrap();
        let before = ctx.default_pool_stats().in_use_bytes;
        let mut b = cuda::buffer_from_cuda_slice(ctx, slice).unwrap();
        // In place: no pool block, not symmetric, the slice's contents.
        assert_eq!(ctx.default_pool_stats().in_use_bytes, before);
        assert!(!b.is_symmetric());
        assert_eq!(b.len(), 4096);
        assert_eq!(b.to_host_vec().unwrap(), host);
        // Collectives and capture use it like any plain buffer; a graph that recorded it keeps
        // the memory alive after the buffer is dropped.
        ctx.world().all_reduce(&mut b, ReduceOp::Sum).unwrap();
        let (mut g, ()) =
            symmem::capture(|| ctx.world().all_reduce(&mut b, ReduceOp::Max)).unwrap();
        drop(b);
        g.replay().unwrap();
        symmem::synchronize().unwrap();
        drop(g);
        // Dropped inside a capture, its free waits for the end of the capture (it is not recorded
        // into the graph): two replays and the graph's drop work.
        let slice = stream.alloc_zeros::<f32>(1 << 20).unwrap();
        let mut b = cuda::buffer_from_cuda_slice(ctx, slice).unwrap();
        let (mut g, ()) = symmem::capture(|| {
            ctx.world().all_reduce(&mut b, ReduceOp::Sum)?;
            drop(b);
            Ok(())
        })
        .unwrap();
        g.replay().unwrap();
        g.replay().unwrap();
        symmem::synchronize().unwrap();
        drop(g);
        symmem::synchronize().unwrap();
        // A slice of another stream is refused (ordering could not be kept).
        let other = cuda_context(ctx).unwrap().new_stream().unwrap();
        let foreign = other.alloc_zeros::<f32>(16).unwrap();
        let e = cuda::buffer_from_cuda_slice(ctx, foreign).unwrap_err();
        assert!(e.to_string().contains("another stream"), "{e}");
    })
    .unwrap();
    say(
        "interop: a cudarc CudaSlice on the rank's stream as a plain buffer (collectives, capture)",
    );
}

/// Out-of-range slices are errors, not views past the buffer.
fn ov_len_is_checked(v: &symmem::cuda::BufferView<'_, f32>) -> bool {
    v.len() == 32 && v.slice(0..33).is_err() && v.slice(32..).map(|s| s.is_empty()).unwrap_or(false)
}

// ------------------------------------------------------------------------------------------
// Teardown
// ------------------------------------------------------------------------------------------

fn free_bytes(ordinal: usize) -> usize {
    let ctx = symmem::cuda::cudarc::driver::CudaContext::new(ordinal).unwrap();
    ctx.mem_get_info().unwrap().0
}

#[test]
fn teardown_leaks_nothing() {
    let Some((n, _g)) = gpus("teardown_leaks_nothing") else {
        return;
    };
    // Keep every primary context alive across cycles, so leaked memory would stay visible.
    let keep: Vec<_> = (0..n)
        .map(|o| symmem::cuda::cudarc::driver::CudaContext::new(o).unwrap())
        .collect();
    let cycle = || {
        cuda::run_threads(n, cfg(), |ctx| {
            let world = ctx.world();
            let tp = ctx.split_group("tp", &world, 0, ctx.rank() as u32).unwrap();
            world.reserve_symmetric(8 << 20).unwrap();
            let mut a = {
                let _w = world.window();
                symmem::alloc_from_host(&vec![1.0f32; 1 << 20]).unwrap()
            };
            let mut b = {
                let _w = tp.window();
                symmem::alloc_from_host(&vec![1.0f32; 3 << 20]).unwrap()
            };
            let _plain = symmem::alloc::<f64>(5 << 20).unwrap();
            let (mut g, c) = symmem::capture(|| {
                let c = symmem::alloc_zeroed::<f32>(1 << 18)?;
                world.all_reduce(&mut a, ReduceOp::Sum)?;
                tp.all_reduce(&mut b, ReduceOp::Sum)?;
                Ok(c)
            })
            .unwrap();
            g.replay().unwrap();
            symmem::synchronize().unwrap();
            drop(c);
            drop(g);
        })
        .unwrap();
    };
    cycle(); // warm-up: NCCL's and the driver's one-time state
    let before: Vec<usize> = (0..n).map(free_bytes).collect();
    for _ in 0..3 {
        cycle();
    }
    let after: Vec<usize> = (0..n).map(free_bytes).collect();
    for o in 0..n {
        let delta = before[o] as i64 - after[o] as i64;
        say(&format!(
            "teardown: GPU {o}: free before {} after {} (leaked {delta} bytes over 3 cycles)",
            before[o], after[o]
        ));
        // Any leaked segment is at least 2 MiB: a tolerance below that catches every one.
        assert!(
            delta < (1 << 20),
            "GPU {o} lost {delta} bytes over 3 create/drop cycles"
        );
    }
    drop(keep);
}

// ------------------------------------------------------------------------------------------
// One process per rank, through the environment (a world of one here)
// ------------------------------------------------------------------------------------------

#[test]
fn init_rank_with_a_shared_id() {
    let Some((n, _g)) = gpus("init_rank_with_a_shared_id") else {
        return;
    };
    let id = cuda::UniqueId::new().unwrap();
    let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|r| {
                s.spawn(move || {
                    let ctx = cuda::init_rank(r, n, r, &id, cfg()).unwrap();
                    assert_eq!((ctx.rank(), ctx.world_size()), (r, n));
                    let world = ctx.world();
                    let mut x = {
                        let _w = world.window();
                        symmem::alloc_from_host(&[r as f32 + 1.0; 256]).unwrap()
                    };
                    world.all_reduce(&mut x, ReduceOp::Sum).unwrap();
                    x.to_host_vec().unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want = (n * (n + 1) / 2) as f32;
    assert!(sums.iter().all(|v| v.iter().all(|&x| x == want)));
    // Bad arguments are errors, not panics.
    assert!(matches!(
        cuda::init_rank(n, n, 0, &id, cfg()),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        cuda::init_rank(0, 1, n, &id, cfg()),
        Err(Error::BackendUnavailable(_))
    ));
}

#[test]
fn a_rank_on_the_callers_stream_orders_with_its_kernels_and_captures() {
    use symmem::cuda::cudarc::driver::CudaContext;
    let Some((_n, _g)) = gpus("a_rank_on_the_callers_stream_orders_with_its_kernels_and_captures")
    else {
        return;
    };
    std::thread::spawn(|| {
        let cu = CudaContext::new(0).unwrap();
        let stream = cu.new_stream().unwrap();
        let id = cuda::UniqueId::new().unwrap();
        let ctx = cuda::init_rank_on_stream(stream.clone(), 0, 1, &id, cfg()).unwrap();
        // The rank's stream is the caller's.
        let theirs = cuda_stream(&ctx).unwrap();
        assert_eq!(theirs.cu_stream(), stream.cu_stream());
        // The caller's copy into a symmem buffer, then symmem's all-reduce, on one stream: no
        // events, and the all-reduce sees the copy.
        let world = ctx.world();
        let mut x = {
            let _w = world.window();
            symmem::alloc_zeroed::<f32>(1024).unwrap()
        };
        let host: Vec<f32> = (0..1024).map(|i| i as f32).collect();
        {
            let mut v = x.cuda_view_mut().unwrap();
            stream.memcpy_htod(&host, &mut v).unwrap();
        }
        world.all_reduce(&mut x, ReduceOp::Sum).unwrap();
        assert_eq!(x.to_host_vec().unwrap(), host);
        // Capture works on the adopted stream.
        let (mut g, ()) = symmem::capture(|| world.all_reduce(&mut x, ReduceOp::Sum)).unwrap();
        g.replay().unwrap();
        symmem::synchronize().unwrap();
        drop(g);
        drop(x);
        drop(ctx);
        // The caller's stream outlives the rank and still works.
        stream.synchronize().unwrap();
        // The legacy default stream can be adopted, but not captured.
        let ctx = cuda::init_rank_on_stream(
            cu.default_stream(),
            0,
            1,
            &cuda::UniqueId::new().unwrap(),
            cfg(),
        )
        .unwrap();
        let mut y = symmem::alloc_zeroed::<f32>(16).unwrap();
        ctx.world().all_reduce(&mut y, ReduceOp::Sum).unwrap();
        let e = symmem::capture(|| Ok(())).unwrap_err();
        assert!(e.to_string().contains("legacy default stream"), "{e}");
    })
    .join()
    .unwrap();
    say("interop: a rank on the caller's cudarc stream (collectives, capture, default-stream refusal)");
}

#[test]
fn an_adopted_nccl_communicator_is_a_group() {
    use symmem::cuda::{adopt_nccl_comm, nccl_sys, CommOwnership};
    let Some((_n, _g)) = gpus("an_adopted_nccl_communicator_is_a_group") else {
        return;
    };
    // The communicator must come from the NCCL library symmem loaded (`libnccl.so.2`, the same
    // handle dlopen returns again): one of another NCCL copy in the process (cudarc's
    // `libnccl.so` may be another version) is refused by NCCL as "corrupted comm object".
    type GetId = unsafe extern "C" fn(*mut nccl_sys::ncclUniqueId) -> i32;
    type Init =
        unsafe extern "C" fn(*mut nccl_sys::ncclComm_t, i32, nccl_sys::ncclUniqueId, i32) -> i32;
    type Destroy = unsafe extern "C" fn(nccl_sys::ncclComm_t) -> i32;
    // SAFETY: loading the NCCL library symmem already loaded (its initialisers ran).
    let lib = unsafe { libloading::Library::new("libnccl.so.2") }.expect("libnccl.so.2");
    // SAFETY: the C signatures of nccl.h (enums as int).
    let (get_id, init, destroy) = unsafe {
        (
            *lib.get::<GetId>(b"ncclGetUniqueId").unwrap(),
            *lib.get::<Init>(b"ncclCommInitRank").unwrap(),
            *lib.get::<Destroy>(b"ncclCommDestroy").unwrap(),
        )
    };
    for ownership in [CommOwnership::Borrowed, CommOwnership::Owned] {
        let kept = cuda::run_threads(1, cfg(), |ctx| {
            // A communicator made by the caller (through NCCL's C API).
            let mut id = std::mem::MaybeUninit::<nccl_sys::ncclUniqueId>::zeroed();
            let mut comm: nccl_sys::ncclComm_t = std::ptr::null_mut();
            // SAFETY: out-parameters; the rank's context is current on this thread.
            unsafe {
                assert_eq!(get_id(id.as_mut_ptr()), 0);
                assert_eq!(init(&mut comm, 1, id.assume_init(), 0), 0);
            }
            // SAFETY: a live communicator of this rank's GPU; Borrowed: destroyed below, after
            // the rank context (and so the group) is gone; Owned: never touched again.
            let tp = unsafe { adopt_nccl_comm(ctx, "mine", comm, ownership) }.unwrap();
            assert_eq!((tp.name(), tp.size(), tp.rank()), ("mine", 1, 0));
            let mut x = {
                let _w = tp.window();
                symmem::alloc_from_host(&[2.5f32; 4096]).unwrap()
            };
            assert_eq!(x.is_symmetric(), tp.symmetric_supported());
            tp.all_reduce(&mut x, ReduceOp::Sum).unwrap();
            assert_eq!(x.to_host_vec().unwrap(), vec![2.5f32; 4096]);
            // A second adoption under the same name is refused, and leaves the handle alone.
            // SAFETY: refused before any use.
            let e = unsafe { adopt_nccl_comm(ctx, "mine", comm, ownership) }.unwrap_err();
            assert!(matches!(e, Error::DuplicateGroup { .. }), "{e}");
            comm as usize
        })
        .unwrap();
        if ownership == CommOwnership::Borrowed {
            // Still ours and alive: destroy it now that every user is gone.
            // SAFETY: the communicator created above; symmem never destroyed it.
            let r = unsafe { destroy(kept[0] as nccl_sys::ncclComm_t) };
            assert_eq!(r, 0);
        }
    }
    say("interop: adopted raw NCCL communicators (borrowed and owned) run symmetric collectives");
}

#[test]
fn init_from_env_single_process() {
    let Some((_n, _g)) = gpus("init_from_env_single_process") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (k, v) in [
        ("RANK", "0".to_string()),
        ("WORLD_SIZE", "1".to_string()),
        ("LOCAL_RANK", "0".to_string()),
        ("LOCAL_WORLD_SIZE", "1".to_string()),
        ("MASTER_ADDR", "127.0.0.1".to_string()),
        ("MASTER_PORT", port.to_string()),
    ] {
        std::env::set_var(k, v);
    }
    let result = std::thread::spawn(|| {
        let ctx = cuda::init_from_env(cfg())?;
        let world = ctx.world();
        let mut x = {
            let _w = world.window();
            symmem::alloc_from_host(&[3i64; 100])?
        };
        world.all_reduce(&mut x, ReduceOp::Sum)?;
        x.to_host_vec()
    })
    .join()
    .unwrap();
    for k in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
    ] {
        std::env::remove_var(k);
    }
    assert_eq!(result.unwrap(), vec![3i64; 100]);
}
