//! Collectives against a serial reference computed on the test thread: every operation,
//! reduction and element type, world sizes 1, 2, 3, 4 and 8, symmetric, plain and mixed
//! operands, and lengths that do not divide by the world size. Plus the error cases.

mod common;

use std::sync::mpsc;
use std::sync::Mutex;

use symmem::{bf16, f16, Buffer, DType, Element, Error, Group, ReduceOp, Result};
use symmem_runtime as symmem;

use common::bits;

const WORLD_SIZES: [usize; 5] = [1, 2, 3, 4, 8];
const LENGTHS: [usize; 3] = [1, 7, 1000];
const REDUCTIONS: [ReduceOp; 5] = [
    ReduceOp::Sum,
    ReduceOp::Prod,
    ReduceOp::Max,
    ReduceOp::Min,
    ReduceOp::Avg,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    AllReduce(ReduceOp),
    AllReduceInto(ReduceOp),
    AllGather,
    ReduceScatter(ReduceOp),
    Broadcast(usize),
    Barrier,
}

/// Where the operands come from: the group's symmetric pool, the default pool, or the source
/// symmetric and the destination plain.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Sym,
    Plain,
    Mixed,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    op: Op,
    n: usize,
    mode: Mode,
}

fn cases(ws: usize) -> Vec<Case> {
    let mut v = Vec::new();
    for &n in &LENGTHS {
        for mode in [Mode::Sym, Mode::Plain, Mode::Mixed] {
            let in_place = mode != Mode::Mixed;
            for &r in &REDUCTIONS {
                if in_place {
                    v.push(Case {
                        op: Op::AllReduce(r),
                        n,
                        mode,
                    });
                }
                v.push(Case {
                    op: Op::AllReduceInto(r),
                    n,
                    mode,
                });
                v.push(Case {
                    op: Op::ReduceScatter(r),
                    n,
                    mode,
                });
            }
            v.push(Case {
                op: Op::AllGather,
                n,
                mode,
            });
            if in_place {
                for root in 0..ws {
                    v.push(Case {
                        op: Op::Broadcast(root),
                        n,
                        mode,
                    });
                }
            }
        }
    }
    v.push(Case {
        op: Op::Barrier,
        n: 0,
        mode: Mode::Plain,
    });
    v
}

/// Input element `i` of `rank` for case number `salt`: small integers, so that sums (at most
/// 8 * 2 in magnitude) and products (powers of two up to 2^8) are exact in every type.
fn input(rank: usize, i: usize, salt: usize, op: Op) -> f64 {
    let h = rank * 7 + i * 3 + salt * 5 + (i * i) % 11;
    match op {
        Op::AllReduce(ReduceOp::Prod)
        | Op::AllReduceInto(ReduceOp::Prod)
        | Op::ReduceScatter(ReduceOp::Prod) => [-2.0, -1.0, 1.0, 2.0][h % 4],
        _ => (h % 5) as f64 - 2.0,
    }
}

fn inputs<T: Element>(rank: usize, len: usize, salt: usize, op: Op) -> Vec<T> {
    (0..len)
        .map(|i| T::from_f64(input(rank, i, salt, op)))
        .collect()
}

/// Allocate `len` elements from the group's symmetric pool or from the default pool.
fn alloc_in<T: Element>(g: &Group, len: usize, sym: bool) -> Result<Buffer<T>> {
    let b = if sym {
        let _w = g.window();
        symmem::alloc::<T>(len)?
    } else {
        symmem::alloc::<T>(len)?
    };
    assert_eq!(b.is_symmetric(), sym);
    assert_eq!(b.len(), len);
    Ok(b)
}

/// Run every case on this rank; returns the output of each case.
fn run_cases<T: Element>(g: &Group, cases: &[Case]) -> Result<Vec<Vec<T>>> {
    let (rank, ws) = (g.rank(), g.size());
    let mut outs = Vec::with_capacity(cases.len());
    for (salt, c) in cases.iter().enumerate() {
        let src_sym = c.mode != Mode::Plain;
        let dst_sym = c.mode == Mode::Sym;
        let out = match c.op {
            Op::AllReduce(r) => {
                let mut b = alloc_in::<T>(g, c.n, src_sym)?;
                b.copy_from_host(&inputs::<T>(rank, c.n, salt, c.op))?;
                g.all_reduce(&mut b, r)?;
                b.to_host_vec()?
            }
            Op::AllReduceInto(r) => {
                let mut s = alloc_in::<T>(g, c.n, src_sym)?;
                s.copy_from_host(&inputs::<T>(rank, c.n, salt, c.op))?;
                let mut d = alloc_in::<T>(g, c.n, dst_sym)?;
                g.all_reduce_into(&s, &mut d, r)?;
                // The source is untouched.
                assert_eq!(
                    bits(&s.to_host_vec()?),
                    bits(&inputs::<T>(rank, c.n, salt, c.op))
                );
                d.to_host_vec()?
            }
            Op::AllGather => {
                let mut s = alloc_in::<T>(g, c.n, src_sym)?;
                s.copy_from_host(&inputs::<T>(rank, c.n, salt, c.op))?;
                let mut d = alloc_in::<T>(g, c.n * ws, dst_sym)?;
                g.all_gather(&s, &mut d)?;
                d.to_host_vec()?
            }
            Op::ReduceScatter(r) => {
                let mut s = alloc_in::<T>(g, c.n * ws, src_sym)?;
                s.copy_from_host(&inputs::<T>(rank, c.n * ws, salt, c.op))?;
                let mut d = alloc_in::<T>(g, c.n, dst_sym)?;
                g.reduce_scatter(&s, &mut d, r)?;
                d.to_host_vec()?
            }
            Op::Broadcast(root) => {
                let mut b = alloc_in::<T>(g, c.n, src_sym)?;
                b.copy_from_host(&inputs::<T>(rank, c.n, salt, c.op))?;
                g.broadcast(&mut b, root)?;
                b.to_host_vec()?
            }
            Op::Barrier => {
                g.barrier()?;
                Vec::new()
            }
        };
        outs.push(out);
    }
    Ok(outs)
}

/// Serial reduction in f64 (exact for the inputs above, except the final division of Avg).
fn reduce_ref(dtype: DType, vals: impl Iterator<Item = f64>, r: ReduceOp, ws: usize) -> f64 {
    let v: Vec<f64> = vals.collect();
    match r {
        ReduceOp::Sum => v.iter().sum(),
        ReduceOp::Prod => v.iter().product(),
        ReduceOp::Max => v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        ReduceOp::Min => v.iter().cloned().fold(f64::INFINITY, f64::min),
        ReduceOp::Avg => {
            let s: f64 = v.iter().sum();
            if dtype.is_float() {
                s / ws as f64
            } else {
                // Integer division truncates toward zero.
                ((s as i64) / ws as i64) as f64
            }
        }
    }
}

/// Relative tolerance of Avg's division (one or two roundings in the element type).
fn avg_tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 2e-3,
        DType::BF16 => 1.6e-2,
        DType::F32 => 2.4e-7,
        DType::F64 => 4.5e-16,
        _ => 0.0,
    }
}

/// The expected output of case `salt` on `rank`, as f64.
fn expected(dtype: DType, c: &Case, salt: usize, rank: usize, ws: usize) -> Vec<f64> {
    match c.op {
        Op::AllReduce(r) | Op::AllReduceInto(r) => (0..c.n)
            .map(|i| reduce_ref(dtype, (0..ws).map(|q| input(q, i, salt, c.op)), r, ws))
            .collect(),
        Op::AllGather => (0..ws)
            .flat_map(|q| (0..c.n).map(move |i| input(q, i, salt, c.op)))
            .collect(),
        Op::ReduceScatter(r) => (0..c.n)
            .map(|i| {
                reduce_ref(
                    dtype,
                    (0..ws).map(|q| input(q, rank * c.n + i, salt, c.op)),
                    r,
                    ws,
                )
            })
            .collect(),
        Op::Broadcast(root) => (0..c.n).map(|i| input(root, i, salt, c.op)).collect(),
        Op::Barrier => Vec::new(),
    }
}

fn check_dtype<T: Element>() {
    for ws in WORLD_SIZES {
        let cases = cases(ws);
        let outs = symmem::host::run(ws, |ctx| {
            let world = ctx.world();
            let outs = run_cases::<T>(&world, &cases).unwrap();
            assert_eq!(world.stats().in_use_bytes, 0);
            assert_eq!(ctx.default_pool_stats().in_use_bytes, 0);
            outs
        })
        .unwrap();
        for (salt, c) in cases.iter().enumerate() {
            for rank in 0..ws {
                let got = &outs[rank][salt];
                let want = expected(T::DTYPE, c, salt, rank, ws);
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{} ws={ws} {c:?} rank {rank}: length",
                    T::DTYPE
                );
                let tol = match c.op {
                    Op::AllReduce(ReduceOp::Avg)
                    | Op::AllReduceInto(ReduceOp::Avg)
                    | Op::ReduceScatter(ReduceOp::Avg) => avg_tolerance(T::DTYPE),
                    _ => 0.0,
                };
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let g = g.to_f64();
                    let ok = if tol == 0.0 {
                        g == *w
                    } else {
                        (g - w).abs() <= tol * w.abs()
                    };
                    assert!(
                        ok,
                        "{} ws={ws} {c:?} rank {rank} element {i}: got {g}, want {w}",
                        T::DTYPE
                    );
                }
                // The host backend reduces in rank order: every rank holds the same bits.
                let replicated = !matches!(c.op, Op::ReduceScatter(_));
                if replicated {
                    assert_eq!(
                        bits(got),
                        bits(&outs[0][salt]),
                        "{} ws={ws} {c:?}: rank {rank} differs from rank 0",
                        T::DTYPE
                    );
                }
            }
        }
    }
}

#[test]
fn collectives_f32() {
    check_dtype::<f32>();
}

#[test]
fn collectives_f64() {
    check_dtype::<f64>();
}

#[test]
fn collectives_f16() {
    check_dtype::<f16>();
}

#[test]
fn collectives_bf16() {
    check_dtype::<bf16>();
}

#[test]
fn collectives_i32() {
    check_dtype::<i32>();
}

#[test]
fn collectives_i64() {
    check_dtype::<i64>();
}

#[test]
fn float_sums_are_bit_identical_on_every_rank() {
    // Values whose sum depends on the order of additions: every rank must still agree.
    let outs = symmem::host::run(4, |ctx| {
        let world = ctx.world();
        let v: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919 + ctx.rank() * 104_729) % 1000) as f32 * 0.1 + 1e-3)
            .collect();
        let mut b = {
            let _w = world.window();
            symmem::alloc_from_host(&v).unwrap()
        };
        world.all_reduce(&mut b, ReduceOp::Sum).unwrap();
        let mut p = symmem::alloc_from_host(&v).unwrap();
        world.all_reduce(&mut p, ReduceOp::Sum).unwrap();
        let (s, p) = (b.to_host_vec().unwrap(), p.to_host_vec().unwrap());
        assert_eq!(bits(&s), bits(&p), "symmetric and plain paths must agree");
        s
    })
    .unwrap();
    for o in &outs {
        assert_eq!(bits(o), bits(&outs[0]));
    }
}

#[test]
fn in_place_collectives_on_the_same_buffer_twice() {
    symmem::host::run(3, |ctx| {
        let world = ctx.world();
        let mut b = {
            let _w = world.window();
            symmem::alloc_from_host(&[ctx.rank() as i64 + 1; 5]).unwrap()
        };
        world.all_reduce(&mut b, ReduceOp::Sum).unwrap();
        world.all_reduce(&mut b, ReduceOp::Sum).unwrap();
        assert_eq!(b.to_host_vec().unwrap(), vec![18; 5]);
        world.broadcast(&mut b, 2).unwrap();
        assert_eq!(b.to_host_vec().unwrap(), vec![18; 5]);
    })
    .unwrap();
}

#[test]
fn zero_length_collectives_are_fine() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let mut a = symmem::alloc::<f32>(0).unwrap();
        assert!(a.is_empty());
        world.all_reduce(&mut a, ReduceOp::Sum).unwrap();
        let mut d = symmem::alloc::<f32>(0).unwrap();
        world.all_gather(&a, &mut d).unwrap();
        world.reduce_scatter(&a, &mut d, ReduceOp::Max).unwrap();
        world.broadcast(&mut a, 1).unwrap();
        assert!(a.to_host_vec().unwrap().is_empty());
    })
    .unwrap();
}

#[test]
fn length_mismatches_are_reported() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let a = symmem::alloc::<f32>(10).unwrap();
        let mut b = symmem::alloc::<f32>(11).unwrap();
        let e = world
            .all_reduce_into(&a, &mut b, ReduceOp::Sum)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    op: "all_reduce_into",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("src has 10 elements and dst 11"),
            "{e}"
        );

        let e = world.all_gather(&a, &mut b).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    op: "all_gather",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("10 * 2 = 20 elements, it holds 11"),
            "{e}"
        );

        let e = world.reduce_scatter(&a, &mut b, ReduceOp::Sum).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    op: "reduce_scatter",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("11 * 2 = 22 elements, it holds 10"),
            "{e}"
        );

        let mut c = symmem::alloc::<f32>(10).unwrap();
        let e = c.copy_from(&b).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    op: "copy_from",
                    ..
                }
            ),
            "{e}"
        );
        let e = c.copy_from_host(&[1.0; 3]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    op: "copy_from_host",
                    ..
                }
            ),
            "{e}"
        );
        let mut small = [0.0f32; 4];
        let e = c.copy_to_host(&mut small).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    op: "copy_to_host",
                    ..
                }
            ),
            "{e}"
        );

        let e = world.broadcast(&mut c, 2).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidArgument {
                    op: "broadcast",
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("root 2 is not a rank of group `world` (size 2)"),
            "{e}"
        );

        // The group is still usable after the refused calls (no rank entered a collective).
        world.all_reduce(&mut c, ReduceOp::Sum).unwrap();
    })
    .unwrap();
}

#[test]
fn a_buffer_of_another_rank_is_refused() {
    let (tx, rx) = mpsc::channel::<Buffer<f32>>();
    let rx = Mutex::new(rx);
    let tx = Mutex::new(tx);
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        if ctx.rank() == 0 {
            // Both ranks make one symmetric allocation (the segment creation is a collective).
            let sym = {
                let _w = world.window();
                symmem::alloc::<f32>(4).unwrap()
            };
            let tx = tx.lock().unwrap();
            tx.send(sym).unwrap();
            tx.send(symmem::alloc::<f32>(4).unwrap()).unwrap();
        } else {
            let mine_sym = {
                let _w = world.window();
                symmem::alloc::<f32>(4).unwrap()
            };
            let rx = rx.lock().unwrap();
            for mut foreign in [rx.recv().unwrap(), rx.recv().unwrap()] {
                let mut mine = symmem::alloc::<f32>(4).unwrap();
                let mut gathered = symmem::alloc::<f32>(8).unwrap();
                let checks = [
                    ("all_reduce", world.all_reduce(&mut foreign, ReduceOp::Sum)),
                    (
                        "all_reduce_into",
                        world.all_reduce_into(&foreign, &mut mine, ReduceOp::Sum),
                    ),
                    (
                        "all_reduce_into",
                        world.all_reduce_into(&mine, &mut foreign, ReduceOp::Sum),
                    ),
                    ("all_gather", world.all_gather(&foreign, &mut gathered)),
                    ("broadcast", world.broadcast(&mut foreign, 0)),
                    ("copy_from", mine.copy_from(&foreign)),
                ];
                for (op, r) in checks {
                    match r {
                        Err(Error::WrongDevice { op: o, detail }) => {
                            assert_eq!(o, op);
                            assert!(!detail.is_empty());
                        }
                        other => panic!("{op}: expected WrongDevice, got {other:?}"),
                    }
                }
                let e = world
                    .reduce_scatter(&gathered, &mut foreign, ReduceOp::Sum)
                    .unwrap_err();
                assert!(
                    matches!(
                        e,
                        Error::WrongDevice {
                            op: "reduce_scatter",
                            ..
                        }
                    ),
                    "{e}"
                );
                // Dropping a buffer on another thread returns it to its own pool.
                drop(foreign);
            }
            drop(mine_sym);
        }
    })
    .unwrap();
}

/// `all_reduce_range` reduces only the slice, on the symmetric path when the buffer is
/// symmetric, and refuses a range outside the buffer before any communication.
#[test]
fn all_reduce_of_a_range_touches_only_the_range() {
    for n in [1usize, 2, 3] {
        symmem::host::run(n, |ctx| {
            let world = ctx.world();
            let r = ctx.rank() as f32;
            for symmetric in [true, false] {
                let mut b = {
                    let _w = symmetric.then(|| world.window());
                    symmem::alloc_from_host(&[r + 1.0; 100]).unwrap()
                };
                assert_eq!(b.is_symmetric(), symmetric);
                world
                    .all_reduce_range(&mut b, 10..37, ReduceOp::Sum)
                    .unwrap();
                let total: f32 = (1..=n).map(|q| q as f32).sum();
                let got = b.to_host_vec().unwrap();
                for (i, v) in got.iter().enumerate() {
                    let want = if (10..37).contains(&i) {
                        total
                    } else {
                        r + 1.0
                    };
                    assert_eq!(*v, want, "element {i}, symmetric {symmetric}");
                }
                // Empty and whole ranges are fine; a range past the end is an error at once.
                world.all_reduce_range(&mut b, 5..5, ReduceOp::Sum).unwrap();
                world.all_reduce_range(&mut b, .., ReduceOp::Max).unwrap();
                let e = world
                    .all_reduce_range(&mut b, 90..101, ReduceOp::Sum)
                    .unwrap_err();
                assert!(matches!(e, symmem::Error::InvalidArgument { .. }), "{e}");
            }
        })
        .unwrap();
    }
}

/// Ranks that pass different ranges of a symmetric buffer diverge: the host backend reports
/// it on every rank (the offsets differ), never reads the wrong elements.
#[test]
fn different_ranges_on_different_ranks_are_a_divergence() {
    let out = symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let mut b = {
            let _w = world.window();
            symmem::alloc_from_host(&[1.0f32; 64]).unwrap()
        };
        let start = 8 * ctx.rank();
        world.all_reduce_range(&mut b, start..start + 16, ReduceOp::Sum)
    })
    .unwrap();
    for r in out {
        let e = r.unwrap_err();
        assert!(matches!(e, symmem::Error::RankDivergence { .. }), "{e}");
    }
}

/// `all_gather_range` and `reduce_scatter_range` read and write only their slices, on both
/// paths, at world sizes 1-4, and refuse ranges outside a buffer or of mismatched lengths before
/// any communication (so every rank gets the error and nothing hangs).
#[test]
fn all_gather_and_reduce_scatter_of_ranges_touch_only_the_ranges() {
    for n in [1usize, 2, 3, 4] {
        symmem::host::run(n, |ctx| {
            let world = ctx.world();
            let rank = ctx.rank();
            for symmetric in [true, false] {
                let alloc = |v: Vec<f32>| {
                    let _w = symmetric.then(|| world.window());
                    symmem::alloc_from_host(&v).unwrap()
                };
                // src: 50 elements, the slice 5..12 holds rank * 100 + i.
                let src_host: Vec<f32> = (0..50)
                    .map(|i| {
                        if (5..12).contains(&i) {
                            (rank * 100 + i) as f32
                        } else {
                            -1.0
                        }
                    })
                    .collect();
                let src = alloc(src_host.clone());
                let mut dst = alloc(vec![-2.0; 7 * n + 20]);
                assert_eq!(src.is_symmetric(), symmetric);
                world
                    .all_gather_range(&src, 5..12, &mut dst, 3..3 + 7 * n)
                    .unwrap();
                let got = dst.to_host_vec().unwrap();
                for (j, v) in got.iter().enumerate() {
                    let want = if (3..3 + 7 * n).contains(&j) {
                        let (q, i) = ((j - 3) / 7, (j - 3) % 7 + 5);
                        (q * 100 + i) as f32
                    } else {
                        -2.0
                    };
                    assert_eq!(*v, want, "all_gather element {j}, symmetric {symmetric}");
                }
                assert_eq!(src.to_host_vec().unwrap(), src_host, "src untouched");

                // reduce-scatter: src slice 2..2 + 4n, block q of it holds q + rank; dst 10..14.
                let src = alloc(
                    (0..4 * n + 6)
                        .map(|i| {
                            if (2..2 + 4 * n).contains(&i) {
                                ((i - 2) / 4 + rank) as f32
                            } else {
                                -1.0
                            }
                        })
                        .collect(),
                );
                let mut dst = alloc(vec![-3.0; 20]);
                world
                    .reduce_scatter_range(&src, 2..2 + 4 * n, &mut dst, 10..14, ReduceOp::Sum)
                    .unwrap();
                let got = dst.to_host_vec().unwrap();
                let want_in: f32 = (0..n).map(|q| (rank + q) as f32).sum();
                for (j, v) in got.iter().enumerate() {
                    let want = if (10..14).contains(&j) { want_in } else { -3.0 };
                    assert_eq!(
                        *v, want,
                        "reduce_scatter element {j}, symmetric {symmetric}"
                    );
                }

                // Errors before communication: out of range, and mismatched lengths.
                let e = world
                    .all_gather_range(&src, 0..1, &mut dst, 15..21)
                    .unwrap_err();
                assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
                let e = world
                    .all_gather_range(&src, 0..2, &mut dst, 0..2 * n + 1)
                    .unwrap_err();
                assert!(matches!(e, Error::LengthMismatch { .. }), "{e}");
                let e = world
                    .reduce_scatter_range(&src, 0..n + 1, &mut dst, 0..1, ReduceOp::Sum)
                    .unwrap_err();
                assert!(matches!(e, Error::LengthMismatch { .. }), "{e}");
            }
        })
        .unwrap();
    }
}
