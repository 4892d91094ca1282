#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step() -> Result<Buffer<f32>, Error> {
    #[symmem::allow_capture_unfit(reason = "just in case")]
    let out = symmem::alloc::<f32>(16)?;
    Ok(out)
}

fn main() {}
