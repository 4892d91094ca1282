//! The skinny GEMM kernels (`src/skinny.rs`) and the elementwise kernels compile with NVRTC, on
//! a machine without a GPU: `scripts/install-nvrtc.sh` installs libnvrtc from the
//! `nvidia-cuda-nvrtc` wheel (into `.whl/nvrtc`), then this test binary runs itself as a child
//! process with `LD_LIBRARY_PATH` pointing there, and the child compiles [`skinny::SOURCE`] for
//! NVRTC's default architecture and for `compute_90` (H100/H200) and checks that every kernel
//! the example loads is in the PTX. A syntax error in the CUDA source fails here, in CI.
//!
//! The test needs the install (`python3 -m pip` and the package registry), as CI has: where it
//! cannot run, the test fails and says so, so that CI never passes without compiling the
//! kernels. On a machine that is offline on purpose, `SYMMEM_SKIP_NVRTC=1` turns that failure
//! into a visible `skipped:` line (libnvrtc already on the library path is still used).

#![cfg(feature = "cuda")]

use std::io::Write;
use std::process::Command;

use tp_mlp::skinny;

/// Visible line, not swallowed by the test harness's output capture.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Set in the child process: compile instead of spawning.
const CHILD: &str = "TP_MLP_SKINNY_NVRTC_CHILD";

/// Whether a missing libnvrtc fails the test (the default) rather than skipping it
/// (`SYMMEM_SKIP_NVRTC=1`).
fn require() -> bool {
    std::env::var("SYMMEM_SKIP_NVRTC").map_or(true, |v| v != "1")
}

/// The child's work: compile and look for every kernel in the PTX.
fn compile_and_check() {
    for arch in [None, Some("compute_80"), Some("compute_90")] {
        let ptx = skinny::compile(arch)
            .unwrap_or_else(|e| panic!("NVRTC failed on the skinny kernels (arch {arch:?}): {e}"));
        let text = ptx.to_src();
        for name in skinny::kernel_names() {
            assert!(
                text.contains(&format!(".entry {name}(")),
                "kernel {name} missing from the PTX (arch {arch:?})"
            );
        }
        // Split-K in one launch: integer arrival counters, partials read past L1, no
        // second kernel.
        assert!(
            text.contains("atom.global.add.u32") && text.contains("ld.global.cg.f32"),
            "no split-K counters or L2 loads in the PTX"
        );
        assert!(
            !text.contains("skinny_reduce"),
            "a split-K reduction kernel is left"
        );
        // 16-byte weight loads are what the kernels are for.
        assert!(
            text.contains("ld.global.nc.v4.u32"),
            "no 16-byte loads in the PTX"
        );
        say(&format!(
            "skinny kernels compiled with NVRTC for {}: {} kernels, {} bytes of PTX",
            arch.unwrap_or("the default architecture"),
            skinny::kernel_names().len(),
            text.len()
        ));
    }
}

#[test]
fn skinny_kernels_compile_with_nvrtc() {
    if std::env::var_os(CHILD).is_some() {
        compile_and_check();
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let script = format!("{root}/scripts/install-nvrtc.sh");
    let out = Command::new("bash").arg(&script).output();
    let lib_dir = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => {
            let why = format!(
                "{script} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            if require() {
                panic!("{why}; the test installs libnvrtc with pip (network needed), or set SYMMEM_SKIP_NVRTC=1 to skip it offline");
            }
            say(&format!(
                "skipped: libnvrtc could not be installed ({why}); trying the system's"
            ));
            String::new()
        }
        Err(e) => {
            if require() {
                panic!(
                    "bash could not run {script}: {e}; set SYMMEM_SKIP_NVRTC=1 to skip the test"
                );
            }
            say(&format!(
                "skipped: bash could not run {script} ({e}); trying the system's"
            ));
            String::new()
        }
    };
    let path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(p) if !p.is_empty() && !lib_dir.is_empty() => format!("{lib_dir}:{p}"),
        Ok(p) if lib_dir.is_empty() => p,
        _ => lib_dir.clone(),
    };
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(exe)
        .args([
            "--exact",
            "skinny_kernels_compile_with_nvrtc",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("LD_LIBRARY_PATH", &path)
        .output()
        .expect("the test binary runs as a child");
    let stderr = String::from_utf8_lossy(&child.stderr);
    let stdout = String::from_utf8_lossy(&child.stdout);
    if !child.status.success() {
        // No libnvrtc at all (nothing installed, none on the system): a skip only with
        // SYMMEM_SKIP_NVRTC=1.
        let missing = lib_dir.is_empty()
            && (stderr.contains("nvrtc") || stdout.contains("nvrtc"))
            && (stderr.contains("load") || stdout.contains("load"));
        if missing && !require() {
            say("skipped: no libnvrtc could be loaded (install it with scripts/install-nvrtc.sh)");
            return;
        }
        panic!("the NVRTC compile failed (LD_LIBRARY_PATH={path}):\n{stdout}\n{stderr}");
    }
    say(stderr.trim());
}
