//! The run's machine-readable records: one [`Record`] per measurement, printed as a
//! `RESULT {json}` line on stdout (what `benches/py/*.py` read) and written as one JSON array
//! by `--json PATH`. Both go through serde_json, so they hold the same records with the same
//! keys in the same order.
//!
//! Every record has a `kind` first. Measurements of the MLP also carry the run's sizes
//! ([`Common`]: `backend`, `tp`, `hidden`, `ffn`, `layers`, `dtype`). Numbers that are not
//! finite (a measurement that did not happen) are written as `null`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

/// The sizes of the run, repeated in every record of the MLP so that each line stands alone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Common {
    /// `host` or `cuda`.
    pub backend: String,
    /// Tensor-parallel degree.
    pub tp: usize,
    /// Hidden size.
    pub hidden: usize,
    /// FFN size of the full MLP.
    pub ffn: usize,
    /// Stacked layers.
    pub layers: usize,
    /// Storage type (`f32`, `bf16`, `f16`).
    pub dtype: String,
}

/// Whether a step was run eagerly or replayed from a captured graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepMode {
    /// Launched kernel by kernel.
    Eager,
    /// A replay of the captured step (`--graph`).
    Graph,
}

/// Which buffer an all-reduce ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArBuffer {
    /// A buffer from the `"tp"` group's symmetric pool.
    Symmetric,
    /// A buffer from the default pool.
    Plain,
}

/// The GEMM of one projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GemmName {
    /// `[tokens, hidden] x [hidden, 2 ffn/tp]`.
    GateUp,
    /// `[tokens, ffn/tp] x [ffn/tp, hidden]`.
    Down,
}

/// The kernel the per-shape timing chose for one GEMM shape (CUDA, `--gemm auto`, `lt` or
/// `skinny`, rank 0).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmChoice {
    /// `[m, k, n]` of `C[m, n] = A[m, k] B[k, n]`.
    pub mkn: [usize; 3],
    /// Storage type, as symmem names it.
    pub dtype: String,
    /// What was chosen (a cuBLASLt heuristic candidate, `cublasGemmEx default`, or a skinny
    /// kernel with its grid and split factor).
    pub chosen: String,
    /// Microseconds per call of the chosen algorithm.
    pub best_us: Option<f64>,
    /// Microseconds per call of `cublasGemmEx`.
    pub gemm_ex_us: Option<f64>,
    /// What became of the skinny candidate: `chosen`, `slower`, `rejected: <reason>` (its
    /// output disagreed with cuBLAS's), `not applicable: <reason>` (the plan falls back), or
    /// `null` when the skinny kernels were not considered (`--gemm lt`).
    pub skinny: Option<String>,
    /// Microseconds per call of the skinny kernel (when it was timed).
    pub skinny_us: Option<f64>,
    /// `||skinny - cuBLAS|| / ||cuBLAS||` on the tuning call's operands (when it ran).
    pub skinny_rel_error: Option<f64>,
    /// Every skinny kernel tried for the shape (4 loads in flight per lane, and for `m <= 8`
    /// the `_u8` kernel with 8), with its time or `rejected`, comma-separated; the fastest that
    /// passed the guard is the skinny candidate (`skinny_us`). `null` when none was tried.
    pub skinny_candidates: Option<String>,
    /// Weight bytes (`k n` elements of `B`) over the chosen kernel's time, in GB/s.
    pub weight_gbps: Option<f64>,
    /// `weight_gbps` over the run's measured device copy rate (the rate of the memory floor);
    /// filled in by the report, which knows the copy rate.
    pub weight_fraction_of_copy: Option<f64>,
    /// What was chosen for: `gemm` (one product `C = A B`), or `gate_up_silu` (the gate-up
    /// product with its SiLU-and-multiply: `mkn` is the product's, `[m, k, 2 ffn/tp]`; `chosen`
    /// is a fused skinny kernel or the unfused path, the GEMM chosen for that shape then the
    /// SiLU-mul kernel, and `best_us` covers the whole; `gemm_ex_us` is `null`).
    pub op: String,
}

/// One measurement. Serialized with its variant's name as `kind`, first.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// The memory floor: weight bytes per rank over the device copy bandwidth.
    MemoryFloor {
        /// The run's sizes.
        #[serde(flatten)]
        common: Common,
        /// Weight bytes one rank reads per step.
        weight_bytes_per_rank: usize,
        /// Device copy bandwidth in GB/s, bytes read plus written (slowest rank).
        copy_gbps: Option<f64>,
        /// Milliseconds per step at that bandwidth.
        floor_ms: Option<f64>,
    },
    /// Time per step of the whole stacked MLP (slowest rank).
    Step {
        /// Eager or graph replay.
        mode: StepMode,
        /// The run's sizes.
        #[serde(flatten)]
        common: Common,
        /// Token rows.
        tokens: usize,
        /// Milliseconds per step.
        ms_per_step: Option<f64>,
        /// Graph replays only: whether the replay's output equals the eager output bit for bit.
        #[serde(skip_serializing_if = "Option::is_none")]
        bit_exact_vs_eager: Option<bool>,
    },
    /// Time per all-reduce of one layer's output (slowest rank). At tp 1 the all-reduce has
    /// one rank and moves nothing: `us` is the cost of the call only.
    AllReduce {
        /// Symmetric or plain buffer.
        buffer: ArBuffer,
        /// The run's sizes.
        #[serde(flatten)]
        common: Common,
        /// Token rows.
        tokens: usize,
        /// Bytes reduced.
        bytes: usize,
        /// Microseconds per all-reduce.
        us: Option<f64>,
    },
    /// Rate of one projection's GEMM (slowest rank).
    Gemm {
        /// Which projection.
        gemm: GemmName,
        /// The run's sizes.
        #[serde(flatten)]
        common: Common,
        /// Token rows.
        tokens: usize,
        /// `[m, k, n]` of the product.
        mkn: [usize; 3],
        /// TFLOP/s (2 m k n flops per product).
        tflops: Option<f64>,
    },
    /// The output against the f64 reference.
    Check {
        /// The run's sizes.
        #[serde(flatten)]
        common: Common,
        /// Token rows of the run.
        tokens: usize,
        /// Rows compared.
        rows: usize,
        /// `||out - ref|| / ||ref||`.
        rel_error: Option<f64>,
        /// The dtype's bound on `rel_error`.
        bound: Option<f64>,
        /// Whether the check passed.
        pass: bool,
    },
    /// The GEMM kernel chosen for one shape.
    GemmChoice(GemmChoice),
}

/// `v` when finite (a JSON number), else `None` (`null`).
pub fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The `RESULT {json}` line of `record` (without a newline).
pub fn result_line(record: &Record) -> Result<String, serde_json::Error> {
    Ok(format!("RESULT {}", serde_json::to_string(record)?))
}

/// A `--json` output file, created (and so checked writable) before the run starts.
#[derive(Debug)]
pub struct JsonFile {
    path: std::path::PathBuf,
    file: File,
}

impl JsonFile {
    /// Create (or truncate) `path`. The error names the path and what to do.
    pub fn create(path: &Path) -> Result<JsonFile, String> {
        File::create(path)
            .map(|file| JsonFile {
                path: path.to_path_buf(),
                file,
            })
            .map_err(|e| {
                format!(
                    "--json {}: cannot create the file ({e}); pass a path in a writable directory",
                    path.display()
                )
            })
    }

    /// The path given to `--json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `records` as one JSON array (one record per line) and close the file.
    pub fn write(self, records: &[Record]) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| {
            format!(
                "--json {}: writing the results failed ({e}); check the disk space and the path",
                self.path.display()
            )
        };
        let mut w = BufWriter::new(&self.file);
        let mut text = String::from("[\n");
        for (i, r) in records.iter().enumerate() {
            text.push_str(&serde_json::to_string(r).map_err(|e| fail(&e))?);
            text.push_str(if i + 1 < records.len() { ",\n" } else { "\n" });
        }
        text.push_str("]\n");
        w.write_all(text.as_bytes()).map_err(|e| fail(&e))?;
        w.flush().map_err(|e| fail(&e))?;
        drop(w);
        self.file.sync_all().map_err(|e| fail(&e))
    }

    /// Remove the file (the run failed before it had records to write).
    pub fn discard(self) {
        let JsonFile { path, file } = self;
        drop(file);
        // Best effort: the run's own error is what gets reported.
        let _ = std::fs::remove_file(path);
    }
}
