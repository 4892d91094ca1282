//! The `tp_mlp` binary of the `tp-mlp` crate: the same program as the root package's
//! `cargo run --example tp_mlp` (both run [`tp_mlp::run_cli`]), built with the crate so that
//! its tests run it as a child process.

/// Exit with the code of [`tp_mlp::run_cli`] (0 pass, 1 check failed or run error, 2 bad
/// arguments or sizes that do not fit).
fn main() {
    std::process::exit(tp_mlp::run_cli());
}
