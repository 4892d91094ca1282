//! The errors of the rank bootstrap, each saying what is wrong and what to set or check.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use super::origin::{EnvSource, PortOrigin, DEFAULT_PORT};
use super::wire::UNIQUE_ID_BYTES;

/// Errors of the rank bootstrap. Each message says what is wrong and what to set or check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// Launcher variables are missing.
    #[error("symmem: missing environment variable(s) {}: {}", missing.join(", "), missing_context(*.launcher, missing))]
    MissingVariables {
        /// The variables that are missing.
        missing: Vec<&'static str>,
        /// The launcher whose variables were found, `None` when none was.
        launcher: Option<EnvSource>,
    },

    /// A variable does not hold a number of the expected kind.
    #[error("symmem: {var}={value:?} is not {expected}")]
    InvalidNumber {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },

    /// The world size is zero.
    #[error("symmem: {var}=0: the world size must be at least 1")]
    ZeroWorldSize {
        /// The variable.
        var: &'static str,
    },

    /// The rank is not below the world size.
    #[error("symmem: rank {rank} ({rank_var}) is out of range for world size {world_size} ({size_var}): ranks are 0..{world_size}")]
    RankOutOfRange {
        /// The rank.
        rank: usize,
        /// The world size.
        world_size: usize,
        /// The rank's variable.
        rank_var: &'static str,
        /// The world size's variable.
        size_var: &'static str,
    },

    /// `MASTER_ADDR` could not be resolved.
    #[error("symmem: MASTER_ADDR={addr:?} could not be resolved: {detail}; set MASTER_ADDR to the IP address or host name of rank 0's machine")]
    Resolve {
        /// The address.
        addr: String,
        /// Why.
        detail: String,
    },

    /// Rank 0 could not listen because the port is taken.
    #[error("symmem: rank 0 cannot listen on {addr}: the port is in use (port from {origin}); another job, an earlier run or torchrun's own store holds it: choose a free port with MASTER_PORT, or SYMMEM_BOOTSTRAP_PORT for symmem alone")]
    AddressInUse {
        /// The address.
        addr: SocketAddr,
        /// Where the port came from.
        origin: PortOrigin,
    },

    /// Rank 0 could not listen for another reason.
    #[error("symmem: rank 0 cannot listen on {addr}: {source}{}", if source.kind() == ErrorKind::AddrNotAvailable { "; MASTER_ADDR must be an address of rank 0's own machine (start rank 0 there, or fix MASTER_ADDR)" } else { "" })]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },

    /// Rank 0 waited for the timeout and some ranks never arrived.
    #[error("symmem: rank 0 waited {waited:?} on {addr} but rank(s) {} of {world_size} never arrived ({arrived} did{}); check that every rank was started with the same MASTER_ADDR/MASTER_PORT and WORLD_SIZE, and that they can reach {addr}", list_ranks(missing), if *.ignored > 0 { format!("; {ignored} stray connection(s) were ignored") } else { String::new() })]
    PeersMissing {
        /// Rank 0's address.
        addr: SocketAddr,
        /// How long rank 0 waited.
        waited: Duration,
        /// The ranks that never arrived.
        missing: Vec<usize>,
        /// How many ranks (rank 0 included) arrived.
        arrived: usize,
        /// The world size.
        world_size: usize,
        /// Connections that were not peers of this exchange.
        ignored: usize,
    },

    /// A rank could not reach rank 0 before the timeout.
    #[error("symmem: rank {rank} could not reach rank 0 at {addr} within {waited:?} ({attempts} attempt(s); last error: {last_error}); check that rank 0 is running, that MASTER_ADDR/MASTER_PORT are the same on every rank, and that no firewall blocks the port")]
    ConnectTimeout {
        /// This rank.
        rank: usize,
        /// Rank 0's address, as configured.
        addr: String,
        /// How long it tried.
        waited: Duration,
        /// How many connection attempts were made.
        attempts: usize,
        /// The last failure.
        last_error: String,
    },

    /// A rank reached rank 0 but got no answer before the timeout.
    #[error("symmem: rank {rank} reached rank 0 at {addr} but got no answer within {waited:?}: some other rank did not arrive in time (rank 0's error names it)")]
    NoReply {
        /// This rank.
        rank: usize,
        /// Rank 0's address.
        addr: SocketAddr,
        /// How long it waited in all.
        waited: Duration,
    },

    /// Rank 0 refused this rank or gave up.
    #[error("symmem: rank 0 ({addr}) refused rank {rank}: {message}")]
    Refused {
        /// This rank.
        rank: usize,
        /// Rank 0's address.
        addr: SocketAddr,
        /// Rank 0's explanation.
        message: String,
    },

    /// Rank 0 belongs to another job (its job id differs from this rank's): two jobs share the
    /// port, or the ranks of one job disagree on the job id.
    #[error("symmem: rank 0 ({addr}) refused rank {rank}: this is job {}, you are job {}: two jobs share MASTER_ADDR:MASTER_PORT; give each its own port (MASTER_PORT, or SYMMEM_BOOTSTRAP_PORT for symmem alone) or set SYMMEM_JOB_ID (one value per job, the same on all its ranks)", show_job(rank0_job), show_job(job))]
    JobMismatch {
        /// This rank.
        rank: usize,
        /// Rank 0's address.
        addr: SocketAddr,
        /// This rank's job id ("" for none).
        job: String,
        /// Rank 0's job id ("" for none).
        rank0_job: String,
    },

    /// The two ends do not agree (another program on the port, different symmem versions,
    /// inconsistent world sizes, ...).
    #[error("symmem: bootstrap protocol error with {peer}: {detail}")]
    Protocol {
        /// The other end.
        peer: String,
        /// What went wrong.
        detail: String,
    },

    /// An I/O error on an established connection.
    #[error("symmem: bootstrap I/O error while {during} ({peer}): {source}")]
    Io {
        /// What was being done.
        during: &'static str,
        /// The other end.
        peer: String,
        /// The error.
        source: std::io::Error,
    },

    /// A contribution is larger than [`MAX_PAYLOAD`](super::wire::MAX_PAYLOAD).
    #[error("symmem: a bootstrap contribution of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Rank 0's unique id does not have [`UNIQUE_ID_BYTES`](super::wire::UNIQUE_ID_BYTES) bytes.
    #[error("symmem: rank 0 sent an NCCL unique id of {len} bytes, expected {UNIQUE_ID_BYTES}")]
    InvalidId {
        /// Its length.
        len: usize,
    },
}

/// What the message of [`BootstrapError::MissingVariables`] adds after the variables.
fn missing_context(launcher: Option<EnvSource>, missing: &[&'static str]) -> String {
    match launcher {
        None => "no launcher variables were found; looked for torchrun's RANK, WORLD_SIZE (LOCAL_RANK), Open MPI's OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE (OMPI_COMM_WORLD_LOCAL_RANK) and Slurm's SLURM_PROCID, SLURM_NTASKS (SLURM_LOCALID); start the program with torchrun, mpirun or srun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT yourself".to_string(),
        Some(src) if missing.contains(&"MASTER_ADDR") => format!(
            "found {src}, but rank 0's address is needed too: set MASTER_ADDR to the host of rank 0 (e.g. `export MASTER_ADDR=$(hostname)` on the first node, or the first host of `scontrol show hostnames $SLURM_JOB_NODELIST`) and MASTER_PORT to a free port (default {DEFAULT_PORT})"
        ),
        Some(src) => format!("found part of the {src}; set all of them"),
    }
}

/// A job id in a message: quoted, or "(none)".
fn show_job(id: &str) -> String {
    if id.is_empty() {
        "(none)".to_string()
    } else {
        format!("{id:?}")
    }
}

/// Ranks as a comma-separated list, the first 32 only.
pub fn list_ranks(r: &[usize]) -> String {
    const SHOWN: usize = 32;
    let mut s: Vec<String> = r.iter().take(SHOWN).map(|x| x.to_string()).collect();
    if r.len() > SHOWN {
        s.push(format!("... ({} more)", r.len() - SHOWN));
    }
    s.join(", ")
}
