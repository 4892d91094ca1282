//! A communicator's device scratch memory: the barrier word and the validation records.

use super::hints::HINT_MEM;
use crate::backend::cuda::ffi::DeviceAlloc;
use crate::error::Result;

/// Bytes per rank of a validation-exchange record (a 4-byte length, then the data).
pub const RECORD: usize = 256;

/// Device scratch memory of a communicator (freed in field order).
pub struct Scratch {
    /// One f32 for barriers.
    pub barrier: DeviceAlloc,
    /// Send record of the validation exchange (`RECORD` bytes).
    pub xsend: DeviceAlloc,
    /// Gathered records (`RECORD * size` bytes).
    pub xrecv: DeviceAlloc,
}

impl Scratch {
    /// The scratch of a communicator of `size` ranks, in the current context (what was
    /// allocated is freed again on failure).
    pub fn new(size: usize) -> Result<Scratch> {
        let barrier = DeviceAlloc::new(256, HINT_MEM)?;
        let xsend = DeviceAlloc::new(RECORD, HINT_MEM)?;
        let xrecv = DeviceAlloc::new(RECORD * size, HINT_MEM)?;
        Ok(Scratch {
            barrier,
            xsend,
            xrecv,
        })
    }
}
