//! The arena's policy knobs: [`ArenaConfig`] (alignment and segment sizing) and its rules.

use super::error::ArenaError;

/// Configuration of an [`Arena`](super::Arena). See [`ArenaConfig::validate`] for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaConfig {
    /// Alignment of every block offset and size, in bytes: a power of two.
    pub alignment: usize,
    /// Requests (after rounding) up to this many bytes are "small" and share
    /// segments of `small_segment` bytes.
    pub small_request_max: usize,
    /// Size of the segments created for small requests, in bytes.
    pub small_segment: usize,
    /// Segments for large requests are rounded up to a multiple of this.
    pub large_segment_rounding: usize,
}

impl Default for ArenaConfig {
    /// Alignment 512 B, small requests up to 1 MiB in 2 MiB segments, large
    /// segments rounded up to 2 MiB.
    fn default() -> Self {
        ArenaConfig {
            alignment: 512,
            small_request_max: 1 << 20,
            small_segment: 2 << 20,
            large_segment_rounding: 2 << 20,
        }
    }
}

impl ArenaConfig {
    /// Checks the configuration: `alignment` is a power of two;
    /// `small_segment` and `large_segment_rounding` are non-zero multiples of
    /// `alignment`; `small_segment` can hold the largest small request
    /// (`small_request_max` rounded up to the alignment).
    pub fn validate(&self) -> Result<(), ArenaError> {
        let bad = |reason: &'static str| Err(ArenaError::InvalidConfig { reason });
        if !self.alignment.is_power_of_two() {
            return bad("alignment must be a power of two");
        }
        let mask = self.alignment - 1;
        if self.small_segment == 0 || self.small_segment & mask != 0 {
            return bad("small_segment must be a non-zero multiple of alignment");
        }
        if self.large_segment_rounding == 0 || self.large_segment_rounding & mask != 0 {
            return bad("large_segment_rounding must be a non-zero multiple of alignment");
        }
        match self.small_request_max.checked_add(mask) {
            Some(v) if v & !mask <= self.small_segment => Ok(()),
            _ => bad("small_segment must hold small_request_max rounded up to alignment"),
        }
    }
}
