#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error};

// `.spawn(..)` is flagged whatever its receiver: here a thread scope given as an argument and
// a thread builder made outside the body. A `Command::new(..)` chain starts a process: not
// flagged.
#[symmetric_memory(group = "tp")]
fn step<'s>(s: &'s std::thread::Scope<'s, '_>, b: std::thread::Builder) -> std::io::Result<()> {
    s.spawn(|| symmem::alloc::<f32>(4).is_ok());
    let t = b.spawn(|| 1)?;
    let child = std::process::Command::new("true").arg("-x").spawn()?;
    Ok(())
}

fn main() {}
