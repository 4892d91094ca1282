//! The one rank-thread runner both backends launch through: spawn one thread per rank, start
//! the rank on it, run the user's closure, release the peers when a rank fails, and collect the
//! results in rank order.
//!
//! What a backend supplies is a [`RankStarter`]: how to start a rank on its thread and how to
//! release every rank of the launch (the host backend's abort flag, the CUDA backend's registry
//! of NCCL communicators and its start-up gate). Everything else (the `world_size` check, thread
//! names, panic catching, a failed spawn, result order) is written once, here.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::config::RankConfig;
use crate::error::{Error, Result};
use crate::rank::context::RankContext;

/// How one backend starts the ranks of a launch.
pub(crate) trait RankStarter: Sync {
    /// The name of rank `rank`'s thread (`symmem-rank-0`, `symmem-gpu-0`).
    fn thread_name(&self, rank: usize) -> String;
    /// Start rank `rank` on the calling thread and install its context there.
    fn start(&self, rank: usize, cfg: RankConfig) -> Result<RankContext>;
    /// Release every rank of the launch that waits for a peer (in start-up or a collective):
    /// their waits fail with `why` instead of hanging.
    fn abort_all(&self, why: &str);
    /// A rank's thread could not be spawned: release ranks waiting for it at start-up.
    fn spawn_failed(&self) {}
    /// Rank `rank` returned from its closure: collectives that still need it must fail at once
    /// instead of waiting for the timeout (backends that can tell do; groups without the rank
    /// are unaffected).
    fn depart(&self, rank: usize, why: &str) {
        let _ = (rank, why);
    }
}

/// `Err` unless `world_size` is at least 1 (`op` names the entry point in the error).
pub(crate) fn check_world_size(op: &'static str, world_size: usize) -> Result<()> {
    if world_size == 0 {
        return Err(Error::InvalidArgument {
            op,
            detail: "world_size must be at least 1".into(),
        });
    }
    Ok(())
}

/// Run `f` on `world_size` rank threads started by `starter`, and collect what each returns.
///
/// A rank that fails to start or panics releases its peers (`abort_all`); a panic is resumed
/// here after every thread has finished; otherwise the first error (in rank order) is returned.
/// A thread that cannot be spawned is an error, never a panic: the ranks already running are
/// released and joined first.
pub(crate) fn run_ranks<R, F, S>(
    op: &'static str,
    world_size: usize,
    cfg: &RankConfig,
    starter: &S,
    f: F,
) -> Result<Vec<R>>
where
    R: Send,
    F: Fn(&RankContext) -> R + Send + Sync,
    S: RankStarter,
{
    check_world_size(op, world_size)?;
    let f = &f;
    let outcomes: Vec<std::thread::Result<Result<R>>> = std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(world_size);
        let mut spawn_err = None;
        for r in 0..world_size {
            let cfg = cfg.clone();
            let h = std::thread::Builder::new()
                .name(starter.thread_name(r))
                .spawn_scoped(s, move || {
                    let ctx = match starter.start(r, cfg) {
                        Ok(c) => c,
                        Err(e) => {
                            starter.abort_all(&format!("rank {r} failed to start: {e}"));
                            return Ok(Err(e));
                        }
                    };
                    let out = catch_unwind(AssertUnwindSafe(|| f(&ctx)));
                    match &out {
                        Err(_) => starter.abort_all(&format!("rank {r} panicked")),
                        Ok(_) => starter.depart(r, &format!("rank {r} returned from its closure")),
                    }
                    drop(ctx);
                    out.map(Ok)
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let why = format!("could not spawn the thread of rank {r}: {e}");
                    starter.spawn_failed();
                    starter.abort_all(&why);
                    spawn_err = Some(Error::BackendUnavailable(why));
                    break;
                }
            }
        }
        let mut out: Vec<std::thread::Result<Result<R>>> = handles
            .into_iter()
            .map(|h| h.join().and_then(|r| r))
            .collect();
        if let Some(e) = spawn_err {
            out.insert(0, Ok(Err(e)));
        }
        out
    });
    let mut results = Vec::with_capacity(world_size);
    let mut first_err = None;
    for o in outcomes {
        match o {
            Err(panic) => resume_unwind(panic),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Ok(Ok(v)) => results.push(v),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(results),
    }
}
