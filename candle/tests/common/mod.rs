//! Helpers shared by the integration tests (each test file includes this module).

#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use symmem::host::HostConfig;
use symmem::{RankConfig, RankContext};

/// How long a collective waits for its peers before failing (so a divergence fails, not hangs).
pub const COLLECTIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a whole test body may run.
pub const TEST_LIMIT: Duration = Duration::from_secs(240);

/// Run `f` on a helper thread and fail the test if it has not finished within [`TEST_LIMIT`]
/// (a hang becomes a failure; a panic in `f` is resumed here).
pub fn within_limit<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(TEST_LIMIT) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(Ok(r)) => r,
            Ok(Err(p)) | Err(p) => std::panic::resume_unwind(p),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {TEST_LIMIT:?}: something hangs")
        }
    }
}

/// `host::run_with` with validation on and a short collective timeout.
pub fn run<R: Send>(world_size: usize, f: impl Fn(&RankContext) -> R + Send + Sync) -> Vec<R> {
    let config = HostConfig::new(world_size).with_rank(
        RankConfig::new()
            .with_validate(true)
            .with_timeout(COLLECTIVE_TIMEOUT),
    );
    symmem::host::run_with(config, f).expect("the launch starts")
}

/// A small deterministic generator (xorshift64*).
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
    /// Uniform in `[-1, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// A `shape` tensor of uniform values in `[-scale, scale)` of `dtype` (drawn in f64, then
/// rounded to `dtype` once).
pub fn random(rng: &mut Rng, shape: &[usize], scale: f64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.uniform() * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("a CPU tensor")
}

/// The tensor's values as f64, flattened (exact for every float dtype).
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("a CPU tensor")
}
