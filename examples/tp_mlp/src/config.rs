//! Command-line values of the example and their validation (no clap here, so that the
//! integration test can check the rules directly).

use std::fmt;
use std::str::FromStr;

/// Hidden size and FFN size of `--preset llama3-8b`.
pub const LLAMA3_8B: (usize, usize) = (4096, 14336);

/// Largest tensor-parallel degree picked by default on CUDA (one GPU per rank).
pub const MAX_DEFAULT_GPUS: usize = 8;

/// A user error in the arguments: printed as one line, exit code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A [`ConfigError`] with `msg`.
fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Storage type of weights, activations and the all-reduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE single precision.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

impl Dtype {
    /// Bound on the relative error `||out - ref|| / ||ref||` against the f64 reference.
    pub fn bound(self) -> f64 {
        match self {
            Dtype::F32 => 1e-5,
            Dtype::Bf16 => 2e-2,
            Dtype::F16 => 1e-2,
        }
    }

    /// Bytes of one stored element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 | Dtype::F16 => 2,
        }
    }

    /// Name as accepted by `--dtype`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Dtype::F16),
            other => Err(bad(format!(
                "unknown dtype `{other}`; use f32, bf16 or f16"
            ))),
        }
    }
}

/// How the CUDA backend computes its GEMMs (`--gemm`; the host backend ignores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GemmMode {
    /// The fastest per shape, timed on the first eager call, of cuBLASLt's heuristic
    /// candidates, `cublasGemmEx` and the skinny kernels (`m <= 64`, where their plan applies
    /// and their output agrees with cuBLAS's); `cublasGemmEx` when libcublasLt is missing.
    #[default]
    Auto,
    /// As `Auto` without the skinny kernels: cuBLASLt's candidates and `cublasGemmEx` only.
    Lt,
    /// The skinny kernels wherever their plan applies (checked against cuBLAS on the first
    /// eager call of each shape: a disagreement is an error), else as `Lt`.
    Skinny,
    /// `cublasGemmEx` with cuBLAS's default algorithm only.
    Cublas,
}

impl GemmMode {
    /// Name as accepted by `--gemm`.
    pub fn name(self) -> &'static str {
        match self {
            GemmMode::Auto => "auto",
            GemmMode::Lt => "lt",
            GemmMode::Skinny => "skinny",
            GemmMode::Cublas => "cublas",
        }
    }
}

impl FromStr for GemmMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(GemmMode::Auto),
            "lt" | "cublaslt" => Ok(GemmMode::Lt),
            "skinny" => Ok(GemmMode::Skinny),
            "cublas" => Ok(GemmMode::Cublas),
            other => Err(bad(format!(
                "unknown --gemm `{other}`; use auto, lt, skinny or cublas"
            ))),
        }
    }
}

/// Model sizes named by `--preset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Llama 3 8B's MLP: hidden 4096, ffn 14336.
    Llama3_8b,
}

impl Preset {
    /// `(hidden, ffn)` of the preset.
    pub fn sizes(self) -> (usize, usize) {
        match self {
            Preset::Llama3_8b => LLAMA3_8B,
        }
    }
}

impl FromStr for Preset {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "llama3-8b" | "llama-3-8b" | "llama3_8b" => Ok(Preset::Llama3_8b),
            other => Err(bad(format!(
                "unknown preset `{other}`; the only preset is llama3-8b"
            ))),
        }
    }
}

/// Parse `--tokens`: one count or a comma-separated list (`1,8,32,64,4096`), each at least 1.
pub fn parse_tokens(s: &str) -> Result<Vec<usize>, ConfigError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad(format!(
                "--tokens `{s}` has an empty item; write a list like 1,8,32"
            )));
        }
        let n: usize = part
            .parse()
            .map_err(|_| bad(format!("--tokens: `{part}` is not a non-negative integer")))?;
        if n == 0 {
            return Err(bad("--tokens must be at least 1"));
        }
        out.push(n);
    }
    Ok(out)
}

/// Everything the run needs, after parsing and before the backend is resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Tensor-parallel degree asked for (`None`: the backend's default).
    pub tp: Option<usize>,
    /// Token counts to run, in order.
    pub tokens: Vec<usize>,
    /// Hidden size.
    pub hidden: usize,
    /// FFN (intermediate) size of the full, unsharded MLP.
    pub ffn: usize,
    /// Number of stacked layers (`x = x + mlp_l(x)`).
    pub layers: usize,
    /// Storage type.
    pub dtype: Dtype,
    /// Also capture one step into a graph and time its replays.
    pub graph: bool,
    /// Timed iterations of each measurement.
    pub iters: usize,
    /// Untimed iterations before each measurement.
    pub warmup: usize,
    /// Seed of the weight and input generator.
    pub seed: u64,
    /// Compare with the f64 reference.
    pub check: bool,
    /// Token rows the reference covers (`None`: as many as fit a small time budget).
    pub check_rows: Option<usize>,
    /// How the CUDA backend computes its GEMMs.
    pub gemm: GemmMode,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tp: None,
            tokens: vec![16],
            hidden: 256,
            ffn: 1024,
            layers: 1,
            dtype: Dtype::F32,
            graph: false,
            iters: 20,
            warmup: 3,
            seed: 0,
            check: true,
            check_rows: None,
            gemm: GemmMode::Auto,
        }
    }
}

/// Multiply-adds the automatic `check_rows` allows the f64 reference (a few seconds).
const REFERENCE_BUDGET: f64 = 2.0e9;

impl Config {
    /// Check sizes that do not depend on the backend: nothing zero, no overflow, and GEMM
    /// dimensions that fit the 32-bit ints of BLAS interfaces.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("--hidden", self.hidden),
            ("--ffn", self.ffn),
            ("--layers", self.layers),
            ("--iters", self.iters),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} must be at least 1")));
            }
        }
        if self.tokens.is_empty() || self.tokens.contains(&0) {
            return Err(bad("--tokens must list counts of at least 1"));
        }
        if self.tp == Some(0) {
            return Err(bad("--tp must be at least 1"));
        }
        if self.check_rows == Some(0) {
            return Err(bad("--check-rows must be at least 1"));
        }
        let max_tokens = self.tokens.iter().copied().max().unwrap_or(1);
        let limit = i32::MAX as usize;
        for (name, v) in [
            ("--tokens", max_tokens),
            ("--hidden", self.hidden),
            ("2 x --ffn", self.ffn.saturating_mul(2)),
        ] {
            if v > limit {
                return Err(bad(format!(
                    "{name} = {v} is larger than {limit}, the largest GEMM dimension"
                )));
            }
        }
        let elems = [
            max_tokens.checked_mul(self.hidden),
            max_tokens
                .checked_mul(self.ffn)
                .and_then(|v| v.checked_mul(2)),
            self.hidden
                .checked_mul(self.ffn)
                .and_then(|v| v.checked_mul(3)),
        ];
        if elems
            .iter()
            .any(|e| e.and_then(|e| e.checked_mul(8)).is_none())
        {
            return Err(bad(
                "the sizes overflow the address space; use smaller --tokens, --hidden or --ffn",
            ));
        }
        if let Some(tp) = self.tp {
            check_tp(tp, self.ffn)?;
        }
        Ok(())
    }

    /// Token rows the f64 reference computes: `--check-rows`, else every row when that fits a
    /// budget of about 2e9 multiply-adds, else fewer (at least 4, or all when fewer exist). The
    /// MLP treats token rows independently, so the rows covered are checked exactly.
    pub fn reference_rows(&self) -> usize {
        let max_tokens = self.tokens.iter().copied().max().unwrap_or(1);
        if let Some(r) = self.check_rows {
            return r.min(max_tokens);
        }
        let per_row = 3.0 * self.hidden as f64 * self.ffn as f64 * self.layers as f64;
        let fit = (REFERENCE_BUDGET / per_row.max(1.0)).floor() as usize;
        fit.max(4).min(max_tokens)
    }
}

/// `tp` must be at least 1 and divide `ffn` (Megatron column/row split of the FFN dimension).
pub fn check_tp(tp: usize, ffn: usize) -> Result<(), ConfigError> {
    if tp == 0 {
        return Err(bad("--tp must be at least 1"));
    }
    if !ffn.is_multiple_of(tp) {
        return Err(bad(format!(
            "--tp {tp} does not divide --ffn {ffn}; every rank needs ffn / tp whole columns"
        )));
    }
    Ok(())
}

/// The backend a run resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Ranks are host threads.
    Host,
    /// One GPU per rank.
    Cuda,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Host => "host",
            Backend::Cuda => "cuda",
        })
    }
}

/// Pick the tensor-parallel degree for `backend`: `asked` if given (on CUDA at most `gpus`;
/// it must divide `ffn`), else the largest divisor of `ffn` not above 2 on the host, or not
/// above the number of GPUs (at most 8) on CUDA.
pub fn resolve_tp(
    asked: Option<usize>,
    backend: Backend,
    gpus: usize,
    ffn: usize,
) -> Result<usize, ConfigError> {
    let tp = match (asked, backend) {
        (Some(tp), Backend::Cuda) if tp > gpus => {
            return Err(bad(format!(
                "--tp {tp} needs {tp} GPUs (one per rank) but {gpus} {} visible; lower --tp or pass --backend host",
                if gpus == 1 { "is" } else { "are" }
            )))
        }
        (Some(tp), _) => tp,
        (None, backend) => {
            let most = match backend {
                Backend::Host => 2,
                Backend::Cuda => gpus.clamp(1, MAX_DEFAULT_GPUS),
            };
            (1..=most).rev().find(|t| ffn.is_multiple_of(*t)).unwrap_or(1)
        }
    };
    check_tp(tp, ffn)?;
    Ok(tp)
}
