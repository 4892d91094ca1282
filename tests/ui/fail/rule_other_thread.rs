#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

use std::thread;

#[symmetric_memory(group = "tp")]
fn step() {
    let h = thread::spawn(|| symmem::alloc::<f32>(4).is_ok());
    thread::scope(|s| {
        s.spawn(|| symmem::alloc::<f32>(4).is_ok());
    });
    let b = thread::Builder::new().name("worker".into());
}

fn main() {}
