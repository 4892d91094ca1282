#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error};

// Stand-ins for rayon's API (the workspace does not depend on rayon).
mod rayon {
    pub struct Scope;
    impl Scope {
        pub fn spawn<F: FnOnce(&Scope)>(&self, f: F) {}
    }
    pub fn in_place_scope<R>(f: impl FnOnce(&Scope) -> R) -> R {
        f(&Scope)
    }
    pub fn scope_fifo<R>(f: impl FnOnce(&Scope) -> R) -> R {
        f(&Scope)
    }
    pub struct ThreadPool;
    impl ThreadPool {
        pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
            f()
        }
    }
    pub trait ParSlice {
        fn par_chunks(&self, n: usize) -> usize;
        fn par_sort(&mut self);
    }
    impl ParSlice for [f32] {
        fn par_chunks(&self, n: usize) -> usize {
            n
        }
        fn par_sort(&mut self) {}
    }
}
use rayon::ParSlice;

#[symmetric_memory(group = "tp")]
fn step(pool: &rayon::ThreadPool, v: &mut [f32]) {
    rayon::in_place_scope(|s| {
        s.spawn(|_| drop(symmem::alloc::<f32>(4)));
    });
    rayon::scope_fifo(|s| ());
    let n = pool.install(|| symmem::alloc::<f32>(4).is_ok());
    let chunks = v.par_chunks(2);
    v.par_sort();
}

fn main() {}
