#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "world")]
fn step() -> Result<(), Error> {
    symmem::host::run(2, |ctx| ctx.rank())?;
    Ok(())
}

fn main() {}
