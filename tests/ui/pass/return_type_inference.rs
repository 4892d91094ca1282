//! Return type inference is unchanged: `collect`, `Default`, `into` and `!` (a returned
//! closure is an error: `fail/expand_returns_closure.rs`).
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "world")]
fn collected(sizes: &[usize]) -> Result<Vec<Buffer<f32>>, Error> {
    sizes.iter().map(|&n| symmem::alloc::<f32>(n)).collect()
}

#[symmetric_memory(group = "world")]
fn defaulted() -> (Vec<u8>, String, Option<u32>) {
    Default::default()
}

#[symmetric_memory(group = "world")]
fn converted(n: u8) -> u64 {
    n.into()
}

#[symmetric_memory(group = "world")]
fn diverges() -> ! {
    panic!("diverging body")
}

#[symmetric_memory(group = "world")]
fn unit_body() {}

fn main() {
    symmem::host::run(1, |_ctx| {
        let v = collected(&[1, 2]).unwrap();
        assert!(v.iter().all(|b| b.group_name() == Some("world")));
        assert_eq!(defaulted(), (vec![], String::new(), None));
        assert_eq!(converted(3), 3);
        assert!(std::panic::catch_unwind(|| diverges()).is_err());
        unit_body();
        assert_eq!(symmem::window_depth(), 0);
    })
    .unwrap();
}
