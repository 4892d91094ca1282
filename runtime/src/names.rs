//! The group-name rule: what a group name may be (the same rule the macro checks at compile
//! time, from the shared crate `symmem-rules`).

use crate::error::{Error, Result};

/// Check that a group name is a non-empty identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes).
pub fn validate_group_name(name: &str) -> Result<()> {
    match symmem_rules::names::group_name_problem(name) {
        Some(why) => Err(Error::InvalidGroupName {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}
