//! NCCL communicators: collectives, symmetric windows, the validation exchange and splits.

mod abort;
mod communicator;
mod core;
mod hints;
mod scratch;

pub use abort::AbortRegistry;
pub use communicator::{CommSettings, NcclComm};
