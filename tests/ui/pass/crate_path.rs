//! `crate = "path"` for a re-exported facade.
mod reexports {
    pub use symmem as sm;
}

use reexports::sm::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "world", crate = "crate::reexports::sm")]
fn through_reexport(n: usize) -> Result<Buffer<f32>, Error> {
    reexports::sm::alloc::<f32>(n)
}

#[symmetric_memory(group = "world", crate = "::symmem")]
fn explicit_default() -> Option<String> {
    symmem::routed_group()
}

fn main() {
    symmem::host::run(1, |_ctx| {
        assert_eq!(through_reexport(2).unwrap().group_name(), Some("world"));
        assert_eq!(explicit_default().as_deref(), Some("world"));
    })
    .unwrap();
}
