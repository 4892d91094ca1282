//! The collectives of an NCCL communicator: its `CommBackend` impl and the direct all-reduce entry.

use crate::kernels::{symmetric_kernel_exists, Collective};
use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::cuda::nccl_api::sys as nccl;

use super::{CommPlace, NcclComm};
use crate::backend::cuda::ffi::{self, cuda_err};
use crate::backend::cuda::nccl::core::{nccl_dtype, nccl_op, CommLaunchLine};
use crate::backend::cuda::nccl::hints::HINT_COLL;
use crate::backend::direct::DirectAllReduce;
use crate::backend::operand::{Operand, SymSegment};
use crate::backend::traits::{CommBackend, StreamBackend};
use crate::dtype::{DType, ReduceOp};
use crate::error::{Error, Result};

impl CommBackend for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn symmetric_kernels(&self, collective: Collective, op: ReduceOp, dtype: DType) -> bool {
        self.symmetric_supported() && symmetric_kernel_exists(collective, op, dtype)
    }

    fn symmetric_supported(&self) -> bool {
        self.symmetric.load(Ordering::Relaxed)
    }

    fn create_symmetric_segment(&self, bytes: usize) -> Result<SymSegment> {
        self.create_segment(bytes)
    }

    /// # Safety
    /// The trait's contract: `seg` is this communicator's, destroyed once, and unused by any
    /// pending work.
    unsafe fn destroy_symmetric_segment(&self, seg: &SymSegment) {
        // SAFETY: the trait's contract is `destroy_segment`'s.
        unsafe { self.destroy_segment(seg) }
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
        let s = self.cu_stream_for(stream)?;
        self.core.launch_all_reduce(s, send, recv, count, dtype, op)
    }

    fn direct_all_reduce(&self, stream: &dyn StreamBackend) -> Option<DirectAllReduce> {
        // The entry points at the core, which lives in an `Arc` as long as the communicator
        // (and so as long as the group holding the entry).
        std::ptr::addr_eq(
            stream as *const dyn StreamBackend,
            Arc::as_ptr(&self.stream),
        )
        .then(|| DirectAllReduce::new::<CommLaunchLine>(&self.core))
    }

    fn all_gather(
        &self,
        stream: &dyn StreamBackend,
        send: Operand,
        recv: Operand,
        count: usize,
        dtype: DType,
    ) -> Result<()> {
        let s = self.cu_stream_for(stream)?;
        self.with_comm("ncclAllGather", |comm| {
            // SAFETY: as above (`recv` holds `count * size`).
            unsafe {
                (self.core.fns.all_gather)(
                    send.ptr as *const std::ffi::c_void,
                    recv.ptr as *mut std::ffi::c_void,
                    count,
                    nccl_dtype(dtype),
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
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
        let s = self.cu_stream_for(stream)?;
        self.with_comm("ncclReduceScatter", |comm| {
            // SAFETY: as above (`send` holds `count * size`).
            unsafe {
                (self.core.fns.reduce_scatter)(
                    send.ptr as *const std::ffi::c_void,
                    recv.ptr as *mut std::ffi::c_void,
                    count,
                    nccl_dtype(dtype),
                    nccl_op(op),
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
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
        let s = self.cu_stream_for(stream)?;
        let root = i32::try_from(root).map_err(|_| Error::InvalidArgument {
            op: "broadcast",
            detail: format!("root {root} is out of range"),
        })?;
        self.with_comm("ncclBroadcast", |comm| {
            // SAFETY: as above.
            unsafe {
                (self.core.fns.broadcast)(
                    send.ptr as *const std::ffi::c_void,
                    recv.ptr as *mut std::ffi::c_void,
                    count,
                    nccl_dtype(dtype),
                    root,
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
        })
    }

    fn barrier(&self, stream: &dyn StreamBackend) -> Result<()> {
        let s = self.cu_stream_for(stream)?;
        let buf = self
            .scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .barrier
            .ptr();
        self.with_comm("ncclAllReduce (barrier)", |comm| {
            // SAFETY: the barrier scratch holds one f32 and lives as long as the communicator.
            unsafe {
                ffi::all_reduce(
                    buf as *const std::ffi::c_void,
                    buf as *mut std::ffi::c_void,
                    1,
                    nccl_dtype(DType::F32),
                    nccl_op(ReduceOp::Sum),
                    comm,
                    s as nccl::cudaStream_t,
                )
            }
        })
    }

    fn exchange(&self, mine: &[u8], timeout: Duration) -> Result<Vec<Vec<u8>>> {
        self.validation_exchange(mine, timeout)
    }

    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn CommBackend>> {
        let color_i = i32::try_from(color).map_err(|_| Error::InvalidArgument {
            op: "split_group",
            detail: format!(
                "color {color} is above {} (NCCL takes a non-negative int)",
                i32::MAX
            ),
        })?;
        let key_i = i32::try_from(key).map_err(|_| Error::InvalidArgument {
            op: "split_group",
            detail: format!("key {key} is above {} (NCCL takes an int)", i32::MAX),
        })?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_err("cuCtxSetCurrent", e, HINT_COLL))?;
        let mut new: nccl::ncclComm_t = std::ptr::null_mut();
        // Counted on every member whatever the outcome (the split is collective).
        let n = self.splits.fetch_add(1, Ordering::Relaxed);
        self.with_comm("ncclCommSplit", |comm| {
            // SAFETY: live communicator; a NULL config inherits the parent's.
            unsafe { ffi::comm_split(comm, color_i, key_i, &mut new) }
        })?;
        if new.is_null() {
            return Err(Error::Nccl {
                call: "ncclCommSplit",
                message: "NCCL returned no communicator".into(),
                hint: "every rank must pass a non-negative color",
            });
        }
        let place = CommPlace {
            key: Arc::from(format!("{}/{n}:{color}", self.core.key)),
            owner: self.core.owner,
        };
        let comm = NcclComm::from_raw(
            new,
            self.ctx.clone(),
            self.stream.clone(),
            self.registry.clone(),
            self.settings,
            place,
        )?;
        Ok(Arc::new(comm))
    }

    fn set_name(&self, name: &str) {
        *self.core.name.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(name);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
