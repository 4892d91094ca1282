#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step() -> impl std::future::Future<Output = Result<Buffer<f32>, Error>> {
    let make = async |n: usize| symmem::alloc::<f32>(n);
    async move { symmem::alloc::<f32>(16) }
}

fn main() {}
