//! The example's output pieces without running it: the records' JSON (keys, order, `null`
//! for what was not measured), the byte formatting, the table's number helpers, and the
//! memory estimate and its check.

use tp_mlp::config::{Backend, Config, Dtype};
use tp_mlp::memory::{
    check, fmt_bytes, parse_cgroup_left, parse_meminfo, Available, Estimate, CUDA_RESERVE, GIB, MIB,
};
use tp_mlp::model::{CUDA_PROBE_COPY_BYTES, HOST_PROBE_COPY_BYTES};
use tp_mlp::report::{
    all_reduce_na, describe_choice, fixed, gemm_choices_vs_copy, gemm_unit, ratio,
};
use tp_mlp::results::{
    finite, result_line, ArBuffer, Common, GemmChoice, GemmName, Record, StepMode,
};
use tp_mlp::run::RankReport;

fn common() -> Common {
    Common {
        backend: "host".into(),
        tp: 2,
        hidden: 24,
        ffn: 36,
        layers: 1,
        dtype: "f32".into(),
    }
}

const C: &str = r#""backend":"host","tp":2,"hidden":24,"ffn":36,"layers":1,"dtype":"f32""#;

#[test]
fn records_serialize_as_the_result_lines_did() {
    let cases = [
        (
            Record::Step {
                mode: StepMode::Eager,
                common: common(),
                tokens: 16,
                ms_per_step: Some(1.5),
                bit_exact_vs_eager: None,
            },
            format!(r#"{{"kind":"step","mode":"eager",{C},"tokens":16,"ms_per_step":1.5}}"#),
        ),
        (
            Record::Step {
                mode: StepMode::Graph,
                common: common(),
                tokens: 16,
                ms_per_step: Some(0.25),
                bit_exact_vs_eager: Some(true),
            },
            format!(
                r#"{{"kind":"step","mode":"graph",{C},"tokens":16,"ms_per_step":0.25,"bit_exact_vs_eager":true}}"#
            ),
        ),
        (
            Record::MemoryFloor {
                common: common(),
                weight_bytes_per_rank: 1024,
                copy_gbps: finite(f64::NAN),
                floor_ms: Some(2.0),
            },
            format!(
                r#"{{"kind":"memory_floor",{C},"weight_bytes_per_rank":1024,"copy_gbps":null,"floor_ms":2.0}}"#
            ),
        ),
        (
            Record::AllReduce {
                buffer: ArBuffer::Symmetric,
                common: common(),
                tokens: 3,
                bytes: 288,
                us: Some(12.5),
            },
            format!(
                r#"{{"kind":"all_reduce","buffer":"symmetric",{C},"tokens":3,"bytes":288,"us":12.5}}"#
            ),
        ),
        (
            Record::Gemm {
                gemm: GemmName::GateUp,
                common: common(),
                tokens: 3,
                mkn: [3, 24, 36],
                tflops: finite(f64::INFINITY),
            },
            format!(
                r#"{{"kind":"gemm","gemm":"gate_up",{C},"tokens":3,"mkn":[3,24,36],"tflops":null}}"#
            ),
        ),
        (
            Record::Check {
                common: common(),
                tokens: 3,
                rows: 3,
                rel_error: Some(1e-7),
                bound: Some(1e-5),
                pass: true,
            },
            format!(
                r#"{{"kind":"check",{C},"tokens":3,"rows":3,"rel_error":1e-7,"bound":0.00001,"pass":true}}"#
            ),
        ),
        (
            Record::GemmChoice(GemmChoice {
                mkn: [1, 4096, 28672],
                dtype: "bf16".into(),
                chosen: "cublasGemmEx default".into(),
                best_us: Some(10.0),
                gemm_ex_us: Some(10.0),
                skinny: Some("rejected: relative error 1.0e0".into()),
                skinny_us: None,
                skinny_rel_error: Some(1.0),
                skinny_candidates: Some("skinny_bf16_m1_g1 rejected".into()),
                weight_gbps: Some(23488.1),
                weight_fraction_of_copy: None,
                op: "gemm".into(),
            }),
            r#"{"kind":"gemm_choice","mkn":[1,4096,28672],"dtype":"bf16","chosen":"cublasGemmEx default","best_us":10.0,"gemm_ex_us":10.0,"skinny":"rejected: relative error 1.0e0","skinny_us":null,"skinny_rel_error":1.0,"skinny_candidates":"skinny_bf16_m1_g1 rejected","weight_gbps":23488.1,"weight_fraction_of_copy":null,"op":"gemm"}"#.to_string(),
        ),
    ];
    for (record, want) in cases {
        assert_eq!(result_line(&record).unwrap(), format!("RESULT {want}"));
    }
}

#[test]
fn bytes_read_in_units() {
    assert_eq!(fmt_bytes(0), "0 B");
    assert_eq!(fmt_bytes(1023), "1023 B");
    assert_eq!(fmt_bytes(1536), "1.5 KiB");
    assert_eq!(fmt_bytes(64 * MIB), "64.0 MiB");
    assert_eq!(fmt_bytes(GIB + GIB / 2), "1.50 GiB");
    assert_eq!(fmt_bytes(2794 * GIB + GIB / 5), "2794.2 GiB");
}

#[test]
fn table_numbers_have_one_format_per_column() {
    assert_eq!(fixed(Some(1.0), 4), "1.0000");
    assert_eq!(fixed(Some(1234.56789), 4), "1234.5679");
    assert_eq!(fixed(None, 4), "-");
    assert_eq!(fixed(Some(f64::NAN), 2), "-");
    assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50x");
    assert_eq!(ratio(Some(3.0), Some(0.0)), "-");
    assert_eq!(ratio(None, Some(2.0)), "-");
    assert_eq!(gemm_unit(&[0.0004, 0.2]), ("GEMM GF/s", 1e-3));
    assert_eq!(gemm_unit(&[0.5, 300.0, f64::NAN]), ("GEMM TF/s", 1.0));
    assert_eq!(all_reduce_na(1).as_deref(), Some("n/a (tp 1)"));
    assert_eq!(all_reduce_na(2), None);
}

#[test]
fn meminfo_and_cgroup_values_parse() {
    let text =
        "MemTotal:       65536000 kB\nMemFree:         1000 kB\nMemAvailable:   32768000 kB\n";
    assert_eq!(parse_meminfo(text), Some(32768000 * 1024));
    assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
    assert_eq!(parse_meminfo("MemAvailable: lots kB\n"), None);
    assert_eq!(
        parse_cgroup_left("8589934592\n", "1073741824\n"),
        Some(7 * GIB)
    );
    assert_eq!(parse_cgroup_left("max\n", "1073741824\n"), None);
    assert_eq!(parse_cgroup_left("100", "200"), Some(0));
}

fn cfg(hidden: usize, ffn: usize, layers: usize, tokens: usize, dtype: Dtype) -> Config {
    Config {
        hidden,
        ffn,
        layers,
        tokens: vec![1, tokens],
        dtype,
        ..Config::default()
    }
}

#[test]
fn the_estimate_counts_the_shards_and_the_backend() {
    let c = cfg(4096, 14336, 2, 64, Dtype::Bf16);
    let host = Estimate::new(&c, Backend::Host, 2, 0);
    assert_eq!(host.weights_per_rank, 3 * 4096 * 7168 * 2 * 2);
    assert_eq!(host.fixed_per_rank, 2 * HOST_PROBE_COPY_BYTES as u64);
    assert_eq!(host.reference, 0);
    // Ranks are threads: the host holds every rank's memory.
    assert!(host.host_total() >= 2 * host.device_per_rank());
    let cuda = Estimate::new(&c, Backend::Cuda, 2, 0);
    assert_eq!(cuda.weights_per_rank, host.weights_per_rank);
    assert_eq!(
        cuda.fixed_per_rank,
        2 * CUDA_PROBE_COPY_BYTES as u64 + 64 * MIB + 16 * MIB + 64 * 1024 + CUDA_RESERVE
    );
    // The skinny kernels' split-K workspace is part of the fixed bytes.
    assert_eq!(
        tp_mlp::memory::CUDA_WORKSPACES,
        64 * MIB + tp_mlp::skinny::WORKSPACE_BYTES as u64
    );
    // On CUDA the host holds one layer's staging per rank (gate, up, packed, down), not the
    // weights; on the host backend the packed and down shards are part of the weights.
    assert_eq!(cuda.staging_per_rank, 5 * 4096 * 7168 * 2);
    assert_eq!(host.staging_per_rank, 3 * 4096 * 7168 * 2);
    assert_eq!(cuda.host_io_per_rank, 2 * 64 * 4096 * 2);
    assert_eq!(
        cuda.host_total(),
        2 * (cuda.staging_per_rank + cuda.host_io_per_rank)
    );
    assert_eq!(
        host.host_total(),
        2 * (host.device_per_rank() + host.staging_per_rank + host.host_io_per_rank)
    );
    // More ranks, smaller shards; the graph's buffers add to the activations.
    assert_eq!(
        Estimate::new(&c, Backend::Cuda, 4, 0).weights_per_rank * 2,
        cuda.weights_per_rank
    );
    let graph = Config {
        graph: true,
        ..c.clone()
    };
    assert!(
        Estimate::new(&graph, Backend::Cuda, 2, 0).activations_per_rank > cuda.activations_per_rank
    );
    // The f64 reference grows with its rows.
    let with_ref = Estimate::new(&c, Backend::Cuda, 2, 8);
    assert_eq!(with_ref.reference, 8 * 8 * (3 * 4096 + 5 * 14336));
}

#[test]
fn the_check_names_what_is_short_and_the_fix() {
    // The issue's size on one H200: 894 GiB of f32 weights for 141 GiB.
    let c = cfg(200000, 400000, 1, 16, Dtype::F32);
    let need = Estimate::new(&c, Backend::Cuda, 1, 4);
    let h200 = Available {
        host: Some(2000 * GIB),
        gpus: vec![140 * GIB],
    };
    let e = check(&need, &h200).unwrap_err();
    // 894.1 GiB of weights, 2 GiB of copy probe, 1 GiB reserve, the workspaces, activations.
    let per_rank = need.device_per_rank();
    assert!((897 * GIB..898 * GIB).contains(&per_rank), "{per_rank}");
    assert!(
        e.verdict.starts_with(&format!(
            "the model does not fit on GPU 0: each rank needs about {} of device memory",
            fmt_bytes(per_rank)
        )),
        "{}",
        e.verdict
    );
    assert!(e.verdict.contains("and 140.0 GiB is free"), "{}", e.verdict);
    assert!(e.verdict.contains("raise --tp"), "{}", e.verdict);
    assert!(
        e.details.iter().any(|d| d.starts_with("weights")),
        "{:?}",
        e.details
    );
    // The smallest GPU is named.
    let eight = Available {
        host: None,
        gpus: vec![100 * GIB, 50 * GIB, 100 * GIB],
    };
    let e = check(&Estimate::new(&c, Backend::Cuda, 3, 4), &eight).unwrap_err();
    assert!(e.verdict.contains("on GPU 1:"), "{}", e.verdict);
    assert!(
        e.verdict.contains("50.00 GiB is the least free"),
        "{}",
        e.verdict
    );
    // Enough everywhere, or nothing known: no error.
    assert!(check(
        &need,
        &Available {
            host: Some(u64::MAX),
            gpus: vec![u64::MAX]
        }
    )
    .is_ok());
    assert!(check(&need, &Available::default()).is_ok());
    // Host backend: host memory, with the backend's fix.
    let small = cfg(256, 1024, 1, 16, Dtype::F32);
    let need = Estimate::new(&small, Backend::Host, 2, 16);
    let e = check(
        &need,
        &Available {
            host: Some(MIB),
            gpus: vec![],
        },
    )
    .unwrap_err();
    assert!(
        e.verdict
            .starts_with("the model does not fit in host memory: the run needs about "),
        "{}",
        e.verdict
    );
    assert!(
        e.verdict.contains("and 1.0 MiB are available"),
        "{}",
        e.verdict
    );
    assert!(!e.verdict.contains("--tp"), "{}", e.verdict);
    assert!(check(
        &need,
        &Available {
            host: Some(need.host_total()),
            gpus: vec![]
        }
    )
    .is_ok());
    // A reference larger than the run: the fix is about the reference.
    let wide = cfg(64, 4_000_000, 1, 4096, Dtype::F32);
    let need = Estimate::new(&wide, Backend::Cuda, 8, 4096);
    let e = check(
        &need,
        &Available {
            host: Some(need.reference - 1),
            gpus: vec![],
        },
    )
    .unwrap_err();
    assert!(
        e.verdict.starts_with("the reference does not fit"),
        "{}",
        e.verdict
    );
    assert!(e.verdict.contains("--check-rows"), "{}", e.verdict);
}

#[test]
fn gemm_choices_report_the_weight_bandwidth_as_a_fraction_of_the_copy_rate() {
    let choice = GemmChoice {
        mkn: [1, 4096, 28672],
        dtype: "bf16".into(),
        chosen: "skinny skinny_bf16_m1_g1".into(),
        best_us: Some(60.0),
        gemm_ex_us: Some(80.0),
        skinny: Some("chosen".into()),
        skinny_us: Some(60.0),
        skinny_rel_error: Some(1e-3),
        skinny_candidates: Some("skinny_bf16_m1_g1 61.0 us, skinny_bf16_m1_g1_u8 60.0 us".into()),
        weight_gbps: Some(3914.7),
        weight_fraction_of_copy: None,
        op: "gemm".into(),
    };
    let reports = [RankReport {
        gemm_choices: vec![choice.clone()],
        ..RankReport::default()
    }];
    let out = gemm_choices_vs_copy(&reports, 4000.0);
    assert_eq!(out.len(), 1);
    let f = out[0].weight_fraction_of_copy.unwrap();
    assert!((f - 3914.7 / 4000.0).abs() < 1e-12, "{f}");
    let line = describe_choice(&out[0]);
    assert!(line.contains("[1 x 4096] x [4096 x 28672] bf16"), "{line}");
    assert!(line.contains("3915 GB/s = 98% of the copy rate"), "{line}");
    assert!(line.contains("skinny 60.0 us: chosen"), "{line}");
    // Which of the skinny kernels won, and what the others took.
    assert!(
        line.contains(
            "skinny kernels tried: skinny_bf16_m1_g1 61.0 us, skinny_bf16_m1_g1_u8 60.0 us"
        ),
        "{line}"
    );
    // No copy rate measured: no fraction.
    let out = gemm_choices_vs_copy(&reports, f64::NAN);
    assert_eq!(out[0].weight_fraction_of_copy, None);
    assert!(describe_choice(&out[0]).contains("= - of the copy rate"));
    // Not considered (--gemm lt): no skinny part.
    let lt = GemmChoice {
        skinny: None,
        skinny_us: None,
        skinny_candidates: None,
        ..choice
    };
    assert!(!describe_choice(&lt).contains("skinny:"));
}
