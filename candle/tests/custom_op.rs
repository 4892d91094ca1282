//! `AllReduceOp`, the all-reduce as a candle custom op: the forward equals `all_reduce` for
//! every layout (contiguous, transposed, offset, broadcast), and its backward (the identity, for
//! `Sum`) gives a row-parallel weight the gradient of the matching slice of the full weight.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use symmem::ReduceOp;
use symmem_candle::{all_reduce, shard, AllReduceOp};

use common::{random, run, values, within_limit, Rng};

#[test]
fn the_forward_equals_all_reduce_for_every_layout() {
    within_limit(|| {
        for ws in [1, 2, 3] {
            let outs = run(ws, |ctx| {
                let tp = ctx.world();
                let base = Tensor::arange(0f32, 24.0, &Device::Cpu)
                    .unwrap()
                    .reshape((2, 3, 4))
                    .unwrap()
                    .affine(1.0, ctx.rank() as f64)
                    .unwrap();
                let layouts = [
                    base.clone(),
                    base.transpose(0, 2).unwrap(),
                    base.narrow(2, 1, 2).unwrap(),
                    base.narrow(0, 1, 1).unwrap(),
                    Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu)
                        .unwrap()
                        .broadcast_as((2, 3))
                        .unwrap(),
                ];
                for t in &layouts {
                    let a = t.apply_op1(AllReduceOp::new(&tp, ReduceOp::Sum)).unwrap();
                    let b = all_reduce(&tp, t, ReduceOp::Sum).unwrap();
                    assert_eq!(a.dims(), t.dims());
                    assert_eq!(values(&a), values(&b), "{:?}", t.layout());
                    // The sum of ws copies of rank-shifted values, checked against the input.
                    let shift: f64 =
                        (0..ws).map(|r| r as f64).sum::<f64>() - (ctx.rank() * ws) as f64;
                    let expected: Vec<f64> = values(t)
                        .iter()
                        .map(|v| {
                            if t.dims() == [2, 3] {
                                v * ws as f64
                            } else {
                                v * ws as f64 + shift
                            }
                        })
                        .collect();
                    assert_eq!(values(&a), expected, "{:?}", t.layout());
                }
                // Other element types and reductions.
                let i = Tensor::new(&[3i64, -4], &Device::Cpu).unwrap();
                let m = i.apply_op1(AllReduceOp::new(&tp, ReduceOp::Max)).unwrap();
                assert_eq!(m.to_vec1::<i64>().unwrap(), vec![3, -4]);
                let e = Tensor::zeros(2, DType::I16, &Device::Cpu)
                    .unwrap()
                    .apply_op1(AllReduceOp::new(&tp, ReduceOp::Sum))
                    .unwrap_err();
                assert!(e.to_string().contains("I16"), "{e}");
            });
            assert_eq!(outs.len(), ws);
        }
    });
}

#[test]
fn the_backward_gives_row_parallel_weights_their_slice_of_the_full_gradient() {
    within_limit(|| {
        let (batch, inter, hidden) = (3, 12, 5);
        let mut rng = Rng::new(9);
        let h = random(&mut rng, &[batch, inter], 1.0, DType::F64);
        let wd = random(&mut rng, &[hidden, inter], 0.5, DType::F64);
        // The full model: L = sum(y^2) / 2 with y = h wd^T.
        let full = Var::from_tensor(&wd).unwrap();
        let y = h.matmul(&full.as_tensor().t().unwrap()).unwrap();
        let loss = (y.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let grads = loss.backward().unwrap();
        let full_grad = grads.get(full.as_tensor()).unwrap().clone();
        for ws in [1, 2, 3, 4] {
            let outs = run(ws, |ctx| {
                let tp = ctx.world();
                let (rank, size) = (ctx.rank(), ctx.world_size());
                let w_r = Var::from_tensor(&shard(&wd, 1, rank, size).unwrap()).unwrap();
                let h_r = shard(&h, 1, rank, size).unwrap();
                let partial = h_r.matmul(&w_r.as_tensor().t().unwrap()).unwrap();
                let y = partial
                    .apply_op1(AllReduceOp::new(&tp, ReduceOp::Sum))
                    .unwrap();
                let loss = (y.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
                let grads = loss.backward().unwrap();
                let g = grads
                    .get(w_r.as_tensor())
                    .expect("a gradient for the shard");
                let expected = shard(&full_grad, 1, rank, size).unwrap();
                (values(g), values(&expected))
            });
            for (rank, (g, expected)) in outs.into_iter().enumerate() {
                for (i, (a, b)) in g.iter().zip(&expected).enumerate() {
                    // f64, sums of at most 12 terms of size below 10: 1e-12 is far above the
                    // rounding and far below any wrong gradient.
                    assert!(
                        (a - b).abs() <= 1e-12,
                        "ws {ws} rank {rank} element {i}: {a} vs {b}"
                    );
                }
            }
        }
    });
}

#[test]
fn reductions_other_than_sum_have_no_backward() {
    within_limit(|| {
        run(2, |ctx| {
            let w = Var::new(&[1f32, 2.0], &Device::Cpu).unwrap();
            let y = w
                .as_tensor()
                .apply_op1(AllReduceOp::new(&ctx.world(), ReduceOp::Max))
                .unwrap();
            let e = y.sum_all().unwrap().backward().unwrap_err();
            assert!(e.to_string().contains("symmem-all-reduce"), "{e}");
        });
    });
}
