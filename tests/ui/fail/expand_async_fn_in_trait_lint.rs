#![deny(async_fn_in_trait)]
#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error};

pub trait Layer {
    #[symmetric_memory(group = "tp")]
    async fn forward(&self, n: usize) -> Result<Buffer<f32>, Error> {
        symmem::alloc::<f32>(n)
    }
}

fn main() {}
