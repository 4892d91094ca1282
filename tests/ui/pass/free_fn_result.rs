//! The example: a free function returning `Result<Buffer<bf16>, Error>`.
use symmem::{bf16, symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "world")]
fn down_proj(h: &Buffer<bf16>, rows: usize) -> Result<Buffer<bf16>, Error> {
    let out = symmem::alloc::<bf16>(rows * h.len())?; // from world's symmetric pool
    Ok(out)
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let h = symmem::alloc::<bf16>(8).unwrap();
        assert!(!h.is_symmetric());
        let y = down_proj(&h, 4).unwrap();
        assert_eq!(y.len(), 32);
        assert_eq!(y.group_name(), Some("world"));
        assert_eq!(symmem::routed_group(), None);
    })
    .unwrap();
}
