//! `unsafe fn` and `extern "C" fn`.
use symmem::symmetric_memory;

#[symmetric_memory(group = "world")]
unsafe fn read_routed(p: *const u32) -> (u32, Option<String>) {
    (*p, symmem::routed_group())
}

#[symmetric_memory(group = "world")]
extern "C" fn c_abi(n: u32) -> u32 {
    n + symmem::window_depth() as u32
}

#[symmetric_memory(group = "world")]
pub unsafe extern "C" fn both(n: u32) -> u32 {
    n * 2
}

fn main() {
    let x = 7u32;
    // SAFETY: `&x` is a valid pointer.
    let (v, g) = unsafe { read_routed(&x) };
    assert_eq!((v, g.as_deref()), (7, Some("world")));
    assert_eq!(c_abi(1), 2);
    assert_eq!(unsafe { both(2) }, 4);
    let f: extern "C" fn(u32) -> u32 = c_abi;
    assert_eq!(f(0), 1);
}
