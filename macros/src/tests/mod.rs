//! The crate's unit tests, one file per part of the pipeline (a proc-macro crate cannot export
//! its internals to `macros/tests/`; the compiler-level tests are the workspace's `tests/ui`).

mod args;
mod capture;
mod expand;
mod fuzz;
