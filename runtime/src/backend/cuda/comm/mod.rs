//! NCCL communicators: collectives, symmetric windows, the validation exchange and splits.

mod abort;
mod collectives;
mod communicator;
mod core;
mod exchange;
mod hints;
mod scratch;
mod segments;

pub(crate) use abort::AbortRegistry;
pub(crate) use communicator::CommSettings;
pub use communicator::NcclComm;
pub use segments::NCCL_WIN_COLL_SYMMETRIC;
