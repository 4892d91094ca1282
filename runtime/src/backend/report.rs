//! What backend to run on: the user's choice ([`BackendChoice`]) and what detection found
//! ([`BackendReport`]). Data only: the detection itself is the CUDA backend's, the launch is
//! `crate::launch`'s.

use std::str::FromStr;

use crate::backend::traits::BackendKind;
use crate::config::env_backend;
use crate::error::{Error, Result};

/// Which backend `symmem::run` should use.
///
/// More backends may be added in any release (`#[non_exhaustive]`): a `match` on it needs a
/// wildcard arm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendChoice {
    /// CUDA when enough GPUs and the CUDA/NCCL libraries are found, the host backend otherwise.
    #[default]
    Auto,
    /// The host backend (ranks are threads, device memory is host memory).
    Host,
    /// CUDA and NCCL, one GPU per rank; an error if that is not possible.
    Cuda,
}

impl FromStr for BackendChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(BackendChoice::Auto),
            "host" | "cpu" => Ok(BackendChoice::Host),
            "cuda" | "gpu" | "nccl" => Ok(BackendChoice::Cuda),
            other => Err(Error::InvalidArgument {
                op: "BackendChoice::from_str",
                detail: format!(
                    "unknown backend {other:?}; use `auto`, `host` or `cuda` (SYMMEM_BACKEND)"
                ),
            }),
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Host => "host",
            BackendChoice::Cuda => "cuda",
        })
    }
}

impl BackendChoice {
    /// The choice in `SYMMEM_BACKEND` (`auto`, `host` or `cuda`; unset or empty means `auto`).
    pub fn from_env() -> Result<Self> {
        match env_backend()? {
            Some(v) => v.parse(),
            None => Ok(BackendChoice::Auto),
        }
    }
}

/// What `symmem::detect` found on this machine.
///
/// Read its fields; more may be added in any release (`#[non_exhaustive]`: it cannot be built
/// with a struct literal outside symmem; [`BackendReport::default`] gives an empty one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendReport {
    /// Whether symmem was built with the `cuda` feature.
    pub cuda_built: bool,
    /// Whether the CUDA driver library (libcuda) could be loaded and initialised.
    pub cuda_driver: bool,
    /// CUDA driver version as `major.minor`, when known.
    pub driver_version: Option<String>,
    /// Number of visible GPUs (0 when the driver is missing).
    pub gpus: usize,
    /// Whether the NCCL library could be loaded.
    pub nccl: bool,
    /// NCCL version as `major.minor.patch`, when known.
    pub nccl_version: Option<String>,
    /// Whether symmetric windows are available with this NCCL (version policy).
    pub symmetric_windows: bool,
    /// Notes: the NCCL version policy line, library paths that were tried, and so on.
    pub notes: Vec<String>,
    /// Why the CUDA backend cannot be used (`None` when it can).
    pub unavailable: Option<String>,
}

impl BackendReport {
    /// Whether the CUDA backend can run `world_size` ranks (one GPU each).
    pub fn cuda_can_run(&self, world_size: usize) -> bool {
        self.unavailable.is_none() && self.gpus >= world_size
    }

    /// Why the CUDA backend cannot run `world_size` ranks, `None` when it can.
    pub fn why_not_cuda(&self, world_size: usize) -> Option<String> {
        if let Some(u) = &self.unavailable {
            return Some(u.clone());
        }
        (self.gpus < world_size).then(|| {
            format!(
                "{world_size} ranks need {world_size} GPUs (NCCL refuses two ranks on one GPU) but {} {} visible",
                self.gpus,
                if self.gpus == 1 { "is" } else { "are" }
            )
        })
    }

    /// The backend `symmem::run` picks for `choice` and `world_size`, or why it cannot run.
    pub fn choose(&self, choice: BackendChoice, world_size: usize) -> Result<BackendKind> {
        match choice {
            BackendChoice::Host => Ok(BackendKind::Host),
            BackendChoice::Cuda => match self.why_not_cuda(world_size) {
                None => Ok(BackendKind::Cuda),
                Some(why) => Err(Error::BackendUnavailable(format!(
                    "the CUDA backend was requested (BackendChoice::Cuda / SYMMEM_BACKEND=cuda) but {why}; use BackendChoice::Auto or SYMMEM_BACKEND=host to fall back to the host backend"
                ))),
            },
            BackendChoice::Auto => Ok(if self.cuda_can_run(world_size) { BackendKind::Cuda } else { BackendKind::Host }),
        }
    }
}

impl std::fmt::Display for BackendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        write!(
            f,
            "cuda feature: {}; driver: {} ({}); GPUs: {}; NCCL: {} ({}); symmetric windows: {}",
            if self.cuda_built {
                "built"
            } else {
                "not built"
            },
            if self.cuda_driver {
                "loaded"
            } else {
                "missing"
            },
            opt(&self.driver_version),
            self.gpus,
            if self.nccl { "loaded" } else { "missing" },
            opt(&self.nccl_version),
            if self.symmetric_windows { "yes" } else { "no" },
        )?;
        if let Some(u) = &self.unavailable {
            write!(f, "; CUDA unavailable: {u}")?;
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse() {
        assert_eq!(
            "AUTO".parse::<BackendChoice>().unwrap(),
            BackendChoice::Auto
        );
        assert_eq!(
            " host ".parse::<BackendChoice>().unwrap(),
            BackendChoice::Host
        );
        assert_eq!(
            "cuda".parse::<BackendChoice>().unwrap(),
            BackendChoice::Cuda
        );
        assert!("tpu".parse::<BackendChoice>().is_err());
    }

    #[test]
    fn report_chooses() {
        let none = BackendReport {
            unavailable: Some("no libcuda".into()),
            ..Default::default()
        };
        assert_eq!(
            none.choose(BackendChoice::Auto, 2).unwrap(),
            BackendKind::Host
        );
        assert!(matches!(
            none.choose(BackendChoice::Cuda, 1),
            Err(Error::BackendUnavailable(_))
        ));
        let one = BackendReport {
            gpus: 1,
            cuda_driver: true,
            nccl: true,
            ..Default::default()
        };
        assert_eq!(
            one.choose(BackendChoice::Auto, 1).unwrap(),
            BackendKind::Cuda
        );
        assert_eq!(
            one.choose(BackendChoice::Auto, 2).unwrap(),
            BackendKind::Host
        );
        let e = one.choose(BackendChoice::Cuda, 2).unwrap_err().to_string();
        assert!(e.contains("2 GPUs"), "{e}");
    }
}
