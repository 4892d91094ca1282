#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step(tp: &Group) -> Result<(), Error> {
    tp.empty_cache()?;
    Ok(())
}

fn main() {}
