//! Compile-time behaviour of `#[symmetric_memory]` (trybuild): `tests/ui/pass` must compile and
//! run, `tests/ui/fail` must fail with the reviewed messages in the `.stderr` files.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test ui` and review the
//! diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
