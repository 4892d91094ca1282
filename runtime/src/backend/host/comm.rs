//! Host communicators: cross-thread collectives over shared host memory.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::host::device::{host_alloc, host_free, HostStream};
use crate::backend::host::shared::{HostShared, Place, Step};
use crate::backend::operand::{Operand, SymSegment};
use crate::backend::traits::{CommBackend, HostOp, StreamBackend};
use crate::dtype::{DType, Element, ReduceOp};
use crate::error::{Error, Result};

/// One rank's host communicator.
pub struct HostComm {
    shared: Arc<HostShared>,
    rank: usize,
    timeout: Duration,
    /// This rank's count of collectives and exchanges on the communicator (part of every
    /// barrier's [`Step`]).
    seq: Arc<AtomicU64>,
    name: Mutex<Arc<str>>,
    /// Peer base addresses of each symmetric window, by window index.
    windows: Mutex<Vec<Arc<[u64]>>>,
}

impl HostComm {
    pub(crate) fn new(shared: Arc<HostShared>, rank: usize, timeout: Duration) -> Self {
        HostComm {
            shared,
            rank,
            timeout,
            seq: Arc::new(AtomicU64::new(0)),
            name: Mutex::new(Arc::from("world")),
            windows: Mutex::new(Vec::new()),
        }
    }

    fn name(&self) -> Arc<str> {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn host_stream(stream: &dyn StreamBackend) -> Result<&HostStream> {
        stream
            .as_any()
            .downcast_ref::<HostStream>()
            .ok_or_else(|| Error::WrongDevice {
                op: "host collective",
                detail: "a host communicator needs a host stream".into(),
            })
    }

    /// The base addresses of every rank's part of a window.
    fn peers(&self, window: u64) -> Result<Arc<[u64]>> {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(window as usize)
            .cloned()
            .ok_or_else(|| Error::InvalidArgument {
                op: "collective",
                detail: format!("unknown symmetric window {window}"),
            })
    }

    /// Queue a collective: `body` runs on this rank's thread when the stream reaches it.
    fn enqueue(
        &self,
        stream: &dyn StreamBackend,
        body: impl FnMut(&Ctx) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let ctx = Ctx {
            shared: self.shared.clone(),
            rank: self.rank,
            timeout: self.timeout,
            group: self.name(),
            seq: self.seq.clone(),
        };
        let mut body = body;
        let op: HostOp = Box::new(move || body(&ctx));
        Self::host_stream(stream)?.enqueue(op)
    }

    /// Host-side all-gather of `mine` for the step `what` (the exchange behind validation,
    /// segment creation and split): every rank must be at the same exchange, numbered alike.
    /// Peers read only the shared state's copies, never this rank's memory.
    fn exchange_as(
        &self,
        what: &'static str,
        mine: &[u8],
        timeout: Duration,
    ) -> Result<Vec<Vec<u8>>> {
        let group = self.name();
        let step = Step::bare(self.seq.fetch_add(1, Ordering::Relaxed), what);
        self.shared
            .exchange
            .lock()
            .unwrap_or_else(|e| e.into_inner())[self.rank] = mine.to_vec();
        self.shared.barrier(&group, self.rank, step, timeout)?;
        let all = self
            .shared
            .exchange
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.shared.barrier(&group, self.rank, step, timeout)?;
        Ok(all)
    }

    /// Where each rank's operand lies: symmetric operands are found at the same offset of each
    /// peer's window part (no address exchange); plain ones are published per call.
    fn locate(&self, o: Operand) -> Result<Locate> {
        Ok(match o.sym {
            Some(s) => Locate::Sym(self.peers(s.window())?, s.window(), s.offset() as u64),
            None => Locate::Plain(o.ptr),
        })
    }
}

enum Locate {
    Sym(Arc<[u64]>, u64, u64),
    Plain(u64),
}

impl Locate {
    fn place(&self) -> Place {
        match self {
            Locate::Sym(_, window, offset) => Place::Sym(*window, *offset),
            Locate::Plain(_) => Place::Plain,
        }
    }
}

/// What a queued collective needs when it runs.
struct Ctx {
    shared: Arc<HostShared>,
    rank: usize,
    timeout: Duration,
    group: Arc<str>,
    seq: Arc<AtomicU64>,
}

impl Ctx {
    /// The step of this rank's next collective (numbered when it runs, so a replayed graph's
    /// collectives are numbered like eager ones).
    fn step(
        &self,
        what: &'static str,
        dtype: DType,
        op: Option<ReduceOp>,
        count: usize,
        root: usize,
        loc: &Locate,
    ) -> Step {
        Step {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            what,
            dtype: Some(dtype),
            op,
            count,
            root,
            place: loc.place(),
        }
    }

    /// Cross a barrier of the collective `step` in its phase `what`.
    fn barrier(&self, step: Step, what: &'static str) -> Result<()> {
        self.shared
            .barrier(&self.group, self.rank, Step { what, ..step }, self.timeout)
    }

    /// Run one collective's body inside the communicator (see `shared::Inside`).
    fn run(&self, body: impl FnOnce() -> Result<()>) -> Result<()> {
        let inside = self.shared.enter();
        let result = body();
        inside.leave(result)
    }

    /// Every rank's address of the operand (publishing ours first when plain), then a barrier.
    fn addresses(&self, loc: &Locate, step: Step) -> Result<Vec<u64>> {
        match loc {
            Locate::Sym(bases, _, off) => {
                self.barrier(step, step.what)?;
                Ok(bases.iter().map(|b| b + off).collect())
            }
            Locate::Plain(p) => {
                self.shared.slots[self.rank].store(*p, Ordering::Relaxed);
                self.barrier(step, step.what)?;
                Ok(self
                    .shared
                    .slots
                    .iter()
                    .map(|s| s.load(Ordering::Relaxed))
                    .collect())
            }
        }
    }
}

macro_rules! dispatch {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            DType::U8 => $f::<u8>($($arg),*),
            DType::I32 => $f::<i32>($($arg),*),
            DType::U32 => $f::<u32>($($arg),*),
            DType::I64 => $f::<i64>($($arg),*),
            DType::U64 => $f::<u64>($($arg),*),
            DType::F16 => $f::<half::f16>($($arg),*),
            DType::BF16 => $f::<half::bf16>($($arg),*),
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
        }
    };
}

/// Reduce elements `[start, end)` of every rank's source into a new vector, in rank order.
///
/// # Safety
/// Every address points to at least `end` live elements of `T`.
unsafe fn reduce_range<T: Element>(srcs: &[u64], start: usize, end: usize, op: ReduceOp) -> Vec<T> {
    let n = end - start;
    let first = std::slice::from_raw_parts((srcs[0] as *const T).add(start), n);
    let mut acc = first.to_vec();
    for &s in &srcs[1..] {
        let src = std::slice::from_raw_parts((s as *const T).add(start), n);
        for (a, b) in acc.iter_mut().zip(src) {
            *a = T::combine(*a, *b, op);
        }
    }
    if op == ReduceOp::Avg {
        for a in &mut acc {
            *a = T::div_count(*a, srcs.len());
        }
    }
    acc
}

fn all_reduce_run<T: Element>(
    ctx: &Ctx,
    step: Step,
    srcs: &[u64],
    recv: u64,
    count: usize,
    op: ReduceOp,
) -> Result<()> {
    let n = ctx.shared.size;
    let chunk = count.div_ceil(n);
    let (start, end) = (
        (ctx.rank * chunk).min(count),
        ((ctx.rank + 1) * chunk).min(count),
    );
    // Phase 1 (reduce-scatter): this rank reduces its chunk from every peer.
    // SAFETY: every source holds `count` elements (checked by the caller's validation of
    // lengths; equal counts are part of the collective contract).
    let mine: Vec<T> = unsafe { reduce_range::<T>(srcs, start, end, op) };
    ctx.shared.slots2[ctx.rank].store(mine.as_ptr() as u64, Ordering::Relaxed);
    // After this barrier nobody reads a source any more: in-place use is safe.
    ctx.barrier(step, "all_reduce (reduce phase)")?;
    // Phase 2 (all-gather): copy every rank's reduced chunk.
    for q in 0..n {
        let (s, e) = ((q * chunk).min(count), ((q + 1) * chunk).min(count));
        if s == e {
            continue;
        }
        let src = ctx.shared.slots2[q].load(Ordering::Relaxed) as *const T;
        // SAFETY: rank q's chunk vector lives until the barrier below.
        unsafe { std::ptr::copy_nonoverlapping(src, (recv as *mut T).add(s), e - s) };
    }
    ctx.barrier(step, "all_reduce (gather phase)")?;
    drop(mine);
    Ok(())
}

fn all_gather_run<T: Element>(
    ctx: &Ctx,
    step: Step,
    srcs: &[u64],
    recv: u64,
    count: usize,
) -> Result<()> {
    for (q, &s) in srcs.iter().enumerate() {
        // SAFETY: each source holds `count` elements; `recv` holds `count * size`.
        unsafe { std::ptr::copy(s as *const T, (recv as *mut T).add(q * count), count) };
    }
    ctx.barrier(step, "all_gather (copy phase)")
}

fn reduce_scatter_run<T: Element>(
    ctx: &Ctx,
    step: Step,
    srcs: &[u64],
    recv: u64,
    count: usize,
    op: ReduceOp,
) -> Result<()> {
    let start = ctx.rank * count;
    // SAFETY: each source holds `count * size` elements.
    let mine: Vec<T> = unsafe { reduce_range::<T>(srcs, start, start + count, op) };
    ctx.barrier(step, "reduce_scatter (reduce phase)")?;
    // SAFETY: `recv` holds `count` elements.
    unsafe { std::ptr::copy_nonoverlapping(mine.as_ptr(), recv as *mut T, count) };
    Ok(())
}

fn broadcast_run<T: Element>(
    ctx: &Ctx,
    step: Step,
    srcs: &[u64],
    recv: u64,
    count: usize,
    root: usize,
) -> Result<()> {
    if srcs[root] != recv {
        // SAFETY: root's buffer and ours hold `count` elements; distinct ranks' buffers do not
        // overlap.
        unsafe { std::ptr::copy(srcs[root] as *const T, recv as *mut T, count) };
    }
    ctx.barrier(step, "broadcast (copy phase)")
}

impl CommBackend for HostComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn symmetric_supported(&self) -> bool {
        true
    }

    fn create_symmetric_segment(&self, bytes: usize) -> Result<SymSegment> {
        let base = host_alloc(bytes)?;
        let mut mine = Vec::with_capacity(16);
        mine.extend_from_slice(&base.to_le_bytes());
        mine.extend_from_slice(&(bytes as u64).to_le_bytes());
        let all = match self.exchange_as("symmetric segment creation", &mine, self.timeout) {
            Ok(a) => a,
            Err(e) => {
                // SAFETY: just allocated, never shared.
                unsafe { host_free(base, bytes) };
                return Err(e);
            }
        };
        let parse = |d: &Vec<u8>, i: usize| {
            u64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
        };
        if let Some((r, d)) = all
            .iter()
            .enumerate()
            .find(|(_, d)| d.len() != 16 || parse(d, 1) != bytes as u64)
        {
            // SAFETY: `base` was allocated above with `bytes` and never published to a peer
            // (the exchange failed the check): nothing else can use it.
            unsafe { host_free(base, bytes) };
            return Err(Error::RankDivergence {
                group: self.name().to_string(),
                what: "symmetric segment creation".into(),
                details: format!(
                    "rank {} asked for {bytes} bytes, rank {r} for {}",
                    self.rank,
                    if d.len() == 16 { parse(d, 1) } else { 0 }
                ),
            });
        }
        let bases: Arc<[u64]> = all.iter().map(|d| parse(d, 0)).collect();
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = w.len() as u64;
        w.push(bases);
        Ok(SymSegment {
            base,
            size: bytes,
            window,
            handle: window + 1,
        })
    }

    /// # Safety
    /// The trait's contract: `seg` came from this communicator's `create_symmetric_segment`,
    /// is destroyed once, and no pending work (of this rank or, through the window, of a peer:
    /// pools destroy segments only when no block is out) uses it.
    unsafe fn destroy_symmetric_segment(&self, seg: &SymSegment) {
        // SAFETY: `host_alloc` made `seg.base` with `seg.size` (this communicator's segment);
        // the caller guarantees it is freed once and unused.
        unsafe { host_free(seg.base, seg.size) }
    }

    fn all_reduce(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let loc = self.locate(send)?;
        let recv = recv.ptr;
        self.enqueue(stream, move |ctx| {
            let step = ctx.step("all_reduce", dtype, Some(op), count, 0, &loc);
            ctx.run(|| {
                let srcs = ctx.addresses(&loc, step)?;
                dispatch!(dtype, all_reduce_run(ctx, step, &srcs, recv, count, op))
            })
        })
    }

    fn all_gather(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
    ) -> Result<()> {
        let loc = self.locate(send)?;
        let recv = recv.ptr;
        self.enqueue(stream, move |ctx| {
            let step = ctx.step("all_gather", dtype, None, count, 0, &loc);
            ctx.run(|| {
                let srcs = ctx.addresses(&loc, step)?;
                dispatch!(dtype, all_gather_run(ctx, step, &srcs, recv, count))
            })
        })
    }

    fn reduce_scatter(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let loc = self.locate(send)?;
        let recv = recv.ptr;
        self.enqueue(stream, move |ctx| {
            let step = ctx.step("reduce_scatter", dtype, Some(op), count, 0, &loc);
            ctx.run(|| {
                let srcs = ctx.addresses(&loc, step)?;
                dispatch!(dtype, reduce_scatter_run(ctx, step, &srcs, recv, count, op))
            })
        })
    }

    fn broadcast(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        root: usize,
    ) -> Result<()> {
        let loc = self.locate(send)?;
        let recv = recv.ptr;
        self.enqueue(stream, move |ctx| {
            let step = ctx.step("broadcast", dtype, None, count, root, &loc);
            ctx.run(|| {
                let srcs = ctx.addresses(&loc, step)?;
                dispatch!(dtype, broadcast_run(ctx, step, &srcs, recv, count, root))
            })
        })
    }

    fn barrier(&self, stream: &dyn StreamBackend) -> Result<()> {
        self.enqueue(stream, |ctx| {
            let step = Step::bare(ctx.seq.fetch_add(1, Ordering::Relaxed), "barrier");
            ctx.run(|| ctx.barrier(step, "barrier"))
        })
    }

    fn exchange(&self, mine: &[u8], timeout: Duration) -> Result<Vec<Vec<u8>>> {
        self.exchange_as("host-side exchange", mine, timeout)
    }

    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn CommBackend>> {
        let mut mine = color.to_le_bytes().to_vec();
        mine.extend_from_slice(&key.to_le_bytes());
        let all = self.exchange_as("split", &mine, self.timeout)?;
        let parse = |d: &Vec<u8>| -> (u32, u32) {
            let c = u32::from_le_bytes(
                d.get(0..4)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or([0; 4]),
            );
            let k = u32::from_le_bytes(
                d.get(4..8)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or([0; 4]),
            );
            (c, k)
        };
        let mut members: Vec<(u32, usize)> = all
            .iter()
            .enumerate()
            .filter(|(_, d)| parse(d).0 == color)
            .map(|(r, d)| (parse(d).1, r))
            .collect();
        members.sort();
        let leader = members.iter().map(|m| m.1).min().unwrap_or(self.rank);
        let new_rank = members.iter().position(|m| m.1 == self.rank).unwrap_or(0);
        if leader == self.rank {
            let world: Vec<usize> = members
                .iter()
                .map(|m| self.shared.world_rank(m.1))
                .collect();
            let sub = Arc::new(HostShared::with_members(world, self.shared.abort.clone()));
            self.shared.split.lock().unwrap_or_else(|e| e.into_inner())[self.rank] = Some(sub);
        }
        let group = self.name();
        let step = Step::bare(self.seq.fetch_add(1, Ordering::Relaxed), "split (publish)");
        self.shared.barrier(&group, self.rank, step, self.timeout)?;
        let sub = self.shared.split.lock().unwrap_or_else(|e| e.into_inner())[leader].clone();
        let step = Step {
            what: "split (collect)",
            ..step
        };
        self.shared.barrier(&group, self.rank, step, self.timeout)?;
        if leader == self.rank {
            self.shared.split.lock().unwrap_or_else(|e| e.into_inner())[self.rank] = None;
        }
        let sub = sub.ok_or_else(|| {
            Error::Graph("internal: split leader published no communicator".into())
        })?;
        Ok(Arc::new(HostComm::new(sub, new_rank, self.timeout)))
    }

    fn set_name(&self, name: &str) {
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(name);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
