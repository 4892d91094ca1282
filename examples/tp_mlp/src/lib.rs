//! Tensor-parallel Llama-style gated MLP (SwiGLU) on NCCL symmetric memory.
//!
//! ```text
//! cargo run --release --example tp_mlp                       # defaults: GPUs if any, else 2 host ranks
//! cargo run --release --example tp_mlp -- --backend host --tp 4 --layers 2 --graph
//! cargo run --release --example tp_mlp -- --preset llama3-8b --dtype bf16 --tokens 1,8,32,64,4096 --graph
//! cargo run --release --example tp_mlp -- --tokens 1,8,64 --graph --json results.json
//! SYMMEM_BACKEND=host cargo run --release --example tp_mlp   # the backend from the environment
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
//! # Output
//!
//! Progress lines go to stderr; the table and the records go to stdout. The table reports per
//! token count the eager and the graph-replay time per step (`--graph`), that step time over
//! the memory floor (weight bytes over the measured device copy bandwidth; `graph/floor`, or
//! `eager/floor` without `--graph`), the all-reduce time on a symmetric and on a plain buffer
//! of the same size and their ratio (`sym/plain`), the GEMM rate and the relative error. At
//! tp 1 the all-reduce columns read `n/a (tp 1)`: one rank's all-reduce moves nothing.
//!
//! After the table, one `RESULT {json}` line per measurement repeats it for scripts
//! (`benches/py/*.py` read them); `--json PATH` writes the same records as one JSON array.
//! Both come from [`results::Record`] through serde_json.
//!
//! # Backend and memory
//!
//! `--backend auto|host|cuda` picks the backend; without it, `SYMMEM_BACKEND` does (as the
//! library's errors advise), else `auto`. Before anything is allocated, the bytes the sizes
//! need ([`memory::Estimate`]) are compared with each GPU's free memory and the host's
//! available memory; a size that does not fit is an error naming both (`--no-memory-check`
//! skips the check).
//!
//! Errors print the verdict and the fix on their first line (`tp_mlp: error: ...`), details
//! indented after it. Exit codes: 0 pass, 1 check failed or run error, 2 bad arguments, an
//! unusable backend, or sizes that do not fit.
//!
//! The example is this library (`tp-mlp`, a workspace member) and a thin `main` in the root
//! package's `examples/tp_mlp.rs`, so that its integration tests use the model, the reference
//! and the argument rules directly (`tests/tp_mlp.rs`) and the output's pieces
//! (`tests/tp_mlp_output.rs`). The crate's own `tp_mlp` binary (the same [`run_cli`]) is what
//! `tests/tp_mlp_cli.rs` runs as a child process, as a user would.

#![warn(missing_docs)]

mod app;
pub mod cli;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod gen;
pub mod host;
#[cfg(feature = "cuda")]
pub mod lt;
pub mod memory;
pub mod model;
pub mod reference;
pub mod report;
pub mod results;
pub mod run;
pub mod skinny;

pub use app::{run_cli, run_with_args, BACKEND_VAR};
