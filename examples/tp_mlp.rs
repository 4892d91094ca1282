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
//! The example lives in the workspace member `examples/tp_mlp/` (package `tp-mlp`): the
//! model, its kernels, the f64 reference and the command line are its library, and this file
//! only runs it. See that crate's documentation for what it computes and reports.

/// Exit with the code of [`tp_mlp::run_cli`] (0 pass, 1 check failed or run error, 2 bad
/// arguments, an unusable backend, or sizes that do not fit).
fn main() {
    std::process::exit(tp_mlp::run_cli());
}
