//! The unsharded MLP in f64 on the host: the reference the sharded runs are checked against.
//!
//! It uses the same generator as the ranks, with every weight and input value rounded to the
//! storage type first (what the ranks hold), then computes exactly in f64: the difference to a
//! run is the run's arithmetic error only. Weights are generated on the fly and never stored,
//! so the memory is `O(rows * ffn)` whatever the model size, and the work is spread over the
//! available cores. The MLP treats token rows independently, so a reference over the first
//! `rows` rows checks those rows of any longer run exactly.

use std::collections::TryReserveError;

use symmem::Element;

use crate::gen::{self, Weight};

/// Threads the reference uses (the available cores, at most 32).
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 32)
}

/// Split `0..n` into at most `parts` contiguous ranges.
fn ranges(n: usize, parts: usize) -> Vec<(usize, usize)> {
    let per = n.div_ceil(parts.max(1)).max(1);
    (0..n).step_by(per).map(|a| (a, (a + per).min(n))).collect()
}

/// `x @ w` for a generated `w` of shape `[k, n]`: `x` is `[rows, k]`, the result `[rows, n]`.
fn gen_matmul(
    x: &[f64],
    rows: usize,
    k: usize,
    n: usize,
    w: impl Fn(usize, usize) -> f64 + Sync,
) -> Vec<f64> {
    let chunks = ranges(n, threads());
    let parts: Vec<Vec<f64>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|&(c0, c1)| {
                let w = &w;
                s.spawn(move || {
                    let width = c1 - c0;
                    let mut out = vec![0.0f64; rows * width];
                    let mut wrow = vec![0.0f64; width];
                    for kk in 0..k {
                        for (j, v) in wrow.iter_mut().enumerate() {
                            *v = w(kk, c0 + j);
                        }
                        for r in 0..rows {
                            let a = x[r * k + kk];
                            let o = &mut out[r * width..(r + 1) * width];
                            for (o, v) in o.iter_mut().zip(&wrow) {
                                *o += a * v;
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = vec![0.0f64; rows * n];
    for (&(c0, c1), part) in chunks.iter().zip(&parts) {
        let width = c1 - c0;
        for r in 0..rows {
            out[r * n + c0..r * n + c1].copy_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
    out
}

/// `v` rounded to the storage type `T` (as the ranks hold it), back in f64.
fn round_to<T: Element>(v: f64) -> f64 {
    T::from_f64(v).to_f64()
}

/// The first `rows` token rows of the unsharded model's output (`[rows, hidden]`, f64), for
/// weights and input stored as `T`. Fails when the host cannot hold the input rows.
pub fn reference<T: Element>(
    seed: u64,
    hidden: usize,
    ffn: usize,
    layers: usize,
    rows: usize,
) -> Result<Vec<f64>, TryReserveError> {
    let mut x: Vec<f64> = gen::input(seed, rows, hidden, round_to::<T>)?;
    for l in 0..layers {
        let (tg, tu, td) = (
            Weight::Gate.tensor_id(l),
            Weight::Up.tensor_id(l),
            Weight::Down.tensor_id(l),
        );
        let sg = Weight::Gate.scale(hidden, ffn);
        let sd = Weight::Down.scale(hidden, ffn);
        // Gate and up together: columns [0, ffn) are gate, [ffn, 2 ffn) are up.
        let gu = gen_matmul(&x, rows, hidden, 2 * ffn, |k, j| {
            if j < ffn {
                round_to::<T>(gen::value(seed, tg, (k * ffn + j) as u64, sg))
            } else {
                round_to::<T>(gen::value(seed, tu, (k * ffn + j - ffn) as u64, sg))
            }
        });
        let mut h = vec![0.0f64; rows * ffn];
        for r in 0..rows {
            for j in 0..ffn {
                let g = gu[r * 2 * ffn + j];
                let u = gu[r * 2 * ffn + ffn + j];
                h[r * ffn + j] = g / (1.0 + (-g).exp()) * u;
            }
        }
        let y = gen_matmul(&h, rows, ffn, hidden, |j, c| {
            round_to::<T>(gen::value(seed, td, (j * hidden + c) as u64, sd))
        });
        for (xi, yi) in x.iter_mut().zip(&y) {
            *xi += yi;
        }
    }
    Ok(x)
}

/// `||out - reference|| / ||reference||` (Euclidean norms; `out` may be longer than
/// `reference`: only its first `reference.len()` values are compared).
pub fn rel_error(out: &[f64], reference: &[f64]) -> f64 {
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (o, r) in out.iter().zip(reference) {
        num += (o - r) * (o - r);
        den += r * r;
    }
    if out.len() < reference.len() || num.is_nan() {
        return f64::INFINITY;
    }
    if den == 0.0 {
        return if num == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (num / den).sqrt()
}
