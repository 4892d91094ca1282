//! symmem and symmem-candle build next to candle's `cuda` feature (cudarc with `dynamic-linking`
//! and `cuda-version-from-build-system`, candle's kernels compiled with nvcc): `cargo check` of
//! `checks/candle-cuda` (a downstream crate), then of symmem-candle's `cuda` feature with its
//! tests and examples (`-p symmem-candle --features cuda --all-targets`), with NVIDIA's CUDA 13.0 compiler installed from the package registry's
//! wheels by `scripts/install-nvcc.sh` (into `.whl/cuda`, no root, no GPU). `check` links
//! nothing, so no CUDA libraries are needed; candle's kernels are compiled for `sm_90`
//! (`CUDA_COMPUTE_CAP=90`: there is no GPU to ask). Run as a child process under a time limit,
//! in its own target folder; the first run downloads the wheels (about 110 MB) and compiles
//! candle's kernels (minutes on two cores).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn symmem_and_symmem_candle_build_next_to_candles_cuda_feature() {
    let root = env!("CARGO_MANIFEST_DIR");
    let manifest = format!("{root}/checks/candle-cuda/Cargo.toml");
    let target = concat!(env!("CARGO_TARGET_TMPDIR"), "/candle-cuda-check");
    let log_path = concat!(env!("CARGO_TARGET_TMPDIR"), "/candle-cuda-check.log");
    let log = std::fs::File::create(log_path).expect("log file");
    // Then symmem-candle's own CUDA path with its tests and examples, in this workspace (the
    // same target folder: candle's compiled kernels are reused).
    let script = format!(
        "set -e; eval \"$('{root}/scripts/install-nvcc.sh')\"; \"$CARGO\" check --locked --quiet --manifest-path '{manifest}'; exec \"$CARGO\" check --locked --quiet --manifest-path '{root}/Cargo.toml' -p symmem-candle --features cuda --all-targets"
    );
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .env("CARGO", env!("CARGO"))
        .env("CARGO_TARGET_DIR", target)
        .env("CUDA_COMPUTE_CAP", "90")
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("bash runs");
    let limit = Duration::from_secs(2400);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the candle-cuda check did not finish in {limit:?} (log: {log_path})");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        status.success(),
        "symmem does not build next to candle's cuda feature (cargo check {manifest}):\n{}",
        std::fs::read_to_string(log_path).unwrap_or_default()
    );
}
