//! Graph capture: record a closure's device work once, replay it many times.
//!
//! [`capture()`] records the work the closure puts on the current rank's stream (CUDA:
//! `cuStreamBeginCapture` in thread-local mode; host backend: the stream records closures)
//! and returns a [`Graph`]. While it runs:
//!
//! * allocations outside any window come from a **capture-private pool owned by the graph**
//!   (no "graph pool id" to manage by hand);
//! * entering a window for a group suspends that and routes to the group's symmetric pool in
//!   *capture mode*: blocks come only from capacity reserved before capture (no segment is
//!   created and no window registered during capture: that is a collective). Requests beyond the
//!   reserve are served by plain stand-ins so that the capture runs to its end, and the capture
//!   then fails with [`Error::CaptureReserveExceeded`], naming the bytes to pass to
//!   [`crate::Group::reserve_symmetric`] for the next try to succeed;
//! * the window's end resumes the capture-private routing.
//!
//! Every block allocated during capture belongs to the graph: freed inside the capture it is
//! reused only by later allocations of the same capture (stream order makes that safe, as in
//! PyTorch's private pools), and it returns to its pool only when the graph and every buffer
//! from it are gone. Because blocks are claimed by the pools' deterministic policy from the same
//! request sequence, a captured symmetric buffer sits at the same window offset on every rank.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::backend::traits::GraphBackend;
use crate::error::{Error, Result};
use crate::pool::graph::{CaptureBlocks, KeptBlock};
use crate::thread::THREAD;

pub use crate::pool::graph_arena::GraphArena;
pub use crate::thread::is_capturing;

/// A captured graph: replay it with [`Graph::replay`]. It owns the blocks allocated during
/// capture, so buffers used by the recorded work stay valid while the graph lives.
pub struct Graph {
    exec: Box<dyn GraphBackend>,
    arenas: Vec<Arc<GraphArena>>,
    /// Eager blocks the recorded work uses (released after `exec` is dropped: field order).
    /// Held only for its `Drop`.
    #[allow(dead_code)]
    pins: Vec<KeptBlock>,
    rank_id: u64,
    replays: u64,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("arenas", &self.arenas)
            .field("replays", &self.replays)
            .finish()
    }
}

impl Graph {
    /// Launch the recorded work once, on the stream it was captured on.
    ///
    /// Every rank of the groups used in the graph must replay it too (the recorded collectives
    /// wait for their peers).
    pub fn replay(&mut self) -> Result<()> {
        if is_capturing() {
            return Err(Error::NotAllowedDuringCapture {
                op: "Graph::replay",
                why: "replaying a graph inside another capture is not supported",
                fix: "replay the graph outside the capture closure",
            });
        }
        match crate::rank::current::current_rank_id() {
            None => return Err(Error::NoRankContext),
            Some(rank) if rank != self.rank_id => {
                return Err(Error::Graph(
                    "this graph was captured on another rank's stream; replay it on the rank (thread) that captured it".into(),
                ));
            }
            Some(_) => {}
        }
        self.exec.launch()?;
        self.replays += 1;
        Ok(())
    }

    /// How many times the graph was replayed.
    pub fn replays(&self) -> u64 {
        self.replays
    }

    /// Bytes the graph holds in each pool it allocated from, as `(pool label, bytes)`.
    pub fn memory(&self) -> Vec<(String, usize)> {
        self.arenas
            .iter()
            .map(|a| (a.pool_label().to_string(), a.claimed_bytes()))
            .collect()
    }
}

/// Points the thread's capture pointer at a capture's blocks, and clears it however the closure
/// ends (return, error or panic): the pointer never outlives the frame that owns the blocks.
struct CaptureScope<'a>(&'a CaptureBlocks);

impl<'a> CaptureScope<'a> {
    fn enter(blocks: &'a CaptureBlocks) -> Self {
        THREAD.with(|t| t.capture.set(blocks as *const CaptureBlocks as *const ()));
        CaptureScope(blocks)
    }
}

impl Drop for CaptureScope<'_> {
    fn drop(&mut self) {
        THREAD.with(|t| {
            if std::ptr::eq(t.capture.get(), self.0 as *const CaptureBlocks as *const ()) {
                t.capture.set(std::ptr::null());
            }
        });
    }
}

/// Capture the device work of `f` on the current rank's stream into a [`Graph`].
///
/// Returns the graph and the closure's value (for example output buffers, which stay valid:
/// their blocks belong to the graph). If `f` fails or panics, the capture is aborted and
/// nothing is leaked: the blocks it allocated return to their pools.
///
/// Operations that block the host or set up collectives are refused inside `f` with
/// [`Error::NotAllowedDuringCapture`]. Call [`crate::Group::reserve_symmetric`] before capture for the
/// symmetric memory the closure will allocate.
pub fn capture<R>(f: impl FnOnce() -> Result<R>) -> Result<(Graph, R)> {
    if is_capturing() {
        return Err(Error::NotAllowedDuringCapture {
            op: "capture",
            why: "a capture is already running on this thread",
            fix: "finish the outer capture first; captures do not nest",
        });
    }
    let rank = crate::rank::current::current_rank()?;
    let stream = rank.stream().clone();
    stream.synchronize()?;
    stream.begin_capture()?;
    let blocks = CaptureBlocks::new(rank.default_pool().clone());
    let result = {
        let _range = crate::diag::NvtxRange::push("capture", "");
        let _scope = CaptureScope::enter(&blocks);
        catch_unwind(AssertUnwindSafe(f))
    };
    let shortfall = blocks.shortfall();
    let (arenas, pins) = blocks.into_parts();
    let result = match (result, shortfall) {
        // A symmetric request exceeded the reserve: the capture fails with what it needs,
        // whatever the closure returned (its stand-in buffers were plain).
        (Ok(_), Some(e)) => Ok(Err(e)),
        (result, _) => result,
    };
    match result {
        Err(panic) => {
            stream.abort_capture();
            drop(pins);
            drop(arenas);
            resume_unwind(panic)
        }
        Ok(Err(e)) => {
            stream.abort_capture();
            Err(e)
        }
        Ok(Ok(value)) => {
            let exec = stream.end_capture()?;
            Ok((
                Graph {
                    exec,
                    arenas,
                    pins,
                    rank_id: rank.id(),
                    replays: 0,
                },
                value,
            ))
        }
    }
}

/// [`capture`] for a closure with its own error type `E` (cudarc's, candle's, `anyhow`'s, or
/// your own), into which a [`symmem::Error`](Error) converts: `f`'s error is returned as it is,
/// symmem's own (a refused capture, a failed instantiation) converted with `E::from`.
///
/// `capture` itself keeps `symmem::Result`, so that `symmem::capture(|| { ..; Ok(()) })?` needs
/// no type annotation.
pub fn capture_with_error<R, E: From<Error>>(
    f: impl FnOnce() -> std::result::Result<R, E>,
) -> std::result::Result<(Graph, R), E> {
    let mut theirs: Option<E> = None;
    let out = capture(|| match f() {
        Ok(v) => Ok(v),
        Err(e) => {
            theirs = Some(e);
            // Ends the capture like any failure of the closure; replaced by `e` below.
            Err(Error::Unsupported {
                backend: "capture",
                what: "(the closure's own error)".into(),
            })
        }
    });
    match (out, theirs) {
        (_, Some(e)) => Err(e),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(E::from(e)),
    }
}
