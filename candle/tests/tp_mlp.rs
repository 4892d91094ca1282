//! The tensor-parallel layers against candle alone on the same full weights: `TpMlp` at tp 1,
//! 2, 3 and 4 in f32 and bf16, against an f64 reference within an error bound computed from
//! the number of accumulated terms and roundings; the parallel linear layers with biases; and
//! the shape errors.
//!
//! # The bound
//!
//! With `u` the dtype's unit roundoff (2^-24 for f32, 2^-8 for bf16), `ua = 2^-24` (candle's
//! CPU matmul accumulates f32 and bf16 products in f32) and `γ(K) = K·ua / (1 - K·ua)`, the
//! computed values satisfy, to first order (x and the weights are exact in the dtype; every
//! quantity below is computed in f64 on them, `|·|` elementwise):
//!
//! * `g = x Wg^T`, `up = x Wu^T`: `δg ≤ u|g| + γ(H)·(|x| |Wg|^T)`, likewise `δup` (H terms,
//!   rounded once to the dtype);
//! * `h = silu(g) * up`: `δh ≤ 1.1·δg·|up| + |silu(g)|·δup + (5u + 2ua)·|silu(g)|·|up|`
//!   (`|silu'| ≤ 1.1`; silu's exp, add and divide round 4u, the product u; exp itself is within
//!   one f32 ulp, 2ua);
//! * `y = h Wd^T`, as `ws` partials over `I / ws` terms, each rounded to the dtype, summed by the
//!   all-reduce with `ws - 1` roundings: `δy ≤ δh |Wd|^T + (ws·u + γ(I))·(|h| |Wd|^T)`.
//!
//! The test asserts `|y_tp - y_f64| ≤ 2·δy` elementwise (the factor 2 covers the second-order
//! terms), that the unsharded candle reference in the same dtype meets the bound of `ws = 1`,
//! and so that `|y_tp - y_ref| ≤ bound(ws) + bound(1)`. At tp 1 the TP MLP must equal the
//! reference bit for bit.
//!
//! Two data sets: entries of both signs (the general case; sums cancel, so the worst-case
//! bound is up to ~0.25 of the output in bf16) and non-negative entries (no cancellation: the
//! bound stays below 0.1 of the output in bf16 and 2e-5 in f32, so a missing or doubled
//! partial, about 1/tp of the output, cannot pass). The measured errors are printed with
//! `--nocapture`: 0.2% to 1% of the bound in f32, 3% to 9% in bf16 (the bound is a worst case).

mod common;

use candle_core::{DType, Module, Tensor};
use symmem_candle::{
    shard, CollectivePath, ColumnParallelLinear, Error, RowParallelLinear, SwiGluMlp, TpMlp,
};

use common::{random, run, values, within_limit, Rng};

const BATCH: usize = 5;
const HIDDEN: usize = 16;
const INTER: usize = 48; // divides by 1, 2, 3, 4

struct Weights {
    x: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// Full weights and an input. `positive`: all entries in `[0, scale)`, so that no sum cancels
/// and the bound is a few rounding units of the output itself (a wrong or missing shard, a
/// partial too many or too few, is then far outside it); otherwise entries of both signs in
/// `[-scale, scale)`, the general case, where sums cancel and the bound is looser relative to
/// the output.
fn weights(dtype: DType, seed: u64, positive: bool) -> Weights {
    let mut rng = Rng::new(seed);
    let mut draw = |shape: &[usize], scale: f64| {
        let t = random(&mut rng, shape, scale, dtype);
        if positive {
            t.abs().unwrap()
        } else {
            t
        }
    };
    let (h, i) = (HIDDEN as f64, INTER as f64);
    Weights {
        x: draw(&[BATCH, HIDDEN], 1.0),
        gate: draw(&[INTER, HIDDEN], 2.0 / h.sqrt()),
        up: draw(&[INTER, HIDDEN], 2.0 / h.sqrt()),
        down: draw(&[HIDDEN, INTER], 2.0 / i.sqrt()),
    }
}

fn f64s(t: &Tensor) -> Tensor {
    t.to_dtype(DType::F64).unwrap()
}

fn mm(a: &Tensor, b: &Tensor) -> Tensor {
    a.matmul(&b.t().unwrap()).unwrap()
}

/// The f64 reference output and the elementwise error bound at world size `ws` (see the
/// module docs).
fn reference_and_bound(w: &Weights, dtype: DType, ws: usize) -> (Vec<f64>, Vec<f64>) {
    let u = match dtype {
        DType::F32 => f64::powi(2.0, -24),
        DType::BF16 => f64::powi(2.0, -8),
        other => panic!("no bound for {other:?}"),
    };
    let ua = f64::powi(2.0, -24);
    let gamma = |k: usize| k as f64 * ua / (1.0 - k as f64 * ua);
    let (x, wg, wu, wd) = (f64s(&w.x), f64s(&w.gate), f64s(&w.up), f64s(&w.down));
    let g = mm(&x, &wg);
    let up = mm(&x, &wu);
    let s = g.silu().unwrap();
    let h = (&s * &up).unwrap();
    let y = mm(&h, &wd);
    let ax = x.abs().unwrap();
    let dg = ((g.abs().unwrap() * u).unwrap()
        + (mm(&ax, &wg.abs().unwrap()) * gamma(HIDDEN)).unwrap())
    .unwrap();
    let dup = ((up.abs().unwrap() * u).unwrap()
        + (mm(&ax, &wu.abs().unwrap()) * gamma(HIDDEN)).unwrap())
    .unwrap();
    let s_up = (s.abs().unwrap() * up.abs().unwrap()).unwrap();
    let dh = (((&dg * up.abs().unwrap()).unwrap() * 1.1).unwrap()
        + (s.abs().unwrap() * &dup).unwrap()
        + (&s_up * (5.0 * u + 2.0 * ua)).unwrap())
    .unwrap();
    let awd = wd.abs().unwrap();
    let a = mm(&h.abs().unwrap(), &awd);
    let dy = (mm(&dh, &awd) + (a * (ws as f64 * u + gamma(INTER))).unwrap()).unwrap();
    let bound = (dy * 2.0).unwrap();
    (values(&y), values(&bound))
}

fn tp_outputs(w: &Weights, ws: usize) -> Vec<(Vec<f64>, CollectivePath)> {
    run(ws, |ctx| {
        let tp = ctx.world();
        let mlp = TpMlp::from_full(&w.gate, &w.up, &w.down, &tp).unwrap();
        assert_eq!(mlp.gate().weight().dims(), &[INTER / ws, HIDDEN]);
        assert_eq!(mlp.down().weight().dims(), &[HIDDEN, INTER / ws]);
        let (y, report) = mlp.forward_with_report(&w.x).unwrap();
        assert_eq!(y.dims(), &[BATCH, HIDDEN]);
        assert_eq!(y.dtype(), w.x.dtype());
        // The Module path gives the same bits.
        assert_eq!(values(&mlp.forward(&w.x).unwrap()), values(&y));
        (values(&y), report.path)
    })
}

/// Check the TP MLP at tp 1 to 4 against the references (see the module docs); the bound must
/// stay below `max_relative_bound` times the largest output (so that it is not vacuous).
fn check_against_reference(dtype: DType, positive: bool, max_relative_bound: f64) {
    let w = weights(dtype, 42, positive);
    let reference = SwiGluMlp::new(&w.gate, &w.up, &w.down).unwrap();
    let y_ref = values(&reference.forward(&w.x).unwrap());
    let (y64, bound1) = reference_and_bound(&w, dtype, 1);
    let scale = y64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 0..y64.len() {
        assert!(
            (y_ref[i] - y64[i]).abs() <= bound1[i],
            "{dtype:?}: the unsharded candle reference misses the bound at {i}: {} vs {} (bound {})",
            y_ref[i],
            y64[i],
            bound1[i]
        );
    }
    for ws in 1..=4 {
        let (_, bound) = reference_and_bound(&w, dtype, ws);
        let worst_bound = bound.iter().fold(0.0f64, |m, &b| m.max(b));
        assert!(
            worst_bound <= max_relative_bound * scale,
            "{dtype:?} ws {ws}: the bound {worst_bound} is vacuous against outputs of size {scale}"
        );
        let outs = tp_outputs(&w, ws);
        let mut worst_ratio = 0.0f64;
        for (rank, (y, path)) in outs.iter().enumerate() {
            assert_eq!(*path, CollectivePath::Symmetric);
            assert_eq!(y, &outs[0].0, "ranks agree bit for bit (rank {rank})");
            for i in 0..y.len() {
                let err = (y[i] - y64[i]).abs();
                assert!(
                    err <= bound[i],
                    "{dtype:?} ws {ws} rank {rank} element {i}: {} vs f64 {} (error {err}, bound {})",
                    y[i],
                    y64[i],
                    bound[i]
                );
                assert!((y[i] - y_ref[i]).abs() <= bound[i] + bound1[i]);
                if bound[i] > 0.0 {
                    worst_ratio = worst_ratio.max(err / bound[i]);
                }
            }
        }
        eprintln!(
            "{dtype:?} positive {positive} tp {ws}: largest bound {:.2e} of the largest output, worst error {worst_ratio:.3} of the bound",
            worst_bound / scale
        );
        if ws == 1 {
            assert_eq!(
                outs[0].0, y_ref,
                "{dtype:?}: tp 1 is the reference, bit for bit"
            );
        }
    }
}

#[test]
fn tp_mlp_f32_matches_the_unsharded_reference() {
    within_limit(|| {
        check_against_reference(DType::F32, true, 2e-5);
        check_against_reference(DType::F32, false, 2e-4);
    });
}

#[test]
fn tp_mlp_bf16_matches_the_unsharded_reference() {
    within_limit(|| {
        check_against_reference(DType::BF16, true, 0.1);
        check_against_reference(DType::BF16, false, 0.5);
    });
}

#[test]
fn parallel_linear_layers_with_biases_match_candle_linear() {
    within_limit(|| {
        let mut rng = Rng::new(5);
        let (inp, mid, out) = (12, 24, 8);
        let x = random(&mut rng, &[2, 3, inp], 1.0, DType::F32); // a batch of sequences
        let w1 = random(&mut rng, &[mid, inp], 0.3, DType::F32);
        let b1 = random(&mut rng, &[mid], 1.0, DType::F32);
        let w2 = random(&mut rng, &[out, mid], 0.3, DType::F32);
        let b2 = random(&mut rng, &[out], 1.0, DType::F32);
        let l1 = candle_nn::Linear::new(w1.clone(), Some(b1.clone()));
        let l2 = candle_nn::Linear::new(w2.clone(), Some(b2.clone()));
        let expected = values(&l2.forward(&l1.forward(&x).unwrap()).unwrap());
        for ws in [1, 2, 3, 4] {
            let outs = run(ws, |ctx| {
                let tp = ctx.world();
                let col = ColumnParallelLinear::from_full_with_bias(&w1, Some(&b1), ctx.rank(), ws)
                    .unwrap();
                let row = RowParallelLinear::from_full_with_bias(&w2, Some(&b2), &tp).unwrap();
                assert_eq!(col.local_out_features(), mid / ws);
                assert_eq!(row.local_in_features(), mid / ws);
                let y = row.forward(&col.forward(&x).unwrap()).unwrap();
                assert_eq!(y.dims(), &[2, 3, out]);
                values(&y)
            });
            for y in outs {
                for (i, (a, b)) in y.iter().zip(&expected).enumerate() {
                    // f32, at most mid + ws roundings of terms below 3 in size: 1e-4 is
                    // ~50x the worst case (mid * 2^-24 * 3 * (mid * 0.3 + 1)).
                    assert!((a - b).abs() <= 1e-4, "ws {ws} element {i}: {a} vs {b}");
                }
            }
        }
    });
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    within_limit(|| {
        let w = weights(DType::F32, 1, false);
        // 48 intermediate features do not divide by 5 ranks.
        let outs = run(5, |ctx| {
            TpMlp::from_full(&w.gate, &w.up, &w.down, &ctx.world()).map(|_| ())
        });
        for r in outs {
            let e = r.unwrap_err();
            assert!(matches!(e, Error::Shard { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .contains("does not divide by the world size 5"),
                "{e}"
            );
        }
        run(2, |ctx| {
            let tp = ctx.world();
            // Swapped weights.
            let e = TpMlp::from_full(&w.gate, &w.down, &w.up, &tp).unwrap_err();
            assert!(matches!(e, Error::Shard { .. }), "{e:?}");
            // Not a matrix.
            let v = w.gate.flatten_all().unwrap();
            assert!(matches!(
                ColumnParallelLinear::from_full(&v, 0, 2),
                Err(Error::Shard { .. })
            ));
            // Rank out of range, world size 0, a dimension that does not exist.
            assert!(matches!(
                ColumnParallelLinear::from_full(&w.gate, 2, 2),
                Err(Error::Shard { .. })
            ));
            assert!(matches!(shard(&w.gate, 0, 0, 0), Err(Error::Shard { .. })));
            assert!(matches!(shard(&w.gate, 2, 0, 1), Err(Error::Shard { .. })));
            // A bias of the wrong length.
            let b = Tensor::zeros(3, DType::F32, &candle_core::Device::Cpu).unwrap();
            assert!(matches!(
                RowParallelLinear::from_full_with_bias(&w.down, Some(&b), &tp),
                Err(Error::Shard { .. })
            ));
            // An input with the wrong number of features: an error from forward (converted
            // into candle's error type), on every rank before any collective, so no rank waits.
            let mlp = TpMlp::from_full(&w.gate, &w.up, &w.down, &tp).unwrap();
            let bad =
                Tensor::zeros((2, HIDDEN + 1), DType::F32, &candle_core::Device::Cpu).unwrap();
            let e = mlp.forward(&bad).unwrap_err();
            assert!(e.to_string().contains("input features"), "{e}");
            // The layer still works afterwards.
            assert!(mlp.forward(&w.x).is_ok());
        });
    });
}

#[test]
fn shards_are_compact_copies_of_the_right_slices() {
    within_limit(|| {
        let t = Tensor::arange(0f32, 24.0, &candle_core::Device::Cpu)
            .unwrap()
            .reshape((4, 6))
            .unwrap();
        let s = shard(&t, 1, 2, 3).unwrap();
        assert_eq!(s.dims(), &[4, 2]);
        assert!(s.is_contiguous());
        assert_eq!(
            values(&s),
            vec![4.0, 5.0, 10.0, 11.0, 16.0, 17.0, 22.0, 23.0]
        );
        let s = shard(&t, 0, 1, 2).unwrap();
        assert_eq!(values(&s), (12..24).map(|v| v as f64).collect::<Vec<_>>());
    });
}

#[test]
fn the_layers_are_send_sync_and_clone() {
    // They hold a `Group` handle (Send + Sync + Clone); what makes using them from another
    // thread safe is the handle's own thread check (`all_reduce.rs`, `errors_not_panics`).
    fn bounds<T: Send + Sync + Clone>() {}
    bounds::<ColumnParallelLinear>();
    bounds::<RowParallelLinear>();
    bounds::<TpMlp>();
    bounds::<SwiGluMlp>();
}

#[test]
fn a_layer_used_on_another_rank_s_thread_fails_without_hanging() {
    within_limit(|| {
        let w = weights(DType::F32, 3, false);
        let handoff = std::sync::Mutex::new(None);
        let barrier = std::sync::Barrier::new(2);
        let outs = run(2, |ctx| {
            let mlp = TpMlp::from_full(&w.gate, &w.up, &w.down, &ctx.world()).unwrap();
            if ctx.rank() == 0 {
                *handoff.lock().unwrap() = Some(mlp);
                barrier.wait();
                barrier.wait();
                None
            } else {
                barrier.wait();
                let rank0s = handoff.lock().unwrap().take().unwrap();
                let r = rank0s.forward(&w.x).map(|_| ());
                barrier.wait();
                Some(r)
            }
        });
        let e = outs[1].as_ref().unwrap().as_ref().unwrap_err();
        assert!(e.to_string().contains("world"), "{e}");
    });
}
