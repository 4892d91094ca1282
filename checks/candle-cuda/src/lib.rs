//! candle's CUDA device, symmem's CUDA backend and symmem-candle's layers in one crate: it
//! compiles only if they agree on one cudarc.

use std::sync::Arc;

/// The rank's stream, as the cudarc type candle's CUDA device is built on.
pub fn rank_stream(ctx: &symmem::RankContext) -> Option<Arc<candle_core::cuda::cudarc::driver::CudaStream>> {
    symmem::cuda::cuda_stream(ctx)
}

/// A tensor-parallel MLP of symmem-candle next to a CUDA device of candle.
pub fn devices() -> candle_core::Result<(candle_core::Device, &'static str)> {
    let d = candle_core::Device::new_cuda(0)?;
    Ok((d, std::any::type_name::<symmem_candle::TpMlp>()))
}

/// symmem-candle's CUDA path on candle's own device type: a rank started on candle's stream.
pub fn rank_on_candles_stream(
    device: &candle_core::Device,
    id: &symmem::cuda::UniqueId,
) -> symmem_candle::Result<symmem::RankContext> {
    symmem_candle::cuda::init_rank_on_device(device, 0, 1, id, symmem::RankConfig::default())
}
