//! The group-name rule: a group name is an identifier (`[A-Za-z_][A-Za-z0-9_]*`) of at most
//! [`GROUP_NAME_MAX_BYTES`] bytes. The macro checks the literal of `group = "..."` with it at
//! compile time; the runtime checks the names given to `RankContext::add_group`/`split_group`.

/// The longest group name, in bytes.
pub const GROUP_NAME_MAX_BYTES: usize = 64;

/// The rule as it reads in a message: "group names are identifiers ({GROUP_NAME_RULE})".
pub const GROUP_NAME_RULE: &str = "`[A-Za-z_][A-Za-z0-9_]*`, at most 64 bytes";

/// Why `name` is not a valid group name (completes "invalid group name "x": ..."), or `None`
/// when it is one.
pub fn group_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > GROUP_NAME_MAX_BYTES {
        Some("it is longer than 64 bytes")
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it starts with a digit")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Some("it contains a character other than ASCII letters, digits and `_`")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["tp", "_x", "dp_2", "A", "_", &"a".repeat(64)] {
            assert_eq!(group_name_problem(good), None, "{good}");
        }
        let cases: [(&str, &str); 7] = [
            ("", "it is empty"),
            (&"a".repeat(65), "it is longer than 64 bytes"),
            ("1tp", "it starts with a digit"),
            (
                "t p",
                "it contains a character other than ASCII letters, digits and `_`",
            ),
            (
                "tp-1",
                "it contains a character other than ASCII letters, digits and `_`",
            ),
            (
                "é",
                "it contains a character other than ASCII letters, digits and `_`",
            ),
            (
                "tp.0",
                "it contains a character other than ASCII letters, digits and `_`",
            ),
        ];
        for (bad, why) in cases {
            assert_eq!(group_name_problem(bad), Some(why), "{bad:?}");
        }
    }

    /// The texts say the numbers the code checks.
    #[test]
    fn texts_agree_with_the_limit() {
        let limit = format!("{GROUP_NAME_MAX_BYTES} bytes");
        assert!(GROUP_NAME_RULE.ends_with(&limit));
        let too_long = "a".repeat(GROUP_NAME_MAX_BYTES + 1);
        assert!(group_name_problem(&too_long).unwrap().ends_with(&limit));
    }
}
