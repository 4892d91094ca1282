#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmem::allow_capture_unfit(reason = "debug")]
fn step(x: &Buffer<f32>) -> Result<Vec<f32>, Error> {
    x.to_host_vec()
}

fn main() {}
