//! The skinny GEMM kernels on a GPU: for f32, bf16 and f16 storage, every `m` in
//! {1, 2, 3, 7, 8, 16, 31, 32, 33, 64} and the decode shapes of Llama 3 8B's MLP at tp 1 and 2
//! (gate-up `4096 x 2 ffn/tp`, down `ffn/tp x 4096`), plus small odd shapes, the output equals
//! an f64 host reference within the example's bound, repeated runs are bit-identical (split-K
//! plans over 50 calls in a row, interleaved, which exercises the reset of the one-launch
//! split-K's arrival counters), shapes the
//! plan refuses fall back (no launch), and bad plans or buffers are errors, not launches. One
//! test runs the selection of `--gemm skinny` and `--gemm auto` end to end through
//! [`CudaKernels`] (guard, timing, the `gemm_choice` record).
//!
//! Without a usable GPU every test prints a visible `skipped: no CUDA device (...)` line and
//! returns; with `SYMMEM_REQUIRE_GPU=1` (the GPU machine's runs) a missing GPU is a failure.
//! The f64 reference covers every row and a sample of columns (the first and last 16, and 32
//! spread between; every column reads every row of `B`, so each split is covered).

#![cfg(feature = "cuda")]

use std::io::Write;
use std::sync::Mutex;

use symmem::launch::{detect, run, BackendChoice};
use symmem::{bf16, f16, Buffer, DType, Element, RankConfig, RankContext};
use tp_mlp::config::{Dtype, GemmMode};
use tp_mlp::cuda::CudaKernels;
use tp_mlp::model::Kernels;
use tp_mlp::skinny::{self, Skinny};

/// One GPU test at a time (they share the device).
static GPU: Mutex<()> = Mutex::new(());

/// Visible line, not swallowed by the test harness's output capture.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Run `f` on one CUDA rank, or print the skip line and return `None` when there is no GPU
/// (a failure with `SYMMEM_REQUIRE_GPU=1`).
fn on_gpu<R: Send>(test: &str, f: impl Fn(&RankContext) -> R + Send + Sync) -> Option<R> {
    let _guard = GPU.lock().unwrap_or_else(|e| e.into_inner());
    let report = detect();
    if let Some(why) = report.why_not_cuda(1) {
        let require = std::env::var("SYMMEM_REQUIRE_GPU")
            .map(|v| v == "1")
            .unwrap_or(false);
        if require {
            panic!("{test}: SYMMEM_REQUIRE_GPU=1 but no GPU can be used: {why}");
        }
        say(&format!("skipped: no CUDA device ({test}: {why})"));
        return None;
    }
    let mut out = run(BackendChoice::Cuda, 1, RankConfig::default(), f)
        .unwrap_or_else(|e| panic!("{test}: the CUDA rank did not start: {e}"));
    Some(out.remove(0))
}

/// Deterministic values in [-1, 1) (a hash of the index and a salt).
fn values<T: Element>(len: usize, salt: u64) -> Vec<T> {
    (0..len as u64)
        .map(|i| {
            let mut z = i
                .wrapping_add(salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z ^= z >> 31;
            z = z.wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 29;
            T::from_f64((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        })
        .collect()
}

/// Columns the reference covers.
fn sample_cols(n: usize) -> Vec<usize> {
    if n <= 64 {
        return (0..n).collect();
    }
    let mut c: Vec<usize> = (0..16).chain(n - 16..n).collect();
    c.extend((1..=32).map(|i| i * (n - 32) / 33 + 16));
    c.sort_unstable();
    c.dedup();
    c
}

/// `||got - ref|| / ||ref||` over every row and the sampled columns, with the f64 reference
/// of the stored (rounded) operands.
fn rel_error<T: Element>(
    a: &[T],
    b: &[T],
    got: &[T],
    m: usize,
    k: usize,
    n: usize,
    cols: &[usize],
) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for r in 0..m {
        for &c in cols {
            let want: f64 = (0..k)
                .map(|i| a[r * k + i].to_f64() * b[i * n + c].to_f64())
                .sum();
            let g = got[r * n + c].to_f64();
            assert!(g.is_finite(), "C[{r}][{c}] = {g}");
            num += (g - want) * (g - want);
            den += want * want;
        }
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

const MS: [usize; 10] = [1, 2, 3, 7, 8, 16, 31, 32, 33, 64];

/// The shapes `(k, n)`: decode gate-up and down at tp 1 and 2, and small odd ones.
fn shapes() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for tp in [1, 2] {
        let s = 14336 / tp;
        v.push((4096, 2 * s));
        v.push((s, 4096));
    }
    v.extend([(37, 24), (1000, 72), (333, 264)]);
    v
}

fn bound_of(d: DType) -> f64 {
    match d {
        DType::F32 => Dtype::F32.bound(),
        DType::BF16 => Dtype::Bf16.bound(),
        _ => Dtype::F16.bound(),
    }
}

/// Every m and shape for storage `T`: within the bound, bit-identical on repeated runs.
fn every_shape<T: Element>(ctx: &RankContext) -> Vec<String> {
    let sk = Skinny::new(ctx).expect("the skinny kernels load");
    let mut lines = Vec::new();
    for (salt, (k, n)) in shapes().into_iter().enumerate() {
        let b_host = values::<T>(k * n, 2 * salt as u64 + 1);
        let b = symmem::alloc_from_host(&b_host).expect("upload B");
        let cols = sample_cols(n);
        for m in MS {
            let a_host = values::<T>(m * k, 2 * salt as u64 + 2 + m as u64);
            let a = symmem::alloc_from_host(&a_host).expect("upload A");
            let mut plans =
                sk.candidates_for(&b, &symmem::alloc_zeroed::<T>(m * n).expect("C"), m, k, n);
            assert!(plans.len() >= if m <= 8 { 2 } else { 1 }, "{m}x{k}x{n}");
            // The candidates of plan()'s split factor (4 and, for m <= 8, 8 loads in flight;
            // the other split factors run in split_k_repeats) on a fresh NaN C; they add in the
            // same order, so they agree bit for bit.
            let splits = plans[0].splits;
            plans.retain(|p| p.splits == splits);
            assert_eq!(plans.len(), if m <= 8 { 2 } else { 1 }, "{m}x{k}x{n}");
            let mut u4: Option<Vec<T>> = None;
            for plan in plans {
                let mut c = symmem::alloc_from_host(&vec![T::from_f64(f64::NAN); m * n])
                    .expect("C filled with NaN");
                sk.gemm(&plan, &a, &b, &mut c).expect("skinny gemm");
                let first = c.to_host_vec().expect("download C");
                // Every element written (C started as NaN).
                assert!(
                    first.iter().all(|v| v.to_f64().is_finite()),
                    "{m}x{k}x{n} {}: an element of C was not written ({})",
                    T::DTYPE,
                    plan.describe()
                );
                let err = rel_error(&a_host, &b_host, &first, m, k, n, &cols);
                let bound = bound_of(T::DTYPE);
                assert!(
                    err <= bound,
                    "{m}x{k}x{n} {}: relative error {err:.3e} above {bound:.0e} ({})",
                    T::DTYPE,
                    plan.describe()
                );
                for rep in 0..2 {
                    sk.gemm(&plan, &a, &b, &mut c).expect("skinny gemm again");
                    let again = c.to_host_vec().expect("download C");
                    assert!(
                        again
                            .iter()
                            .zip(&first)
                            .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits()),
                        "{m}x{k}x{n} {}: run {} differs from the first ({})",
                        T::DTYPE,
                        rep + 2,
                        plan.describe()
                    );
                }
                if let Some(u4) = &u4 {
                    assert!(
                        u4.iter()
                            .zip(&first)
                            .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits()),
                        "{m}x{k}x{n} {}: {} differs from the 4-loads kernel",
                        T::DTYPE,
                        plan.describe()
                    );
                } else {
                    u4 = Some(first.clone());
                }
                lines.push(format!(
                    "{m}x{k}x{n} {}: rel error {err:.2e}, {}",
                    T::DTYPE,
                    plan.describe()
                ));
            }
        }
    }
    lines
}

#[test]
fn skinny_matches_the_f64_reference_for_every_dtype_m_and_decode_shape() {
    let Some(lines) = on_gpu("skinny_matches_the_f64_reference", |ctx| {
        let mut l = every_shape::<f32>(ctx);
        l.extend(every_shape::<bf16>(ctx));
        l.extend(every_shape::<f16>(ctx));
        l
    }) else {
        return;
    };
    for l in &lines {
        say(l);
    }
    let per_shape: usize = MS.iter().map(|&m| if m <= 8 { 2 } else { 1 }).sum();
    assert_eq!(lines.len(), 3 * shapes().len() * per_shape);
}

#[test]
fn unaligned_shapes_fall_back_and_bad_plans_are_errors() {
    let Some(()) = on_gpu("unaligned_shapes_fall_back", |ctx| {
        let sk = Skinny::new(ctx).expect("the skinny kernels load");
        // n not a multiple of 8 bf16 elements (rows not 16-byte aligned): no plan.
        let (m, k, n) = (4, 64, 4100);
        let a = symmem::alloc_zeroed::<bf16>(m * k).unwrap();
        let b = symmem::alloc_zeroed::<bf16>(k * n).unwrap();
        let c = symmem::alloc_zeroed::<bf16>(m * n).unwrap();
        assert!(sk.plan_for(&b, &c, m, k, n).is_none());
        assert!(sk.plan_for(&b, &c, 65, k, n).is_none());
        // A plan for another shape, or one changed by hand, is refused before any launch.
        let plan = skinny::plan(m, k, 4096, DType::BF16, sk.sm_count()).unwrap();
        let mut c2 = symmem::alloc_zeroed::<bf16>(m * 4096).unwrap();
        let b2 = symmem::alloc_zeroed::<bf16>(k * 4096).unwrap();
        let short = symmem::alloc_zeroed::<bf16>(m * k - 1).unwrap();
        assert!(sk.gemm(&plan, &short, &b2, &mut c2).is_err());
        let mut c_small = symmem::alloc_zeroed::<bf16>(m * 4096 - 8).unwrap();
        assert!(sk.gemm(&plan, &a, &b2, &mut c_small).is_err());
        let mut tampered = plan.clone();
        tampered.splits += 1;
        assert!(sk.gemm(&tampered, &a, &b2, &mut c2).is_err());
        let mut tampered = plan.clone();
        tampered.k_tile *= 64;
        assert!(sk.gemm(&tampered, &a, &b2, &mut c2).is_err());
        // The plan of another dtype.
        let a16 = symmem::alloc_zeroed::<f16>(m * k).unwrap();
        let b16 = symmem::alloc_zeroed::<f16>(k * 4096).unwrap();
        let mut c16 = symmem::alloc_zeroed::<f16>(m * 4096).unwrap();
        assert!(sk.gemm(&plan, &a16, &b16, &mut c16).is_err());
        // The real plan runs.
        sk.gemm(&plan, &a, &b2, &mut c2).expect("the plan runs");
        symmem::synchronize().unwrap();
    }) else {
        return;
    };
}

/// `--gemm skinny` and `--gemm auto` through the example's kernels: the guard passes, the
/// choice is recorded with its weight bandwidth, and the output matches cuBLAS's.
#[test]
fn gemm_modes_choose_and_record_the_skinny_kernel() {
    let Some(records) = on_gpu("gemm_modes_choose_and_record", |ctx| {
        let mut out = Vec::new();
        for mode in [GemmMode::Skinny, GemmMode::Auto, GemmMode::Cublas] {
            let kernels = CudaKernels::new(ctx, mode).expect("kernels");
            for (m, k, n) in [(1, 4096, 28672), (8, 14336, 4096), (64, 4096, 28672)] {
                let a_host = values::<bf16>(m * k, 11);
                let b_host = values::<bf16>(k * n, 12);
                let a: Buffer<bf16> = symmem::alloc_from_host(&a_host).unwrap();
                let b: Buffer<bf16> = symmem::alloc_from_host(&b_host).unwrap();
                let mut c = symmem::alloc_zeroed::<bf16>(m * n).unwrap();
                Kernels::<bf16>::gemm(&kernels, &a, &b, &mut c, m, k, n).expect("tuned gemm");
                Kernels::<bf16>::gemm(&kernels, &a, &b, &mut c, m, k, n).expect("chosen gemm");
                let got = c.to_host_vec().unwrap();
                let err = rel_error(&a_host, &b_host, &got, m, k, n, &sample_cols(n));
                assert!(
                    err <= Dtype::Bf16.bound(),
                    "{mode:?} {m}x{k}x{n}: {err:.3e}"
                );
            }
            out.push((mode, Kernels::<bf16>::gemm_choices(&kernels)));
        }
        out
    }) else {
        return;
    };
    for (mode, choices) in &records {
        for c in choices {
            say(&format!("{mode:?}: {}", tp_mlp::report::describe_choice(c)));
        }
        match mode {
            GemmMode::Cublas => assert!(choices.is_empty()),
            GemmMode::Skinny => {
                assert_eq!(choices.len(), 3);
                for c in choices {
                    assert_eq!(c.skinny.as_deref(), Some("chosen"), "{c:?}");
                    assert!(c.chosen.starts_with("skinny"), "{c:?}");
                    assert!(c.skinny_rel_error.unwrap() <= skinny::guard_bound(DType::BF16));
                    assert!(c.weight_gbps.unwrap() > 0.0);
                    // Both loads-in-flight variants timed for m <= 8 (at each split factor),
                    // one above.
                    let tried = c.skinny_candidates.as_deref().unwrap_or_default();
                    let want = if c.mkn[0] <= 8 { 2 } else { 1 };
                    assert!(tried.matches(" us").count() >= want, "{c:?}");
                    assert!(tried.contains(" splits "), "{c:?}");
                }
            }
            _ => {
                assert_eq!(choices.len(), 3);
                for c in choices {
                    let note = c.skinny.as_deref().unwrap_or_default();
                    assert!(note == "chosen" || note == "slower", "{c:?}");
                    assert!(c.best_us.unwrap() <= c.gemm_ex_us.unwrap() * 1.05, "{c:?}");
                }
            }
        }
    }
}

/// Split-K plans run 50 times in a row, two of them interleaved (they share the workspace's
/// arrival counters, which the last block of every column block sets back to zero): every
/// output is bit-identical to the first and within the bound of the f64 reference. A counter
/// left non-zero by a call would make the next call's blocks miss (or repeat) the fix-up.
fn split_k_repeats<T: Element>(ctx: &RankContext) -> Vec<String> {
    let sk = Skinny::new(ctx).expect("the skinny kernels load");
    // (m, k, n): the down projection at tp 1 and 2, and an odd one with a partial column block.
    let cases = [(1, 14336, 4096), (8, 7168, 4096), (3, 2100, 264)];
    let mut runs = Vec::new();
    for (i, &(m, k, n)) in cases.iter().enumerate() {
        let a_host = values::<T>(m * k, 101 + i as u64);
        let b_host = values::<T>(k * n, 201 + i as u64);
        let b = symmem::alloc_from_host(&b_host).expect("upload B");
        let c = symmem::alloc_from_host(&vec![T::from_f64(f64::NAN); m * n]).expect("C");
        let plans = sk.candidates_for(&b, &c, m, k, n);
        assert!(plans.len() >= 4, "{m}x{k}x{n}: {} candidates", plans.len());
        // Every candidate (4 and 8 loads in flight, several split factors), each on its own
        // buffers.
        for plan in plans {
            assert!(
                plan.splits > 1,
                "{m}x{k}x{n} is not split-K: {}",
                plan.describe()
            );
            let a = symmem::alloc_from_host(&a_host).expect("upload A");
            let b = symmem::alloc_from_host(&b_host).expect("upload B");
            let c = symmem::alloc_from_host(&vec![T::from_f64(f64::NAN); m * n]).expect("C");
            runs.push((
                plan,
                a_host.clone(),
                b_host.clone(),
                a,
                b,
                c,
                None::<Vec<T>>,
            ));
        }
    }
    for rep in 0..50 {
        for (plan, a_host, b_host, a, b, c, first) in runs.iter_mut() {
            let (m, k, n) = (plan.m, plan.k, plan.n);
            sk.gemm(plan, a, b, c).expect("split-K gemm");
            let got = c.to_host_vec().expect("download C");
            match first {
                None => {
                    let err = rel_error(a_host, b_host, &got, m, k, n, &sample_cols(n));
                    let bound = bound_of(T::DTYPE);
                    assert!(
                        err <= bound,
                        "{m}x{k}x{n} {}: relative error {err:.3e} above {bound:.0e} ({})",
                        T::DTYPE,
                        plan.describe()
                    );
                    *first = Some(got);
                }
                Some(f) => assert!(
                    got.iter()
                        .zip(f.iter())
                        .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits()),
                    "{m}x{k}x{n} {}: call {} differs from the first ({})",
                    T::DTYPE,
                    rep + 1,
                    plan.describe()
                ),
            }
        }
    }
    runs.iter()
        .map(|(plan, ..)| {
            format!(
                "{}x{}x{} {}: 50 split-K calls bit-identical, {}",
                plan.m,
                plan.k,
                plan.n,
                T::DTYPE,
                plan.describe()
            )
        })
        .collect()
}

#[test]
fn split_k_is_bit_identical_over_50_calls_in_a_row() {
    let Some(lines) = on_gpu("split_k_is_bit_identical_over_50_calls", |ctx| {
        let mut l = split_k_repeats::<f32>(ctx);
        l.extend(split_k_repeats::<bf16>(ctx));
        l.extend(split_k_repeats::<f16>(ctx));
        l
    }) else {
        return;
    };
    for l in &lines {
        say(l);
    }
    // Three cases, three dtypes, at least 4 candidates each.
    assert!(lines.len() >= 36, "{}", lines.len());
}

/// `||got - ref|| / ||ref||` of the fused gate-up output `h[m, n]` over every row and the
/// sampled columns, with the f64 reference `silu(a b_gate) * (a b_up)` of the stored operands
/// (`b` is `[k, 2 n]`: gate columns, then up columns).
fn rel_error_silu<T: Element>(a: &[T], b: &[T], got: &[T], m: usize, k: usize, n: usize) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for r in 0..m {
        for c in sample_cols(n) {
            let dot = |col: usize| -> f64 {
                (0..k)
                    .map(|i| a[r * k + i].to_f64() * b[i * 2 * n + col].to_f64())
                    .sum()
            };
            let (g, u) = (dot(c), dot(n + c));
            let want = g / (1.0 + (-g).exp()) * u;
            let v = got[r * n + c].to_f64();
            assert!(v.is_finite(), "h[{r}][{c}] = {v}");
            num += (v - want) * (v - want);
            den += want * want;
        }
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// The fused gate-up kernels (SiLU-and-multiply in the epilogue) for storage `T`: every m, the
/// gate-up shapes at tp 1 and 2 and two small ones; within the bound of the f64 reference,
/// every element written, bit-identical over repeated calls and between the 4- and 8-loads
/// kernels.
fn fused_every_shape<T: Element>(ctx: &RankContext) -> Vec<String> {
    let sk = Skinny::new(ctx).expect("the skinny kernels load");
    let mut lines = Vec::new();
    for (salt, (k, n)) in [(4096, 14336), (4096, 7168), (37, 24), (1000, 72)]
        .into_iter()
        .enumerate()
    {
        let b_host = values::<T>(k * 2 * n, 301 + salt as u64);
        let b = symmem::alloc_from_host(&b_host).expect("upload B");
        for m in MS {
            let a_host = values::<T>(m * k, 401 + salt as u64 + m as u64);
            let a = symmem::alloc_from_host(&a_host).expect("upload A");
            let probe = symmem::alloc_zeroed::<T>(m * n).expect("h");
            let mut plans = sk.candidates_silu_for(&b, &probe, m, k, n);
            let splits = plans.first().map(|p| p.splits).unwrap_or(0);
            plans.retain(|p| p.splits == splits);
            assert_eq!(plans.len(), if m <= 8 { 2 } else { 1 }, "{m}x{k}x{n}");
            let mut first_plan: Option<Vec<T>> = None;
            for plan in plans {
                assert!(plan.fused, "{}", plan.describe());
                let mut h = symmem::alloc_from_host(&vec![T::from_f64(f64::NAN); m * n])
                    .expect("h filled with NaN");
                sk.gemm(&plan, &a, &b, &mut h).expect("fused gate-up");
                let first = h.to_host_vec().expect("download h");
                assert!(
                    first.iter().all(|v| v.to_f64().is_finite()),
                    "{m}x{k}x{n} {}: an element of h was not written ({})",
                    T::DTYPE,
                    plan.describe()
                );
                let err = rel_error_silu(&a_host, &b_host, &first, m, k, n);
                let bound = bound_of(T::DTYPE);
                assert!(
                    err <= bound,
                    "{m}x{k}x{n} {}: relative error {err:.3e} above {bound:.0e} ({})",
                    T::DTYPE,
                    plan.describe()
                );
                for rep in 0..3 {
                    sk.gemm(&plan, &a, &b, &mut h).expect("fused gate-up again");
                    let again = h.to_host_vec().expect("download h");
                    assert!(
                        again
                            .iter()
                            .zip(&first)
                            .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits()),
                        "{m}x{k}x{n} {}: call {} differs from the first ({})",
                        T::DTYPE,
                        rep + 2,
                        plan.describe()
                    );
                }
                match &first_plan {
                    Some(f) => assert!(
                        f.iter()
                            .zip(&first)
                            .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits()),
                        "{m}x{k}x{n} {}: {} differs from the 4-loads kernel",
                        T::DTYPE,
                        plan.describe()
                    ),
                    None => first_plan = Some(first.clone()),
                }
                lines.push(format!(
                    "fused {m}x{k}x{n} {}: rel error {err:.2e}, {}",
                    T::DTYPE,
                    plan.describe()
                ));
            }
        }
    }
    lines
}

#[test]
fn fused_gate_up_matches_the_f64_reference_for_every_dtype_and_m() {
    let Some(lines) = on_gpu("fused_gate_up_matches_the_f64_reference", |ctx| {
        let mut l = fused_every_shape::<f32>(ctx);
        l.extend(fused_every_shape::<bf16>(ctx));
        l.extend(fused_every_shape::<f16>(ctx));
        l
    }) else {
        return;
    };
    for l in &lines {
        say(l);
    }
    let per_shape: usize = MS.iter().map(|&m| if m <= 8 { 2 } else { 1 }).sum();
    assert_eq!(lines.len(), 3 * 4 * per_shape);
}

/// A fused plan handed a `b` of the plain product's length (`k n` instead of `k 2n`), or a
/// plain plan handed the fused shape's buffers, is refused before any launch.
#[test]
fn fused_plans_check_the_doubled_weight_length() {
    let Some(()) = on_gpu("fused_plans_check_the_doubled_weight_length", |ctx| {
        let sk = Skinny::new(ctx).expect("the skinny kernels load");
        let (m, k, n) = (4, 256, 1024);
        let a = symmem::alloc_zeroed::<bf16>(m * k).unwrap();
        let b_half = symmem::alloc_zeroed::<bf16>(k * n).unwrap();
        let b_full = symmem::alloc_zeroed::<bf16>(k * 2 * n).unwrap();
        let mut h = symmem::alloc_zeroed::<bf16>(m * n).unwrap();
        let fused = skinny::plan_silu(m, k, n, DType::BF16, sk.sm_count()).unwrap();
        assert!(sk.gemm(&fused, &a, &b_half, &mut h).is_err());
        let mut plain_as_fused = skinny::plan(m, k, n, DType::BF16, sk.sm_count()).unwrap();
        plain_as_fused.fused = true;
        // (A hand-made fused plan with the plain plan's tiling is only accepted where the two
        // plans coincide; then it is the real fused plan.)
        if plain_as_fused != fused {
            assert!(sk.gemm(&plain_as_fused, &a, &b_full, &mut h).is_err());
        }
        sk.gemm(&fused, &a, &b_full, &mut h)
            .expect("the fused plan runs");
        symmem::synchronize().unwrap();
    }) else {
        return;
    };
}

/// The gate-up projection through the example's kernels: `--gemm skinny` fuses the SiLU-mul
/// (one `gate_up_silu` record, chosen), `--gemm auto` records whichever was faster, `--gemm
/// cublas` runs unfused; every mode gives `h` within the bound of the f64 reference.
#[test]
fn gate_up_silu_modes_choose_record_and_agree() {
    let Some(records) = on_gpu("gate_up_silu_modes", |ctx| {
        let mut out = Vec::new();
        let (m, k, s) = (3, 4096, 7168);
        let a_host = values::<bf16>(m * k, 21);
        let b_host = values::<bf16>(k * 2 * s, 22);
        let a: Buffer<bf16> = symmem::alloc_from_host(&a_host).unwrap();
        let b: Buffer<bf16> = symmem::alloc_from_host(&b_host).unwrap();
        for mode in [GemmMode::Skinny, GemmMode::Auto, GemmMode::Cublas] {
            let kernels = CudaKernels::new(ctx, mode).expect("kernels");
            let mut h = symmem::alloc_zeroed::<bf16>(m * s).unwrap();
            for _ in 0..2 {
                Kernels::<bf16>::gate_up_silu(&kernels, &a, &b, &mut h, m, k, s).expect("gate-up");
            }
            let got = h.to_host_vec().unwrap();
            let err = rel_error_silu(&a_host, &b_host, &got, m, k, s);
            assert!(err <= Dtype::Bf16.bound(), "{mode:?}: {err:.3e}");
            // A wrong length is an error, not a launch.
            let mut short = symmem::alloc_zeroed::<bf16>(m * s - 8).unwrap();
            assert!(Kernels::<bf16>::gate_up_silu(&kernels, &a, &b, &mut short, m, k, s).is_err());
            // Sizes whose products overflow are an error, not a panic.
            assert!(
                Kernels::<bf16>::gate_up_silu(&kernels, &a, &b, &mut short, usize::MAX, k, s)
                    .is_err()
            );
            out.push((mode, Kernels::<bf16>::gemm_choices(&kernels)));
        }
        out
    }) else {
        return;
    };
    for (mode, choices) in &records {
        for c in choices {
            say(&format!("{mode:?}: {}", tp_mlp::report::describe_choice(c)));
        }
        let fused: Vec<_> = choices.iter().filter(|c| c.op == "gate_up_silu").collect();
        match mode {
            GemmMode::Cublas => assert!(choices.is_empty()),
            GemmMode::Skinny => {
                assert_eq!(fused.len(), 1, "{choices:?}");
                assert_eq!(fused[0].skinny.as_deref(), Some("chosen"));
                assert!(fused[0].chosen.contains("_silu"), "{:?}", fused[0]);
                assert_eq!(fused[0].mkn, [3, 4096, 2 * 7168]);
            }
            _ => {
                assert_eq!(fused.len(), 1, "{choices:?}");
                let note = fused[0].skinny.as_deref().unwrap_or_default();
                assert!(note == "chosen" || note == "slower", "{:?}", fused[0]);
            }
        }
    }
}

/// Split-K kernels (plain down projection and fused gate-up) captured in one CUDA graph and
/// replayed 20 times, with eager calls of the same plans between replays (they share the
/// arrival counters): every replay's outputs equal the eager outputs bit for bit.
#[test]
fn split_k_replayed_from_a_graph_equals_eager_bit_for_bit() {
    let Some(lines) = on_gpu("split_k_replayed_from_a_graph", |ctx| {
        let sk = Skinny::new(ctx).expect("the skinny kernels load");
        let (m, k, n) = (2, 14336, 4096);
        let (hk, hs) = (4096, 14336);
        let a_host = values::<bf16>(m * k, 501);
        let b_host = values::<bf16>(k * n, 502);
        let x_host = values::<bf16>(m * hk, 503);
        let w_host = values::<bf16>(hk * 2 * hs, 504);
        let a = symmem::alloc_from_host(&a_host).unwrap();
        let b = symmem::alloc_from_host(&b_host).unwrap();
        let x = symmem::alloc_from_host(&x_host).unwrap();
        let w = symmem::alloc_from_host(&w_host).unwrap();
        let mut c = symmem::alloc_zeroed::<bf16>(m * n).unwrap();
        let mut h = symmem::alloc_zeroed::<bf16>(m * hs).unwrap();
        let down = sk.candidates_for(&b, &c, m, k, n);
        let gate_up = sk.candidates_silu_for(&w, &h, m, hk, hs);
        let (down, gate_up) = (down[0].clone(), gate_up[0].clone());
        assert!(
            down.splits > 1 && gate_up.splits > 1,
            "{down:?} {gate_up:?}"
        );
        sk.gemm(&down, &a, &b, &mut c).unwrap();
        sk.gemm(&gate_up, &x, &w, &mut h).unwrap();
        let (c_eager, h_eager) = (c.to_host_vec().unwrap(), h.to_host_vec().unwrap());
        let bits = |v: &[bf16]| v.iter().map(|e| e.to_f64().to_bits()).collect::<Vec<_>>();
        // The graph writes its own outputs (allocated inside the capture).
        let (mut graph, (gc, gh)) = symmem::capture(|| {
            let mut gc = symmem::alloc::<bf16>(m * n)?;
            let mut gh = symmem::alloc::<bf16>(m * hs)?;
            sk.gemm(&down, &a, &b, &mut gc)?;
            sk.gemm(&gate_up, &x, &w, &mut gh)?;
            Ok((gc, gh))
        })
        .expect("capture the split-K kernels");
        for rep in 0..20 {
            graph.replay().expect("replay");
            assert_eq!(
                bits(&gc.to_host_vec().unwrap()),
                bits(&c_eager),
                "replay {rep}: down"
            );
            assert_eq!(
                bits(&gh.to_host_vec().unwrap()),
                bits(&h_eager),
                "replay {rep}: gate-up"
            );
            // An eager call between replays (same counters).
            sk.gemm(&down, &a, &b, &mut c).unwrap();
            assert_eq!(
                bits(&c.to_host_vec().unwrap()),
                bits(&c_eager),
                "eager after {rep}"
            );
        }
        let err = rel_error_silu(&x_host, &w_host, &h_eager, m, hk, hs);
        assert!(err <= Dtype::Bf16.bound(), "{err:.3e}");
        vec![
            format!(
                "graph: 20 replays bit-identical to eager: {}",
                down.describe()
            ),
            format!(
                "graph: 20 replays bit-identical to eager: {}",
                gate_up.describe()
            ),
        ]
    }) else {
        return;
    };
    for l in &lines {
        say(l);
    }
}
