//! # symmem-rules
//!
//! The rules that the `#[symmetric_memory]` macro (at compile time) and the symmem runtime (at
//! run time) must agree on, kept in one place so that they cannot drift apart:
//!
//! * [`capture`]: the table of capture-unfit operations the macro rejects in a checked body
//!   (`docs/capture-rules.md` is rendered from it by [`doc`]);
//! * [`refusals`]: the operations the runtime refuses during graph capture, each naming the rule
//!   of [`capture`] that catches it at compile time (`tests/drift.rs` keeps the two in step);
//! * [`names`]: the group-name rule.
//!
//! No dependencies: the table is plain data, usable from a proc-macro crate and from the runtime.

#![deny(missing_docs)]

pub mod capture;
pub mod doc;
pub mod names;
pub mod refusals;
