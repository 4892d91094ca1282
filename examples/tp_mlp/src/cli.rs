//! The command line: clap's flags, their parsers, and the validated [`Config`] they give.
//!
//! Flags for the example's own tests and for comparing with the Python twin
//! (`--dump-checksum`, `--assume-free-gib`) are accepted but hidden from `--help`.

use std::path::PathBuf;

use clap::Parser;
use symmem::launch::BackendChoice;

use crate::config::{parse_tokens, Config, ConfigError, Dtype, GemmMode, Preset};

/// Command line of the example.
#[derive(Parser, Debug)]
#[command(
    name = "tp_mlp",
    about = "Tensor-parallel SwiGLU MLP whose all-reduce runs on NCCL symmetric memory (host backend without GPUs)",
    after_help = "\
Output: progress lines on stderr; the table, then one `RESULT {json}` line per measurement, on
stdout. --json PATH writes the same records as one JSON array.

Environment: SYMMEM_BACKEND (auto, host or cuda) picks the backend when --backend is not given.

Memory: the bytes the sizes need are checked against the free GPU memory and the host's
available memory before anything is allocated (an error names both, exit code 2).

Exit codes: 0 pass, 1 check failed or run error, 2 bad arguments (or sizes that do not fit)."
)]
pub struct Cli {
    /// Backend: auto (GPUs if usable, else host threads), host or cuda [default: SYMMEM_BACKEND,
    /// else auto].
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<BackendChoice>,
    /// Tensor-parallel degree (default: 2 on host, the number of GPUs up to 8 on CUDA, lowered
    /// to a divisor of --ffn).
    #[arg(long)]
    pub tp: Option<usize>,
    /// Token count, or a comma-separated list run one after the other (e.g. 1,8,32,64,4096).
    #[arg(long, default_value = "16")]
    pub tokens: String,
    /// Hidden size (default 256, or the preset's).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// FFN size of the full MLP (default 1024, or the preset's); --tp must divide it.
    #[arg(long)]
    pub ffn: Option<usize>,
    /// Layers, stacked with a residual x = x + mlp_l(x).
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Storage type: f32, bf16 or f16 (the host backend computes in f32 and stores in it).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: Dtype,
    /// Model sizes: llama3-8b (hidden 4096, ffn 14336); --hidden/--ffn override it.
    #[arg(long, value_parser = parse_preset)]
    pub preset: Option<Preset>,
    /// Also capture one step into a graph and time its replays.
    #[arg(long)]
    pub graph: bool,
    /// Timed iterations of each measurement.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed warm-up iterations before each measurement.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Seed of the weight and input generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compare with the f64 host reference (default).
    #[arg(long = "check", overrides_with = "no_check")]
    pub check: bool,
    /// Skip the reference check.
    #[arg(long = "no-check", overrides_with = "check")]
    pub no_check: bool,
    /// Token rows the reference covers (default: all rows when cheap, else at least 4).
    #[arg(long)]
    pub check_rows: Option<usize>,
    /// GEMMs on CUDA: auto (the fastest per shape, timed on the first eager call, of cuBLASLt's
    /// candidates, cublasGemmEx and the skinny decode kernels for up to 64 tokens, these only
    /// when their output agrees with cuBLAS's), lt (as auto without the skinny kernels), skinny
    /// (the skinny kernels wherever they apply, else as lt) or cublas (cublasGemmEx only).
    #[arg(long, default_value = "auto", value_parser = parse_gemm)]
    pub gemm: GemmMode,
    /// Also write every measurement (the records of the `RESULT` lines) to PATH, as one JSON
    /// array.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Skip the check that the sizes fit the GPU and host memory (the check is an estimate;
    /// skip it when it is wrong for a machine).
    #[arg(long)]
    pub no_memory_check: bool,
    /// Internal: print sum and sum of squares of each weight tensor for hidden 8, ffn 16 and
    /// --seed (and --layers), to compare with the Python twin, then exit.
    #[arg(long, hide = true)]
    pub dump_checksum: bool,
    /// Internal (tests): take this many GiB as the available host memory and the free memory of
    /// every GPU, instead of asking the system.
    #[arg(long, hide = true, value_name = "GIB", value_parser = parse_gib)]
    pub assume_free_gib: Option<f64>,
}

/// `--backend` (and `SYMMEM_BACKEND`): auto, host or cuda, with the library's aliases (`cpu`;
/// `gpu`, `nccl`). Empty is refused here (the variable's empty value means auto).
pub fn parse_backend(s: &str) -> Result<BackendChoice, ConfigError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ConfigError(
            "the backend is empty; use auto, host or cuda".into(),
        ));
    }
    t.parse::<BackendChoice>()
        .map_err(|_| ConfigError(format!("unknown backend `{t}`; use auto, host or cuda")))
}

/// `--assume-free-gib`: a non-negative number of GiB.
fn parse_gib(s: &str) -> Result<f64, ConfigError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(ConfigError(format!(
            "`{s}` is not a number of GiB (use e.g. 0.5 or 64)"
        ))),
    }
}

/// `--dtype`: f32, bf16 or f16.
fn parse_dtype(s: &str) -> Result<Dtype, ConfigError> {
    s.parse()
}

/// `--gemm`: auto, lt, skinny or cublas.
fn parse_gemm(s: &str) -> Result<GemmMode, ConfigError> {
    s.parse()
}

/// `--preset`: llama3-8b.
fn parse_preset(s: &str) -> Result<Preset, ConfigError> {
    s.parse()
}

impl Cli {
    /// The validated configuration.
    pub fn config(&self) -> Result<Config, ConfigError> {
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
