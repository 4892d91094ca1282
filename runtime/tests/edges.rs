//! Edge cases: pool limits near `usize::MAX`, by-name windows on threads without a rank,
//! the `SYMMEM_TIMEOUT_SECS` variable, integer averages and the capture reserve advice.

mod common;

use symmem::host::HostConfig;
use symmem::{Error, RankConfig, ReduceOp};
use symmem_runtime as symmem;

const MIB: usize = 1 << 20;

fn limited(symmetric: Option<usize>, default: Option<usize>) -> HostConfig {
    HostConfig::new(1).with_rank(
        RankConfig::new()
            .with_symmetric_pool_limit(symmetric)
            .with_default_pool_limit(default),
    )
}

#[test]
fn huge_requests_under_a_limit_near_usize_max_are_pool_limit_errors() {
    let limit = usize::MAX - 4096;
    symmem::host::run_with(limited(Some(limit), Some(limit)), |ctx| {
        let world = ctx.world();
        // Something reserved already, so that reserved + segment size overflows.
        let keep = symmem::alloc::<u8>(4096).unwrap();
        let keep_sym = world.with_window(|| symmem::alloc::<u8>(4096)).unwrap();
        for n in [usize::MAX / 2, usize::MAX - MIB, usize::MAX] {
            for sym in [false, true] {
                let r = if sym {
                    world.with_window(|| symmem::alloc::<u8>(n))
                } else {
                    symmem::alloc::<u8>(n)
                };
                match r {
                    Err(Error::PoolLimit {
                        requested,
                        reserved,
                        limit: l,
                        ..
                    }) if n > usize::MAX / 2 => {
                        assert_eq!((requested, reserved, l), (n, 2 * MIB, limit));
                    }
                    // Within the limit: the host allocator refuses it.
                    Err(Error::OutOfMemory { requested, .. }) if n == usize::MAX / 2 => {
                        assert_eq!(requested, n);
                    }
                    other => panic!("alloc::<u8>({n}) (symmetric {sym}): {other:?}"),
                }
            }
        }
        // Both pools stay usable.
        drop(symmem::alloc::<u8>(MIB).unwrap());
        drop(world.with_window(|| symmem::alloc::<u8>(MIB)).unwrap());
        drop((keep, keep_sym));
    })
    .unwrap();
}

#[test]
fn a_by_name_window_without_a_rank_reports_no_rank_context() {
    // Not a rank thread: the test harness's own thread (`symmem::__private::enter` is
    // `macro_support::enter`).
    let _w = symmem::macro_support::enter("tp");
    match symmem::alloc::<f32>(16) {
        Err(Error::NoRankContext) => {}
        other => panic!("expected NoRankContext, got {other:?}"),
    }
    let _w2 = symmem::macro_support::enter_unless(false, "world");
    assert!(matches!(symmem::alloc::<u8>(1), Err(Error::NoRankContext)));
}

/// Set in the child processes of [`timeout_variable_never_panics`].
const CHILD: &str = "SYMMEM_EDGES_TIMEOUT_CHILD";

/// In a child process: print the default configuration's timeout.
#[test]
fn timeout_child() {
    if std::env::var_os(CHILD).is_some() {
        // symmem warns through `tracing`; this subscriber writes the warning to stderr.
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .finish(),
        );
        println!("timeout={:?}", RankConfig::default().timeout);
    }
}

#[test]
fn timeout_variable_never_panics() {
    let year = format!(
        "timeout={:?}",
        std::time::Duration::from_secs(365 * 24 * 3600)
    );
    let cases: [(&str, &str, bool); 8] = [
        ("2.5", "timeout=2.5s", false),
        ("inf", &year, false),
        ("1e300", &year, false),
        ("-3", "timeout=300s", true),
        ("NaN", "timeout=300s", true),
        ("0", "timeout=300s", true),
        ("soon", "timeout=300s", true),
        ("", "timeout=300s", true),
    ];
    for (value, want, warns) in cases {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "timeout_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("SYMMEM_TIMEOUT_SECS", value)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "SYMMEM_TIMEOUT_SECS={value:?}: {stdout}\n{stderr}"
        );
        assert!(
            stdout.contains(want),
            "SYMMEM_TIMEOUT_SECS={value:?}: {stdout}"
        );
        assert_eq!(
            stderr.contains("ignoring SYMMEM_TIMEOUT_SECS"),
            warns,
            "SYMMEM_TIMEOUT_SECS={value:?}: {stderr}"
        );
    }
}

/// `all_reduce(Avg)` of each rank's `values(rank)` on `n` ranks, as rank 0 sees it.
fn avg_on<T: symmem::Element>(n: usize, values: fn(usize) -> Vec<T>) -> Vec<T> {
    let out = symmem::host::run(n, |ctx| {
        let mut b = symmem::alloc_from_host(&values(ctx.rank())).unwrap();
        ctx.world().all_reduce(&mut b, ReduceOp::Avg).unwrap();
        b.to_host_vec().unwrap()
    })
    .unwrap();
    assert!(out.iter().all(|v| *v == out[0]), "ranks disagree");
    out[0].clone()
}

#[test]
fn integer_avg_wraps_the_sum_then_divides_by_the_group_size() {
    // As NCCL's ncclAvg: the sum wraps in the element type, then is divided (toward zero).
    let u = avg_on::<u8>(3, |r| vec![200, 100 + r as u8, 255, 3]);
    // 600 -> 88, 303 -> 47, 765 -> 253, 9.
    assert_eq!(u, vec![88 / 3, 47 / 3, 253 / 3, 3]);
    let i = avg_on::<i32>(3, |r| vec![i32::MAX, i32::MIN, -7 - r as i32]);
    let wrapped = i32::MAX.wrapping_mul(3);
    assert_eq!(i, vec![wrapped / 3, i32::MIN / 3, -8]);
    // 256 ranks of u8: the group size does not fit the element type and must not be
    // truncated (to 0: a division by zero).
    let u = avg_on::<u8>(256, |r| vec![1, r as u8, 255]);
    // Sums 256 -> 0, 32640 -> 128, 65280 -> 0; each divided by 256.
    assert_eq!(u, vec![0, 0, 0]);
    let i = avg_on::<i32>(256, |r| vec![r as i32, 1000]);
    assert_eq!(i, vec![127, 1000]);
}

/// The capture of the issue: 2, 4 and 2 MiB with a free in between (the third reuses the first).
fn two_four_two(world: &symmem::Group) -> symmem::Result<Vec<symmem::Buffer<u8>>> {
    let _w = world.window();
    let a = symmem::alloc::<u8>(2 * MIB)?;
    let b = symmem::alloc::<u8>(4 * MIB)?;
    drop(a);
    let c = symmem::alloc::<u8>(2 * MIB)?;
    Ok(vec![b, c])
}

/// Following the error's figure once is enough: the capture runs to its end on stand-ins and
/// reports what it needs as a whole.
#[test]
fn capture_reserve_advice_makes_the_next_try_succeed() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let (requested, reserve) = match symmem::capture(|| two_four_two(&world)) {
            Err(Error::CaptureReserveExceeded {
                requested, reserve, ..
            }) => (requested, reserve),
            other => panic!(
                "expected CaptureReserveExceeded, got {:?}",
                other.map(|_| ())
            ),
        };
        assert_eq!(requested, 2 * MIB, "the first request that did not fit");
        assert!(reserve >= 6 * MIB, "at least the peak: {reserve}");
        world.reserve_symmetric(reserve).unwrap();
        let (mut g, bufs) = symmem::capture(|| two_four_two(&world)).unwrap();
        assert!(bufs.iter().all(|b| b.is_symmetric()));
        g.replay().unwrap();
        drop((g, bufs));
        assert_eq!(world.stats().in_use_bytes, 0);
        // A pool with part of it reserved: again one failure, then success.
        let tp = ctx.split_group("tp", &world, 0, 0).unwrap();
        tp.reserve_symmetric(2 * MIB).unwrap();
        let reserve = match symmem::capture(|| two_four_two(&tp)) {
            Err(Error::CaptureReserveExceeded { reserve, .. }) => reserve,
            other => panic!(
                "expected CaptureReserveExceeded, got {:?}",
                other.map(|_| ())
            ),
        };
        tp.reserve_symmetric(reserve).unwrap();
        let (mut g, bufs) = symmem::capture(|| two_four_two(&tp)).unwrap();
        g.replay().unwrap();
        drop((g, bufs));
        assert_eq!(tp.stats().in_use_bytes, 0);
    })
    .unwrap();
}

#[test]
fn capture_reserve_of_a_huge_request_saturates() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        world.reserve_symmetric(MIB).unwrap();
        let r = symmem::capture(|| -> symmem::Result<()> {
            let _w = world.window();
            let _small = symmem::alloc::<u8>(4096)?;
            symmem::alloc::<u8>(usize::MAX).map(drop)
        });
        match r {
            Err(Error::CaptureReserveExceeded { reserve, .. }) => {
                assert_eq!(reserve, usize::MAX);
            }
            other => panic!(
                "expected CaptureReserveExceeded, got {:?}",
                other.map(|_| ())
            ),
        }
    })
    .unwrap();
}
