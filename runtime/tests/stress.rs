//! Stress: 8 rank threads, each making hundreds of windows, allocations and all-reduces with
//! varying sizes and types, checking every result.

mod common;

use std::time::Instant;

use symmem::ReduceOp;
use symmem_runtime as symmem;

use common::Rng;

const RANKS: usize = 8;
const ITERATIONS: usize = 2000;

#[test]
fn eight_ranks_many_windows_allocations_and_all_reduces() {
    let start = Instant::now();
    let stats = symmem::host::run(RANKS, |ctx| {
        let world = ctx.world();
        let tp = ctx
            .split_group(
                "tp",
                &world,
                (ctx.rank() / 4) as u32,
                (ctx.rank() % 4) as u32,
            )
            .unwrap();
        // Same seed on every rank: the same sizes in the same order (as ranks must).
        let mut rng = Rng::new(42);
        let rank = ctx.rank() as i64;
        for it in 0..ITERATIONS {
            let n = 1 + rng.below(3000) as usize;
            let m = 1 + rng.below(700) as usize;
            let nested = rng.below(4) == 0;
            let (mut a, mut b) = {
                let _w = world.window();
                let a = symmem::alloc::<f32>(n).unwrap();
                let b = if nested {
                    let _t = tp.window();
                    symmem::alloc::<i64>(m).unwrap()
                } else {
                    let _o = symmem::opt_out();
                    symmem::alloc::<i64>(m).unwrap()
                };
                (a, b)
            };
            assert_eq!(a.group_name(), Some("world"));
            assert_eq!(b.group_name(), if nested { Some("tp") } else { None });
            let it64 = it as i64;
            a.copy_from_host(&vec![(rank + it64 % 5) as f32; n])
                .unwrap();
            b.copy_from_host(
                &(0..m as i64)
                    .map(|i| i * (rank + 1) - it64)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            world.all_reduce(&mut a, ReduceOp::Sum).unwrap();
            let want_a = (0..RANKS as i64)
                .map(|r| (r + it64 % 5) as f32)
                .sum::<f32>();
            let got = a.to_host_vec().unwrap();
            assert!(
                got.iter().all(|&x| x == want_a),
                "iteration {it}: {} != {want_a}",
                got[0]
            );
            tp.all_reduce(&mut b, ReduceOp::Max).unwrap();
            let top = (rank / 4) * 4 + 3; // the highest rank of this tp group
            let want_b: Vec<i64> = (0..m as i64).map(|i| i * (top + 1) - it64).collect();
            assert_eq!(b.to_host_vec().unwrap(), want_b, "iteration {it}");
            assert_eq!(symmem::window_depth(), 0);
        }
        assert_eq!(world.stats().in_use_bytes, 0);
        assert_eq!(tp.stats().in_use_bytes, 0);
        assert_eq!(ctx.default_pool_stats().in_use_bytes, 0);
        (world.stats(), tp.stats())
    })
    .unwrap();
    // The pools settled: every allocation after the first few came from the cache, and all
    // ranks' symmetric pools evolved identically.
    for s in &stats {
        assert_eq!(s, &stats[0]);
        assert!(s.0.cache_misses <= 2, "{:?}", s.0);
        assert_eq!(s.0.cache_hits + s.0.cache_misses, ITERATIONS as u64);
    }
    eprintln!(
        "stress: {RANKS} ranks x {ITERATIONS} iterations in {:?}",
        start.elapsed()
    );
}

/// The rank thread allocates and frees (the pool's owner path) while other threads drop buffers
/// it sent them (the pool's other-thread path): blocks are never handed out twice, contents
/// survive, and the statistics end exact.
#[test]
fn buffers_dropped_on_other_threads_while_the_rank_allocates() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        let (tx, rx) = std::sync::mpsc::channel::<symmem::Buffer<u32>>();
        let dropper = std::thread::spawn(move || {
            let mut n = 0usize;
            for b in rx {
                // Contents written by the rank thread are intact when the buffer arrives.
                let tag = b.to_host_vec().unwrap()[0];
                assert!(b.to_host_vec().unwrap().iter().all(|&x| x == tag));
                drop(b);
                n += 1;
            }
            n
        });
        let mut rng = Rng::new(7);
        let mut kept = Vec::new();
        for i in 0..4000u32 {
            let len = 1 + rng.below(3000) as usize;
            let mut b = if i % 2 == 0 {
                let _w = world.window();
                symmem::alloc::<u32>(len).unwrap()
            } else {
                symmem::alloc::<u32>(len).unwrap()
            };
            b.copy_from_host(&vec![i; len]).unwrap();
            if i % 3 == 0 {
                tx.send(b).unwrap();
            } else if i % 3 == 1 {
                kept.push((i, b));
                if kept.len() > 16 {
                    let (tag, b) = kept.remove(0);
                    assert!(b.to_host_vec().unwrap().iter().all(|&x| x == tag));
                }
            }
        }
        drop(tx);
        let sent = dropper.join().unwrap();
        assert_eq!(sent, 1334);
        for (tag, b) in &kept {
            assert!(b.to_host_vec().unwrap().iter().all(|x| x == tag));
        }
        drop(kept);
        assert_eq!(world.stats().in_use_bytes, 0);
        assert_eq!(world.stats().allocated_blocks, 0);
        assert_eq!(ctx.default_pool_stats().in_use_bytes, 0);
    })
    .unwrap();
}
