// Move this file and its .stderr (blessed with the wiring applied) to tests/ui/fail/ once
// `macros/src/expand.rs` calls `capture::check_disabled` on the `disabled` expression: it runs
// at every call, also during capture, so `.synchronize()` and `.to_host_vec()` in it are errors
// on their tokens (with the note that `disabled = ..` is evaluated at every call), and the
// escape hatch inside it is an error.
#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Stream};

#[symmetric_memory(group = "tp", disabled = s.synchronize().is_err())]
fn step(s: &Stream) -> Result<(), Error> {
    Ok(())
}

#[symmetric_memory(group = "tp", disabled = b.to_host_vec().map_or(true, |v| v.is_empty()))]
fn step2(b: &Buffer<f32>) -> Result<(), Error> {
    Ok(())
}

#[symmetric_memory(group = "tp", disabled = {
    #[symmem::allow_capture_unfit(reason = "x")]
    let ok = b.len() > 0;
    ok
})]
fn step3(b: &Buffer<f32>) -> Result<(), Error> {
    Ok(())
}

fn main() {}
