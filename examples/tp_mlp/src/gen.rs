//! Deterministic weights and input, generated from the seed (nothing is downloaded).
//!
//! The generator is part of the example's contract: `benches/py/tp_mlp_torch.py` implements
//! the same one, so both sides compute with identical weights. Element `i` (row-major flat
//! index of the *full, unsharded* tensor) of tensor `t` with seed `s` is
//!
//! ```text
//! u     = (splitmix64(s * 0x100000001B3 ^ (t << 40) ^ i) >> 11) * 2^-53      (all u64 wrapping)
//! value = (2u - 1) * scale
//! ```
//!
//! with tensor ids `3l` (gate), `3l + 1` (up), `3l + 2` (down) for layer `l` and `1_000_000`
//! for the input `x`; `scale` is `1 / sqrt(fan_in)` for weights (`hidden` for gate and up,
//! `ffn` for down) and `1.0` for `x`. A rank generates only its shard, by computing the
//! full-tensor flat indices of its slice.

use std::collections::TryReserveError;

/// Tensor id of the input `x`.
pub const INPUT_TENSOR: u64 = 1_000_000;

/// Tensors at or above this many elements are generated on several threads.
const PARALLEL_MIN: usize = 1 << 20;

/// SplitMix64's output function applied to `z` (one step of the generator, state `z`).
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The uniform number in `[0, 1)` of element `index` of tensor `tensor` for `seed`.
pub fn unit(seed: u64, tensor: u64, index: u64) -> f64 {
    let h = splitmix64(seed.wrapping_mul(0x0000_0100_0000_01B3) ^ (tensor << 40) ^ index);
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The value of element `index` of tensor `tensor`: uniform in `[-scale, scale)`.
pub fn value(seed: u64, tensor: u64, index: u64, scale: f64) -> f64 {
    (2.0 * unit(seed, tensor, index) - 1.0) * scale
}

/// The three weight tensors of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weight {
    /// `W_gate`, `[hidden, ffn]`.
    Gate,
    /// `W_up`, `[hidden, ffn]`.
    Up,
    /// `W_down`, `[ffn, hidden]`.
    Down,
}

impl Weight {
    /// The generator's tensor id of this weight in layer `layer`.
    pub fn tensor_id(self, layer: usize) -> u64 {
        3 * layer as u64
            + match self {
                Weight::Gate => 0,
                Weight::Up => 1,
                Weight::Down => 2,
            }
    }

    /// Full shape `[rows, cols]` for the given sizes.
    pub fn shape(self, hidden: usize, ffn: usize) -> [usize; 2] {
        match self {
            Weight::Gate | Weight::Up => [hidden, ffn],
            Weight::Down => [ffn, hidden],
        }
    }

    /// `1 / sqrt(fan_in)`: fan-in is `hidden` for gate and up, `ffn` for down.
    pub fn scale(self, hidden: usize, ffn: usize) -> f64 {
        let fan_in = self.shape(hidden, ffn)[0];
        1.0 / (fan_in as f64).sqrt()
    }

    /// Short name (`gate`, `up`, `down`).
    pub fn name(self) -> &'static str {
        match self {
            Weight::Gate => "gate",
            Weight::Up => "up",
            Weight::Down => "down",
        }
    }
}

/// A rectangular slice `[row0 .. row0 + rows) x [col0 .. col0 + cols)` of a row-major tensor
/// whose full rows hold `full_cols` elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// First row of the slice.
    pub row0: usize,
    /// Number of rows.
    pub rows: usize,
    /// First column of the slice.
    pub col0: usize,
    /// Number of columns.
    pub cols: usize,
    /// Columns of the full tensor (its row stride).
    pub full_cols: usize,
}

impl Slice {
    /// The full-tensor flat index of element `(r, c)` of the slice.
    #[inline]
    pub fn flat_index(&self, r: usize, c: usize) -> u64 {
        ((self.row0 + r) * self.full_cols + self.col0 + c) as u64
    }
}

/// Generate `slice` of tensor `tensor` (row-major, `slice.rows * slice.cols` values), each value
/// converted by `conv`. Large slices are generated on several threads. Fails (instead of
/// aborting) when the host cannot hold the values.
pub fn generate<T: Copy + Send>(
    seed: u64,
    tensor: u64,
    scale: f64,
    slice: Slice,
    conv: impl Fn(f64) -> T + Sync,
) -> Result<Vec<T>, TryReserveError> {
    let n = slice.rows * slice.cols;
    let mut out = Vec::new();
    out.try_reserve_exact(n)?;
    out.resize(n, conv(0.0));
    if n == 0 {
        return Ok(out);
    }
    let fill = |r0: usize, rows: &mut [T]| {
        for (dr, row) in rows.chunks_exact_mut(slice.cols).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = conv(value(seed, tensor, slice.flat_index(r0 + dr, c), scale));
            }
        }
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16);
    if n < PARALLEL_MIN || threads < 2 || slice.rows < threads {
        fill(0, &mut out);
        return Ok(out);
    }
    let per = slice.rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, chunk) in out.chunks_mut(per * slice.cols).enumerate() {
            let fill = &fill;
            s.spawn(move || fill(i * per, chunk));
        }
    });
    Ok(out)
}

/// The input `x` of `tokens` rows: `[tokens, hidden]`, scale 1. Token counts share a prefix:
/// the first rows of a longer input are a shorter input.
pub fn input<T: Copy + Send>(
    seed: u64,
    tokens: usize,
    hidden: usize,
    conv: impl Fn(f64) -> T + Sync,
) -> Result<Vec<T>, TryReserveError> {
    let slice = Slice {
        row0: 0,
        rows: tokens,
        col0: 0,
        cols: hidden,
        full_cols: hidden,
    };
    generate(seed, INPUT_TENSOR, 1.0, slice, conv)
}

/// Sum and sum of squares (in f64, summed in flat-index order) of every element of a tensor.
pub fn checksum(seed: u64, tensor: u64, scale: f64, len: usize) -> (f64, f64) {
    let mut sum = 0.0f64;
    let mut sumsq = 0.0f64;
    for i in 0..len as u64 {
        let v = value(seed, tensor, i, scale);
        sum += v;
        sumsq += v * v;
    }
    (sum, sumsq)
}
