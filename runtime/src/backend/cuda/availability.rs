//! Whether the CUDA backend can run here: libcuda, the GPUs and NCCL probed once per process
//! without calling into cudarc (which would panic on a missing library), the NCCL version
//! policy, and the detection report.

use std::sync::OnceLock;

use crate::backend::cuda::probe;
use crate::backend::cuda::version::{self, NcclVersion, SymmetricPolicy};
use crate::backend::report::BackendReport;
use crate::error::{Error, Result};

/// `Error::BackendUnavailable` from another module's error (without a doubled `symmem:`).
pub(crate) fn unavailable(e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    Error::BackendUnavailable(text.strip_prefix("symmem: ").unwrap_or(&text).to_string())
}

/// What probing found, once per process: whether (and why not) the CUDA backend can run.
pub(crate) struct Availability {
    /// Why the CUDA backend cannot be used.
    unavailable: Option<String>,
    driver: Option<probe::LibInfo>,
    gpus: usize,
    nccl: Option<probe::LibInfo>,
    nccl_version: Option<NcclVersion>,
    policy: Option<SymmetricPolicy>,
    /// Whether windows are registered: the policy allows them and the library has the symbol.
    pub(crate) windows: bool,
}

pub(crate) fn found() -> &'static Availability {
    static FOUND: OnceLock<Availability> = OnceLock::new();
    FOUND.get_or_init(probe_all)
}

/// Probe libcuda, the GPUs and NCCL without calling into cudarc (which would panic on a missing
/// library), then read the NCCL version and apply the symmetric-window policy.
fn probe_all() -> Availability {
    let mut f = Availability {
        unavailable: None,
        driver: None,
        gpus: 0,
        nccl: None,
        nccl_version: None,
        policy: None,
        windows: false,
    };
    let strip = |e: &dyn std::fmt::Display| {
        let t = e.to_string();
        t.strip_prefix("symmem: ").unwrap_or(&t).to_string()
    };
    match probe::probe_cuda() {
        Ok(info) => f.driver = Some(info),
        Err(e) => {
            f.unavailable = Some(strip(&e));
            return f;
        }
    }
    match probe::gpu_count() {
        Ok(0) => {
            f.unavailable = Some(
                "the CUDA driver sees no GPU (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)".into(),
            )
        }
        Ok(n) => f.gpus = n,
        Err(e) => f.unavailable = Some(strip(&e)),
    }
    match probe::probe_nccl() {
        Ok(info) => f.nccl = Some(info),
        Err(e) => {
            f.unavailable.get_or_insert(strip(&e));
            return f;
        }
    }
    match probe::nccl_version() {
        Ok(v) => {
            let policy = version::symmetric_policy(v);
            f.nccl_version = Some(v);
            f.policy = Some(policy);
            f.windows = policy.allows_symmetric()
                && probe::nccl_has_symbol("ncclCommWindowRegister")
                && probe::nccl_has_symbol("ncclCommWindowDeregister");
            for sym in [
                "ncclMemAlloc",
                "ncclMemFree",
                "ncclCommSplit",
                "ncclCommGetAsyncError",
                "ncclCommFinalize",
            ] {
                if !probe::nccl_has_symbol(sym) {
                    f.unavailable.get_or_insert(format!(
                        "NCCL {v} has no `{sym}`; symmem needs NCCL 2.19 or later ({} or later recommended)",
                        version::FULL_SYMMETRIC
                    ));
                }
            }
        }
        Err(e) => {
            f.unavailable.get_or_insert(strip(&e));
        }
    }
    f
}

/// The policy line, logged once per process when the first communicator is created.
pub(crate) fn log_policy_once() {
    static LOGGED: OnceLock<()> = OnceLock::new();
    LOGGED.get_or_init(|| {
        let f = found();
        if let (Some(v), Some(p)) = (f.nccl_version, f.policy) {
            let line = p.log_line(v);
            if f.windows || !p.allows_symmetric() {
                crate::diag::info(format_args!("{line}"));
            } else {
                crate::diag::info(format_args!("{line} (this library lacks ncclCommWindowRegister: symmetric pools use plain memory)"));
            }
        }
    });
}

/// Put `NCCL_NVLS_ENABLE=0` in the environment unless it is set (once, before any
/// communicator exists; see the module docs).
pub(crate) fn nvls_off() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
            std::env::set_var("NCCL_NVLS_ENABLE", "0");
        }
    });
}

/// Fail with [`Error::BackendUnavailable`] unless CUDA and NCCL can run `ranks` ranks with
/// `first_gpu + ranks` GPUs.
pub(crate) fn require(ranks: usize, gpus_needed: usize) -> Result<&'static Availability> {
    let f = found();
    if let Some(u) = &f.unavailable {
        return Err(Error::BackendUnavailable(u.clone()));
    }
    if f.gpus < gpus_needed {
        return Err(Error::BackendUnavailable(format!(
            "{ranks} rank(s) need {gpus_needed} GPU(s) (one per rank: NCCL refuses two ranks on one GPU) but {} {} visible",
            f.gpus,
            if f.gpus == 1 { "is" } else { "are" }
        )));
    }
    Ok(f)
}

/// What this machine offers the CUDA backend (used by [`crate::launch::detect`]).
pub(crate) fn detect_report() -> BackendReport {
    let f = found();
    let mut notes = Vec::new();
    for info in [&f.driver, &f.nccl].into_iter().flatten() {
        let path = info
            .path
            .as_ref()
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        notes.push(format!("{}: {}{}", info.library, info.name, path));
    }
    if let (Some(v), Some(p)) = (f.nccl_version, f.policy) {
        let line = p.log_line(v);
        notes.push(line.strip_prefix("symmem: ").unwrap_or(&line).to_string());
    }
    BackendReport {
        cuda_built: true,
        cuda_driver: f.driver.is_some(),
        driver_version: f.driver.as_ref().and_then(|d| d.version.clone()),
        gpus: f.gpus,
        nccl: f.nccl.is_some(),
        nccl_version: f.nccl_version.map(|v| v.to_string()),
        symmetric_windows: f.windows,
        notes,
        unavailable: f.unavailable.clone(),
    }
}

/// Number of visible GPUs (probed without cudarc, so it never panics).
/// [`Error::BackendUnavailable`] when the CUDA driver is missing or fails to initialise.
pub fn gpu_count() -> Result<usize> {
    let f = found();
    if f.driver.is_none() {
        return Err(Error::BackendUnavailable(
            f.unavailable
                .clone()
                .unwrap_or_else(|| "CUDA driver not found".into()),
        ));
    }
    probe::gpu_count().map_err(unavailable)
}

/// The NCCL version ([`Error::BackendUnavailable`] when NCCL cannot be loaded).
pub fn nccl_version() -> Result<NcclVersion> {
    let f = found();
    f.nccl_version.ok_or_else(|| {
        Error::BackendUnavailable(
            f.unavailable
                .clone()
                .unwrap_or_else(|| "NCCL could not be loaded".into()),
        )
    })
}
