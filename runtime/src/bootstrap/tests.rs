//! Tests of the rank bootstrap: the environment, the wire format and loopback exchanges.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::env::host;
use super::wire::{encode_hello, tag_hash, MAGIC, STATUS_REFUSED};
use super::*;

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[test]
fn torchrun_variables() {
    let e = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "1234"),
    ]))
    .unwrap();
    assert_eq!(
        (e.rank, e.world_size, e.local_rank, e.master_port),
        (3, 8, 1, 1234)
    );
    assert_eq!(
        (e.source, e.port_origin),
        (EnvSource::Torchrun, PortOrigin::MasterPort)
    );
    assert_eq!(e.endpoint(), "10.0.0.1:1234");
}

#[test]
fn ports() {
    let base = [
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
    ];
    let e = LaunchEnv::from_lookup(lookup(&base)).unwrap();
    assert_eq!(
        (e.master_port, e.port_origin, e.local_rank),
        (DEFAULT_PORT, PortOrigin::Default, 0)
    );
    let mut v = base.to_vec();
    v.push(("MASTER_PORT", "4000"));
    v.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
    let e = LaunchEnv::from_lookup(lookup(&v)).unwrap();
    assert_eq!(
        (e.master_port, e.port_origin),
        (4001, PortOrigin::AfterAgentStore)
    );
    v.push(("SYMMEM_BOOTSTRAP_PORT", "5000"));
    let e = LaunchEnv::from_lookup(lookup(&v)).unwrap();
    assert_eq!(
        (e.master_port, e.port_origin),
        (5000, PortOrigin::BootstrapPort)
    );
    let mut w = base.to_vec();
    w.push(("MASTER_PORT", "65535"));
    w.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
    assert!(matches!(
        LaunchEnv::from_lookup(lookup(&w)),
        Err(BootstrapError::InvalidNumber {
            var: "MASTER_PORT",
            ..
        })
    ));
    let mut x = base.to_vec();
    x.push(("MASTER_PORT", "0"));
    assert!(matches!(
        LaunchEnv::from_lookup(lookup(&x)),
        Err(BootstrapError::InvalidNumber {
            var: "MASTER_PORT",
            ..
        })
    ));
}

#[test]
fn mpi_and_slurm() {
    let e = LaunchEnv::from_lookup(lookup(&[
        ("OMPI_COMM_WORLD_RANK", "2"),
        ("OMPI_COMM_WORLD_SIZE", "4"),
        ("OMPI_COMM_WORLD_LOCAL_RANK", "0"),
        ("MASTER_ADDR", "h"),
        ("SLURM_PROCID", "9"),
    ]))
    .unwrap();
    assert_eq!(
        (e.rank, e.world_size, e.local_rank, e.source),
        (2, 4, 0, EnvSource::OpenMpi)
    );
    let e = LaunchEnv::from_lookup(lookup(&[
        ("SLURM_PROCID", "1"),
        ("SLURM_NPROCS", "2"),
        ("SLURM_LOCALID", "1"),
        ("MASTER_ADDR", "h"),
    ]))
    .unwrap();
    assert_eq!(
        (e.rank, e.world_size, e.local_rank, e.source),
        (1, 2, 1, EnvSource::Slurm)
    );
    let err = LaunchEnv::from_lookup(lookup(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")]))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("MASTER_ADDR") && msg.contains("Slurm"),
        "{msg}"
    );
}

#[test]
fn bad_values() {
    let err = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "x"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "h"),
    ]))
    .unwrap_err();
    assert!(
        matches!(err, BootstrapError::InvalidNumber { var: "RANK", .. }),
        "{err}"
    );
    let err = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "0"),
        ("MASTER_ADDR", "h"),
    ]))
    .unwrap_err();
    assert!(
        matches!(err, BootstrapError::ZeroWorldSize { var: "WORLD_SIZE" }),
        "{err}"
    );
    let err = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "-1"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "h"),
    ]))
    .unwrap_err();
    assert!(matches!(err, BootstrapError::InvalidNumber { .. }), "{err}");
    let err = LaunchEnv::from_lookup(lookup(&[("RANK", "0"), ("MASTER_ADDR", "h")])).unwrap_err();
    assert!(
        matches!(&err, BootstrapError::MissingVariables { missing, .. } if missing == &vec!["WORLD_SIZE"]),
        "{err}"
    );
    let err = LaunchEnv::from_lookup(lookup(&[("RANK", ""), ("WORLD_SIZE", " ")])).unwrap_err();
    assert!(
        matches!(
            &err,
            BootstrapError::MissingVariables { launcher: None, .. }
        ),
        "{err}"
    );
    assert!(LaunchEnv::new(0, 0, "h", 1).is_err());
    assert!(LaunchEnv::new(2, 2, "h", 1).is_err());
    assert!(LaunchEnv::new(0, 2, " ", 1).is_err());
    assert!(LaunchEnv::new(0, 2, "h", 0).is_err());
    assert!(LaunchEnv::new(0, MAX_WORLD_SIZE + 1, "h", 1).is_err());
    let err = LaunchEnv::from_lookup(lookup(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "99999999999"),
        ("MASTER_ADDR", "h"),
    ]))
    .unwrap_err();
    assert!(
        matches!(
            err,
            BootstrapError::InvalidNumber {
                var: "WORLD_SIZE",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn ipv6_endpoint() {
    let e = LaunchEnv::new(0, 2, "[::1]", 7).unwrap();
    assert_eq!(e.endpoint(), "[::1]:7");
    assert_eq!(host(&e), "::1");
}

#[test]
fn tag_hash_is_stable() {
    assert_eq!(tag_hash(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(tag_hash("a"), 0xaf63_dc4c_8601_ec8c);
    assert_ne!(tag_hash("nccl-unique-id"), tag_hash("nccl-unique-id2"));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn world_of_one_needs_no_network() {
    let e = LaunchEnv::new(0, 1, "127.0.0.1", 1).unwrap();
    assert_eq!(
        exchange_unique_id(&e, || [7; 128], Duration::from_millis(1)).unwrap(),
        [7; 128]
    );
    assert_eq!(
        all_gather_bytes(&e, "t", b"x", Duration::from_millis(1)).unwrap(),
        vec![b"x".to_vec()]
    );
}

#[test]
fn threads_all_gather_with_stray_connections() {
    let port = free_port();
    let n = 4;
    let handles: Vec<_> = (0..n)
        .map(|r| {
            std::thread::spawn(move || {
                if r == n - 1 {
                    // The last rank comes late, so the strays below reach a waiting rank 0.
                    std::thread::sleep(Duration::from_millis(800));
                }
                let e = LaunchEnv::new(r, n, "127.0.0.1", port).unwrap();
                all_gather_bytes(
                    &e,
                    "test",
                    format!("rank{r}").as_bytes(),
                    Duration::from_secs(10),
                )
            })
        })
        .collect();
    // Strays while rank 0 waits: garbage, a silent connection, another exchange's tag.
    let connect = || {
        let t0 = Instant::now();
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => return s,
                Err(_) if t0.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("rank 0 never listened: {e}"),
            }
        }
    };
    let mut junk = connect();
    let _ = junk.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let _silent = connect();
    let mut other = connect();
    let _ = other.write_all(&encode_hello("", tag_hash("other"), 1, n as u32, b""));
    for h in handles {
        let all = h.join().unwrap().unwrap();
        let want: Vec<Vec<u8>> = (0..n).map(|r| format!("rank{r}").into_bytes()).collect();
        assert_eq!(all, want);
    }
    // The other exchange's peer was told why.
    let mut buf = [0u8; 12];
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    other.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..4], &MAGIC);
    assert_eq!(
        u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]),
        STATUS_REFUSED
    );
}

#[test]
fn inconsistent_world_size_fails_fast() {
    let port = free_port();
    let root = std::thread::spawn(move || {
        let e = LaunchEnv::new(0, 3, "127.0.0.1", port).unwrap();
        exchange_unique_id(&e, || [1; 128], Duration::from_secs(20))
    });
    let t0 = Instant::now();
    let e = LaunchEnv::new(1, 2, "127.0.0.1", port).unwrap();
    let err = exchange_unique_id(&e, || [9; 128], Duration::from_secs(20)).unwrap_err();
    assert!(matches!(err, BootstrapError::Refused { .. }), "{err}");
    let root_err = root.join().unwrap().unwrap_err();
    assert!(
        matches!(root_err, BootstrapError::Protocol { .. }),
        "{root_err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn job_identity() {
    let torch = [
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "h"),
        ("TORCHELASTIC_RUN_ID", "run7"),
        ("SLURM_JOB_ID", "99"),
    ];
    assert_eq!(
        LaunchEnv::from_lookup(lookup(&torch)).unwrap().job_id(),
        "run7"
    );
    let mut own = torch.to_vec();
    own.push(("SYMMEM_JOB_ID", " mine "));
    assert_eq!(
        LaunchEnv::from_lookup(lookup(&own)).unwrap().job_id(),
        "mine"
    );
    // Only the launcher's own id: Slurm's is not read for torchrun variables.
    let by_hand = [
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "h"),
        ("SLURM_JOB_ID", "99"),
    ];
    assert_eq!(
        LaunchEnv::from_lookup(lookup(&by_hand)).unwrap().job_id(),
        ""
    );
    let slurm = [
        ("SLURM_PROCID", "0"),
        ("SLURM_NTASKS", "2"),
        ("MASTER_ADDR", "h"),
        ("SLURM_JOB_ID", "99"),
    ];
    assert_eq!(
        LaunchEnv::from_lookup(lookup(&slurm)).unwrap().job_id(),
        "99"
    );
    let mut step = slurm.to_vec();
    step.push(("SLURM_STEP_ID", "3"));
    assert_eq!(
        LaunchEnv::from_lookup(lookup(&step)).unwrap().job_id(),
        "99.3"
    );
    let ompi = [
        ("OMPI_COMM_WORLD_RANK", "0"),
        ("OMPI_COMM_WORLD_SIZE", "2"),
        ("MASTER_ADDR", "h"),
        ("PMIX_NAMESPACE", "prterun-h-1@1"),
    ];
    assert_eq!(
        LaunchEnv::from_lookup(lookup(&ompi)).unwrap().job_id(),
        "prterun-h-1@1"
    );
    let mut orte = ompi.to_vec();
    orte.push(("OMPI_MCA_ess_base_jobid", "3826286593"));
    assert_eq!(
        LaunchEnv::from_lookup(lookup(&orte)).unwrap().job_id(),
        "3826286593"
    );
    let e = LaunchEnv::new(0, 2, "h", 1).unwrap();
    assert_eq!(e.job_id(), "");
    assert_eq!(e.with_job_id(" j ").job_id(), "j");
    let long = "x".repeat(1025);
    let mut too_long = torch.to_vec();
    too_long.push(("SYMMEM_JOB_ID", &long));
    assert!(matches!(
        LaunchEnv::from_lookup(lookup(&too_long)),
        Err(BootstrapError::InvalidNumber {
            var: "SYMMEM_JOB_ID",
            ..
        })
    ));
    let e = LaunchEnv::new(1, 2, "127.0.0.1", free_port())
        .unwrap()
        .with_job_id(&long);
    assert!(matches!(
        exchange_unique_id(&e, || [0; 128], Duration::from_secs(1)),
        Err(BootstrapError::InvalidNumber { .. })
    ));
}

#[test]
fn a_rank_of_another_job_is_refused_and_rank0_goes_on() {
    let port = free_port();
    let root = std::thread::spawn(move || {
        let e = LaunchEnv::new(0, 2, "127.0.0.1", port)
            .unwrap()
            .with_job_id("A");
        all_gather_bytes(&e, "t", b"a0", Duration::from_secs(20))
    });
    let t0 = Instant::now();
    for (job, shown) in [("B", r#"you are job "B""#), ("", "you are job (none)")] {
        let e = LaunchEnv::new(1, 2, "127.0.0.1", port)
            .unwrap()
            .with_job_id(job);
        let err = all_gather_bytes(&e, "t", b"b1", Duration::from_secs(20)).unwrap_err();
        match &err {
            BootstrapError::JobMismatch {
                rank: 1,
                job: j,
                rank0_job,
                ..
            } => assert_eq!((j.as_str(), rank0_job.as_str()), (job, "A")),
            other => panic!("unexpected error: {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(r#"this is job "A""#) && msg.contains(shown),
            "{msg}"
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
    let e = LaunchEnv::new(1, 2, "127.0.0.1", port)
        .unwrap()
        .with_job_id("A");
    let all = all_gather_bytes(&e, "t", b"a1", Duration::from_secs(20)).unwrap();
    assert_eq!(all, vec![b"a0".to_vec(), b"a1".to_vec()]);
    assert_eq!(root.join().unwrap().unwrap(), all);
}

#[test]
fn a_version_1_peer_reads_its_refusal() {
    let port = free_port();
    let root = std::thread::spawn(move || {
        let e = LaunchEnv::new(0, 2, "127.0.0.1", port).unwrap();
        exchange_unique_id(&e, || [1; 128], Duration::from_secs(20))
    });
    let t0 = Instant::now();
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if t0.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("rank 0 never listened: {e}"),
        }
    };
    // Version 1's hello: no job id.
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&1u32.to_le_bytes());
    hello.extend_from_slice(&tag_hash("nccl-unique-id").to_le_bytes());
    hello.extend_from_slice(&1u32.to_le_bytes());
    hello.extend_from_slice(&2u32.to_le_bytes());
    hello.extend_from_slice(&0u32.to_le_bytes());
    s.write_all(&hello).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 16];
    s.read_exact(&mut head).unwrap();
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    assert_eq!(
        (&head[..4], word(4), word(8)),
        (&MAGIC[..], 1, STATUS_REFUSED)
    );
    let mut msg = vec![0u8; word(12) as usize];
    s.read_exact(&mut msg).unwrap();
    let msg = String::from_utf8(msg).unwrap();
    assert!(
        msg.contains("version 1") && msg.contains("same symmem version"),
        "{msg}"
    );
    let err = root.join().unwrap().unwrap_err();
    assert!(matches!(err, BootstrapError::Protocol { .. }), "{err}");
}
