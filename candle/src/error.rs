//! The error type of symmem-candle.

use candle_core::{DType, DeviceLocation};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in symmem-candle: the message says what happened and what to
/// do about it.
///
/// It converts into [`candle_core::Error`] (a candle error comes back as itself, any other
/// variant is wrapped), so `?` works inside [`candle_core::Module::forward`] and candle code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the symmem runtime (no rank context, wrong thread, pool exhausted, a
    /// collective that failed or timed out, ...).
    #[error(transparent)]
    Symmem(#[from] symmem::Error),

    /// An error of candle (a tensor operation that failed).
    #[error("symmem-candle: candle failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// The tensor (or the target device) is a CUDA device, and this build lacks the `cuda`
    /// feature.
    #[error("symmem-candle: {op}: the tensor is on {device:?}, and this build of symmem-candle has no CUDA path: enable its `cuda` feature (`symmem-candle = {{ .., features = [\"cuda\"] }}`, next to candle-core's `cuda`). It does not copy through the host behind your back: move the tensor to the CPU explicitly (`tensor.to_device(&Device::Cpu)`) if a host copy is what you want")]
    CudaNotImplemented {
        /// The operation.
        op: &'static str,
        /// Where the tensor is.
        device: DeviceLocation,
    },

    /// The tensor (or the target device) is on a device this crate does not serve.
    #[error("symmem-candle: {op}: tensors on {device:?} are not supported; only CPU tensors are (move the tensor with `tensor.to_device(&Device::Cpu)`)")]
    UnsupportedDevice {
        /// The operation.
        op: &'static str,
        /// Where the tensor is.
        device: DeviceLocation,
    },

    /// A CUDA tensor or device that does not fit the rank: a host-backend rank, another GPU,
    /// or a stream other than the rank's during graph capture.
    #[error("symmem-candle: {op}: {detail}")]
    WrongDevice {
        /// The operation.
        op: &'static str,
        /// What does not fit and what to do.
        detail: String,
    },

    /// The tensor's dtype is not the buffer's element type.
    #[error("symmem-candle: {op}: the tensor's dtype is {tensor:?} but the buffer's element type is {buffer}; convert the tensor with `tensor.to_dtype(..)` or use a `Buffer` of the matching element type")]
    DTypeMismatch {
        /// The operation.
        op: &'static str,
        /// The tensor's dtype.
        tensor: DType,
        /// The buffer's element type.
        buffer: symmem::DType,
    },

    /// The candle dtype has no symmem element type.
    #[error("symmem-candle: {op}: candle dtype {dtype:?} has no symmem element type; use f32, f64, f16, bf16, u8, u32, i32 or i64 (convert with `tensor.to_dtype(..)`)")]
    UnsupportedDType {
        /// The operation.
        op: &'static str,
        /// The dtype.
        dtype: DType,
    },

    /// A shape does not hold as many elements as the buffer.
    #[error("symmem-candle: {op}: shape {shape:?} holds {shape_elements} elements but the buffer holds {buffer_len}; pass a shape whose element count equals the buffer's length")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// The requested dimensions.
        shape: Vec<usize>,
        /// Elements the shape holds.
        shape_elements: usize,
        /// Elements the buffer holds.
        buffer_len: usize,
    },

    /// Weights or a tensor cannot be sharded or used as asked (a dimension that does not divide
    /// by the world size, a rank out of range, a tensor of the wrong rank or size).
    #[error("symmem-candle: {op}: {detail}")]
    Shard {
        /// The operation.
        op: &'static str,
        /// What is wrong and what is expected.
        detail: String,
    },
}

impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(c) => c,
            other => candle_core::Error::wrap(other),
        }
    }
}
