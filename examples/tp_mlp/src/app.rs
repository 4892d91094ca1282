//! One run of the example: parse the command line, pick the backend and the tensor-parallel
//! degree, run every rank, compute the reference and report; the process exit code.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use clap::Parser;
use symmem::launch::{detect, BackendChoice};
use symmem::{bf16, f16, Element, RankConfig, RankContext};

use crate::cli::Cli;
use crate::config::{resolve_tp, Backend, Config, ConfigError, Dtype};
#[cfg(feature = "cuda")]
use crate::cuda;
use crate::gen::{self, Weight};
use crate::report::report;
use crate::run::{self, RankReport};
use crate::{host, reference};

/// The first failure of any rank (the one that caused the others to abort).
static FIRST_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Panic payload of a rank that returned an error: it aborts the peers' pending collectives
/// (instead of leaving them waiting) and is reported as one line, without a backtrace.
struct RankFailure;

/// Parse, validate, run and report; the process exit code (0 pass, 1 fail or run error, 2
/// bad arguments).
pub fn run_cli() -> i32 {
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
