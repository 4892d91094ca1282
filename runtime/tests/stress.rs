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
