//! The CUDA path of symmem-candle (feature `cuda`): candle CUDA tensors to and from symmem
//! buffers, the all-reduce and its custom op, the tensor-parallel MLP, on the rank's stream
//! (candle's, through `cuda::init_rank_on_device`) and on a stream of its own (a rank of
//! `symmem::cuda::run_threads` with a candle device of its own: events order the streams).
//!
//! Without a usable GPU every test prints a visible `skipped: no GPU (...)` line and returns;
//! with `SYMMEM_REQUIRE_GPU=1` (the GPU machine's runs) a missing GPU is a failure. World-sized
//! tests use one rank per visible GPU. Tests run one at a time (a process-wide lock) under a
//! time limit.

#![cfg(feature = "cuda")]

mod common;

use std::io::Write;
use std::sync::{Mutex, MutexGuard};

use candle_core::{DType, Device, Module, Tensor};
use symmem::launch::detect;
use symmem::{RankConfig, ReduceOp};
use symmem_candle::{
    all_reduce, all_reduce_with_report, copy_to_buffer, cuda::init_rank_on_device,
    cuda::shares_rank_stream, from_buffer, to_buffer, AllReduceOp, Error, TpMlp,
};

use common::{random, values, within_limit, Rng};

static GPU: Mutex<()> = Mutex::new(());

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The number of GPUs, or `None` after printing the skip line (a failure when
/// `SYMMEM_REQUIRE_GPU=1`). Holds the GPU lock while the test runs.
fn gpus(test: &str) -> Option<(usize, MutexGuard<'static, ()>)> {
    let guard = GPU.lock().unwrap_or_else(|e| e.into_inner());
    let report = detect();
    let require = std::env::var("SYMMEM_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match report.why_not_cuda(1) {
        None => Some((symmem::cuda::gpu_count().expect("gpu_count"), guard)),
        Some(why) => {
            assert!(
                !require,
                "{test}: SYMMEM_REQUIRE_GPU=1 but no GPU can be used: {why} ({report})"
            );
            say(&format!("skipped: no GPU ({test}: {why})"));
            None
        }
    }
}

fn cfg() -> RankConfig {
    RankConfig::new()
        .with_validate(true)
        .with_timeout(common::COLLECTIVE_TIMEOUT)
}

/// A one-rank job on candle's stream of GPU 0: `f` gets candle's device and the rank.
fn on_candles_stream<R>(f: impl FnOnce(&Device, &symmem::RankContext) -> R) -> R {
    let device = Device::new_cuda_with_stream(0).expect("a CUDA device");
    let id = symmem::cuda::UniqueId::new().expect("an NCCL id");
    let ctx = init_rank_on_device(&device, 0, 1, &id, cfg()).expect("the rank starts");
    assert!(shares_rank_stream(&device));
    f(&device, &ctx)
}

const DTYPES: [DType; 4] = [DType::F32, DType::BF16, DType::F16, DType::F64];

#[test]
fn cuda_tensors_round_trip_through_buffers_on_candles_stream() {
    let Some((_n, _g)) = gpus("cuda_tensors_round_trip_through_buffers_on_candles_stream") else {
        return;
    };
    within_limit(|| {
        on_candles_stream(|dev, _ctx| {
            let mut rng = Rng::new(7);
            for dtype in DTYPES {
                let cpu = random(&mut rng, &[3, 5, 7], 4.0, dtype);
                let x = cpu.to_device(dev).unwrap();
                let back = match dtype {
                    DType::F32 => from_buffer(&to_buffer::<f32>(&x).unwrap(), (3, 5, 7), dev),
                    DType::BF16 => {
                        from_buffer(&to_buffer::<half::bf16>(&x).unwrap(), (3, 5, 7), dev)
                    }
                    DType::F16 => from_buffer(&to_buffer::<half::f16>(&x).unwrap(), (3, 5, 7), dev),
                    _ => from_buffer(&to_buffer::<f64>(&x).unwrap(), (3, 5, 7), dev),
                }
                .unwrap();
                assert!(back.device().is_cuda());
                assert_eq!(values(&back), values(&cpu), "{dtype:?}");
                // A non-contiguous view (a transpose, and a narrowed slice) copies the elements
                // it addresses, in row-major order.
                let t = x.transpose(0, 2).unwrap().narrow(1, 1, 3).unwrap();
                let want = cpu.transpose(0, 2).unwrap().narrow(1, 1, 3).unwrap();
                let b = to_buffer::<f64>(&t.to_dtype(DType::F64).unwrap()).unwrap();
                let got = from_buffer(&b, want.shape().clone(), &Device::Cpu).unwrap();
                assert_eq!(values(&got), values(&want), "{dtype:?} strided");
            }
            // Into an existing buffer; a length mismatch and a dtype mismatch are errors.
            let x = Tensor::arange(0f32, 12., dev).unwrap();
            let mut b = symmem::alloc::<f32>(12).unwrap();
            copy_to_buffer(&x, &mut b).unwrap();
            assert_eq!(
                b.to_host_vec().unwrap(),
                (0..12).map(|i| i as f32).collect::<Vec<_>>()
            );
            let mut short = symmem::alloc::<f32>(5).unwrap();
            assert!(matches!(
                copy_to_buffer(&x, &mut short),
                Err(Error::ShapeMismatch { .. })
            ));
            assert!(matches!(
                to_buffer::<half::bf16>(&x),
                Err(Error::DTypeMismatch { .. })
            ));
            assert!(matches!(
                from_buffer(&b, (5, 5), dev),
                Err(Error::ShapeMismatch { .. })
            ));
            // The buffer may go first: the tensor owns candle memory of its own.
            let t = from_buffer(&b, (3, 4), dev).unwrap();
            drop(b);
            let _churn: Vec<_> = (0..8).map(|_| symmem::alloc::<f32>(12).unwrap()).collect();
            assert_eq!(values(&t), (0..12).map(|i| i as f64).collect::<Vec<_>>());
        })
    });
}

#[test]
fn the_all_reduce_and_its_custom_op_run_on_cuda_tensors_and_replay_in_a_graph() {
    let Some((_n, _g)) =
        gpus("the_all_reduce_and_its_custom_op_run_on_cuda_tensors_and_replay_in_a_graph")
    else {
        return;
    };
    within_limit(|| {
        on_candles_stream(|dev, ctx| {
            let tp = ctx.world();
            let mut rng = Rng::new(11);
            for dtype in DTYPES {
                let cpu = random(&mut rng, &[4, 4096], 1.0, dtype);
                let x = cpu.to_device(dev).unwrap();
                let (y, report) = all_reduce_with_report(&tp, &x, ReduceOp::Sum).unwrap();
                assert!(y.device().is_cuda());
                // One rank: the sum is the tensor itself, bit for bit.
                assert_eq!(values(&y), values(&cpu), "{dtype:?}");
                assert_eq!(report.elements, 4 * 4096);
                let z = x.apply_op1(AllReduceOp::new(&tp, ReduceOp::Sum)).unwrap();
                assert_eq!(values(&z), values(&cpu), "{dtype:?} custom op");
                say(&format!(
                    "RESULT candle-cuda all_reduce dtype={dtype:?} path={:?}",
                    report.path
                ));
            }
            // Empty tensors: the shape comes back, nothing is copied or reduced.
            let empty = Tensor::zeros((0, 4096), DType::BF16, dev).unwrap();
            assert_eq!(
                all_reduce(&tp, &empty, ReduceOp::Sum).unwrap().dims(),
                &[0, 4096]
            );
            let op = AllReduceOp::new(&tp, ReduceOp::Sum);
            assert_eq!(empty.apply_op1_no_bwd(&op).unwrap().dims(), &[0, 4096]);
            // Inside a capture on candle's stream: the copy in and the symmetric all-reduce are
            // recorded, and a replay gives the eager result. cudarc's event tracking (on once a
            // context has two streams) waits on events recorded before the capture at every
            // use of a candle tensor, so it is turned off for the tensors of the capture, as
            // candle's CUDA-graph users do.
            let ctx_cu = symmem::cuda::cuda_context(ctx).unwrap();
            // SAFETY: everything of this capture runs on one stream (candle's is the rank's),
            // so no use needs cross-stream events; tracking is back on before the test ends,
            // and the untracked tensors are dropped within it.
            unsafe { ctx_cu.disable_event_tracking() };
            let x = random(&mut rng, &[8, 4096], 1.0, DType::BF16)
                .to_device(dev)
                .unwrap();
            let eager = all_reduce(&tp, &x, ReduceOp::Sum).unwrap();
            let mut sym = tp
                .with_window(|| symmem::alloc::<half::bf16>(8 * 4096))
                .unwrap();
            let (mut graph, ()) = symmem::capture_with_error(|| -> symmem_candle::Result<()> {
                copy_to_buffer(&x, &mut sym)?;
                tp.all_reduce(&mut sym, ReduceOp::Sum)?;
                Ok(())
            })
            .unwrap();
            graph.replay().unwrap();
            let replayed = from_buffer(&sym, (8, 4096), dev).unwrap();
            assert_eq!(values(&replayed), values(&eager));
            drop((x, eager, replayed, sym, graph));
            symmem::synchronize().unwrap();
            // SAFETY: as above; the tensors made without tracking are gone.
            unsafe { ctx_cu.enable_event_tracking() };
        })
    });
}

#[test]
fn a_rank_on_its_own_stream_orders_candles_stream_and_refuses_it_in_a_capture() {
    let Some((n, _g)) =
        gpus("a_rank_on_its_own_stream_orders_candles_stream_and_refuses_it_in_a_capture")
    else {
        return;
    };
    within_limit(move || {
        let out = symmem::cuda::run_threads(n, cfg(), |ctx| {
            // candle's device of the rank's GPU, on CUDA's per-thread stream: not the rank's.
            let dev = Device::new_cuda(ctx.rank()).unwrap();
            assert!(!shares_rank_stream(&dev));
            let tp = ctx.world();
            let n_el = 64 * 4096;
            // Large enough that a missing wait would read unfinished candle work.
            let x = (Tensor::ones(n_el, DType::F32, &dev).unwrap() * (ctx.rank() as f64 + 1.0))
                .unwrap()
                .sqr()
                .unwrap();
            let y = all_reduce(&tp, &x, ReduceOp::Sum).unwrap();
            let want: f32 = (1..=ctx.world_size()).map(|r| (r * r) as f32).sum();
            let got = y.to_vec1::<f32>().unwrap();
            assert!(
                got.iter().all(|v| *v == want),
                "rank {}: {:?}",
                ctx.rank(),
                &got[..4]
            );
            // A capture records the rank's stream only: candle's stream cannot join it.
            let err = symmem::capture_with_error(|| to_buffer::<f32>(&x).map(|_| ())).unwrap_err();
            assert!(matches!(err, Error::WrongDevice { .. }), "{err}");
            assert!(err.to_string().contains("init_rank_on_device"), "{err}");
        })
        .expect("the ranks start");
        assert_eq!(out.len(), n);
    });
}

#[test]
fn the_tensor_parallel_mlp_on_cuda_equals_the_unsharded_cpu_reference() {
    let Some((n, _g)) = gpus("the_tensor_parallel_mlp_on_cuda_equals_the_unsharded_cpu_reference")
    else {
        return;
    };
    within_limit(move || {
        let (hidden, inter, tokens) = (256, 512, 8);
        let mut rng = Rng::new(5);
        let gate = random(&mut rng, &[inter, hidden], 0.05, DType::F32);
        let up = random(&mut rng, &[inter, hidden], 0.05, DType::F32);
        let down = random(&mut rng, &[hidden, inter], 0.05, DType::F32);
        let x = random(&mut rng, &[tokens, hidden], 1.0, DType::F32);
        let reference = {
            let g = x.matmul(&gate.t().unwrap()).unwrap();
            let u = x.matmul(&up.t().unwrap()).unwrap();
            let h = (candle_nn::ops::silu(&g).unwrap() * u).unwrap();
            values(&h.matmul(&down.t().unwrap()).unwrap())
        };
        let outs = symmem::cuda::run_threads(n, cfg(), |ctx| {
            let dev = Device::new_cuda(ctx.rank()).unwrap();
            let tp = ctx.world();
            let on = |t: &Tensor| t.to_device(&dev).unwrap();
            let mlp = TpMlp::from_full(&on(&gate), &on(&up), &on(&down), &tp).unwrap();
            let y = mlp.forward(&on(&x)).unwrap();
            assert!(y.device().is_cuda());
            values(&y)
        })
        .expect("the ranks start");
        for (rank, y) in outs.iter().enumerate() {
            let worst = y
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-4, "rank {rank}: worst difference {worst}");
        }
    });
}

#[test]
fn a_cuda_tensor_on_a_host_rank_is_refused_by_name() {
    let Some((_n, _g)) = gpus("a_cuda_tensor_on_a_host_rank_is_refused_by_name") else {
        return;
    };
    within_limit(|| {
        let dev = Device::new_cuda(0).unwrap();
        let x = Tensor::ones(4, DType::F32, &dev).unwrap();
        let out = symmem::host::run(1, |_ctx| to_buffer::<f32>(&x).map(|_| ())).unwrap();
        let err = out.into_iter().next().unwrap().unwrap_err();
        assert!(matches!(err, Error::WrongDevice { .. }), "{err}");
        assert!(err.to_string().contains("host backend"), "{err}");
    });
}
