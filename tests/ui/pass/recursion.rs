//! A recursive annotated function nests windows of the same group.
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "world")]
fn tree(depth: usize) -> Result<Vec<Buffer<f32>>, Error> {
    let mut v = vec![symmem::alloc::<f32>(depth + 1)?];
    if depth > 0 {
        v.extend(tree(depth - 1)?);
    }
    assert_eq!(symmem::routed_group().as_deref(), Some("world"));
    Ok(v)
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let v = tree(3).unwrap();
        assert_eq!(v.len(), 4);
        assert!(v.iter().all(|b| b.group_name() == Some("world")));
        assert_eq!(symmem::window_depth(), 0);
    })
    .unwrap();
}
