//! CPU benchmarks of the pool-routing window (host backend, one rank).
//!
//! `cargo bench --bench window` (add `-- --quick` style criterion flags as usual). The figures
//! and the machine they were taken on are recorded in `docs/benchmarks.md`.
//!
//! Every benchmark runs on the thread of a one-rank host launch (`symmem::host::run(1, ..)`),
//! with a group `tp` split from `world`, so that routing, the group table and the pools are the
//! real ones.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use symmem::__private::{enter, enter_unless};

fn benches(c: &mut Criterion, ctx: &symmem::RankContext) {
    let world = ctx.world();
    let tp = ctx.split_group("tp", &world, 0, 0).expect("split tp");

    // Warm both pools: the first allocation creates a segment; afterwards 8 KiB blocks come
    // from the cached segment.
    {
        let _w = tp.window();
        drop(symmem::alloc::<u8>(8192).expect("warm tp pool"));
    }
    drop(symmem::alloc::<u8>(8192).expect("warm default pool"));
    let big = ctx.split_group("big", &world, 0, 0).expect("split big");
    big.reserve_symmetric(64 << 20).expect("reserve 64 MiB");
    {
        let _w = big.window();
        drop(symmem::alloc::<u8>(8192).expect("warm big pool"));
    }

    let mut g = c.benchmark_group("window");
    g.bench_function("enter_exit_empty", |b| {
        b.iter(|| {
            let w = tp.window();
            black_box(&w);
        })
    });
    g.bench_function("enter_exit_by_name", |b| {
        b.iter(|| {
            let w = enter(black_box("tp"));
            black_box(&w);
        })
    });
    g.bench_function("alloc_free_8k", |b| {
        b.iter(|| {
            let _w = tp.window();
            let buf = symmem::alloc::<u8>(black_box(8192)).expect("alloc");
            black_box(&buf);
        })
    });
    // A pool whose free space is one large reserved block (what `reserve_symmetric` before a
    // capture leaves): without the quick cache each iteration split and re-coalesced it.
    g.bench_function("alloc_free_8k_reserved_64m", |b| {
        b.iter(|| {
            let _w = big.window();
            let buf = symmem::alloc::<u8>(black_box(8192)).expect("alloc");
            black_box(&buf);
        })
    });
    g.bench_function("disabled", |b| {
        b.iter(|| {
            let w = enter_unless(black_box(true), "tp");
            black_box(&w);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("default");
    g.bench_function("alloc_free_8k", |b| {
        b.iter(|| {
            let buf = symmem::alloc::<u8>(black_box(8192)).expect("alloc");
            black_box(&buf);
        })
    });
    g.finish();

    // Sanity: nothing leaked and the hot loop never created a segment after the warm-up.
    let s = tp.stats();
    assert_eq!(s.in_use_bytes, 0, "tp pool leaked: {s:?}");
    assert_eq!(
        s.cache_misses, 1,
        "tp pool grew during the benchmark: {s:?}"
    );
    assert_eq!(ctx.default_pool_stats().in_use_bytes, 0);
}

fn main() {
    symmem::host::run(1, |ctx| {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();
        benches(&mut c, ctx);
        c.final_summary();
    })
    .expect("host launch");
}
