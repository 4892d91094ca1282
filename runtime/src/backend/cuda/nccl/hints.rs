//! The hints of a communicator's errors: what to check when a call fails.

/// A collective (or the communicator) failed.
pub const HINT_COLL: &str = "check that every rank calls the same collectives in the same order with the same counts and types (SYMMEM_VALIDATE=1 checks it); set NCCL_DEBUG=WARN for NCCL's own diagnostics";
/// The GPU is out of memory.
pub const HINT_MEM: &str = "the GPU is out of memory for a symmetric segment: free buffers, call group.empty_cache(), or lower the sizes";
/// A window registration failed.
pub const HINT_WIN: &str = "NCCL could not register the segment as a symmetric window; set NCCL_DEBUG=WARN for details, or update NCCL (2.28+ recommended)";
