//! Launching ranks: backend selection at run time, and the launchers of both backends.
//!
//! [`run`] starts `world_size` ranks as threads of this process, on the backend a
//! [`BackendChoice`] asks for:
//!
//! * [`BackendChoice::Host`]: the host backend ([`crate::host`]), always available;
//! * [`BackendChoice::Cuda`]: one GPU per rank through CUDA and NCCL (`symmem::cuda`); fails
//!   with [`Error::BackendUnavailable`](crate::Error::BackendUnavailable) (never a panic) when the libraries or enough GPUs are
//!   missing, or when symmem was built without the `cuda` feature;
//! * [`BackendChoice::Auto`]: CUDA when [`detect`] finds libcuda, libnccl and at least
//!   `world_size` GPUs, the host backend otherwise (saying why once on stderr).
//!
//! [`BackendChoice::from_env`] reads `SYMMEM_BACKEND=auto|host|cuda`.
//!
//! ```
//! use symmem_runtime::launch::{run, BackendChoice};
//! use symmem_runtime::{RankConfig, ReduceOp};
//!
//! let sums = run(BackendChoice::Host, 2, RankConfig::default(), |ctx| {
//!     let mut x = symmem_runtime::alloc_from_host(&[ctx.rank() as f32 + 1.0; 4]).unwrap();
//!     ctx.world().all_reduce(&mut x, ReduceOp::Sum).unwrap();
//!     x.to_host_vec().unwrap()
//! })
//! .unwrap();
//! assert_eq!(sums[0], vec![3.0; 4]);
//! ```

//! The launchers sit above the rank layer: [`host`](crate::host::run) and `cuda`
//! (`run_threads`, `init_rank`, `init_from_env`) start ranks through one runner
//! (`threads::run_ranks`), so that the start-up, abort and result-collection rules are written
//! once.

#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub(crate) mod host;
pub(crate) mod threads;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::traits::BackendKind;
use crate::config::RankConfig;
#[cfg(not(feature = "cuda"))]
use crate::error::Error;
use crate::error::Result;
use crate::launch::host::HostConfig;
use crate::launch::threads::check_world_size;
use crate::rank::context::RankContext;

pub use crate::backend::report::{BackendChoice, BackendReport};

/// Look for CUDA, NCCL and GPUs without risking a panic (libraries are probed before any call
/// into them). Cheap after the first call of a process.
pub fn detect() -> BackendReport {
    #[cfg(feature = "cuda")]
    {
        crate::backend::cuda::availability::detect_report()
    }
    #[cfg(not(feature = "cuda"))]
    {
        BackendReport {
            unavailable: Some("symmem was built without the `cuda` feature".into()),
            ..BackendReport::default()
        }
    }
}

static LOGGED_AUTO: AtomicBool = AtomicBool::new(false);

/// Run `f` on `world_size` rank threads on the backend `choice` selects, and collect what each
/// returns (in rank order).
///
/// Each thread gets a [`RankContext`] with a group `"world"` of all ranks. On CUDA, rank `r`
/// uses GPU `r`. A panic in a rank is resumed here after every rank finished (peers blocked in
/// collectives are released: host waits abort, NCCL communicators are aborted).
///
/// Errors: `world_size == 0`, [`Error::BackendUnavailable`](crate::Error::BackendUnavailable) when `choice` is
/// [`BackendChoice::Cuda`] and CUDA cannot run `world_size` ranks, and start-up failures.
pub fn run<R, F>(choice: BackendChoice, world_size: usize, cfg: RankConfig, f: F) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(&RankContext) -> R + Send + Sync,
{
    check_world_size("launch::run", world_size)?;
    let kind = match choice {
        BackendChoice::Host => BackendKind::Host,
        _ => {
            let report = detect();
            let kind = report.choose(choice, world_size)?;
            if choice == BackendChoice::Auto
                && kind == BackendKind::Host
                && !LOGGED_AUTO.swap(true, Ordering::Relaxed)
            {
                crate::diag::info(format_args!(
                    "backend auto -> host: {}",
                    report
                        .why_not_cuda(world_size)
                        .unwrap_or_else(|| "CUDA unavailable".into())
                ));
            }
            kind
        }
    };
    match kind {
        BackendKind::Host => crate::launch::host::run_with(
            HostConfig {
                world_size,
                rank: cfg,
            },
            f,
        ),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => crate::launch::cuda::run_threads(world_size, cfg, f),
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => Err(Error::BackendUnavailable(
            "symmem was built without the `cuda` feature".into(),
        )),
    }
}
