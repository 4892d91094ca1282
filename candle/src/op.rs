//! The tensor all-reduce as a candle custom op, usable inside candle's autograd graph.

#[cfg(feature = "cuda")]
use candle_core::backend::BackendStorage;
#[cfg(not(feature = "cuda"))]
use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType};
use symmem::{Group, ReduceOp};

use crate::convert::TensorElement;
use crate::error::Error;

/// [`crate::all_reduce`] as a [`candle_core::CustomOp1`]: `tensor.apply_op1(AllReduceOp::new(&group,
/// ReduceOp::Sum))` all-reduces the tensor over the group and records the op in candle's
/// autograd graph.
///
/// * **Forward**: the elements are copied into a buffer allocated in the group's window
///   (symmetric), all-reduced, and copied into the result's storage, exactly as
///   [`crate::all_reduce`] does: on the host for CPU tensors; for CUDA tensors (feature `cuda`)
///   device-to-device on the rank's stream, so the op can be captured in a graph when the rank
///   runs on candle's stream. Without the feature a CUDA tensor gets
///   [`Error::CudaNotImplemented`].
/// * **Backward**, for `Sum` only: the identity (the gradient of the result is passed to the
///   input unchanged). That is the gradient of a rank's *partial* when every rank computes the
///   same loss from the replicated result, which is how the output of a row-parallel layer is
///   used (Megatron's `g` operator). Other reductions have no backward here
///   (`BackwardNotSupported`).
///
/// Same thread and collective rules as [`crate::all_reduce`]: the op holds a clone of the
/// group handle, and runs only on that group's rank's thread.
#[derive(Clone, Debug)]
pub struct AllReduceOp {
    group: Group,
    op: ReduceOp,
}

impl AllReduceOp {
    /// The all-reduce of `op` over `group`.
    pub fn new(group: &Group, op: ReduceOp) -> Self {
        AllReduceOp {
            group: group.clone(),
            op,
        }
    }
}

/// The elements a layout addresses, in row-major order.
fn gather<T: Copy>(data: &[T], layout: &Layout) -> Result<Vec<T>, Error> {
    let out_of_range = || {
        Error::Shard {
        op: "AllReduceOp",
        detail: format!(
            "the layout {layout:?} does not lie in its storage of {} elements (a candle invariant broke); report it",
            data.len()
        ),
    }
    };
    if let Some((start, end)) = layout.contiguous_offsets() {
        return data
            .get(start..end)
            .map(<[T]>::to_vec)
            .ok_or_else(out_of_range);
    }
    let dims = layout.dims();
    let stride = layout.stride();
    let n = layout.shape().elem_count();
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; dims.len()];
    for _ in 0..n {
        let offset =
            layout.start_offset() + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(*data.get(offset).ok_or_else(out_of_range)?);
        // Advance the multi-index, last dimension fastest.
        for d in (0..dims.len()).rev() {
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

impl AllReduceOp {
    fn reduce<T: TensorElement>(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> Result<CpuStorage, Error> {
        let elements = gather(storage.as_slice::<T>()?, layout)?;
        let mut buffer = {
            let _window = self.group.window();
            symmem::alloc_from_host(&elements)?
        };
        self.group.all_reduce(&mut buffer, self.op)?;
        Ok(<T as WithDType>::to_cpu_storage_owned(
            buffer.to_host_vec()?,
        ))
    }
}

#[cfg(feature = "cuda")]
impl AllReduceOp {
    /// The CUDA forward: copy into a buffer of the group's symmetric pool on the rank's stream,
    /// all-reduce it in place, copy the result into new candle storage.
    fn reduce_cuda<T: TensorElement>(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<candle_core::CudaStorage, Error> {
        let op = "AllReduceOp";
        if layout.shape().elem_count() == 0 {
            // Nothing to reduce (every rank passes the same shape); candle's own empty storage.
            use candle_core::backend::BackendDevice;
            return Ok(storage
                .device
                .zeros_impl(layout.shape(), <T as WithDType>::DTYPE)?);
        }
        let mut buffer = {
            let _window = self.group.window();
            crate::cuda::storage_to_buffer::<T>(op, storage, layout)?
        };
        self.group.all_reduce(&mut buffer, self.op)?;
        crate::cuda::buffer_to_storage(op, &buffer, &storage.device)
    }
}

impl CustomOp1 for AllReduceOp {
    fn name(&self) -> &'static str {
        "symmem-all-reduce"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use candle_core::DType as C;
        let out = match storage.dtype() {
            C::F32 => self.reduce::<f32>(storage, layout),
            C::F64 => self.reduce::<f64>(storage, layout),
            C::F16 => self.reduce::<half::f16>(storage, layout),
            C::BF16 => self.reduce::<half::bf16>(storage, layout),
            C::U8 => self.reduce::<u8>(storage, layout),
            C::U32 => self.reduce::<u32>(storage, layout),
            C::I32 => self.reduce::<i32>(storage, layout),
            C::I64 => self.reduce::<i64>(storage, layout),
            dtype => Err(Error::UnsupportedDType {
                op: "AllReduceOp",
                dtype,
            }),
        }?;
        Ok((out, layout.shape().clone()))
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        _layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        Err(Error::CudaNotImplemented {
            op: "AllReduceOp",
            device: storage.device().location(),
        }
        .into())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::DType as C;
        let out = match storage.dtype() {
            C::F32 => self.reduce_cuda::<f32>(storage, layout),
            C::F64 => self.reduce_cuda::<f64>(storage, layout),
            C::F16 => self.reduce_cuda::<half::f16>(storage, layout),
            C::BF16 => self.reduce_cuda::<half::bf16>(storage, layout),
            C::U8 => self.reduce_cuda::<u8>(storage, layout),
            C::U32 => self.reduce_cuda::<u32>(storage, layout),
            C::I32 => self.reduce_cuda::<i32>(storage, layout),
            C::I64 => self.reduce_cuda::<i64>(storage, layout),
            dtype => Err(Error::UnsupportedDType {
                op: "AllReduceOp",
                dtype,
            }),
        }?;
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        match self.op {
            ReduceOp::Sum => Ok(Some(grad_res.clone())),
            _ => Err(candle_core::Error::BackwardNotSupported { op: self.name() }),
        }
    }
}
