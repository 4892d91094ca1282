//! The state the ranks of one host communicator share: the barrier every host collective
//! crosses, and the launch-wide abort and departure flags.
//!
//! **What a barrier guarantees.** Each rank arrives with a [`Step`]: its sequence number on the
//! communicator and what it is doing (the collective and phase, element type, count, root and
//! where its operand lies). A barrier completes only when every rank of the group arrived, each
//! once (a second thread acting as the same rank is refused, never counted), and then every rank
//! compares all the steps: if they differ, every rank returns the same
//! [`Error::RankDivergence`] and nobody touches a peer's memory. Peers' memory is read only
//! between two completed barriers, so a divergent program is detected before it can read out
//! of bounds.
//!
//! **Leaving early.** A rank that leaves a collective on a timeout, an abort or a panic first
//! raises the launch's abort flag (so every peer's wait ends) and then waits until no peer is
//! inside a collective of this communicator any more ([`HostShared::enter`]): until then a peer
//! may still be copying from this rank's buffer or scratch, which the caller may free as soon as
//! the call returns.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::dtype::{DType, ReduceOp};
use crate::error::{Error, Result};

/// Set when a rank of a launch fails; every wait of the launch then returns an error. Also
/// records the ranks (by world rank) that have left the launch.
#[derive(Default)]
pub(crate) struct AbortFlag {
    set: AtomicBool,
    cause: Mutex<Option<(String, Option<usize>)>>,
    any_departed: AtomicBool,
    departed: Mutex<Vec<(usize, String)>>,
}

impl AbortFlag {
    pub(crate) fn set(&self, cause: String) {
        self.set_by(cause, None)
    }
    pub(crate) fn set_by(&self, cause: String, rank: Option<usize>) {
        let mut c = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_none() {
            *c = Some((cause, rank));
        }
        self.set.store(true, Ordering::Release);
    }
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
    pub(crate) fn cause(&self) -> String {
        self.cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.0.clone())
            .unwrap_or_default()
    }

    /// World rank `rank` has left the launch (`why`: for example it returned from its closure).
    /// Collectives that need it fail at once from now on; groups without it are unaffected.
    pub(crate) fn depart(&self, rank: usize, why: String) {
        self.departed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((rank, why));
        self.any_departed.store(true, Ordering::Release);
    }

    /// Why world rank `rank` left, if it did.
    fn departure(&self, rank: usize) -> Option<String> {
        if !self.any_departed.load(Ordering::Acquire) {
            return None;
        }
        self.departed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(r, _)| *r == rank)
            .map(|(_, why)| why.clone())
    }
}

/// Where a rank's operand of a collective lies (part of its [`Step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// No operand (a barrier, an exchange).
    None,
    /// A plain buffer, found through the published address.
    Plain,
    /// A symmetric buffer: window and offset.
    Sym(u64, u64),
}

/// What a rank is doing when it arrives at a barrier; every rank's must be equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// The rank's count of collectives and exchanges on this communicator.
    pub(crate) seq: u64,
    /// The collective and its phase.
    pub(crate) what: &'static str,
    pub(crate) dtype: Option<DType>,
    pub(crate) op: Option<ReduceOp>,
    pub(crate) count: usize,
    pub(crate) root: usize,
    pub(crate) place: Place,
}

impl Step {
    /// A step without operand (barriers, exchanges).
    pub(crate) fn bare(seq: u64, what: &'static str) -> Step {
        Step {
            seq,
            what,
            dtype: None,
            op: None,
            count: 0,
            root: 0,
            place: Place::None,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("#{} {}", self.seq, self.what);
        if let Some(d) = self.dtype {
            s.push_str(&format!(" of {} x {d}", self.count));
        }
        if let Some(op) = self.op {
            s.push_str(&format!(" ({op:?})"));
        }
        if self.what.starts_with("broadcast") {
            s.push_str(&format!(" from root {}", self.root));
        }
        match self.place {
            Place::None => {}
            Place::Plain => s.push_str(", plain buffer"),
            Place::Sym(w, o) => s.push_str(&format!(", window {w} offset {o}")),
        }
        s
    }
}

struct BarrierState {
    arrived: usize,
    generation: u64,
    /// Which ranks arrived in the current generation.
    present: Vec<bool>,
    /// The steps of the current and the previous generation (a fast rank may already arrive
    /// at the next barrier while a slow one still compares this one's).
    steps: [Vec<Option<Step>>; 2],
}

/// State shared by the ranks of one host communicator.
pub(crate) struct HostShared {
    pub(crate) size: usize,
    pub(crate) abort: Arc<AbortFlag>,
    /// World rank of each member (for departures).
    members: Vec<usize>,
    state: Mutex<BarrierState>,
    cv: Condvar,
    /// Ranks inside a collective of this communicator right now.
    inside: AtomicUsize,
    /// Published operand addresses (first and second phase).
    pub(crate) slots: Vec<std::sync::atomic::AtomicU64>,
    pub(crate) slots2: Vec<std::sync::atomic::AtomicU64>,
    pub(crate) exchange: Mutex<Vec<Vec<u8>>>,
    pub(crate) split: Mutex<Vec<Option<Arc<HostShared>>>>,
}

impl HostShared {
    /// The world of a launch: members are world ranks `0..size`.
    pub(crate) fn new(size: usize, abort: Arc<AbortFlag>) -> Self {
        Self::with_members((0..size).collect(), abort)
    }

    /// A communicator of the given world ranks (in communicator-rank order).
    pub(crate) fn with_members(members: Vec<usize>, abort: Arc<AbortFlag>) -> Self {
        let size = members.len();
        HostShared {
            size,
            abort,
            members,
            state: Mutex::new(BarrierState {
                arrived: 0,
                generation: 0,
                present: vec![false; size],
                steps: [vec![None; size], vec![None; size]],
            }),
            cv: Condvar::new(),
            inside: AtomicUsize::new(0),
            slots: (0..size)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            slots2: (0..size)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            exchange: Mutex::new(vec![Vec::new(); size]),
            split: Mutex::new(vec![None; size]),
        }
    }

    /// World rank of communicator rank `rank`.
    pub(crate) fn world_rank(&self, rank: usize) -> usize {
        self.members.get(rank).copied().unwrap_or(rank)
    }

    fn aborted(&self, group: &str) -> Error {
        Error::Aborted {
            group: group.to_string(),
            cause: self.abort.cause(),
        }
    }

    /// The members that left the launch and have not arrived in this generation, as the
    /// cause of an [`Error::Aborted`] (`None` when every member is still there).
    fn departed_members(&self, group: &str, st: &BarrierState) -> Option<Error> {
        let gone: Vec<String> = (0..self.size)
            .filter(|&r| !st.present[r])
            .filter_map(|r| {
                let w = self.world_rank(r);
                self.abort
                    .departure(w)
                    .map(|why| format!("rank {w} left the launch ({why})"))
            })
            .collect();
        (!gone.is_empty()).then(|| Error::Aborted {
            group: group.to_string(),
            cause: format!(
                "{}; the collective needs every rank of the group",
                gone.join("; ")
            ),
        })
    }

    /// Wait for every rank, each arriving once with an equal `step`; bounded by `timeout`,
    /// ended by the launch's abort flag or a member's departure.
    pub(crate) fn barrier(
        &self,
        group: &str,
        rank: usize,
        step: Step,
        timeout: Duration,
    ) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.abort.is_set() {
            return Err(self.aborted(group));
        }
        if rank >= self.size {
            return Err(Error::InvalidArgument {
                op: "host collective",
                detail: format!("rank {rank} is not in a group of {}", self.size),
            });
        }
        if st.present[rank] {
            return Err(Error::WrongDevice {
                op: "host collective",
                detail: format!(
                    "rank {rank} of group `{group}` is already waiting at this collective on another thread; a rank is one thread: call collectives only from the thread the rank runs on"
                ),
            });
        }
        if let Some(e) = self.departed_members(group, &st) {
            return Err(e);
        }
        let gen = st.generation;
        let parity = (gen % 2) as usize;
        st.steps[parity][rank] = Some(step);
        st.present[rank] = true;
        st.arrived += 1;
        if st.arrived == self.size {
            st.arrived = 0;
            st.generation += 1;
            st.present.iter_mut().for_each(|p| *p = false);
            self.cv.notify_all();
            return self.compare(group, &st.steps[parity], rank);
        }
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let (s, _) = self
                .cv
                .wait_timeout(st, left.min(Duration::from_millis(20)))
                .unwrap_or_else(|e| e.into_inner());
            st = s;
            if st.generation != gen {
                return self.compare(group, &st.steps[parity], rank);
            }
            if self.abort.is_set() {
                return Err(self.aborted(group));
            }
            if let Some(e) = self.departed_members(group, &st) {
                st.present[rank] = false;
                st.arrived -= 1;
                return Err(e);
            }
            if start.elapsed() >= timeout {
                let err = Error::Timeout {
                    group: group.to_string(),
                    what: step.what.to_string(),
                    seconds: timeout.as_secs_f64(),
                    arrived: st.arrived,
                    size: self.size,
                };
                self.abort.set(format!("{err}"));
                self.cv.notify_all();
                return Err(err);
            }
        }
    }

    /// After a completed barrier: every rank's step must be this rank's.
    fn compare(&self, group: &str, steps: &[Option<Step>], rank: usize) -> Result<()> {
        let mine = steps[rank];
        if steps.iter().all(|s| *s == mine) {
            return Ok(());
        }
        let details = steps
            .iter()
            .enumerate()
            .map(|(r, s)| match s {
                Some(s) => format!("rank {r}: {}", s.describe()),
                None => format!("rank {r}: -"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::RankDivergence {
            group: group.to_string(),
            what: mine.map(|s| s.what).unwrap_or("a collective").to_string(),
            details,
        })
    }

    /// Enter a collective of this communicator; the guard's [`Inside::leave`] says how it ended.
    pub(crate) fn enter(self: &Arc<Self>) -> Inside {
        self.inside.fetch_add(1, Ordering::AcqRel);
        Inside {
            shared: self.clone(),
            left: false,
        }
    }
}

/// A rank inside a collective of one communicator (see the module docs).
pub(crate) struct Inside {
    shared: Arc<HostShared>,
    left: bool,
}

impl Inside {
    /// Leave after `result`. When the launch is aborted (a timeout, a failed or panicking
    /// rank), peers may still be inside, copying from this rank's memory: wait until every peer
    /// has left, so none still reads it when the caller frees it. Other failures (a divergence,
    /// a departed member) are seen by every rank at the same barrier, before any read of this
    /// collective's phase, and need no wait.
    pub(crate) fn leave(mut self, result: Result<()>) -> Result<()> {
        self.left = true;
        let wait = result.is_err() && self.shared.abort.is_set();
        self.exit(wait);
        result
    }

    fn exit(&self, wait: bool) {
        self.shared.inside.fetch_sub(1, Ordering::AcqRel);
        if !wait {
            return;
        }
        self.shared.cv.notify_all();
        // Peers end their waits within one poll interval once the flag is up; a peer in the
        // middle of a copy finishes it first. Waiting is what keeps this rank's memory valid
        // for them, so there is no bound here: every peer is in symmem code that returns.
        let start = Instant::now();
        let mut warned = false;
        while self.shared.inside.load(Ordering::Acquire) != 0 {
            std::thread::sleep(Duration::from_micros(200));
            if !warned && start.elapsed() > Duration::from_secs(10) {
                warned = true;
                crate::diag::warn(format_args!("a failed host collective waits for its peers to leave it before returning (they are still copying)"));
            }
        }
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        if !self.left {
            // Unwinding out of a collective: peers may be reading this rank's memory.
            if !self.shared.abort.is_set() {
                self.shared
                    .abort
                    .set("a rank panicked inside a collective".to_string());
            }
            self.exit(true);
        }
    }
}
