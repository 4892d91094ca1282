//! Collectives on a group.
//!
//! Every collective checks its operands (lengths, the rank they belong to), runs validation
//! mode's cross-rank comparison when enabled, and queues the operation on the rank's stream
//! (so it is captured into graphs). Buffers from *this group's* symmetric pool take the
//! symmetric path (NCCL's symmetric kernels on CUDA; direct peer reads at the same window
//! offset on the host backend); any other buffer takes the plain path.

use crate::backend::operand::{Operand, SymRef};
use crate::buffer::Buffer;
use crate::dtype::{DType, Element, ReduceOp};
use crate::error::{Error, Result};
use crate::rank::group::Group;

impl Group {
    /// `b` as an operand of this group's collective `op`: symmetric only if it comes from this
    /// group's pool (a window of another group belongs to another communicator). Records the
    /// use when capturing. Kept inline and free of intermediate `Operand` copies: this runs on
    /// every collective launch. A buffer of the group's own pool is on this rank by
    /// construction, so only other buffers need the rank check (one pointer less to follow on
    /// the usual path).
    #[inline(always)]
    fn operand<T: Element>(&self, op: &'static str, b: &Buffer<T>) -> Result<Operand> {
        let pool = b.pool();
        let sym = if std::ptr::eq(pool, self.pool_ptr()) {
            b.sym_ref()
        } else {
            if pool.rank_id() != self.rank_id() {
                return Err(self.wrong_rank(op));
            }
            None
        };
        b.record_use();
        Ok(Operand {
            ptr: b.device_ptr(),
            sym,
        })
    }

    #[cold]
    #[inline(never)]
    fn wrong_rank(&self, op: &'static str) -> Error {
        Error::WrongDevice {
            op,
            detail: format!(
                "a buffer belongs to another rank's device than group `{}` on this rank; allocate it on this rank's thread",
                self.name()
            ),
        }
    }

    fn describe(o: &Operand) -> String {
        match o.sym {
            Some(s) => format!("window {} offset {}", s.window(), s.offset()),
            None => "plain".to_string(),
        }
    }

    /// Validation mode's cross-rank check; the description is only built when it is on (out
    /// of line, so that the launch path without it stays small).
    #[inline(always)]
    fn validate(&self, what: &'static str, detail: impl FnOnce() -> String) -> Result<()> {
        if !self.validating() {
            return Ok(());
        }
        self.validate_now(what, detail)
    }

    #[cold]
    #[inline(never)]
    fn validate_now(&self, what: &'static str, detail: impl FnOnce() -> String) -> Result<()> {
        self.validator()
            .check(self.comm().as_ref(), what, &detail())
    }

    /// Queue the all-reduce: through the communicator's direct entry when it has one
    /// (`docs/design.md`, "The launch path"), else through the backend trait.
    #[inline(always)]
    fn enqueue_all_reduce(
        &self,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        let _range =
            crate::diag::collective(self.name(), "all_reduce", dtype, count, send.sym.is_some());
        match self.direct_all_reduce() {
            // SAFETY: the entry was resolved for this group's communicator and stream, and the
            // group keeps the communicator alive.
            Some(d) => unsafe { (d.launch)(d.ctx, send, recv, count, dtype, op) },
            None => self
                .comm()
                .all_reduce(self.stream().as_ref(), send, recv, count, dtype, op),
        }
    }

    /// In-place all-reduce: every rank's `buf` becomes `op` over all ranks' `buf`.
    ///
    /// Inlined into the caller (it is a few checks and one call; the error paths are out of
    /// line): one call frame less on the launch path of every layer.
    #[inline(always)]
    pub fn all_reduce<T: Element>(&self, buf: &mut Buffer<T>, op: ReduceOp) -> Result<()> {
        self.on_rank_thread("all_reduce")?;
        let o = self.operand("all_reduce", buf)?;
        let count = buf.len();
        self.validate("all_reduce", move || {
            format!(
                "{} {op:?} count {count} in place {}",
                T::DTYPE,
                Self::describe(&o)
            )
        })?;
        self.enqueue_all_reduce(o, o, count, T::DTYPE, op)
    }

    /// In-place all-reduce of the elements `range` of `buf` only (for example one layer's slice
    /// of a larger symmetric buffer): every rank's `buf[range]` becomes `op` over all ranks'
    /// `buf[range]`; the rest of `buf` is untouched. Every rank passes the same range (on a
    /// symmetric buffer the slice then lies at the same window offset on every rank, so the
    /// symmetric path still applies). A range outside the buffer is an
    /// [`Error::InvalidArgument`], checked before any communication.
    pub fn all_reduce_range<T: Element>(
        &self,
        buf: &mut Buffer<T>,
        range: impl std::ops::RangeBounds<usize>,
        op: ReduceOp,
    ) -> Result<()> {
        self.on_rank_thread("all_reduce_range")?;
        let (o, count) = self.range_operand("all_reduce_range", buf, range)?;
        self.validate("all_reduce", move || {
            format!(
                "{} {op:?} count {count} in place {}",
                T::DTYPE,
                Self::describe(&o)
            )
        })?;
        self.enqueue_all_reduce(o, o, count, T::DTYPE, op)
    }

    /// The elements `range` of `b` as an operand, and how many they are: symmetric (at the
    /// window offset of the range's first element) when `b` is of this group's pool. A range
    /// outside the buffer is an [`Error::InvalidArgument`] naming `op`.
    fn range_operand<T: Element>(
        &self,
        op: &'static str,
        b: &Buffer<T>,
        range: impl std::ops::RangeBounds<usize>,
    ) -> Result<(Operand, usize)> {
        let (start, end) = crate::buffer::sub_range(op, b.len(), range)?;
        let whole = self.operand(op, b)?;
        let skip = start * std::mem::size_of::<T>();
        Ok((
            Operand {
                ptr: whole.ptr + skip as u64,
                // Inside the same window: the offset stays below the segment's size.
                sym: whole
                    .sym
                    .and_then(|r| SymRef::new(r.window(), r.offset() + skip)),
            },
            end - start,
        ))
    }

    /// Out-of-place all-reduce: `dst = op over ranks of src`.
    pub fn all_reduce_into<T: Element>(
        &self,
        src: &Buffer<T>,
        dst: &mut Buffer<T>,
        op: ReduceOp,
    ) -> Result<()> {
        self.on_rank_thread("all_reduce_into")?;
        if src.len() != dst.len() {
            return Err(Error::LengthMismatch {
                op: "all_reduce_into",
                detail: format!(
                    "src has {} elements and dst {}; they must be equal",
                    src.len(),
                    dst.len()
                ),
            });
        }
        let s = self.operand("all_reduce_into", src)?;
        let d = self.operand("all_reduce_into", dst)?;
        self.validate("all_reduce", move || {
            format!(
                "{} {op:?} count {} src {} dst {}",
                T::DTYPE,
                src.len(),
                Self::describe(&s),
                Self::describe(&d)
            )
        })?;
        self.enqueue_all_reduce(s, d, src.len(), T::DTYPE, op)
    }

    /// All-gather: `dst[r * n .. (r + 1) * n] = src of rank r`, with `n = src.len()`.
    pub fn all_gather<T: Element>(&self, src: &Buffer<T>, dst: &mut Buffer<T>) -> Result<()> {
        self.on_rank_thread("all_gather")?;
        let n = src.len();
        if dst.len() != n * self.size() {
            return Err(Error::LengthMismatch {
                op: "all_gather",
                detail: format!(
                    "dst must hold src.len() * group size = {n} * {} = {} elements, it holds {}",
                    self.size(),
                    n * self.size(),
                    dst.len()
                ),
            });
        }
        let s = self.operand("all_gather", src)?;
        let d = self.operand("all_gather", dst)?;
        self.validate("all_gather", move || {
            format!(
                "{} count {n} src {} dst {}",
                T::DTYPE,
                Self::describe(&s),
                Self::describe(&d)
            )
        })?;
        let _range =
            crate::diag::collective(self.name(), "all_gather", T::DTYPE, n, s.sym.is_some());
        self.comm()
            .all_gather(self.stream().as_ref(), s, d, n, T::DTYPE)
    }

    /// Reduce-scatter: `dst = op over ranks of src[rank * n .. (rank + 1) * n]`, `n = dst.len()`.
    pub fn reduce_scatter<T: Element>(
        &self,
        src: &Buffer<T>,
        dst: &mut Buffer<T>,
        op: ReduceOp,
    ) -> Result<()> {
        self.on_rank_thread("reduce_scatter")?;
        let n = dst.len();
        if src.len() != n * self.size() {
            return Err(Error::LengthMismatch {
                op: "reduce_scatter",
                detail: format!(
                    "src must hold dst.len() * group size = {n} * {} = {} elements, it holds {}",
                    self.size(),
                    n * self.size(),
                    src.len()
                ),
            });
        }
        let s = self.operand("reduce_scatter", src)?;
        let d = self.operand("reduce_scatter", dst)?;
        self.validate("reduce_scatter", move || {
            format!(
                "{} {op:?} count {n} src {} dst {}",
                T::DTYPE,
                Self::describe(&s),
                Self::describe(&d)
            )
        })?;
        let _range =
            crate::diag::collective(self.name(), "reduce_scatter", T::DTYPE, n, s.sym.is_some());
        self.comm()
            .reduce_scatter(self.stream().as_ref(), s, d, n, T::DTYPE, op)
    }

    /// [`Group::all_gather`] on sub-ranges: `dst[dst_range]` receives, rank after rank, every
    /// rank's `src[src_range]` (`dst_range` holds `src_range.len() * size` elements); the rest of
    /// both buffers is untouched. Every rank passes the same ranges, so slices of symmetric
    /// buffers lie at the same window offsets everywhere and keep the symmetric path. Ranges
    /// outside their buffers or of mismatched lengths are errors, checked before any
    /// communication.
    pub fn all_gather_range<T: Element>(
        &self,
        src: &Buffer<T>,
        src_range: impl std::ops::RangeBounds<usize>,
        dst: &mut Buffer<T>,
        dst_range: impl std::ops::RangeBounds<usize>,
    ) -> Result<()> {
        let op = "all_gather_range";
        self.on_rank_thread(op)?;
        let (s, n) = self.range_operand(op, src, src_range)?;
        let (d, m) = self.range_operand(op, dst, dst_range)?;
        if n.checked_mul(self.size()) != Some(m) {
            return Err(Error::LengthMismatch {
                op,
                detail: format!(
                    "dst_range must hold src_range's length * group size = {n} * {} elements, it holds {m}",
                    self.size()
                ),
            });
        }
        self.validate("all_gather", move || {
            format!(
                "{} count {n} src {} dst {}",
                T::DTYPE,
                Self::describe(&s),
                Self::describe(&d)
            )
        })?;
        let _range =
            crate::diag::collective(self.name(), "all_gather", T::DTYPE, n, s.sym.is_some());
        self.comm()
            .all_gather(self.stream().as_ref(), s, d, n, T::DTYPE)
    }

    /// [`Group::reduce_scatter`] on sub-ranges: `dst[dst_range]` becomes `op` over ranks of this
    /// rank's block of `src[src_range]` (`src_range` holds `dst_range.len() * size` elements,
    /// block `rank` of them); the rest of both buffers is untouched. Same range rules as
    /// [`Group::all_gather_range`].
    pub fn reduce_scatter_range<T: Element>(
        &self,
        src: &Buffer<T>,
        src_range: impl std::ops::RangeBounds<usize>,
        dst: &mut Buffer<T>,
        dst_range: impl std::ops::RangeBounds<usize>,
        op: ReduceOp,
    ) -> Result<()> {
        let name = "reduce_scatter_range";
        self.on_rank_thread(name)?;
        let (s, m) = self.range_operand(name, src, src_range)?;
        let (d, n) = self.range_operand(name, dst, dst_range)?;
        if n.checked_mul(self.size()) != Some(m) {
            return Err(Error::LengthMismatch {
                op: name,
                detail: format!(
                    "src_range must hold dst_range's length * group size = {n} * {} elements, it holds {m}",
                    self.size()
                ),
            });
        }
        self.validate("reduce_scatter", move || {
            format!(
                "{} {op:?} count {n} src {} dst {}",
                T::DTYPE,
                Self::describe(&s),
                Self::describe(&d)
            )
        })?;
        let _range =
            crate::diag::collective(self.name(), "reduce_scatter", T::DTYPE, n, s.sym.is_some());
        self.comm()
            .reduce_scatter(self.stream().as_ref(), s, d, n, T::DTYPE, op)
    }

    /// Broadcast in place: every rank's `buf` becomes rank `root`'s `buf`.
    pub fn broadcast<T: Element>(&self, buf: &mut Buffer<T>, root: usize) -> Result<()> {
        self.on_rank_thread("broadcast")?;
        if root >= self.size() {
            return Err(Error::InvalidArgument {
                op: "broadcast",
                detail: format!(
                    "root {root} is not a rank of group `{}` (size {})",
                    self.name(),
                    self.size()
                ),
            });
        }
        let o = self.operand("broadcast", buf)?;
        let count = buf.len();
        self.validate("broadcast", move || {
            format!(
                "{} count {count} root {root} {}",
                T::DTYPE,
                Self::describe(&o)
            )
        })?;
        let _range =
            crate::diag::collective(self.name(), "broadcast", T::DTYPE, count, o.sym.is_some());
        self.comm()
            .broadcast(self.stream().as_ref(), o, o, count, T::DTYPE, root)
    }

    /// Wait until every rank of the group reaches this point (ordered on the stream).
    pub fn barrier(&self) -> Result<()> {
        self.on_rank_thread("barrier")?;
        self.validate("barrier", String::new)?;
        self.comm().barrier(self.stream().as_ref())
    }
}
