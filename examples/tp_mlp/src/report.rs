//! What a run prints on stdout: the table per token count, with the ratios the docs quote (the
//! step time over the memory floor, the symmetric all-reduce over the plain one), then the
//! `RESULT {json}` lines ([`crate::results`]); and whether every check passed.
//!
//! Each column has one number format. At tp 1 the all-reduce columns read `n/a (tp 1)`: one
//! rank's all-reduce moves nothing, so there is nothing to compare.

use crate::config::{Backend, Config, Dtype};
use crate::memory::fmt_bytes;
use crate::reference;
use crate::results::{
    finite, result_line, ArBuffer, Common, GemmChoice, GemmName, Record, StepMode,
};
use crate::run::RankReport;

/// Largest value of `f` over the ranks.
fn max_over<F: Fn(&RankReport) -> f64>(reports: &[RankReport], f: F) -> f64 {
    reports.iter().map(f).fold(f64::NAN, f64::max)
}

/// `v` with `prec` decimals, or `-` when it is not finite (not measured).
pub fn fixed(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.prec$}"),
        _ => "-".into(),
    }
}

/// `num / den` as `1.23x`, or `-` when either is missing or the denominator is not positive.
pub fn ratio(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(n), Some(d)) if n.is_finite() && d.is_finite() && d > 0.0 => {
            format!("{:.2}x", n / d)
        }
        _ => "-".into(),
    }
}

/// The GEMM rate column: TF/s, or GF/s when every rate of the run is below 1 TF/s (the
/// host's), so that the column keeps one fixed-point format. `(header, divisor of TF/s)`.
pub fn gemm_unit(rates_tflops: &[f64]) -> (&'static str, f64) {
    let most = rates_tflops
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    if most < 1.0 {
        ("GEMM GF/s", 1e-3)
    } else {
        ("GEMM TF/s", 1.0)
    }
}

/// What the all-reduce columns show at `tp` ranks: `None` when they measure something, else
/// the text of each cell (one rank's all-reduce moves nothing).
pub fn all_reduce_na(tp: usize) -> Option<String> {
    (tp <= 1).then(|| format!("n/a (tp {tp})"))
}

/// The ranks' GEMM choices with `weight_fraction_of_copy` filled in: each kernel's weight
/// bandwidth over the measured copy rate (`copy_gbps`, the rate of the memory floor).
pub fn gemm_choices_vs_copy(reports: &[RankReport], copy_gbps: f64) -> Vec<GemmChoice> {
    reports
        .iter()
        .flat_map(|r| r.gemm_choices.iter().cloned())
        .map(|mut c| {
            c.weight_fraction_of_copy = match c.weight_gbps {
                Some(w) if copy_gbps.is_finite() && copy_gbps > 0.0 => finite(w / copy_gbps),
                _ => None,
            };
            c
        })
        .collect()
}

/// One line of the GEMM choices: shape, kernel, time, weight bandwidth and its fraction of the
/// copy rate, and what became of the skinny candidate.
pub fn describe_choice(c: &GemmChoice) -> String {
    let [m, k, n] = c.mkn;
    let skinny = match (&c.skinny, c.skinny_us) {
        (Some(note), Some(us)) => format!("; skinny {us:.1} us: {note}"),
        (Some(note), None) => format!("; skinny: {note}"),
        (None, _) => String::new(),
    };
    let skinny = match &c.skinny_candidates {
        Some(tried) => format!("{skinny}; skinny kernels tried: {tried}"),
        None => skinny,
    };
    let op = if c.op == "gate_up_silu" {
        "gate-up + SiLU-mul "
    } else {
        ""
    };
    format!(
        "{op}[{m} x {k}] x [{k} x {n}] {}: {}, {} us, weights {} GB/s = {} of the copy rate (cublasGemmEx {} us{skinny})",
        c.dtype,
        c.chosen,
        fixed(c.best_us, 1),
        fixed(c.weight_gbps, 0),
        c.weight_fraction_of_copy
            .filter(|f| f.is_finite())
            .map(|f| format!("{:.0}%", f * 100.0))
            .unwrap_or_else(|| "-".into()),
        fixed(c.gemm_ex_us, 1),
    )
}

/// Print the table and the `RESULT` lines; the exit code and the records (for `--json`).
pub fn report(
    cfg: &Config,
    backend: Backend,
    tp: usize,
    reports: &[RankReport],
    reference: Option<&[f64]>,
    ref_rows: usize,
    run_secs: f64,
) -> (i32, Vec<Record>) {
    let r0 = &reports[0];
    let copy_gbps = reports
        .iter()
        .map(|r| r.copy_gbps)
        .fold(f64::INFINITY, f64::min);
    let floor_ms = r0.weight_bytes as f64 / (copy_gbps * 1e9) * 1e3;
    let storage = if backend == Backend::Host && cfg.dtype != Dtype::F32 {
        format!(
            "{} storage, f32 compute on the host (converted on the fly)",
            cfg.dtype
        )
    } else if backend == Backend::Host {
        "f32".to_string()
    } else {
        format!("{} storage, f32 accumulation (cuBLAS)", cfg.dtype)
    };
    let more = if reports.len() > 1 {
        format!(" (+{} more rank(s))", reports.len() - 1)
    } else {
        String::new()
    };
    println!();
    println!("tp_mlp: tensor-parallel SwiGLU MLP, all-reduce on symmetric memory");
    println!("  backend      {backend}");
    println!("  device       {}{more}", r0.device);
    println!("  kernels      {}", r0.kernels);
    println!(
        "  tp           {tp} (group \"tp\"; symmetric windows: {})",
        if r0.symmetric_supported { "yes" } else { "no" }
    );
    println!(
        "  tokens       {}",
        cfg.tokens
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  hidden       {}", cfg.hidden);
    println!("  ffn          {} ({} per rank)", cfg.ffn, cfg.ffn / tp);
    println!("  layers       {}", cfg.layers);
    println!("  dtype        {storage}");
    println!("  down output  {}", r0.down_output);
    println!(
        "  weights      {} per rank; memory floor {:.4} ms/step at {:.1} GB/s device copy (read + write)",
        fmt_bytes(r0.weight_bytes as u64),
        floor_ms,
        copy_gbps
    );
    println!(
        "  timing       {} iterations after {} warm-up, slowest rank",
        cfg.iters, cfg.warmup
    );
    match reference {
        Some(_) => println!("  check        f64 host reference over the first {ref_rows} token row(s) of each run, bound {:.0e}", cfg.dtype.bound()),
        None => println!("  check        off (--no-check)"),
    }

    let mut all_pass = r0.down_symmetric || !r0.symmetric_supported;
    all_pass &= reports.iter().all(|r| r.intermediates_plain);
    let has_graph = r0.tokens.iter().any(|t| t.graph_ms.is_some());
    let na = all_reduce_na(tp);

    // Measurements per token count (slowest rank), then the table and the records.
    struct Row {
        tokens: usize,
        eager: f64,
        graph: Option<f64>,
        exact: bool,
        ar_sym: f64,
        ar_plain: f64,
        gemm_gu: f64,
        gemm_dn: f64,
        err: Option<f64>,
        pass: bool,
        ar_bytes: usize,
    }
    let mut rows = Vec::new();
    for (i, t) in r0.tokens.iter().enumerate() {
        let tokens = t.tokens;
        let min_over =
            |f: &dyn Fn(&RankReport) -> f64| reports.iter().map(f).fold(f64::INFINITY, f64::min);
        let exact = reports
            .iter()
            .all(|r| r.tokens[i].graph_bit_exact.unwrap_or(true));
        let (err, pass) = match reference {
            Some(reference) => {
                let rows = ref_rows.min(tokens);
                let err = reference::rel_error(&t.output, &reference[..rows * cfg.hidden]);
                (Some(err), err <= cfg.dtype.bound())
            }
            None => (None, true),
        };
        // On the host backend a replay runs the same code on the same data: it must match.
        let pass = pass && (exact || backend != Backend::Host);
        all_pass &= pass;
        rows.push(Row {
            tokens,
            eager: max_over(reports, |r| r.tokens[i].eager_ms),
            graph: t
                .graph_ms
                .map(|_| max_over(reports, |r| r.tokens[i].graph_ms.unwrap_or(f64::NAN))),
            exact,
            ar_sym: max_over(reports, |r| r.tokens[i].ar_sym_us),
            ar_plain: max_over(reports, |r| r.tokens[i].ar_plain_us),
            gemm_gu: min_over(&|r| r.tokens[i].gemm_gate_up_tflops),
            gemm_dn: min_over(&|r| r.tokens[i].gemm_down_tflops),
            err,
            pass,
            ar_bytes: t.ar_bytes,
        });
    }

    let rates: Vec<f64> = rows.iter().map(|r| (r.gemm_gu + r.gemm_dn) / 2.0).collect();
    let (gemm_header, gemm_div) = gemm_unit(&rates);
    let step_floor = if has_graph {
        "graph/floor"
    } else {
        "eager/floor"
    };
    println!();
    println!(
        "  {:>6} | {:>10} | {:>10} | {:>11} | {:>11} | {:>11} | {:>10} | {:>9} | {:>8} | {:>6}",
        "tokens",
        "eager ms",
        "graph ms",
        step_floor,
        "AR sym us",
        "AR plain us",
        "sym/plain",
        gemm_header,
        "rel err",
        "result"
    );
    println!("  {}", "-".repeat(125));
    for (r, rate) in rows.iter().zip(&rates) {
        let step = if has_graph { r.graph } else { Some(r.eager) };
        let (sym, plain, sp) = match &na {
            Some(na) => (na.clone(), na.clone(), na.clone()),
            None => (
                fixed(Some(r.ar_sym), 2),
                fixed(Some(r.ar_plain), 2),
                ratio(Some(r.ar_sym), Some(r.ar_plain)),
            ),
        };
        println!(
            "  {:>6} | {:>10} | {:>10} | {:>11} | {:>11} | {:>11} | {:>10} | {:>9} | {:>8} | {:>6}",
            r.tokens,
            fixed(Some(r.eager), 4),
            fixed(r.graph, 4),
            ratio(step, Some(floor_ms)),
            sym,
            plain,
            sp,
            fixed(Some(rate / gemm_div), 2),
            r.err
                .map(|e| format!("{e:.2e}"))
                .unwrap_or_else(|| "-".into()),
            if r.pass { "PASS" } else { "FAIL" }
        );
    }
    println!();
    if has_graph {
        let exact = rows.iter().all(|r| r.exact);
        println!(
            "  graph replay output equals the eager output bit for bit: {}",
            if exact { "yes" } else { "no" }
        );
    }
    println!(
        "  {step_floor}: the {} step time over the memory floor ({floor_ms:.4} ms, weights read once at the copy bandwidth)",
        if has_graph { "graph replay's" } else { "eager" }
    );
    match &na {
        Some(_) => println!(
            "  all-reduce: n/a at tp {tp}: one rank's all-reduce moves nothing (RESULT lines keep the call's time); run with --tp 2 or more to measure it"
        ),
        None if !r0.symmetric_supported => println!(
            "  all-reduce: symmetric windows are not supported here, so both columns take the plain path; sym/plain is the symmetric time over the plain one"
        ),
        None => println!(
            "  sym/plain: the all-reduce on a symmetric buffer over the same all-reduce on a plain buffer (below 1x: symmetric is faster)"
        ),
    }
    println!("  {gemm_header} is the mean of the gate-up and the down projection rates (each in RESULT lines)");
    println!(
        "  overall: {} ({:.1} s)",
        if all_pass { "PASS" } else { "FAIL" },
        run_secs
    );
    println!();

    let common = Common {
        backend: backend.to_string(),
        tp,
        hidden: cfg.hidden,
        ffn: cfg.ffn,
        layers: cfg.layers,
        dtype: cfg.dtype.to_string(),
    };
    let choices = gemm_choices_vs_copy(reports, copy_gbps);
    if !choices.is_empty() {
        println!("  GEMM kernels chosen per shape (rank 0; weight bytes over the kernel's time, against the {copy_gbps:.1} GB/s copy rate of the floor):");
        for c in &choices {
            println!("    {}", describe_choice(c));
        }
        println!();
    }
    let mut records: Vec<Record> = choices.into_iter().map(Record::GemmChoice).collect();
    records.push(Record::MemoryFloor {
        common: common.clone(),
        weight_bytes_per_rank: r0.weight_bytes,
        copy_gbps: finite(copy_gbps),
        floor_ms: finite(floor_ms),
    });
    let sh = cfg.ffn / tp;
    for r in &rows {
        let tokens = r.tokens;
        records.push(Record::Step {
            mode: StepMode::Eager,
            common: common.clone(),
            tokens,
            ms_per_step: finite(r.eager),
            bit_exact_vs_eager: None,
        });
        if let Some(g) = r.graph {
            records.push(Record::Step {
                mode: StepMode::Graph,
                common: common.clone(),
                tokens,
                ms_per_step: finite(g),
                bit_exact_vs_eager: Some(r.exact),
            });
        }
        for (buffer, us) in [
            (ArBuffer::Symmetric, r.ar_sym),
            (ArBuffer::Plain, r.ar_plain),
        ] {
            records.push(Record::AllReduce {
                buffer,
                common: common.clone(),
                tokens,
                bytes: r.ar_bytes,
                us: finite(us),
            });
        }
        for (gemm, mkn, tf) in [
            (GemmName::GateUp, [tokens, cfg.hidden, 2 * sh], r.gemm_gu),
            (GemmName::Down, [tokens, sh, cfg.hidden], r.gemm_dn),
        ] {
            records.push(Record::Gemm {
                gemm,
                common: common.clone(),
                tokens,
                mkn,
                tflops: finite(tf),
            });
        }
        if let Some(e) = r.err {
            records.push(Record::Check {
                common: common.clone(),
                tokens,
                rows: ref_rows.min(tokens),
                rel_error: finite(e),
                bound: finite(cfg.dtype.bound()),
                pass: r.pass,
            });
        }
    }
    for rec in &records {
        match result_line(rec) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("tp_mlp: error: a RESULT record could not be serialized ({e})");
                all_pass = false;
            }
        }
    }
    (if all_pass { 0 } else { 1 }, records)
}
