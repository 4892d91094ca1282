#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step(x: &Buffer<f32>) -> Result<f32, Error> {
    let host = x.to_host_vec()?;
    let mut first = [0.0f32; 1];
    x.copy_to_host(&mut first)?;
    Ok(host[0] + first[0])
}

fn main() {}
