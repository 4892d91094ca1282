#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Stream};

// A logging macro with tracing's field syntax (not comma-separated expressions).
macro_rules! debug {
    (target: $t:expr, ?$field:ident = $value:expr) => {
        let _ = ($t, stringify!($field), $value);
    };
}

#[symmetric_memory(group = "tp")]
fn step(buf: &Buffer<f32>, s: Option<&Stream>) -> Result<bool, Error> {
    debug!(target: "step", ?field = buf.to_host_vec());
    Ok(matches!(s, Some(v) if v.synchronize().is_ok()))
}

fn main() {}
