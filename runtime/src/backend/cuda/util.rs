//! Integer arithmetic of the CUDA backend: rounding sizes up to a granularity.

/// Round `n` up to a multiple of `m` (`m > 0`), `None` on overflow.
pub fn round_up(n: usize, m: usize) -> Option<usize> {
    n.checked_add(m - 1).map(|v| v / m * m)
}
