//! The caching pools through the public API: property tests over random allocation and free
//! sequences (no overlap, 512-byte alignment, exact statistics, no leak), cross-rank
//! determinism of symmetric offsets, `empty_cache`, and pool limits / out of memory.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use symmem::host::HostConfig;
use symmem::{Buffer, Error, RankConfig, ReduceOp};
use symmem_runtime as symmem;

use common::rounded;

const MIB: usize = 1 << 20;

#[derive(Clone, Debug)]
enum Step {
    /// Allocate `bytes`, from the group's symmetric pool when `sym`.
    Alloc { bytes: usize, sym: bool },
    /// Free the live buffer at this index (modulo the number of live buffers).
    Free(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let bytes = prop_oneof![
        6 => 0usize..4096,
        3 => 4096usize..300_000,
        1 => MIB - 2048..3 * MIB + 777,
    ];
    prop_oneof![
        3 => (bytes, any::<bool>()).prop_map(|(bytes, sym)| Step::Alloc { bytes, sym }),
        2 => any::<usize>().prop_map(Step::Free),
    ]
}

struct Live {
    buf: Buffer<u8>,
    tag: u8,
}

/// Check the invariants over the live buffers of both pools.
fn check_live(
    live: &[Live],
    world: &symmem::Group,
    ctx: &symmem::RankContext,
) -> Result<(), TestCaseError> {
    let mut ranges: Vec<(u64, u64)> = live
        .iter()
        .map(|l| {
            (
                l.buf.device_ptr(),
                l.buf.device_ptr() + rounded(l.buf.len()) as u64,
            )
        })
        .collect();
    for l in live {
        prop_assert_eq!(l.buf.device_ptr() % 512, 0, "misaligned buffer");
        if let Some(s) = l.buf.symmetric() {
            prop_assert_eq!(s.offset % 512, 0);
        }
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        prop_assert!(
            w[0].1 <= w[1].0,
            "live blocks overlap: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    let (sym, plain): (Vec<&Live>, Vec<&Live>) = live.iter().partition(|l| l.buf.is_symmetric());
    let (ws, ds) = (world.stats(), ctx.default_pool_stats());
    prop_assert_eq!(
        ws.in_use_bytes,
        sym.iter().map(|l| rounded(l.buf.len())).sum::<usize>()
    );
    prop_assert_eq!(
        ds.in_use_bytes,
        plain.iter().map(|l| rounded(l.buf.len())).sum::<usize>()
    );
    prop_assert_eq!(ws.allocated_blocks, sym.len());
    prop_assert_eq!(ds.allocated_blocks, plain.len());
    for s in [ws, ds] {
        prop_assert!(s.in_use_bytes <= s.reserved_bytes);
        prop_assert!(s.largest_free_block <= s.reserved_bytes - s.in_use_bytes);
    }
    Ok(())
}

/// Contents are checked for buffers up to this size (larger ones only by address ranges, to
/// keep the debug-mode suite fast).
const CHECK_CONTENTS: usize = 64 * 1024;

fn run_sequence(
    steps: &[Step],
    world: &symmem::Group,
    ctx: &symmem::RankContext,
) -> Result<(), TestCaseError> {
    let before = (world.stats(), ctx.default_pool_stats());
    let mut live: Vec<Live> = Vec::new();
    let (mut sym_allocs, mut plain_allocs) = (0u64, 0u64);
    for (i, s) in steps.iter().enumerate() {
        match *s {
            Step::Alloc { bytes, sym } => {
                let buf = if sym {
                    let _w = world.window();
                    symmem::alloc::<u8>(bytes)
                } else {
                    symmem::alloc::<u8>(bytes)
                }
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(buf.is_symmetric(), sym);
                prop_assert_eq!(buf.len(), bytes);
                if sym {
                    sym_allocs += 1;
                } else {
                    plain_allocs += 1;
                }
                let tag = (i % 251) as u8 + 1;
                let mut buf = buf;
                if bytes <= CHECK_CONTENTS {
                    buf.copy_from_host(&vec![tag; bytes]).unwrap();
                }
                live.push(Live { buf, tag });
            }
            Step::Free(k) => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(k % live.len());
                if l.buf.len() <= CHECK_CONTENTS {
                    let v = l.buf.to_host_vec().unwrap();
                    prop_assert!(
                        v.iter().all(|&b| b == l.tag),
                        "contents of a live buffer were overwritten"
                    );
                }
            }
        }
        check_live(&live, world, ctx)?;
    }
    drop(live);
    let (ws, ds) = (world.stats(), ctx.default_pool_stats());
    prop_assert_eq!(
        (ws.in_use_bytes, ws.allocated_blocks),
        (0, 0),
        "symmetric pool leaked"
    );
    prop_assert_eq!(
        (ds.in_use_bytes, ds.allocated_blocks),
        (0, 0),
        "default pool leaked"
    );
    prop_assert_eq!(
        ws.cache_hits + ws.cache_misses - before.0.cache_hits - before.0.cache_misses,
        sym_allocs
    );
    prop_assert_eq!(
        ds.cache_hits + ds.cache_misses - before.1.cache_hits - before.1.cache_misses,
        plain_allocs
    );
    // Every segment is entirely free now: empty_cache gives them all back.
    let freed = world.empty_cache().unwrap() + ctx.empty_cache().unwrap();
    prop_assert_eq!(freed, ws.reserved_bytes + ds.reserved_bytes);
    prop_assert_eq!(world.stats().reserved_bytes, 0);
    prop_assert_eq!(world.stats().segments, 0);
    prop_assert_eq!(ctx.default_pool_stats().reserved_bytes, 0);
    Ok(())
}

#[test]
fn random_alloc_free_sequences_on_one_rank() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        let mut runner = TestRunner::new(Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&prop::collection::vec(step(), 1..80), |steps| {
                run_sequence(&steps, &world, ctx)
            })
            .unwrap();
    })
    .unwrap();
}

#[test]
fn same_sequence_gives_same_offsets_on_every_rank() {
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(step(), 1..60), |steps| {
            let per_rank = symmem::host::run(4, |ctx| {
                let world = ctx.world();
                let mut live: Vec<Buffer<f32>> = Vec::new();
                let mut seen = Vec::new();
                for s in &steps {
                    match *s {
                        Step::Alloc { bytes, .. } => {
                            let _w = world.window();
                            let b = symmem::alloc::<f32>(bytes.div_ceil(4)).unwrap();
                            let info = b.symmetric().expect("symmetric");
                            assert_eq!(&*info.group, "world");
                            seen.push((info.window, info.offset));
                            live.push(b);
                        }
                        Step::Free(k) => {
                            if !live.is_empty() {
                                live.swap_remove(k % live.len());
                            }
                        }
                    }
                }
                // The same offsets mean the symmetric path finds every peer's buffer: a real
                // all-reduce over each live buffer must give the right sums.
                for b in &mut live {
                    b.copy_from_host(&vec![ctx.rank() as f32 + 1.0; b.len()])
                        .unwrap();
                    world.all_reduce(b, ReduceOp::Sum).unwrap();
                    assert!(b.to_host_vec().unwrap().iter().all(|&x| x == 10.0));
                }
                let s = world.stats();
                (seen, s.reserved_bytes, s.segments, s.in_use_bytes)
            })
            .unwrap();
            for r in &per_rank[1..] {
                prop_assert_eq!(r, &per_rank[0]);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn empty_cache_releases_only_entirely_free_segments() {
    symmem::host::run(2, |ctx| {
        let world = ctx.world();
        let _w = world.window();
        let mut small: Vec<Buffer<u8>> = (0..4)
            .map(|_| symmem::alloc::<u8>(100_000).unwrap())
            .collect(); // one 2 MiB segment
        let big1 = symmem::alloc::<u8>(3 * MIB).unwrap(); // own 4 MiB segment
        let big2 = symmem::alloc::<u8>(5 * MIB).unwrap(); // own 6 MiB segment
        let s = world.stats();
        assert_eq!((s.segments, s.reserved_bytes), (3, 12 * MIB));
        assert_eq!(
            world.empty_cache().unwrap(),
            0,
            "no segment is entirely free"
        );
        drop(big1);
        small.truncate(1); // the small segment still has one block
        assert_eq!(world.empty_cache().unwrap(), 4 * MIB);
        let s = world.stats();
        assert_eq!(
            (s.segments, s.reserved_bytes, s.in_use_bytes),
            (2, 8 * MIB, 5 * MIB + rounded(100_000))
        );
        drop(big2);
        assert_eq!(world.empty_cache().unwrap(), 6 * MIB);
        assert_eq!(world.stats().reserved_bytes, 2 * MIB);
        // The default pool likewise.
        let d = symmem::opt_out();
        let x = symmem::alloc::<f64>(10).unwrap();
        assert_eq!(ctx.default_pool_stats().reserved_bytes, 2 * MIB);
        assert_eq!(ctx.empty_cache().unwrap(), 0);
        drop(x);
        assert_eq!(ctx.empty_cache().unwrap(), 2 * MIB);
        assert_eq!(ctx.default_pool_stats().reserved_bytes, 0);
        drop(d);
        // The pool keeps working after releasing segments, with the same offsets on all ranks.
        let y = symmem::alloc::<f32>(1).unwrap();
        y.symmetric().unwrap()
    })
    .unwrap()
    .windows(2)
    .for_each(|w| assert_eq!(w[0], w[1]));
}

fn limited(symmetric: Option<usize>, default: Option<usize>) -> HostConfig {
    HostConfig::new(2).with_rank(
        RankConfig::new()
            .with_symmetric_pool_limit(symmetric)
            .with_default_pool_limit(default),
    )
}

#[test]
fn pool_limit_is_an_error_and_the_pool_stays_usable() {
    symmem::host::run_with(limited(Some(4 * MIB), Some(4 * MIB)), |ctx| {
        let world = ctx.world();
        for sym in [true, false] {
            let pool = if sym { "world" } else { "default" };
            let _w = sym.then(|| world.window());
            let a = symmem::alloc::<u8>(3 * MIB).unwrap();
            match symmem::alloc::<u8>(3 * MIB) {
                Err(e @ Error::PoolLimit { .. }) => {
                    let Error::PoolLimit {
                        pool: p,
                        requested,
                        reserved,
                        limit,
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert_eq!(
                        (p.as_str(), *requested, *reserved, *limit),
                        (pool, 3 * MIB, 4 * MIB, 4 * MIB)
                    );
                    assert!(
                        e.to_string()
                            .contains("would exceed its limit of 4.00 MiB (4194304 bytes)"),
                        "{e}"
                    );
                }
                other => panic!("{pool}: expected PoolLimit, got {other:?}"),
            }
            // Anything that needs a new segment is over the limit; what fits the cached
            // segment is still served.
            assert!(matches!(
                symmem::alloc::<u8>(MIB + MIB / 2),
                Err(Error::PoolLimit { .. })
            ));
            drop(symmem::alloc::<u8>(MIB / 2).unwrap());
            drop(a);
            // Retry after freeing: served from the cached segment.
            let b = symmem::alloc::<u8>(3 * MIB).unwrap();
            let c = symmem::alloc::<u8>(100).unwrap();
            assert_eq!(b.pool_label(), pool);
            drop((b, c));
            let s = if sym {
                world.stats()
            } else {
                ctx.default_pool_stats()
            };
            assert_eq!((s.reserved_bytes, s.in_use_bytes), (4 * MIB, 0));
        }
    })
    .unwrap();
}

#[test]
fn out_of_memory_is_an_error_and_the_pool_stays_usable() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        let keep = symmem::alloc::<u8>(1000).unwrap();
        for sym in [false, true] {
            let _w = sym.then(|| world.window());
            // 1 PiB: more than the address space, so the host allocator refuses it.
            match symmem::alloc::<u8>(1 << 50) {
                Err(e @ Error::OutOfMemory { .. }) => {
                    let Error::OutOfMemory {
                        requested, source, ..
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert_eq!(*requested, 1 << 50);
                    assert!(matches!(**source, Error::HostAlloc { .. }), "{source}");
                    assert!(std::error::Error::source(&e).is_some());
                    assert!(e.to_string().contains("the pool stays usable"), "{e}");
                }
                other => panic!("expected OutOfMemory, got {other:?}"),
            }
            let b = symmem::alloc::<u8>(1000).unwrap();
            assert_eq!(b.is_symmetric(), sym);
        }
        // Element counts whose byte size overflows are refused before any pool is asked.
        let e = symmem::alloc::<u64>(usize::MAX / 4).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument { op: "alloc", .. }),
            "{e}"
        );
        drop(keep);
        assert_eq!(ctx.default_pool_stats().in_use_bytes, 0);
    })
    .unwrap();
}

#[test]
fn alloc_zeroed_and_alloc_from_host() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        // Dirty a block, free it, and get it back zeroed.
        let mut d = symmem::alloc_from_host(&[0xABu8; 4096]).unwrap();
        let p = d.device_ptr();
        d.fill_zero().unwrap();
        assert!(d.to_host_vec().unwrap().iter().all(|&b| b == 0));
        d.copy_from_host(&[0xCD; 4096]).unwrap();
        drop(d);
        let z = symmem::alloc_zeroed::<u8>(4096).unwrap();
        assert_eq!(z.device_ptr(), p, "the cached block is reused");
        assert!(z.to_host_vec().unwrap().iter().all(|&b| b == 0));
        let _w = world.window();
        let h = symmem::alloc_from_host(&[1.5f64, -2.0, 3.25]).unwrap();
        assert!(h.is_symmetric());
        assert_eq!(h.to_host_vec().unwrap(), vec![1.5, -2.0, 3.25]);
        assert_eq!(h.size_bytes(), 24);
        let mut out = [0.0; 3];
        h.copy_to_host(&mut out).unwrap();
        assert_eq!(out, [1.5, -2.0, 3.25]);
    })
    .unwrap();
}
