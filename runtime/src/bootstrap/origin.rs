//! Where a launch's values came from: the launcher whose variables were read, and the port.

use std::fmt;

/// Port used when `MASTER_PORT` is unset (torchrun's default).
pub const DEFAULT_PORT: u16 = 29500;

/// Which launcher the rank variables came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnvSource {
    /// torchrun (or variables set by hand): `RANK`, `WORLD_SIZE`, `LOCAL_RANK`.
    Torchrun,
    /// Open MPI: `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`, `OMPI_COMM_WORLD_LOCAL_RANK`.
    OpenMpi,
    /// Slurm: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`.
    Slurm,
    /// Built in code with [`LaunchEnv::new`](super::env::LaunchEnv::new).
    Explicit,
}

impl EnvSource {
    /// The variables of this launcher: (rank, world size, local rank).
    pub const fn variables(self) -> (&'static str, &'static str, &'static str) {
        match self {
            EnvSource::Torchrun => ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
            EnvSource::OpenMpi => (
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
            ),
            EnvSource::Slurm => ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
            EnvSource::Explicit => ("rank", "world_size", "local_rank"),
        }
    }
}

impl fmt::Display for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnvSource::Torchrun => "torchrun variables (RANK/WORLD_SIZE/LOCAL_RANK)",
            EnvSource::OpenMpi => "Open MPI variables (OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE/OMPI_COMM_WORLD_LOCAL_RANK)",
            EnvSource::Slurm => "Slurm variables (SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID)",
            EnvSource::Explicit => "values given in code",
        })
    }
}

/// Where the exchange port came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PortOrigin {
    /// `SYMMEM_BOOTSTRAP_PORT`.
    BootstrapPort,
    /// `MASTER_PORT + 1`, because `TORCHELASTIC_USE_AGENT_STORE=True` (torchrun's agent listens
    /// on `MASTER_PORT`).
    AfterAgentStore,
    /// `MASTER_PORT`.
    MasterPort,
    /// `MASTER_PORT` was unset: [`DEFAULT_PORT`].
    Default,
    /// Given in code with [`LaunchEnv::new`](super::env::LaunchEnv::new).
    Explicit,
}

impl fmt::Display for PortOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortOrigin::BootstrapPort => "SYMMEM_BOOTSTRAP_PORT",
            PortOrigin::AfterAgentStore => "MASTER_PORT + 1, as TORCHELASTIC_USE_AGENT_STORE=True",
            PortOrigin::MasterPort => "MASTER_PORT",
            PortOrigin::Default => "the default 29500, as MASTER_PORT is unset",
            PortOrigin::Explicit => "given in code",
        })
    }
}
