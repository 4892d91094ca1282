//! Visibility, outer attributes, doc comments and inner attributes are kept; inner attributes
//! stay first in the body.
#![deny(unused_variables)]

mod layers {
    use symmem::{symmetric_memory, Buffer, Error};

    /// Documented, inlined, `#[must_use]`, `pub(crate)`.
    #[inline]
    #[must_use = "the buffer holds the result"]
    #[symmetric_memory(group = "world")]
    pub(crate) fn documented(n: usize) -> Result<Buffer<f32>, Error> {
        #![allow(unused_mut)]
        let mut out = symmem::alloc::<f32>(n)?;
        Ok(out)
    }

    #[symmetric_memory(group = "world")]
    #[cfg(all())]
    #[allow(clippy::needless_return)]
    pub fn after_other_attributes() -> Option<String> {
        return symmem::routed_group();
    }
}

fn main() {
    symmem::host::run(1, |_ctx| {
        assert_eq!(layers::documented(4).unwrap().group_name(), Some("world"));
        assert_eq!(layers::after_other_attributes().as_deref(), Some("world"));
    })
    .unwrap();
}
