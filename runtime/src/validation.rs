//! Validation mode: ranks compare what they are about to do before each collective step.
//!
//! Off by default; on with [`crate::RankConfig::validate`] or `SYMMEM_VALIDATE=1`. Before each
//! symmetric segment is created and before each collective, every rank of the group publishes a
//! short description (operation, element type, count, window and offset) through the backend's
//! host-side exchange, bounded by a timeout. A mismatch returns [`crate::Error::RankDivergence`] on
//! every rank, naming the ranks and their values, instead of a hang or silently wrong results.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::traits::CommBackend;
use crate::error::{Error, Result};

/// Per-group validation settings.
#[derive(Clone, Debug)]
pub(crate) struct DivergenceCheck {
    pub(crate) enabled: bool,
    pub(crate) timeout: Duration,
    pub(crate) group: Arc<str>,
}

impl DivergenceCheck {
    /// Compare `descriptor` across the ranks of `comm`; `what` names the step for the error.
    pub(crate) fn check(&self, comm: &dyn CommBackend, what: &str, descriptor: &str) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        self.check_always(comm, what, descriptor)
    }

    /// [`DivergenceCheck::check`] whether validation mode is on or not (for rare collective
    /// steps that would deadlock when ranks diverge, such as segment creation).
    pub(crate) fn check_always(
        &self,
        comm: &dyn CommBackend,
        what: &str,
        descriptor: &str,
    ) -> Result<()> {
        let mine = format!("{what}: {descriptor}");
        let all = comm.exchange(mine.as_bytes(), self.timeout)?;
        if all.iter().all(|d| d.as_slice() == mine.as_bytes()) {
            return Ok(());
        }
        let details = all
            .iter()
            .enumerate()
            .map(|(r, d)| format!("rank {r}: {}", String::from_utf8_lossy(d)))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::RankDivergence {
            group: self.group.to_string(),
            what: what.to_string(),
            details,
        })
    }
}
