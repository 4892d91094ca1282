#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

struct S {
    on: bool,
}

impl S {
    #[symmetric_memory(group = "tp", disabled = "!self.on")]
    fn f(&self) {}
}

fn main() {}
