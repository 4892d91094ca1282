//! Elided and explicit lifetimes in arguments and return types.
use symmem::symmetric_memory;

#[symmetric_memory(group = "world")]
fn first(xs: &[u32]) -> &u32 {
    &xs[0]
}

#[symmetric_memory(group = "world")]
fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> &'a str {
    if a.len() >= b.len() {
        a
    } else {
        b
    }
}

struct View<'v>(&'v [u32]);

impl<'v> View<'v> {
    #[symmetric_memory(group = "world")]
    fn head(&self) -> Option<&'v u32> {
        self.0.first()
    }
}

fn main() {
    assert_eq!(*first(&[4, 5]), 4);
    assert_eq!(longest("ab", "abc"), "abc");
    assert_eq!(View(&[9]).head(), Some(&9));
}
