//! The launch as the environment describes it (`LaunchEnv`), read from the launcher's variables.
//!
//! Rank, world size, local rank, rank 0's address and port, and the job identity, from
//! torchrun's, Open MPI's or Slurm's variables. Which are read, in which order, and how the port
//! is chosen: `overview.md` (the public docs of `symmem::cuda::bootstrap`), "Environment".

use super::error::BootstrapError;
use super::origin::{EnvSource, PortOrigin, DEFAULT_PORT};
use super::wire::MAX_JOB_ID;

/// Largest world size accepted (2^20 ranks).
pub const MAX_WORLD_SIZE: usize = 1 << 20;

/// Where a process is in a multi-process launch, and where rank 0 listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchEnv {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks (processes).
    pub world_size: usize,
    /// Rank on this machine (the GPU ordinal to use); the rank when the launcher gave none.
    pub local_rank: usize,
    /// Rank 0's host (`MASTER_ADDR`).
    pub master_addr: String,
    /// The port of the exchange (see the module docs for how it is chosen).
    pub master_port: u16,
    /// Which launcher's variables were used.
    pub source: EnvSource,
    /// Where [`LaunchEnv::master_port`] came from.
    pub port_origin: PortOrigin,
    /// The job identity (see [`LaunchEnv::job_id`]); "" when none.
    job_id: String,
    /// The variable it came from ("" when none, `with_job_id` when given in code).
    job_var: &'static str,
}

fn get(lookup: &impl Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    lookup(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse_usize(var: &'static str, value: &str) -> Result<usize, BootstrapError> {
    value
        .parse::<usize>()
        .map_err(|_| BootstrapError::InvalidNumber {
            var,
            value: value.to_string(),
            expected: "a non-negative integer",
        })
}

fn parse_port(var: &'static str, value: &str) -> Result<u16, BootstrapError> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(BootstrapError::InvalidNumber {
            var,
            value: value.to_string(),
            expected: "a TCP port (1 to 65535)",
        }),
    }
}

/// The job identity: `SYMMEM_JOB_ID`, else the job id of the launcher whose rank variables
/// were read (torchrun: `TORCHELASTIC_RUN_ID`; Slurm: `SLURM_JOB_ID`, with `.SLURM_STEP_ID`
/// when set; Open MPI: `OMPI_MCA_ess_base_jobid` (ORTE, Open MPI up to 4), else `PMIX_NAMESPACE`
/// (PMIx, Open MPI 5)); else none (""). Only the launcher's own variable is read: another
/// launcher's may differ between the ranks of one job (e.g. `SLURM_STEP_ID` under `mpirun`
/// inside a Slurm allocation).
fn job_identity(
    lookup: &impl Fn(&str) -> Option<String>,
    source: EnvSource,
) -> (String, &'static str) {
    if let Some(v) = get(lookup, "SYMMEM_JOB_ID") {
        return (v, "SYMMEM_JOB_ID");
    }
    let found = match source {
        EnvSource::Torchrun => {
            get(lookup, "TORCHELASTIC_RUN_ID").map(|v| (v, "TORCHELASTIC_RUN_ID"))
        }
        EnvSource::Slurm => {
            get(lookup, "SLURM_JOB_ID").map(|job| match get(lookup, "SLURM_STEP_ID") {
                Some(step) => (format!("{job}.{step}"), "SLURM_JOB_ID"),
                None => (job, "SLURM_JOB_ID"),
            })
        }
        EnvSource::OpenMpi => get(lookup, "OMPI_MCA_ess_base_jobid")
            .map(|v| (v, "OMPI_MCA_ess_base_jobid"))
            .or_else(|| get(lookup, "PMIX_NAMESPACE").map(|v| (v, "PMIX_NAMESPACE"))),
        EnvSource::Explicit => None,
    };
    found.unwrap_or((String::new(), ""))
}

impl LaunchEnv {
    /// Read the launch from the process environment (see the module docs).
    ///
    /// Errors: [`BootstrapError::MissingVariables`], [`BootstrapError::InvalidNumber`] (also for
    /// a world size above [`MAX_WORLD_SIZE`]), [`BootstrapError::ZeroWorldSize`],
    /// [`BootstrapError::RankOutOfRange`].
    pub fn from_env() -> Result<Self, BootstrapError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read the launch through `lookup` (a variable name to its value), so that it can be
    /// tested without touching the process environment. Empty values count as unset.
    ///
    /// Errors: as [`LaunchEnv::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, BootstrapError> {
        let has = |v: &str| get(&lookup, v).is_some();
        let source = if has("RANK") || has("WORLD_SIZE") {
            EnvSource::Torchrun
        } else if has("OMPI_COMM_WORLD_RANK") || has("OMPI_COMM_WORLD_SIZE") {
            EnvSource::OpenMpi
        } else if has("SLURM_PROCID") || has("SLURM_NTASKS") || has("SLURM_NPROCS") {
            EnvSource::Slurm
        } else {
            let mut missing = vec!["RANK", "WORLD_SIZE"];
            if !has("MASTER_ADDR") {
                missing.push("MASTER_ADDR");
            }
            return Err(BootstrapError::MissingVariables {
                missing,
                launcher: None,
            });
        };
        let (rank_var, mut size_var, local_var) = source.variables();
        let mut size_value = get(&lookup, size_var);
        if source == EnvSource::Slurm && size_value.is_none() {
            if let Some(v) = get(&lookup, "SLURM_NPROCS") {
                size_var = "SLURM_NPROCS";
                size_value = Some(v);
            }
        }
        let rank_value = get(&lookup, rank_var);
        let master_addr = get(&lookup, "MASTER_ADDR");
        let mut missing = Vec::new();
        if rank_value.is_none() {
            missing.push(rank_var);
        }
        if size_value.is_none() {
            missing.push(size_var);
        }
        if master_addr.is_none() {
            missing.push("MASTER_ADDR");
        }
        let (Some(rank_value), Some(size_value), Some(master_addr)) =
            (rank_value, size_value, master_addr)
        else {
            return Err(BootstrapError::MissingVariables {
                missing,
                launcher: Some(source),
            });
        };
        let rank = parse_usize(rank_var, &rank_value)?;
        let world_size = parse_usize(size_var, &size_value)?;
        if world_size == 0 {
            return Err(BootstrapError::ZeroWorldSize { var: size_var });
        }
        if rank >= world_size {
            return Err(BootstrapError::RankOutOfRange {
                rank,
                world_size,
                rank_var,
                size_var,
            });
        }
        let local_rank = match get(&lookup, local_var) {
            Some(v) => parse_usize(local_var, &v)?,
            None => rank,
        };

        let (master_port, port_origin) = if let Some(p) = get(&lookup, "SYMMEM_BOOTSTRAP_PORT") {
            (
                parse_port("SYMMEM_BOOTSTRAP_PORT", &p)?,
                PortOrigin::BootstrapPort,
            )
        } else {
            let agent_store =
                get(&lookup, "TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v == "True");
            match get(&lookup, "MASTER_PORT") {
                Some(p) => {
                    let port = parse_port("MASTER_PORT", &p)?;
                    if agent_store {
                        let next = port.checked_add(1).ok_or(BootstrapError::InvalidNumber {
                            var: "MASTER_PORT",
                            value: p.clone(),
                            expected: "a port below 65535 (symmem uses MASTER_PORT + 1 under torchrun's agent store; or set SYMMEM_BOOTSTRAP_PORT)",
                        })?;
                        (next, PortOrigin::AfterAgentStore)
                    } else {
                        (port, PortOrigin::MasterPort)
                    }
                }
                None => (DEFAULT_PORT, PortOrigin::Default),
            }
        };
        let (job_id, job_var) = job_identity(&lookup, source);
        let env = LaunchEnv {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            source,
            port_origin,
            job_id,
            job_var,
        };
        validate(&env)?;
        Ok(env)
    }

    /// A launch given in code (local rank = rank), with no job id (see
    /// [`LaunchEnv::with_job_id`]).
    ///
    /// Errors: [`BootstrapError::ZeroWorldSize`], [`BootstrapError::RankOutOfRange`],
    /// [`BootstrapError::MissingVariables`] for an empty address, [`BootstrapError::InvalidNumber`]
    /// for port 0.
    pub fn new(
        rank: usize,
        world_size: usize,
        master_addr: &str,
        master_port: u16,
    ) -> Result<Self, BootstrapError> {
        let env = LaunchEnv {
            rank,
            world_size,
            local_rank: rank,
            master_addr: master_addr.trim().to_string(),
            master_port,
            source: EnvSource::Explicit,
            port_origin: PortOrigin::Explicit,
            job_id: String::new(),
            job_var: "",
        };
        validate(&env)?;
        Ok(env)
    }

    /// The job identity, "" when none: `SYMMEM_JOB_ID`, else the launcher's job id
    /// (`TORCHELASTIC_RUN_ID`, `SLURM_JOB_ID[.SLURM_STEP_ID]`, `OMPI_MCA_ess_base_jobid` or
    /// `PMIX_NAMESPACE`), or the one given to [`LaunchEnv::with_job_id`]. Rank 0 of the exchange
    /// refuses a rank whose job id differs ([`BootstrapError::JobMismatch`]), so two jobs that
    /// share a port cannot meet.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// This launch with job id `id` (trimmed; "" for none), e.g. for a launch given in code.
    /// An id longer than 1024 bytes fails the exchanges with [`BootstrapError::InvalidNumber`].
    pub fn with_job_id(mut self, id: &str) -> Self {
        self.job_id = id.trim().to_string();
        self.job_var = if self.job_id.is_empty() {
            ""
        } else {
            "with_job_id"
        };
        self
    }

    /// `master_addr:master_port` as text (IPv6 addresses in brackets).
    pub fn endpoint(&self) -> String {
        let host = host(self);
        if host.contains(':') {
            format!("[{host}]:{}", self.master_port)
        } else {
            format!("{host}:{}", self.master_port)
        }
    }
}

/// Check the fields of `env` (they are public, so they may have been changed).
pub fn validate(env: &LaunchEnv) -> Result<(), BootstrapError> {
    let (rank_var, size_var, _) = env.source.variables();
    if env.world_size == 0 {
        return Err(BootstrapError::ZeroWorldSize { var: size_var });
    }
    if env.rank >= env.world_size {
        return Err(BootstrapError::RankOutOfRange {
            rank: env.rank,
            world_size: env.world_size,
            rank_var,
            size_var,
        });
    }
    if env.master_addr.trim().is_empty() {
        return Err(BootstrapError::MissingVariables {
            missing: vec!["MASTER_ADDR"],
            launcher: Some(env.source),
        });
    }
    if env.master_port == 0 {
        return Err(BootstrapError::InvalidNumber {
            var: "MASTER_PORT",
            value: "0".into(),
            expected: "a TCP port (1 to 65535)",
        });
    }
    if env.world_size > MAX_WORLD_SIZE {
        return Err(BootstrapError::InvalidNumber {
            var: size_var,
            value: env.world_size.to_string(),
            expected: "a world size of at most 1048576",
        });
    }
    if env.job_id.len() > MAX_JOB_ID {
        return Err(BootstrapError::InvalidNumber {
            var: env.job_var,
            value: env.job_id.clone(),
            expected: "a job id of at most 1024 bytes",
        });
    }
    Ok(())
}

/// `env.master_addr` without surrounding whitespace and IPv6 brackets.
pub fn host(env: &LaunchEnv) -> &str {
    let h = env.master_addr.trim();
    h.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h)
}
