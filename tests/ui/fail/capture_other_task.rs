#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error};

// Stand-ins for tokio's spawning functions (the workspace does not depend on tokio).
mod tokio {
    pub fn spawn<F>(f: F) {}
    pub mod task {
        pub fn spawn<F>(f: F) {}
        pub fn spawn_blocking<F>(f: F) {}
        pub fn spawn_local<F>(f: F) {}
    }
    pub struct Handle;
    impl Handle {
        pub fn spawn_blocking<F>(&self, f: F) {}
    }
}
use tokio::task;

#[symmetric_memory(group = "tp")]
fn step(handle: &tokio::Handle) {
    tokio::spawn(async move { symmem::alloc::<f32>(4).is_ok() });
    task::spawn_blocking(|| symmem::alloc::<f32>(4).is_ok());
    tokio::task::spawn_local(async { 1 });
    handle.spawn_blocking(|| symmem::alloc::<f32>(4).is_ok());
}

fn main() {}
