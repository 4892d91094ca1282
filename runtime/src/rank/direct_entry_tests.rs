//! The launch path through a communicator's direct entry (`CommBackend::direct_all_reduce`):
//! NCCL communicators offer one, the host backend does not, so this wraps the host
//! communicator in one that does, to check the group's dispatch on every CI run.
use crate::backend::direct::{AllReduceEntry, DirectAllReduce};
use crate::backend::operand::{Operand, SymSegment};
use crate::backend::traits::{CommBackend, StreamBackend};
use crate::config::RankConfig;
use crate::error::Result;
use crate::rank::group::make_group;
use crate::{DType, ReduceOp};
use std::any::Any;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The host communicator, plus a direct all-reduce entry that counts its calls.
struct Counting {
    inner: Arc<dyn CommBackend>,
    stream: Arc<dyn StreamBackend>,
    direct_calls: AtomicUsize,
}

impl AllReduceEntry for Counting {
    fn all_reduce_entry(
        &self,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
        op: ReduceOp,
    ) -> Result<()> {
        self.direct_calls.fetch_add(1, Ordering::Relaxed);
        self.inner
            .all_reduce(self.stream.as_ref(), send, recv, count, dtype, op)
    }
}

impl CommBackend for Counting {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn symmetric_supported(&self) -> bool {
        self.inner.symmetric_supported()
    }
    fn create_symmetric_segment(&self, bytes: usize) -> Result<SymSegment> {
        self.inner.create_symmetric_segment(bytes)
    }
    /// # Safety
    /// The trait's contract, forwarded to the wrapped communicator that made `seg`.
    unsafe fn destroy_symmetric_segment(&self, seg: &SymSegment) {
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { self.inner.destroy_symmetric_segment(seg) }
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
        self.inner.all_reduce(stream, send, recv, count, dtype, op)
    }
    fn all_gather(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
    ) -> Result<()> {
        self.inner.all_gather(stream, send, recv, count, dtype)
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
        self.inner
            .reduce_scatter(stream, send, recv, count, dtype, op)
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
        self.inner.broadcast(stream, send, recv, count, dtype, root)
    }
    fn direct_all_reduce(&self, stream: &dyn StreamBackend) -> Option<DirectAllReduce> {
        std::ptr::addr_eq(
            stream as *const dyn StreamBackend,
            Arc::as_ptr(&self.stream),
        )
        .then(|| DirectAllReduce::new(self))
    }
    fn barrier(&self, stream: &dyn StreamBackend) -> Result<()> {
        self.inner.barrier(stream)
    }
    fn exchange(&self, mine: &[u8], timeout: Duration) -> Result<Vec<Vec<u8>>> {
        self.inner.exchange(mine, timeout)
    }
    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn CommBackend>> {
        self.inner.split(color, key)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[test]
fn all_reduce_takes_the_direct_entry_with_the_right_operands() {
    let out = crate::backend::host::run(3, |ctx| {
        let world = ctx.world();
        let stream = world.stream().clone();
        let counting = Arc::new(Counting {
            inner: world.comm().clone(),
            stream: stream.clone(),
            direct_calls: AtomicUsize::new(0),
        });
        let cfg = RankConfig {
            validate: true,
            ..RankConfig::default()
        };
        let g = make_group(
            Arc::from("direct"),
            counting.clone(),
            world.rank_id(),
            stream,
            &cfg,
        );
        assert!(g.direct_all_reduce().is_some());
        let r = ctx.rank() as f32;
        let n = 1000;
        let mine: Vec<f32> = (0..n).map(|i| r * 1000.0 + i as f32).collect();
        let (mut a, src, mut dst) = {
            let _w = g.window();
            let a = crate::alloc_from_host(&mine).unwrap();
            let src = crate::alloc_from_host(&mine).unwrap();
            let dst = crate::alloc_zeroed::<f32>(n).unwrap();
            (a, src, dst)
        };
        assert!(a.is_symmetric() && src.is_symmetric());
        g.all_reduce(&mut a, ReduceOp::Sum).unwrap();
        g.all_reduce_into(&src, &mut dst, ReduceOp::Max).unwrap();
        // A buffer of the default pool takes the plain path, through the entry too.
        let mut p = crate::alloc_from_host(&mine).unwrap();
        assert!(!p.is_symmetric());
        g.all_reduce(&mut p, ReduceOp::Min).unwrap();
        // Other collectives keep the trait path.
        let mut b = crate::alloc_from_host(&mine).unwrap();
        g.broadcast(&mut b, 0).unwrap();
        crate::synchronize().unwrap();
        (
            a.to_host_vec().unwrap(),
            dst.to_host_vec().unwrap(),
            p.to_host_vec().unwrap(),
            counting.direct_calls.load(Ordering::Relaxed),
        )
    })
    .unwrap();
    for (sum, max, min, calls) in out {
        for i in 0..1000 {
            let i_f = i as f32;
            assert_eq!(sum[i], (0.0 + 1000.0 + 2000.0) + 3.0 * i_f);
            assert_eq!(max[i], 2000.0 + i_f);
            assert_eq!(min[i], i_f);
        }
        assert_eq!(
            calls, 3,
            "all_reduce x2 and all_reduce_into went through the entry"
        );
    }
}
