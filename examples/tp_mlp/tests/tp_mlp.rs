//! The `tp_mlp` example's model on the host backend: sharded results against the f64
//! reference at tp 1 to 4 with odd sizes, where buffers come from, graph replays bit for bit,
//! the generator against hand-computed values, and argument validation.

use config::{check_tp, parse_tokens, resolve_tp, Backend, Config, Dtype};
use host::HostKernels;
use model::{Dims, TpMlp, TP_GROUP};
use symmem::{bf16, f16, Element, Error, RankContext};
use tp_mlp::{config, gen, host, model, reference};

/// Hidden size of the tests (odd sizes throughout).
const HIDDEN: usize = 24;
/// FFN size: 36 is divisible by 1, 2, 3 and 4.
const FFN: usize = 36;
/// Token rows.
const TOKENS: usize = 5;
/// Stacked layers (the residual path is exercised).
const LAYERS: usize = 2;
/// Generator seed.
const SEED: u64 = 2024;

/// The rank's `"tp"` group (all ranks) and its model.
fn model<T: Element>(ctx: &RankContext) -> Result<TpMlp<T, HostKernels>, Error> {
    let tp = ctx.split_group(TP_GROUP, &ctx.world(), 0, ctx.rank() as u32)?;
    TpMlp::new(tp, HIDDEN, FFN, LAYERS, SEED, HostKernels::new(ctx))
}

/// The input `x` of the test sizes in the storage type.
fn input<T: Element>() -> Vec<T> {
    gen::input(SEED, TOKENS, HIDDEN, T::from_f64).expect("small input")
}

/// Run one eager step on `tp` ranks; every rank's output in f64.
fn eager_outputs<T: Element>(tp: usize) -> Vec<Vec<f64>> {
    symmem::host::run(tp, |ctx| -> Result<Vec<f64>, Error> {
        let m = model::<T>(ctx)?;
        let x = symmem::alloc_from_host(&input::<T>())?;
        let y = m.forward(&x, TOKENS)?;
        Ok(y.to_host_vec()?.iter().map(|v| v.to_f64()).collect())
    })
    .expect("host run")
    .into_iter()
    .map(|r| r.expect("rank result"))
    .collect()
}

/// Every rank's output at tp 1 to 4 is the same and within `bound` of the reference.
fn check_against_reference<T: Element>(bound: f64) {
    let reference = reference::reference::<T>(SEED, HIDDEN, FFN, LAYERS, TOKENS).unwrap();
    assert_eq!(reference.len(), TOKENS * HIDDEN);
    for tp in 1..=4 {
        let outs = eager_outputs::<T>(tp);
        assert_eq!(outs.len(), tp);
        for (r, out) in outs.iter().enumerate() {
            assert_eq!(
                out,
                &outs[0],
                "{}: rank {r} differs from rank 0 at tp {tp}",
                T::DTYPE
            );
            let err = reference::rel_error(out, &reference);
            assert!(
                err <= bound,
                "{}: tp {tp} rank {r}: relative error {err:e} over {bound:e}",
                T::DTYPE
            );
        }
    }
}

#[test]
fn f32_matches_the_f64_reference_at_tp_1_to_4() {
    check_against_reference::<f32>(Dtype::F32.bound());
}

#[test]
fn bf16_and_f16_match_the_f64_reference_at_tp_1_to_4() {
    check_against_reference::<bf16>(Dtype::Bf16.bound());
    check_against_reference::<f16>(Dtype::F16.bound());
}

#[test]
fn down_projection_output_is_symmetric_for_tp_and_intermediates_are_not() {
    let res = symmem::host::run(3, |ctx| -> Result<(), Error> {
        let m = model::<f32>(ctx)?;
        let layer = m.layer(0);
        assert!(
            !layer.w_gate_up.is_symmetric() && !layer.w_down.is_symmetric(),
            "weights come from the default pool"
        );
        let x = symmem::alloc_from_host(&input::<f32>())?;
        assert!(!x.is_symmetric());
        let h = m.gate_up(0, &x, TOKENS)?;
        assert!(!h.is_symmetric(), "h is an intermediate: default pool");
        assert_eq!(h.pool_label(), "default");
        assert_eq!(h.len(), TOKENS * FFN / 3);
        let y = m.down_proj(0, &h, TOKENS)?;
        assert!(
            y.is_symmetric(),
            "the down projection's output must be symmetric"
        );
        assert_eq!(y.group_name(), Some(TP_GROUP));
        assert_eq!(
            y.symmetric().map(|s| s.group.to_string()),
            Some(TP_GROUP.to_string())
        );
        assert_eq!(y.len(), TOKENS * HIDDEN);
        // The window closed when down_proj returned: later allocations are plain again.
        assert_eq!(symmem::routed_group(), None);
        let after = symmem::alloc::<f32>(16)?;
        assert!(!after.is_symmetric());
        let out = m.forward(&x, TOKENS)?;
        assert!(
            !out.is_symmetric(),
            "the residual stream is an intermediate"
        );
        let z = model::symmetric_zeros::<f32>(8)?;
        assert!(z.is_symmetric() && z.group_name() == Some(TP_GROUP));
        Ok(())
    })
    .expect("host run");
    res.into_iter().for_each(|r| r.expect("rank"));
}

#[test]
fn graph_replays_equal_eager_bit_for_bit() {
    for tp in [2usize, 3] {
        let res = symmem::host::run(tp, |ctx| -> Result<(), Error> {
            let m = model::<f32>(ctx)?;
            let x = symmem::alloc_from_host(&input::<f32>())?;
            let eager = m.forward(&x, TOKENS)?.to_host_vec()?;
            m.group().reserve_symmetric(m.symmetric_reserve(TOKENS))?;
            let (mut graph, mut out) = symmem::capture(|| m.forward(&x, TOKENS))?;
            assert!(out.is_graph_owned());
            for i in 1..=1000 {
                graph.replay()?;
                if i % 100 == 0 {
                    let got = out.to_host_vec()?;
                    assert!(
                        got.iter()
                            .zip(&eager)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "tp {tp}: replay {i} differs from eager"
                    );
                }
            }
            assert_eq!(graph.replays(), 1000);
            // The replay really recomputes: clear the output, replay once more.
            out.fill_zero()?;
            graph.replay()?;
            let got = out.to_host_vec()?;
            assert!(got
                .iter()
                .zip(&eager)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            Ok(())
        })
        .expect("host run");
        res.into_iter().for_each(|r| r.expect("rank"));
    }
}

/// SplitMix64 written out once more from the spec, with 128-bit products reduced mod 2^64.
fn splitmix64_by_hand(z: u64) -> u64 {
    const M: u128 = 1 << 64;
    let z = (z as u128 + 0x9E37_79B9_7F4A_7C15) % M;
    let z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) % M;
    let z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) % M;
    (z ^ (z >> 31)) as u64
}

#[test]
fn generator_gives_the_values_of_the_spec() {
    // SplitMix64's published first outputs for state 0 and 1.
    assert_eq!(gen::splitmix64(0), 0xE220_A839_7B1D_CDAF);
    assert_eq!(gen::splitmix64(1), 0x910A_2DEC_8902_5CC1);
    for z in [0u64, 1, 0x0123_4567_89AB_CDEF, u64::MAX] {
        assert_eq!(gen::splitmix64(z), splitmix64_by_hand(z));
    }
    // Element values from the spec's formula, computed by hand (and by the Python twin's
    // formula): seed 0 / tensor 0 / index 0; the input x (tensor 1_000_000) of seed 42 at
    // index 17; seed 5, tensor 3 (layer 1's gate), index 2, scale 1/sqrt(24).
    let by_hand = |s: u64, t: u64, i: u64, scale: f64| {
        let h = splitmix64_by_hand(s.wrapping_mul(0x100000001B3) ^ (t << 40) ^ i);
        (2.0 * ((h >> 11) as f64 / 9007199254740992.0) - 1.0) * scale
    };
    let cases = [
        (0u64, 0u64, 0u64, 1.0f64, 0.7666216164272852f64),
        (42, gen::INPUT_TENSOR, 17, 1.0, 0.9266598382561719),
        (5, 3, 2, 1.0 / 24f64.sqrt(), -0.08337709404619367),
    ];
    for (s, t, i, scale, want) in cases {
        assert_eq!(
            gen::value(s, t, i, scale),
            want,
            "seed {s} tensor {t} index {i}"
        );
        assert_eq!(by_hand(s, t, i, scale), want);
    }
    assert_eq!(gen::Weight::Gate.tensor_id(1), 3);
    assert_eq!(gen::Weight::Up.tensor_id(1), 4);
    assert_eq!(gen::Weight::Down.tensor_id(2), 8);
    assert_eq!(
        gen::Weight::Down.scale(HIDDEN, FFN),
        1.0 / (FFN as f64).sqrt()
    );
    assert_eq!(
        gen::Weight::Gate.scale(HIDDEN, FFN),
        1.0 / (HIDDEN as f64).sqrt()
    );
    // Checksums of the Python twin's comparison (hidden 8, ffn 16, seed 7).
    let (sum, sumsq) = gen::checksum(7, 0, 1.0 / 8f64.sqrt(), 8 * 16);
    assert_eq!((sum, sumsq), (-1.568776550003546, 5.599080351471588));
}

#[test]
fn shards_are_slices_of_the_full_tensors() {
    let tp = 3;
    let s = FFN / tp;
    for rank in 0..tp {
        let dims = Dims::new(HIDDEN, FFN, 1, tp, rank).unwrap();
        let (gate_up, down) = dims.shard_weights::<f64>(SEED, 0).unwrap();
        assert_eq!(gate_up.len(), HIDDEN * 2 * s);
        assert_eq!(down.len(), s * HIDDEN);
        let sg = gen::Weight::Gate.scale(HIDDEN, FFN);
        let sd = gen::Weight::Down.scale(HIDDEN, FFN);
        for k in [0, 7, HIDDEN - 1] {
            for c in [0, s - 1] {
                let col = rank * s + c;
                assert_eq!(
                    gate_up[k * 2 * s + c],
                    gen::value(SEED, 0, (k * FFN + col) as u64, sg)
                );
                assert_eq!(
                    gate_up[k * 2 * s + s + c],
                    gen::value(SEED, 1, (k * FFN + col) as u64, sg)
                );
            }
        }
        for j in [0, s - 1] {
            for c in [0, HIDDEN - 1] {
                assert_eq!(
                    down[j * HIDDEN + c],
                    gen::value(SEED, 2, ((rank * s + j) * HIDDEN + c) as u64, sd)
                );
            }
        }
    }
}

#[test]
fn reference_rows_are_independent() {
    let full = reference::reference::<f32>(SEED, HIDDEN, FFN, LAYERS, TOKENS).unwrap();
    let two = reference::reference::<f32>(SEED, HIDDEN, FFN, LAYERS, 2).unwrap();
    assert_eq!(&full[..2 * HIDDEN], &two[..]);
    assert_eq!(reference::rel_error(&full, &full), 0.0);
    let off: Vec<f64> = full.iter().map(|v| v * 1.01).collect();
    assert!((reference::rel_error(&off, &full) - 0.01).abs() < 1e-12);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    // tp not dividing ffn: in the model (every rank gets Err) ...
    let res = symmem::host::run(5, |ctx| model::<f32>(ctx).map(drop)).expect("host run");
    assert_eq!(res.len(), 5);
    for r in res {
        match r {
            Err(Error::InvalidArgument { detail, .. }) => {
                assert!(detail.contains("does not divide"), "{detail}")
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(Dims::new(HIDDEN, FFN, 1, 5, 0).is_err());
    assert!(Dims::new(0, FFN, 1, 1, 0).is_err());
    assert!(Dims::new(HIDDEN, FFN, 1, 2, 2).is_err());
    // ... and in the arguments.
    assert!(check_tp(5, 36).is_err());
    assert!(check_tp(0, 36).is_err());
    assert!(check_tp(4, 36).is_ok());
    let ok = Config {
        tp: Some(4),
        ffn: 36,
        hidden: 24,
        ..Config::default()
    };
    assert!(ok.validate().is_ok());
    let e = Config {
        tp: Some(5),
        ..ok.clone()
    }
    .validate()
    .unwrap_err();
    assert!(e.0.contains("does not divide"), "{e}");
    for bad in [
        Config {
            hidden: 0,
            ..ok.clone()
        },
        Config {
            ffn: 0,
            ..ok.clone()
        },
        Config {
            layers: 0,
            ..ok.clone()
        },
        Config {
            iters: 0,
            ..ok.clone()
        },
        Config {
            tp: Some(0),
            ..ok.clone()
        },
        Config {
            tokens: vec![],
            ..ok.clone()
        },
        Config {
            tokens: vec![4, 0],
            ..ok.clone()
        },
        Config {
            check_rows: Some(0),
            ..ok.clone()
        },
        Config {
            hidden: usize::MAX / 2,
            ..ok.clone()
        },
        Config {
            tokens: vec![1 << 40],
            ..ok.clone()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?} should be rejected");
    }
    // tp larger than the GPUs on CUDA; defaults.
    assert!(resolve_tp(Some(4), Backend::Cuda, 1, 36).is_err());
    assert_eq!(resolve_tp(Some(4), Backend::Host, 0, 36), Ok(4));
    assert_eq!(resolve_tp(None, Backend::Host, 0, 36), Ok(2));
    assert_eq!(resolve_tp(None, Backend::Cuda, 1, 36), Ok(1));
    assert_eq!(resolve_tp(None, Backend::Cuda, 16, 1024), Ok(8));
    // Defaults fall back to the largest divisor of ffn.
    assert_eq!(resolve_tp(None, Backend::Cuda, 8, 36), Ok(6));
    assert_eq!(resolve_tp(None, Backend::Host, 0, 35), Ok(1));
    assert!(
        resolve_tp(Some(8), Backend::Cuda, 8, 36).is_err(),
        "8 does not divide 36"
    );
    // dtypes and token lists.
    assert_eq!("bf16".parse::<Dtype>(), Ok(Dtype::Bf16));
    assert_eq!("F16".parse::<Dtype>(), Ok(Dtype::F16));
    assert!("f8".parse::<Dtype>().is_err());
    assert_eq!(parse_tokens("1,8,32,64,4096"), Ok(vec![1, 8, 32, 64, 4096]));
    assert_eq!(parse_tokens(" 16 "), Ok(vec![16]));
    for bad in ["", "1,,2", "0", "-3", "x", "1,"] {
        assert!(parse_tokens(bad).is_err(), "{bad:?} should be rejected");
    }
    assert!("llama3-8b".parse::<config::Preset>().is_ok());
    assert!("gpt2".parse::<config::Preset>().is_err());
    assert_eq!("auto".parse(), Ok(config::GemmMode::Auto));
    assert_eq!(" CUBLAS ".parse(), Ok(config::GemmMode::Cublas));
    let e = "fastest".parse::<config::GemmMode>().unwrap_err();
    assert!(e.0.contains("use auto, lt, skinny or cublas"), "{e}");
    assert_eq!("lt".parse(), Ok(config::GemmMode::Lt));
    assert_eq!("Skinny".parse(), Ok(config::GemmMode::Skinny));
    for m in [
        config::GemmMode::Auto,
        config::GemmMode::Lt,
        config::GemmMode::Skinny,
        config::GemmMode::Cublas,
    ] {
        assert_eq!(m.name().parse(), Ok(m));
    }
    assert_eq!(Config::default().gemm, config::GemmMode::Auto);
}

#[test]
fn automatic_reference_rows_fit_the_budget() {
    let small = Config::default();
    assert_eq!(small.reference_rows(), 16);
    let big = Config {
        hidden: 4096,
        ffn: 14336,
        tokens: vec![1, 4096],
        ..Config::default()
    };
    let rows = big.reference_rows();
    assert!((4..=16).contains(&rows), "{rows}");
    assert_eq!(
        Config {
            check_rows: Some(3),
            ..big.clone()
        }
        .reference_rows(),
        3
    );
    assert_eq!(
        Config {
            tokens: vec![2],
            ..big
        }
        .reference_rows(),
        2
    );
}
