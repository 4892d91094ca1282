//! Helpers shared by the integration tests (each test file includes this module).

#![allow(dead_code)]

use std::time::Duration;

use symmem_runtime::host::HostConfig;
use symmem_runtime::{Element, RankConfig};

/// A small deterministic generator (xorshift64*), so that every rank of a test can derive the
/// same "random" sequence from a seed without sharing state.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, n)` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The exact bit patterns of a slice, for bit-for-bit comparisons (`to_f64` is injective on
/// the non-NaN values of every element type, and keeps the sign of zero).
pub fn bits<T: Element>(v: &[T]) -> Vec<u64> {
    v.iter().map(|x| x.to_f64().to_bits()).collect()
}

/// Settings with validation on (or off) and a short timeout.
pub fn config(world_size: usize, validate: bool, timeout: Duration) -> HostConfig {
    HostConfig::new(world_size).with_rank(
        RankConfig::new()
            .with_validate(validate)
            .with_timeout(timeout)
            .with_symmetric_pool_limit(None)
            .with_default_pool_limit(None),
    )
}

/// Bytes a request of `bytes` occupies in a pool: rounded up to 512, at least 512.
pub fn rounded(bytes: usize) -> usize {
    bytes.max(1).div_ceil(512) * 512
}

/// The text of a panic payload.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}
