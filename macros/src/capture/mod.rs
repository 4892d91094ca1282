//! The compile-time capture checks: a walk over the body that applies the capture-unfit table
//! of `symmem_rules::capture` and handles the escape hatch
//! `#[symmem::allow_capture_unfit(reason = "...")]` (validated, honoured on statements, removed
//! from the output, an error wherever it has no effect).
//!
//! Bottom to top: `scope` (where rules apply), `rules` (which rule a call or path breaks),
//! `hatch` (the escape hatch), `walk` (the visitor tying them together).

mod hatch;
mod rules;
mod scope;
mod walk;

pub(crate) use scope::Mode;
pub(crate) use walk::check_body;
pub(crate) use walk::check_disabled;
