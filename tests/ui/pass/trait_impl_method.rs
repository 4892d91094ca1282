//! A method of a trait implementation.
use symmem::{symmetric_memory, Buffer, Error};

trait Forward {
    fn forward(&self, n: usize) -> Result<Buffer<f32>, Error>;
}

struct RowParallel;

impl Forward for RowParallel {
    #[symmetric_memory(group = "world")]
    fn forward(&self, n: usize) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(n)
    }
}

fn run(layer: &dyn Forward) -> Result<Buffer<f32>, Error> {
    layer.forward(8)
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let b = run(&RowParallel).unwrap();
        assert_eq!(b.group_name(), Some("world"));
    })
    .unwrap();
}
