//! What the arena reports: [`ArenaError`] (an invalid free, segment size or configuration).

use std::fmt;

use super::segment::SegmentId;

/// Errors reported by an [`Arena`](super::Arena).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaError {
    /// [`Arena::free`](super::Arena::free) was given a block that is not currently allocated in
    /// this arena (double free, stale block of a released segment, or a
    /// block of another arena). The arena is unchanged.
    NotAllocated {
        /// Segment of the offending block.
        segment: SegmentId,
        /// Offset of the offending block.
        offset: usize,
        /// Size of the offending block.
        size: usize,
    },
    /// A segment size that is zero or not a multiple of the alignment.
    InvalidSegmentSize {
        /// The size given.
        size: usize,
        /// The arena's alignment.
        alignment: usize,
    },
    /// An invalid [`ArenaConfig`](super::config::ArenaConfig).
    InvalidConfig {
        /// Which rule is broken.
        reason: &'static str,
    },
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArenaError::NotAllocated {
                segment,
                offset,
                size,
            } => write!(
                f,
                "block (segment {segment}, offset {offset}, size {size}) is not allocated in \
                 this pool (double free, or a block of another pool)"
            ),
            ArenaError::InvalidSegmentSize { size, alignment } => write!(
                f,
                "invalid segment size {size}: must be a non-zero multiple of the alignment \
                 {alignment}"
            ),
            ArenaError::InvalidConfig { reason } => {
                write!(f, "invalid arena configuration: {reason}")
            }
        }
    }
}

impl std::error::Error for ArenaError {}
