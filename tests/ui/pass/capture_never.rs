//! `capture = "never"`: no compile-time checks (host copies are fine), and the function refuses
//! to run during capture.
use symmem::{symmetric_memory, Buffer, Error};

#[symmetric_memory(group = "world", capture = "never")]
fn debug_copy(x: &Buffer<f32>) -> Result<Buffer<f32>, Error> {
    let host = x.to_host_vec()?;
    symmem::synchronize()?;
    let mut out = symmem::alloc::<f32>(host.len())?;
    out.copy_from_host(&host)?;
    Ok(out)
}

#[symmetric_memory(group = "world", capture = "never")]
fn r#type() -> Option<String> {
    symmem::routed_group()
}

fn main() {
    symmem::host::run(2, |_ctx| {
        let x = symmem::alloc_from_host(&[1.0f32, 2.0]).unwrap();
        let y = debug_copy(&x).unwrap();
        assert_eq!(y.group_name(), Some("world"));
        assert_eq!(y.to_host_vec().unwrap(), vec![1.0, 2.0]);
        assert_eq!(r#type().as_deref(), Some("world"));
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            symmem::capture(|| debug_copy(&x))
        }));
        assert!(refused.is_err());
        assert_eq!(symmem::routed_group(), None);
    })
    .unwrap();
}
