//! The multi-process rank bootstrap (`symmem::backend::cuda::bootstrap`), over loopback only.
//!
//! Needs no GPU. The multi-process tests re-execute this test binary: with
//! `SYMMEM_BOOTSTRAP_TEST_ROLE` set, the test `child_rank` acts as one rank (reading its
//! launch from `RANK`/`WORLD_SIZE`/`MASTER_ADDR`/`MASTER_PORT`) and prints the id it got; in
//! a normal run `child_rank` does nothing.
#![cfg(feature = "cuda")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use symmem::backend::cuda::bootstrap::{
    exchange_unique_id, BootstrapError, EnvSource, LaunchEnv, UNIQUE_ID_BYTES,
};

const ROLE: &str = "SYMMEM_BOOTSTRAP_TEST_ROLE";
const SEED: &str = "SYMMEM_BOOTSTRAP_TEST_SEED";
const CHILD_TIMEOUT: &str = "SYMMEM_BOOTSTRAP_TEST_TIMEOUT_MS";

/// The id a rank would make: depends on the rank, so a rank that used its own id is caught.
fn make_id(seed: u8, rank: usize) -> [u8; UNIQUE_ID_BYTES] {
    let mut id = [0u8; UNIQUE_ID_BYTES];
    for (i, b) in id.iter_mut().enumerate() {
        *b = seed
            .wrapping_add(i as u8)
            .wrapping_mul(31)
            .wrapping_add(rank as u8 * 7);
    }
    id
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

/// One rank of a multi-process test (does nothing unless started by a parent test).
#[test]
fn child_rank() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    assert_eq!(role, "rank");
    let env = match LaunchEnv::from_env() {
        Ok(e) => e,
        Err(e) => {
            println!("SYMMEM_TEST_ERR {e}");
            return;
        }
    };
    assert_eq!(env.source, EnvSource::Torchrun);
    let seed: u8 = std::env::var(SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let timeout_ms: u64 = std::env::var(CHILD_TIMEOUT)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let rank = env.rank;
    match exchange_unique_id(
        &env,
        || make_id(seed, rank),
        Duration::from_millis(timeout_ms),
    ) {
        Ok(id) => println!("SYMMEM_TEST_ID rank={rank} id={}", hex(&id)),
        Err(e) => println!("SYMMEM_TEST_ERR rank={rank} {e}"),
    }
}

fn spawn_rank(rank: usize, world_size: usize, port: u16, seed: u8, timeout_ms: u64) -> Child {
    spawn_rank_of(rank, world_size, port, seed, timeout_ms, None)
}

/// A child rank of job `job` (`SYMMEM_JOB_ID`; `None`: no job id).
fn spawn_rank_of(
    rank: usize,
    world_size: usize,
    port: u16,
    seed: u8,
    timeout_ms: u64,
    job: Option<&str>,
) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["child_rank", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "rank")
        .env(SEED, seed.to_string())
        .env(CHILD_TIMEOUT, timeout_ms.to_string())
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world_size.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env_remove("SYMMEM_BOOTSTRAP_PORT")
        .env_remove("TORCHELASTIC_USE_AGENT_STORE")
        .env_remove("TORCHELASTIC_RUN_ID")
        .env_remove("SYMMEM_JOB_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(job) = job {
        cmd.env("SYMMEM_JOB_ID", job);
    }
    cmd.spawn().expect("spawn child rank")
}

/// Wait for a child (killing it after `limit`), returning (succeeded, stdout).
fn finish(mut child: Child, limit: Duration) -> (bool, String) {
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(s) => break Some(s),
            None if t0.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let ok = status.is_some_and(|s| s.success());
    (ok, format!("{out}\n--- stderr ---\n{err}"))
}

/// The first line holding `prefix`, from `prefix` on (the test harness may print
/// `test child_rank ... ` before it on the same line).
fn line_with<'a>(out: &'a str, prefix: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.find(prefix).map(|i| &l[i..]))
}

#[test]
fn three_processes_get_rank0s_id() {
    let port = free_port();
    let seed = 42u8;
    // Ranks 1 and 2 start first: they must retry until rank 0 listens.
    let c1 = spawn_rank(1, 3, port, seed, 30_000);
    let c2 = spawn_rank(2, 3, port, seed, 30_000);
    std::thread::sleep(Duration::from_millis(300));
    let c0 = spawn_rank(0, 3, port, seed, 30_000);
    let want = hex(&make_id(seed, 0));
    for (rank, child) in [(0usize, c0), (1, c1), (2, c2)] {
        let (ok, out) = finish(child, Duration::from_secs(60));
        assert!(ok, "rank {rank} failed:\n{out}");
        let line = line_with(&out, "SYMMEM_TEST_ID")
            .unwrap_or_else(|| panic!("rank {rank} printed no id:\n{out}"));
        assert_eq!(
            line,
            format!("SYMMEM_TEST_ID rank={rank} id={want}"),
            "rank {rank}:\n{out}"
        );
    }
}

#[test]
fn processes_report_a_rank_that_never_arrives() {
    let port = free_port();
    let t0 = Instant::now();
    // World of 3, rank 2 is never started; 2 s timeout.
    let c0 = spawn_rank(0, 3, port, 5, 2_000);
    let c1 = spawn_rank(1, 3, port, 5, 2_000);
    let (ok0, out0) = finish(c0, Duration::from_secs(30));
    let (ok1, out1) = finish(c1, Duration::from_secs(30));
    assert!(ok0 && ok1, "children crashed:\n{out0}\n{out1}");
    let e0 = line_with(&out0, "SYMMEM_TEST_ERR")
        .unwrap_or_else(|| panic!("rank 0 did not fail:\n{out0}"));
    assert!(
        e0.contains("rank=0") && e0.contains("rank(s) 2 of 3 never arrived"),
        "{e0}"
    );
    let e1 = line_with(&out1, "SYMMEM_TEST_ERR")
        .unwrap_or_else(|| panic!("rank 1 did not fail:\n{out1}"));
    assert!(
        e1.contains("rank=1") && e1.contains("never arrived"),
        "{e1}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn rank0_alone_times_out_naming_the_missing_ranks() {
    let port = free_port();
    let env = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "3"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", &port.to_string()),
    ]))
    .unwrap();
    let t0 = Instant::now();
    let mut called = false;
    let err = exchange_unique_id(
        &env,
        || {
            called = true;
            make_id(1, 0)
        },
        Duration::from_secs(2),
    )
    .unwrap_err();
    let took = t0.elapsed();
    assert!(called, "rank 0 makes the id once it listens");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    match &err {
        BootstrapError::PeersMissing {
            missing,
            arrived,
            world_size,
            ..
        } => {
            assert_eq!(
                (missing.as_slice(), *arrived, *world_size),
                (&[1usize, 2][..], 1, 3)
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(
        err.to_string().contains("rank(s) 1, 2 of 3 never arrived"),
        "{err}"
    );
}

#[test]
fn a_rank_without_rank0_times_out() {
    let port = free_port(); // nobody listens there
    let env = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", &port.to_string()),
    ]))
    .unwrap();
    let t0 = Instant::now();
    let err = exchange_unique_id(
        &env,
        || panic!("only rank 0 makes the id"),
        Duration::from_secs(2),
    )
    .unwrap_err();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        matches!(err, BootstrapError::ConnectTimeout { rank: 1, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("refused"),
        "{msg}"
    );
}

#[test]
fn port_in_use_is_a_clear_error() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let env = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", &port.to_string()),
    ]))
    .unwrap();
    let t0 = Instant::now();
    let err = exchange_unique_id(
        &env,
        || panic!("no id before listening"),
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, BootstrapError::AddressInUse { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}"))
            && msg.contains("in use")
            && msg.contains("MASTER_PORT"),
        "{msg}"
    );
    drop(holder);
}

#[test]
fn missing_variables_are_named() {
    let err = LaunchEnv::from_lookup(|_| None).unwrap_err();
    assert!(
        matches!(err, BootstrapError::MissingVariables { launcher: None, .. }),
        "{err}"
    );
    let msg = err.to_string();
    for v in [
        "RANK",
        "WORLD_SIZE",
        "MASTER_ADDR",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "torchrun",
        "mpirun",
        "srun",
    ] {
        assert!(msg.contains(v), "{v} not in: {msg}");
    }

    let err = LaunchEnv::from_lookup(lookup(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap_err();
    match &err {
        BootstrapError::MissingVariables { missing, launcher } => {
            assert_eq!(missing, &vec!["MASTER_ADDR"]);
            assert_eq!(*launcher, Some(EnvSource::Torchrun));
        }
        other => panic!("unexpected error: {other}"),
    }

    let err = LaunchEnv::from_lookup(lookup(&[
        ("OMPI_COMM_WORLD_RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
    ]))
    .unwrap_err();
    match &err {
        BootstrapError::MissingVariables { missing, launcher } => {
            assert_eq!(missing, &vec!["OMPI_COMM_WORLD_SIZE"]);
            assert_eq!(*launcher, Some(EnvSource::OpenMpi));
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn rank_must_be_below_world_size() {
    let err = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "3"),
        ("WORLD_SIZE", "3"),
        ("MASTER_ADDR", "127.0.0.1"),
    ]))
    .unwrap_err();
    assert!(
        matches!(
            err,
            BootstrapError::RankOutOfRange {
                rank: 3,
                world_size: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("RANK") && err.to_string().contains("WORLD_SIZE"),
        "{err}"
    );

    let err = LaunchEnv::from_lookup(lookup(&[
        ("SLURM_PROCID", "4"),
        ("SLURM_NTASKS", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
    ]))
    .unwrap_err();
    assert!(
        matches!(
            err,
            BootstrapError::RankOutOfRange {
                rank_var: "SLURM_PROCID",
                ..
            }
        ),
        "{err}"
    );

    let err = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
    ]))
    .unwrap_err();
    assert!(matches!(err, BootstrapError::ZeroWorldSize { .. }), "{err}");

    let err = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "one"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
    ]))
    .unwrap_err();
    assert!(
        matches!(err, BootstrapError::InvalidNumber { var: "RANK", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("\"one\""), "{err}");

    // Public fields changed after construction are checked again.
    let mut env = LaunchEnv::new(0, 2, "127.0.0.1", free_port()).unwrap();
    env.rank = 5;
    let err = exchange_unique_id(&env, || make_id(0, 0), Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(err, BootstrapError::RankOutOfRange { .. }),
        "{err}"
    );
}

/// Wait until one of `children` exits (at most `limit`): its index.
fn first_to_exit(children: &mut [Child], limit: Duration) -> Option<usize> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        for (i, c) in children.iter_mut().enumerate() {
            if c.try_wait().expect("try_wait").is_some() {
                return Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Assert that a finished child printed rank 0's id for `seed`.
fn assert_got_id(rank: usize, seed: u8, (ok, out): (bool, String)) {
    assert!(ok, "rank {rank} failed:\n{out}");
    let line = line_with(&out, "SYMMEM_TEST_ID")
        .unwrap_or_else(|| panic!("rank {rank} printed no id:\n{out}"));
    assert_eq!(
        line,
        format!("SYMMEM_TEST_ID rank={rank} id={}", hex(&make_id(seed, 0))),
        "rank {rank}:\n{out}"
    );
}

#[test]
fn a_stranger_job_on_the_same_port_is_refused() {
    let port = free_port();
    // Job A (world of 2) has rank 0 up; job B's rank 1 uses the same port.
    let a0 = spawn_rank_of(0, 2, port, 11, 30_000, Some("job-A"));
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let b1 = spawn_rank_of(1, 2, port, 22, 30_000, Some("job-B"));
    let (ok, out) = finish(b1, Duration::from_secs(25));
    let took = t0.elapsed();
    assert!(ok, "job B's rank crashed:\n{out}");
    let err = line_with(&out, "SYMMEM_TEST_ERR")
        .unwrap_or_else(|| panic!("job B's rank joined job A:\n{out}"));
    assert!(
        err.contains("rank=1")
            && err.contains(r#"this is job "job-A", you are job "job-B""#)
            && err.contains("two jobs share MASTER_ADDR:MASTER_PORT")
            && err.contains("SYMMEM_JOB_ID"),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(10),
        "refused only after {took:?}"
    );
    // Job A's own rank 1 still completes the exchange.
    let a1 = spawn_rank_of(1, 2, port, 11, 30_000, Some("job-A"));
    assert_got_id(0, 11, finish(a0, Duration::from_secs(60)));
    assert_got_id(1, 11, finish(a1, Duration::from_secs(60)));
}

#[test]
fn a_second_process_for_a_connected_rank_is_refused() {
    let port = free_port();
    // World of 3, no job id: rank 1 is started twice while rank 0 waits for rank 2.
    let a0 = spawn_rank(0, 3, port, 33, 30_000);
    std::thread::sleep(Duration::from_millis(300));
    let first = spawn_rank(1, 3, port, 33, 30_000);
    std::thread::sleep(Duration::from_millis(1500));
    let second = spawn_rank(1, 3, port, 33, 30_000);
    let mut ones = vec![first, second];
    // One of the two is refused at once (normally the second); the other stays connected.
    let gone = first_to_exit(&mut ones, Duration::from_secs(15))
        .expect("neither rank-1 process was refused");
    let refused = ones.remove(gone);
    let (ok, out) = finish(refused, Duration::from_secs(5));
    assert!(ok, "the refused rank crashed:\n{out}");
    let err = line_with(&out, "SYMMEM_TEST_ERR")
        .unwrap_or_else(|| panic!("the refused rank got an id:\n{out}"));
    assert!(
        err.contains("rank=1")
            && err.contains("rank 1 of this job is already connected from 127.0.0.1:"),
        "{err}"
    );
    let a2 = spawn_rank(2, 3, port, 33, 30_000);
    let kept = ones.pop().unwrap();
    assert_got_id(0, 33, finish(a0, Duration::from_secs(60)));
    assert_got_id(1, 33, finish(kept, Duration::from_secs(60)));
    assert_got_id(2, 33, finish(a2, Duration::from_secs(60)));
}

/// A hello as the bootstrap's wire format (protocol version 2, `overview.md`) spells it, with a
/// declared payload length but no payload.
fn hello_header(job: &str, tag: u64, rank: u32, world_size: u32, declared_len: u32) -> Vec<u8> {
    let mut m = b"SYMM".to_vec();
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&(job.len() as u32).to_le_bytes());
    m.extend_from_slice(job.as_bytes());
    m.extend_from_slice(&tag.to_le_bytes());
    m.extend_from_slice(&rank.to_le_bytes());
    m.extend_from_slice(&world_size.to_le_bytes());
    m.extend_from_slice(&declared_len.to_le_bytes());
    m
}

fn connect_when_listening(port: u16) -> TcpStream {
    let t0 = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("rank 0 never listened: {e}"),
        }
    }
}

#[test]
fn hostile_hellos_with_huge_lengths_are_refused_at_once() {
    let port = free_port();
    let (tx, rx) = mpsc::channel();
    let root_tx = tx.clone();
    std::thread::spawn(move || {
        let env = LaunchEnv::new(0, 2, "127.0.0.1", port).unwrap();
        let _ = root_tx.send((
            0,
            exchange_unique_id(&env, || make_id(7, 0), Duration::from_secs(20)),
        ));
    });
    // Another exchange's tag, and another job, each declaring the largest length accepted and
    // one far above it; no payload follows.
    let hostile = [
        hello_header("", 0x5eed, 1, 2, 16 << 20),
        hello_header("", 0x5eed, 1, 2, u32::MAX),
        hello_header("stranger", 0x5eed, 1, 2, u32::MAX),
    ];
    for (i, h) in hostile.iter().enumerate() {
        let mut s = connect_when_listening(port);
        s.write_all(h).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let t0 = Instant::now();
        let mut head = [0u8; 12];
        s.read_exact(&mut head)
            .unwrap_or_else(|e| panic!("hostile hello {i} got no answer: {e}"));
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "hostile hello {i} answered after {:?}",
            t0.elapsed()
        );
        assert_eq!(&head[..4], b"SYMM", "hostile hello {i}");
        let status = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        // 1: refused (another exchange); 2: rank 0 belongs to another job.
        assert_eq!(status, if i == 2 { 2 } else { 1 }, "hostile hello {i}");
    }
    // The real rank 1 still completes the exchange.
    std::thread::spawn(move || {
        let env = LaunchEnv::new(1, 2, "127.0.0.1", port).unwrap();
        let _ = tx.send((
            1,
            exchange_unique_id(&env, || make_id(7, 1), Duration::from_secs(20)),
        ));
    });
    for _ in 0..2 {
        let (rank, got) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a rank did not finish");
        let id = got.unwrap_or_else(|e| panic!("rank {rank}: {e}"));
        assert_eq!(id, make_id(7, 0), "rank {rank}");
    }
}
