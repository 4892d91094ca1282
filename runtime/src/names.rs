//! The group-name rule: what a group name may be (the same rule the macro checks at compile
//! time, from the shared crate `symmem-rules`).

use crate::error::{Error, Result};

/// Check that a group name is a non-empty identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes).
pub fn validate_group_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 64 {
        Some("it is longer than 64 bytes")
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it starts with a digit")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Some("it contains a character other than ASCII letters, digits and `_`")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::InvalidGroupName {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}
