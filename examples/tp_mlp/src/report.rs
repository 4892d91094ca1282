//! What a run prints: the table per token count and the `RESULT {json}` lines, and whether
//! every check passed.

use crate::config::{Backend, Config, Dtype};
use crate::reference;
use crate::run::RankReport;

/// Largest value of `f` over the ranks.
fn max_over<F: Fn(&RankReport) -> f64>(reports: &[RankReport], f: F) -> f64 {
    reports.iter().map(f).fold(f64::NAN, f64::max)
}

/// `v` with about four significant digits (small rates, such as the host's, in exponent form).
fn sig(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.1}"),
        v if v >= 10.0 => format!("{v:.2}"),
        v if v >= 1.0 => format!("{v:.3}"),
        v => format!("{v:.3e}"),
    }
}

/// A number for the `RESULT` JSON lines (`null` when not finite).
fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6e}")
    } else {
        "null".into()
    }
}

/// Print the table and the `RESULT` lines; the exit code.
pub fn report(
    cfg: &Config,
    backend: Backend,
    tp: usize,
    reports: &[RankReport],
    reference: Option<&[f64]>,
    ref_rows: usize,
    run_secs: f64,
) -> i32 {
    let r0 = &reports[0];
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
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
        "  weights      {:.1} MiB per rank; memory floor {:.4} ms/step at {:.1} GB/s device copy (read + write)",
        mib(r0.weight_bytes),
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
    println!();
    println!(
        "  {:>6} | {:>10} | {:>10} | {:>13} | {:>13} | {:>9} | {:>9} | {:>9} | {:>6}",
        "tokens",
        "eager ms",
        "graph ms",
        "AR sym us",
        "AR plain us",
        "floor ms",
        "GEMM TF/s",
        "rel err",
        "result"
    );
    println!("  {}", "-".repeat(106));

    let mut all_pass = r0.down_symmetric || !r0.symmetric_supported;
    all_pass &= reports.iter().all(|r| r.intermediates_plain);
    let mut results = Vec::new();
    for (i, t) in r0.tokens.iter().enumerate() {
        let tokens = t.tokens;
        let eager = max_over(reports, |r| r.tokens[i].eager_ms);
        let graph = t
            .graph_ms
            .map(|_| max_over(reports, |r| r.tokens[i].graph_ms.unwrap_or(f64::NAN)));
        let ar_sym = max_over(reports, |r| r.tokens[i].ar_sym_us);
        let ar_plain = max_over(reports, |r| r.tokens[i].ar_plain_us);
        let gemm_gu = reports
            .iter()
            .map(|r| r.tokens[i].gemm_gate_up_tflops)
            .fold(f64::INFINITY, f64::min);
        let gemm_dn = reports
            .iter()
            .map(|r| r.tokens[i].gemm_down_tflops)
            .fold(f64::INFINITY, f64::min);
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
        let opt =
            |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
        println!(
            "  {:>6} | {:>10.4} | {:>10} | {:>13.2} | {:>13.2} | {:>9.4} | {:>9} | {:>9} | {:>6}",
            tokens,
            eager,
            opt(graph, 4),
            ar_sym,
            ar_plain,
            floor_ms,
            sig((gemm_gu + gemm_dn) / 2.0),
            err.map(|e| format!("{e:.2e}"))
                .unwrap_or_else(|| "-".into()),
            if pass { "PASS" } else { "FAIL" }
        );
        results.push((
            tokens, eager, graph, exact, ar_sym, ar_plain, gemm_gu, gemm_dn, err, pass, t.ar_bytes,
        ));
    }
    println!();
    let gr = r0.tokens.iter().any(|t| t.graph_ms.is_some());
    if gr {
        let exact = reports
            .iter()
            .all(|r| r.tokens.iter().all(|t| t.graph_bit_exact.unwrap_or(true)));
        println!(
            "  graph replay output equals the eager output bit for bit: {}",
            if exact { "yes" } else { "no" }
        );
    }
    println!("  GEMM TF/s is the mean of the gate-up and the down projection rates (each in RESULT lines)");
    println!(
        "  overall: {} ({:.1} s)",
        if all_pass { "PASS" } else { "FAIL" },
        run_secs
    );
    println!();

    let common = format!(
        "\"backend\":\"{backend}\",\"tp\":{tp},\"hidden\":{},\"ffn\":{},\"layers\":{},\"dtype\":\"{}\"",
        cfg.hidden, cfg.ffn, cfg.layers, cfg.dtype
    );
    println!(
        "RESULT {{\"kind\":\"memory_floor\",{common},\"weight_bytes_per_rank\":{},\"copy_gbps\":{},\"floor_ms\":{}}}",
        r0.weight_bytes,
        json_num(copy_gbps),
        json_num(floor_ms)
    );
    for (tokens, eager, graph, exact, ar_sym, ar_plain, gu, dn, err, pass, ar_bytes) in results {
        println!("RESULT {{\"kind\":\"step\",\"mode\":\"eager\",{common},\"tokens\":{tokens},\"ms_per_step\":{}}}", json_num(eager));
        if let Some(g) = graph {
            println!(
                "RESULT {{\"kind\":\"step\",\"mode\":\"graph\",{common},\"tokens\":{tokens},\"ms_per_step\":{},\"bit_exact_vs_eager\":{exact}}}",
                json_num(g)
            );
        }
        for (buffer, us) in [("symmetric", ar_sym), ("plain", ar_plain)] {
            println!(
                "RESULT {{\"kind\":\"all_reduce\",\"buffer\":\"{buffer}\",{common},\"tokens\":{tokens},\"bytes\":{ar_bytes},\"us\":{}}}",
                json_num(us)
            );
        }
        let sh = cfg.ffn / tp;
        for (name, shape, tf) in [
            ("gate_up", [tokens, cfg.hidden, 2 * sh], gu),
            ("down", [tokens, sh, cfg.hidden], dn),
        ] {
            println!(
                "RESULT {{\"kind\":\"gemm\",\"gemm\":\"{name}\",{common},\"tokens\":{tokens},\"mkn\":[{},{},{}],\"tflops\":{}}}",
                shape[0],
                shape[1],
                shape[2],
                json_num(tf)
            );
        }
        if let Some(e) = err {
            println!(
                "RESULT {{\"kind\":\"check\",{common},\"tokens\":{tokens},\"rows\":{},\"rel_error\":{},\"bound\":{},\"pass\":{pass}}}",
                ref_rows.min(tokens),
                json_num(e),
                json_num(cfg.dtype.bound())
            );
        }
    }
    if all_pass {
        0
    } else {
        1
    }
}
