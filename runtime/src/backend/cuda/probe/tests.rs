//! Tests of the probes: cudarc's names, the failure messages, and that nothing panics.

use std::path::PathBuf;

use super::library::is_not_found;
use super::*;

fn bogus_spec(dirs: Vec<PathBuf>) -> LibSpec {
    LibSpec {
        library: "bogus",
        candidates: vec![
            "libsymmem_bogus_a.so".into(),
            "libsymmem_bogus_a.so.7".into(),
        ],
        diagnostic_names: vec!["libsymmem_bogus_a.so.2".into()],
        required_symbol: "bogus_symbol",
        scan_dirs: dirs,
        file_prefix: "libsymmem_bogus_a.so".into(),
        hint: "set BOGUS_HINT".into(),
    }
}

#[test]
fn our_names_are_cudarcs() {
    // (Our builds give cudarc `fallback-dynamic-loading`, so its function exists here.)
    for lib in ["cuda", "nvcuda", "nccl", "nvrtc", "cublas", "cublasLt"] {
        assert_eq!(
            super::spec::lib_name_candidates(lib),
            cudarc::get_lib_name_candidates(lib),
            "{lib}"
        );
    }
}

#[test]
fn cudarc_names_are_used() {
    let cuda = LibSpec::cuda();
    assert!(cuda.candidates.contains(&"libcuda.so".to_string()));
    assert!(cuda.candidates.contains(&"libcuda.so.1".to_string()));
    // NCCL: its soname first (what pip and PyTorch ship), then every cudarc name, each once.
    let nccl = LibSpec::nccl();
    assert_eq!(
        nccl.candidates.first().map(String::as_str),
        Some("libnccl.so.2")
    );
    for name in cudarc::get_lib_name_candidates("nccl") {
        assert!(nccl.candidates.contains(&name), "{name}");
    }
    let mut unique = nccl.candidates.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), nccl.candidates.len());
    assert!(nccl.diagnostic_names.is_empty());
    assert!(!nccl.hint.contains("ln -s"), "{}", nccl.hint);
}

#[test]
fn missing_library_lists_every_name() {
    let e = probe_library(&bogus_spec(Vec::new())).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProbeError::LibraryNotFound { .. }), "{e:?}");
    for n in [
        "libsymmem_bogus_a.so",
        "libsymmem_bogus_a.so.7",
        "libsymmem_bogus_a.so.2",
        "LD_LIBRARY_PATH",
        "BOGUS_HINT",
    ] {
        assert!(msg.contains(n), "{n} missing from: {msg}");
    }
}

/// The verdict and the fix come before the details, and a long list of names is shortened
/// (the no-GPU message was 1,159 characters, with thirty names before the fix).
#[test]
fn a_missing_library_puts_the_verdict_and_the_fix_first() {
    let e = ProbeError::LibraryNotFound {
        library: "CUDA driver",
        tried: (0..30).map(|i| format!("libcuda{i}.so")).collect(),
        ld_library_path: None,
        diagnosis: String::new(),
        hint: "Install the NVIDIA driver".into(),
    };
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "symmem: the CUDA driver library could not be loaded. Install the NVIDIA driver."
        ),
        "{msg}"
    );
    assert!(
        msg.contains("`libcuda0.so`, `libcuda1.so`, ..., `libcuda29.so` (30 names"),
        "{msg}"
    );
    assert!(!msg.contains("libcuda5.so"), "{msg}");
    assert!(msg.len() < 400, "{} characters: {msg}", msg.len());
}

#[test]
fn files_on_disk_are_pointed_at() {
    let dir = std::env::temp_dir().join(format!("symmem-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("libsymmem_bogus_a.so.2");
    std::fs::write(&file, b"not a library").unwrap();
    let e = probe_library(&bogus_spec(vec![
        dir.clone(),
        PathBuf::from("/definitely/not/here"),
    ]))
    .unwrap_err();
    let msg = e.to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(msg.contains(&file.display().to_string()), "{msg}");
}

#[test]
fn a_file_that_is_no_library_is_reported() {
    let dir = std::env::temp_dir().join(format!("symmem-probe-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("libsymmem_bogus_b.so");
    std::fs::write(&file, b"not a library").unwrap();
    let mut spec = bogus_spec(Vec::new());
    spec.candidates = vec![file.display().to_string()];
    let e = probe_library(&spec).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    let ProbeError::LibraryNotFound { diagnosis, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(
        diagnosis.contains("failed to load") && diagnosis.contains(&file.display().to_string()),
        "{e}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_real_library_loads_and_resolves() {
    let mut spec = bogus_spec(Vec::new());
    spec.candidates.push("libm.so.6".into());
    spec.required_symbol = "cos";
    let info = probe_library(&spec).unwrap();
    assert_eq!(info.name, "libm.so.6");
    let path = info.path.expect("dladdr path");
    assert!(path.is_absolute() && path.exists(), "{path:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_missing_symbol_is_reported() {
    let mut spec = bogus_spec(Vec::new());
    spec.candidates = vec!["libm.so.6".into()];
    let e = probe_library(&spec).unwrap_err();
    assert!(
        matches!(
            e,
            ProbeError::MissingSymbol {
                symbol: "bogus_symbol",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("bogus_symbol"));
}

#[cfg(target_os = "linux")]
#[test]
fn a_diagnostic_name_explains_the_mismatch() {
    let mut spec = bogus_spec(Vec::new());
    spec.diagnostic_names = vec!["libm.so.6".into()];
    spec.required_symbol = "cos";
    let e = probe_library(&spec).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProbeError::NameNotTried { .. }), "{e:?}");
    assert!(
        msg.contains("libm.so.6") && msg.contains("ln -s") && msg.contains("libsymmem_bogus_a.so"),
        "{msg}"
    );
}

#[test]
fn not_found_is_told_from_a_missing_dependency() {
    let own = "libx.so.1: cannot open shared object file: No such file or directory";
    let dep = "libxLt.so.1: cannot open shared object file: No such file or directory";
    assert!(is_not_found("libx.so.1", own));
    assert!(!is_not_found("libx.so.1", dep));
    assert!(!is_not_found("libx.so.1", "libx.so.1: invalid ELF header"));
}

#[test]
fn other_probes_never_panic() {
    for (r, lib) in [
        (probe_nvrtc(), "libnvrtc.so"),
        (probe_cublas(), "libcublas.so"),
    ] {
        match r {
            Ok(info) => assert!(info.name.starts_with(lib), "{info:?}"),
            Err(e) => assert!(e.to_string().contains(lib), "{e}"),
        }
    }
    let _ = nccl_has_symbol("ncclCommWindowRegister");
    assert!(!cuda_has_symbol("symmem_no_such_symbol"));
    assert!(!nccl_has_symbol("symmem_no_such_symbol"));
}

/// On a machine without CUDA/NCCL (CI), the real probes return errors naming cudarc's names;
/// on a GPU machine they succeed. Either way nothing panics.
#[test]
fn real_probes_never_panic() {
    match probe_cuda() {
        Ok(info) => {
            assert!(info.name.starts_with("libcuda") || info.name.contains("nvcuda"));
            let n = gpu_count().unwrap_or(0);
            if n == 0 {
                assert!(matches!(
                    require_gpus(1),
                    Err(ProbeError::NotEnoughGpus { .. } | ProbeError::Driver { .. })
                ));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("libcuda.so") && msg.contains("libcuda.so.1"),
                "{msg}"
            );
            assert!(gpu_count().is_err());
            assert!(require_gpus(1).is_err());
        }
    }
    match probe_nccl() {
        Ok(info) => {
            assert!(info.version.is_some());
            assert!(nccl_version().is_ok());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("libnccl.so"), "{msg}");
            if let ProbeError::LibraryNotFound { tried, .. } = &e {
                assert!(
                    msg.contains("libnccl.so.2") && msg.contains("nvidia.nccl"),
                    "{msg}"
                );
                assert!(!msg.contains("ln -s"), "{msg}");
                assert_eq!(tried, &LibSpec::nccl().candidates);
            }
            assert!(nccl_version().is_err());
        }
    }
}
