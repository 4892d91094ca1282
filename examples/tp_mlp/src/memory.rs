//! Memory the run needs, checked against what the machine has before anything is allocated.
//!
//! A size that does not fit would otherwise be found out late: on Linux the generator's and
//! the allocator's pages are only committed when touched, so the process is killed by the
//! kernel's out-of-memory killer without a message. [`Estimate::new`] computes the bytes from
//! the configuration alone (weights per rank, the live activations of the largest token count,
//! the graph's buffers, the copy-bandwidth probe, the weight staging on the host and the f64
//! reference); [`check`] compares them with the free memory of each GPU (CUDA) and with the
//! host's available memory (`MemAvailable` of `/proc/meminfo`, lowered to the cgroup's limit
//! when there is one). Where the available memory is unknown, that side is not checked.
//!
//! The estimate is what the example allocates, not an exact account of the allocators'
//! rounding or of NCCL's buffers (a fixed reserve stands for those on CUDA); `--no-memory-check`
//! skips the check when it is wrong for a machine.

use std::fmt;

use crate::config::{Backend, Config, Dtype};
use crate::model::{CUDA_PROBE_COPY_BYTES, HOST_PROBE_COPY_BYTES};

/// Bytes one GiB holds.
pub const GIB: u64 = 1 << 30;
/// Bytes one MiB holds.
pub const MIB: u64 = 1 << 20;

/// Device bytes per CUDA rank for what the example does not allocate itself: NCCL's
/// communicator buffers, the symmetric pool's segment rounding and the CUDA libraries' own
/// allocations.
pub const CUDA_RESERVE: u64 = GIB;

/// Device bytes per CUDA rank of the cuBLAS and cuBLASLt workspaces (32 MiB each) and the
/// skinny kernels' split-K workspace ([`crate::skinny::WORKSPACE_BYTES`], 16 MiB and 64 KiB).
pub const CUDA_WORKSPACES: u64 = 64 * MIB + crate::skinny::WORKSPACE_BYTES as u64;

/// `bytes` for people: `812 B`, `3.5 KiB`, `64.0 MiB`, `1.50 GiB`, `2794.2 GiB`.
pub fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < MIB {
        format!("{:.1} KiB", b / 1024.0)
    } else if bytes < GIB {
        format!("{:.1} MiB", b / MIB as f64)
    } else if bytes < 100 * GIB {
        format!("{:.2} GiB", b / GIB as f64)
    } else {
        format!("{:.1} GiB", b / GIB as f64)
    }
}

/// `a * b * ...` without overflow (saturating at `u64::MAX`).
fn mul(factors: &[usize]) -> u64 {
    factors
        .iter()
        .fold(1u64, |acc, &f| acc.saturating_mul(f as u64))
}

/// The bytes a run needs, by what they hold. Per-rank figures hold for every rank (the shards
/// are equal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Backend the figures are for.
    pub backend: Backend,
    /// Ranks.
    pub tp: usize,
    /// Weights of one rank (every layer's shards), in the storage type.
    pub weights_per_rank: u64,
    /// Activations of one rank at the largest token count: the input, one step's
    /// intermediates and output, the all-reduce and GEMM timing buffers, and with `--graph` the
    /// captured step's buffers and symmetric reserve.
    pub activations_per_rank: u64,
    /// The copy-bandwidth probe (two buffers) and, on CUDA, the GEMM workspaces and a reserve
    /// for NCCL and the CUDA libraries.
    pub fixed_per_rank: u64,
    /// Host memory of one rank on top of its weights while it builds them: one layer's
    /// shards generated on the host before the upload (gate, up, packed gate-and-up and down:
    /// 5 shard matrices on CUDA; 3 more than the weights already counted on the host backend,
    /// whose uploaded weights are host memory).
    pub staging_per_rank: u64,
    /// Host memory of one rank's host-side copies: the input, the eager output, and on rank 0
    /// the checked rows in f64.
    pub host_io_per_rank: u64,
    /// Host memory of the f64 reference (computed after the ranks finished).
    pub reference: u64,
}

impl Estimate {
    /// The estimate for `cfg` on `backend` with `tp` ranks, the reference covering `ref_rows`
    /// token rows (0: no reference). Needs no allocation and no device.
    pub fn new(cfg: &Config, backend: Backend, tp: usize, ref_rows: usize) -> Estimate {
        let tp = tp.max(1);
        let e = cfg.dtype.size();
        let (h, s, l) = (cfg.hidden, cfg.ffn / tp, cfg.layers);
        let t = cfg.tokens.iter().copied().max().unwrap_or(1);
        let weights_per_rank = mul(&[3, h, s, l, e]);
        // Live at the peak of a step: x, the layer input, gate-and-up (2s), h (s), the down
        // output, the residual output (4h + 3s per row), and the timing buffers (one more h).
        let mut activations_per_rank = mul(&[t, e]).saturating_mul(5 * h as u64 + 3 * s as u64);
        if cfg.graph {
            // Graph-owned intermediates of every layer, plus the symmetric reserve.
            activations_per_rank = activations_per_rank
                .saturating_add(mul(&[l, t, e]).saturating_mul(3 * s as u64 + 3 * h as u64));
        }
        if backend == Backend::Host && cfg.dtype != Dtype::F32 {
            // The host GEMM widens its operands to f32 copies (the weight included).
            activations_per_rank = activations_per_rank
                .saturating_add(mul(&[4, 2 * h, s]))
                .saturating_add(mul(&[4, t, 3 * s + h]));
        }
        let fixed_per_rank = match backend {
            Backend::Host => 2 * HOST_PROBE_COPY_BYTES as u64,
            Backend::Cuda => 2 * CUDA_PROBE_COPY_BYTES as u64 + CUDA_WORKSPACES + CUDA_RESERVE,
        };
        let staging_per_rank = match backend {
            Backend::Host => mul(&[3, h, s, e]),
            Backend::Cuda => mul(&[5, h, s, e]),
        };
        let host_io_per_rank = mul(&[2, t, h, e]).saturating_add(mul(&[ref_rows, h, 8]));
        // x, gate-and-up with its per-thread parts (4 ffn), h (ffn) and the down output with
        // its parts (2 hidden), per row, in f64.
        let reference = if ref_rows == 0 {
            0
        } else {
            mul(&[ref_rows, 8]).saturating_mul(3 * h as u64 + 5 * cfg.ffn as u64)
        };
        Estimate {
            backend,
            tp,
            weights_per_rank,
            activations_per_rank,
            fixed_per_rank,
            staging_per_rank,
            host_io_per_rank,
            reference,
        }
    }

    /// Device bytes one rank needs (on the host backend: host bytes, ranks are threads).
    pub fn device_per_rank(&self) -> u64 {
        self.weights_per_rank
            .saturating_add(self.activations_per_rank)
            .saturating_add(self.fixed_per_rank)
    }

    /// Host bytes of the whole process at its peak: while the ranks run (on the host backend
    /// their device memory is host memory), or while the reference is computed afterwards.
    pub fn host_total(&self) -> u64 {
        let host_side = self.staging_per_rank.saturating_add(self.host_io_per_rank);
        let per_rank = match self.backend {
            Backend::Host => self.device_per_rank().saturating_add(host_side),
            Backend::Cuda => host_side,
        };
        let ranks = per_rank.saturating_mul(self.tp as u64);
        ranks.max(self.reference)
    }

    /// Lines that say where the bytes go (for the error's details).
    fn breakdown(&self) -> Vec<String> {
        let per = |what: &str, b: u64| {
            format!(
                "{what:<24} {:>11} per rank x {} rank(s)",
                fmt_bytes(b),
                self.tp
            )
        };
        let mut lines = vec![
            per("weights", self.weights_per_rank),
            per("activations", self.activations_per_rank),
            per(
                match self.backend {
                    Backend::Host => "copy probe",
                    Backend::Cuda => "copy probe, workspaces,",
                },
                self.fixed_per_rank,
            ),
        ];
        if self.backend == Backend::Cuda {
            lines.push("  (and 1 GiB reserved for NCCL and the CUDA libraries)".into());
        }
        lines.push(per("host weight staging", self.staging_per_rank));
        lines.push(per("host input/output copies", self.host_io_per_rank));
        if self.reference > 0 {
            lines.push(format!(
                "{:<24} {:>11} on the host, after the run",
                "f64 reference",
                fmt_bytes(self.reference)
            ));
        }
        lines
    }
}

/// Memory available to the run, where known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Available {
    /// Host bytes available (`None`: unknown, not checked).
    pub host: Option<u64>,
    /// Free bytes of each rank's GPU, in rank order (empty: not checked).
    pub gpus: Vec<u64>,
}

/// A run that does not fit: the verdict with the fix, then the details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryError {
    /// First line: what does not fit, the GiB needed and available, and what to change.
    pub verdict: String,
    /// Where the bytes go.
    pub details: Vec<String>,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.verdict)?;
        for d in &self.details {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MemoryError {}

/// What to change when the sizes do not fit.
fn fix(backend: Backend, what: &str) -> String {
    let tp = match backend {
        Backend::Host => "",
        Backend::Cuda => ", or raise --tp to shard the weights over more GPUs",
    };
    let reference = if what == "reference" {
        "lower --check-rows or pass --no-check"
    } else {
        "lower --hidden, --ffn, --layers or --tokens"
    };
    format!("{reference}{tp} (--no-memory-check skips this check)")
}

/// Compare `need` with `avail`: `Err` names the memory that is short, the bytes needed and
/// available, and the fix.
pub fn check(need: &Estimate, avail: &Available) -> Result<(), MemoryError> {
    let details = need.breakdown();
    if need.backend == Backend::Cuda {
        let per_rank = need.device_per_rank();
        if let Some((gpu, &free)) = avail
            .gpus
            .iter()
            .enumerate()
            .filter(|(_, &free)| free < per_rank)
            .min_by_key(|(_, &free)| free)
        {
            return Err(MemoryError {
                verdict: format!(
                    "the model does not fit on GPU {gpu}: each rank needs about {} of device memory and {} {} free; {}",
                    fmt_bytes(per_rank),
                    fmt_bytes(free),
                    if avail.gpus.len() == 1 { "is" } else { "is the least" },
                    fix(need.backend, "device")
                ),
                details,
            });
        }
    }
    if let Some(host) = avail.host {
        let total = need.host_total();
        if total > host {
            let what = if need.reference > 0 && need.reference == total {
                "reference"
            } else {
                "model"
            };
            let whose = match need.backend {
                Backend::Host => format!(
                    "the host backend keeps every rank's data in host memory: {} ranks",
                    need.tp
                ),
                Backend::Cuda => "the weights are generated on the host".to_string(),
            };
            return Err(MemoryError {
                verdict: format!(
                    "the {what} does not fit in host memory: the run needs about {} and {} are available; {}",
                    fmt_bytes(total),
                    fmt_bytes(host),
                    fix(need.backend, what)
                ),
                details: std::iter::once(format!("({whose})"))
                    .chain(details)
                    .collect(),
            });
        }
    }
    Ok(())
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line["MemAvailable:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// A cgroup v2 `memory.max` and `memory.current` pair: the bytes left under the limit
/// (`None` when there is no limit, `max`).
pub fn parse_cgroup_left(max: &str, current: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    let current: u64 = current.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// The bytes left under this process's cgroup v2 memory limit, if it has one.
fn cgroup_left() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let mut dirs = vec![format!("/sys/fs/cgroup{rel}")];
    if rel != "/" {
        // With a cgroup namespace, the process's cgroup is the mount's root.
        dirs.push("/sys/fs/cgroup".into());
    }
    dirs.into_iter().find_map(|d| {
        let max = std::fs::read_to_string(format!("{d}/memory.max")).ok()?;
        let cur = std::fs::read_to_string(format!("{d}/memory.current")).ok()?;
        parse_cgroup_left(&max, &cur)
    })
}

/// Host bytes available to this process: `MemAvailable`, lowered to what its cgroup's limit
/// leaves; `None` where neither is known (not Linux).
pub fn host_available() -> Option<u64> {
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo(&t));
    match (mem, cgroup_left()) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// Free device bytes of GPUs `0..tp` (rank `r` runs on GPU `r`), and their primary contexts:
/// keep them until the ranks have started, so that the ranks reuse the contexts instead of
/// creating them again.
#[cfg(feature = "cuda")]
pub fn gpu_free(
    tp: usize,
) -> Result<(Vec<u64>, Vec<std::sync::Arc<cudarc::driver::CudaContext>>), String> {
    let mut free = Vec::with_capacity(tp);
    let mut contexts = Vec::with_capacity(tp);
    for gpu in 0..tp {
        let ctx = cudarc::driver::CudaContext::new(gpu)
            .map_err(|e| format!("GPU {gpu}: cuDevicePrimaryCtxRetain failed: {e:?}"))?;
        let (f, _total) = ctx
            .mem_get_info()
            .map_err(|e| format!("GPU {gpu}: cuMemGetInfo failed: {e:?}"))?;
        free.push(f as u64);
        contexts.push(ctx);
    }
    Ok((free, contexts))
}
