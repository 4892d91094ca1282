#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

struct Layer;

#[symmetric_memory(group = "tp")]
impl Layer {
    fn forward(&self) {}
}

fn main() {}
