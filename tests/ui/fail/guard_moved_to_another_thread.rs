#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

#[symmetric_memory(group = "tp", capture = "never")]
fn step() -> Result<(), Error> {
    let guard = symmem::window("tp")?;
    std::thread::spawn(move || drop(guard));
    Ok(())
}

fn main() {}
