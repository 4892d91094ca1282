//! A tensor-parallel SwiGLU MLP in candle on symmem: builds `TpMlp` at tp 2, 3 and 4 from the
//! same full weights, compares its output with the unsharded candle MLP, and prints the largest
//! error and the step time. By default on symmem's host backend (ranks are threads, candle's
//! CPU device, no GPU); with the `cuda` feature and `--device cuda`, one rank per GPU, each on
//! its candle CUDA device's stream (`symmem_candle::cuda::init_rank_on_device`).
//!
//! ```text
//! cargo run --release -p symmem-candle --example tp_mlp_candle [-- --dtype bf16 --steps 20 --hidden 512 --inter 1536 --batch 8 --tp 2,4]
//! cargo run --release -p symmem-candle --features cuda --example tp_mlp_candle -- --device cuda --tp 1,2
//! ```

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Tensor};
use symmem_candle::{SwiGluMlp, TpMlp};

struct Args {
    dtype: DType,
    steps: usize,
    hidden: usize,
    inter: usize,
    batch: usize,
    tp: Vec<usize>,
    cuda: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        dtype: DType::F32,
        steps: 20,
        hidden: 512,
        inter: 1536,
        batch: 8,
        tp: vec![2, 3, 4],
        cuda: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{flag}: {v:?} is not a positive integer"))
        };
        match flag.as_str() {
            "--dtype" => {
                a.dtype = match value.as_str() {
                    "f32" => DType::F32,
                    "bf16" => DType::BF16,
                    "f16" => DType::F16,
                    "f64" => DType::F64,
                    other => return Err(format!("--dtype: {other:?}: use f32, bf16, f16 or f64")),
                }
            }
            "--steps" => a.steps = num(&value)?,
            "--hidden" => a.hidden = num(&value)?,
            "--inter" => a.inter = num(&value)?,
            "--batch" => a.batch = num(&value)?,
            "--tp" => a.tp = value.split(',').map(num).collect::<Result<Vec<_>, _>>()?,
            "--device" => {
                a.cuda = match value.as_str() {
                    "cpu" => false,
                    "cuda" if cfg!(feature = "cuda") => true,
                    "cuda" => return Err("--device cuda: this build has no CUDA path; build with `--features cuda`".into()),
                    other => return Err(format!("--device: {other:?}: use cpu or cuda")),
                }
            }
            other => {
                return Err(format!(
                    "unknown flag {other:?}; flags: --dtype --steps --hidden --inter --batch --tp --device"
                ))
            }
        }
    }
    Ok(a)
}

/// Deterministic weights in `[-scale, scale)` (xorshift), rounded to `dtype` once.
fn random(seed: u64, shape: &[usize], scale: f64, dtype: DType) -> candle_core::Result<Tensor> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((r >> 11) as f64 / (1u64 << 52) as f64 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse()?;
    let (h, i) = (a.hidden, a.inter);
    let x = random(1, &[a.batch, h], 1.0, a.dtype)?;
    let gate = random(2, &[i, h], 1.0 / (h as f64).sqrt(), a.dtype)?;
    let up = random(3, &[i, h], 1.0 / (h as f64).sqrt(), a.dtype)?;
    let down = random(4, &[h, i], 1.0 / (i as f64).sqrt(), a.dtype)?;

    let reference = SwiGluMlp::new(&gate, &up, &down)?;
    let mut times = Vec::new();
    let mut y_ref = reference.forward(&x)?;
    for _ in 0..a.steps {
        let t = Instant::now();
        y_ref = reference.forward(&x)?;
        times.push(t.elapsed());
    }
    let ref_time = median(times);
    let y_ref64 = y_ref.to_dtype(DType::F64)?;
    let scale = y_ref64
        .abs()?
        .max_keepdim(0)?
        .max_keepdim(1)?
        .flatten_all()?
        .to_vec1::<f64>()?[0];
    println!(
        "SwiGLU MLP, {:?}, batch {} hidden {h} intermediate {i}, {}",
        a.dtype,
        a.batch,
        if a.cuda {
            "CUDA backend (one rank per GPU, on candle's stream)"
        } else {
            "host backend (ranks are threads)"
        }
    );
    println!(
        "unsharded candle reference: {ref_time:?} per step (median of {})",
        a.steps
    );

    for &tp in &a.tp {
        let step = |ctx: &symmem::RankContext, device: &Device| -> symmem_candle::Result<_> {
            let on = |t: &Tensor| t.to_device(device);
            let mlp = TpMlp::from_full(&on(&gate)?, &on(&up)?, &on(&down)?, &ctx.world())?;
            let x = on(&x)?;
            let (mut y, report) = mlp.forward_with_report(&x)?; // warm-up (pool segments)
            let mut times = Vec::with_capacity(a.steps);
            for _ in 0..a.steps {
                let t = Instant::now();
                y = mlp.forward(&x)?;
                device.synchronize()?;
                times.push(t.elapsed());
            }
            Ok((y, median(times), report))
        };
        let results = if a.cuda {
            on_gpus(tp, step)?
        } else {
            symmem::host::run(tp, |ctx| step(ctx, &Device::Cpu))?
        };
        let mut worst = 0.0f64;
        let mut step = Duration::ZERO;
        let mut path = String::new();
        for r in results {
            let (y, t, report) = r?;
            let diff = (y.to_dtype(DType::F64)? - &y_ref64)?.abs()?;
            let m = diff.flatten_all()?.max(0)?.to_scalar::<f64>()?;
            worst = worst.max(m);
            step = step.max(t);
            path = match &report.path {
                symmem_candle::CollectivePath::Symmetric => "symmetric".to_string(),
                symmem_candle::CollectivePath::Plain(why) => format!("plain ({why})"),
            };
        }
        println!(
            "tp {tp}: max |TP - reference| = {worst:.3e} ({:.3e} of the largest output), step {step:?} (median, slowest rank), all-reduce path: {path}",
            worst / scale
        );
    }
    Ok(())
}

/// Run `f` on `tp` ranks, one per GPU, each on the stream of its candle CUDA device.
#[cfg(feature = "cuda")]
fn on_gpus<R: Send>(
    tp: usize,
    f: impl Fn(&symmem::RankContext, &Device) -> symmem_candle::Result<R> + Sync,
) -> Result<Vec<symmem_candle::Result<R>>, Box<dyn std::error::Error>> {
    let gpus = symmem::cuda::gpu_count()?;
    if tp > gpus {
        return Err(format!("--tp {tp} needs {tp} GPUs; {gpus} visible").into());
    }
    let id = symmem::cuda::UniqueId::new()?;
    let f = &f;
    Ok(std::thread::scope(|s| {
        let ranks: Vec<_> = (0..tp)
            .map(|rank| {
                s.spawn(move || -> symmem_candle::Result<R> {
                    let device = Device::new_cuda_with_stream(rank)?;
                    let ctx = symmem_candle::cuda::init_rank_on_device(
                        &device,
                        rank,
                        tp,
                        &id,
                        symmem::RankConfig::default(),
                    )?;
                    f(&ctx, &device)
                })
            })
            .collect();
        ranks
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    }))
}

/// Without the `cuda` feature `--device cuda` is refused while parsing.
#[cfg(not(feature = "cuda"))]
fn on_gpus<R: Send>(
    _tp: usize,
    _f: impl Fn(&symmem::RankContext, &Device) -> symmem_candle::Result<R> + Sync,
) -> Result<Vec<symmem_candle::Result<R>>, Box<dyn std::error::Error>> {
    Err("this build has no CUDA path; build with `--features cuda`".into())
}
