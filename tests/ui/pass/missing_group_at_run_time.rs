//! Window entry cannot fail: a group the rank lacks makes the allocations inside fail with
//! `Error::GroupNotFound`.
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "tp")]
fn in_tp() -> Result<Buffer<f32>, Error> {
    symmem::alloc::<f32>(4)
}

fn main() {
    symmem::host::run(2, |_ctx| match in_tp() {
        Err(Error::GroupNotFound { name, .. }) => assert_eq!(name, "tp"),
        other => panic!("expected GroupNotFound, got {:?}", other.map(|b| b.len())),
    })
    .unwrap();
}
