//! One run of the example: parse the command line, pick the backend and the tensor-parallel
//! degree, run every rank, compute the reference and report; the process exit code.

use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use clap::Parser;
use symmem::launch::{detect, BackendChoice, BackendReport};
use symmem::{bf16, f16, Element, RankConfig, RankContext};

use crate::cli::{parse_backend, Cli};
use crate::config::{resolve_tp, Backend, Config, ConfigError, Dtype};
#[cfg(feature = "cuda")]
use crate::cuda;
use crate::gen::{self, Weight};
use crate::memory::{self, fmt_bytes, Available, Estimate};
use crate::report::report;
use crate::results::JsonFile;
use crate::run::{self, RankReport};
use crate::{host, reference};

/// The environment variable the library's errors name for the backend choice.
pub const BACKEND_VAR: &str = "SYMMEM_BACKEND";

/// The first failure of any rank (the one that caused the others to abort): the verdict and
/// the details.
static FIRST_FAILURE: Mutex<Option<(String, Vec<String>)>> = Mutex::new(None);

/// Panic payload of a rank that returned an error: it aborts the peers' pending collectives
/// (instead of leaving them waiting) and is reported as one line, without a backtrace.
struct RankFailure;

/// Parse the process's arguments, validate, run and report; the process exit code (0 pass,
/// 1 fail or run error, 2 bad arguments or sizes that do not fit).
pub fn run_cli() -> i32 {
    install_log_subscriber();
    run_with_args(std::env::args_os())
}

/// The program's log subscriber (the library only emits `tracing` events): symmem's events at
/// `info` and above on stderr, or what `RUST_LOG` says (`RUST_LOG=symmem=debug` adds pool
/// segments and window registrations, `symmem=trace` every collective).
pub fn install_log_subscriber() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("symmem=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}

/// [`run_cli`] with explicit arguments (the first is the program name).
pub fn run_with_args<I, A>(args: I) -> i32
where
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
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
            let line = line.strip_prefix("error: ").unwrap_or(line);
            eprintln!("tp_mlp: error: {line} (see --help)");
            return 2;
        }
    };
    let cfg = match cli.config() {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string(), &[]),
    };
    if cli.dump_checksum {
        dump_checksums(cfg.seed, cfg.layers);
        return 0;
    }
    let (choice, source) = match cli.backend {
        Some(c) => (c, Source::Flag),
        None => match backend_from_env() {
            Ok(c) => (c, Source::Env),
            Err(e) => return fail(2, &e.to_string(), &[]),
        },
    };
    let (backend, gpus) = match resolve_backend(choice, source) {
        Ok(b) => b,
        Err(e) => return fail(2, &e.verdict, &e.details),
    };
    let tp = match resolve_tp(cfg.tp, backend, gpus, cfg.ffn) {
        Ok(tp) => tp,
        Err(e) => return fail(2, &e.to_string(), &[]),
    };
    let ref_rows = if cfg.check { cfg.reference_rows() } else { 0 };
    // Held until the run ends: the GPUs' primary contexts opened to ask for their free memory.
    let mut _contexts: Option<Box<dyn std::any::Any>> = None;
    if !cli.no_memory_check {
        let need = Estimate::new(&cfg, backend, tp, ref_rows);
        let avail = match cli.assume_free_gib {
            Some(gib) => {
                let b = (gib * memory::GIB as f64) as u64;
                Available {
                    host: Some(b),
                    gpus: if backend == Backend::Cuda {
                        vec![b; tp]
                    } else {
                        Vec::new()
                    },
                }
            }
            None => {
                let host = memory::host_available();
                if host.is_none() {
                    eprintln!("tp_mlp: the available host memory is unknown here; not checked");
                }
                let (gpus, contexts) = gpu_free(backend, tp);
                _contexts = contexts;
                Available { host, gpus }
            }
        };
        if let Err(e) = memory::check(&need, &avail) {
            return fail(2, &e.verdict, &e.details);
        }
    }
    let json = match cli.json.as_deref().map(JsonFile::create).transpose() {
        Ok(j) => j,
        Err(e) => return fail(2, &e, &[]),
    };
    if backend == Backend::Host && std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // Ranks are threads: share the cores between them rather than oversubscribe.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        std::env::set_var("MATMUL_NUM_THREADS", (cores / tp).clamp(1, 4).to_string());
    }
    let code = match cfg.dtype {
        Dtype::F32 => run_all::<f32>(&cfg, backend, tp, ref_rows, json),
        Dtype::Bf16 => run_all::<bf16>(&cfg, backend, tp, ref_rows, json),
        Dtype::F16 => run_all::<f16>(&cfg, backend, tp, ref_rows, json),
    };
    drop(_contexts);
    code
}

/// Free bytes of the ranks' GPUs on CUDA (empty when unknown, or on the host backend), and
/// the contexts opened to ask, to keep until the run ends.
#[cfg(feature = "cuda")]
fn gpu_free(backend: Backend, tp: usize) -> (Vec<u64>, Option<Box<dyn std::any::Any>>) {
    if backend != Backend::Cuda {
        return (Vec::new(), None);
    }
    match memory::gpu_free(tp) {
        Ok((free, contexts)) => (free, Some(Box::new(contexts))),
        Err(e) => {
            eprintln!("tp_mlp: could not ask the GPUs for their free memory ({e}); not checked");
            (Vec::new(), None)
        }
    }
}

/// Without the `cuda` feature no rank runs on a GPU: nothing to ask.
#[cfg(not(feature = "cuda"))]
fn gpu_free(_backend: Backend, _tp: usize) -> (Vec<u64>, Option<Box<dyn std::any::Any>>) {
    (Vec::new(), None)
}

/// The verdict (with the fix) and details of a rank's error; running out of memory names the
/// bytes in MiB/GiB.
fn rank_failure(rank: usize, e: &symmem::Error) -> (String, Vec<String>) {
    let fix = "lower --hidden, --ffn, --layers or --tokens, or raise --tp on GPUs";
    let verdict = match e {
        symmem::Error::HostAlloc { bytes } => format!(
            "rank {rank} ran out of host memory allocating {}; {fix}",
            fmt_bytes(*bytes as u64)
        ),
        symmem::Error::OutOfMemory {
            pool,
            requested,
            reserved,
            in_use,
            ..
        } => format!(
            "rank {rank} ran out of memory allocating {} from pool `{pool}` ({} reserved, {} in use); {fix}",
            fmt_bytes(*requested as u64),
            fmt_bytes(*reserved as u64),
            fmt_bytes(*in_use as u64)
        ),
        other => return (format!("rank {rank}: {other}"), Vec::new()),
    };
    (verdict, vec![format!("detail: {e}")])
}

/// Print `verdict` as the error's first line (what is wrong and what to do), then `details`
/// indented; return `code`.
fn fail(code: i32, verdict: &str, details: &[String]) -> i32 {
    eprintln!("tp_mlp: error: {verdict}");
    for d in details {
        eprintln!("  {d}");
    }
    code
}

/// Where the backend choice came from, to name it in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// `--backend`.
    Flag,
    /// `SYMMEM_BACKEND` (or its default, auto).
    Env,
}

/// The backend `SYMMEM_BACKEND` asks for: unset or empty means auto, as in the library.
fn backend_from_env() -> Result<BackendChoice, ConfigError> {
    match std::env::var_os(BACKEND_VAR) {
        None => Ok(BackendChoice::Auto),
        Some(v) => match v.to_str() {
            None => Err(ConfigError(format!(
                "{BACKEND_VAR} is not valid UTF-8; set it to auto, host or cuda, or unset it (--backend overrides it)"
            ))),
            Some(s) if s.trim().is_empty() => Ok(BackendChoice::Auto),
            Some(s) => parse_backend(s).map_err(|_| {
                ConfigError(format!(
                    "{BACKEND_VAR}=`{}` is not a backend; set it to auto, host or cuda, or unset it (--backend overrides it)",
                    s.trim()
                ))
            }),
        },
    }
}

/// A backend that cannot be used: the verdict with the fix, then the details.
struct BackendError {
    verdict: String,
    details: Vec<String>,
}

/// The verdict, with the fix first, when CUDA was asked for (by `source`) and cannot run.
fn cuda_unavailable(source: Source, report: &BackendReport, why: &str) -> BackendError {
    let (asked, fix) = match source {
        Source::Flag => (
            "--backend cuda",
            "run with --backend host, or without --backend to fall back to host threads",
        ),
        Source::Env => (
            "SYMMEM_BACKEND=cuda",
            "set SYMMEM_BACKEND=host or unset it (or pass --backend host)",
        ),
    };
    let verdict = if !cfg!(feature = "cuda") || !report.cuda_built {
        format!("{asked} needs a build with CUDA, and this one was built without the `cuda` feature; rebuild with default features, or {fix}")
    } else if !report.cuda_driver || report.gpus == 0 {
        format!("{asked} needs an NVIDIA GPU with its driver, and none is usable here; {fix}")
    } else if !report.nccl {
        format!("{asked} needs NCCL (libnccl.so.2), which could not be loaded; add its directory to LD_LIBRARY_PATH, or {fix}")
    } else {
        format!("{asked} cannot use the GPUs here; {fix}")
    };
    BackendError {
        verdict,
        details: vec![
            format!(
                "found: cuda feature {}, CUDA driver {}, {} GPU(s), NCCL {}",
                if report.cuda_built {
                    "built"
                } else {
                    "not built"
                },
                if report.cuda_driver {
                    "loaded"
                } else {
                    "missing"
                },
                report.gpus,
                if report.nccl { "loaded" } else { "missing" },
            ),
            format!("detail: {why}"),
        ],
    }
}

/// The backend to run on and the number of visible GPUs.
fn resolve_backend(
    choice: BackendChoice,
    source: Source,
) -> Result<(Backend, usize), BackendError> {
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
                return Err(cuda_unavailable(source, &report, &why));
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

/// Run every rank, then check and report (and write `--json`). Returns the exit code.
fn run_all<T: Element>(
    cfg: &Config,
    backend: Backend,
    tp: usize,
    ref_rows: usize,
    json: Option<JsonFile>,
) -> i32 {
    let out = run_and_report::<T>(cfg, backend, tp, ref_rows);
    match (out, json) {
        (Ok((code, records)), Some(json)) => {
            let path = json.path().display().to_string();
            match json.write(&records) {
                Ok(()) => {
                    eprintln!("tp_mlp: wrote {} record(s) to {path}", records.len());
                    code
                }
                Err(e) => fail(1, &e, &[]),
            }
        }
        (Ok((code, _)), None) => code,
        (Err(code), json) => {
            if let Some(j) = json {
                j.discard();
            }
            code
        }
    }
}

/// Run every rank, then check and report: the exit code and the records, or the exit code of
/// a failed run (its error printed).
fn run_and_report<T: Element>(
    cfg: &Config,
    backend: Backend,
    tp: usize,
    ref_rows: usize,
) -> Result<(i32, Vec<crate::results::Record>), i32> {
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
                first.get_or_insert_with(|| rank_failure(ctx.rank(), &e));
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
            return Err(fail(1, &format!("the ranks could not start: {e}"), &[]));
        }
        Err(payload) => {
            let first = FIRST_FAILURE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let panicked = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
            let (verdict, details) = first.unwrap_or_else(|| {
                (
                    "a rank panicked (a bug of the example: please report it with the command line)"
                        .into(),
                    panicked.map(|p| vec![format!("detail: {p}")]).unwrap_or_default(),
                )
            });
            return Err(fail(1, &format!("the run failed: {verdict}"), &details));
        }
    };
    let run_secs = started.elapsed().as_secs_f64();
    let reference = if cfg.check {
        eprintln!("tp_mlp: computing the f64 reference for the first {ref_rows} token row(s)");
        match reference::reference::<T>(cfg.seed, cfg.hidden, cfg.ffn, cfg.layers, ref_rows) {
            Ok(r) => Some(r),
            Err(e) => {
                return Err(fail(
                    1,
                    "the f64 reference does not fit in host memory; lower --check-rows or pass --no-check",
                    &[format!("detail: {e}")],
                ));
            }
        }
    } else {
        None
    };
    Ok(report(
        cfg,
        backend,
        tp,
        &reports,
        reference.as_deref(),
        ref_rows,
        run_secs,
    ))
}
