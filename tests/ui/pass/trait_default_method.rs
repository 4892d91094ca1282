//! A trait's default method, used by an impl that does not override it.
use symmem::{symmetric_memory, Buffer, Error};

trait Forward {
    fn rows(&self) -> usize;

    #[symmetric_memory(group = "world")]
    fn forward(&self) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(self.rows())
    }
}

struct Layer;

impl Forward for Layer {
    fn rows(&self) -> usize {
        3
    }
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let b = Layer.forward().unwrap();
        assert_eq!((b.len(), b.group_name()), (3, Some("world")));
    })
    .unwrap();
}
