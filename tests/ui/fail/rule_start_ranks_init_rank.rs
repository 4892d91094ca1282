#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Error};

// The check is syntactic: a `cuda::init_rank` path is rejected whatever it resolves to (a
// stand-in here, so the case does not depend on the `cuda` feature).
mod cuda {
    pub fn init_rank(rank: usize, world_size: usize) -> Result<(), symmem::Error> {
        Ok(())
    }
}

#[symmetric_memory(group = "world")]
fn step() -> Result<(), Error> {
    cuda::init_rank(0, 2)?;
    Ok(())
}

fn main() {}
