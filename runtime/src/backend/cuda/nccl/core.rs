//! What a collective launch reads: `CommLaunchLine` (one cache line) and NCCL's entry points (`NcclFns`).

use std::sync::{Arc, Mutex};

use crate::backend::cuda::nccl_api::sys as nccl;
use cudarc::driver::sys as cu;

use super::hints::HINT_COLL;
use crate::backend::cuda::device::AbortNote;
use crate::backend::cuda::ffi::{self, nccl_check};
use crate::backend::cuda::nccl_api::{
    nccl_api, BroadcastFn, GatherFn, NcclDataType, NcclRedOp, NcclResult, ReduceFn,
};
use crate::backend::direct::AllReduceEntry;
use crate::backend::operand::Operand;
use crate::dtype::{DType, ReduceOp};
use crate::error::{Error, Result};
use crate::sync::owner_lock::{OwnerGuard, OwnerLock};

/// The collectives' entry points, copied once from symmem's NCCL handle
/// ([`nccl_api`]), so that a launch is one indirect call through the communicator's own cache
/// line. `repr(C)` with `ncclAllReduce` first: it sits in the first cache line of
/// [`CommLaunchLine`].
#[derive(Clone, Copy)]
#[repr(C)]
pub struct NcclFns {
    pub all_reduce: ReduceFn,
    pub reduce_scatter: ReduceFn,
    pub all_gather: GatherFn,
    pub broadcast: BroadcastFn,
}

impl NcclFns {
    /// The entry points of the NCCL library every communicator came from. Errors when NCCL
    /// cannot be loaded or lacks an entry point.
    pub fn resolve() -> Result<NcclFns> {
        let api = nccl_api()?;
        Ok(NcclFns {
            all_reduce: api.all_reduce,
            reduce_scatter: api.reduce_scatter,
            all_gather: api.all_gather,
            broadcast: api.broadcast,
        })
    }
}

/// The four floating-point element types, in the order of [`AvgOps`].
const FLOAT_TYPES: [DType; 4] = [DType::F16, DType::BF16, DType::F32, DType::F64];

/// One communicator's all-reduce `Avg` operations for the floating-point types: each is
/// `ncclRedOpCreatePreMulSum` with the scalar `1 / ranks` in the element type.
///
/// Why not `ncclAvg`: NCCL's symmetric scheduler (2.28-2.30.7) maps all-reduce `Avg` to its
/// `SumPostDiv` symmetric path although no all-reduce kernel of that kind is built, so on a
/// symmetric buffer `ncclAvg` is a combination symmem must never send. A user-created pre-multiplied
/// sum is `ncclDevPreMulSum` on the device, which no NCCL version's symmetric kernels accept
/// (`ncclSymkImplemented`: `Sum` and `SumPostDiv` only), so it always runs the regular
/// kernels — exactly the computation regular `ncclAvg` does on floats (`enqueue.cc`: `ncclAvg`
/// on f16/bf16/f32/f64 becomes `ncclDevPreMulSum` with `1 / nRanks` rounded to the element
/// type), bit for bit. Integer `Avg` keeps `ncclAvg` (never symmetric: the kernels are for floats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgOps(pub [NcclRedOp; 4]);

impl AvgOps {
    /// Create the four operations on `comm` (of `ranks` ranks); what was created is destroyed
    /// again on failure.
    ///
    /// # Safety
    /// `comm` is a live communicator of `ranks` ranks.
    pub unsafe fn create(comm: nccl::ncclComm_t, ranks: usize) -> Result<AvgOps> {
        let mut ops = [NCCL_AVG; 4];
        for (i, &d) in FLOAT_TYPES.iter().enumerate() {
            let mut scalar = avg_scalar(d, ranks);
            // SAFETY: `comm` is live (the caller's contract); `scalar` holds one element of `d`.
            match unsafe {
                ffi::red_op_create_pre_mul_sum(comm, &mut scalar, nccl_dtype(d), HINT_COLL)
            } {
                Ok(op) => ops[i] = op,
                Err(e) => {
                    // SAFETY: the operations created so far are `comm`'s, destroyed once,
                    // never used.
                    unsafe { AvgOps(ops).destroy_created(comm, i) };
                    return Err(e);
                }
            }
        }
        Ok(AvgOps(ops))
    }

    /// Destroy the first `n` operations.
    ///
    /// # Safety
    /// `comm` is live and the operations are its own, destroyed once, used by no later call.
    unsafe fn destroy_created(self, comm: nccl::ncclComm_t, n: usize) {
        for &op in &self.0[..n] {
            // SAFETY: the caller's contract.
            unsafe { ffi::red_op_destroy(op, comm) };
        }
    }

    /// Destroy all four (before the communicator is finalized).
    ///
    /// # Safety
    /// As [`AvgOps::destroy_created`].
    pub unsafe fn destroy(self, comm: nccl::ncclComm_t) {
        // SAFETY: the caller's contract.
        unsafe { self.destroy_created(comm, 4) }
    }

    /// The NCCL operation an all-reduce of `dtype` with `op` is sent as: for `Avg` on a
    /// floating-point type the pre-multiplied sum, otherwise the built-in operation.
    #[inline(always)]
    pub fn all_reduce_op(&self, op: ReduceOp, dtype: DType) -> NcclRedOp {
        if op != ReduceOp::Avg {
            return nccl_op(op);
        }
        match dtype {
            DType::F16 => self.0[0],
            DType::BF16 => self.0[1],
            DType::F32 => self.0[2],
            DType::F64 => self.0[3],
            _ => NCCL_AVG,
        }
    }
}

/// The bytes of `1 / ranks` in element type `d` (one of [`FLOAT_TYPES`]), rounded to nearest
/// as NCCL rounds its own `Avg` scalar (`__float2half(float(1.0 / n))`, ...).
pub fn avg_scalar(d: DType, ranks: usize) -> Vec<u8> {
    let inv = 1.0 / ranks.max(1) as f64;
    match d {
        DType::F16 => half::f16::from_f32(inv as f32).to_le_bytes().to_vec(),
        DType::BF16 => half::bf16::from_f32(inv as f32).to_le_bytes().to_vec(),
        DType::F32 => (inv as f32).to_le_bytes().to_vec(),
        _ => inv.to_le_bytes().to_vec(),
    }
}

/// What a live communicator that made `seq` calls (and may make `limit`) does when a member
/// leaves after making `final_seq` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepartureStep {
    /// A call the member never joined is already queued: abort, or it waits forever.
    Abort,
    /// Lower the limit to `final_seq`: later calls beyond it fail at once.
    Limit,
    /// An earlier departure already set a lower limit.
    Nothing,
}

/// See [`DepartureStep`].
pub fn departure_step(seq: u64, limit: u64, final_seq: u64) -> DepartureStep {
    if seq > final_seq {
        DepartureStep::Abort
    } else if final_seq < limit {
        DepartureStep::Limit
    } else {
        DepartureStep::Nothing
    }
}

/// The raw communicator and whether it is still usable.
pub struct RawComm {
    /// The handle; NULL once aborted or destroyed (no call may use it any more: the cause is
    /// in [`CommLaunchLine::abort_cause`]).
    pub comm: nccl::ncclComm_t,
    /// How many collective calls this rank made on the communicator (every call through
    /// [`CommLaunchLine::with_comm`]: each is collective, so every member makes the same ones).
    pub seq: u64,
    /// The number of collective calls every member will still make: `u64::MAX`, or the count
    /// of a member that left the launch ([`CommLaunchLine::peer_departed`]). A call numbered
    /// at or above it would wait forever for that member and fails at once instead. 0 once
    /// aborted (one comparison refuses both on the launch path).
    pub limit: u64,
}

impl RawComm {
    /// A live communicator with no call made yet.
    pub fn new(comm: nccl::ncclComm_t) -> RawComm {
        RawComm {
            comm,
            seq: 0,
            limit: u64::MAX,
        }
    }

    /// Whether the communicator was aborted or destroyed.
    pub fn is_dead(&self) -> bool {
        self.comm.is_null()
    }
}

// SAFETY: an ncclComm_t may be used from any thread; access is serialised by the mutex.
unsafe impl Send for RawComm {}

/// The shared core of a communicator: what an abort from another thread needs, and everything
/// a collective launch reads, laid out so that an all-reduce launch reads one cache line: the
/// lock's flags, the communicator handle, the stream and `ncclAllReduce`'s address
/// (`docs/design.md`, "The launch path"). A group's direct entry points here.
#[repr(C, align(64))]
pub struct CommLaunchLine {
    pub raw: OwnerLock<RawComm>,
    /// The raw handle of the rank stream the communicator was made for.
    pub cu_stream: cu::CUstream,
    /// NCCL's collective entry points (`ncclAllReduce` first, still in the first line).
    pub fns: NcclFns,
    /// The all-reduce `Avg` operations of the floating-point types (read only for `Avg`;
    /// destroyed by the communicator's teardown before it finalizes).
    pub avg_ops: AvgOps,
    /// The group's name, for errors.
    pub name: Mutex<Arc<str>>,
    /// Which group of the launch this communicator is one rank's part of: equal on every
    /// member (`"world"`, then `"<parent>/<n>:<color>"` for the `n`-th split of a parent).
    pub key: Arc<str>,
    /// The world rank of the thread that owns it.
    pub owner: usize,
    /// Why [`RawComm::limit`] was lowered (the member that left), once it was.
    pub departure: Mutex<Option<String>>,
    /// Why the communicator was aborted or destroyed, once it was (written under the lock of
    /// [`CommLaunchLine::raw`], before the handle is cleared).
    pub abort_cause: Mutex<Option<String>>,
    /// The owner's stream, told of an abort (reported by its next synchronisation).
    pub aborts: Arc<AbortNote>,
}

// The launch reads the lock, the handle, the stream and `ncclAllReduce` in one cache line.
const _: () = assert!(
    std::mem::offset_of!(CommLaunchLine, fns) + std::mem::size_of::<ReduceFn>() <= 64,
    "CommLaunchLine: ncclAllReduce's address must stay in the first cache line"
);

// SAFETY: `cu_stream` is a plain handle, used only to queue work (which CUDA allows from any
// thread); the function pointers are plain; the rest is `Send + Sync` on its own.
unsafe impl Send for CommLaunchLine {}
// SAFETY: as above; `cu_stream` and the functions are never mutated after creation.
unsafe impl Sync for CommLaunchLine {}

impl CommLaunchLine {
    #[inline]
    pub fn lock(&self) -> OwnerGuard<'_, RawComm> {
        self.raw.lock()
    }

    pub fn name(&self) -> Arc<str> {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn aborted(&self, cause: String) -> Error {
        Error::Aborted {
            group: self.name().to_string(),
            cause,
        }
    }

    /// Why the communicator is dead (empty while it is live).
    pub fn cause(&self) -> String {
        self.abort_cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Record that the handle in `raw` is aborted or destroyed because of `cause`: no call
    /// uses it again (the launch path sees `limit` 0, every other path [`RawComm::is_dead`]).
    pub fn mark_dead(&self, raw: &mut RawComm, cause: &str) {
        *self.abort_cause.lock().unwrap_or_else(|e| e.into_inner()) = Some(cause.to_string());
        raw.comm = std::ptr::null_mut();
        raw.limit = 0;
    }

    /// A member of this communicator's group left the launch (`why`: "rank 1 returned from its
    /// closure") after making `final_seq` collective calls on it. Calls of this rank beyond
    /// that count can never complete: if one is already queued, the communicator is aborted
    /// now (so the queued kernel stops waiting and the next synchronisation reports it);
    /// otherwise later calls beyond the count fail at once, and the ones before it (matched by
    /// the member before it left) run as usual.
    pub fn peer_departed(&self, final_seq: u64, why: &str) {
        let mut raw = self.lock();
        if raw.is_dead() {
            return;
        }
        match departure_step(raw.seq, raw.limit, final_seq) {
            DepartureStep::Abort => {
                let cause = format!(
                    "{why} after {final_seq} collective call(s) on this group, and this rank had already queued call number {} that needs it",
                    raw.seq
                );
                drop(raw);
                self.abort(&cause);
            }
            DepartureStep::Limit => {
                raw.limit = final_seq;
                *self.departure.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                    "{why} after {final_seq} collective call(s) on this group"
                ));
            }
            DepartureStep::Nothing => {}
        }
    }

    /// Run an NCCL call with the communicator, unless it was aborted. Inline, with the
    /// aborted and failed cases out of line: this wraps every collective launch.
    #[inline(always)]
    pub fn with_comm(
        &self,
        call: &'static str,
        f: impl FnOnce(nccl::ncclComm_t) -> NcclResult,
    ) -> Result<()> {
        let mut raw = self.lock();
        if raw.seq >= raw.limit {
            return Err(self.refused_now(raw));
        }
        raw.seq += 1;
        let r = f(raw.comm);
        nccl_check(call, r, raw.comm, HINT_COLL)
    }

    /// Run an NCCL call that every member makes in its own teardown (window deregistration),
    /// unless the communicator is dead: it is not counted and not refused after a member left,
    /// since the member that left makes its matching call while it tears down.
    pub fn with_comm_uncounted(
        &self,
        call: &'static str,
        f: impl FnOnce(nccl::ncclComm_t) -> NcclResult,
    ) -> Result<()> {
        let raw = self.lock();
        if raw.is_dead() {
            drop(raw);
            return Err(self.aborted(self.cause()));
        }
        let r = f(raw.comm);
        nccl_check(call, r, raw.comm, HINT_COLL)
    }

    /// The error of a call on an aborted communicator, or of one a departed member will never
    /// join (releases the lock first).
    #[cold]
    #[inline(never)]
    fn refused_now(&self, raw: OwnerGuard<'_, RawComm>) -> Error {
        let cause = match raw.is_dead().then(|| self.cause()) {
            Some(cause) => cause,
            None => {
                let why = self
                    .departure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_default();
                format!(
                    "{why}; this would be collective call number {} on it, which that rank will never join",
                    raw.seq + 1
                )
            }
        };
        drop(raw);
        self.aborted(cause)
    }

    /// `ncclAllReduce` on raw stream `s`.
    #[inline(always)]
    pub fn launch_all_reduce(
        &self,
        s: cu::CUstream,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        self.with_comm("ncclAllReduce", |comm| {
            // SAFETY: operands hold `count` elements (checked by the core) and live until the
            // queued work ran (stream-ordered reuse).
            unsafe {
                (self.fns.all_reduce)(
                    send.ptr as *const std::ffi::c_void,
                    recv.ptr as *mut std::ffi::c_void,
                    count,
                    nccl_dtype(dtype),
                    self.avg_ops.all_reduce_op(op, dtype),
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
        })
    }

    /// Abort the communicator (unblocks kernels waiting for peers). Idempotent.
    pub fn abort(&self, cause: &str) {
        let mut raw = self.lock();
        if raw.is_dead() {
            return;
        }
        // SAFETY: the communicator is live (not aborted nor destroyed: both clear the handle
        // under this same lock).
        unsafe { ffi::comm_abort(raw.comm) };
        self.mark_dead(&mut raw, cause);
        drop(raw);
        self.aborts.note(&self.name(), cause);
    }
}

/// `ncclAvg`.
const NCCL_AVG: NcclRedOp = 4;

/// NCCL's data type of `d` (`ncclDataType_t` as an `int`). Inline: the launch path (in another
/// file) maps its arguments.
#[inline]
pub fn nccl_dtype(d: DType) -> NcclDataType {
    // nccl.h: ncclInt8 0, ncclUint8 1, ncclInt32 2, ncclUint32 3, ncclInt64 4, ncclUint64 5,
    // ncclFloat16 6, ncclFloat32 7, ncclFloat64 8, ncclBfloat16 9.
    match d {
        DType::U8 => 1,
        DType::I32 => 2,
        DType::U32 => 3,
        DType::I64 => 4,
        DType::U64 => 5,
        DType::F16 => 6,
        DType::F32 => 7,
        DType::F64 => 8,
        DType::BF16 => 9,
    }
}

/// NCCL's built-in reduction of `op` (`ncclRedOp_t` as an `int`). Inline, as [`nccl_dtype`].
/// All-reduce maps `Avg` on floats through [`AvgOps::all_reduce_op`] instead.
#[inline]
pub fn nccl_op(op: ReduceOp) -> NcclRedOp {
    // nccl.h: ncclSum 0, ncclProd 1, ncclMax 2, ncclMin 3, ncclAvg 4.
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Prod => 1,
        ReduceOp::Max => 2,
        ReduceOp::Min => 3,
        ReduceOp::Avg => NCCL_AVG,
    }
}

/// The direct all-reduce entry of a communicator: [`CommLaunchLine::launch_all_reduce`] on its own
/// stream (`DirectAllReduce::new` makes the entry from it).
impl AllReduceEntry for CommLaunchLine {
    #[inline(always)]
    fn all_reduce_entry(
        &self,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        self.launch_all_reduce(self.cu_stream, send, recv, count, dtype, op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handles as NCCL hands them out (`ncclNumOps + k`), none a built-in operation.
    const USER: AvgOps = AvgOps([5, 6, 7, 8]);

    #[test]
    fn avg_on_floats_is_never_sent_as_nccl_avg() {
        for (d, want) in [
            (DType::F16, 5),
            (DType::BF16, 6),
            (DType::F32, 7),
            (DType::F64, 8),
        ] {
            assert_eq!(USER.all_reduce_op(ReduceOp::Avg, d), want, "{d:?}");
            assert_ne!(USER.all_reduce_op(ReduceOp::Avg, d), NCCL_AVG);
        }
        // Integers keep ncclAvg (NCCL's symmetric kernels are for floats only).
        for d in [DType::U8, DType::I32, DType::U32, DType::I64, DType::U64] {
            assert_eq!(USER.all_reduce_op(ReduceOp::Avg, d), NCCL_AVG, "{d:?}");
        }
        // Every other operation is the built-in one, on every type.
        for op in [ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Max, ReduceOp::Min] {
            for d in FLOAT_TYPES.iter().chain(&[DType::U8, DType::I64]) {
                assert_eq!(USER.all_reduce_op(op, *d), nccl_op(op), "{op:?} {d:?}");
            }
        }
    }

    #[test]
    fn avg_scalars_are_one_over_ranks_in_the_element_type() {
        for n in [1usize, 2, 3, 7, 8, 256, 1000] {
            let inv = 1.0 / n as f64;
            let b = avg_scalar(DType::F32, n);
            assert_eq!(f32::from_le_bytes(b.try_into().unwrap()), inv as f32);
            let b = avg_scalar(DType::F64, n);
            assert_eq!(f64::from_le_bytes(b.try_into().unwrap()), inv);
            let b = avg_scalar(DType::F16, n);
            assert_eq!(
                half::f16::from_le_bytes(b.try_into().unwrap()),
                half::f16::from_f32(inv as f32)
            );
            let b = avg_scalar(DType::BF16, n);
            let v = half::bf16::from_le_bytes(b.try_into().unwrap());
            assert_eq!(v, half::bf16::from_f32(inv as f32));
            // Rounded to nearest: within half an ulp of bf16 (8 bits of mantissa).
            assert!((v.to_f64() - inv).abs() <= inv / 256.0, "{n}: {v}");
        }
        // A zero rank count cannot happen (communicators have >= 1 rank); it never divides by 0.
        assert_eq!(
            f32::from_le_bytes(avg_scalar(DType::F32, 0).try_into().unwrap()),
            1.0
        );
    }

    #[test]
    fn built_in_codes_match_nccl_h() {
        // nccl.h: ncclSum 0, ncclProd 1, ncclMax 2, ncclMin 3, ncclAvg 4; types as listed there.
        assert_eq!(nccl_op(ReduceOp::Sum), 0);
        assert_eq!(nccl_op(ReduceOp::Prod), 1);
        assert_eq!(nccl_op(ReduceOp::Max), 2);
        assert_eq!(nccl_op(ReduceOp::Min), 3);
        assert_eq!(nccl_op(ReduceOp::Avg), NCCL_AVG);
        assert_eq!(nccl_dtype(DType::U8), 1);
        assert_eq!(nccl_dtype(DType::I32), 2);
        assert_eq!(nccl_dtype(DType::F16), 6);
        assert_eq!(nccl_dtype(DType::F32), 7);
        assert_eq!(nccl_dtype(DType::F64), 8);
        assert_eq!(nccl_dtype(DType::BF16), 9);
    }
}
