//! The error catalogue: every variant of `symmem::Error` is produced (triggered through the
//! API where the host backend can reach it, constructed otherwise), its message is checked, and
//! the list is compared with `src/error.rs` and `docs/errors.md` so that neither drifts.
//!
//! `SYMMEM_PRINT_ERRORS=1 cargo test -p symmem-runtime --test errors -- --nocapture` prints
//! every message (that output is what `docs/errors.md` quotes).

mod common;

use std::sync::{mpsc, Mutex};
use std::time::Duration;

use symmem::launch::BackendChoice;
use symmem::{Buffer, DType, Error, RankConfig, ReduceOp};
use symmem_runtime as symmem;

use common::config;

/// The variant name of an error (the start of its `Debug` form).
fn variant(e: &Error) -> String {
    format!("{e:?}")
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// One example of every variant, each with the situation that produced it.
fn catalogue() -> Vec<(&'static str, Error)> {
    let mut v: Vec<(&'static str, Error)> = Vec::new();
    v.push((
        "alloc on a thread without a rank",
        symmem::alloc::<f32>(1).unwrap_err(),
    ));

    // Errors a one-rank launch can produce.
    let mut one = symmem::host::run(1, |ctx| {
        let mut v: Vec<(&'static str, Error)> = Vec::new();
        let world = ctx.world();
        let dev = std::sync::Arc::new(symmem::host::HostDevice::new(0));
        v.push((
            "RankContext::install on a rank thread",
            symmem::RankContext::install(dev, world.comm().clone(), RankConfig::default())
                .unwrap_err(),
        ));
        {
            let _w = symmem::macro_support::enter("tp");
            v.push((
                "alloc inside #[symmetric_memory(group = \"tp\")] on a rank without `tp`",
                symmem::alloc::<f32>(1).unwrap_err(),
            ));
        }
        v.push((
            "split_group(\"tp-0\", ..)",
            ctx.split_group("tp-0", &world, 0, 0).unwrap_err(),
        ));
        v.push((
            "split_group(\"world\", ..)",
            ctx.split_group("world", &world, 0, 0).unwrap_err(),
        ));
        let (_g, inner) = symmem::capture(|| {
            Ok(vec![
                (
                    "buffer.to_host_vec() inside capture",
                    symmem::alloc::<f32>(1)?.to_host_vec().unwrap_err(),
                ),
                (
                    "group.reserve_symmetric(..) inside capture",
                    world.reserve_symmetric(1 << 20).unwrap_err(),
                ),
                (
                    "symmem::capture inside capture",
                    symmem::capture(|| Ok(())).map(drop).unwrap_err(),
                ),
            ])
        })
        .unwrap();
        v.extend(inner);
        let e = symmem::capture(|| {
            let _w = world.window();
            symmem::alloc::<f32>(1 << 20)
        })
        .unwrap_err();
        v.push((
            "a 4 MiB symmetric allocation inside capture with nothing reserved",
            e,
        ));
        {
            let _w = world.window();
            v.push((
                "symmem::alloc::<u8>(1 << 50) in a window (1 PiB)",
                symmem::alloc::<u8>(1 << 50).unwrap_err(),
            ));
        }
        let a = symmem::alloc::<f32>(10).unwrap();
        let mut b = symmem::alloc::<f32>(11).unwrap();
        v.push((
            "all_reduce_into with 10 and 11 elements",
            world
                .all_reduce_into(&a, &mut b, ReduceOp::Sum)
                .unwrap_err(),
        ));
        v.push((
            "broadcast(.., root = 1) in a group of 1",
            world.broadcast(&mut b, 1).unwrap_err(),
        ));
        v.push((
            "symmem::alloc::<u64>(usize::MAX / 4)",
            symmem::alloc::<u64>(usize::MAX / 4).map(drop).unwrap_err(),
        ));
        v
    })
    .unwrap()
    .remove(0);
    v.append(&mut one);

    // A pool limit.
    let cfg = symmem::host::HostConfig::new(1)
        .with_rank(RankConfig::new().with_default_pool_limit(Some(4 << 20)));
    v.push((
        "a 5 MiB allocation from a default pool limited to 4 MiB",
        symmem::host::run_with(cfg, |_| symmem::alloc::<u8>(5 << 20).unwrap_err())
            .unwrap()
            .remove(0),
    ));

    // Divergence, timeout and abort need several ranks.
    let e = symmem::host::run_with(config(2, true, Duration::from_secs(5)), |ctx| {
        let mut b = symmem::alloc::<f32>(1024 * (ctx.rank() + 1)).unwrap();
        ctx.world().all_reduce(&mut b, ReduceOp::Sum).unwrap_err()
    })
    .unwrap()
    .remove(0);
    v.push((
        "validation mode: rank 1 all-reduces 2048 elements, rank 0 1024",
        e,
    ));
    let mut e = symmem::host::run_with(config(3, false, Duration::from_millis(500)), |ctx| {
        if ctx.rank() == 2 {
            // Busy elsewhere past the timeout (a rank that *returns* is a departure instead:
            // its peers fail at once with `Aborted`).
            std::thread::sleep(Duration::from_millis(1500));
            return None;
        }
        let mut b = symmem::alloc::<f32>(8).unwrap();
        ctx.world().all_reduce(&mut b, ReduceOp::Sum).err()
    })
    .unwrap();
    let mut errs: Vec<Error> = e.drain(..).flatten().collect();
    errs.sort_by_key(|e| variant(e) != "Timeout");
    let mut it = errs.into_iter();
    v.push((
        "rank 2 does not reach the all-reduce that ranks 0 and 1 wait in within the timeout (0.5 s)",
        it.next().unwrap(),
    ));
    let reports = Mutex::new(None);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        symmem::host::run(2, |ctx| {
            if ctx.rank() == 1 {
                panic!("rank 1 fails");
            }
            let mut b = symmem::alloc::<f32>(8).unwrap();
            *reports.lock().unwrap() = ctx.world().all_reduce(&mut b, ReduceOp::Sum).err();
        })
    }));
    v.push((
        "rank 1 panicked while rank 0 waits in an all-reduce",
        reports.into_inner().unwrap().unwrap(),
    ));

    // A buffer of another rank, and a graph replayed on another rank.
    let (tx, rx) = mpsc::channel::<Buffer<f32>>();
    let (gtx, grx) = mpsc::channel::<symmem::Graph>();
    let (tx, rx, gtx, grx) = (
        Mutex::new(tx),
        Mutex::new(rx),
        Mutex::new(gtx),
        Mutex::new(grx),
    );
    let out = symmem::host::run(2, |ctx| {
        if ctx.rank() == 0 {
            tx.lock()
                .unwrap()
                .send(symmem::alloc::<f32>(4).unwrap())
                .unwrap();
            let (g, ()) = symmem::capture(|| Ok(())).unwrap();
            gtx.lock().unwrap().send(g).unwrap();
            vec![]
        } else {
            let mut foreign = rx.lock().unwrap().recv().unwrap();
            let mut g = grx.lock().unwrap().recv().unwrap();
            vec![
                (
                    "all_reduce of a buffer received from rank 0",
                    ctx.world()
                        .all_reduce(&mut foreign, ReduceOp::Sum)
                        .unwrap_err(),
                ),
                (
                    "graph captured on rank 0 replayed on rank 1",
                    g.replay().unwrap_err(),
                ),
            ]
        }
    })
    .unwrap();
    v.extend(out.into_iter().flatten());

    // The backend choice.
    v.push((
        "launch::run(BackendChoice::Cuda, ..) on a machine or build without CUDA",
        symmem::launch::run(BackendChoice::Cuda, 1 << 20, RankConfig::default(), |_| ())
            .unwrap_err(),
    ));

    // Variants the host backend cannot produce (CUDA/NCCL failures and internal misuse
    // reports): constructed as the backends and the runtime construct them.
    v.push((
        "(constructed) NCCL lacks a reduction for the type",
        Error::UnsupportedReduction {
            op: ReduceOp::Avg,
            dtype: DType::U8,
        },
    ));
    v.push((
        "(constructed) internal window misuse report",
        Error::WindowMisuse("a guard of another thread was dropped here"),
    ));
    v.push((
        "(constructed as the CUDA backend does) cuMemAlloc of a default-pool segment fails",
        Error::Cuda {
            call: "cuMemAlloc",
            message: "CUDA_ERROR_OUT_OF_MEMORY (out of memory)".into(),
            hint: "the GPU is out of memory: free buffers, call empty_cache(), or lower the sizes",
        },
    ));
    v.push((
        "(constructed as the CUDA backend does) NCCL cannot register a symmetric window",
        Error::Nccl {
            call: "ncclCommWindowRegister",
            message: "ncclUnhandledCudaError: unhandled cuda error (run with NCCL_DEBUG=INFO for details)".into(),
            hint: "NCCL could not register the segment as a symmetric window; set NCCL_DEBUG=WARN for details, or update NCCL (2.28+ recommended)",
        },
    ));
    v.push((
        "(constructed) host allocation failure",
        Error::HostAlloc { bytes: 1 << 50 },
    ));
    v.push((
        "(constructed) launch_host on a CUDA stream",
        Error::Unsupported {
            backend: "cuda",
            what: "host closures as stream work".into(),
        },
    ));
    v.push((
        "another library's error carried with Error::external",
        Error::external(
            "cuBLAS gemm",
            std::io::Error::other("CUBLAS_STATUS_INVALID_VALUE"),
        ),
    ));
    v
}

#[test]
fn external_errors_keep_their_source() {
    let e = Error::external(
        "cuBLAS gemm",
        std::io::Error::other("CUBLAS_STATUS_INVALID_VALUE"),
    );
    let msg = e.to_string();
    assert!(
        msg.contains("cuBLAS gemm failed") && msg.contains("CUBLAS_STATUS_INVALID_VALUE"),
        "{msg}"
    );
    let src = std::error::Error::source(&e).expect("the source is kept");
    assert_eq!(src.to_string(), "CUBLAS_STATUS_INVALID_VALUE");
}

#[cfg(feature = "cuda")]
#[test]
fn cudarc_driver_errors_convert() {
    use symmem::cuda::cudarc::driver::{sys::CUresult, DriverError};
    fn through_question_mark() -> symmem::Result<()> {
        Err(DriverError(CUresult::CUDA_ERROR_INVALID_VALUE))?
    }
    let e = through_question_mark().unwrap_err();
    assert!(matches!(e, Error::Cuda { .. }), "{e:?}");
    assert!(e.to_string().contains("cudarc"), "{e}");
}

#[test]
fn every_error_variant_has_an_actionable_message() {
    let cat = catalogue();
    let print = std::env::var_os("SYMMEM_PRINT_ERRORS").is_some();
    for (situation, e) in &cat {
        let msg = e.to_string();
        assert!(msg.starts_with("symmem: "), "{situation}: {msg}");
        assert!(msg.len() > 30, "{situation}: message too short: {msg}");
        if print {
            println!("### {}\n{situation}\n    {msg}\n", variant(e));
        }
    }
    let expect = |name: &str, needles: &[&str]| {
        let found: Vec<String> = cat
            .iter()
            .filter(|(_, e)| variant(e) == name)
            .map(|(_, e)| e.to_string())
            .collect();
        assert!(!found.is_empty(), "no example of {name}");
        for n in needles {
            assert!(
                found.iter().any(|m| m.contains(n)),
                "{name}: no message contains {n:?}: {found:#?}"
            );
        }
    };
    expect(
        "NoRankContext",
        &["no rank context on this thread", "symmem::host::run"],
    );
    expect(
        "RankContextAlreadyInstalled",
        &["already installed on this thread (rank 0)"],
    );
    expect(
        "GroupNotFound",
        &["no group named `tp` on this rank (groups here: world)"],
    );
    expect("InvalidGroupName", &["invalid group name \"tp-0\""]);
    expect("DuplicateGroup", &["a group named `world` already exists"]);
    expect(
        "NotAllowedDuringCapture",
        &[
            "`Buffer::copy_to_host` is not allowed during graph capture",
            "`Group::reserve_symmetric` is not allowed",
            "captures do not nest",
        ],
    );
    expect(
        "CaptureReserveExceeded",
        &[
            "cannot allocate 4.00 MiB (4194304 bytes)",
            "group.reserve_symmetric(4194304)",
        ],
    );
    expect(
        "OutOfMemory",
        &[
            "pool `world` is out of memory allocating 1024.00 TiB (1125899906842624 bytes), with",
            "Cause: symmem: the host backend",
        ],
    );
    expect(
        "PoolLimit",
        &["pool `default` would exceed its limit of 4.00 MiB (4194304 bytes), with"],
    );
    expect(
        "RankDivergence",
        &[
            "rank 0: all_reduce: f32 Sum count 1024",
            "rank 1: all_reduce: f32 Sum count 2048",
        ],
    );
    expect("Timeout", &["timed out after 0.5s", "of 3)"]);
    expect("Aborted", &["rank 1 panicked"]);
    expect("LengthMismatch", &["src has 10 elements and dst 11"]);
    expect("WrongDevice", &["belongs to another rank's device"]);
    expect(
        "InvalidArgument",
        &[
            "root 1 is not a rank of group `world` (size 1)",
            "overflow the address space",
        ],
    );
    expect("Graph", &["captured on another rank's stream"]);
    expect("BackendUnavailable", &["CUDA backend unavailable"]);
    expect("UnsupportedReduction", &["Avg is not supported for u8"]);

    // Every variant declared in src/error.rs has an example here and an entry in docs/errors.md.
    let root = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
    let src = std::fs::read_to_string(root.join("src/error.rs")).unwrap();
    let declared: Vec<String> = src
        .lines()
        .filter_map(|l| {
            let t = l.strip_prefix("    ")?;
            if t.starts_with(' ') {
                return None;
            }
            let name: String = t.chars().take_while(|c| c.is_alphanumeric()).collect();
            let rest = &t[name.len()..];
            (name.starts_with(|c: char| c.is_ascii_uppercase())
                && (rest.starts_with(" {") || rest.starts_with('(') || rest.starts_with(',')))
            .then_some(name)
        })
        .collect();
    assert!(
        declared.len() >= 20,
        "could not parse the variants of error.rs: {declared:?}"
    );
    let covered: Vec<String> = cat.iter().map(|(_, e)| variant(e)).collect();
    for d in &declared {
        assert!(
            covered.contains(d),
            "variant {d} of error.rs has no example in this catalogue"
        );
    }
    let docs = root.parent().unwrap().join("docs/errors.md");
    if let Ok(text) = std::fs::read_to_string(&docs) {
        for d in &declared {
            assert!(
                text.contains(&format!("## `{d}`")),
                "docs/errors.md has no section `## `{d}``"
            );
        }
    }
}
