//! Uses symmem's CUDA backend and cudarc's (dynamically linked) driver and cuBLAS APIs in one
//! crate: it compiles only if the two agree on one cudarc.

use std::sync::Arc;

use cudarc::driver::CudaStream;

/// The rank's stream, as the cudarc type candle and cuBLAS take.
pub fn rank_stream(ctx: &symmem::RankContext) -> Option<Arc<CudaStream>> {
    symmem::cuda::cuda_stream(ctx)
}

/// A cuBLAS handle on the rank's stream.
pub fn blas(ctx: &symmem::RankContext) -> Option<cudarc::cublas::CudaBlas> {
    rank_stream(ctx).and_then(|s| cudarc::cublas::CudaBlas::new(s).ok())
}
