//! What every rank does: build its shard of the model, then for each token count run one
//! eager step (its output is checked), time eager steps, capture a step and time its replays,
//! time the all-reduce on a symmetric and on a plain buffer, and measure the device copy
//! bandwidth and the GEMM rate. The same code runs on both backends; only the kernels differ.

use std::time::{Duration, Instant};

use symmem::{Buffer, Element, Error, Group, RankContext, ReduceOp};

use crate::config::Config;
use crate::gen;
use crate::memory::fmt_bytes;
use crate::model::{symmetric_zeros, Kernels, TpMlp, TP_GROUP};
use crate::results::GemmChoice;

/// Measurements of one token count on one rank.
#[derive(Clone, Debug, Default)]
pub struct TokenReport {
    /// Tokens (rows of `x`).
    pub tokens: usize,
    /// Milliseconds per eager step.
    pub eager_ms: f64,
    /// Milliseconds per replay of the captured step (`--graph`).
    pub graph_ms: Option<f64>,
    /// Whether the replayed step's output equals the eager output bit for bit (`--graph`).
    pub graph_bit_exact: Option<bool>,
    /// Bytes of one all-reduce (`tokens * hidden` elements).
    pub ar_bytes: usize,
    /// Microseconds per all-reduce of a symmetric buffer.
    pub ar_sym_us: f64,
    /// Microseconds per all-reduce of a plain (default pool) buffer.
    pub ar_plain_us: f64,
    /// TFLOP/s of the gate-and-up GEMM `[tokens, hidden] x [hidden, 2 ffn/tp]`.
    pub gemm_gate_up_tflops: f64,
    /// TFLOP/s of the down GEMM `[tokens, ffn/tp] x [ffn/tp, hidden]`.
    pub gemm_down_tflops: f64,
    /// The first output rows of the eager step, in f64 (filled on rank 0 only).
    pub output: Vec<f64>,
}

/// What one rank measured.
#[derive(Clone, Debug, Default)]
pub struct RankReport {
    /// The rank's device, as the backend describes it.
    pub device: String,
    /// How the kernels compute.
    pub kernels: String,
    /// Weight bytes the rank reads per step.
    pub weight_bytes: usize,
    /// Device copy bandwidth in GB/s, counting bytes read and written.
    pub copy_gbps: f64,
    /// Whether `"tp"` registers symmetric windows (false: every buffer takes the plain path).
    pub symmetric_supported: bool,
    /// Where the down projection's output came from (pool, window, offset).
    pub down_output: String,
    /// Whether the down projection's output is symmetric for group `"tp"`.
    pub down_symmetric: bool,
    /// Whether the intermediates (`x`, `h`) are plain, as they should be.
    pub intermediates_plain: bool,
    /// One entry per token count.
    pub tokens: Vec<TokenReport>,
    /// The GEMM algorithm choices of the rank's kernels (rank 0 on CUDA with `--gemm auto`).
    pub gemm_choices: Vec<GemmChoice>,
}

/// Prints progress lines on stderr (rank 0 only), at most one every two seconds in loops.
struct Progress {
    on: bool,
}

impl Progress {
    fn say(&self, msg: &str) {
        if self.on {
            eprintln!("tp_mlp: {msg}");
        }
    }
}

/// Run `f` `warmup` times, then time `iters` runs between two stream synchronisations, all
/// ranks starting together; seconds per run.
fn timed(
    world: &Group,
    p: &Progress,
    label: &str,
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> Result<(), Error>,
) -> Result<f64, Error> {
    for _ in 0..warmup {
        f()?;
    }
    world.barrier()?;
    symmem::synchronize()?;
    let start = Instant::now();
    let mut last = start;
    for i in 0..iters {
        f()?;
        if p.on && last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            p.say(&format!("  {label}: {}/{iters} iterations", i + 1));
        }
    }
    symmem::synchronize()?;
    Ok(start.elapsed().as_secs_f64() / iters.max(1) as f64)
}

/// The input `x` of `tokens` rows in the storage type.
fn input<T: Element>(seed: u64, tokens: usize, hidden: usize) -> Result<Vec<T>, Error> {
    gen::input(seed, tokens, hidden, T::from_f64).map_err(|_| Error::HostAlloc {
        bytes: tokens
            .saturating_mul(hidden)
            .saturating_mul(std::mem::size_of::<T>()),
    })
}

/// The values in f64.
fn to_f64<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// Which pool a buffer came from, for the report.
fn describe_buffer<T: Element>(b: &Buffer<T>) -> String {
    match b.symmetric() {
        Some(s) => format!(
            "symmetric (group {}, window {}, offset {})",
            s.group, s.window, s.offset
        ),
        None => format!("plain ({} pool)", b.pool_label()),
    }
}

/// The work of one rank. `make_kernels` builds the backend's kernels on the rank's thread;
/// `output_rows` is how many output rows rank 0 returns for the check.
pub fn run_rank<T: Element, K: Kernels<T>>(
    ctx: &RankContext,
    cfg: &Config,
    output_rows: usize,
    make_kernels: impl FnOnce(&RankContext) -> Result<K, Error>,
) -> Result<RankReport, Error> {
    let world = ctx.world();
    let tp = ctx.split_group(TP_GROUP, &world, 0, ctx.rank() as u32)?;
    let p = Progress { on: tp.rank() == 0 };
    let kernels = make_kernels(ctx)?;
    let kernels_desc = kernels.describe();
    let probe_bytes = kernels.probe_copy_bytes();
    p.say(&format!(
        "generating and uploading weights: {} layer(s) of hidden {} x ffn {} / tp {}",
        cfg.layers,
        cfg.hidden,
        cfg.ffn,
        tp.size()
    ));
    let model = TpMlp::<T, K>::new(
        tp.clone(),
        cfg.hidden,
        cfg.ffn,
        cfg.layers,
        cfg.seed,
        kernels,
    )?;
    let hidden = cfg.hidden;

    // Where buffers come from: the down projection's output must be symmetric for "tp",
    // the intermediates plain.
    let (down_output, down_symmetric, intermediates_plain) = {
        let x = symmem::alloc_from_host(&input::<T>(cfg.seed, 1, hidden)?)?;
        let h = model.gate_up(0, &x, 1)?;
        let y = model.down_proj(0, &h, 1)?;
        symmem::synchronize()?;
        (
            describe_buffer(&y),
            y.is_symmetric() && y.group_name() == Some(TP_GROUP),
            !x.is_symmetric() && !h.is_symmetric(),
        )
    };

    // Device copy bandwidth (read + write bytes), for the memory floor.
    p.say(&format!(
        "measuring the device copy bandwidth ({} copies)",
        fmt_bytes(probe_bytes as u64)
    ));
    let copy_gbps = {
        let src = symmem::alloc_zeroed::<u8>(probe_bytes)?;
        let mut dst = symmem::alloc_zeroed::<u8>(probe_bytes)?;
        let reps = 10;
        let s = timed(&world, &Progress { on: false }, "copy", 2, reps, || {
            dst.copy_from(&src)
        })?;
        2.0 * probe_bytes as f64 / s / 1e9
    };

    let mut reports = Vec::with_capacity(cfg.tokens.len());
    for &t in &cfg.tokens {
        let mut r = TokenReport {
            tokens: t,
            ar_bytes: t * hidden * std::mem::size_of::<T>(),
            ..TokenReport::default()
        };
        let x = symmem::alloc_from_host(&input::<T>(cfg.seed, t, hidden)?)?;

        // One eager step: the checked output.
        let eager = model.forward(&x, t)?;
        let eager_host = eager.to_host_vec()?;
        drop(eager);
        if tp.rank() == 0 {
            r.output = to_f64(&eager_host[..output_rows.min(t) * hidden]);
        }

        p.say(&format!("tokens {t}: eager, {} iterations", cfg.iters));
        let s = timed(&world, &p, "eager", cfg.warmup, cfg.iters, || {
            model.forward(&x, t).map(drop)
        })?;
        r.eager_ms = s * 1e3;

        if cfg.graph {
            p.say(&format!(
                "tokens {t}: capturing one step, replaying {} times",
                cfg.iters
            ));
            model
                .group()
                .reserve_symmetric(model.symmetric_reserve(t))?;
            let (mut graph, out) = symmem::capture(|| model.forward(&x, t))?;
            graph.replay()?;
            let replayed = out.to_host_vec()?;
            r.graph_bit_exact = Some(
                replayed
                    .iter()
                    .zip(&eager_host)
                    .all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits()),
            );
            let s = timed(&world, &p, "graph", cfg.warmup, cfg.iters, || {
                graph.replay()
            })?;
            r.graph_ms = Some(s * 1e3);
        }

        p.say(&format!(
            "tokens {t}: all-reduce of {}, symmetric then plain",
            fmt_bytes(r.ar_bytes as u64)
        ));
        let mut sym = symmetric_zeros::<T>(t * hidden)?;
        let s = timed(
            &world,
            &p,
            "all-reduce (symmetric)",
            cfg.warmup,
            cfg.iters,
            || tp.all_reduce(&mut sym, ReduceOp::Sum),
        )?;
        r.ar_sym_us = s * 1e6;
        drop(sym);
        let mut plain = symmem::alloc_zeroed::<T>(t * hidden)?;
        let s = timed(
            &world,
            &p,
            "all-reduce (plain)",
            cfg.warmup,
            cfg.iters,
            || tp.all_reduce(&mut plain, ReduceOp::Sum),
        )?;
        r.ar_plain_us = s * 1e6;
        drop(plain);

        // GEMM rate of the two projections at this token count (real operands).
        let sh = model.dims().shard();
        let w = model.layer(0);
        let mut gu = symmem::alloc::<T>(t * 2 * sh)?;
        let s = timed(
            &world,
            &Progress { on: false },
            "gemm",
            cfg.warmup.min(2),
            cfg.iters,
            || {
                model
                    .kernels()
                    .gemm(&x, &w.w_gate_up, &mut gu, t, hidden, 2 * sh)
            },
        )?;
        r.gemm_gate_up_tflops = 2.0 * (t * hidden * 2 * sh) as f64 / s / 1e12;
        drop(gu);
        let h = model.gate_up(0, &x, t)?;
        let mut y = symmem::alloc::<T>(t * hidden)?;
        let s = timed(
            &world,
            &Progress { on: false },
            "gemm",
            cfg.warmup.min(2),
            cfg.iters,
            || model.kernels().gemm(&h, &w.w_down, &mut y, t, sh, hidden),
        )?;
        r.gemm_down_tflops = 2.0 * (t * sh * hidden) as f64 / s / 1e12;
        drop((h, y));
        reports.push(r);
    }
    symmem::synchronize()?;
    Ok(RankReport {
        device: ctx.device().describe(),
        kernels: kernels_desc,
        weight_bytes: model.weight_bytes(),
        copy_gbps,
        symmetric_supported: tp.symmetric_supported(),
        down_output,
        down_symmetric,
        intermediates_plain,
        tokens: reports,
        gemm_choices: model.kernels().gemm_choices(),
    })
}
