#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step(tp: &Group) -> Result<Buffer<f32>, Error> {
    let out = symmem::alloc::<f32>(16)?;
    symmem::synchronize()?;
    symmem::current_stream()?.synchronize()?;
    Ok(out)
}

fn main() {}
