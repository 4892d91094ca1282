//! Closures called in the body run inside the window; macros and control flow are untouched.
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "world")]
fn with_closures(n: usize) -> Result<Vec<Buffer<f32>>, Error> {
    let make = |k: usize| symmem::alloc::<f32>(k);
    let mut out = Vec::new();
    for k in 1..=n {
        out.push(make(k)?);
    }
    let label = format!("{} buffers", out.len());
    assert_eq!(label, format!("{n} buffers"));
    let total: usize = out.iter().map(Buffer::len).sum();
    assert!(total > 0, "allocated {total}");
    Ok(out)
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let v = with_closures(3).unwrap();
        assert!(v.iter().all(|b| b.group_name() == Some("world")));
    })
    .unwrap();
}
