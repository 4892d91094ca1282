//! The CUDA path (feature `cuda`): candle CUDA tensors to and from symmem buffers by
//! device-to-device copies on the rank's stream, and the rank started on candle's stream.
//!
//! # Streams
//!
//! symmem does all of a rank's work on one stream (the rank's). A candle CUDA device has its own
//! stream (`CudaDevice::cuda_stream`). Best: start the rank **on** candle's stream
//! ([`init_rank_on_device`]); then copies, collectives and candle's kernels are ordered by the
//! stream alone and nothing waits on events. Otherwise (a rank of `symmem::cuda::run_threads` or
//! `init_rank` with a candle device of its own) every conversion orders the two streams with an
//! event each way: the rank's stream waits for the work queued so far on candle's before the
//! copy, and candle's waits for the rank's after it. That is always correct, costs a few
//! microseconds per conversion, and is refused during graph capture (a capture is one stream).
//!
//! # Lifetimes
//!
//! The copies are stream-ordered: a symmem buffer dropped right after [`crate::from_buffer`]
//! goes back to its pool, which reuses it only for work queued later on the rank's stream, so
//! after the copy; a candle tensor dropped right after [`crate::to_buffer`] is freed by cudarc
//! on candle's stream, which (on another stream) waits for the copy first. A symmem buffer is
//! never wrapped as candle storage: candle would free memory that belongs to a pool or to NCCL.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, CudaView};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{Device, Layout, Storage, Tensor};
use symmem::cuda::BufferCudaExt;
use symmem::Buffer;

use crate::convert::TensorElement;
use crate::error::{Error, Result};

/// The rank's cudarc stream, or the error for a thread whose rank is not a CUDA rank.
pub(crate) fn rank_stream(op: &'static str) -> Result<Arc<CudaStream>> {
    let stream = symmem::current_stream()?;
    stream
        .backend()
        .as_any()
        .downcast_ref::<symmem::cuda::CudaRankStream>()
        .map(|s| s.cudarc_stream().clone())
        .ok_or(Error::WrongDevice {
            op,
            detail: "the tensor is on a CUDA device but this thread's rank runs on the host backend; start the rank with the CUDA backend (`symmem_candle::cuda::init_rank_on_device`, `symmem::cuda::run_threads`) or move the tensor to the CPU".into(),
        })
}

/// Check that `device` (a candle CUDA device) is on the rank's GPU, and say whether its stream is
/// the rank's.
fn same_stream(op: &'static str, rank: &CudaStream, device: &CudaDevice) -> Result<bool> {
    let candle = device.cuda_stream();
    let (rank_gpu, candle_gpu) = (rank.context().ordinal(), candle.context().ordinal());
    if rank_gpu != candle_gpu {
        return Err(Error::WrongDevice {
            op,
            detail: format!(
                "the tensor is on GPU {candle_gpu} but this rank runs on GPU {rank_gpu}; make the tensor on the rank's GPU (`Device::new_cuda({rank_gpu})`)"
            ),
        });
    }
    if rank.cu_stream() == candle.cu_stream() {
        return Ok(true);
    }
    if symmem::is_capturing() {
        return Err(Error::WrongDevice {
            op,
            detail: "the candle device's stream is not the rank's, and this thread is capturing a graph on the rank's stream: a capture records one stream. Start the rank on candle's stream (`symmem_candle::cuda::init_rank_on_device`) to use candle tensors inside a capture".into(),
        });
    }
    Ok(false)
}

/// `waiter` waits for the work queued so far on `on` (an event recorded on `on`).
fn wait(waiter: &CudaStream, on: &CudaStream) -> Result<()> {
    waiter.join(on).map_err(symmem::Error::from)?;
    Ok(())
}

/// Copy the `len` elements of `src` (on candle's stream, or the rank's) into `dst` on the rank's
/// stream, ordering the streams when they differ.
fn copy_in<T: TensorElement>(
    op: &'static str,
    device: &CudaDevice,
    src: &CudaView<'_, T>,
    dst: &mut Buffer<T>,
) -> Result<()> {
    let rank = rank_stream(op)?;
    let same = same_stream(op, &rank, device)?;
    if src.is_empty() && dst.is_empty() {
        return Ok(());
    }
    let candle = device.cuda_stream();
    if !same {
        wait(&rank, &candle)?;
    }
    {
        let mut view = dst.cuda_view_mut()?;
        // Lengths checked by the callers; cudarc asserts `dst.len() >= src.len()`.
        if view.len() != src.len() {
            return Err(length_bug(op, src.len(), view.len()));
        }
        rank.memcpy_dtod(src, &mut view)
            .map_err(symmem::Error::from)?;
    }
    if !same {
        // candle may free or overwrite `src` on its stream only after the copy read it.
        wait(&candle, &rank)?;
    }
    Ok(())
}

fn length_bug(op: &'static str, src: usize, dst: usize) -> Error {
    Error::Shard {
        op,
        detail: format!(
            "a copy of {src} elements into {dst} (a symmem-candle invariant broke); report it"
        ),
    }
}

/// A new candle CUDA slice on `device` holding a copy of `src`, written on the rank's stream.
fn copy_out<T: TensorElement>(
    op: &'static str,
    device: &CudaDevice,
    src: &Buffer<T>,
) -> Result<CudaSlice<T>> {
    let rank = rank_stream(op)?;
    let same = same_stream(op, &rank, device)?;
    let candle = device.cuda_stream();
    // SAFETY: the slice's contents are uninitialised until the copy below writes all `len`
    // elements (same length, checked); it reaches candle only after that copy was queued
    // successfully, and candle's uses of it are ordered after the copy (same stream, or the
    // `wait` below). On an error the slice is dropped unread.
    let mut out = unsafe { device.alloc::<T>(src.len()) }?;
    if !same {
        // The allocation is stream-ordered on candle's stream.
        wait(&rank, &candle)?;
    }
    {
        let view = src.cuda_view()?;
        if view.len() != out.len() {
            return Err(length_bug(op, view.len(), out.len()));
        }
        rank.memcpy_dtod(&view, &mut out)
            .map_err(symmem::Error::from)?;
    }
    if !same {
        wait(&candle, &rank)?;
    }
    Ok(out)
}

/// A contiguous view of the elements `layout` addresses in `storage`, made contiguous in a new
/// allocation on candle's stream first when they are not (kept in `keep`).
fn contiguous_view<'s, T: TensorElement>(
    op: &'static str,
    storage: &'s CudaStorage,
    layout: &Layout,
    keep: &'s mut Option<CudaStorage>,
) -> Result<CudaView<'s, T>> {
    if let Some((start, end)) = layout.contiguous_offsets() {
        let slice = storage.as_cuda_slice::<T>()?;
        if end > slice.len() || start > end {
            return Err(Error::Shard {
                op,
                detail: format!(
                    "the layout {layout:?} does not lie in its storage of {} elements (a candle invariant broke); report it",
                    slice.len()
                ),
            });
        }
        return Ok(slice.slice(start..end));
    }
    let n = layout.shape().elem_count();
    let mut dst =
        CudaStorage::wrap_cuda_slice(storage.device.alloc_zeros::<T>(n)?, storage.device.clone());
    storage.copy_strided_src(&mut dst, 0, layout)?;
    let kept = keep.insert(dst);
    Ok(kept.as_cuda_slice::<T>()?.slice(0..n))
}

/// A copy of the elements `layout` addresses in a CUDA `storage` in a new buffer of the current
/// routing (the group's symmetric pool inside a window).
pub(crate) fn storage_to_buffer<T: TensorElement>(
    op: &'static str,
    storage: &CudaStorage,
    layout: &Layout,
) -> Result<Buffer<T>> {
    let mut keep = None;
    let src = contiguous_view::<T>(op, storage, layout, &mut keep)?;
    let mut buffer = symmem::alloc::<T>(src.len())?;
    copy_in(op, &storage.device, &src, &mut buffer)?;
    Ok(buffer)
}

/// A new CUDA storage on `device` holding a copy of `buffer`.
pub(crate) fn buffer_to_storage<T: TensorElement>(
    op: &'static str,
    buffer: &Buffer<T>,
    device: &CudaDevice,
) -> Result<CudaStorage> {
    let out = copy_out(op, device, buffer)?;
    Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
}

/// [`crate::to_buffer`] for a CUDA tensor.
pub(crate) fn tensor_to_buffer<T: TensorElement>(
    op: &'static str,
    tensor: &Tensor,
) -> Result<Buffer<T>> {
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cuda(cuda) = &*storage else {
        return Err(Error::UnsupportedDevice {
            op,
            device: tensor.device().location(),
        });
    };
    storage_to_buffer::<T>(op, cuda, layout)
}

/// [`crate::copy_to_buffer`] for a CUDA tensor (lengths already checked equal).
pub(crate) fn tensor_into_buffer<T: TensorElement>(
    op: &'static str,
    tensor: &Tensor,
    buffer: &mut Buffer<T>,
) -> Result<()> {
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cuda(cuda) = &*storage else {
        return Err(Error::UnsupportedDevice {
            op,
            device: tensor.device().location(),
        });
    };
    let mut keep = None;
    let src = contiguous_view::<T>(op, cuda, layout, &mut keep)?;
    if src.len() != buffer.len() {
        return Err(length_bug(op, src.len(), buffer.len()));
    }
    copy_in(op, &cuda.device, &src, buffer)
}

/// [`crate::from_buffer`] for a CUDA device.
pub(crate) fn buffer_to_tensor<T: TensorElement>(
    op: &'static str,
    buffer: &Buffer<T>,
    shape: candle_core::Shape,
    device: &CudaDevice,
) -> Result<Tensor> {
    if buffer.is_empty() {
        // Nothing to copy (and CUDA refuses zero-byte allocations): candle's own empty tensor,
        // after the same device checks as a copy.
        let rank = rank_stream(op)?;
        same_stream(op, &rank, device)?;
        return Ok(Tensor::zeros(
            shape,
            <T as candle_core::WithDType>::DTYPE,
            &Device::Cuda(device.clone()),
        )?);
    }
    let storage = buffer_to_storage(op, buffer, device)?;
    Ok(Tensor::from_storage(
        Storage::Cuda(storage),
        shape,
        candle_core::op::BackpropOp::none(),
        false,
    ))
}

/// Start this thread's rank of a job of `world_size` ranks **on candle's CUDA device**: the
/// rank's stream is the device's stream, so symmem's copies, collectives and captures are
/// ordered with candle's kernels without events. A thin wrapper of
/// [`symmem::cuda::init_rank_on_stream`] (same blocking, errors and ownership: candle keeps its
/// device; symmem holds a reference to its stream and creates and destroys the NCCL
/// communicators, pools and graphs).
///
/// Make the device with `Device::new_cuda_with_stream(gpu)` to capture graphs: candle's
/// `Device::new_cuda` uses CUDA's per-thread default stream, which works for everything else.
///
/// Errors: [`Error::WrongDevice`] for a device that is not a CUDA device; symmem's errors.
pub fn init_rank_on_device(
    device: &Device,
    rank: usize,
    world_size: usize,
    id: &symmem::cuda::UniqueId,
    cfg: symmem::RankConfig,
) -> Result<symmem::RankContext> {
    let Device::Cuda(cuda) = device else {
        return Err(Error::WrongDevice {
            op: "cuda::init_rank_on_device",
            detail: format!(
                "{:?} is not a CUDA device; make it with `Device::new_cuda_with_stream(gpu)`",
                device.location()
            ),
        });
    };
    Ok(symmem::cuda::init_rank_on_stream(
        cuda.cuda_stream(),
        rank,
        world_size,
        id,
        cfg,
    )?)
}

/// Whether `device` is a CUDA device whose stream is this thread's rank's stream (then
/// conversions and the all-reduce need no events, and work inside a capture). `false` on a
/// thread without a CUDA rank, or for other devices.
pub fn shares_rank_stream(device: &Device) -> bool {
    let Device::Cuda(cuda) = device else {
        return false;
    };
    rank_stream("cuda::shares_rank_stream")
        .map(|r| r.cu_stream() == cuda.cuda_stream().cu_stream())
        .unwrap_or(false)
}
