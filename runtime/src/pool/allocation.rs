//! A block handed out by a pool, with its address and (for symmetric pools) window position.

use crate::backend::operand::SymRef;
use crate::pool::arena::Block;

/// A block handed out by a pool, with its address and (for symmetric pools) window position.
///
/// Kept whole from the pool to the buffer and back: the quick cache stores it as is, so a
/// cached block needs no segment lookup when it is handed out again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allocation {
    pub(crate) block: Block,
    pub(crate) ptr: u64,
    pub(crate) sym: Option<SymRef>,
}
