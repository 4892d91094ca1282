//! Cost of `#[symmetric_memory]` against the same function written by hand with the runtime's
//! window guard (host backend, one rank). `cargo bench --bench macro`; figures in
//! `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "tp")]
#[inline(never)]
fn annotated_empty(x: u64) -> u64 {
    black_box(x)
}

#[inline(never)]
fn by_hand_empty(x: u64) -> u64 {
    let _w = symmem::__private::enter("tp");
    black_box(x)
}

#[symmetric_memory(group = "tp")]
#[inline(never)]
fn annotated_alloc() -> Result<Buffer<u8>, Error> {
    symmem::alloc::<u8>(8192)
}

#[inline(never)]
fn by_hand_alloc() -> Result<Buffer<u8>, Error> {
    let _w = symmem::__private::enter("tp");
    symmem::alloc::<u8>(8192)
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("macro");
    g.bench_function("annotated_empty", |b| {
        b.iter(|| annotated_empty(black_box(1)))
    });
    g.bench_function("by_hand_empty", |b| b.iter(|| by_hand_empty(black_box(1))));
    g.bench_function("annotated_alloc_8k", |b| {
        b.iter(|| drop(black_box(annotated_alloc().unwrap())))
    });
    g.bench_function("by_hand_alloc_8k", |b| {
        b.iter(|| drop(black_box(by_hand_alloc().unwrap())))
    });
    g.finish();
}

fn main() {
    symmem::host::run(1, |ctx| {
        let world = ctx.world();
        let tp = ctx.split_group("tp", &world, 0, 0).expect("split tp");
        {
            let _w = tp.window();
            drop(symmem::alloc::<u8>(8192).expect("warm tp pool"));
        }
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();
        benches(&mut c);
        c.final_summary();
    })
    .expect("host launch");
}
