//! Multi-process rank bootstrap: read the launcher's environment, then share the NCCL unique id
//! (or any small byte strings) among the ranks over TCP.
//!
//! # Environment ([`LaunchEnv::from_env`])
//!
//! | launcher         | rank                   | world size             | local rank                    |
//! |------------------|------------------------|------------------------|-------------------------------|
//! | torchrun (or by hand) | `RANK`            | `WORLD_SIZE`           | `LOCAL_RANK`                  |
//! | Open MPI `mpirun`| `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK`  |
//! | Slurm `srun`     | `SLURM_PROCID`         | `SLURM_NTASKS` (or `SLURM_NPROCS`) | `SLURM_LOCALID`   |
//!
//! The first launcher with any of its rank/world-size variables set is used, in the order of
//! the table; both of its variables must then be set. The local rank (the GPU ordinal) defaults
//! to the rank when its variable is unset, which is right on a single machine only.
//!
//! Rank 0's address is `MASTER_ADDR` for every launcher (`mpirun` and `srun` do not set it:
//! export it, e.g. `MASTER_ADDR=$(hostname)` on the first node). The port is, in this order:
//! `SYMMEM_BOOTSTRAP_PORT` when set; `MASTER_PORT + 1` when `TORCHELASTIC_USE_AGENT_STORE=True`
//! (recent torchrun versions keep their own TCP store listening on `MASTER_PORT` itself);
//! `MASTER_PORT`; and **29500** (torchrun's default) when `MASTER_PORT` is unset.
//!
//! # Exchange ([`exchange_unique_id`], [`all_gather_bytes`])
//!
//! Rank 0 listens on `MASTER_ADDR:port` (the address must be one of its own; `SO_REUSEADDR`, as
//! Rust's `TcpListener::bind` sets on Unix). Every other rank connects, retrying until the
//! timeout (rank 0 may start later), and sends a hello: magic, protocol version, exchange tag,
//! its rank, the world size and its contribution. When all `world_size - 1` peers arrived, rank
//! 0 answers each with every rank's contribution (for the unique id: rank 0's 128 bytes). If
//! the timeout passes first, rank 0 fails naming the ranks that never arrived and tells the
//! connected peers so (they fail at once too). Stray connections (port scanners, clients of
//! another protocol, exchanges with another tag) are ignored. Every wait, including name
//! resolution, is bounded by the timeout, plus at most a few seconds for answers already under
//! way (a connected rank waits up to 2 s past its timeout for rank 0's verdict; rank 0 allows
//! 5 s for its final replies).
//!
//! Wire format (little endian): hello = `b"SYMM"`, version `u32`, tag `u64` (FNV-1a of the
//! tag string), rank `u32`, world size `u32`, length `u32`, bytes. Reply = `b"SYMM"`, version
//! `u32`, status `u32` (0 ok, 1 refused), then for ok: count `u32` and `count` times (length
//! `u32`, bytes); for refused: length `u32` and a UTF-8 message.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Length of an NCCL unique id (`ncclUniqueId`, `NCCL_UNIQUE_ID_BYTES`).
pub const UNIQUE_ID_BYTES: usize = 128;

/// Port used when `MASTER_PORT` is unset (torchrun's default).
pub const DEFAULT_PORT: u16 = 29500;

/// Largest world size accepted (2^20 ranks).
pub const MAX_WORLD_SIZE: usize = 1 << 20;

/// Largest contribution of one rank to an exchange (16 MiB).
pub const MAX_PAYLOAD: usize = 16 << 20;

const MAGIC: [u8; 4] = *b"SYMM";
const PROTOCOL_VERSION: u32 = 1;
const STATUS_OK: u32 = 0;
const STATUS_REFUSED: u32 = 1;
const MAX_MESSAGE: usize = 64 << 10;
/// Longest a single blocking socket operation of the server may wait for one peer.
const PER_PEER_IO: Duration = Duration::from_secs(5);
/// Time allowed for the final replies after every peer arrived, and for the rest of a reply
/// once its first bytes arrived.
const REPLY_GRACE: Duration = Duration::from_secs(5);
/// How much longer than its timeout a connected rank waits for rank 0's answer: rank 0 gives up
/// at about the same time and then says which ranks are missing.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

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
    /// Built in code with [`LaunchEnv::new`].
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
    /// Given in code with [`LaunchEnv::new`].
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

    /// A contribution is larger than [`MAX_PAYLOAD`].
    #[error("symmem: a bootstrap contribution of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// Rank 0's unique id does not have [`UNIQUE_ID_BYTES`] bytes.
    #[error("symmem: rank 0 sent an NCCL unique id of {len} bytes, expected {UNIQUE_ID_BYTES}")]
    InvalidId {
        /// Its length.
        len: usize,
    },
}

fn missing_context(launcher: Option<EnvSource>, missing: &[&'static str]) -> String {
    match launcher {
        None => "no launcher variables were found; looked for torchrun's RANK, WORLD_SIZE (LOCAL_RANK), Open MPI's OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE (OMPI_COMM_WORLD_LOCAL_RANK) and Slurm's SLURM_PROCID, SLURM_NTASKS (SLURM_LOCALID); start the program with torchrun, mpirun or srun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT yourself".to_string(),
        Some(src) if missing.contains(&"MASTER_ADDR") => format!(
            "found {src}, but rank 0's address is needed too: set MASTER_ADDR to the host of rank 0 (e.g. `export MASTER_ADDR=$(hostname)` on the first node, or the first host of `scontrol show hostnames $SLURM_JOB_NODELIST`) and MASTER_PORT to a free port (default {DEFAULT_PORT})"
        ),
        Some(src) => format!("found part of the {src}; set all of them"),
    }
}

fn list_ranks(r: &[usize]) -> String {
    const SHOWN: usize = 32;
    let mut s: Vec<String> = r.iter().take(SHOWN).map(|x| x.to_string()).collect();
    if r.len() > SHOWN {
        s.push(format!("... ({} more)", r.len() - SHOWN));
    }
    s.join(", ")
}

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
        let env = LaunchEnv {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            source,
            port_origin,
        };
        env.validate()?;
        Ok(env)
    }

    /// A launch given in code (local rank = rank).
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
        };
        env.validate()?;
        Ok(env)
    }

    /// Check the fields (they are public, so they may have been changed).
    fn validate(&self) -> Result<(), BootstrapError> {
        let (rank_var, size_var, _) = self.source.variables();
        if self.world_size == 0 {
            return Err(BootstrapError::ZeroWorldSize { var: size_var });
        }
        if self.rank >= self.world_size {
            return Err(BootstrapError::RankOutOfRange {
                rank: self.rank,
                world_size: self.world_size,
                rank_var,
                size_var,
            });
        }
        if self.master_addr.trim().is_empty() {
            return Err(BootstrapError::MissingVariables {
                missing: vec!["MASTER_ADDR"],
                launcher: Some(self.source),
            });
        }
        if self.master_port == 0 {
            return Err(BootstrapError::InvalidNumber {
                var: "MASTER_PORT",
                value: "0".into(),
                expected: "a TCP port (1 to 65535)",
            });
        }
        if self.world_size > MAX_WORLD_SIZE {
            return Err(BootstrapError::InvalidNumber {
                var: size_var,
                value: self.world_size.to_string(),
                expected: "a world size of at most 1048576",
            });
        }
        Ok(())
    }

    /// `master_addr:master_port` as text (IPv6 addresses in brackets).
    pub fn endpoint(&self) -> String {
        let host = self.host();
        if host.contains(':') {
            format!("[{host}]:{}", self.master_port)
        } else {
            format!("{host}:{}", self.master_port)
        }
    }

    fn host(&self) -> &str {
        let h = self.master_addr.trim();
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
    }
}

/// Share rank 0's NCCL unique id with every rank over TCP (see the module docs): rank 0 calls
/// `make_id` (after it could listen) and serves the id; the others fetch it. Returns the id on
/// every rank. All ranks must call it with the same world size and address. Each waits at most
/// about `timeout` (a rank already connected to rank 0 waits up to 2 s more for rank 0's
/// answer, which names the missing ranks when rank 0 gives up). With a world size of 1,
/// returns `make_id()` without any network.
///
/// Errors: [`BootstrapError::AddressInUse`], [`BootstrapError::Bind`], [`BootstrapError::Resolve`]
/// (rank 0's listening address); [`BootstrapError::PeersMissing`] (rank 0: some ranks never
/// arrived); [`BootstrapError::ConnectTimeout`], [`BootstrapError::NoReply`],
/// [`BootstrapError::Refused`] (other ranks); [`BootstrapError::Protocol`],
/// [`BootstrapError::Io`], [`BootstrapError::InvalidId`].
pub fn exchange_unique_id(
    env: &LaunchEnv,
    make_id: impl FnOnce() -> [u8; UNIQUE_ID_BYTES],
    timeout: Duration,
) -> Result<[u8; UNIQUE_ID_BYTES], BootstrapError> {
    env.validate()?;
    if env.world_size == 1 {
        return Ok(make_id());
    }
    let is_root = env.rank == 0;
    let all = rendezvous(
        env,
        "nccl-unique-id",
        move || {
            if is_root {
                make_id().to_vec()
            } else {
                Vec::new()
            }
        },
        timeout,
    )?;
    let first = all.into_iter().next().unwrap_or_default();
    let len = first.len();
    <[u8; UNIQUE_ID_BYTES]>::try_from(first).map_err(|_| BootstrapError::InvalidId { len })
}

/// A small host-side all-gather over the same TCP bootstrap: every rank contributes `mine` (at
/// most [`MAX_PAYLOAD`] bytes) and gets every rank's contribution, indexed by rank. `tag` names
/// the exchange (ranks with different tags do not meet); consecutive exchanges may reuse the
/// same port.
///
/// Errors: as [`exchange_unique_id`] (except `InvalidId`), plus
/// [`BootstrapError::PayloadTooLarge`].
pub fn all_gather_bytes(
    env: &LaunchEnv,
    tag: &str,
    mine: &[u8],
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    env.validate()?;
    if mine.len() > MAX_PAYLOAD {
        return Err(BootstrapError::PayloadTooLarge {
            len: mine.len(),
            max: MAX_PAYLOAD,
        });
    }
    if env.world_size == 1 {
        return Ok(vec![mine.to_vec()]);
    }
    rendezvous(env, tag, || mine.to_vec(), timeout)
}

fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Time left until `deadline`, at least 1 ms (socket timeouts of zero are refused).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// FNV-1a, stable across processes and Rust versions.
fn tag_hash(tag: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn rendezvous(
    env: &LaunchEnv,
    tag: &str,
    mine: impl FnOnce() -> Vec<u8>,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    let started = Instant::now();
    let deadline = deadline_after(timeout);
    let addrs = resolve(env, deadline)?;
    if env.rank == 0 {
        let (listener, addr) = bind(env, &addrs)?;
        let mine = mine();
        if mine.len() > MAX_PAYLOAD {
            return Err(BootstrapError::PayloadTooLarge {
                len: mine.len(),
                max: MAX_PAYLOAD,
            });
        }
        serve(
            listener,
            addr,
            env.world_size,
            tag_hash(tag),
            mine,
            started,
            deadline,
        )
    } else {
        let mine = mine();
        client(env, &addrs, tag_hash(tag), &mine, started, deadline)
    }
}

/// Resolve `MASTER_ADDR`, in a helper thread so that a slow resolver cannot outlast the
/// deadline.
fn resolve(env: &LaunchEnv, deadline: Instant) -> Result<Vec<SocketAddr>, BootstrapError> {
    let host = env.host().to_string();
    let port = env.master_port;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let h = host.clone();
    let spawned = std::thread::Builder::new()
        .name("symmem-resolve".into())
        .spawn(move || {
            let r = (h.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Err(BootstrapError::Resolve {
            addr: host,
            detail: format!("could not start a resolver thread: {e}"),
        });
    }
    match rx.recv_timeout(left(deadline)) {
        Ok(Ok(list)) if !list.is_empty() => Ok(list),
        Ok(Ok(_)) => Err(BootstrapError::Resolve {
            addr: host,
            detail: "no addresses".into(),
        }),
        Ok(Err(e)) => Err(BootstrapError::Resolve {
            addr: host,
            detail: e.to_string(),
        }),
        Err(_) => Err(BootstrapError::Resolve {
            addr: host,
            detail: "name resolution did not finish before the timeout".into(),
        }),
    }
}

fn bind(
    env: &LaunchEnv,
    addrs: &[SocketAddr],
) -> Result<(TcpListener, SocketAddr), BootstrapError> {
    let mut first_err: Option<(SocketAddr, std::io::Error)> = None;
    for &a in addrs {
        match TcpListener::bind(a) {
            Ok(l) => return Ok((l, a)),
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                return Err(BootstrapError::AddressInUse {
                    addr: a,
                    origin: env.port_origin,
                });
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some((a, e));
                }
            }
        }
    }
    match first_err {
        Some((addr, source)) => Err(BootstrapError::Bind { addr, source }),
        None => Err(BootstrapError::Resolve {
            addr: env.master_addr.clone(),
            detail: "no addresses".into(),
        }),
    }
}

/// A hello, as rank 0 read it.
struct Hello {
    tag: u64,
    rank: u32,
    world_size: u32,
    payload: Vec<u8>,
}

enum HelloError {
    /// Not our magic: some other client. Ignored.
    Stray,
    /// Our magic, another protocol version.
    Version(u32),
    /// A contribution over the limit.
    TooLarge(usize),
    /// The connection failed or timed out before a full hello. Ignored (a rank retries).
    Io,
}

/// Read exactly `buf.len()` bytes before `deadline` (each read's timeout is the time left).
fn read_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut pos = 0;
    while pos < buf.len() {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "timed out"));
        }
        s.set_read_timeout(Some(left(deadline)))?;
        match s.read(&mut buf[pos..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed",
                ))
            }
            Ok(n) => pos += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(std::io::Error::new(ErrorKind::TimedOut, "timed out"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_u32(s: &mut TcpStream, deadline: Instant) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    read_by(s, &mut b, deadline)?;
    Ok(u32::from_le_bytes(b))
}

fn write_by(s: &mut TcpStream, data: &[u8], timeout: Duration) -> std::io::Result<()> {
    s.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    s.write_all(data)?;
    s.flush()
}

fn read_hello(s: &mut TcpStream, deadline: Instant) -> Result<Hello, HelloError> {
    let mut magic = [0u8; 4];
    read_by(s, &mut magic, deadline).map_err(|_| HelloError::Io)?;
    if magic != MAGIC {
        return Err(HelloError::Stray);
    }
    let version = read_u32(s, deadline).map_err(|_| HelloError::Io)?;
    if version != PROTOCOL_VERSION {
        return Err(HelloError::Version(version));
    }
    let mut tag = [0u8; 8];
    read_by(s, &mut tag, deadline).map_err(|_| HelloError::Io)?;
    let rank = read_u32(s, deadline).map_err(|_| HelloError::Io)?;
    let world_size = read_u32(s, deadline).map_err(|_| HelloError::Io)?;
    let len = read_u32(s, deadline).map_err(|_| HelloError::Io)? as usize;
    if len > MAX_PAYLOAD {
        return Err(HelloError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    read_by(s, &mut payload, deadline).map_err(|_| HelloError::Io)?;
    Ok(Hello {
        tag: u64::from_le_bytes(tag),
        rank,
        world_size,
        payload,
    })
}

fn encode_hello(tag: u64, rank: u32, world_size: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(28 + payload.len());
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    m.extend_from_slice(&tag.to_le_bytes());
    m.extend_from_slice(&rank.to_le_bytes());
    m.extend_from_slice(&world_size.to_le_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

fn encode_ok(all: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = all.iter().map(|p| 4 + p.len()).sum();
    let mut m = Vec::with_capacity(16 + total);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    m.extend_from_slice(&STATUS_OK.to_le_bytes());
    m.extend_from_slice(&(all.len() as u32).to_le_bytes());
    for p in all {
        m.extend_from_slice(&(p.len() as u32).to_le_bytes());
        m.extend_from_slice(p);
    }
    m
}

fn encode_refusal(message: &str) -> Vec<u8> {
    let mut msg = message.as_bytes();
    if msg.len() > MAX_MESSAGE {
        msg = &msg[..MAX_MESSAGE];
    }
    let mut m = Vec::with_capacity(16 + msg.len());
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    m.extend_from_slice(&STATUS_REFUSED.to_le_bytes());
    m.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    m.extend_from_slice(msg);
    m
}

/// Best effort: tell a peer why it is refused (it fails at once instead of timing out).
fn refuse(s: &mut TcpStream, message: &str) {
    let _ = write_by(s, &encode_refusal(message), Duration::from_millis(500));
}

/// Rank 0: collect every peer's hello, then answer all.
fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    world_size: usize,
    tag: u64,
    mine: Vec<u8>,
    started: Instant,
    deadline: Instant,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    let io = |during: &'static str, source: std::io::Error| BootstrapError::Io {
        during,
        peer: addr.to_string(),
        source,
    };
    listener
        .set_nonblocking(true)
        .map_err(|e| io("setting up rank 0's listener", e))?;
    let (tx, rx) = mpsc::channel::<(TcpStream, SocketAddr, Result<Hello, HelloError>)>();
    let mut peers: Vec<Option<(TcpStream, Vec<u8>)>> = (0..world_size).map(|_| None).collect();
    let mut arrived = 1usize;
    let mut ignored = 0usize;

    // Fail: tell every connected peer, then return `err`.
    fn give_up(
        peers: &mut [Option<(TcpStream, Vec<u8>)>],
        message: &str,
        err: BootstrapError,
    ) -> BootstrapError {
        for (s, _) in peers.iter_mut().flatten() {
            refuse(s, message);
        }
        err
    }

    loop {
        // Hellos read by the per-connection threads.
        while let Ok((mut s, from, hello)) = rx.try_recv() {
            let hello = match hello {
                Ok(h) => h,
                Err(HelloError::Stray) | Err(HelloError::Io) => {
                    ignored += 1;
                    continue;
                }
                Err(HelloError::Version(v)) => {
                    let detail = format!("{from} speaks bootstrap protocol version {v}, rank 0 speaks {PROTOCOL_VERSION}: run the same symmem version on every rank");
                    refuse(&mut s, &detail);
                    return Err(give_up(
                        &mut peers,
                        &detail,
                        BootstrapError::Protocol {
                            peer: from.to_string(),
                            detail: detail.clone(),
                        },
                    ));
                }
                Err(HelloError::TooLarge(len)) => {
                    let detail = format!("{from} sent a contribution of {len} bytes, over the limit of {MAX_PAYLOAD}");
                    refuse(&mut s, &detail);
                    return Err(give_up(
                        &mut peers,
                        &detail,
                        BootstrapError::Protocol {
                            peer: from.to_string(),
                            detail: detail.clone(),
                        },
                    ));
                }
            };
            if hello.tag != tag {
                refuse(&mut s, "rank 0 is running another exchange on this port (its tag differs): the ranks are out of step");
                ignored += 1;
                continue;
            }
            let r = hello.rank as usize;
            if hello.world_size as usize != world_size || r == 0 || r >= world_size {
                let detail = format!(
                    "{from} says it is rank {} of {}, but rank 0 has world size {world_size}: every rank must be started with the same WORLD_SIZE and a distinct rank in 1..{world_size}",
                    hello.rank, hello.world_size
                );
                refuse(&mut s, &detail);
                return Err(give_up(
                    &mut peers,
                    &detail,
                    BootstrapError::Protocol {
                        peer: from.to_string(),
                        detail: detail.clone(),
                    },
                ));
            }
            if peers[r].is_none() {
                arrived += 1;
            }
            // A rank that connects again (it retried) replaces its earlier connection.
            peers[r] = Some((s, hello.payload));
        }
        if arrived == world_size {
            break;
        }
        if Instant::now() >= deadline {
            let missing: Vec<usize> = (1..world_size).filter(|&r| peers[r].is_none()).collect();
            let message = format!(
                "rank 0 gave up after {:?}: rank(s) {} never arrived",
                started.elapsed(),
                list_ranks(&missing)
            );
            let err = BootstrapError::PeersMissing {
                addr,
                waited: started.elapsed(),
                missing,
                arrived,
                world_size,
                ignored,
            };
            return Err(give_up(&mut peers, &message, err));
        }
        match listener.accept() {
            Ok((stream, from)) => {
                let tx = tx.clone();
                let conn_deadline = (Instant::now() + PER_PEER_IO).min(deadline);
                let spawned = std::thread::Builder::new()
                    .name("symmem-bootstrap-peer".into())
                    .spawn(move || {
                        let mut stream = stream;
                        let hello = match stream.set_nonblocking(false) {
                            Ok(()) => {
                                let _ = stream.set_nodelay(true);
                                read_hello(&mut stream, conn_deadline)
                            }
                            Err(_) => Err(HelloError::Io),
                        };
                        let _ = tx.send((stream, from, hello));
                    });
                if spawned.is_err() {
                    // Could not start a reader: the connection is dropped; the rank retries.
                    ignored += 1;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                std::thread::sleep(Duration::from_millis(5).min(left(deadline)));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                let err = io("accepting connections", e);
                return Err(give_up(
                    &mut peers,
                    "rank 0 could not accept connections",
                    err,
                ));
            }
        }
    }

    let mut all = Vec::with_capacity(world_size);
    all.push(mine);
    let mut streams = Vec::with_capacity(world_size - 1);
    for p in peers.into_iter().skip(1) {
        // Every slot 1.. is filled once `arrived == world_size`.
        let Some((s, payload)) = p else {
            return Err(BootstrapError::Protocol {
                peer: addr.to_string(),
                detail: "internal: a rank slot is empty".into(),
            });
        };
        all.push(payload);
        streams.push(s);
    }
    let reply = encode_ok(&all);
    let reply_deadline = Instant::now() + REPLY_GRACE;
    let mut failed: Option<BootstrapError> = None;
    for (i, mut s) in streams.into_iter().enumerate() {
        if let Err(e) = write_by(&mut s, &reply, left(reply_deadline)) {
            failed.get_or_insert(BootstrapError::Io {
                during: "sending the exchange result",
                peer: format!("rank {}", i + 1),
                source: e,
            });
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

enum ReplyError {
    /// The connection closed or failed before any byte of a reply: retry.
    Lost(String),
    /// No reply before the deadline.
    Timeout,
    /// Something that is not rank 0 of this protocol answered.
    Foreign(String),
}

fn read_reply(
    s: &mut TcpStream,
    world_size: usize,
    deadline: Instant,
) -> Result<Result<Vec<Vec<u8>>, String>, ReplyError> {
    let classify = |e: std::io::Error| {
        if e.kind() == ErrorKind::TimedOut {
            ReplyError::Timeout
        } else {
            ReplyError::Lost(e.to_string())
        }
    };
    let mut magic = [0u8; 4];
    read_by(s, &mut magic, deadline).map_err(classify)?;
    if magic != MAGIC {
        return Err(ReplyError::Foreign(format!(
            "it answered {magic:02x?} instead of symmem's greeting"
        )));
    }
    // The answer has begun: the rest may take a little longer than the deadline.
    let deadline = deadline.max(Instant::now() + REPLY_GRACE);
    let foreign = |e: std::io::Error| ReplyError::Foreign(format!("its answer broke off: {e}"));
    let version = read_u32(s, deadline).map_err(foreign)?;
    if version != PROTOCOL_VERSION {
        return Err(ReplyError::Foreign(format!("it speaks bootstrap protocol version {version}, this rank {PROTOCOL_VERSION}: run the same symmem version on every rank")));
    }
    let status = read_u32(s, deadline).map_err(foreign)?;
    match status {
        STATUS_OK => {
            let count = read_u32(s, deadline).map_err(foreign)? as usize;
            if count != world_size {
                return Err(ReplyError::Foreign(format!(
                    "it sent {count} contributions for a world of {world_size}"
                )));
            }
            let mut all = Vec::with_capacity(count);
            for _ in 0..count {
                let len = read_u32(s, deadline).map_err(foreign)? as usize;
                if len > MAX_PAYLOAD {
                    return Err(ReplyError::Foreign(format!(
                        "it sent a contribution of {len} bytes, over the limit of {MAX_PAYLOAD}"
                    )));
                }
                let mut p = vec![0u8; len];
                read_by(s, &mut p, deadline).map_err(foreign)?;
                all.push(p);
            }
            Ok(Ok(all))
        }
        STATUS_REFUSED => {
            let len = read_u32(s, deadline).map_err(foreign)? as usize;
            let mut msg = vec![0u8; len.min(MAX_MESSAGE)];
            read_by(s, &mut msg, deadline).map_err(foreign)?;
            Ok(Err(String::from_utf8_lossy(&msg).into_owned()))
        }
        other => Err(ReplyError::Foreign(format!(
            "it sent an unknown status {other}"
        ))),
    }
}

/// A rank other than 0: connect (retrying), send the hello, read the answer.
fn client(
    env: &LaunchEnv,
    addrs: &[SocketAddr],
    tag: u64,
    mine: &[u8],
    started: Instant,
    deadline: Instant,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    let hello = encode_hello(tag, env.rank as u32, env.world_size as u32, mine);
    let mut attempts = 0usize;
    let mut last_error = String::from("none");
    let mut backoff = Duration::from_millis(20);
    loop {
        for &a in addrs {
            if Instant::now() >= deadline {
                break;
            }
            attempts += 1;
            let mut s =
                match TcpStream::connect_timeout(&a, left(deadline).min(Duration::from_secs(2))) {
                    Ok(s) => s,
                    Err(e) => {
                        last_error = format!("{a}: {e}");
                        continue;
                    }
                };
            let _ = s.set_nodelay(true);
            if let Err(e) = write_by(&mut s, &hello, left(deadline).min(PER_PEER_IO)) {
                last_error = format!("{a}: sending the hello: {e}");
                continue;
            }
            match read_reply(&mut s, env.world_size, deadline + ANSWER_GRACE) {
                Ok(Ok(all)) => return Ok(all),
                Ok(Err(message)) => {
                    return Err(BootstrapError::Refused {
                        rank: env.rank,
                        addr: a,
                        message,
                    })
                }
                Err(ReplyError::Timeout) => {
                    return Err(BootstrapError::NoReply {
                        rank: env.rank,
                        addr: a,
                        waited: started.elapsed(),
                    });
                }
                Err(ReplyError::Foreign(detail)) => {
                    return Err(BootstrapError::Protocol {
                        peer: a.to_string(),
                        detail: format!("{detail}; is another program (e.g. torchrun's own store) listening on this port? Set SYMMEM_BOOTSTRAP_PORT to a free port on every rank"),
                    });
                }
                Err(ReplyError::Lost(e)) => {
                    last_error = format!("{a}: connection lost before an answer: {e}");
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(BootstrapError::ConnectTimeout {
                rank: env.rank,
                addr: env.endpoint(),
                waited: started.elapsed(),
                attempts,
                last_error,
            });
        }
        std::thread::sleep(backoff.min(left(deadline)));
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn torchrun_variables() {
        let e = LaunchEnv::from_lookup(lookup(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "1234"),
        ]))
        .unwrap();
        assert_eq!(
            (e.rank, e.world_size, e.local_rank, e.master_port),
            (3, 8, 1, 1234)
        );
        assert_eq!(
            (e.source, e.port_origin),
            (EnvSource::Torchrun, PortOrigin::MasterPort)
        );
        assert_eq!(e.endpoint(), "10.0.0.1:1234");
    }

    #[test]
    fn ports() {
        let base = [
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
        ];
        let e = LaunchEnv::from_lookup(lookup(&base)).unwrap();
        assert_eq!(
            (e.master_port, e.port_origin, e.local_rank),
            (DEFAULT_PORT, PortOrigin::Default, 0)
        );
        let mut v = base.to_vec();
        v.push(("MASTER_PORT", "4000"));
        v.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
        let e = LaunchEnv::from_lookup(lookup(&v)).unwrap();
        assert_eq!(
            (e.master_port, e.port_origin),
            (4001, PortOrigin::AfterAgentStore)
        );
        v.push(("SYMMEM_BOOTSTRAP_PORT", "5000"));
        let e = LaunchEnv::from_lookup(lookup(&v)).unwrap();
        assert_eq!(
            (e.master_port, e.port_origin),
            (5000, PortOrigin::BootstrapPort)
        );
        let mut w = base.to_vec();
        w.push(("MASTER_PORT", "65535"));
        w.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
        assert!(matches!(
            LaunchEnv::from_lookup(lookup(&w)),
            Err(BootstrapError::InvalidNumber {
                var: "MASTER_PORT",
                ..
            })
        ));
        let mut x = base.to_vec();
        x.push(("MASTER_PORT", "0"));
        assert!(matches!(
            LaunchEnv::from_lookup(lookup(&x)),
            Err(BootstrapError::InvalidNumber {
                var: "MASTER_PORT",
                ..
            })
        ));
    }

    #[test]
    fn mpi_and_slurm() {
        let e = LaunchEnv::from_lookup(lookup(&[
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
            ("MASTER_ADDR", "h"),
            ("SLURM_PROCID", "9"),
        ]))
        .unwrap();
        assert_eq!(
            (e.rank, e.world_size, e.local_rank, e.source),
            (2, 4, 0, EnvSource::OpenMpi)
        );
        let e = LaunchEnv::from_lookup(lookup(&[
            ("SLURM_PROCID", "1"),
            ("SLURM_NPROCS", "2"),
            ("SLURM_LOCALID", "1"),
            ("MASTER_ADDR", "h"),
        ]))
        .unwrap();
        assert_eq!(
            (e.rank, e.world_size, e.local_rank, e.source),
            (1, 2, 1, EnvSource::Slurm)
        );
        let err = LaunchEnv::from_lookup(lookup(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("MASTER_ADDR") && msg.contains("Slurm"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values() {
        let err = LaunchEnv::from_lookup(lookup(&[
            ("RANK", "x"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, BootstrapError::InvalidNumber { var: "RANK", .. }),
            "{err}"
        );
        let err = LaunchEnv::from_lookup(lookup(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "0"),
            ("MASTER_ADDR", "h"),
        ]))
        .unwrap_err();
        assert!(
            matches!(err, BootstrapError::ZeroWorldSize { var: "WORLD_SIZE" }),
            "{err}"
        );
        let err = LaunchEnv::from_lookup(lookup(&[
            ("RANK", "-1"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
        ]))
        .unwrap_err();
        assert!(matches!(err, BootstrapError::InvalidNumber { .. }), "{err}");
        let err =
            LaunchEnv::from_lookup(lookup(&[("RANK", "0"), ("MASTER_ADDR", "h")])).unwrap_err();
        assert!(
            matches!(&err, BootstrapError::MissingVariables { missing, .. } if missing == &vec!["WORLD_SIZE"]),
            "{err}"
        );
        let err = LaunchEnv::from_lookup(lookup(&[("RANK", ""), ("WORLD_SIZE", " ")])).unwrap_err();
        assert!(
            matches!(
                &err,
                BootstrapError::MissingVariables { launcher: None, .. }
            ),
            "{err}"
        );
        assert!(LaunchEnv::new(0, 0, "h", 1).is_err());
        assert!(LaunchEnv::new(2, 2, "h", 1).is_err());
        assert!(LaunchEnv::new(0, 2, " ", 1).is_err());
        assert!(LaunchEnv::new(0, 2, "h", 0).is_err());
        assert!(LaunchEnv::new(0, MAX_WORLD_SIZE + 1, "h", 1).is_err());
        let err = LaunchEnv::from_lookup(lookup(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "99999999999"),
            ("MASTER_ADDR", "h"),
        ]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                BootstrapError::InvalidNumber {
                    var: "WORLD_SIZE",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn ipv6_endpoint() {
        let e = LaunchEnv::new(0, 2, "[::1]", 7).unwrap();
        assert_eq!(e.endpoint(), "[::1]:7");
        assert_eq!(e.host(), "::1");
    }

    #[test]
    fn tag_hash_is_stable() {
        assert_eq!(tag_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(tag_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(tag_hash("nccl-unique-id"), tag_hash("nccl-unique-id2"));
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn world_of_one_needs_no_network() {
        let e = LaunchEnv::new(0, 1, "127.0.0.1", 1).unwrap();
        assert_eq!(
            exchange_unique_id(&e, || [7; 128], Duration::from_millis(1)).unwrap(),
            [7; 128]
        );
        assert_eq!(
            all_gather_bytes(&e, "t", b"x", Duration::from_millis(1)).unwrap(),
            vec![b"x".to_vec()]
        );
    }

    #[test]
    fn threads_all_gather_with_stray_connections() {
        let port = free_port();
        let n = 4;
        let handles: Vec<_> = (0..n)
            .map(|r| {
                std::thread::spawn(move || {
                    if r == n - 1 {
                        // The last rank comes late, so the strays below reach a waiting rank 0.
                        std::thread::sleep(Duration::from_millis(800));
                    }
                    let e = LaunchEnv::new(r, n, "127.0.0.1", port).unwrap();
                    all_gather_bytes(
                        &e,
                        "test",
                        format!("rank{r}").as_bytes(),
                        Duration::from_secs(10),
                    )
                })
            })
            .collect();
        // Strays while rank 0 waits: garbage, a silent connection, another exchange's tag.
        let connect = || {
            let t0 = Instant::now();
            loop {
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(s) => return s,
                    Err(_) if t0.elapsed() < Duration::from_secs(5) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("rank 0 never listened: {e}"),
                }
            }
        };
        let mut junk = connect();
        let _ = junk.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _silent = connect();
        let mut other = connect();
        let _ = other.write_all(&encode_hello(tag_hash("other"), 1, n as u32, b""));
        for h in handles {
            let all = h.join().unwrap().unwrap();
            let want: Vec<Vec<u8>> = (0..n).map(|r| format!("rank{r}").into_bytes()).collect();
            assert_eq!(all, want);
        }
        // The other exchange's peer was told why.
        let mut buf = [0u8; 12];
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        other.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..4], &MAGIC);
        assert_eq!(
            u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]),
            STATUS_REFUSED
        );
    }

    #[test]
    fn inconsistent_world_size_fails_fast() {
        let port = free_port();
        let root = std::thread::spawn(move || {
            let e = LaunchEnv::new(0, 3, "127.0.0.1", port).unwrap();
            exchange_unique_id(&e, || [1; 128], Duration::from_secs(20))
        });
        let t0 = Instant::now();
        let e = LaunchEnv::new(1, 2, "127.0.0.1", port).unwrap();
        let err = exchange_unique_id(&e, || [9; 128], Duration::from_secs(20)).unwrap_err();
        assert!(matches!(err, BootstrapError::Refused { .. }), "{err}");
        let root_err = root.join().unwrap().unwrap_err();
        assert!(
            matches!(root_err, BootstrapError::Protocol { .. }),
            "{root_err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}
