#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

/// Returns a closure: it runs after the window has closed.
#[symmetric_memory(group = "tp")]
fn make_alloc(n: usize) -> impl Fn() -> Result<Buffer<f32>, Error> {
    move || symmem::alloc::<f32>(n)
}

#[symmetric_memory(group = "tp")]
fn make_boxed(n: usize) -> Box<dyn FnMut() -> Result<Buffer<f32>, Error> + Send> {
    Box::new(move || symmem::alloc::<f32>(n))
}

fn main() {
    let _ = make_alloc(1); // still emitted
}
