#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error};

// Statements behind `#[cfg(..)]` are checked in every configuration, also when the
// configuration being compiled leaves them out.
#[symmetric_memory(group = "tp")]
fn step(buf: &Buffer<f32>) -> Result<(), Error> {
    #[cfg(any())]
    let host = buf.to_host_vec()?;
    #[cfg(not(any()))]
    symmem::synchronize()?;
    Ok(())
}

fn main() {}
