#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step(x: &Buffer<f32>) -> Result<usize, Error> {
    let n = std::convert::identity(
        #[symmem::allow_capture_unfit(reason = "debug")]
        x.to_host_vec()?,
    )
    .len();
    Ok(n)
}

fn main() {}
