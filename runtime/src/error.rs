//! The error type of symmem: every failure names what went wrong and what to do about it.

use std::sync::Arc;

/// Result alias used throughout symmem.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in symmem.
///
/// Each variant's message says what happened and, where there is one, what to do next.
/// The catalogue with examples is in `docs/errors.md`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No rank context is installed on the calling thread.
    #[error("symmem: no rank context on this thread: call `symmem::host::run` (host backend), `symmem::cuda::init_*` (CUDA), or `RankContext::install` on this thread before using groups or allocating")]
    NoRankContext,

    /// A rank context is already installed on the calling thread.
    #[error("symmem: a rank context is already installed on this thread (rank {rank}); a thread acts as one rank: drop the existing `RankContext` first")]
    RankContextAlreadyInstalled {
        /// Rank of the context already installed.
        rank: usize,
    },

    /// The named group does not exist on this rank.
    #[error("symmem: no group named `{name}` on this rank (groups here: {known}); create it with `RankContext::split_group` or check the name in `#[symmetric_memory(group = ...)]`")]
    GroupNotFound {
        /// The name that was looked up.
        name: String,
        /// Names of the groups that do exist, comma separated.
        known: String,
    },

    /// A group name is not acceptable.
    #[error("symmem: invalid group name {name:?}: {why}; group names are non-empty identifiers like `tp` or `dp_0`")]
    InvalidGroupName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },

    /// A group of that name already exists on this rank.
    #[error("symmem: a group named `{name}` already exists on this rank; pick another name")]
    DuplicateGroup {
        /// The duplicated name.
        name: String,
    },

    /// An operation that cannot be captured into a graph was called during capture.
    #[error("symmem: `{op}` is not allowed during graph capture: {why}; {fix}")]
    NotAllowedDuringCapture {
        /// The refused operation.
        op: &'static str,
        /// Why it is refused.
        why: &'static str,
        /// What to do instead.
        fix: &'static str,
    },

    /// A symmetric allocation during capture does not fit in the capacity reserved before capture.
    #[error("symmem: cannot allocate {} from group `{group}`'s symmetric pool during graph capture: only {} (largest free block) are reserved and no segment may be created during capture (that is a collective); call `group.reserve_symmetric({reserve})` for group `{group}` before capture", size(*.requested), size(*.available))]
    CaptureReserveExceeded {
        /// The group whose pool is exhausted.
        group: Arc<str>,
        /// Bytes requested (after rounding to the pool's alignment).
        requested: usize,
        /// Largest free block available in the pool.
        available: usize,
        /// Bytes to reserve before capture so that this allocation fits.
        reserve: usize,
    },

    /// The pool could not obtain more memory.
    #[error("symmem: pool `{pool}` is out of memory allocating {}, with {} reserved and {} in use: free buffers or call `empty_cache()`, then retry; the pool stays usable. Cause: {source}", size(*.requested), size(*.reserved), size(*.in_use))]
    OutOfMemory {
        /// Pool description (group name or `default`).
        pool: String,
        /// Bytes requested.
        requested: usize,
        /// Bytes reserved by the pool when the request failed.
        reserved: usize,
        /// Bytes in use when the request failed.
        in_use: usize,
        /// The backend's error.
        #[source]
        source: Box<Error>,
    },

    /// A pool was configured with a capacity limit that the request would exceed.
    #[error("symmem: pool `{pool}` would exceed its limit of {}, with {} reserved, to serve {}; free buffers, call `empty_cache()`, or raise the limit", size(*.limit), size(*.reserved), size(*.requested))]
    PoolLimit {
        /// Pool description.
        pool: String,
        /// Bytes requested.
        requested: usize,
        /// Bytes reserved.
        reserved: usize,
        /// The limit.
        limit: usize,
    },

    /// Ranks disagreed about an operation they must perform together.
    #[error("symmem: ranks of group `{group}` diverged before {what}: {details}. Every rank must make the same allocations and collectives in the same order; fix the rank-dependent code path (validation mode caught this instead of a hang or silently wrong results)")]
    RankDivergence {
        /// Group in which the divergence was detected.
        group: String,
        /// The operation that was about to run.
        what: String,
        /// Per-rank values, e.g. `rank 0: all_reduce count=1024; rank 1: all_reduce count=2048`.
        details: String,
    },

    /// Peers did not arrive at a collective point in time.
    #[error("symmem: timed out after {seconds:.1}s waiting for the ranks of group `{group}` at {what} (arrived: {arrived} of {size}); a rank took a different code path, crashed or hangs. The launch is now unusable (its groups' peers are released with `Aborted`): start a new launch")]
    Timeout {
        /// Group name.
        group: String,
        /// What was waited for.
        what: String,
        /// Seconds waited.
        seconds: f64,
        /// How many ranks had arrived.
        arrived: usize,
        /// Group size.
        size: usize,
    },

    /// The communicator was aborted by an earlier failure.
    #[error("symmem: group `{group}` is unusable after an earlier failure ({cause}); start a new launch")]
    Aborted {
        /// Group name.
        group: String,
        /// The first failure.
        cause: String,
    },

    /// Buffer lengths do not fit the collective.
    #[error("symmem: {op}: {detail}")]
    LengthMismatch {
        /// The collective.
        op: &'static str,
        /// What was expected and what was found.
        detail: String,
    },

    /// A buffer belongs to another rank, device or backend than the operation.
    #[error("symmem: {op}: {detail}")]
    WrongDevice {
        /// The operation.
        op: &'static str,
        /// What mismatched.
        detail: String,
    },

    /// An argument is out of range.
    #[error("symmem: {op}: {detail}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong and what is allowed.
        detail: String,
    },

    /// The reduction is not defined for this element type.
    #[error("symmem: {op:?} is not supported for {dtype}; use Sum, Max or Min, or a floating-point type")]
    UnsupportedReduction {
        /// The reduction.
        op: crate::dtype::ReduceOp,
        /// The element type.
        dtype: crate::dtype::DType,
    },

    /// A window guard was used wrongly (only reachable through unsafe or `mem::forget` misuse).
    #[error("symmem: window misuse: {0}")]
    WindowMisuse(&'static str),

    /// A graph was replayed on another rank or thread than it was captured on.
    #[error("symmem: {0}")]
    Graph(String),

    /// An error from the CUDA driver.
    #[error("symmem: CUDA call `{call}` failed: {message}. {hint}")]
    Cuda {
        /// The driver call.
        call: &'static str,
        /// The driver's error text.
        message: String,
        /// What to check.
        hint: &'static str,
    },

    /// An error from NCCL.
    #[error("symmem: NCCL call `{call}` failed: {message}. {hint}")]
    Nccl {
        /// The NCCL call.
        call: &'static str,
        /// NCCL's error text.
        message: String,
        /// What to check.
        hint: &'static str,
    },

    /// The CUDA backend cannot be used on this machine.
    #[error("symmem: CUDA backend unavailable: {0}")]
    BackendUnavailable(String),

    /// The host backend could not allocate memory.
    #[error("symmem: the host backend could not allocate {} of host memory; free buffers or lower the sizes", size(*.bytes))]
    HostAlloc {
        /// Bytes requested.
        bytes: usize,
    },

    /// The backend does not implement this operation.
    #[error("symmem: the {backend} backend does not support {what}")]
    Unsupported {
        /// The backend.
        backend: &'static str,
        /// The missing operation.
        what: String,
    },

    /// An error of another library the caller used next to symmem (cuBLAS, NVRTC, candle, ...),
    /// carried so that one `?` chain can hold both; made with [`Error::external`]. The source
    /// is kept ([`std::error::Error::source`]).
    #[error("symmem: {what} failed: {source}")]
    External {
        /// What was being done ("cuBLAS gemm").
        what: String,
        /// The other library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// Wrap another library's error as [`Error::External`] (`what`: what was being done), e.g.
    /// `blas.gemm(..).map_err(|e| symmem::Error::external("cuBLAS gemm", e))?`.
    pub fn external(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::External {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// A byte count for a message: exact below 1 KiB, else in KiB/MiB/GiB/TiB with two decimals
/// and the exact count after it (`"1.50 GiB (1610612736 bytes)"`).
pub(crate) fn size(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn byte_counts_read_in_binary_units_with_the_exact_count() {
        assert_eq!(super::size(0), "0 bytes");
        assert_eq!(super::size(1023), "1023 bytes");
        assert_eq!(super::size(1024), "1.00 KiB (1024 bytes)");
        assert_eq!(super::size(3 << 19), "1.50 MiB (1572864 bytes)");
        assert_eq!(super::size(3 << 29), "1.50 GiB (1610612736 bytes)");
        assert_eq!(super::size(5 << 40), "5.00 TiB (5497558138880 bytes)");
        assert_eq!(super::size(usize::MAX).split(' ').nth(1), Some("TiB"));
    }
}
