//! The `tp_mlp` program as a user runs it, in a child process with a time limit: `--help`
//! hides the internal flags, `--json` writes the same records as the `RESULT` lines, progress
//! goes to stderr and the table to stdout, the table's ratios and its `n/a (tp 1)`, the memory
//! check (a size that does not fit exits 2 before allocating), `SYMMEM_BACKEND` and
//! `--backend`, and errors whose first line is the verdict with the fix.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Small sizes: every run takes about a second on the host backend.
const SMALL: &[&str] = &[
    "--backend",
    "host",
    "--hidden",
    "24",
    "--ffn",
    "36",
    "--iters",
    "2",
    "--warmup",
    "1",
];

/// The program: the crate's binary, or (tests staged for the GPU machine by
/// `scripts/gpu-run.sh`, `tests/<name>` next to `examples/tp_mlp`) the root package's example,
/// which runs the same `tp_mlp::run_cli`.
fn program() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_tp_mlp"));
    if built.exists() {
        return built;
    }
    let staged = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
        .map(|d| d.join("examples").join("tp_mlp"));
    match staged {
        Some(p) if p.exists() => p,
        _ => panic!(
            "the tp_mlp binary is missing ({}); build it with `cargo test -p tp-mlp`",
            built.display()
        ),
    }
}

/// What a child process printed, and how it ended.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    /// The first line of stderr that is an error.
    fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("tp_mlp: error:"))
            .unwrap_or_else(|| panic!("no error line in stderr:\n{}", self.stderr))
    }
}

/// Run `cmd` (without `SYMMEM_BACKEND` unless `env` sets it) and kill it after `limit`.
fn run_cmd(mut cmd: Command, env: &[(&str, &str)], limit: Duration) -> Out {
    cmd.env_remove("SYMMEM_BACKEND");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pipe = |mut p: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = p.read_to_string(&mut s);
            s
        })
    };
    let out = pipe(Box::new(child.stdout.take().expect("stdout piped")));
    let err = pipe(Box::new(child.stderr.take().expect("stderr piped")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the child") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Run the program with `args` and `env`, within two minutes.
fn run(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(program());
    cmd.args(args);
    run_cmd(cmd, env, Duration::from_secs(120))
}

/// `SMALL` followed by `more`.
fn small(more: &[&str]) -> Vec<String> {
    SMALL.iter().chain(more).map(|s| s.to_string()).collect()
}

/// Run `SMALL` + `more`.
fn run_small(more: &[&str], env: &[(&str, &str)]) -> Out {
    let args = small(more);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, env)
}

/// The JSON records of the `RESULT` lines of `stdout`.
fn result_records(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("RESULT line {j}: {e}")))
        .collect()
}

/// Whether the CUDA backend cannot run here (no GPU, driver or NCCL).
fn no_cuda() -> bool {
    symmem::launch::detect().why_not_cuda(1).is_some() || !cfg!(feature = "cuda")
}

/// A fresh path in the system's temporary directory.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tp_mlp_cli_{}_{name}", std::process::id()))
}

#[test]
fn help_lists_the_user_flags_and_hides_the_internal_ones() {
    let out = run(&["--help"], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    for want in [
        "--json <PATH>",
        "--no-memory-check",
        "--backend",
        "SYMMEM_BACKEND",
        "Exit codes",
    ] {
        assert!(
            out.stdout.contains(want),
            "--help lacks {want}:\n{}",
            out.stdout
        );
    }
    for hidden in ["--dump-checksum", "--assume-free-gib"] {
        assert!(
            !out.stdout.contains(hidden),
            "--help shows the internal {hidden}:\n{}",
            out.stdout
        );
    }
    // Hidden, not removed.
    let dump = run(&["--dump-checksum", "--seed", "7"], &[]);
    assert_eq!(dump.code, Some(0), "{dump:?}");
    assert_eq!(
        dump.stdout
            .lines()
            .filter(|l| l.starts_with("CHECKSUM {"))
            .count(),
        3
    );
}

#[test]
fn json_file_holds_the_records_of_the_result_lines() {
    let path = temp_path("records.json");
    let p = path.to_str().expect("UTF-8 temp path");
    let out = run_small(&["--tokens", "1,3", "--graph", "--json", p], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = std::fs::read_to_string(&path).expect("the --json file");
    let _ = std::fs::remove_file(&path);
    let file: Vec<Value> = serde_json::from_str(&text).expect("the file is one JSON array");
    let lines = result_records(&out.stdout);
    assert_eq!(file, lines, "the file and the RESULT lines differ");
    // Which records, per token count: 2 steps (eager, graph), 2 all-reduces, 2 GEMMs, 1
    // check; plus the memory floor.
    assert_eq!(file.len(), 1 + 2 * 7, "{text}");
    let kind = |k: &str| file.iter().filter(|r| r["kind"] == k).count();
    assert_eq!(kind("memory_floor"), 1);
    assert_eq!(kind("step"), 4);
    assert_eq!(kind("all_reduce"), 4);
    assert_eq!(kind("gemm"), 4);
    assert_eq!(kind("check"), 2);
    for r in &file {
        assert_eq!(r["backend"], "host");
        assert_eq!(r["tp"], 2);
        assert_eq!(r["hidden"], 24);
        assert_eq!(r["ffn"], 36);
        assert_eq!(r["dtype"], "f32");
    }
    let graph = file
        .iter()
        .find(|r| r["kind"] == "step" && r["mode"] == "graph")
        .expect("a graph step");
    assert_eq!(graph["bit_exact_vs_eager"], true);
    assert!(graph["ms_per_step"].as_f64().is_some_and(|v| v > 0.0));
    let eager = file
        .iter()
        .find(|r| r["kind"] == "step" && r["mode"] == "eager")
        .expect("an eager step");
    assert!(eager.get("bit_exact_vs_eager").is_none());
    let ar = file
        .iter()
        .find(|r| r["kind"] == "all_reduce" && r["tokens"] == 3)
        .expect("an all-reduce at 3 tokens");
    assert_eq!(ar["bytes"], 3 * 24 * 4);
    let check = file.iter().find(|r| r["kind"] == "check").expect("check");
    assert_eq!(check["pass"], true);
    // `kind` first on every line, as the scripts' greps expect.
    for l in out.stdout.lines().filter(|l| l.starts_with("RESULT ")) {
        assert!(l.starts_with("RESULT {\"kind\":\""), "{l}");
    }
    // Progress on stderr, the table and the records on stdout.
    assert!(
        out.stderr.contains("tp_mlp: tokens 3: eager"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("tp_mlp: tokens"), "{}", out.stdout);
    assert!(!out.stderr.contains("RESULT "), "{}", out.stderr);
    assert!(out.stdout.contains("overall: PASS"), "{}", out.stdout);
}

#[test]
fn json_path_that_cannot_be_written_is_exit_2_before_the_run() {
    let dir = temp_path("no-such-dir");
    let path = dir.join("out.json");
    let out = run_small(&["--json", path.to_str().expect("UTF-8")], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let line = out.error_line();
    assert!(
        line.contains("--json") && line.contains("writable directory"),
        "{line}"
    );
    assert!(
        !out.stderr.contains("generating"),
        "the run started: {}",
        out.stderr
    );
    assert!(!dir.exists());
}

#[test]
fn the_table_shows_the_ratios_and_says_when_the_all_reduce_measures_nothing() {
    let two = run_small(&["--graph", "--tokens", "2,5"], &[]);
    assert_eq!(two.code, Some(0), "{two:?}");
    let header = two
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("tokens |"))
        .expect("the table's header");
    for col in ["graph/floor", "sym/plain", "AR sym us", "AR plain us"] {
        assert!(header.contains(col), "{header}");
    }
    let rows: Vec<&str> = two
        .stdout
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("2 |") || t.starts_with("5 |")
        })
        .collect();
    assert_eq!(rows.len(), 2, "{}", two.stdout);
    for row in &rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 10, "{row}");
        // Ratios end in x; ms columns have 4 decimals, us columns 2: one format per column.
        assert!(cells[3].ends_with('x') && cells[6].ends_with('x'), "{row}");
        for (i, decimals) in [(1, 4), (2, 4), (4, 2), (5, 2)] {
            let frac = cells[i].split('.').nth(1).unwrap_or("");
            assert_eq!(frac.len(), decimals, "column {i} of {row}");
        }
        assert!(!row.contains("n/a"), "{row}");
    }
    assert!(two
        .stdout
        .contains("sym/plain: the all-reduce on a symmetric buffer"));

    let one = run_small(&["--tp", "1"], &[]);
    assert_eq!(one.code, Some(0), "{one:?}");
    let row = one
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("16 |"))
        .expect("the row of 16 tokens");
    assert_eq!(row.matches("n/a (tp 1)").count(), 3, "{row}");
    assert!(
        one.stdout
            .contains("all-reduce: n/a at tp 1: one rank's all-reduce moves nothing"),
        "{}",
        one.stdout
    );
    assert!(one.stdout.contains("eager/floor"), "{}", one.stdout);
}

/// The size of the issue (`--hidden 200000 --ffn 400000`, about 1.8 TB on the host backend)
/// is refused before anything is allocated. The child runs under a 4 GiB address-space limit,
/// so that a check that let it through would fail to allocate (exit 1) instead of
/// exhausting the machine's memory.
#[cfg(target_os = "linux")]
#[test]
fn a_size_that_does_not_fit_exits_2_naming_the_gib_before_allocating() {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 4194304 || exit 97; exec \"$0\" \"$@\"")
        .arg(program())
        .args(["--backend", "host", "--hidden", "200000", "--ffn", "400000"]);
    let out = run_cmd(cmd, &[], Duration::from_secs(60));
    assert_ne!(out.code, Some(97), "sh could not set the limit: {out:?}");
    assert_eq!(out.code, Some(2), "{out:?}");
    let line = out.error_line();
    assert!(
        line.starts_with(
            "tp_mlp: error: the model does not fit in host memory: the run needs about "
        ),
        "{line}"
    );
    assert!(line.matches(" GiB").count() >= 2, "{line}");
    assert!(line.contains("lower --hidden, --ffn"), "{line}");
    assert!(out.stderr.contains("weights "), "{}", out.stderr);
    assert!(
        !out.stderr.contains("generating and uploading"),
        "the ranks started: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // Without the check, the same size gets as far as the first allocation (which the limit
    // refuses): a run error, exit 1, with the bytes in GiB.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 4194304 || exit 97; exec \"$0\" \"$@\"")
        .arg(program())
        .args([
            "--backend",
            "host",
            "--hidden",
            "200000",
            "--ffn",
            "400000",
            "--no-memory-check",
        ]);
    let out = run_cmd(cmd, &[], Duration::from_secs(60));
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = out.error_line();
    assert!(
        line.contains("ran out of host memory allocating 149.0 GiB; lower --hidden"),
        "{line}"
    );
}

#[test]
fn the_memory_check_compares_with_the_available_memory_and_can_be_skipped() {
    // 0.01 GiB is 10.2 MiB: less than the two ranks' 64 MiB copy probes.
    let out = run_small(&["--assume-free-gib", "0.01"], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let line = out.error_line();
    assert!(line.contains("and 10.2 MiB are available"), "{line}");
    assert!(line.contains("--no-memory-check"), "{line}");
    let enough = run_small(&["--assume-free-gib", "64"], &[]);
    assert_eq!(enough.code, Some(0), "{enough:?}");
    let skipped = run_small(&["--assume-free-gib", "0.01", "--no-memory-check"], &[]);
    assert_eq!(skipped.code, Some(0), "{skipped:?}");
}

#[test]
fn symmem_backend_is_honoured_and_the_flag_overrides_it() {
    // --backend host (in SMALL) overrides an invalid SYMMEM_BACKEND.
    let over = run_small(&[], &[("SYMMEM_BACKEND", "gpux")]);
    assert_eq!(over.code, Some(0), "{over:?}");
    assert!(!over.stderr.contains("tp_mlp: error:"), "{}", over.stderr);

    // Without --backend, the variable decides.
    let plain = [
        "--hidden", "24", "--ffn", "36", "--iters", "2", "--warmup", "1",
    ];
    let out = run(&plain, &[("SYMMEM_BACKEND", "gpux")]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let line = out.error_line();
    assert!(
        line.contains("SYMMEM_BACKEND=`gpux` is not a backend")
            && line.contains("auto, host or cuda"),
        "{line}"
    );
    let host = run(&plain, &[("SYMMEM_BACKEND", "host")]);
    assert_eq!(host.code, Some(0), "{host:?}");
    assert!(
        host.stdout.contains("  backend      host"),
        "{}",
        host.stdout
    );
    assert!(
        !host.stderr.contains("no usable GPU"),
        "SYMMEM_BACKEND=host must not probe CUDA: {}",
        host.stderr
    );
    let bad_flag = run(&["--backend", "tpu"], &[]);
    assert_eq!(bad_flag.code, Some(2), "{bad_flag:?}");
    assert!(
        bad_flag
            .error_line()
            .contains("unknown backend `tpu`; use auto, host or cuda"),
        "{}",
        bad_flag.stderr
    );

    if no_cuda() {
        // SYMMEM_BACKEND=cuda, and --backend cuda over SYMMEM_BACKEND=host.
        for (args, env, asked, fix) in [
            (
                &plain[..],
                "cuda",
                "SYMMEM_BACKEND=cuda needs",
                "set SYMMEM_BACKEND=host",
            ),
            (
                &["--backend", "cuda"][..],
                "host",
                "--backend cuda needs",
                "run with --backend host",
            ),
        ] {
            let out = run(args, &[("SYMMEM_BACKEND", env)]);
            assert_eq!(out.code, Some(2), "{out:?}");
            let line = out.error_line();
            assert!(
                line.starts_with(&format!("tp_mlp: error: {asked}")),
                "{line}"
            );
            assert!(line.contains(fix), "{line}");
            assert!(line.len() < 240, "the verdict line is long: {line}");
            assert!(out.stderr.contains("\n  detail: "), "{}", out.stderr);
        }
    } else {
        eprintln!("CUDA is usable here: the no-GPU errors are not exercised");
    }
}

#[test]
fn bad_arguments_are_one_error_line_and_exit_2() {
    for (args, want) in [
        (&["--tokens", "0"][..], "--tokens must be at least 1"),
        (
            &["--backend", "host", "--tp", "5", "--ffn", "36"][..],
            "does not divide",
        ),
        (&["--assume-free-gib=-1"][..], "not a number of GiB"),
        (&["--no-such-flag"][..], "--no-such-flag"),
    ] {
        let out = run(args, &[]);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        let line = out.error_line();
        assert!(line.contains(want), "{args:?}: {line}");
        assert!(!line.contains("error: error:"), "{line}");
    }
}
