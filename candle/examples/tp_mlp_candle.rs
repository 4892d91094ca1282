//! A tensor-parallel SwiGLU MLP in candle on symmem's host backend (ranks are threads, no GPU):
//! builds `TpMlp` at tp 2, 3 and 4 from the same full weights, compares its output with the
//! unsharded candle MLP, and prints the largest error and the step time.
//!
//! ```text
//! cargo run --release -p symmem-candle --example tp_mlp_candle [-- --dtype bf16 --steps 20 --hidden 512 --inter 1536 --batch 8 --tp 2,4]
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
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        dtype: DType::F32,
        steps: 20,
        hidden: 512,
        inter: 1536,
        batch: 8,
        tp: vec![2, 3, 4],
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
            other => {
                return Err(format!(
                    "unknown flag {other:?}; flags: --dtype --steps --hidden --inter --batch --tp"
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
        "SwiGLU MLP, {:?}, batch {} hidden {h} intermediate {i}, host backend (ranks are threads)",
        a.dtype, a.batch
    );
    println!(
        "unsharded candle reference: {ref_time:?} per step (median of {})",
        a.steps
    );

    for &tp in &a.tp {
        let results = symmem::host::run(tp, |ctx| -> symmem_candle::Result<_> {
            let mlp = TpMlp::from_full(&gate, &up, &down, &ctx.world())?;
            let (mut y, report) = mlp.forward_with_report(&x)?; // warm-up (pool segments)
            let mut times = Vec::with_capacity(a.steps);
            for _ in 0..a.steps {
                let t = Instant::now();
                y = mlp.forward(&x)?;
                times.push(t.elapsed());
            }
            Ok((y, median(times), report))
        })?;
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
