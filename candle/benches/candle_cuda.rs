//! The candle all-reduce on the GPU (issue 14, item 5; feature `cuda`, a bench binary):
//! symmem's [`AllReduceOp`] (copy into a symmetric buffer, NCCL's symmetric all-reduce, copy
//! out) against the op mistral.rs and candle's multi-process Llama use (`ncclAllReduce` from the
//! tensor's own memory into a fresh candle allocation, as `cudarc::nccl::Comm::all_reduce`
//! does; here through the same NCCL library and communicator), at decode sizes (1-64 tokens of
//! hidden 4096, bf16), and the parts: the two copies alone and the symmetric all-reduce alone.
//! Then the tensor-parallel MLP step (hidden 4096, intermediate 14336 / tp) with either op.
//!
//! ```text
//! cargo bench -p symmem-candle --features cuda --bench candle_cuda [-- --iters 200]
//! ```
//!
//! One rank per visible GPU, each on candle's stream (`init_rank_on_device`). Every figure is
//! the median over 5 rounds of the mean of `--iters` back-to-back calls, timed on the host
//! after a device synchronisation, and printed as a `RESULT` line. Without a GPU it says so
//! and exits 0.

use std::ffi::{c_int, c_void};
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use symmem::ReduceOp;
use symmem_candle::{cuda::init_rank_on_device, AllReduceOp, ColumnParallelLinear, TpMlp};

type AllReduceFn = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    symmem::cuda::nccl_sys::ncclComm_t,
    symmem::cuda::nccl_sys::cudaStream_t,
) -> c_int;

const NCCL_BFLOAT16: c_int = 9;
const NCCL_SUM: c_int = 0;

/// `ncclAllReduce(tensor -> fresh allocation)` on the group's communicator and candle's stream:
/// what mistral.rs's NCCL custom op does (through cudarc's `Comm::all_reduce`).
struct PlainNcclOp {
    f: AllReduceFn,
    comm: symmem::cuda::nccl_sys::ncclComm_t,
}

impl candle_core::CustomOp1 for PlainNcclOp {
    fn name(&self) -> &'static str {
        "plain-nccl-all-reduce"
    }
    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        candle_core::bail!("a CUDA op")
    }
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("contiguous input only")
        };
        let dev = &s.device;
        let stream = dev.cuda_stream();
        let src = s.as_cuda_slice::<half::bf16>()?.slice(start..end);
        // SAFETY: NCCL writes all `end - start` elements before candle reads them (same stream).
        let mut dst = unsafe { dev.alloc::<half::bf16>(end - start) }?;
        {
            let (sp, _a) = src.device_ptr(&stream);
            let (dp, _b) = dst.device_ptr_mut(&stream);
            // SAFETY: both pointers address `end - start` bf16 on this GPU, live until the
            // call is ordered on the stream; the communicator is the group's, alive.
            let r = unsafe {
                (self.f)(
                    sp as *const c_void,
                    dp as *mut c_void,
                    end - start,
                    NCCL_BFLOAT16,
                    NCCL_SUM,
                    self.comm,
                    stream.cu_stream() as _,
                )
            };
            if r != 0 {
                candle_core::bail!("ncclAllReduce returned {r}")
            }
        }
        Ok((
            candle_core::CudaStorage::wrap_cuda_slice(dst, dev.clone()),
            l.shape().clone(),
        ))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median over 5 rounds of the mean time of `iters` calls of `f`, in microseconds.
fn time_us(dev: &Device, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters.min(20) {
        f();
    }
    dev.synchronize().unwrap();
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                dev.synchronize().unwrap();
                t.elapsed().as_secs_f64() * 1e6 / iters as f64
            })
            .collect(),
    )
}

fn main() {
    let mut iters = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--iters" {
            iters = args.next().and_then(|v| v.parse().ok()).unwrap_or(iters);
        }
    }
    let n = match symmem::cuda::gpu_count() {
        Ok(n) if n > 0 => n,
        other => {
            println!("skipped: no GPU ({other:?})");
            return;
        }
    };
    // SAFETY: loading NCCL runs its initialisers, as symmem's own load does (the same library).
    let lib = unsafe { libloading::Library::new("libnccl.so.2") }.expect("libnccl.so.2");
    // SAFETY: the symbol has this signature (nccl.h).
    let f: AllReduceFn = unsafe { *lib.get::<AllReduceFn>(b"ncclAllReduce\0").unwrap() };
    let id = symmem::cuda::UniqueId::new().expect("an NCCL id");
    let cfg = symmem::RankConfig::default();
    let (hidden, inter) = (4096usize, 14336usize);
    std::thread::scope(|s| {
        for rank in 0..n {
            let cfg = cfg.clone();
            s.spawn(move || {
                let dev = Device::new_cuda_with_stream(rank).unwrap();
                let ctx = init_rank_on_device(&dev, rank, n, &id, cfg).unwrap();
                let tp = ctx.world();
                let comm = symmem::cuda::nccl_comm(&tp).unwrap().raw_comm();
                let plain = PlainNcclOp { f, comm };
                let sym = AllReduceOp::new(&tp, ReduceOp::Sum);
                let say = |line: String| {
                    if rank == 0 {
                        println!("{line}");
                    }
                };
                for tokens in [1usize, 2, 4, 8, 16, 32, 64] {
                    let x = Tensor::ones((tokens, hidden), DType::BF16, &dev).unwrap();
                    let us_sym = time_us(&dev, iters, || {
                        x.apply_op1_no_bwd(&sym).unwrap();
                    });
                    let us_plain = time_us(&dev, iters, || {
                        x.apply_op1_no_bwd(&plain).unwrap();
                    });
                    let mut buf = tp
                        .with_window(|| symmem::alloc_zeroed::<half::bf16>(tokens * hidden))
                        .unwrap();
                    let us_ar = time_us(&dev, iters, || {
                        tp.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
                    });
                    let us_copies = time_us(&dev, iters, || {
                        symmem_candle::copy_to_buffer(&x, &mut buf).unwrap();
                        symmem_candle::from_buffer(&buf, (tokens, hidden), &dev).unwrap();
                    });
                    say(format!(
                        "RESULT candle_cuda_all_reduce tp={n} tokens={tokens} hidden={hidden} dtype=bf16 symmem_op_us={us_sym:.2} plain_nccl_op_us={us_plain:.2} symmetric_all_reduce_us={us_ar:.2} copies_us={us_copies:.2} path_symmetric={}",
                        buf.is_symmetric() && tp.symmetric_kernels(symmem::Collective::AllReduce, ReduceOp::Sum, symmem::DType::BF16)
                    ));
                }
                // The MLP step with either all-reduce.
                let w = |seed: f64, r: usize, c: usize| {
                    (Tensor::ones((r, c), DType::F32, &dev).unwrap() * (seed / (c as f64).sqrt()))
                        .unwrap()
                        .to_dtype(DType::BF16)
                        .unwrap()
                };
                let (gate, up, down) = (w(0.5, inter, hidden), w(0.25, inter, hidden), w(0.5, hidden, inter));
                let mlp = TpMlp::from_full(&gate, &up, &down, &tp).unwrap();
                let gate_up = (
                    ColumnParallelLinear::from_full(&gate, rank, n).unwrap(),
                    ColumnParallelLinear::from_full(&up, rank, n).unwrap(),
                );
                let down_shard = symmem_candle::shard(&down, 1, rank, n).unwrap();
                drop((gate, up, down));
                for tokens in [1usize, 8, 32, 64] {
                    let x = Tensor::ones((tokens, hidden), DType::BF16, &dev).unwrap();
                    let us_sym = time_us(&dev, iters, || {
                        mlp.forward(&x).unwrap();
                    });
                    let us_plain = time_us(&dev, iters, || {
                        let g = gate_up.0.forward(&x).unwrap();
                        let u = gate_up.1.forward(&x).unwrap();
                        let h = (candle_nn::ops::silu(&g).unwrap() * u).unwrap();
                        let partial = h.matmul(&down_shard.t().unwrap()).unwrap();
                        partial.apply_op1_no_bwd(&plain).unwrap();
                    });
                    say(format!(
                        "RESULT candle_cuda_mlp tp={n} tokens={tokens} hidden={hidden} inter={inter} dtype=bf16 symmem_step_us={us_sym:.2} plain_nccl_step_us={us_plain:.2}"
                    ));
                }
                drop(ctx);
            });
        }
    });
}
