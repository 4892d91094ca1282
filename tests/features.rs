//! symmem builds in one dependency graph with cudarc's other linking and CUDA-version features
//! (what candle's `cuda` feature gives cudarc): `cargo check` of `checks/cudarc-linking`, a crate
//! depending on symmem (`default-features = false, features = ["cuda"]`) and on cudarc with
//! `dynamic-linking` and `cuda-12080`. cudarc's build script stops a build whose linking
//! features clash, and symmem must not use cudarc items that exist only under one of them. Run
//! as a child `cargo` under a time limit, in its own target folder; `check` links nothing, so no
//! CUDA is needed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn symmem_builds_next_to_cudarc_with_dynamic_linking() {
    let manifest = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks/cudarc-linking/Cargo.toml"
    );
    let target = concat!(env!("CARGO_TARGET_TMPDIR"), "/feature-checks");
    // The messages go to a file (a pipe nobody reads while waiting could fill and stall cargo).
    let log_path = concat!(env!("CARGO_TARGET_TMPDIR"), "/feature-checks.log");
    let log = std::fs::File::create(log_path).expect("log file");
    let mut child = Command::new(env!("CARGO"))
        .args(["check", "--locked", "--quiet", "--manifest-path", manifest])
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cargo runs");
    let limit = Duration::from_secs(1200);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("cargo check of {manifest} did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "symmem does not build next to cudarc's dynamic-linking (cargo check {manifest}):\n{}",
        std::fs::read_to_string(log_path).unwrap_or_default()
    );
}
