//! The settings of a rank ([`RankConfig`]) and every `SYMMEM_*` variable the core reads.
//!
//! The variables of the launcher bootstrap (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, ...) are read by
//! `crate::bootstrap`, and `NCCL_NVLS_ENABLE` is set by the CUDA launcher; `docs/environment.md`
//! lists them all with their defaults.

use std::time::Duration;

use crate::error::{Error, Result};

/// `SYMMEM_TIMEOUT_SECS`: the default of [`RankConfig::timeout`], in seconds (fractions allowed).
pub(crate) const TIMEOUT_VAR: &str = "SYMMEM_TIMEOUT_SECS";
/// The timeout when `SYMMEM_TIMEOUT_SECS` is unset or not a positive number.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// `SYMMEM_VALIDATE`: the default of [`RankConfig::validate`] (`1`, `true`, `yes`, `on`).
pub(crate) const VALIDATE_VAR: &str = "SYMMEM_VALIDATE";
/// `SYMMEM_BACKEND`: the backend `BackendChoice::from_env` picks (`auto`, `host`, `cuda`).
pub(crate) const BACKEND_VAR: &str = "SYMMEM_BACKEND";

/// Settings of a rank context.
#[derive(Clone, Debug)]
pub struct RankConfig {
    /// Validation mode: ranks compare segment creations and collectives before running them
    /// (default: `SYMMEM_VALIDATE=1` in the environment, else off).
    pub validate: bool,
    /// How long collectives' host-side waits (validation exchanges, host-backend barriers) wait
    /// for peers before failing (default: `SYMMEM_TIMEOUT_SECS`, else 300 s).
    pub timeout: Duration,
    /// Upper bound on the bytes each symmetric pool may reserve (default: none).
    pub symmetric_pool_limit: Option<usize>,
    /// Upper bound on the bytes the default pool may reserve (default: none).
    pub default_pool_limit: Option<usize>,
}

impl Default for RankConfig {
    fn default() -> Self {
        RankConfig {
            validate: env_validate(),
            timeout: env_timeout(),
            symmetric_pool_limit: None,
            default_pool_limit: None,
        }
    }
}

/// `SYMMEM_TIMEOUT_SECS` as a duration, or the default (300 s).
pub(crate) fn env_timeout() -> Duration {
    std::env::var(TIMEOUT_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Whether `SYMMEM_VALIDATE` asks for validation (`1`, `true`, `yes`, `on`).
pub(crate) fn env_validate() -> bool {
    std::env::var(VALIDATE_VAR)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// `SYMMEM_BACKEND`, if set (`Err` when it is not UTF-8).
pub(crate) fn env_backend() -> Result<Option<String>> {
    match std::env::var(BACKEND_VAR) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidArgument {
            op: "BackendChoice::from_env",
            detail: "SYMMEM_BACKEND is not valid UTF-8; use `auto`, `host` or `cuda`".into(),
        }),
    }
}
