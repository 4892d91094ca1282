#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

trait Layer {
    #[symmetric_memory(group = "tp")]
    fn forward(&self) -> Result<Buffer<f32>, Error>;
}

fn main() {}
