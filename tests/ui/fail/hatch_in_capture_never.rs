#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp", capture = "never")]
fn step(x: &Buffer<f32>) -> Result<Vec<f32>, Error> {
    #[symmem::allow_capture_unfit(reason = "debug dump")]
    let v = x.to_host_vec()?;
    Ok(v)
}

fn main() {}
