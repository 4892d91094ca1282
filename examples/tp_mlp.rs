//! Tensor-parallel Llama-style gated MLP (SwiGLU) on NCCL symmetric memory.
//!
//! ```text
//! cargo run --release --example tp_mlp                       # defaults: GPUs if any, else 2 host ranks
//! cargo run --release --example tp_mlp -- --backend host --tp 4 --layers 2 --graph
//! cargo run --release --example tp_mlp -- --preset llama3-8b --dtype bf16 --tokens 1,8,32,64,4096 --graph
//! cargo run --release --example tp_mlp -- --dump-checksum --seed 7   # compare with benches/py/tp_mlp_torch.py
//! ```
//!
//! Gate and up projections are column parallel, the down projection row parallel, then one
//! all-reduce over group `"tp"` per layer (Megatron). The down projection's output is allocated
//! by a function annotated `#[symmetric_memory(group = "tp")]` (`model.rs`), so the all-reduce
//! runs on symmetric memory; every other buffer comes from the default pool. Weights and input
//! come from a seeded generator (`gen.rs`, shared with the Python twin); the output is checked
//! against the unsharded model computed in f64 on the host (`reference.rs`).
//!
//! The table reports per token count the eager and the graph-replay time per step (`--graph`),
//! the all-reduce time on a symmetric and on a plain buffer of the same size, the memory floor
//! (weight bytes over the measured device copy bandwidth), the GEMM rate and the relative
//! error; `RESULT {json}` lines repeat each measurement for scripts. Exit codes: 0 pass,
//! 1 check failed or run error, 2 bad arguments.

#[path = "tp_mlp/config.rs"]
mod config;
#[cfg(feature = "cuda")]
#[path = "tp_mlp/cuda.rs"]
mod cuda;
#[path = "tp_mlp/gen.rs"]
mod gen;
#[path = "tp_mlp/host.rs"]
mod host;
#[cfg(feature = "cuda")]
#[path = "tp_mlp/lt.rs"]
mod lt;
#[path = "tp_mlp/model.rs"]
mod model;
#[path = "tp_mlp/reference.rs"]
mod reference;
#[path = "tp_mlp/run.rs"]
mod run;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use clap::Parser;
use symmem::launch::{detect, BackendChoice};
use symmem::{bf16, f16, Element, RankConfig, RankContext};

use config::{parse_tokens, resolve_tp, Backend, Config, ConfigError, Dtype, GemmMode, Preset};
use gen::Weight;
use run::RankReport;

/// Command line of the example.
#[derive(Parser, Debug)]
#[command(
    name = "tp_mlp",
    about = "Tensor-parallel SwiGLU MLP whose all-reduce runs on NCCL symmetric memory (host backend without GPUs)",
    after_help = "Exit codes: 0 pass, 1 check failed or run error, 2 bad arguments."
)]
struct Cli {
    /// Backend: auto (GPUs if usable, else host threads), host or cuda.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    backend: BackendChoice,
    /// Tensor-parallel degree (default: 2 on host, the number of GPUs up to 8 on CUDA, lowered
    /// to a divisor of --ffn).
    #[arg(long)]
    tp: Option<usize>,
    /// Token count, or a comma-separated list run one after the other (e.g. 1,8,32,64,4096).
    #[arg(long, default_value = "16")]
    tokens: String,
    /// Hidden size (default 256, or the preset's).
    #[arg(long)]
    hidden: Option<usize>,
    /// FFN size of the full MLP (default 1024, or the preset's); --tp must divide it.
    #[arg(long)]
    ffn: Option<usize>,
    /// Layers, stacked with a residual x = x + mlp_l(x).
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Storage type: f32, bf16 or f16 (the host backend computes in f32 and stores in it).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: Dtype,
    /// Model sizes: llama3-8b (hidden 4096, ffn 14336); --hidden/--ffn override it.
    #[arg(long, value_parser = parse_preset)]
    preset: Option<Preset>,
    /// Also capture one step into a graph and time its replays.
    #[arg(long)]
    graph: bool,
    /// Timed iterations of each measurement.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Untimed warm-up iterations before each measurement.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Seed of the weight and input generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compare with the f64 host reference (default).
    #[arg(long = "check", overrides_with = "no_check")]
    check: bool,
    /// Skip the reference check.
    #[arg(long = "no-check", overrides_with = "check")]
    no_check: bool,
    /// Token rows the reference covers (default: all rows when cheap, else at least 4).
    #[arg(long)]
    check_rows: Option<usize>,
    /// GEMMs on CUDA: auto (cuBLASLt, the fastest of its candidates timed per shape on the first
    /// eager call, falling back to cublasGemmEx) or cublas (cublasGemmEx only).
    #[arg(long, default_value = "auto", value_parser = parse_gemm)]
    gemm: GemmMode,
    /// Print sum and sum of squares of each weight tensor for hidden 8, ffn 16 and --seed
    /// (and --layers), to compare with the Python twin, then exit.
    #[arg(long)]
    dump_checksum: bool,
}

/// `--backend`: auto, host or cuda.
fn parse_backend(s: &str) -> Result<BackendChoice, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(BackendChoice::Auto),
        "host" => Ok(BackendChoice::Host),
        "cuda" => Ok(BackendChoice::Cuda),
        other => Err(ConfigError(format!(
            "unknown backend `{other}`; use auto, host or cuda"
        ))),
    }
}

/// `--dtype`: f32, bf16 or f16.
fn parse_dtype(s: &str) -> Result<Dtype, ConfigError> {
    s.parse()
}

/// `--gemm`: auto or cublas.
fn parse_gemm(s: &str) -> Result<GemmMode, ConfigError> {
    s.parse()
}

/// `--preset`: llama3-8b.
fn parse_preset(s: &str) -> Result<Preset, ConfigError> {
    s.parse()
}

impl Cli {
    /// The validated configuration.
    fn config(&self) -> Result<Config, ConfigError> {
        let (ph, pf) = self.preset.map(Preset::sizes).unwrap_or((256, 1024));
        let cfg = Config {
            tp: self.tp,
            tokens: parse_tokens(&self.tokens)?,
            hidden: self.hidden.unwrap_or(ph),
            ffn: self.ffn.unwrap_or(pf),
            layers: self.layers,
            dtype: self.dtype,
            graph: self.graph,
            iters: self.iters,
            warmup: self.warmup,
            seed: self.seed,
            check: !self.no_check,
            check_rows: self.check_rows,
            gemm: self.gemm,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The first failure of any rank (the one that caused the others to abort).
static FIRST_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Panic payload of a rank that returned an error: it aborts the peers' pending collectives
/// (instead of leaving them waiting) and is reported as one line, without a backtrace.
struct RankFailure;

/// Exit with [`real_main`]'s code.
fn main() {
    std::process::exit(real_main());
}

/// Parse, validate, run and report; the process exit code (0 pass, 1 fail or run error, 2
/// bad arguments).
fn real_main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            let text = e.to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("tp_mlp: {line} (see --help)");
            return 2;
        }
    };
    let cfg = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tp_mlp: error: {e}");
            return 2;
        }
    };
    if cli.dump_checksum {
        dump_checksums(cfg.seed, cfg.layers);
        return 0;
    }
    let (backend, gpus) = match resolve_backend(cli.backend) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tp_mlp: error: {e}");
            return 2;
        }
    };
    let tp = match resolve_tp(cfg.tp, backend, gpus, cfg.ffn) {
        Ok(tp) => tp,
        Err(e) => {
            eprintln!("tp_mlp: error: {e}");
            return 2;
        }
    };
    if backend == Backend::Host && std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // Ranks are threads: share the cores between them rather than oversubscribe.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        std::env::set_var("MATMUL_NUM_THREADS", (cores / tp).clamp(1, 4).to_string());
    }
    match cfg.dtype {
        Dtype::F32 => run_all::<f32>(&cfg, backend, tp),
        Dtype::Bf16 => run_all::<bf16>(&cfg, backend, tp),
        Dtype::F16 => run_all::<f16>(&cfg, backend, tp),
    }
}

/// The backend to run on and the number of visible GPUs.
fn resolve_backend(choice: BackendChoice) -> Result<(Backend, usize), ConfigError> {
    if choice == BackendChoice::Host {
        return Ok((Backend::Host, 0));
    }
    let report = detect();
    match report.why_not_cuda(1) {
        None if cfg!(feature = "cuda") => Ok((Backend::Cuda, report.gpus)),
        why => {
            let why =
                why.unwrap_or_else(|| "the example was built without the `cuda` feature".into());
            if choice == BackendChoice::Cuda {
                return Err(ConfigError(format!("--backend cuda: {why}")));
            }
            // The loader's list of tried library names is long: keep the reason itself.
            let short = why.split([':', '(']).next().unwrap_or(&why).trim();
            eprintln!("tp_mlp: no usable GPU ({short}); running on the host backend");
            Ok((Backend::Host, 0))
        }
    }
}

/// Print the checksums of the weight tensors for hidden 8 and ffn 16.
fn dump_checksums(seed: u64, layers: usize) {
    let (hidden, ffn) = (8usize, 16usize);
    println!(
        "tp_mlp checksums: hidden {hidden}, ffn {ffn}, seed {seed}; f64 sums in flat-index order"
    );
    for l in 0..layers {
        for w in [Weight::Gate, Weight::Up, Weight::Down] {
            let [r, c] = w.shape(hidden, ffn);
            let (sum, sumsq) = gen::checksum(seed, w.tensor_id(l), w.scale(hidden, ffn), r * c);
            println!(
                "layer {l} {:<4} [{r}, {c}]  sum {sum:+.17e}  sumsq {sumsq:.17e}",
                w.name()
            );
            println!(
                "CHECKSUM {{\"layer\":{l},\"tensor\":\"{}\",\"id\":{},\"shape\":[{r},{c}],\"seed\":{seed},\"sum\":{sum:e},\"sumsq\":{sumsq:e}}}",
                w.name(),
                w.tensor_id(l)
            );
        }
    }
    let x0 = gen::value(seed, gen::INPUT_TENSOR, 0, 1.0);
    println!(
        "x[0, 0] = {x0:+.17e} (input tensor id {})",
        gen::INPUT_TENSOR
    );
}

/// Run every rank, then check and report. Returns the exit code.
fn run_all<T: Element>(cfg: &Config, backend: Backend, tp: usize) -> i32 {
    let ref_rows = if cfg.check { cfg.reference_rows() } else { 0 };
    let choice = match backend {
        Backend::Host => BackendChoice::Host,
        Backend::Cuda => BackendChoice::Cuda,
    };
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<RankFailure>().is_none() {
            default_hook(info);
        }
    }));
    let rank = |ctx: &RankContext| -> RankReport {
        let out = match backend {
            Backend::Host => {
                run::run_rank::<T, _>(ctx, cfg, ref_rows, |ctx| Ok(host::HostKernels::new(ctx)))
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda => run::run_rank::<T, _>(ctx, cfg, ref_rows, |ctx| {
                cuda::CudaKernels::new(ctx, cfg.gemm)
            }),
            #[cfg(not(feature = "cuda"))]
            Backend::Cuda => Err(symmem::Error::BackendUnavailable(
                "built without the `cuda` feature".into(),
            )),
        };
        match out {
            Ok(r) => r,
            Err(e) => {
                let mut first = FIRST_FAILURE.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| format!("rank {}: {e}", ctx.rank()));
                drop(first);
                std::panic::panic_any(RankFailure)
            }
        }
    };
    let started = std::time::Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        symmem::launch::run(choice, tp, RankConfig::default(), rank)
    }));
    let reports = match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("tp_mlp: error: {e}");
            return 1;
        }
        Err(payload) => {
            let first = FIRST_FAILURE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let msg = first
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a rank panicked".into());
            eprintln!("tp_mlp: error: {msg}");
            return 1;
        }
    };
    let run_secs = started.elapsed().as_secs_f64();
    let reference = if cfg.check {
        eprintln!("tp_mlp: computing the f64 reference for the first {ref_rows} token row(s)");
        match reference::reference::<T>(cfg.seed, cfg.hidden, cfg.ffn, cfg.layers, ref_rows) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("tp_mlp: error: the f64 reference does not fit in host memory ({e}); lower --check-rows");
                return 1;
            }
        }
    } else {
        None
    };
    report(
        cfg,
        backend,
        tp,
        &reports,
        reference.as_deref(),
        ref_rows,
        run_secs,
    )
}

/// Largest value of `f` over the ranks.
fn max_over<F: Fn(&RankReport) -> f64>(reports: &[RankReport], f: F) -> f64 {
    reports.iter().map(f).fold(f64::NAN, f64::max)
}

/// `v` with about four significant digits (small rates, such as the host's, in exponent form).
fn sig(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.1}"),
        v if v >= 10.0 => format!("{v:.2}"),
        v if v >= 1.0 => format!("{v:.3}"),
        v => format!("{v:.3e}"),
    }
}

/// A number for the `RESULT` JSON lines (`null` when not finite).
fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6e}")
    } else {
        "null".into()
    }
}

/// Print the table and the `RESULT` lines; the exit code.
fn report(
    cfg: &Config,
    backend: Backend,
    tp: usize,
    reports: &[RankReport],
    reference: Option<&[f64]>,
    ref_rows: usize,
    run_secs: f64,
) -> i32 {
    let r0 = &reports[0];
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let copy_gbps = reports
        .iter()
        .map(|r| r.copy_gbps)
        .fold(f64::INFINITY, f64::min);
    let floor_ms = r0.weight_bytes as f64 / (copy_gbps * 1e9) * 1e3;
    let storage = if backend == Backend::Host && cfg.dtype != Dtype::F32 {
        format!(
            "{} storage, f32 compute on the host (converted on the fly)",
            cfg.dtype
        )
    } else if backend == Backend::Host {
        "f32".to_string()
    } else {
        format!("{} storage, f32 accumulation (cuBLAS)", cfg.dtype)
    };
    let more = if reports.len() > 1 {
        format!(" (+{} more rank(s))", reports.len() - 1)
    } else {
        String::new()
    };
    println!();
    println!("tp_mlp: tensor-parallel SwiGLU MLP, all-reduce on symmetric memory");
    println!("  backend      {backend}");
    println!("  device       {}{more}", r0.device);
    println!("  kernels      {}", r0.kernels);
    println!(
        "  tp           {tp} (group \"tp\"; symmetric windows: {})",
        if r0.symmetric_supported { "yes" } else { "no" }
    );
    println!(
        "  tokens       {}",
        cfg.tokens
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  hidden       {}", cfg.hidden);
    println!("  ffn          {} ({} per rank)", cfg.ffn, cfg.ffn / tp);
    println!("  layers       {}", cfg.layers);
    println!("  dtype        {storage}");
    println!("  down output  {}", r0.down_output);
    println!(
        "  weights      {:.1} MiB per rank; memory floor {:.4} ms/step at {:.1} GB/s device copy (read + write)",
        mib(r0.weight_bytes),
        floor_ms,
        copy_gbps
    );
    println!(
        "  timing       {} iterations after {} warm-up, slowest rank",
        cfg.iters, cfg.warmup
    );
    match reference {
        Some(_) => println!("  check        f64 host reference over the first {ref_rows} token row(s) of each run, bound {:.0e}", cfg.dtype.bound()),
        None => println!("  check        off (--no-check)"),
    }
    println!();
    println!(
        "  {:>6} | {:>10} | {:>10} | {:>13} | {:>13} | {:>9} | {:>9} | {:>9} | {:>6}",
        "tokens",
        "eager ms",
        "graph ms",
        "AR sym us",
        "AR plain us",
        "floor ms",
        "GEMM TF/s",
        "rel err",
        "result"
    );
    println!("  {}", "-".repeat(106));

    let mut all_pass = r0.down_symmetric || !r0.symmetric_supported;
    all_pass &= reports.iter().all(|r| r.intermediates_plain);
    let mut results = Vec::new();
    for (i, t) in r0.tokens.iter().enumerate() {
        let tokens = t.tokens;
        let eager = max_over(reports, |r| r.tokens[i].eager_ms);
        let graph = t
            .graph_ms
            .map(|_| max_over(reports, |r| r.tokens[i].graph_ms.unwrap_or(f64::NAN)));
        let ar_sym = max_over(reports, |r| r.tokens[i].ar_sym_us);
        let ar_plain = max_over(reports, |r| r.tokens[i].ar_plain_us);
        let gemm_gu = reports
            .iter()
            .map(|r| r.tokens[i].gemm_gate_up_tflops)
            .fold(f64::INFINITY, f64::min);
        let gemm_dn = reports
            .iter()
            .map(|r| r.tokens[i].gemm_down_tflops)
            .fold(f64::INFINITY, f64::min);
        let exact = reports
            .iter()
            .all(|r| r.tokens[i].graph_bit_exact.unwrap_or(true));
        let (err, pass) = match reference {
            Some(reference) => {
                let rows = ref_rows.min(tokens);
                let err = reference::rel_error(&t.output, &reference[..rows * cfg.hidden]);
                (Some(err), err <= cfg.dtype.bound())
            }
            None => (None, true),
        };
        // On the host backend a replay runs the same code on the same data: it must match.
        let pass = pass && (exact || backend != Backend::Host);
        all_pass &= pass;
        let opt =
            |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
        println!(
            "  {:>6} | {:>10.4} | {:>10} | {:>13.2} | {:>13.2} | {:>9.4} | {:>9} | {:>9} | {:>6}",
            tokens,
            eager,
            opt(graph, 4),
            ar_sym,
            ar_plain,
            floor_ms,
            sig((gemm_gu + gemm_dn) / 2.0),
            err.map(|e| format!("{e:.2e}"))
                .unwrap_or_else(|| "-".into()),
            if pass { "PASS" } else { "FAIL" }
        );
        results.push((
            tokens, eager, graph, exact, ar_sym, ar_plain, gemm_gu, gemm_dn, err, pass, t.ar_bytes,
        ));
    }
    println!();
    let gr = r0.tokens.iter().any(|t| t.graph_ms.is_some());
    if gr {
        let exact = reports
            .iter()
            .all(|r| r.tokens.iter().all(|t| t.graph_bit_exact.unwrap_or(true)));
        println!(
            "  graph replay output equals the eager output bit for bit: {}",
            if exact { "yes" } else { "no" }
        );
    }
    println!("  GEMM TF/s is the mean of the gate-up and the down projection rates (each in RESULT lines)");
    println!(
        "  overall: {} ({:.1} s)",
        if all_pass { "PASS" } else { "FAIL" },
        run_secs
    );
    println!();

    let common = format!(
        "\"backend\":\"{backend}\",\"tp\":{tp},\"hidden\":{},\"ffn\":{},\"layers\":{},\"dtype\":\"{}\"",
        cfg.hidden, cfg.ffn, cfg.layers, cfg.dtype
    );
    println!(
        "RESULT {{\"kind\":\"memory_floor\",{common},\"weight_bytes_per_rank\":{},\"copy_gbps\":{},\"floor_ms\":{}}}",
        r0.weight_bytes,
        json_num(copy_gbps),
        json_num(floor_ms)
    );
    for (tokens, eager, graph, exact, ar_sym, ar_plain, gu, dn, err, pass, ar_bytes) in results {
        println!("RESULT {{\"kind\":\"step\",\"mode\":\"eager\",{common},\"tokens\":{tokens},\"ms_per_step\":{}}}", json_num(eager));
        if let Some(g) = graph {
            println!(
                "RESULT {{\"kind\":\"step\",\"mode\":\"graph\",{common},\"tokens\":{tokens},\"ms_per_step\":{},\"bit_exact_vs_eager\":{exact}}}",
                json_num(g)
            );
        }
        for (buffer, us) in [("symmetric", ar_sym), ("plain", ar_plain)] {
            println!(
                "RESULT {{\"kind\":\"all_reduce\",\"buffer\":\"{buffer}\",{common},\"tokens\":{tokens},\"bytes\":{ar_bytes},\"us\":{}}}",
                json_num(us)
            );
        }
        let sh = cfg.ffn / tp;
        for (name, shape, tf) in [
            ("gate_up", [tokens, cfg.hidden, 2 * sh], gu),
            ("down", [tokens, sh, cfg.hidden], dn),
        ] {
            println!(
                "RESULT {{\"kind\":\"gemm\",\"gemm\":\"{name}\",{common},\"tokens\":{tokens},\"mkn\":[{},{},{}],\"tflops\":{}}}",
                shape[0],
                shape[1],
                shape[2],
                json_num(tf)
            );
        }
        if let Some(e) = err {
            println!(
                "RESULT {{\"kind\":\"check\",{common},\"tokens\":{tokens},\"rows\":{},\"rel_error\":{},\"bound\":{},\"pass\":{pass}}}",
                ref_rows.min(tokens),
                json_num(e),
                json_num(cfg.dtype.bound())
            );
        }
    }
    if all_pass {
        0
    } else {
        1
    }
}
