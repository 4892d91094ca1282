//! The documentation builds without a warning: `cargo doc --workspace --no-deps --locked` with
//! `RUSTDOCFLAGS="-D warnings"` (broken or private intra-doc links, bad HTML, unclosed code
//! blocks, ... in any member), run as a child `cargo` under a time limit in its own target folder
//! (dependencies are check-built once, not documented). Then the facade's front page is read:
//! `symmem::cuda` and `symmem::host` are listed there as modules, and the page of
//! `symmem::cuda` links cudarc as a re-export instead of copying cudarc's documentation into it
//! (rustdoc honours the runtime's `#[doc(no_inline)]` across crates from 1.98 on: with an older
//! toolchain that part is skipped, with a note).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The minor version of the toolchain's cargo (`cargo 1.95.0 (...)` gives 95).
fn cargo_minor() -> Option<u32> {
    let out = Command::new(env!("CARGO")).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1)?;
    version.split('.').nth(1)?.parse().ok()
}

#[test]
fn docs_build_without_warnings() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let target = concat!(env!("CARGO_TARGET_TMPDIR"), "/doc-check");
    // The messages go to a file (a pipe nobody reads while waiting could fill and stall cargo).
    let log_path = concat!(env!("CARGO_TARGET_TMPDIR"), "/doc-check.log");
    let log = std::fs::File::create(log_path).expect("log file");
    let mut child = Command::new(env!("CARGO"))
        .args([
            "doc",
            "--workspace",
            "--no-deps",
            "--locked",
            "--quiet",
            "--manifest-path",
            manifest,
        ])
        .env("CARGO_TARGET_DIR", target)
        .env("RUSTDOCFLAGS", "-D warnings")
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
            panic!("cargo doc of {manifest} did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps fails:\n{}",
        std::fs::read_to_string(log_path).unwrap_or_default()
    );

    let doc = Path::new(target).join("doc/symmem");
    let front = std::fs::read_to_string(doc.join("index.html")).expect("the facade's front page");
    for module in ["cuda", "host"] {
        assert!(
            front.contains(&format!("class=\"mod\" href=\"{module}/index.html\"")),
            "symmem::{module} is not listed as a module on the facade's front page \
             ({}); re-export it with #[doc(inline)] in src/lib.rs",
            doc.join("index.html").display()
        );
    }
    let cuda_page = std::fs::read_to_string(doc.join("cuda/index.html")).expect("symmem::cuda");
    let copied = cuda_page.contains("class=\"mod\" href=\"cudarc/index.html\"");
    match cargo_minor() {
        Some(minor) if minor >= 98 => assert!(
            !copied,
            "symmem::cuda copies cudarc's documentation instead of linking it; keep \
             #[doc(no_inline)] on `pub use cudarc` in runtime/src/backend/cuda/mod.rs"
        ),
        _ if copied => eprintln!(
            "note: this rustdoc (before 1.98) copies cudarc into symmem::cuda's documentation \
             despite #[doc(no_inline)] (rust-lang/rust#131180); docs.rs's nightly does not"
        ),
        _ => {}
    }
}
