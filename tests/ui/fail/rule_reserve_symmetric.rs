#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step(tp: &Group) -> Result<Buffer<f32>, Error> {
    tp.reserve_symmetric(1 << 20)?;
    symmem::alloc::<f32>(16)
}

fn main() {}
