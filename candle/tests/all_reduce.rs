//! The tensor all-reduce: results equal the sum (and the other reductions) of the ranks'
//! tensors at world sizes 1 to 4 and every float type, the path report, and the errors.

mod common;

use candle_core::{DType, Device, Tensor};
use symmem::ReduceOp;
use symmem_candle::{
    all_reduce, all_reduce_with_report, buffer_path, would_use_symmetric, CollectivePath, Error,
    PlainReason,
};

use common::{random, run, values, within_limit, Rng};

const DTYPES: [DType; 4] = [DType::F32, DType::F64, DType::F16, DType::BF16];

/// Rank `rank`'s tensor: small integers, so that every partial sum is exact in every dtype
/// and the result can be compared exactly whatever the summation order.
fn rank_tensor(rank: usize, dtype: DType) -> Tensor {
    let v: Vec<f64> = (0..2 * 3 * 5)
        .map(|i| ((i * 7 + rank * 13) % 17) as f64 - 8.0)
        .collect();
    Tensor::from_vec(v, (2, 3, 5), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

#[test]
fn the_result_is_the_sum_of_the_ranks_tensors() {
    within_limit(|| {
        for ws in 1..=4 {
            for dtype in DTYPES {
                let expected: Vec<f64> = (0..ws)
                    .map(|r| values(&rank_tensor(r, dtype)))
                    .fold(vec![0.0; 30], |acc, v| {
                        acc.iter().zip(&v).map(|(a, b)| a + b).collect()
                    });
                let outs = run(ws, |ctx| {
                    let x = rank_tensor(ctx.rank(), dtype);
                    let (y, report) = all_reduce_with_report(&ctx.world(), &x, ReduceOp::Sum)
                        .expect("all_reduce");
                    assert_eq!(y.dims(), x.dims());
                    assert_eq!(y.dtype(), dtype);
                    // The input is not changed.
                    assert_eq!(values(&x), values(&rank_tensor(ctx.rank(), dtype)));
                    (values(&y), report)
                });
                for (rank, (y, report)) in outs.into_iter().enumerate() {
                    assert_eq!(y, expected, "ws {ws} {dtype:?} rank {rank}");
                    assert_eq!(report.path, CollectivePath::Symmetric, "{report:?}");
                    assert_eq!(report.elements, 30);
                    assert_eq!(report.group, "world");
                }
            }
        }
    });
}

#[test]
fn random_floats_sum_within_the_rounding_bound() {
    within_limit(|| {
        for ws in [2, 3, 4] {
            for dtype in [DType::F32, DType::BF16] {
                let inputs: Vec<Tensor> = (0..ws)
                    .map(|r| random(&mut Rng::new(100 + r as u64), &[64], 1.0, dtype))
                    .collect();
                let exact: Vec<f64> = inputs.iter().map(values).fold(vec![0.0; 64], |acc, v| {
                    acc.iter().zip(&v).map(|(a, b)| a + b).collect()
                });
                let abs_sum: Vec<f64> = inputs.iter().map(values).fold(vec![0.0; 64], |acc, v| {
                    acc.iter().zip(&v).map(|(a, b)| a + b.abs()).collect()
                });
                // ws - 1 additions, each rounded once in the dtype (16-bit floats are added in
                // f32 and rounded per step): |error| <= (ws - 1) * u * sum |x_r| (first order;
                // times 1.01 for the second-order terms).
                let u = if dtype == DType::F32 {
                    f64::powi(2.0, -24)
                } else {
                    f64::powi(2.0, -8)
                };
                let outs = run(ws, |ctx| {
                    values(&all_reduce(&ctx.world(), &inputs[ctx.rank()], ReduceOp::Sum).unwrap())
                });
                let first = outs[0].clone();
                for (rank, y) in outs.into_iter().enumerate() {
                    assert_eq!(y, first, "every rank gets the same bits (rank {rank})");
                    for i in 0..64 {
                        let bound = 1.01 * (ws - 1) as f64 * u * abs_sum[i];
                        assert!(
                            (y[i] - exact[i]).abs() <= bound,
                            "ws {ws} {dtype:?} element {i}: {} vs {} (bound {bound})",
                            y[i],
                            exact[i]
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn other_reductions_and_layouts() {
    within_limit(|| {
        let outs = run(3, |ctx| {
            let tp = ctx.world();
            let x = rank_tensor(ctx.rank(), DType::F32);
            let max = all_reduce(&tp, &x, ReduceOp::Max).unwrap();
            let min = all_reduce(&tp, &x, ReduceOp::Min).unwrap();
            // A transposed (non-contiguous) input: reduced in its logical order.
            let xt = x.transpose(1, 2).unwrap();
            let st = all_reduce(&tp, &xt, ReduceOp::Sum).unwrap();
            assert_eq!(st.dims(), &[2, 5, 3]);
            let ints = x.to_dtype(DType::I64).unwrap();
            let si = all_reduce(&tp, &ints, ReduceOp::Sum).unwrap();
            (
                values(&max),
                values(&min),
                values(&st),
                si.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
            )
        });
        let xs: Vec<Vec<f64>> = (0..3)
            .map(|r| values(&rank_tensor(r, DType::F32)))
            .collect();
        let xts: Vec<Vec<f64>> = (0..3)
            .map(|r| values(&rank_tensor(r, DType::F32).transpose(1, 2).unwrap()))
            .collect();
        for (max, min, st, si) in outs {
            for i in 0..30 {
                let col = [xs[0][i], xs[1][i], xs[2][i]];
                assert_eq!(max[i], col.iter().cloned().fold(f64::MIN, f64::max));
                assert_eq!(min[i], col.iter().cloned().fold(f64::MAX, f64::min));
                assert_eq!(st[i], xts[0][i] + xts[1][i] + xts[2][i]);
                assert_eq!(si[i] as f64, col.iter().sum::<f64>());
            }
        }
    });
}

#[test]
fn the_path_and_its_reasons_are_visible() {
    within_limit(|| {
        run(2, |ctx| {
            let tp = ctx.world();
            // The host backend's symmetric path serves every reduction and element type.
            assert_eq!(would_use_symmetric(&tp, DType::BF16, ReduceOp::Sum), Ok(()));
            assert_eq!(would_use_symmetric(&tp, DType::F64, ReduceOp::Prod), Ok(()));
            assert_eq!(
                would_use_symmetric(&tp, DType::I16, ReduceOp::Sum),
                Err(PlainReason::UnsupportedDType(DType::I16))
            );
            // A buffer from the default pool, and one from another group's window, take the
            // plain path, and the reason names the pool.
            let other = ctx.split_group("other", &tp, 0, ctx.rank() as u32).unwrap();
            let plain = symmem::alloc_zeroed::<f32>(8).unwrap();
            let foreign = {
                let _w = other.window();
                symmem::alloc_zeroed::<f32>(8).unwrap()
            };
            let own = {
                let _w = tp.window();
                symmem::alloc_zeroed::<f32>(8).unwrap()
            };
            for (buf, pool) in [(&plain, "default"), (&foreign, "other")] {
                match buffer_path(&tp, buf, ReduceOp::Sum) {
                    CollectivePath::Plain(why @ PlainReason::BufferNotSymmetric { .. }) => {
                        assert_eq!(
                            why,
                            PlainReason::BufferNotSymmetric {
                                group: "world".into(),
                                pool: pool.into()
                            }
                        );
                        let text = why.to_string();
                        assert!(text.contains(pool) && text.contains("window"), "{text}");
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert!(buffer_path(&tp, &own, ReduceOp::Sum).is_symmetric());
            // The plain-path buffers still reduce correctly.
            let mut p = symmem::alloc_from_host(&[1.0f32; 8]).unwrap();
            tp.all_reduce(&mut p, ReduceOp::Sum).unwrap();
            assert_eq!(p.to_host_vec().unwrap(), vec![2.0; 8]);
        });
    });
}

#[test]
fn errors_not_panics() {
    within_limit(|| {
        run(2, |ctx| {
            let tp = ctx.world();
            // A dtype symmem has no element type for.
            let x = Tensor::zeros(4, DType::I16, &Device::Cpu).unwrap();
            let e = all_reduce(&tp, &x, ReduceOp::Sum).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::UnsupportedDType {
                        dtype: DType::I16,
                        ..
                    }
                ),
                "{e:?}"
            );
            // A reduction the element type does not support (Prod is fine; Avg on ints is
            // defined by symmem; nothing panics either way).
            let _ = all_reduce(
                &tp,
                &Tensor::ones(3, DType::U8, &Device::Cpu).unwrap(),
                ReduceOp::Avg,
            );
        });
        // Ranks passing tensors of different lengths: validation mode reports the divergence
        // on every rank (instead of a hang or wrong data).
        let outs = run(2, |ctx| {
            let x = Tensor::zeros(4 + ctx.rank(), DType::F32, &Device::Cpu).unwrap();
            all_reduce(&ctx.world(), &x, ReduceOp::Sum).map(|_| ())
        });
        for r in outs {
            let e = r.unwrap_err();
            assert!(
                matches!(e, Error::Symmem(symmem::Error::RankDivergence { .. })),
                "{e:?}"
            );
        }
        // A group handle used on a thread that is no rank, and on another rank's thread:
        // errors (the latter naming the group), no collective starts, nothing hangs.
        let outs = run(1, |ctx| {
            let tp = ctx.world();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let x = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
                    all_reduce(&tp, &x, ReduceOp::Sum).map(|_| ())
                })
                .join()
                .unwrap()
            })
        });
        let e = outs.into_iter().next().unwrap().unwrap_err();
        assert!(
            matches!(e, Error::Symmem(symmem::Error::NoRankContext)),
            "{e:?}"
        );
        let handoff = std::sync::Mutex::new(None);
        let barrier = std::sync::Barrier::new(2);
        let outs = run(2, |ctx| {
            if ctx.rank() == 0 {
                *handoff.lock().unwrap() = Some(ctx.world());
                barrier.wait(); // handed over
                barrier.wait(); // rank 1 is done with it
                None
            } else {
                barrier.wait();
                let rank0s = handoff.lock().unwrap().take().unwrap();
                let x = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
                let r = all_reduce(&rank0s, &x, ReduceOp::Sum).map(|_| ());
                barrier.wait();
                Some(r)
            }
        });
        let e = outs[1].as_ref().unwrap().as_ref().unwrap_err();
        assert!(matches!(e, Error::Symmem(_)), "{e:?}");
        assert!(e.to_string().contains("world"), "{e}");
    });
}
