//! Copies between candle tensors and symmem buffers.

use candle_core::{DeviceLocation, Shape, Storage, Tensor, WithDType};
use symmem::Buffer;

use crate::error::{Error, Result};

mod sealed {
    pub trait Sealed {}
}

/// An element type that both candle tensors and symmem buffers hold: `f32`, `f64`,
/// [`f16`](struct@half::f16), [`bf16`](struct@half::bf16), `u8`, `u32`, `i32` and `i64`. Sealed.
///
/// `<T as WithDType>::DTYPE` (candle's tag) and `<T as symmem::Element>::DTYPE` (symmem's) name
/// the same type.
#[cfg(not(feature = "cuda"))]
pub trait TensorElement: symmem::Element + WithDType + sealed::Sealed {}

/// An element type that both candle tensors and symmem buffers hold: `f32`, `f64`,
/// [`f16`](struct@half::f16), [`bf16`](struct@half::bf16), `u8`, `u32`, `i32` and `i64`. Sealed.
///
/// `<T as WithDType>::DTYPE` (candle's tag) and `<T as symmem::Element>::DTYPE` (symmem's) name
/// the same type. With the `cuda` feature it is also one of candle's CUDA storage types.
#[cfg(feature = "cuda")]
pub trait TensorElement:
    symmem::Element
    + WithDType
    + candle_core::cuda_backend::CudaDType
    + candle_core::cuda_backend::cudarc::driver::DeviceRepr
    + candle_core::cuda_backend::cudarc::driver::ValidAsZeroBits
    + sealed::Sealed
{
}

macro_rules! tensor_element {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl TensorElement for $t {}
    )*};
}
tensor_element!(f32, f64, half::f16, half::bf16, u8, u32, i32, i64);

/// symmem's element type for a candle dtype, or [`Error::UnsupportedDType`] for the dtypes
/// symmem has no element type for (`i16` and the 8-, 6- and 4-bit floats).
pub fn symmem_dtype(dtype: candle_core::DType) -> Result<symmem::DType> {
    use candle_core::DType as C;
    use symmem::DType as S;
    Ok(match dtype {
        C::F32 => S::F32,
        C::F64 => S::F64,
        C::F16 => S::F16,
        C::BF16 => S::BF16,
        C::U8 => S::U8,
        C::U32 => S::U32,
        C::I32 => S::I32,
        C::I64 => S::I64,
        other => {
            return Err(Error::UnsupportedDType {
                op: "symmem_dtype",
                dtype: other,
            })
        }
    })
}

/// `Ok` for the CPU, and for CUDA devices with the `cuda` feature; the error for any other
/// device. Without the feature a CUDA device gets [`Error::CudaNotImplemented`] (build with
/// the `cuda` feature): it is refused rather than served by a hidden host round-trip.
pub(crate) fn check_location(op: &'static str, device: DeviceLocation) -> Result<()> {
    match device {
        DeviceLocation::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        DeviceLocation::Cuda { .. } => Ok(()),
        #[cfg(not(feature = "cuda"))]
        DeviceLocation::Cuda { .. } => Err(Error::CudaNotImplemented { op, device }),
        device @ DeviceLocation::Metal { .. } => Err(Error::UnsupportedDevice { op, device }),
    }
}

/// Whether `device` is a CUDA device (served by this build: the `cuda` feature).
#[cfg(feature = "cuda")]
fn on_cuda(device: DeviceLocation) -> bool {
    matches!(device, DeviceLocation::Cuda { .. })
}

fn check_dtype<T: TensorElement>(op: &'static str, tensor: &Tensor) -> Result<()> {
    if tensor.dtype() != <T as WithDType>::DTYPE {
        return Err(Error::DTypeMismatch {
            op,
            tensor: tensor.dtype(),
            buffer: <T as symmem::Element>::DTYPE,
        });
    }
    Ok(())
}

/// Call `f` with the tensor's elements in row-major order, read in place from its CPU storage
/// (a non-contiguous tensor is made contiguous first, one extra copy).
fn with_cpu_slice<T: TensorElement, R>(
    op: &'static str,
    tensor: &Tensor,
    f: impl FnOnce(&[T]) -> Result<R>,
) -> Result<R> {
    check_location(op, tensor.device().location())?;
    check_dtype::<T>(op, tensor)?;
    let contiguous;
    let tensor = if tensor.is_contiguous() {
        tensor
    } else {
        contiguous = tensor.force_contiguous()?;
        &contiguous
    };
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(Error::UnsupportedDevice {
            op,
            device: tensor.device().location(),
        });
    };
    let data = cpu.as_slice::<T>()?;
    let elements = layout
        .contiguous_offsets()
        .and_then(|(start, end)| data.get(start..end))
        .ok_or_else(|| Error::Shard {
            op,
            detail: format!(
                "the tensor's layout {layout:?} does not lie in its storage of {} elements (a candle invariant broke); report it",
                data.len()
            ),
        })?;
    f(elements)
}

/// Copy a tensor into a new buffer of the current routing (inside `group.window()` or a
/// `#[symmetric_memory]` body the buffer comes from the group's symmetric pool).
///
/// * **Copy**: the tensor's elements are copied in row-major order (a non-contiguous tensor is
///   made contiguous first); the buffer and the tensor share nothing afterwards, and either
///   may drop first. From a CPU tensor the copy is blocking, so it is refused during graph
///   capture. From a CUDA tensor (feature `cuda`; the rank must be a CUDA rank on the tensor's
///   GPU) it is a device-to-device copy queued on the rank's stream, ordered with candle's
///   stream (see the `cuda` module: no events when the rank runs on candle's stream, which
///   also makes it capturable).
/// * **Thread**: call it on a rank's thread (the buffer is that rank's); the tensor may have
///   been made on any thread.
/// * **Errors**: no rank context on the thread, `T` not the tensor's dtype
///   ([`Error::DTypeMismatch`]), a CUDA tensor without the `cuda` feature
///   ([`Error::CudaNotImplemented`]: no hidden host round-trip) or on another GPU or a host
///   rank ([`Error::WrongDevice`]), or the pool's errors.
pub fn to_buffer<T: TensorElement>(tensor: &Tensor) -> Result<Buffer<T>> {
    #[cfg(feature = "cuda")]
    if on_cuda(tensor.device().location()) {
        check_dtype::<T>("to_buffer", tensor)?;
        return crate::cuda::tensor_to_buffer::<T>("to_buffer", tensor);
    }
    with_cpu_slice("to_buffer", tensor, |elements| {
        Ok(symmem::alloc_from_host(elements)?)
    })
}

/// Copy a CPU tensor into an existing buffer of as many elements (for example a symmetric
/// buffer kept across steps, so that no allocation happens per step). Same rules as
/// [`to_buffer`]; a length mismatch is [`Error::ShapeMismatch`].
pub fn copy_to_buffer<T: TensorElement>(tensor: &Tensor, buffer: &mut Buffer<T>) -> Result<()> {
    #[cfg(feature = "cuda")]
    if on_cuda(tensor.device().location()) {
        check_dtype::<T>("copy_to_buffer", tensor)?;
        if tensor.elem_count() != buffer.len() {
            return Err(Error::ShapeMismatch {
                op: "copy_to_buffer",
                shape: tensor.dims().to_vec(),
                shape_elements: tensor.elem_count(),
                buffer_len: buffer.len(),
            });
        }
        return crate::cuda::tensor_into_buffer::<T>("copy_to_buffer", tensor, buffer);
    }
    with_cpu_slice("copy_to_buffer", tensor, |elements| {
        if elements.len() != buffer.len() {
            return Err(Error::ShapeMismatch {
                op: "copy_to_buffer",
                shape: tensor.dims().to_vec(),
                shape_elements: elements.len(),
                buffer_len: buffer.len(),
            });
        }
        Ok(buffer.copy_from_host(elements)?)
    })
}

/// Copy a buffer into a new tensor of `shape` on `device` (the CPU, or with the `cuda` feature
/// a CUDA device of the rank's GPU).
///
/// * **Copy**: the buffer's elements are read (after the work queued on the rank's stream, so
///   after a collective that wrote the buffer) into the new tensor's own storage: blocking for
///   the CPU; for a CUDA device a device-to-device copy queued on the rank's stream into memory
///   candle allocates and owns (never a wrapper of the buffer), ordered with candle's stream.
///   The buffer stays valid and unchanged, and may drop before or after the tensor.
/// * **Thread**: call it on the thread of the buffer's rank; the tensor may then go anywhere.
/// * **Errors**: the shape does not hold `buffer.len()` elements ([`Error::ShapeMismatch`]), a
///   CUDA `device` without the `cuda` feature ([`Error::CudaNotImplemented`]) or not the rank's
///   GPU ([`Error::WrongDevice`]), a blocking copy during capture or a call on another thread
///   (symmem's errors).
pub fn from_buffer<T: TensorElement>(
    buffer: &Buffer<T>,
    shape: impl Into<Shape>,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let shape = shape.into();
    check_location("from_buffer", device.location())?;
    if shape.elem_count() != buffer.len() {
        return Err(Error::ShapeMismatch {
            op: "from_buffer",
            shape: shape.dims().to_vec(),
            shape_elements: shape.elem_count(),
            buffer_len: buffer.len(),
        });
    }
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(cuda) = device {
        return crate::cuda::buffer_to_tensor("from_buffer", buffer, shape, cuda);
    }
    let host = buffer.to_host_vec()?;
    Ok(Tensor::from_vec(host, shape, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn devices_other_than_the_cpu_are_refused_by_name() {
        assert!(check_location("t", DeviceLocation::Cpu).is_ok());
        let e = check_location("to_buffer", DeviceLocation::Cuda { gpu_id: 1 }).unwrap_err();
        assert!(matches!(e, Error::CudaNotImplemented { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("to_buffer") && text.contains("enable its `cuda` feature"),
            "{text}"
        );
        assert!(text.contains("gpu_id: 1"), "{text}");
        let e = check_location("from_buffer", DeviceLocation::Metal { gpu_id: 0 }).unwrap_err();
        assert!(matches!(e, Error::UnsupportedDevice { .. }), "{e:?}");
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_devices_are_served_with_the_feature_and_metal_is_refused() {
        assert!(check_location("t", DeviceLocation::Cpu).is_ok());
        assert!(check_location("t", DeviceLocation::Cuda { gpu_id: 3 }).is_ok());
        let e = check_location("from_buffer", DeviceLocation::Metal { gpu_id: 0 }).unwrap_err();
        assert!(matches!(e, Error::UnsupportedDevice { .. }), "{e:?}");
    }

    #[test]
    fn every_element_type_maps_to_the_same_symmem_dtype() {
        fn same<T: TensorElement>() {
            assert_eq!(
                symmem_dtype(<T as WithDType>::DTYPE).unwrap(),
                <T as symmem::Element>::DTYPE
            );
        }
        same::<f32>();
        same::<f64>();
        same::<half::f16>();
        same::<half::bf16>();
        same::<u8>();
        same::<u32>();
        same::<i32>();
        same::<i64>();
        assert!(matches!(
            symmem_dtype(candle_core::DType::I16),
            Err(Error::UnsupportedDType { .. })
        ));
    }
}
