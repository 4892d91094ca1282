#![allow(dead_code, unused)]
use symmem::{symmetric_memory, Buffer, Error, Group};

use std::thread;
use std::time::Duration;

#[symmetric_memory(group = "tp")]
fn step() {
    thread::sleep(Duration::from_millis(1));
}

fn main() {}
