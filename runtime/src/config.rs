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
/// The longest timeout `SYMMEM_TIMEOUT_SECS` gives: `inf`, and any larger number, mean one year
/// ("no timeout" in practice). Bounded so that `Instant::now() + timeout` cannot overflow.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);
/// `SYMMEM_VALIDATE`: the default of [`RankConfig::validate`] (`1`, `true`, `yes`, `on`).
pub(crate) const VALIDATE_VAR: &str = "SYMMEM_VALIDATE";
/// `SYMMEM_BACKEND`: the backend `BackendChoice::from_env` picks (`auto`, `host`, `cuda`).
pub(crate) const BACKEND_VAR: &str = "SYMMEM_BACKEND";

/// Settings of a rank context.
///
/// New settings may be added in any release (`#[non_exhaustive]`): start from
/// [`RankConfig::default`] (or [`RankConfig::new`]) and change what you need with the `with_*`
/// methods or by assigning fields.
///
/// ```
/// use std::time::Duration;
///
/// let cfg = symmem_runtime::RankConfig::new()
///     .with_validate(true)
///     .with_timeout(Duration::from_secs(30))
///     .with_symmetric_pool_limit(Some(1 << 30));
/// assert!(cfg.validate);
/// assert_eq!(cfg.default_pool_limit, None);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RankConfig {
    /// Validation mode: ranks compare segment creations and collectives before running them
    /// (default: `SYMMEM_VALIDATE=1` in the environment, else off).
    pub validate: bool,
    /// How long collectives' host-side waits (validation exchanges, host-backend barriers) wait
    /// for peers before failing (default: `SYMMEM_TIMEOUT_SECS`, else 300 s; the variable's `inf`
    /// means one year).
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

impl RankConfig {
    /// The default settings (as [`RankConfig::default`]: validation and timeout from
    /// `SYMMEM_VALIDATE` and `SYMMEM_TIMEOUT_SECS`, no pool limits).
    pub fn new() -> Self {
        Self::default()
    }

    /// With validation on or off (see [`RankConfig::validate`]).
    #[must_use]
    pub fn with_validate(mut self, validate: bool) -> Self {
        self.validate = validate;
        self
    }

    /// With this timeout for host-side waits (see [`RankConfig::timeout`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With this bound on each symmetric pool's reserved bytes (`None`: no bound; see
    /// [`RankConfig::symmetric_pool_limit`]).
    #[must_use]
    pub fn with_symmetric_pool_limit(mut self, limit: Option<usize>) -> Self {
        self.symmetric_pool_limit = limit;
        self
    }

    /// With this bound on the default pool's reserved bytes (`None`: no bound; see
    /// [`RankConfig::default_pool_limit`]).
    #[must_use]
    pub fn with_default_pool_limit(mut self, limit: Option<usize>) -> Self {
        self.default_pool_limit = limit;
        self
    }
}

/// `SYMMEM_TIMEOUT_SECS` as a duration, or the default (300 s).
///
/// A positive number of seconds (fractions allowed, below 1 ns means 1 ns); `inf` or more than
/// [`MAX_TIMEOUT`] is capped to it. Anything else (zero, negative, NaN, not a number, not
/// UTF-8) gives the default with a warning on stderr, once per process: a typo must not make
/// a job fail to start, nor wait forever.
pub(crate) fn env_timeout() -> Duration {
    let Some(v) = std::env::var_os(TIMEOUT_VAR) else {
        return DEFAULT_TIMEOUT;
    };
    let text = v.to_string_lossy();
    parse_timeout(&text).unwrap_or_else(|| {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            crate::diag::warn(format_args!(
                "ignoring {TIMEOUT_VAR}={text:?}: not a positive number of seconds; using the default of {} s",
                DEFAULT_TIMEOUT.as_secs()
            ))
        });
        DEFAULT_TIMEOUT
    })
}

/// Seconds as a timeout (see [`env_timeout`]); `None` when not a positive number.
fn parse_timeout(v: &str) -> Option<Duration> {
    let secs = v.trim().parse::<f64>().ok()?;
    // NaN is not greater than zero either.
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    let d = Duration::try_from_secs_f64(secs).unwrap_or(MAX_TIMEOUT);
    Some(d.clamp(Duration::from_nanos(1), MAX_TIMEOUT))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_without_panicking() {
        let secs = |v: &str| parse_timeout(v);
        assert_eq!(secs("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(secs(" 10 "), Some(Duration::from_secs(10)));
        assert_eq!(secs("1e-12"), Some(Duration::from_nanos(1)));
        for capped in ["inf", "+Infinity", "1e300", "1e12"] {
            assert_eq!(secs(capped), Some(MAX_TIMEOUT), "{capped}");
        }
        for bad in ["0", "-1", "-inf", "NaN", "", "5s", "ten"] {
            assert_eq!(secs(bad), None, "{bad}");
        }
        assert!(std::time::Instant::now().checked_add(MAX_TIMEOUT).is_some());
    }
}
