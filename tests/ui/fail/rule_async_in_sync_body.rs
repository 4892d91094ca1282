#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

type Queue = Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Result<Buffer<f32>, Error>>>>>;

// The futures escape through an argument, not the return type: the macro cannot route them.
#[symmetric_memory(group = "tp")]
fn step(queue: &mut Queue) {
    let make = async |n: usize| symmem::alloc::<f32>(n);
    queue.push(Box::pin(async move { symmem::alloc::<f32>(16) }));
}

fn main() {}
