#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp")]
fn step(tp: &Group) -> Result<(), Error> {
    #[symmem::allow_capture_unfit(reason = "")]
    tp.reserve_symmetric(1 << 20)?;
    Ok(())
}

fn main() {}
