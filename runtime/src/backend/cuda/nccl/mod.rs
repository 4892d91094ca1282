//! NCCL communicators: collectives, symmetric windows, the validation exchange and splits.

mod abort;
mod communicator;
mod core;
mod hints;
mod scratch;
#[cfg(test)]
mod tests;

pub use abort::AbortRegistry;
pub(crate) use communicator::CommPlace;
pub use communicator::{CommOwnership, CommSettings, NcclComm};
