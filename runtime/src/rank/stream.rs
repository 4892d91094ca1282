//! A rank's stream handle.

use symmem_rules::refusals;

use std::sync::Arc;

use crate::backend::traits::{HostOp, StreamBackend};
use crate::error::Result;
use crate::thread::refuse_if_capturing;

/// A rank's stream handle.
#[derive(Clone)]
pub struct Stream {
    pub(crate) inner: Arc<dyn StreamBackend>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

impl Stream {
    /// Wait until all work queued on the stream has finished. Refused during capture.
    pub fn synchronize(&self) -> Result<()> {
        refuse_if_capturing(&refusals::STREAM_SYNCHRONIZE)?;
        self.inner.synchronize()
    }

    /// Queue a host closure as stream work (host backend): it runs now, or is recorded while
    /// capturing and runs at every replay. Device addresses from [`crate::Buffer::device_ptr`] are
    /// host addresses there.
    pub fn launch_host(&self, op: impl FnMut() -> Result<()> + Send + 'static) -> Result<()> {
        self.inner.launch_host(Box::new(op) as HostOp)
    }

    /// The backend stream (for backend-specific extensions, such as the raw `CUstream`).
    pub fn backend(&self) -> &Arc<dyn StreamBackend> {
        &self.inner
    }
}
