//! cudarc interop: pass symmem buffers to cuBLAS, cudarc kernels and NVRTC launches.
//!
//! cudarc's [`DevicePtr`]/[`DevicePtrMut`] traits extend `DeviceSlice`, whose `stream()` must
//! return an `&Arc<CudaStream>` owned by the value. A [`Buffer`] does not own a cudarc stream
//! (and on the host backend there is none), so the traits are implemented for borrowed views
//! instead: [`view`] / [`view_mut`] (or [`BufferCudaExt`]) return a [`BufferView`] /
//! [`BufferViewMut`] that carries the rank's cudarc stream and borrows the buffer, so the
//! buffer can neither be dropped nor aliased mutably while cuBLAS uses it. [`Buffer::device_ptr`]
//! stays the raw interop point (for example for NVRTC kernel arguments).
//!
//! A symmem buffer is never wrapped in a `CudaSlice`: dropping that would free memory that
//! belongs to a pool (or to NCCL, for symmetric memory).
//!
//! Ordering: all of a rank's work runs on its one stream. If a view is used on another stream,
//! that stream first waits for the work queued so far on the rank's stream; the rank's stream
//! does **not** wait for work queued on the other stream, so order it yourself (or, simpler, use
//! the stream from [`cuda_stream`], on which nothing needs waiting).
//!
//! Also the accessors from a rank to its CUDA objects ([`cuda_stream`], [`cuda_context`],
//! [`nccl_comm`]). Re-exported at `symmem::cuda::*`.

use std::marker::PhantomData;
use std::sync::Arc;

use std::ops::RangeBounds;

use crate::buffer::sub_range;

use cudarc::driver::{
    sys as cu, CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, LaunchArgs, PushKernelArg,
    SyncOnDrop,
};

use cudarc::driver::CudaContext;

use crate::backend::cuda::device::{CudaDevice, CudaRankStream};
use crate::backend::cuda::nccl::{CommOwnership, NcclComm};
use crate::backend::traits::DeviceBackend;
use crate::buffer::Buffer;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::rank::context::RankContext;
use crate::rank::group::Group;

/// A read-only view of a [`Buffer`] for cudarc APIs (implements [`DevicePtr`]).
pub struct BufferView<'a, T: Element> {
    ptr: u64,
    len: usize,
    stream: Arc<CudaStream>,
    _b: PhantomData<&'a Buffer<T>>,
}

/// A mutable view of a [`Buffer`] for cudarc APIs (implements [`DevicePtr`] and
/// [`DevicePtrMut`]).
pub struct BufferViewMut<'a, T: Element> {
    ptr: u64,
    len: usize,
    stream: Arc<CudaStream>,
    _b: PhantomData<&'a mut Buffer<T>>,
}

impl<T: Element> std::fmt::Debug for BufferView<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferView")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Element> std::fmt::Debug for BufferViewMut<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferViewMut")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

fn rank_stream<T: Element>(b: &Buffer<T>) -> Result<Arc<CudaStream>> {
    b.pool()
        .stream()
        .as_any()
        .downcast_ref::<CudaRankStream>()
        .map(|s| s.cudarc_stream().clone())
        .ok_or_else(|| Error::WrongDevice {
            op: "symmem::cuda::view",
            detail: "the buffer is not on a CUDA rank (host backend?); cudarc views exist only for CUDA buffers".into(),
        })
}

/// A read-only cudarc view of `buf` (fails for buffers of the host backend).
pub fn view<T: Element>(buf: &Buffer<T>) -> Result<BufferView<'_, T>> {
    Ok(BufferView {
        ptr: buf.device_ptr(),
        len: buf.len(),
        stream: rank_stream(buf)?,
        _b: PhantomData,
    })
}

/// A mutable cudarc view of `buf` (fails for buffers of the host backend).
pub fn view_mut<T: Element>(buf: &mut Buffer<T>) -> Result<BufferViewMut<'_, T>> {
    Ok(BufferViewMut {
        ptr: buf.device_ptr(),
        len: buf.len(),
        stream: rank_stream(buf)?,
        _b: PhantomData,
    })
}

impl<'a, T: Element> BufferView<'a, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address of the first element.
    pub fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// The elements `range` of this view, as a view of the same buffer (for cudarc APIs and
    /// kernel arguments). An error when the range is not inside the view.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<BufferView<'a, T>> {
        let (s, e) = sub_range("BufferView::slice", self.len, range)?;
        Ok(BufferView {
            ptr: self.ptr + (s * std::mem::size_of::<T>()) as u64,
            len: e - s,
            stream: self.stream.clone(),
            _b: PhantomData,
        })
    }
}

impl<T: Element> BufferViewMut<'_, T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device address of the first element.
    pub fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// The elements `range`, read-only (borrows this view).
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<BufferView<'_, T>> {
        let (s, e) = sub_range("BufferViewMut::slice", self.len, range)?;
        Ok(BufferView {
            ptr: self.ptr + (s * std::mem::size_of::<T>()) as u64,
            len: e - s,
            stream: self.stream.clone(),
            _b: PhantomData,
        })
    }

    /// The elements `range`, writable (borrows this view mutably, so two mutable sub-views of
    /// one view cannot coexist).
    pub fn slice_mut(&mut self, range: impl RangeBounds<usize>) -> Result<BufferViewMut<'_, T>> {
        let (s, e) = sub_range("BufferViewMut::slice_mut", self.len, range)?;
        Ok(BufferViewMut {
            ptr: self.ptr + (s * std::mem::size_of::<T>()) as u64,
            len: e - s,
            stream: self.stream.clone(),
            _b: PhantomData,
        })
    }
}

// Kernel arguments: a view is passed as its device pointer (`T*` in the kernel), like cudarc's
// own `CudaView`. Launch on the rank's stream (`cuda_stream`), where stream order makes the
// buffer's block stay valid until the kernel ran; on another stream, order it with the rank's
// stream yourself (cudarc's `LaunchArgs` does not say which stream it launches on, so nothing
// is ordered here).
//
// SAFETY: `arg` pushes the address of the view's `ptr` field (a `CUdeviceptr`, which is `u64`),
// which lives for `'b`, which outlives the launch builder (`'a`), so the argument array never
// points at freed host memory. The device memory it names is the view's buffer, borrowed for
// `'c`. What the kernel does with it is the contract of cudarc's `unsafe fn launch`, which the
// caller upholds (the kernel stays within `len` elements).
unsafe impl<'a, 'b: 'a, 'c: 'b, T: Element> PushKernelArg<&'b BufferView<'c, T>>
    for LaunchArgs<'a>
{
    #[inline(always)]
    fn arg(&mut self, arg: &'b BufferView<'c, T>) -> &mut Self {
        let p: &'b u64 = &arg.ptr;
        self.arg(p)
    }
}

// SAFETY: as for `BufferView`; the mutable borrow makes the kernel the view's only writer
// among the views of this buffer.
unsafe impl<'a, 'b: 'a, 'c: 'b, T: Element> PushKernelArg<&'b mut BufferViewMut<'c, T>>
    for LaunchArgs<'a>
{
    #[inline(always)]
    fn arg(&mut self, arg: &'b mut BufferViewMut<'c, T>) -> &mut Self {
        let p: &'b u64 = &arg.ptr;
        self.arg(p)
    }
}

// SAFETY: as for `BufferView` (a read-only use of a mutable view).
unsafe impl<'a, 'b: 'a, 'c: 'b, T: Element> PushKernelArg<&'b BufferViewMut<'c, T>>
    for LaunchArgs<'a>
{
    #[inline(always)]
    fn arg(&mut self, arg: &'b BufferViewMut<'c, T>) -> &mut Self {
        let p: &'b u64 = &arg.ptr;
        self.arg(p)
    }
}

/// Method-style access to [`view`] and [`view_mut`].
pub trait BufferCudaExt<T: Element> {
    /// A read-only cudarc view (see [`view`]).
    fn cuda_view(&self) -> Result<BufferView<'_, T>>;
    /// A mutable cudarc view (see [`view_mut`]).
    fn cuda_view_mut(&mut self) -> Result<BufferViewMut<'_, T>>;
}

impl<T: Element> BufferCudaExt<T> for Buffer<T> {
    fn cuda_view(&self) -> Result<BufferView<'_, T>> {
        view(self)
    }
    fn cuda_view_mut(&mut self) -> Result<BufferViewMut<'_, T>> {
        view_mut(self)
    }
}

/// Make `other` wait for the work queued so far on `rank` (no-op when they are the same stream).
fn order_after(rank: &CudaStream, other: &CudaStream) {
    if rank.cu_stream() == other.cu_stream() {
        return;
    }
    if let Err(e) = other.join(rank) {
        other.context().record_err::<()>(Err(e));
    }
}

impl<T: Element> DeviceSlice<T> for BufferView<'_, T> {
    fn len(&self) -> usize {
        self.len
    }
    fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

impl<T: Element> DevicePtr<T> for BufferView<'_, T> {
    fn device_ptr<'a>(&'a self, stream: &'a CudaStream) -> (cu::CUdeviceptr, SyncOnDrop<'a>) {
        order_after(&self.stream, stream);
        (self.ptr, SyncOnDrop::Record(None))
    }
}

impl<T: Element> DeviceSlice<T> for BufferViewMut<'_, T> {
    fn len(&self) -> usize {
        self.len
    }
    fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

impl<T: Element> DevicePtr<T> for BufferViewMut<'_, T> {
    fn device_ptr<'a>(&'a self, stream: &'a CudaStream) -> (cu::CUdeviceptr, SyncOnDrop<'a>) {
        order_after(&self.stream, stream);
        (self.ptr, SyncOnDrop::Record(None))
    }
}

impl<T: Element> DevicePtrMut<T> for BufferViewMut<'_, T> {
    fn device_ptr_mut<'a>(
        &'a mut self,
        stream: &'a CudaStream,
    ) -> (cu::CUdeviceptr, SyncOnDrop<'a>) {
        order_after(&self.stream, stream);
        (self.ptr, SyncOnDrop::Record(None))
    }
}

/// The cudarc stream of the rank's stream, for `CudaBlas::new(stream)` and kernel launches
/// that must be ordered with symmem's work (and captured with it). `None` on other backends.
pub fn cuda_stream(ctx: &RankContext) -> Option<Arc<CudaStream>> {
    ctx.stream()
        .backend()
        .as_any()
        .downcast_ref::<CudaRankStream>()
        .map(|s| s.cudarc_stream().clone())
}

/// The cudarc context of the rank's GPU (for loading modules, NVRTC, and so on). `None` on
/// other backends.
pub fn cuda_context(ctx: &RankContext) -> Option<Arc<CudaContext>> {
    ctx.device()
        .as_any()
        .downcast_ref::<CudaDevice>()
        .map(|d| d.context().clone())
}

/// The NCCL communicator of a group, `None` on other backends.
pub fn nccl_comm(group: &Group) -> Option<&NcclComm> {
    group.comm().as_any().downcast_ref::<NcclComm>()
}

/// A plain [`Buffer`] over the caller's cudarc `slice`, which it takes over: collectives,
/// copies, views and graph capture use the slice's memory in place (no copy), and the slice is
/// dropped, so freed by cudarc's own rules (stream-ordered on its stream), when the buffer and
/// every graph that recorded it are gone.
///
/// The slice must live on this rank's stream ([`cuda_stream`]; e.g. allocated with
/// `cuda_stream(ctx).alloc_zeros(..)`, or on a stream the rank was started on with
/// [`init_rank_on_stream`](crate::cuda::init_rank_on_stream)): then every use of it is ordered
/// with symmem's work without events, including its free. Such a buffer is never symmetric (its
/// memory is not in a window): allocate symmetric buffers inside a window and copy into them.
///
/// Errors: [`Error::WrongDevice`] on a rank that is not a CUDA rank, or for a slice on another
/// stream or GPU (the slice is dropped, as it was moved in: get it back by not calling this).
pub fn buffer_from_cuda_slice<T: Element>(
    ctx: &RankContext,
    slice: cudarc::driver::CudaSlice<T>,
) -> Result<Buffer<T>> {
    let Some(stream) = cuda_stream(ctx) else {
        return Err(Error::WrongDevice {
            op: "cuda::buffer_from_cuda_slice",
            detail: "this rank is not a CUDA rank (host backend?)".into(),
        });
    };
    if slice.stream().cu_stream() != stream.cu_stream() {
        return Err(Error::WrongDevice {
            op: "cuda::buffer_from_cuda_slice",
            detail: "the slice lives on another stream than this rank's: allocate it on `symmem::cuda::cuda_stream(ctx)` (or start the rank on the slice's stream with `cuda::init_rank_on_stream`), or copy it into a symmem buffer".into(),
        });
    }
    let len = slice.len();
    let ptr = {
        let (p, _sync) = slice.device_ptr(&stream);
        p
    };
    let pool = ctx.inner_default_pool().clone();
    let owner = crate::pool::owner::Owner::Foreign(Arc::new(crate::pool::owner::Foreign {
        pool,
        memory: Some(Box::new(slice)),
    }));
    let alloc = crate::pool::allocation::Allocation {
        block: crate::pool::arena::Block::detached(),
        ptr,
        sym: None,
    };
    Ok(Buffer::from_parts(alloc, len, owner))
}

/// Add a group named `name` to this rank from an NCCL communicator the caller created (with
/// `ncclCommInitRank`, `ncclCommSplit`, another library...) for this rank's GPU: its
/// collectives run on the rank's stream, its symmetric pool registers windows on it, and it
/// takes part in the launch's aborts and departures. Every rank of the communicator adopts it
/// under the same name. `ownership` says who destroys it ([`CommOwnership`]); on an error the
/// communicator stays the caller's, untouched.
///
/// cudarc's safe `cudarc::nccl::Comm` cannot be adopted: it does not hand out its raw handle
/// (and destroys it when dropped); create the communicator with symmem
/// ([`init_rank`](crate::cuda::init_rank), [`crate::RankContext::split_group`]) or adopt a raw
/// one.
///
/// Errors: [`Error::WrongDevice`] on a rank that is not a CUDA rank or for a communicator of
/// another GPU, [`Error::InvalidArgument`] for a NULL handle, [`Error::DuplicateGroup`],
/// [`Error::InvalidGroupName`], [`Error::NotAllowedDuringCapture`], NCCL errors.
///
/// The communicator must come from the NCCL library symmem loaded (`libnccl.so.2` first on the
/// loader's path): one of another NCCL copy in the process is refused with NCCL's error.
///
/// # Safety
/// `comm` is a live NCCL communicator whose rank runs on this rank's GPU. With
/// [`CommOwnership::Owned`] nobody else uses or destroys it afterwards; with
/// [`CommOwnership::Borrowed`] it stays alive (not destroyed, not aborted) until the group and
/// every buffer and graph of its pool are gone, and nobody makes NCCL calls on it from another
/// thread while symmem may (NCCL communicators are not thread-safe).
pub unsafe fn adopt_nccl_comm(
    ctx: &RankContext,
    name: &str,
    comm: crate::backend::cuda::nccl_api::sys::ncclComm_t,
    ownership: CommOwnership,
) -> Result<Group> {
    crate::thread::refuse_if_capturing(&symmem_rules::refusals::RANK_ADD_GROUP)?;
    crate::names::validate_group_name(name)?;
    if ctx.group(name).is_ok() {
        return Err(Error::DuplicateGroup {
            name: name.to_string(),
        });
    }
    if comm.is_null() {
        return Err(Error::InvalidArgument {
            op: "cuda::adopt_nccl_comm",
            detail: "the communicator handle is NULL".into(),
        });
    }
    let device = ctx
        .device()
        .as_any()
        .downcast_ref::<CudaDevice>()
        .ok_or_else(|| Error::WrongDevice {
            op: "cuda::adopt_nccl_comm",
            detail: "this rank is not a CUDA rank (host backend?)".into(),
        })?;
    let world = ctx.world();
    let world_comm = nccl_comm(&world).ok_or_else(|| Error::WrongDevice {
        op: "cuda::adopt_nccl_comm",
        detail: "this rank's world group has no NCCL communicator".into(),
    })?;
    // SAFETY: `comm` is live (the caller's contract).
    let dev = unsafe {
        crate::backend::cuda::ffi::comm_cu_device(
            comm,
            "check that the handle is a live NCCL communicator",
        )
    }?;
    if usize::try_from(dev).ok() != Some(device.ordinal()) {
        return Err(Error::WrongDevice {
            op: "cuda::adopt_nccl_comm",
            detail: format!(
                "the communicator's rank runs on GPU {dev}, this rank on GPU {}; adopt it on the rank of that GPU",
                device.ordinal()
            ),
        });
    }
    let stream = device.rank_stream().clone();
    let place = crate::backend::cuda::nccl::CommPlace {
        key: Arc::from(format!("adopted:{name}")),
        owner: ctx.rank(),
    };
    // SAFETY: the caller's contract; the wrapper starts borrowed (an error below leaves the
    // communicator untouched).
    let wrapped = unsafe {
        NcclComm::adopt(
            comm,
            device.context().clone(),
            stream,
            world_comm.registry().clone(),
            world_comm.settings(),
            place,
        )
    }?;
    let group = ctx.add_group(name, Arc::new(wrapped))?;
    if ownership == CommOwnership::Owned {
        if let Some(c) = nccl_comm(&group) {
            c.take_ownership();
        }
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use crate::buffer::sub_range;

    #[test]
    fn sub_ranges_stay_inside_the_view() {
        assert_eq!(sub_range("t", 10, ..).unwrap(), (0, 10));
        assert_eq!(sub_range("t", 10, 2..5).unwrap(), (2, 5));
        assert_eq!(sub_range("t", 10, 2..=5).unwrap(), (2, 6));
        assert_eq!(sub_range("t", 10, 10..).unwrap(), (10, 10));
        assert_eq!(sub_range("t", 0, ..).unwrap(), (0, 0));
        for bad in [
            sub_range("t", 10, 0..11),
            sub_range("t", 10, 11..),
            sub_range("t", 10, 0..=10),
            sub_range("t", 10, 0..=usize::MAX),
        ] {
            let e = bad.unwrap_err().to_string();
            assert!(e.contains("not inside the 10 elements"), "{e}");
        }
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = sub_range("t", 10, 5..2);
        assert!(reversed.is_err());
        // An excluded start at usize::MAX does not overflow.
        let r = sub_range(
            "t",
            10,
            (
                std::ops::Bound::Excluded(usize::MAX),
                std::ops::Bound::Unbounded,
            ),
        );
        assert!(r.is_err());
    }
}
